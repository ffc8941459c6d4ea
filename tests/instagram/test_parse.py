"""Pure mapping: instaloader's post/comment nodes and Graph API webhooks -> Inbound; links, signatures, errors."""

from __future__ import annotations

import datetime as dt

import instaloader
import pytest

from connectors import instagram
from connectors.base import Outbound
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from tests.instagram.fake import load


def bag() -> instagram.PostRef:
    return instagram.parse_post(load("timeline_media.json"))


def test_post_from_the_iphone_shape() -> None:
    post = bag()
    assert post.shortcode == "POST0001" and post.url == "https://www.instagram.com/p/POST0001/"
    assert post.caption == "New in: the red bag. Ask us anything!"
    assert post.image_url == "https://scontent.cdninstagram.test/POST0001.jpg"
    assert post.owner == "shop" and post.media_id == "3000000000"


def test_post_from_instaloaders_own_node() -> None:
    """What ``get_json_structure(post)["node"]`` holds for a timeline post (Post.from_iphone_struct)."""
    context = instaloader.Instaloader(quiet=True).context
    node = instaloader.get_json_structure(instaloader.Post.from_iphone_struct(context, load("timeline_media.json")))
    post = instagram.parse_post(node["node"])
    assert (post.shortcode, post.caption, post.image_url) == (bag().shortcode, bag().caption, bag().image_url)
    assert instagram.comment_count(node["node"]) == 0


def test_post_from_the_graphql_shape() -> None:
    post = instagram.parse_post(load("tagged_node.json"))
    assert post.caption == "Love my new bag from @shop" and post.owner == "zoe.styles"
    assert post.image_url == "https://scontent.cdninstagram.test/TAGGED01.jpg"


def test_post_without_a_shortcode_is_refused() -> None:
    with pytest.raises(ValueError):
        instagram.parse_post({"id": "1"})


def test_comment_count_from_each_shape() -> None:
    assert instagram.comment_count({"edge_media_to_comment": {"count": 4}}) == 4
    assert instagram.comment_count({"comments": 3}) == 3
    assert instagram.comment_count({"iphone_struct": {"comment_count": 2}}) == 2
    assert instagram.comment_count({"shortcode": "x"}) is None


def test_graphql_comment() -> None:
    inbound = instagram.parse_comment(load("comment_node.json"), bag())
    assert inbound is not None
    assert inbound.channel == "instagram" and inbound.external_id == "17900000000000001"
    assert inbound.handle == "ann.buyer" and inbound.display_name == ""  # GraphQL owners carry no full name
    assert inbound.text == "Is this bag still available in red?"
    assert inbound.sent_at == dt.datetime.fromtimestamp(1760000100, tz=dt.UTC)
    assert inbound.thread_key == "POST0001"
    assert inbound.meta == {
        "kind": "comment",
        "source": "instaloader",
        "comment_id": "17900000000000001",
        "parent_comment_id": None,
        "profile_url": "https://www.instagram.com/ann.buyer/",
        "post_shortcode": "POST0001",
        "post_url": "https://www.instagram.com/p/POST0001/",
        "caption": "New in: the red bag. Ask us anything!",
        "image_url": "https://scontent.cdninstagram.test/POST0001.jpg",
    }
    assert inbound.contact_attributes == {"instagram_profile": "https://www.instagram.com/ann.buyer/",
                                          "instagram_user_id": "5550001"}


def test_iphone_comment_answer_with_full_name() -> None:
    inbound = instagram.parse_comment(load("iphone_comment_node.json"), bag(), parent_id="17900000000000001")
    assert inbound is not None
    assert inbound.handle == "bea_shops" and inbound.display_name == "Bea Müller"
    assert inbound.meta["kind"] == "answer" and inbound.meta["parent_comment_id"] == "17900000000000001"


def test_comment_from_instaloader_datetime() -> None:
    node = {"id": 5, "created_at": dt.datetime(2026, 1, 2, 3, 4, 5), "text": "hi", "owner": {"username": "X"}}
    inbound = instagram.parse_comment(node, bag())
    assert inbound is not None and inbound.sent_at == dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_the_shops_own_comment_and_ownerless_nodes_are_skipped() -> None:
    node = load("comment_node.json")
    node["owner"]["username"] = "Shop"
    assert instagram.parse_comment(node, bag(), shop="@shop") is None
    assert instagram.parse_comment({"id": "1", "text": "x"}, bag()) is None


def test_tagged_post() -> None:
    inbound = instagram.parse_tagged_post(load("tagged_node.json"), shop="shop")
    assert inbound is not None
    assert inbound.external_id == "tag:4000000000" and inbound.handle == "zoe.styles"
    assert inbound.thread_key == "TAGGED01" and inbound.meta["kind"] == "tag"
    assert inbound.text == "Love my new bag from @shop"


def test_links_for_agents() -> None:
    assert instagram.instagram_link({"post_shortcode": "AB", "comment_id": "17"}) == \
        "https://www.instagram.com/p/AB/c/17/"
    assert instagram.instagram_link({"post_url": "https://www.instagram.com/p/AB/"}) == \
        "https://www.instagram.com/p/AB/"
    assert instagram.instagram_link({"kind": "dm"}) == "https://www.instagram.com/direct/inbox/"
    assert instagram.instagram_link({"profile_url": "https://www.instagram.com/zoe/"}) == \
        "https://www.instagram.com/zoe/"
    assert instagram.instagram_link({}) is None
    assert instagram.normalize_username("  @Shop.Name ") == "shop.name"


@pytest.mark.parametrize(
    ("exc", "kind", "reason"),
    [
        (instagram.RateLimited(666), TemporaryError, "needs attention: rate limited by Instagram: next try"),
        (instaloader.TooManyRequestsException("429 Too Many Requests"), TemporaryError, "needs attention: rate"),
        (instaloader.LoginRequiredException("Redirected to login page."), ChannelAuthError,
         "needs attention: login required"),
        (instaloader.AbortDownloadException("Redirected to login page. You've been logged out"), ChannelAuthError,
         "needs attention: login required"),
        (instaloader.AbortDownloadException('400 Bad Request - "fail" status, message "checkpoint_required"'),
         ChannelAuthError, "needs attention: checkpoint"),
        (instaloader.ProfileNotExistsException("Profile x does not exist."), PermanentError,
         "needs attention: profile not found"),
        (instaloader.ConnectionException("timed out"), TemporaryError, "needs attention: Instagram did not"),
    ],
)
def test_instaloader_failures_are_classified(exc: BaseException, kind: type, reason: str) -> None:
    error = instagram.classify_failure(exc)
    assert type(error) is kind and error.reason.startswith(reason)


def test_rate_limit_carries_the_wait() -> None:
    assert instagram.classify_failure(instagram.RateLimited(90)).retry_after == 90


def test_signature() -> None:
    body = b'{"object":"instagram"}'
    good = instagram.sign("app-secret", body)
    assert instagram.verify_signature("app-secret", body, good)
    assert not instagram.verify_signature("app-secret", body + b" ", good)
    assert not instagram.verify_signature("other", body, good)
    assert not instagram.verify_signature("app-secret", body, None)
    assert not instagram.verify_signature("app-secret", body, good.replace("sha256=", "sha1="))
    assert not instagram.verify_signature("", body, instagram.sign("", body))  # no secret configured


def test_graph_comment_webhook_ignores_unknown_fields() -> None:
    [inbound] = instagram.parse_webhook(load("graph_comment.json"), own_id="17841400000000001")
    assert inbound.external_id == "17865799348089039" and inbound.handle == "ann.buyer"
    assert inbound.thread_key == "media:17895695668004550"
    assert inbound.meta["kind"] == "answer" and inbound.meta["parent_comment_id"] == "17865799348089000"
    assert inbound.meta["source"] == "graph"


def test_graph_comment_by_the_business_itself_is_skipped() -> None:
    payload = load("graph_comment.json")
    payload["entry"][0]["changes"][0]["value"]["from"]["id"] = "17841400000000001"
    assert instagram.parse_webhook(payload, own_id="17841400000000001") == []


def test_graph_messages_skip_echoes_and_reads() -> None:
    text, image = instagram.parse_webhook(load("graph_messages.json"), own_id="17841400000000001")
    assert text.handle == "igsid:6200000000000001" and text.thread_key == "dm:6200000000000001"
    assert text.text == "Hi! Do you ship to Vienna?" and text.meta["kind"] == "dm"
    assert text.sent_at == dt.datetime.fromtimestamp(1764072099, tz=dt.UTC)
    assert image.text == "[attachment] https://lookaside.fbsbx.test/ig_messaging_cdn/1.jpg"


@pytest.mark.parametrize("payload", [{}, {"object": "user", "entry": []}, {"object": "instagram", "entry": [1]},
                                     {"object": "instagram", "entry": [{"changes": [{"field": "comments"}]}]}])
def test_odd_deliveries_yield_nothing(payload: dict[str, object]) -> None:
    assert instagram.parse_webhook(payload) == []


def out(**kw: object) -> Outbound:
    values: dict[str, object] = {"message_id": 1, "ticket_id": 1, "channel": "instagram", "to_handle": "ann.buyer",
                                 "text": "Yes, back in stock!", "reply_to_external_id": "17865799348089039"}
    return Outbound(**(values | kw))  # type: ignore[arg-type]


def test_render_comment_reply_mentions_the_customer() -> None:
    assert instagram.render_reply(out()) == ("comment", {"comment_id": "17865799348089039",
                                                         "message": "@ann.buyer Yes, back in stock!"})


def test_render_dm() -> None:
    kind, body = instagram.render_reply(out(to_handle="igsid:62", reply_to_external_id="mid"))
    assert kind == "dm" and body == {"recipient": {"id": "62"}, "message": {"text": "Yes, back in stock!"}}


@pytest.mark.parametrize("kw", [{"text": "  "}, {"reply_to_external_id": None}, {"reply_to_external_id": "tag:1"}])
def test_render_refuses_what_cannot_be_sent(kw: dict[str, object]) -> None:
    with pytest.raises(PermanentError):
        instagram.render_reply(out(**kw))


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, {"code": 190, "message": "Invalid OAuth access token."}, ChannelAuthError),
        (403, {"code": 10, "message": "Permission denied"}, ChannelAuthError),
        (400, {"code": 10, "error_subcode": 2534022, "message": "outside of allowed window"}, PermanentError),
        (400, {"code": 4, "message": "Application request limit reached"}, TemporaryError),
        (400, {"code": 613, "message": "Calls to this api have exceeded the rate limit."}, TemporaryError),
        (500, {"code": 2, "message": "Service temporarily unavailable", "is_transient": True}, TemporaryError),
        (400, {"code": 100, "message": "Invalid parameter"}, PermanentError),
        (502, {}, TemporaryError),
    ],
)
def test_graph_errors_are_classified(status: int, error: dict[str, object], kind: type) -> None:
    result = instagram.classify_graph_error(status, {"error": error} if error else {})
    assert type(result) is kind and result.reason.startswith("Instagram Graph API error")
