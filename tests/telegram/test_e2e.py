"""End to end: a bot added with the CLI in webhook mode; the Bot API stub POSTs a customer's updates to the live
app; the agent sees them in the browser and replies; a real RQ worker delivers the reply through PTB to the stub.

SQLite file only (the storage paths are covered on both databases by test_sync and test_webhook).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import socketio
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, expect, sync_playwright
from redis import Redis
from rq import Queue, SimpleWorker
from sqlalchemy import select

from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Attachment, Identity, Inbox, Message, Team
from inbox.runtime import Storage
from tests.factories import inbound, make_inbox, make_team, make_user
from tests.telegram.botapi_stub import TOKEN, BotApiStub
from tests.telegram.conftest import load_update
from tests.web.conftest import CSRF_META, PASSWORD
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve
from tests.workers.test_processes import wait_until
from tickets import lifecycle
from web import create_app
from web.cli_telegram import add_telegram
from workers import runtime
from workers.telegram_updates import TYPING_EVERY, send_typing_action, typing_key

ANNA = "5550192834"
PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(256)) * 8


@dataclass
class Site:
    live: LiveServer
    storage: Storage
    inbox_id: int
    agent_email: str
    redis: Redis

    def inbound(self) -> None:
        """What `rq worker inbound` does with the webhook's jobs, in this process."""
        SimpleWorker([Queue(runtime.INBOUND, connection=self.redis)], connection=self.redis).work(burst=True)

    def deliver(self) -> None:
        """What `rq worker outbound` does, in this process."""
        SimpleWorker([Queue(runtime.OUTBOUND, connection=self.redis)], connection=self.redis).work(burst=True)


@pytest.fixture
def site(tmp_path: Path, sqlite_template: Path, redis_url: str, tg: BotApiStub,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(sqlite_template, data / "helpline.db")
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}", secret_key="e2e-secret")
    redis = Redis.from_url(redis_url)
    redis.flushdb()
    app = create_app(settings, redis_url=redis_url)  # also points workers.runtime at this database and Redis
    with serve(app) as live:
        for key, value in {"HELPLINE_DATA_DIR": str(data), "DATABASE_URL": settings.database_url,
                           "SECRET_KEY": settings.secret_key, "HELPLINE_BASE_URL": live.url,
                           "SHOP_BOT_TOKEN": TOKEN}.items():
            monkeypatch.setenv(key, value)
        result = CliRunner().invoke(add_telegram, ["--name", "Shop bot", "--token-env", "SHOP_BOT_TOKEN",
                                                   "--mode", "webhook", "--api-base", tg.api_base])
        assert result.exit_code == 0, result.output
        storage: Storage = app.extensions["helpline"]
        with storage.factory() as session:
            team = make_team(session)
            agent = make_user(session, teams=[team], password=PASSWORD)
            inbox = session.scalars(select(Inbox)).one()
            inbox.team_id = session.scalars(select(Team.id)).one()
            session.commit()
            yield Site(live, storage, inbox.id, agent.email, redis)
    runtime.reset()
    storage.dispose()
    redis.flushdb()
    redis.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (tests/deps.py)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_customer_message_reaches_the_agent_and_the_reply_reaches_the_customer(
    site: Site, tg: BotApiStub, browser: Browser
) -> None:
    tg.push(load_update("private_text"))  # POSTed to the live app's webhook with the secret header
    assert tg.webhook_responses == [200]
    site.inbound()

    page = browser.new_context().new_page()
    page.goto(site.live.url + "/login")
    page.fill("input[name=email]", site.agent_email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.live.url + "/")
    row = page.locator(".ticket-row").first
    expect(row).to_contain_text("Bestellung #10442", timeout=15_000)  # 2 shared cores: be patient

    row.locator("a").first.click()
    expect(page.locator("#thread")).to_contain_text("Bestellung #10442")
    page.wait_for_function("() => window.helplineEvents.some(e => e[0] === 'join' && e[1].room === "
                           f"'ticket:{site_ticket(site)}')", timeout=15_000)  # live from here on
    # She corrects her order number in Telegram: the new text shows live, the old one behind an "edited" marker.
    tg.push(load_update("edited_message"))
    site.inbound()
    edits = page.locator("#thread .msg-edits")
    expect(edits).to_contain_text("1 earlier version", timeout=15_000)
    expect(page.locator("#thread .msg .text").first).to_contain_text("#10443")
    expect(edits.locator(".edit-versions")).not_to_be_visible()
    edits.locator("summary").click()
    expect(edits.locator(".edit-versions")).to_contain_text("Original")
    expect(edits.locator(".edit-versions")).to_contain_text("Bestellung #10442")

    page.click("#reply-text")
    page.keyboard.type("Hallo Anna, Ihr Paket ist unterwegs.")
    # While the agent types, her chat shows "typing…": the socket's typing event enqueued a sendChatAction job.
    outbound = Queue(runtime.OUTBOUND, connection=site.redis)
    wait_until(lambda: outbound.count >= 1, 15, "the typing job")
    page.click("#send-reply")
    expect(page.locator("#thread")).to_contain_text("Ihr Paket ist unterwegs", timeout=15_000)
    page.context.close()

    site.deliver()
    assert tg.actions and set(tg.actions) == {(ANNA, "typing")}, tg.methods()
    assert len(tg.sent) == 1, (tg.methods(), site.redis.keys("rq:*"))
    (call,) = tg.sent
    assert call.method == "sendMessage"
    assert call.params["chat_id"] == ANNA and call.params["text"] == "Hallo Anna, Ihr Paket ist unterwegs."
    assert call.params["reply_parameters"]["message_id"] == 41  # it answers her message
    with site.storage.factory() as session:
        reply = session.scalars(select(Message).where(Message.direction == "outbound")).one()
        assert reply.delivery_state == "sent" and reply.external_id == f"{ANNA}:{tg.next_message_id}"


def sign_in(site: Site, browser: Browser) -> Page:
    page = browser.new_context().new_page()
    page.goto(site.live.url + "/login")
    page.fill("input[name=email]", site.agent_email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.live.url + "/")
    return page


def test_a_photo_round_trips(site: Site, tg: BotApiStub, browser: Browser) -> None:
    tg.add_file(PHOTO, file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_21.jpg")
    tg.push(load_update("private_photo_caption"))
    assert tg.webhook_responses == [200]
    site.inbound()
    with site.storage.factory() as session:
        inbound_att = session.scalars(select(Attachment)).one()
        assert (inbound_att.filename, inbound_att.size) == ("photo_AQADsm3.jpg", len(PHOTO))
        message = session.get(Message, inbound_att.message_id)
        assert message is not None and message.body_text == "So sah das Paket bei der Ankunft aus"
        ticket_id = message.ticket_id
    # The agent sees her photo, downloads it, and answers with the same picture ("is this yours?").
    page = sign_in(site, browser)
    page.goto(f"{site.live.url}/tickets/{ticket_id}")
    link = page.locator("#thread .attachments a", has_text="photo_AQADsm3.jpg")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == PHOTO
    page.fill("#reply-text", "Ist das Ihr Paket?")
    page.set_input_files("input[name=files]", files=[{"name": "paket.jpg", "mimeType": "image/jpeg",
                                                      "buffer": PHOTO}])
    page.click("#send-reply")
    expect(page.locator("#thread")).to_contain_text("Ist das Ihr Paket?", timeout=15_000)
    page.context.close()
    site.deliver()
    (call,) = tg.sent
    assert call.method == "sendPhoto" and call.params["chat_id"] == ANNA
    assert call.params["caption"] == "Ist das Ihr Paket?" and call.files["photo"][1] == PHOTO


def test_flood_control_delays_and_a_block_fails_the_reply(site: Site, tg: BotApiStub) -> None:
    tg.push(load_update("private_text"))
    site.inbound()
    with site.storage.factory() as session:
        message = session.scalars(select(Message)).one()
        ticket = lifecycle.get_ticket(session, message.ticket_id)
        first = lifecycle.reply(session, ticket, "Einen Moment bitte.", by=None).id
        session.commit()
    from workers.enqueue import enqueue_delivery

    tg.fail("sendMessage", 429, retry_after=7)
    enqueue_delivery(first)
    before = dt.datetime.now(dt.UTC)
    site.deliver()
    after = dt.datetime.now(dt.UTC)
    with site.storage.factory() as session:
        msg = session.get(Message, first)
        assert msg is not None and msg.delivery_state == "delayed"
        assert msg.next_attempt_at is not None and msg.delivery_error == "Telegram flood control: retry in 7 s"
        # Telegram's retry_after, not our own backoff (10 s ± 20 %), sets the next attempt.
        wait = dt.timedelta(seconds=7)
        assert before + wait <= msg.next_attempt_at <= after + wait
        ticket = lifecycle.get_ticket(session, message.ticket_id)
        second = lifecycle.reply(session, ticket, "Sind Sie noch da?", by=None).id
        session.commit()
    tg.blocked.add(ANNA)
    enqueue_delivery(second)
    site.deliver()
    with site.storage.factory() as session:
        msg = session.get(Message, second)
        assert msg is not None and (msg.delivery_state, msg.delivery_error) == ("failed", "bot blocked by the user")
        identity = session.get(Identity, msg.identity_id)
        assert identity is not None and identity.unreachable == "bot blocked by the user"


def site_ticket(site: Site) -> int:
    with site.storage.factory() as session:
        return int(session.scalars(select(Message.ticket_id)).first() or 0)


def agent_socket(site: Site) -> socketio.Client:
    """A python-socketio client signed in as the site's agent (the session cookie of a real sign-in)."""
    http = requests.Session()
    match = CSRF_META.search(http.get(site.live.url + "/login").text)
    assert match is not None
    signed_in = http.post(site.live.url + "/login", allow_redirects=False,
                          data={"email": site.agent_email, "password": PASSWORD, "csrf_token": match.group(1)})
    assert signed_in.status_code == 302
    client = socketio.Client(reconnection=False)
    client.connect(site.live.url, transports=["polling"], wait_timeout=10,
                   headers={"Cookie": f"helpline_session={http.cookies['helpline_session']}"})
    return client


def test_agent_typing_shows_in_the_chat_at_most_every_few_seconds(site: Site, tg: BotApiStub) -> None:
    tg.push(load_update("private_text"))
    site.inbound()
    with site.storage.factory() as session:
        message = session.scalars(select(Message)).one()
        ticket_id = message.ticket_id
        identity = session.get(Identity, message.identity_id)
        assert identity is not None
        webchat_inbox = make_inbox(session, channel="webchat", team_id=session.scalars(select(Team.id)).one())
        other = ingest(session, webchat_inbox.id, inbound(channel="webchat", handle="visitor-1"))
        assert other is not None
        webchat_ticket = other.ticket_id
        session.commit()
    outbound = Queue(runtime.OUTBOUND, connection=site.redis)
    client = agent_socket(site)
    try:
        for room in (f"ticket:{ticket_id}", f"ticket:{webchat_ticket}"):
            assert client.call("join", {"room": room}, timeout=10)["ok"] is True
        for _ in range(5):  # a burst of keystrokes: one job
            assert client.call("typing", {"ticket_id": ticket_id, "kind": "reply"}, timeout=10)["ok"] is True
        client.call("typing", {"ticket_id": ticket_id, "kind": "note"}, timeout=10)  # a note is not for her
        client.call("typing", {"ticket_id": webchat_ticket, "kind": "reply"}, timeout=10)  # not a Telegram chat
        assert outbound.count == 1
        site.deliver()
        assert tg.actions == [(ANNA, "typing")]
        # Four seconds later (the throttle key expires) the next keystroke shows it again.
        assert site.redis.ttl(typing_key(site.inbox_id, ANNA)) <= TYPING_EVERY
        site.redis.delete(typing_key(site.inbox_id, ANNA))
        client.call("typing", {"ticket_id": ticket_id, "kind": "reply"}, timeout=10)
        site.deliver()
        assert tg.actions == [(ANNA, "typing")] * 2
        # A customer who blocked the bot gets no typing calls (Telegram would answer 403).
        with site.storage.factory() as session:
            blocked = session.get(Identity, identity.id)
            assert blocked is not None
            blocked.unreachable = "bot blocked by the user"
            session.commit()
        site.redis.delete(typing_key(site.inbox_id, ANNA))
        client.call("typing", {"ticket_id": ticket_id, "kind": "reply"}, timeout=10)
        assert outbound.count == 0
    finally:
        client.disconnect()


def test_a_failed_typing_call_is_dropped_quietly(site: Site, tg: BotApiStub) -> None:
    tg.fail("sendChatAction", 429, retry_after=3)
    assert send_typing_action(site.inbox_id, ANNA) == "failed"  # the moment has passed: no retry
    assert send_typing_action(site.inbox_id, ANNA) == "sent"
    assert tg.actions == [(ANNA, "typing")]
    tg.push(load_update("private_text"))
    site.inbound()
    tg.blocked.add(ANNA)  # she blocked the bot meanwhile: the identity shows it before an agent replies
    assert send_typing_action(site.inbox_id, ANNA) == "failed"
    with site.storage.factory() as session:
        identity = session.scalars(select(Identity)).one()
        assert identity.unreachable == "bot blocked by the user"
