"""Instagram: pure mapping of instaloader's post/comment nodes and Graph API webhooks, and Graph API replies.

Sources of the shapes read here:
- instaloader 4.16 (https://instaloader.github.io/module/structures.html): ``Post``, ``PostComment``,
  ``PostCommentAnswer``, ``Profile`` and ``get_json_structure``; the node dicts are those its GraphQL and
  iPhone-API answers carry (``shortcode``/``code``, ``display_url``/``image_versions2``, ``owner``/``user``).
- Instagram Graph API webhooks (https://developers.facebook.com/docs/graph-api/webhooks/getting-started and
  https://developers.facebook.com/docs/instagram-platform/webhooks): ``hub.challenge`` handshake,
  ``X-Hub-Signature-256``, ``entry[].changes[]`` for ``comments``/``live_comments``/``mentions`` and
  ``entry[].messaging[]`` for direct messages.
- Replies: ``POST /{ig-comment-id}/replies`` (https://developers.facebook.com/docs/instagram-platform/
  instagram-graph-api/reference/ig-comment/replies) and ``POST /{ig-user-id}/messages``
  (https://developers.facebook.com/docs/instagram-platform/instagram-api-with-instagram-login/messaging-api),
  errors per https://developers.facebook.com/docs/graph-api/guides/error-handling.

Everything above ``InstagramChannel`` is pure: no network, no database, no clock. Instaloader only reads, so an
inbox without Graph API mode is answered by hand on Instagram (``instagram_link``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from connectors.base import Outbound
from connectors.errors import ChannelAuthError, ChannelError, PermanentError, TemporaryError
from inbox.ingest import Inbound

log = logging.getLogger(__name__)

CHANNEL = "instagram"
WEB = "https://www.instagram.com"
DEFAULT_GRAPH_BASE = "https://graph.facebook.com"
DEFAULT_GRAPH_VERSION = "v21.0"
ATTENTION = "needs attention: "  # prefix of every inbox-level error, shown as is to admins
MANUAL_REPLY = "Instagram replies are sent by hand: open on Instagram"
DM_PREFIX = "igsid:"  # Graph API DMs name the sender by an Instagram-scoped id, never by username
COMMENT_FIELDS = ("comments", "live_comments")


# --- names and links ---------------------------------------------------------------------------------------


def normalize_username(name: str) -> str:
    """``@Shop.Name `` -> ``shop.name``: Instagram usernames are case-insensitive."""
    return name.strip().lstrip("@").strip().lower()


def profile_url(username: str) -> str:
    return f"{WEB}/{normalize_username(username)}/"


def post_url(shortcode: str) -> str:
    return f"{WEB}/p/{shortcode}/"


def comment_url(shortcode: str, comment_id: str) -> str:
    return f"{WEB}/p/{shortcode}/c/{comment_id}/"


def instagram_link(meta: Mapping[str, Any]) -> str | None:
    """Where an agent answers a message by hand: the comment, else its post, else the DM inbox or the profile."""
    shortcode = meta.get("post_shortcode")
    comment_id = meta.get("comment_id")
    if shortcode and comment_id:
        return comment_url(str(shortcode), str(comment_id))
    if meta.get("post_url"):
        return str(meta["post_url"])
    if shortcode:
        return post_url(str(shortcode))
    if meta.get("kind") == "dm":
        return f"{WEB}/direct/inbox/"
    if meta.get("profile_url"):
        return str(meta["profile_url"])
    return None


# --- instaloader nodes -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PostRef:
    """What a comment shows of its post as context in the ticket."""

    shortcode: str
    url: str
    caption: str
    image_url: str | None
    owner: str  # username, lowercase; "" when the node does not say
    media_id: str | None = None

    def meta(self) -> dict[str, Any]:
        return {
            "post_shortcode": self.shortcode,
            "post_url": self.url,
            "caption": self.caption,
            "image_url": self.image_url,
        }


def _caption(node: Mapping[str, Any]) -> str:
    caption = node.get("caption")
    if isinstance(caption, Mapping):  # iPhone API: {"text": ...}
        return str(caption.get("text") or "")
    if isinstance(caption, str):  # instaloader's own node built from the iPhone struct
        return caption
    edges = (node.get("edge_media_to_caption") or {}).get("edges") or []
    if edges:
        return str(edges[0].get("node", {}).get("text") or "")
    return ""


def _first_image(node: Mapping[str, Any]) -> str | None:
    if node.get("display_url"):
        return str(node["display_url"])
    candidates = (node.get("image_versions2") or {}).get("candidates") or []
    if candidates and candidates[0].get("url"):
        return str(candidates[0]["url"])
    children = (node.get("edge_sidecar_to_children") or {}).get("edges") or []
    if children and children[0].get("node", {}).get("display_url"):
        return str(children[0]["node"]["display_url"])
    carousel = node.get("carousel_media") or []
    if carousel:
        return _first_image(carousel[0])
    iphone = node.get("iphone_struct")
    return _first_image(iphone) if isinstance(iphone, Mapping) else None


def _owner_node(node: Mapping[str, Any]) -> Mapping[str, Any]:
    for key in ("owner", "user"):
        if isinstance(node.get(key), Mapping):
            owner: Mapping[str, Any] = node[key]
            return owner
    iphone = node.get("iphone_struct")
    if isinstance(iphone, Mapping) and isinstance(iphone.get("user"), Mapping):
        user: Mapping[str, Any] = iphone["user"]
        return user
    return {}


def parse_post(node: Mapping[str, Any]) -> PostRef:
    """A post node (GraphQL, iPhone API, or instaloader's ``get_json_structure(post)["node"]``) -> ``PostRef``."""
    shortcode = str(node.get("shortcode") or node.get("code") or "")
    if not shortcode:
        raise ValueError("post node has neither shortcode nor code")
    media_id = node.get("pk") or node.get("id")  # iPhone API: "id" is "<pk>_<owner id>"
    return PostRef(
        shortcode=shortcode,
        url=post_url(shortcode),
        caption=_caption(node),
        image_url=_first_image(node),
        owner=normalize_username(str(_owner_node(node).get("username") or "")),
        media_id=str(media_id) if media_id is not None else None,
    )


def comment_count(node: Mapping[str, Any]) -> int | None:
    """The post's comment count as the listing says (answers included), or None if the node does not say.

    Read from the node so that checking a post costs no request: instaloader's ``Post.comments`` would fetch
    the post's full metadata when the listing node lacks ``edge_media_to_comment``.
    """
    for key in ("edge_media_to_comment", "edge_media_to_parent_comment", "edge_media_preview_comment"):
        edge = node.get(key)
        if isinstance(edge, Mapping) and isinstance(edge.get("count"), int):
            return int(edge["count"])
    for key in ("comments", "comment_count"):
        if isinstance(node.get(key), int):
            return int(node[key])
    iphone = node.get("iphone_struct")
    if isinstance(iphone, Mapping) and isinstance(iphone.get("comment_count"), int):
        return int(iphone["comment_count"])
    return None


def _timestamp(value: Any) -> dt.datetime | None:
    if isinstance(value, int | float) and value > 0:
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if isinstance(value, dt.datetime):  # instaloader's naive *_utc datetimes
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return None


def _who(owner: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    handle = normalize_username(str(owner.get("username") or ""))
    user_id = owner.get("id") or owner.get("pk")
    attributes: dict[str, Any] = {"instagram_profile": profile_url(handle)} if handle else {}
    if user_id is not None:
        attributes["instagram_user_id"] = str(user_id)
    return handle, str(owner.get("full_name") or "").strip(), attributes


def parse_comment(
    node: Mapping[str, Any], post: PostRef, *, parent_id: str | None = None, shop: str = ""
) -> Inbound | None:
    """One comment (or answer under a comment) -> ``Inbound`` on the (commenter, post) ticket.

    ``node`` is a GraphQL comment (``id``, ``created_at``, ``text``, ``owner``) or an iPhone-API one (``pk``,
    ``user``). Returns None for the shop's own comments (its answers typed in the Instagram app) and for nodes
    without an author.
    """
    comment_id = node.get("id") or node.get("pk")
    handle, name, attributes = _who(_owner_node(node))
    if comment_id is None or not handle:
        return None
    if shop and handle == normalize_username(shop):
        return None  # the shop answering in the app: not a customer message
    return Inbound(
        channel=CHANNEL,
        external_id=str(comment_id),
        handle=handle,
        display_name=name,
        text=str(node.get("text") or ""),
        sent_at=_timestamp(node.get("created_at") or node.get("created_at_utc")),
        thread_key=post.shortcode,
        contact_attributes=attributes,
        meta={
            "kind": "answer" if parent_id else "comment",
            "source": "instaloader",
            "comment_id": str(comment_id),
            "parent_comment_id": parent_id,
            "profile_url": profile_url(handle),
            **post.meta(),
        },
    )


def parse_tagged_post(node: Mapping[str, Any], *, shop: str = "") -> Inbound | None:
    """A post in which the shop is tagged -> ``Inbound`` from the post's author, on the (author, post) ticket."""
    post = parse_post(node)
    handle, name, attributes = _who(_owner_node(node))
    if not handle or (shop and handle == normalize_username(shop)):
        return None
    return Inbound(
        channel=CHANNEL,
        external_id=f"tag:{post.media_id or post.shortcode}",  # never collides with a comment id
        handle=handle,
        display_name=name,
        text=post.caption,
        sent_at=_timestamp(node.get("taken_at_timestamp") or node.get("date") or node.get("taken_at")),
        thread_key=post.shortcode,
        contact_attributes=attributes,
        meta={"kind": "tag", "source": "instaloader", "profile_url": profile_url(handle), **post.meta()},
    )


# --- instaloader failures ----------------------------------------------------------------------------------


class RateLimited(Exception):
    """Instaloader's rate controller asked for a wait longer than a poll may sleep; retry after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Instagram rate limit: wait {round(seconds)} s")
        self.seconds = seconds


_AUTH_MARKERS = ("login_required", "login page", "logged out", "login required", "wrong password", "two-factor")
_CHECKPOINT_MARKERS = ("checkpoint_required", "challenge_required", "feedback_required", "checkpoint")


def classify_failure(exc: BaseException) -> ChannelError:
    """Map an instaloader exception (matched by class name and message, so this stays import-free) to a
    ``ChannelError`` whose reason reads "needs attention: <reason>"."""
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, RateLimited):
        minutes = max(1, round(exc.seconds / 60))
        return TemporaryError(f"{ATTENTION}rate limited by Instagram: next try in about {minutes} min",
                              retry_after=exc.seconds)
    kind = type(exc).__name__
    text = str(exc)
    lower = text.lower()
    if kind == "TooManyRequestsException" or re.search(r"\b429\b", text):
        return TemporaryError(f"{ATTENTION}rate limited by Instagram (429)")
    if any(marker in lower for marker in _CHECKPOINT_MARKERS):
        return ChannelAuthError(f"{ATTENTION}checkpoint: confirm the login in the Instagram app, then store a new "
                                f"session ({text[:200]})")
    if kind in ("LoginRequiredException", "BadCredentialsException", "TwoFactorAuthRequiredException",
                "LoginException") or any(marker in lower for marker in _AUTH_MARKERS):
        return ChannelAuthError(f"{ATTENTION}login required: store a new Instagram session ({text[:200]})")
    if kind == "PrivateProfileNotFollowedException":
        return ChannelAuthError(f"{ATTENTION}the profile is private and the stored login does not follow it")
    if kind == "ProfileNotExistsException":
        return PermanentError(f"{ATTENTION}profile not found ({text[:200]})")
    return TemporaryError(f"{ATTENTION}Instagram did not answer as expected ({kind}: {text[:300]})")


# --- Graph API webhooks ------------------------------------------------------------------------------------


def verify_signature(app_secret: str, body: bytes, header: str | None) -> bool:
    """``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with the app secret>``."""
    if not app_secret or not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower())


def sign(app_secret: str, body: bytes) -> str:
    """The header value Meta sends with ``body`` (used by tests and by the webhook's self-check)."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def _graph_comment(value: Mapping[str, Any], own_id: str, field: str) -> Inbound | None:
    sender = value.get("from") or {}
    comment_id = value.get("id")
    username = normalize_username(str(sender.get("username") or ""))
    if not comment_id or not username or (own_id and str(sender.get("id")) == own_id):
        return None  # our own replies come back as comments too
    media = value.get("media") or {}
    media_id = str(media.get("id") or "")
    parent = value.get("parent_id")
    return Inbound(
        channel=CHANNEL,
        external_id=str(comment_id),
        handle=username,
        text=str(value.get("text") or ""),
        thread_key=f"media:{media_id}" if media_id else None,
        contact_attributes={"instagram_profile": profile_url(username), "instagram_user_id": str(sender.get("id"))},
        meta={
            "kind": "answer" if parent else "comment",
            "source": "graph",
            "field": field,
            "comment_id": str(comment_id),
            "parent_comment_id": str(parent) if parent else None,
            "media_id": media_id or None,
            "profile_url": profile_url(username),
        },
    )


def _graph_message(event: Mapping[str, Any], own_id: str) -> Inbound | None:
    message = event.get("message")
    sender = str((event.get("sender") or {}).get("id") or "")
    if not isinstance(message, Mapping) or not message.get("mid") or not sender:
        return None  # reads, reactions, postbacks: not customer text
    if message.get("is_echo") or (own_id and sender == own_id):
        return None  # our own message, echoed back
    attachments = [a.get("payload", {}).get("url") for a in message.get("attachments") or [] if a.get("payload")]
    text = str(message.get("text") or "")
    if not text and attachments:
        text = "\n".join(f"[attachment] {url}" for url in attachments if url)
    ts = event.get("timestamp")
    return Inbound(
        channel=CHANNEL,
        external_id=str(message["mid"]),
        handle=f"{DM_PREFIX}{sender}",
        text=text,
        sent_at=_timestamp(ts / 1000) if isinstance(ts, int | float) else None,
        thread_key=f"dm:{sender}",
        meta={"kind": "dm", "source": "graph", "igsid": sender, "attachments": [u for u in attachments if u]},
    )


def parse_webhook(payload: Mapping[str, Any], *, own_id: str = "") -> list[Inbound]:
    """A Graph API webhook delivery -> the customer messages in it; unknown objects and fields are ignored."""
    if payload.get("object") not in ("instagram", "page"):
        return []
    out: list[Inbound] = []
    for entry in payload.get("entry") or []:
        if not isinstance(entry, Mapping):
            continue
        for change in entry.get("changes") or []:
            if isinstance(change, Mapping) and change.get("field") in COMMENT_FIELDS:
                value = change.get("value")
                if isinstance(value, Mapping) and (item := _graph_comment(value, own_id, change["field"])):
                    out.append(item)
        for event in entry.get("messaging") or []:
            if isinstance(event, Mapping) and (item := _graph_message(event, own_id)):
                out.append(item)
    return out


# --- Graph API replies -------------------------------------------------------------------------------------

# https://developers.facebook.com/docs/graph-api/guides/error-handling#errorcodes
_TEMPORARY_CODES = frozenset({1, 2, 4, 17, 32, 341, 368, 613, 80002, 80006})
_AUTH_CODES = frozenset({102, 190, 200, 210, 230, 299})
_OUTSIDE_WINDOW = 2534022  # code 10: the 24-hour messaging window has closed


def classify_graph_error(status: int, body: Mapping[str, Any]) -> ChannelError:
    """A Graph API error answer -> TemporaryError / PermanentError / ChannelAuthError with a readable reason."""
    found = body.get("error")
    error: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    subcode = error.get("error_subcode")
    message = str(error.get("message") or f"HTTP {status}")
    reason = f"Instagram Graph API error {code if code is not None else status}: {message}"[:500]
    if code == 10 and subcode == _OUTSIDE_WINDOW:
        return PermanentError(f"{reason} (outside the 24-hour messaging window)")
    if code in _AUTH_CODES or code == 10 or (status == 401 and code is None):
        return ChannelAuthError(reason)
    if code in _TEMPORARY_CODES or status == 429 or status >= 500 or error.get("is_transient"):
        return TemporaryError(reason)
    return PermanentError(reason)


def render_reply(outbound: Outbound) -> tuple[str, dict[str, Any]]:
    """Which Graph API call answers ``outbound``: ("comment", params) for a comment reply, ("dm", json) for a DM."""
    text = outbound.text.strip()
    if not text:
        raise PermanentError("an Instagram reply needs text")
    if outbound.to_handle.startswith(DM_PREFIX):
        return "dm", {"recipient": {"id": outbound.to_handle.removeprefix(DM_PREFIX)}, "message": {"text": text[:1000]}}
    comment_id = outbound.reply_to_external_id or outbound.meta.get("comment_id")
    if not comment_id or str(comment_id).startswith("tag:"):
        raise PermanentError("this Instagram message has no comment to reply to: open on Instagram")
    mention = normalize_username(outbound.to_handle)
    if mention and f"@{mention}" not in text.lower():
        text = f"@{mention} {text}"  # as the app does, so the customer is notified
    return "comment", {"comment_id": str(comment_id), "message": text[:2200]}


class InstagramChannel:
    """Sends replies through the Graph API (business accounts); other inboxes are answered by hand.

    config: ``mode`` ("graph" or "instaloader"), ``graph_api_base``, ``graph_api_version``, ``ig_user_id``;
    secrets: ``access_token``.
    """

    name = CHANNEL

    def __init__(self, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.graph = self.config.get("mode") == "graph"
        self.base = str(self.config.get("graph_api_base") or DEFAULT_GRAPH_BASE).rstrip("/")
        self.version = str(self.config.get("graph_api_version") or DEFAULT_GRAPH_VERSION)
        self.user_id = str(self.config.get("ig_user_id") or "me")
        self.token = str(secrets.get("access_token") or "")
        self.timeout = float(self.config.get("timeout", 30))

    def send(self, outbound: Outbound) -> str:
        if not self.graph:
            raise PermanentError(MANUAL_REPLY)
        if not self.token:
            raise ChannelAuthError("no Graph API access token stored for this Instagram inbox")
        kind, data = render_reply(outbound)
        if kind == "dm":
            answer = self._post(f"{self.user_id}/messages", json=data)
            return str(answer.get("message_id") or answer.get("id") or "")
        answer = self._post(f"{data['comment_id']}/replies", params={"message": data["message"]})
        return str(answer.get("id") or "")

    def _post(self, path: str, **kwargs: Any) -> dict[str, Any]:
        url = f"{self.base}/{self.version}/{path}"
        # The token goes in a header, not the query string, so that it never lands in access logs.
        headers = {"Authorization": f"Bearer {self.token}"}
        try:
            resp = requests.post(url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise TemporaryError(f"Instagram Graph API unreachable: {exc.__class__.__name__}") from exc
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if resp.status_code != 200 or "error" in body:
            raise classify_graph_error(resp.status_code, body)
        return body
