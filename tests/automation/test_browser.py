"""An admin creates a rule in Chromium, a customer message comes in, and the rule acts on it (RQ job, real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Ticket
from tests.factories import inbound, make_inbox, make_team, make_user
from tests.web.conftest import PASSWORD
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve
from web import create_app
from workers import runtime

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_rule_made_in_the_admin_page_acts_on_an_ingested_message(
    browser: Browser, settings: Settings, redis: Redis, redis_url: str
) -> None:
    app = create_app(settings, redis_url=redis_url)  # installs the AutomationEnqueuer in this process
    try:
        factory = app.extensions["helpline"].factory
        with factory() as session:
            team = make_team(session, name="Support")
            make_user(session, email="boss@helpline.test", name="Bo Boss", role="admin", password=PASSWORD)
            agent = make_user(session, email="ada@helpline.test", name="Ada Agent", teams=[team], password=PASSWORD)
            inbox_id = make_inbox(session, name="Shop mail", team_id=team.id).id
            agent_id = agent.id
            session.commit()
        with serve(app) as live:
            page = browser.new_context().new_page()
            page.goto(live.url + "/login")
            page.fill("input[name=email]", "boss@helpline.test")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(live.url + "/")
            page.goto(live.url + "/settings")
            page.click("nav.settings-nav >> text=Automation")
            page.click("text=Add a rule")
            page.fill("input[name=name]", "Refunds to Ada")
            page.select_option("select[name=trigger]", "message_received")
            page.select_option("select[name=cond-0-field]", "subject")
            page.select_option("select[name=cond-0-op]", "contains")
            page.fill("input[name=cond-0-value]", "refund")
            page.select_option("select[name=act-0-type]", "add_tag")
            page.fill("textarea[name=act-0-value]", "refunds")
            page.select_option("select[name=act-1-type]", "assign_agent")
            page.select_option("select[name=act-1-agent]", str(agent_id))
            page.select_option("select[name=act-2-type]", "set_priority")
            page.fill("textarea[name=act-2-value]", "nope")
            page.click("button:has-text('Save rule')")
            expect(page.locator(".flash[role=alert]")).to_contain_text("Set priority: one of low, normal, high, urgent")
            expect(page.locator("input[name=name]")).to_have_value("Refunds to Ada")  # nothing typed is lost
            page.fill("textarea[name=act-2-value]", "high")
            page.click("button:has-text('Save rule')")
            expect(page.locator("table.rules")).to_contain_text("Refunds to Ada")
            expect(page.locator("table.rules")).to_contain_text("Subject contains refund")

            with factory() as session:
                hit = ingest(session, inbox_id, inbound(subject="Refund for order 9", handle="cy@example.com"))
                miss = ingest(session, inbox_id, inbound(subject="Where is my parcel", handle="di@example.com"))
                assert hit is not None and miss is not None
                session.commit()  # → process_event jobs on the real Redis
                hit_ticket, miss_ticket = hit.ticket_id, miss.ticket_id
            queues = [runtime.queue(name) for name in runtime.QUEUES]
            SimpleWorker(queues, connection=runtime.redis()).work(burst=True, logging_level="WARNING")

            page.goto(f"{live.url}/tickets/{hit_ticket}")
            expect(page.locator(".badge.tag")).to_contain_text("#refunds")
            expect(page.locator("body")).to_contain_text("Ada Agent")
            page.goto(f"{live.url}/tickets/{miss_ticket}")
            expect(page.locator(".badge.tag")).to_have_count(0)
            page.goto(live.url + "/settings/automation")
            expect(page.locator("table.rules tbody tr").first.locator("td").nth(5)).to_contain_text("1")
        with factory() as session:
            ticket = session.get_one(Ticket, hit_ticket)
            assert (ticket.priority, ticket.assignee_id) == ("high", agent_id)
            assert session.scalar(select(Ticket.priority).where(Ticket.id == miss_ticket)) == "normal"
    finally:
        runtime.reset()
        app.extensions["helpline"].dispose()
