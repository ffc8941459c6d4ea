"""Channel health, live, as people see it: a real worker process polls a channel that is down; the admin's health
page and the banner of the inbox's agents change without a reload, other teams hear nothing; sync now, retry of a
failed job and of a failed reply go through the real queues (Chromium via Playwright, Redis, an RQ worker)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from redis import Redis
from rq import Queue
from rq.registry import FailedJobRegistry

from inbox.config import Settings
from inbox.db import utcnow
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests import factories
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve
from tests.workers.conftest import Workers, customer_ticket, process_env
from tests.workers.stub_channel import StubServer
from tests.workers.test_processes import wait_until
from tickets import lifecycle
from web import create_app

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")
PASSWORD = "correct horse"
SLOW = 90_000  # ms: a loaded machine, a worker that forks per job


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def signed_in(browser: Browser, url: str, email: str, path: str) -> Page:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.goto(url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    if path != "/":
        page.goto(url + path)
    expect(page.locator("#live-status")).to_have_text("live", timeout=SLOW)
    return page


def health_events(page: Page, inbox_id: int) -> list[object]:
    return page.evaluate(  # type: ignore[no-any-return]
        f"() => window.helplineEvents.filter(e => e[0] === 'inbox.health' && e[1].id === {inbox_id})")


def test_health_page_and_banner_live_with_a_real_worker(
    file_storage: Storage, file_settings: Settings, stub: StubServer, redis_url: str, redis: Redis,
    workers_factory: Callable[[dict[str, str]], Workers], browser: Browser, tmp_path: Path,
) -> None:
    with file_storage.factory() as session:
        team_a, team_b = factories.make_team(session), factories.make_team(session)
        admin = factories.make_user(session, role="admin", password=PASSWORD)
        agent_a = factories.make_user(session, teams=[team_a], password=PASSWORD)
        agent_b = factories.make_user(session, teams=[team_b], password=PASSWORD)
        down = factories.make_inbox(session, name="Shop mail", channel="stub", team_id=team_a.id,
                                    config={"port": 1, "alert_after": 20})  # nothing listens on port 1
        fine = factories.make_inbox(session, name="Wholesale", channel="stub", team_id=team_b.id,
                                    config={"port": stub.port})
        failed = lifecycle.reply(session, customer_ticket(session, fine), "Your order shipped", by=None)
        failed.delivery_state, failed.delivery_error = "failed", "502 Bad Gateway"
        session.commit()
        ids = (down.id, fine.id, failed.id, admin.email, agent_a.email, agent_b.email)
    down_id, fine_id, reply_id, admin_email, a_email, b_email = ids
    marker = tmp_path / "flaky-marker"
    Queue("default", connection=redis).enqueue("tests.workers.flaky_job.fail_once", str(marker), job_id="flaky-1")

    app = create_app(file_settings, redis_url=redis_url)
    workers = workers_factory(process_env(file_settings, redis_url))
    workers.start()
    failed_jobs = FailedJobRegistry("default", connection=redis)
    wait_until(lambda: failed_jobs.count == 1, 60, "the flaky job to fail", workers)
    with serve(app) as live:
        admin_page = signed_in(browser, live.url, admin_email, "/settings/health")
        page_a = signed_in(browser, live.url, a_email, "/")
        page_b = signed_in(browser, live.url, b_email, "/")
        expect(admin_page.locator("table.failed-jobs")).to_contain_text("temporary trouble")
        expect(admin_page.locator(f"#failed-reply-{reply_id}")).to_contain_text("502 Bad Gateway")
        expect(page_a.locator("#health-banner")).to_be_hidden()

        # The channel goes down: its last good sync was just now, and "sync now" makes the worker find it down.
        with file_storage.factory() as session:
            inbox = session.get(Inbox, down_id)
            assert inbox is not None
            inbox.last_sync_at = utcnow()
            session.commit()
        admin_page.locator(f"#health-inbox-{down_id} button", has_text="Sync now").click()
        expect(admin_page.locator(".flash")).to_contain_text("Sync of Shop mail queued")
        row = admin_page.locator(f"#health-inbox-{down_id}")
        expect(row).to_have_attribute("data-state", "failing", timeout=SLOW)  # live: no reload
        expect(row).to_contain_text("connection failed")
        # Its agents see the banner once it has failed for 20 s (a timer in the page, or the next event).
        banner = page_a.locator("#health-banner")
        expect(banner).to_be_visible(timeout=SLOW)
        expect(banner).to_contain_text("Shop mail")
        expect(banner).to_contain_text("connection failed")
        assert health_events(page_a, down_id)
        if os.environ.get("HELPLINE_ARTIFACTS"):
            page_a.screenshot(path=str(Path(os.environ["HELPLINE_ARTIFACTS"]) / "failing-channel-banner.png"))
            admin_page.screenshot(path=str(Path(os.environ["HELPLINE_ARTIFACTS"]) / "health-page.png"),
                                  full_page=True)
        expect(row).to_have_attribute("data-state", "alert", timeout=SLOW)  # the page's periodic redraw

        # The admin fixes the channel and syncs again: the banner goes from the agent's screen, live.
        with file_storage.factory() as session:
            inbox = session.get(Inbox, down_id)
            assert inbox is not None
            inbox.config = {"port": stub.port, "alert_after": 20}
            session.commit()
        admin_page.locator(f"#health-inbox-{down_id} button", has_text="Sync now").click()
        expect(admin_page.locator(f"#health-inbox-{down_id}")).to_have_attribute("data-state", "ok", timeout=SLOW)
        expect(banner).to_be_hidden(timeout=SLOW)

        # Team B never heard of team A's inbox, and saw no banner.
        expect(page_b.locator("#health-banner")).to_be_hidden()
        assert health_events(page_b, down_id) == []

        # Retry the failed job (it succeeds now) and the failed reply (the channel takes it).
        admin_page.locator("table.failed-jobs button", has_text="Retry").click()
        expect(admin_page.locator(".flash")).to_contain_text("Job queued again")
        wait_until(lambda: failed_jobs.count == 0 and marker.exists(), 60, "the retried job", workers)
        admin_page.locator(f"#failed-reply-{reply_id} button", has_text="Retry").click()
        expect(admin_page.locator(".flash")).to_contain_text("queued again")

        def sent() -> bool:
            with file_storage.factory() as session:
                msg = session.get(Message, reply_id)
                return msg is not None and msg.delivery_state == "sent"

        wait_until(sent, 60, "the retried reply", workers)
        assert len(stub.received) == 1
        expect(admin_page.locator(f"#failed-reply-{reply_id}")).to_have_count(0, timeout=SLOW)
    app.extensions["helpline"].dispose()
