"""The agent workspace in a real browser (Debian's Chromium through Playwright) against a live server.

One server per module on a file SQLite with the demo workspace, plus a second team whose agent must see nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from sqlalchemy import select

from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Inbox, Team, Ticket
from tests.factories import inbound, make_inbox, make_team, make_user
from tests.web.conftest import HOSTILE_HTML, PASSWORD
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve, wait_js
from tickets import lifecycle
from web import create_app
from web.demo import DEMO_EMAIL, DEMO_PASSWORD, load_demo

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")
LEAD_EMAIL = "lee@demo-shop.test"
OUTSIDER_EMAIL = "otto@other-team.test"


@dataclass
class Site:
    live: LiveServer
    refund_ticket: int  # demo: Jonas's refund request (email)
    chat_ticket: int  # demo: Marco on Telegram
    hostile_ticket: int
    team_b_ticket: int
    artifacts: Path

    def session(self) -> Any:
        return self.live.app.extensions["helpline"].factory()


def _seed(site_session: Any) -> tuple[int, int, int, int]:
    with site_session() as session:
        load_demo(session)
        support = session.scalar(select(Team).where(Team.name == "Support"))
        make_user(session, email=LEAD_EMAIL, name="Lee Lead", role="lead", teams=[support], password=PASSWORD)
        mail = session.scalar(select(Inbox).where(Inbox.channel == "email"))
        assert support is not None and mail is not None
        hostile = ingest(
            session,
            mail.id,
            inbound(
                handle="mallory@evil.test",
                display_name="Mallory",
                subject="Invoice attached",
                text="Please find the invoice attached.",
                html=HOSTILE_HTML,
                meta={"remote_content_blocked": 1},
            ),
        )
        team_b = make_team(session, name="Wholesale")
        make_user(session, email=OUTSIDER_EMAIL, name="Otto Outsider", teams=[team_b], password=PASSWORD)
        other = ingest(session, make_inbox(session, team_id=team_b.id).id, inbound(subject="Wholesale order"))
        refund = session.scalar(select(Ticket.id).where(Ticket.subject == "Refund for a damaged item"))
        chat = session.scalar(select(Ticket.id).where(Ticket.channel == "telegram"))
        session.commit()
        assert hostile is not None and other is not None and refund is not None and chat is not None
        return refund, chat, hostile.ticket_id, other.ticket_id


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("live")
    shutil.copy(sqlite_template, data / "helpline.db")
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}", secret_key="browser-test")
    app = create_app(settings)
    artifacts = Path(os.environ.get("HELPLINE_ARTIFACTS") or tmp_path_factory.mktemp("screenshots"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with serve(app) as live:
        ids = _seed(app.extensions["helpline"].factory)
        yield Site(live, *ids, artifacts=artifacts)
    app.extensions["helpline"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def signed_in(browser: Browser, site: Site, email: str, password: str = PASSWORD, **ctx: Any) -> Page:
    page = browser.new_context(**ctx).new_page()
    page.goto(site.live.url + "/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(site.live.url + "/")
    return page



def live(page: Page) -> None:
    """Wait until the page's socket is connected and its rooms are joined."""
    expect(page.locator("#live-status")).to_have_text("live")
    wait_js(page, "window.helplineEvents.some(e => e[0] === 'join')")


@pytest.mark.parametrize("width,height,name", [(1280, 800, "desktop"), (390, 844, "phone")])
def test_screenshots(browser: Browser, site: Site, width: int, height: int, name: str) -> None:
    """Runs first, on the fresh demo workspace as its team lead; the images go to $HELPLINE_ARTIFACTS."""
    page = signed_in(browser, site, LEAD_EMAIL, viewport={"width": width, "height": height})
    live(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= width  # nothing overflows sideways
    page.screenshot(path=str(site.artifacts / f"inbox-{name}.png"))
    page.goto(f"{site.live.url}/tickets/{site.refund_ticket}")
    live(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    page.screenshot(path=str(site.artifacts / f"ticket-{name}.png"))
    page.keyboard.press("?")
    expect(page.locator("#help")).to_be_visible()
    page.context.close()


def test_reply_note_assign_solve_seen_live_by_a_second_agent(browser: Browser, site: Site) -> None:
    url = f"{site.live.url}/tickets/{site.refund_ticket}"
    dana = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    lee = signed_in(browser, site, LEAD_EMAIL)
    lee_inbox = signed_in(browser, site, LEAD_EMAIL)
    for page in (dana, lee):
        page.goto(url)
        live(page)
    live(lee_inbox)
    lee.evaluate("window.__noReload = 'still here'")
    lee_inbox.evaluate("window.__noReload = 'still here'")
    expect(lee.locator("#presence")).to_contain_text("Dana Demo is also viewing")
    expect(lee_inbox.locator("#online")).to_contain_text("Dana Demo")  # teammates online

    dana.click("#reply-text")
    dana.keyboard.type("Sorry about the mug, Jonas! A refund is on its way.")
    expect(lee.locator("#presence")).to_contain_text("Dana Demo is writing a reply")
    dana.click("#send-reply")
    expect(dana.locator("#thread")).to_contain_text("A refund is on its way")
    expect(lee.locator("#thread")).to_contain_text("A refund is on its way")

    dana.keyboard.press("n")  # shortcut: note tab
    dana.keyboard.type("@lee.lead check the warehouse batch")
    dana.click("#add-note")
    expect(lee.locator("#thread")).to_contain_text("check the warehouse batch")

    dana.keyboard.press("a")  # shortcut: assign to me
    expect(lee.locator("#assignee-name")).to_have_text("Dana Demo")
    dana.keyboard.press("s")  # shortcut: solve
    expect(dana.locator("#status-badge")).to_have_text("solved")
    expect(lee.locator("#status-badge")).to_have_text("solved")
    assert lee.evaluate("window.__noReload") == "still here"

    # A customer message arriving through a worker shows up in Lee's list without reload.
    with site.session() as session:
        chat = lifecycle.get_ticket(session, site.chat_ticket)
        ingest(session, chat.inbox_id, inbound(channel="telegram", handle="482913377", text="Grazie, one more thing!"))
        session.commit()
    expect(lee_inbox.locator(f'.ticket-row[data-ticket-id="{site.chat_ticket}"]')).to_contain_text("one more thing")
    assert lee_inbox.evaluate("window.__noReload") == "still here"
    for page in (dana, lee, lee_inbox):
        page.context.close()


def test_hostile_email_runs_no_script(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site.live.url}/tickets/{site.hostile_ticket}")
    frame_el = page.locator("iframe.email-frame").first
    expect(frame_el).to_have_attribute("sandbox", "")
    frame = page.frame_locator("iframe.email-frame").first
    expect(frame.locator("#evil")).to_have_text("click me")
    frame.locator("#evil").click()  # a javascript: link in a script-less sandbox does nothing
    page.click("a.load-images")  # even with remote images allowed, no script runs
    expect(frame.locator("#evil")).to_have_text("click me")
    page.wait_for_timeout(300)
    assert page.evaluate("typeof window.__pwned") == "undefined", errors
    page.context.close()


def test_hostile_payload_is_live_without_the_guards(browser: Browser) -> None:
    """The control: the same HTML in a plain page does set the global, so the test above can fail."""
    page = browser.new_page()
    page.set_content(HOSTILE_HTML)
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "string"
    page.close()


def test_plain_text_markup_is_shown_as_text(browser: Browser, site: Site) -> None:
    with site.session() as session:
        chat = lifecycle.get_ticket(session, site.chat_ticket)
        ingest(
            session,
            chat.inbox_id,
            inbound(channel="telegram", handle="482913377", text="<img src=x onerror=\"window.__pwned='chat'\">hi"),
        )
        session.commit()
    page = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    page.goto(f"{site.live.url}/tickets/{site.chat_ticket}")
    expect(page.locator("#thread")).to_contain_text("<img src=x onerror=")
    page.wait_for_timeout(200)
    assert page.evaluate("typeof window.__pwned") == "undefined"
    page.context.close()


def test_other_team_agent_gets_404_and_no_events(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, OUTSIDER_EMAIL)
    live(page)
    response = page.goto(f"{site.live.url}/tickets/{site.refund_ticket}")
    assert response is not None and response.status == 404
    page.goto(site.live.url + "/")
    live(page)
    acks = page.evaluate(
        """async (rooms) => {
            const s = io({transports: ["websocket"]});
            window.__probe = [];
            s.onAny((name, payload) => window.__probe.push([name, payload]));
            await new Promise(r => s.on("connect", r));
            const out = [];
            for (const room of rooms) { out.push(await s.emitWithAck("join", {room})); }
            return out;
        }""",
        [f"ticket:{site.refund_ticket}", "inbox:1", "agent:1"],
    )
    assert [a["ok"] for a in acks] == [False, False, False]
    with site.session() as session:
        ticket = lifecycle.get_ticket(session, site.refund_ticket)
        lifecycle.add_note(session, ticket, "team A only", by=None)  # type: ignore[arg-type]
        lifecycle.set_priority(session, ticket, "urgent")
        own = lifecycle.get_ticket(session, site.team_b_ticket)
        lifecycle.set_priority(session, own, "high")  # a positive control: B's own ticket
        session.commit()
    wait_js(page, f"window.helplineEvents.some(e => e[1] && e[1].id === {site.team_b_ticket})")
    page.wait_for_timeout(300)
    heard = page.evaluate("window.helplineEvents.concat(window.__probe)")
    about = [e[1] for e in heard if isinstance(e[1], dict)]
    leaked = [p for p in about if site.refund_ticket in (p.get("id"), p.get("ticket_id"))]
    assert leaked == []
    page.context.close()
