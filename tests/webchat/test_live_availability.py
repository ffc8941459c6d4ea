"""Live open/away in the widget (web.widget_live): agents coming and going, and business-hour boundaries.

Real sockets throughout: visitors are python-socketio clients on /widget (or Chromium on a shop page), agents are
signed-in Socket.IO clients (or browser contexts) on the default namespace; presence lives in the test's Redis.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
import socketio
from flask import Flask
from playwright.sync_api import Browser, Page, expect

from connectors import webchat
from inbox.models import Inbox
from inbox.sla_models import BusinessCalendar, BusinessHoliday
from tests.factories import make_inbox, make_team, make_user
from tests.web.conftest import CSRF_META
from tests.web.live import LiveServer, wait_js
from tests.webchat.conftest import PASSWORD, Visitor, Widget, shop_page
from tests.webchat.test_browser import browser, sign_in  # noqa: F401 - the browser fixture
from web import widget_availability, widget_live
from web.db import get_session

__all__ = ["browser"]
BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)
UTC = dt.UTC


def at(day: int, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    """An instant in the week of Monday 2026-11-23 (UTC)."""
    return dt.datetime(2026, 11, 23, hour, minute, second, tzinfo=UTC) + dt.timedelta(days=day)


@BOTH
def test_next_change_is_where_is_open_flips(app: Flask, make_widget: Callable[..., Widget]) -> None:
    """For each instant, the returned boundary is the first where ``is_open`` changes: just before it the state is
    the current one, just after it the other."""
    widget = make_widget()
    with app.test_request_context():
        session = get_session()  # the one the widget's views read through
        inbox = session.get(Inbox, widget.inbox_id)
        assert inbox is not None
        assert widget_availability.next_change(session, inbox, at(3, 12)) is None  # no calendar: around the clock
        week = {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}
        cal = BusinessCalendar(
            name="Shop", timezone="UTC", hours=week | {"sat": [["20:00", "24:00"]]}, inbox_id=inbox.id
        )
        session.add(cal)
        session.flush()
        session.add(BusinessHoliday(calendar_id=cal.id, day=dt.date(2026, 11, 30)))  # next Monday
        cal.hours = cal.hours | {"sun": [["00:00", "03:00"]]}
        session.flush()
        expected = {
            at(3, 12): at(3, 17),  # open Thursday noon: closes at five
            at(3, 17): at(4, 8, 59),  # closed: open a minute before nine on Friday (is_open looks a minute ahead)
            at(4, 8, 58, 30): at(4, 8, 59),
            at(4, 18): at(5, 19, 59),  # Friday evening: Saturday night's hours
            at(5, 21): at(6, 3),  # Saturday 20:00-24:00 and Sunday 00:00-03:00 are one stretch
            at(6, 4): at(8, 8, 59),  # Monday is a holiday: Tuesday
        }
        for now, boundary in expected.items():
            got = widget_availability.next_change(session, inbox, now)
            assert got == boundary, now
            before = widget_availability.is_open(session, inbox, now)
            assert widget_availability.is_open(session, inbox, got - dt.timedelta(seconds=1)) is before or got == now
            assert widget_availability.is_open(session, inbox, got + dt.timedelta(seconds=1)) is not before
        payload = widget_live.payload(inbox, at(3, 16, 59, 30))
        assert payload["next_change_at"] == at(3, 17).isoformat() and payload["ask_in"] == 31_000
        far = widget_live.payload(inbox, at(4, 18))  # a day away: asked again after RECHECK at the latest
        assert far["ask_in"] == widget_live.RECHECK * 1000
        cal.hours = {}
        session.flush()
        assert widget_availability.next_change(session, inbox, at(3, 12)) is None  # closed all week
        session.rollback()


class Agent:
    """An agent's browser stand-in: a signed-in session and a real Socket.IO client on the default namespace."""

    def __init__(self, live: LiveServer, email: str) -> None:
        self.http = requests.Session()
        token = CSRF_META.search(self.http.get(f"{live.url}/login", timeout=5).text)
        assert token is not None
        form = {"email": email, "password": PASSWORD, "csrf_token": token.group(1)}
        assert self.http.post(f"{live.url}/login", data=form, allow_redirects=False, timeout=5).status_code == 302
        self.url = live.url

    def connect(self) -> socketio.Client:
        client = socketio.Client(reconnection=False)
        cookie = "; ".join(f"{k}={v}" for k, v in self.http.cookies.items())
        client.connect(self.url, transports=["polling"], headers={"Cookie": cookie}, wait_timeout=5)
        # A page lives a moment: a disconnect sent right after connecting over polling sometimes never reached the
        # server here (python-socketio's client), which then dropped the socket only at its ping timeout.
        time.sleep(0.5)
        return client


def wait_for(check: Callable[[], bool], timeout: float = 8.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


PAYLOAD_KEYS = {"available", "away", "need", "el", "next_change_at", "ask_in"}
ELEMENTS = {"reply-time", "about-summary", "profile-intro", "about-you", "profile-email-field"}


def test_first_agent_in_and_last_agent_out_reach_the_inbox_widgets_only(
    app: Flask,
    live: LiveServer,
    make_widget: Callable[..., Widget],
    visitors: Callable[..., Visitor],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(widget_live, "GRACE", 1.5)
    widget, other = make_widget(), make_widget()  # two inboxes, two teams
    a, b = visitors(widget), visitors(other)
    a.connect()
    b.connect()
    wait_for(lambda: bool(a.events("availability")) and bool(b.events("availability")))
    first = a.events("availability")[0]
    assert first["available"] is False and set(first) == PAYLOAD_KEYS and set(first["el"]) == ELEMENTS
    assert first["el"]["reply-time"] == {"textContent": webchat.DEFAULT_OFFLINE}
    assert all(set(props) <= {"textContent", "hidden"} for props in first["el"].values())
    assert 0 < first["ask_in"] <= widget_live.RECHECK * 1000 and first["next_change_at"] is None

    agent = Agent(live, widget.agent_email)
    tab1 = agent.connect()
    wait_for(lambda: len(a.events("availability")) == 2)
    online = a.events("availability")[1]
    assert online["available"] is True and set(online) == PAYLOAD_KEYS
    assert online["el"]["reply-time"] == {"textContent": "We typically reply in a few minutes."}
    # Nothing about the agent, and nothing for the other team's widget.
    assert widget.agent_email not in repr(online) and str(widget.agent_id) not in repr(online["el"])
    tab2 = agent.connect()  # a second tab of the same agent: no change to tell
    tab2.disconnect()
    tab1.disconnect()
    tab1 = agent.connect()  # a page change: the socket closes and the next page's opens at once
    time.sleep(widget_live.GRACE + 1.5)
    assert len(a.events("availability")) == 2, a.events("availability")
    assert len(b.events("availability")) == 1

    tab1.disconnect()  # the last agent leaves
    wait_for(lambda: len(a.events("availability")) == 3)
    assert a.events("availability")[2]["available"] is False
    assert len(b.events("availability")) == 1

    # The widget asks again (as at an opening hour): the answer goes to that socket only.
    a2 = visitors(widget)
    a2.connect()
    wait_for(lambda: len(a2.events("availability")) == 1)
    a.client.emit("availability", namespace=webchat.NAMESPACE)
    wait_for(lambda: len(a.events("availability")) == 4)
    assert a.events("availability")[3]["available"] is False
    time.sleep(0.5)
    assert len(a2.events("availability")) == 1


def test_an_admin_without_a_team_counts_for_team_less_inboxes_only(
    app: Flask, live: LiveServer, visitors: Callable[..., Visitor]
) -> None:
    """An inbox without a team is answered by anyone; an inbox with a team only by its members."""
    from inbox import crypto

    secret = "team-less-secret"
    with app.extensions["helpline"].factory() as session:
        loose = make_inbox(
            session,
            channel="webchat",
            team_id=None,
            public_key=f"pk-loose-{webchat.new_visitor_id()[2:10]}",
            config={"origins": ["https://shop.example"]},
            secrets=crypto.encrypt_json(app.config["SECRET_KEY"], {"secret": secret}),
        )
        teamed = make_inbox(
            session,
            channel="webchat",
            team_id=make_team(session).id,
            public_key=f"pk-teamed-{webchat.new_visitor_id()[2:10]}",
            config={"origins": ["https://shop.example"]},
            secrets=crypto.encrypt_json(app.config["SECRET_KEY"], {"secret": secret}),
        )
        admin = make_user(session, role="admin", password=PASSWORD)
        session.commit()
        widgets = [Widget(i.id, str(i.public_key), secret, admin.id, admin.email) for i in (loose, teamed)]
    v_loose, v_teamed = visitors(widgets[0]), visitors(widgets[1])
    v_loose.connect()
    v_teamed.connect()
    wait_for(lambda: bool(v_loose.events("availability")) and bool(v_teamed.events("availability")))
    socket = Agent(live, admin.email).connect()
    wait_for(lambda: len(v_loose.events("availability")) == 2)
    assert v_loose.events("availability")[1]["available"] is True
    time.sleep(0.5)
    assert [e["available"] for e in v_teamed.events("availability")] == [False]
    socket.disconnect()


def frame_of(page: Page) -> Any:
    wait_js(page, "document.querySelector('#helpline-chat-frame')")
    for frame in page.frames:
        if "/widget/frame" in frame.url:
            return frame
    raise AssertionError("no widget frame")


def test_widget_switches_to_the_offline_form_and_back_without_reload(
    browser: Browser,
    app: Flask,
    live: LiveServer,
    make_widget: Callable[..., Widget],  # noqa: F811
) -> None:
    with app.extensions["helpline"].factory() as session:
        mail = make_inbox(session, channel="email", address="help@shop.example")
        session.commit()
        config = {"email_inbox_id": mail.id, "offline_message": "We're out right now."}
    with shop_page(live, make_widget, **config) as (shop_url, widget):
        agent = browser.new_context().new_page()
        sign_in(agent, live, widget.agent_email)
        expect(agent.locator("#live-status")).to_have_text("live")

        talking = browser.new_context().new_page()  # a visitor mid-conversation
        talking.goto(shop_url)
        chat = talking.frame_locator("#helpline-chat-frame")
        chat.locator("#launcher").click()
        expect(chat.locator("#reply-time")).to_have_text("We typically reply in a few minutes.")
        chat.locator("#text").fill("Do you ship teapots to Norway?")
        chat.locator("#text").press("Enter")
        expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(1)
        browsing = browser.new_context().new_page()  # a visitor who has not written yet
        browsing.goto(shop_url)
        fresh = browsing.frame_locator("#helpline-chat-frame")
        fresh.locator("#launcher").click()
        expect(fresh.locator("#compose")).to_be_visible()
        expect(fresh.locator("#about-you summary")).to_have_text("Leave your name and email")
        for page in (talking, browsing):
            frame_of(page).evaluate("window.__noReload = 'still here'")

        agent.context.close()  # the only agent of the team goes
        started = time.monotonic()
        expect(chat.locator("#reply-time")).to_have_text("We're out right now.", timeout=10_000)
        assert time.monotonic() - started < widget_live.GRACE + 5
        expect(chat.locator("#about-you summary")).to_have_text("We're away: leave your email")
        # The conversation stays: the message, and the composer (no gate for a visitor who already wrote).
        expect(chat.locator("#log li.visitor p")).to_have_text(["Do you ship teapots to Norway?"])
        expect(chat.locator("#compose")).to_be_visible()
        # The new visitor gets the offline form: an email first, as on a page loaded while nobody is there.
        expect(fresh.locator("#reply-time")).to_have_text("We're out right now.")
        expect(fresh.locator("#compose")).to_be_hidden()
        expect(fresh.locator("#profile-intro")).to_have_text(
            "Leave your email and your message, and we'll answer there."
        )
        expect(fresh.locator("#profile-email")).to_have_attribute("required", "")

        agent = browser.new_context().new_page()  # back again
        sign_in(agent, live, widget.agent_email)
        expect(chat.locator("#reply-time")).to_have_text("We typically reply in a few minutes.", timeout=10_000)
        expect(fresh.locator("#reply-time")).to_have_text("We typically reply in a few minutes.")
        expect(fresh.locator("#compose")).to_be_visible()
        expect(fresh.locator("#about-you summary")).to_have_text("Leave your name and email")
        expect(chat.locator("#log li.visitor p")).to_have_text(["Do you ship teapots to Norway?"])
        for page in (talking, browsing):
            assert frame_of(page).evaluate("window.__noReload") == "still here"
        for page in (agent, talking, browsing):
            page.context.close()


def test_widget_asks_again_when_told_and_follows_the_hours(
    browser: Browser,  # noqa: F811
    app: Flask,
    live: LiveServer,
    make_widget: Callable[..., Widget],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No agent comes or goes: the hours close, and the widget learns it when it asks again as told (``ask_in``;
    here the longest wait is made 2 s instead of waiting for a real closing hour)."""
    monkeypatch.setattr(widget_live, "RECHECK", 2)
    with shop_page(live, make_widget) as (shop_url, widget):
        agent = browser.new_context().new_page()
        sign_in(agent, live, widget.agent_email)
        expect(agent.locator("#live-status")).to_have_text("live")
        visitor = browser.new_context().new_page()
        visitor.goto(shop_url)
        chat = visitor.frame_locator("#helpline-chat-frame")
        chat.locator("#launcher").click()
        expect(chat.locator("#reply-time")).to_have_text("We typically reply in a few minutes.")
        with app.extensions["helpline"].factory() as session:
            session.add(BusinessCalendar(name="Closed", timezone="UTC", hours={}, inbox_id=widget.inbox_id))
            session.commit()
        expect(chat.locator("#reply-time")).to_have_text(webchat.DEFAULT_OFFLINE, timeout=8_000)
        expect(agent.locator("#live-status")).to_have_text("live")  # the agent is still there: the hours did it
        for page in (agent, visitor):
            page.context.close()
