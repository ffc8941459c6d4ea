"""The instaloader-driven poll against a fake www.instagram.com: real instaloader code, recorded shapes."""

from __future__ import annotations

import datetime as dt
import time

import pytest
import requests
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.errors import ChannelAuthError, TemporaryError
from inbox.crypto import encrypt_json
from inbox.models import Contact, Identity, Inbox, Message, Ticket
from inbox.runtime import Storage
from tests.instagram.fake import CHECKPOINT, LOGIN_REDIRECT, TOO_MANY, FakeInstagram
from workers.instagram_sync import sync_instagram_inbox
from workers.sync import sync_inbox

T0 = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def scenario(fake: FakeInstagram) -> dict[str, str]:
    """Three posts (timeline paged two by two), comments with an answer and a reply by the shop, one tag."""
    fake.timeline_page = 2
    fake.comments_page = 2
    old = fake.add_post("POSTOLD1", "Last season", taken_at=1_759_000_000)
    bag = fake.add_post("POSTBAG1", "New in: the red bag", taken_at=1_760_000_000)
    fake.add_post("POSTNEW1", "No comments yet", taken_at=1_761_000_000)
    ids = {
        "ann": fake.comment(bag, "Ann.Buyer", "Is it still available in red?"),
        "bob": fake.comment(bag, "bob", "Price?"),
        "cat": fake.comment(bag, "cat", "Shipping to Austria?"),
        "old": fake.comment(old, "ann.buyer", "Do you restock this?"),
    }
    ids["shop_answer"] = fake.comment(bag, "shop", "@ann.buyer yes!", answer_to=ids["ann"])
    ids["ann_answer"] = fake.comment(bag, "ann.buyer", "Great, ordering now", answer_to=ids["ann"])
    fake.add_tagged("TAGGED01", "zoe.styles", "Love my new bag from @shop")
    return ids


def test_first_poll_reads_posts_comments_answers_and_tags(storage: Storage, fake: FakeInstagram,
                                                          ig_inbox_id: int) -> None:
    ids = scenario(fake)
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert result.posts == 3 and result.stored == 6 and result.tagged == 1  # the shop's own answer is skipped
    assert ("timeline", "2") in fake.log and ("comments", "POSTBAG1@2") in fake.log  # both were paged
    with storage.factory() as session:
        by_id = {m.external_id: m for m in session.scalars(select(Message))}
        assert set(by_id) == {ids["ann"], ids["bob"], ids["cat"], ids["old"], ids["ann_answer"], "tag:4000000000"}
        ann = by_id[ids["ann"]]
        assert ann.channel == "instagram" and ann.body_text == "Is it still available in red?"
        assert ann.meta["post_shortcode"] == "POSTBAG1"
        assert ann.meta["post_url"] == "https://www.instagram.com/p/POSTBAG1/"
        assert ann.meta["caption"] == "New in: the red bag"
        assert ann.meta["image_url"] == "https://scontent.cdninstagram.test/POSTBAG1.jpg"
        assert ann.meta["profile_url"] == "https://www.instagram.com/ann.buyer/"
        assert ann.meta["parent_comment_id"] is None and ann.meta["thread_key"] == "POSTBAG1"
        answer = by_id[ids["ann_answer"]]
        assert answer.meta["parent_comment_id"] == ids["ann"]
        # one ticket per (commenter, post): Ann's comment and answer share one; her comment on another post not
        assert answer.ticket_id == ann.ticket_id != by_id[ids["old"]].ticket_id
        assert by_id[ids["bob"]].ticket_id != ann.ticket_id
        assert count(session, Ticket) == 5
        handles = set(session.scalars(select(Identity.handle)))
        assert handles == {"ann.buyer", "bob", "cat", "zoe.styles"}
        assert count(session, Contact) == 4
        tag = by_id["tag:4000000000"]
        assert tag.body_text == "Love my new bag from @shop" and tag.meta["kind"] == "tag"
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and inbox.last_sync_at is not None and inbox.credential_state == "ok"
        assert inbox.cursor["profile_id"] == "1001" and inbox.cursor["tagged"] == ["TAGGED01"]
        assert inbox.cursor["posts"]["POSTBAG1"]["comments"] == 5


def test_second_poll_with_one_new_comment_creates_exactly_one_message(
    storage: Storage, fake: FakeInstagram, ig_inbox_id: int
) -> None:
    scenario(fake)
    sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    bag = fake.posts[1]
    new_id = fake.comment(bag, "dan", "Do you ship today?")
    fake.log.clear()
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=5))
    assert result.stored == 1 and result.duplicates == 0 and result.tagged == 0
    # Known profile id: no profile page; unchanged posts: no comment request; only the bag's comments read.
    assert "profile_page" not in fake.routes()
    assert {d for r, d in fake.log if r in ("media", "comments")} <= {"POSTBAG1", "POSTBAG1@", "POSTBAG1@2"}
    with storage.factory() as session:
        assert count(session, Message) == 7
        dan = session.scalar(select(Message).where(Message.external_id == new_id))
        assert dan is not None and dan.meta["post_shortcode"] == "POSTBAG1"


def test_poll_without_changes_asks_for_no_comments(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    scenario(fake)
    sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    fake.log.clear()
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=5))
    assert result.stored == 0 and result.posts_fetched == 0
    assert not {"media", "comments"} & set(fake.routes())


def test_deleted_comment_keeps_the_stored_message(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    ids = scenario(fake)
    sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    bag = fake.posts[1]
    fake.delete_comment(bag, ids["bob"])
    fake.comment(bag, "eve", "Any discount?")
    fake.comment(bag, "fay", "Colours?")
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=5))
    assert result.stored == 2
    with storage.factory() as session:
        bob = session.scalar(select(Message).where(Message.external_id == ids["bob"]))
        assert bob is not None and bob.body_text == "Price?"
        assert count(session, Message) == 8


def test_rate_limit_backs_off_exponentially(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    scenario(fake)
    fake.fail("timeline", TOO_MANY)
    with pytest.raises(TemporaryError) as first:
        sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert first.value.reason == "needs attention: rate limited by Instagram: next try in about 11 min"
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and inbox.last_error == first.value.reason and inbox.credential_state == "ok"
        backoff = inbox.cursor["backoff"]
        # instaloader's rate controller wanted ~11 minutes after the 429: longer than the 300 s base
        until = dt.datetime.fromisoformat(backoff["until"])
        assert backoff["failures"] == 1 and dt.timedelta(minutes=10) < until - T0 < dt.timedelta(minutes=12)
    asked = len(fake.log)
    with pytest.raises(TemporaryError, match="next try after"):
        sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=1))
    assert len(fake.log) == asked  # backing off: nothing was requested
    fake.fail("timeline", TOO_MANY)
    with pytest.raises(TemporaryError):
        sync_instagram_inbox(storage, ig_inbox_id, now=until + dt.timedelta(seconds=1))
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and inbox.cursor["backoff"]["failures"] == 2
    later = until + dt.timedelta(hours=1)
    result = sync_instagram_inbox(storage, ig_inbox_id, now=later)
    assert result.stored == 6
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and "backoff" not in inbox.cursor and inbox.last_sync_at == later


def test_login_required_answer_needs_attention(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    scenario(fake)
    fake.fail("timeline", LOGIN_REDIRECT)
    with pytest.raises(ChannelAuthError) as exc:
        sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert exc.value.reason.startswith("needs attention: login required")
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and inbox.credential_state == "needs_reauth"
        assert inbox.last_error is not None and inbox.last_error.startswith("needs attention: login required")
        assert inbox.cursor["backoff"]["auth"] is True
        assert inbox.cursor["profile_id"] == "1001"  # what was read before the failure is kept


def test_checkpoint_answer_needs_attention(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    scenario(fake)
    fake.fail("media", CHECKPOINT)
    with pytest.raises(ChannelAuthError, match="needs attention: checkpoint"):
        sync_instagram_inbox(storage, ig_inbox_id, now=T0)


def test_failure_half_way_keeps_what_was_read(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    ids = scenario(fake)
    fake.fail("tagged", TOO_MANY)
    with pytest.raises(TemporaryError):
        sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    with storage.factory() as session:
        assert session.scalar(select(Message).where(Message.external_id == ids["ann"])) is not None
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and "POSTBAG1" in inbox.cursor["posts"]


def test_no_stored_login_needs_attention_without_requests(storage: Storage, fake: FakeInstagram) -> None:
    from tests.factories import make_inbox

    with storage.factory() as session:
        box = make_inbox(session, channel="instagram", config={"profile": "shop", "sleep": False},
                         secrets=encrypt_json(storage.settings.secret_key, {}))
        session.commit()
        box_id = box.id
    with pytest.raises(ChannelAuthError, match="needs attention: login required"):
        sync_instagram_inbox(storage, box_id, now=T0)
    assert fake.log == []


def test_dispatched_by_workers_sync(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    scenario(fake)
    result = sync_inbox(storage, ig_inbox_id)
    assert result.stored == 6


def test_the_transport_refuses_other_hosts(fake: FakeInstagram) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get("https://example.com/", timeout=1)
    assert fake.unexpected == ["GET https://example.com/"]
    fake.unexpected.clear()


def test_rate_history_is_kept_between_polls(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    """Instaloader's RateController sees the requests of earlier polls: the cursor carries them."""
    scenario(fake)
    sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None
        history = inbox.cursor["rate"]
        assert len(history["29104886249145907"]) == 2  # the two timeline pages
        # As if this login had made 200 timeline queries in the last minutes (instaloader's per-type budget).
        recent = time.time() - 60
        inbox.cursor = {**inbox.cursor, "rate": {**history, "29104886249145907": [recent] * 200}}
        session.commit()
    fake.log.clear()
    with pytest.raises(TemporaryError, match="rate limited"):
        sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=5))
    assert "timeline" not in fake.routes()  # the controller stopped the poll before asking


def test_a_broken_login_does_not_stop_other_inboxes(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    from tests.factories import make_inbox
    from tests.instagram.fake import SESSION
    from workers.inbound import sync_and_record

    scenario(fake)
    with storage.factory() as session:
        broken = make_inbox(session, channel="instagram", config={"profile": "shop", "sleep": False},
                            secrets=encrypt_json(storage.settings.secret_key,
                                                 {"login": "other", "session": {**SESSION, "sessionid": "expired"}}))
        session.commit()
        broken_id = broken.id
    assert sync_and_record(storage, broken_id) == "needs_reauth"  # the fake redirects it to the login page
    assert sync_and_record(storage, ig_inbox_id).startswith("ok posts=3")
    with storage.factory() as session:
        bad, good = session.get(Inbox, broken_id), session.get(Inbox, ig_inbox_id)
        assert bad is not None and bad.credential_state == "needs_reauth"
        assert bad.last_error is not None and bad.last_error.startswith("needs attention: login required")
        assert good is not None and good.credential_state == "ok" and count(session, Message) == 6


def test_many_comments_come_through_the_iphone_api_with_paging(storage: Storage, fake: FakeInstagram,
                                                               ig_inbox_id: int) -> None:
    """Over 12 comments, instaloader reads them from i.instagram.com (next_min_id pages, child_comments)."""
    busy = fake.add_post("POSTBUSY", "Giveaway!")
    fake.iphone_comments_page = 5
    fake.answers_preview = 1
    first = fake.comment(busy, "gina", "Me please", full_name="Gina Rossi")
    for n in range(13):
        fake.comment(busy, f"fan{n}", f"Entry {n}")
    answers = [fake.comment(busy, name, f"answer by {name}", answer_to=first) for name in ("hal", "ivy")]
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert result.stored == 16
    assert [d for r, d in fake.log if r == "iphone_comments"] == [f"{busy.pk}@", f"{busy.pk}@5", f"{busy.pk}@10"]
    assert ("iphone_answers", f"{busy.pk}/{first}") in fake.log
    with storage.factory() as session:
        gina = session.scalar(select(Message).where(Message.external_id == first))
        assert gina is not None and gina.contact.name == "Gina Rossi"  # the iPhone API names commenters
        hal = session.scalar(select(Message).where(Message.external_id == answers[0]))
        assert hal is not None and hal.meta["parent_comment_id"] == first


def test_answers_beyond_the_preview_are_fetched(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    post = fake.add_post("POSTTHRD", "Question time")
    fake.answers_preview = 1
    parent = fake.comment(post, "jo", "Waterproof?")
    for name in ("kim", "lee", "jo"):
        fake.comment(post, name, f"{name} says hi", answer_to=parent)
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert result.stored == 4 and ("answers", f"{parent}@") in fake.log


def test_first_poll_leaves_old_comments_as_history(storage: Storage, fake: FakeInstagram, ig_inbox_id: int) -> None:
    with storage.factory() as session:
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None
        inbox.config = {**inbox.config, "backfill_days": 7}
        session.commit()
    post = fake.add_post("POSTAGED", "Old post")
    old = fake.comment(post, "old.fan", "Nice", created_at=int((T0 - dt.timedelta(days=30)).timestamp()))
    new = fake.comment(post, "new.fan", "Price?", created_at=int((T0 - dt.timedelta(days=1)).timestamp()))
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert (result.stored, result.too_old) == (1, 1)
    late = fake.comment(post, "late.fan", "Still there?", created_at=int((T0 - dt.timedelta(days=60)).timestamp()))
    assert sync_instagram_inbox(storage, ig_inbox_id, now=T0).stored == 1  # after the first poll, age is no filter
    with storage.factory() as session:
        assert set(session.scalars(select(Message.external_id))) == {new, late}
        inbox = session.get(Inbox, ig_inbox_id)
        assert inbox is not None and old in inbox.cursor["posts"]["POSTAGED"]["seen"]


def test_no_transaction_is_held_while_instagram_is_asked(storage: Storage, fake: FakeInstagram,
                                                         ig_inbox_id: int) -> None:
    """Others can write meanwhile (on SQLite a transaction would hold the write lock for the whole poll)."""
    scenario(fake)
    written: list[str] = []

    def write_meanwhile(route: str) -> None:
        with storage.factory() as session:
            inbox = session.get(Inbox, ig_inbox_id)
            assert inbox is not None
            inbox.last_error_at = T0  # any write: it must not wait for the poll
            session.commit()
        written.append(route)

    fake.on_request = write_meanwhile
    sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert "timeline" in written and "comments" in written


def test_a_post_deleted_meanwhile_skips_only_that_post(storage: Storage, fake: FakeInstagram,
                                                       ig_inbox_id: int) -> None:
    from tests.instagram.fake import Canned

    scenario(fake)
    fake.fail("media", Canned(404, {"message": "Media not found or unavailable", "status": "fail"}))
    fake.fail("media", Canned(404, {"message": "Media not found or unavailable", "status": "fail"}))
    result = sync_instagram_inbox(storage, ig_inbox_id, now=T0)
    assert result.posts_skipped == 1 and result.stored == 1 + 1  # POSTOLD1's comment and the tag
    fake.log.clear()
    second = sync_instagram_inbox(storage, ig_inbox_id, now=T0 + dt.timedelta(minutes=5))
    assert second.stored == 4 and ("media", "POSTBAG1") in fake.log  # asked again, now answered
