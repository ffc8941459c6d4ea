"""The people and workspace settings in a real browser (Debian's Chromium through Playwright) on a live server:
invite → sign-up → sign-in, deactivate → cannot sign in and the tickets moved, a calendar edit that changes
business time, a tag merge, and a personal canned response another agent never sees."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Tag, Ticket, TicketTag, User
from tests.factories import inbound, make_inbox, make_team, make_user
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve
from tickets import lifecycle
from tickets.business_hours import business_seconds, load_calendars
from web import create_app

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")
PASSWORD = "correct horse"


@dataclass
class Site:
    live: LiveServer
    inbox_id: int
    leaving_id: int
    leaving_tickets: list[int]
    ticket_id: int

    def session(self) -> Any:
        return self.live.app.extensions["helpline"].factory()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("people")
    shutil.copy(sqlite_template, data / "helpline.db")
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}", secret_key="people-test")
    app = create_app(settings)
    with serve(app) as live, app.extensions["helpline"].factory() as session:
        support = make_team(session, name="Support")
        make_user(session, email="olga@shop.test", name="Olga Owner", role="admin", password=PASSWORD)
        leaving = make_user(session, email="leo@shop.test", name="Leo Leaving", teams=[support], password=PASSWORD)
        make_user(session, email="ada@shop.test", name="Ada Agent", teams=[support], password=PASSWORD)
        box = make_inbox(session, name="Support mail", team_id=support.id)
        tickets = []
        for subject, tag in (("Broken lamp", "refund"), ("Late parcel", "refunds"), ("Wrong size", "refund")):
            message = ingest(session, box.id, inbound(subject=subject))
            assert message is not None
            lifecycle.add_tag(session, message.ticket, tag)
            tickets.append(message.ticket)
        for ticket in tickets[:2]:
            lifecycle.assign(session, ticket, leaving.id)
        session.commit()
        yield Site(live, box.id, leaving.id, [t.id for t in tickets[:2]], tickets[2].id)
    app.extensions["helpline"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(browser: Browser, site: Site, email: str, password: str = PASSWORD) -> Page:
    page = browser.new_context().new_page()
    page.set_default_timeout(30_000)  # the machine is shared and loaded
    page.goto(site.live.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("main button[type=submit]")
    return page


def test_invite_sign_up_and_sign_in(browser: Browser, site: Site) -> None:
    admin = sign_in(browser, site, "olga@shop.test")
    admin.wait_for_url(site.live.url + "/")
    admin.click("header >> text=People")
    expect(admin.locator("h1")).to_have_text("People")
    admin.fill("#invite-form input[name=email]", "nina@shop.test")
    admin.select_option("#invite-form select[name=role]", "agent")
    admin.check("#invite-form >> text=Support")
    admin.click("#invite-form button[type=submit]")
    expect(admin.locator("#invite-not-mailed")).to_contain_text("no email inbox")  # no mail inbox: copy the link
    link = admin.locator("#invite-link").inner_text().strip()
    assert "/invite/" in link

    invitee = browser.new_context().new_page()
    invitee.goto(link)
    expect(invitee.locator("main")).to_contain_text("invited as agent with nina@shop.test")
    invitee.fill("input[name=name]", "Nina New")
    invitee.fill("input[name=password]", "nina's long password")
    invitee.fill("input[name=confirm]", "nina's long password")
    invitee.click("main button[type=submit]")
    invitee.wait_for_url(site.live.url + "/")
    expect(invitee.locator("header .who")).to_have_text("Nina New")
    invitee.click("header >> text=Sign out")
    invitee.goto(link)
    expect(invitee.locator("h1")).to_have_text("This link no longer works")

    again = sign_in(browser, site, "nina@shop.test", "nina's long password")
    again.wait_for_url(site.live.url + "/")
    expect(again.locator(f"#ticket-{site.ticket_id}, [data-ticket-id='{site.ticket_id}']").first).to_be_visible()


def test_deactivate_moves_tickets_and_blocks_sign_in(browser: Browser, site: Site) -> None:
    leo = sign_in(browser, site, "leo@shop.test")
    leo.wait_for_url(site.live.url + "/")
    admin = sign_in(browser, site, "olga@shop.test")
    admin.goto(site.live.url + "/settings/people")
    row = admin.locator(f"#user-{site.leaving_id}")
    row.locator("form.deactivate select").select_option(label="give their open tickets to Ada Agent")
    row.locator("form.deactivate button").click()
    expect(admin.locator(".flash")).to_contain_text("Leo Leaving can no longer sign in. 2 open tickets moved.")
    expect(admin.locator(f"#user-{site.leaving_id}")).to_contain_text("deactivated")

    leo.reload()
    expect(leo.locator("h1")).to_have_text("Sign in to Helpline")  # the open session ended
    retry = sign_in(browser, site, "leo@shop.test")
    expect(retry.locator("main")).to_contain_text("Wrong email or password.")
    with site.session() as session:
        ada = session.scalar(select(User.id).where(User.email == "ada@shop.test"))
        owners = set(session.scalars(select(Ticket.assignee_id).where(Ticket.id.in_(site.leaving_tickets))))
    assert owners == {ada}


def test_calendar_edit_changes_business_time(browser: Browser, site: Site) -> None:
    admin = sign_in(browser, site, "olga@shop.test")
    admin.goto(site.live.url + "/settings/hours")
    expect(admin.locator(".empty")).to_contain_text("No calendars yet")
    admin.click("text=Add a calendar")
    admin.fill("input[name=name]", "Shop hours")
    admin.fill("input[name=timezone]", "Europe/Berlin")
    admin.select_option("select[name=applies_to]", label="inbox Support mail")
    admin.fill("input[name=mon]", "10:00-12:00")
    admin.click("#calendar-form button[type=submit]")
    expect(admin.locator(".flash")).to_contain_text("Saved Shop hours")
    # Monday 2026-03-02, 08:00-12:00 UTC = 09:00-13:00 in Berlin: open 10:00-12:00 local, two hours.
    start, end = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)

    def open_seconds() -> int:
        with site.session() as session:
            return business_seconds(start, end, load_calendars(session).for_inbox(site.inbox_id))

    assert open_seconds() == 2 * 3600
    admin.fill("input[name=mon]", "10:00-10:30, 11:00-11:30")
    admin.click("#calendar-form button[type=submit]")
    expect(admin.locator(".flash")).to_contain_text("Saved Shop hours")
    assert open_seconds() == 3600
    admin.fill("#holiday-form input[name=day]", "2026-03-02")
    admin.fill("#holiday-form input[name=name]", "Inventory day")
    admin.click("#holiday-form button[type=submit]")
    expect(admin.locator("#holidays")).to_contain_text("Inventory day")
    assert open_seconds() == 0


def test_tag_merge(browser: Browser, site: Site) -> None:
    admin = sign_in(browser, site, "olga@shop.test")
    admin.goto(site.live.url + "/settings/tags")
    refunds = admin.locator("#tags tr[data-name=refunds]")
    expect(refunds.locator(".count")).to_have_text("1")
    refunds.locator("select[name=into]").select_option(label="refund")
    refunds.locator("text=Merge").click()
    expect(admin.locator(".flash")).to_contain_text("Merged refunds into refund")
    expect(admin.locator("#tags tr[data-name=refund] .count")).to_have_text("3")
    expect(admin.locator("#tags tr[data-name=refunds]")).to_have_count(0)
    with site.session() as session:
        assert session.scalar(select(func.count()).select_from(Tag).where(Tag.name == "refunds")) == 0
        assert session.scalar(select(func.count()).select_from(TicketTag)) == 3


def test_personal_canned_response_is_invisible_to_another_agent(browser: Browser, site: Site) -> None:
    ada = sign_in(browser, site, "ada@shop.test")
    ada.goto(site.live.url + "/settings/canned")
    expect(ada.locator("main")).to_contain_text("You have no personal responses yet")
    ada.fill("#canned-form input[name=title]", "Ada's sign-off")
    ada.fill("#canned-form textarea[name=body]", "Thanks {{contact.first_name}}! Ada, ticket {{ticket.id}}")
    ada.click("#canned-form button[type=submit]")
    expect(ada.locator(".canned-item")).to_contain_text("only you see this one")
    expect(ada.locator(".canned-item .preview")).to_have_text("Thanks Ann! Ada, ticket 1042")
    ada.goto(f"{site.live.url}/tickets/{site.ticket_id}")
    ada.select_option("#canned", label="Ada's sign-off")
    expect(ada.locator("textarea").first).to_have_value(f"Thanks Customer! Ada, ticket {site.ticket_id}")

    nina = sign_in(browser, site, "nina@shop.test", "nina's long password")
    nina.wait_for_url(site.live.url + "/")
    nina.goto(f"{site.live.url}/tickets/{site.ticket_id}")
    expect(nina.locator("h1, .subject").first).to_be_visible()
    expect(nina.locator("#canned option", has_text="Ada's sign-off")).to_have_count(0)
    nina.goto(site.live.url + "/settings/canned")
    expect(nina.locator("main")).not_to_contain_text("Ada's sign-off")
