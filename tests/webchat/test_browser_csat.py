"""The satisfaction survey in the real widget (Chromium, the minified scripts as served) on a shop page.

An agent solves the chat in the agent UI; the visitor, still on the page, is asked "How did we do?" at once, rates
4 with a comment; the rating shows on the ticket and in the lead's CSAT report, for that agent. The visitor writes
again (the chat reopens), leaves, the agent solves again, and the visitor is asked when they come back.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select

from inbox import workspace
from inbox.models import Ticket, User
from inbox.report_models import CsatRating
from tests.factories import make_user
from tests.web.live import LiveServer
from tests.webchat.conftest import PASSWORD, Widget
from tests.webchat.test_browser import browser, delivery, open_chat, shop, sign_in  # noqa: F401 (fixtures)
from tickets import csat, lifecycle


def solve_in_agent_ui(agent: Page, live: LiveServer, ticket_id: int) -> None:
    agent.goto(f"{live.url}/tickets/{ticket_id}")
    agent.click("#solve")
    expect(agent.locator("#status-badge")).to_have_text("solved")


def test_visitor_rates_the_solved_chat_in_the_widget(
    browser: Browser,  # noqa: F811 (the fixture imported above)
    app: Flask,
    live: LiveServer,
    shop: tuple[str, Widget],  # noqa: F811
    delivery: None,  # noqa: F811
) -> None:
    shop_url, widget = shop
    with app.extensions["helpline"].factory() as session:
        workspace.set_setting(session, csat.SETTING, True)
        agent_user = session.get(User, widget.agent_id)
        assert agent_user is not None
        lead = make_user(session, role="lead", teams=list(agent_user.teams), password=PASSWORD, name="Lena Lead")
        agent_name, lead_email = agent_user.name, lead.email
        session.commit()

    visitor_ctx = browser.new_context()
    visitor = visitor_ctx.new_page()
    chat = open_chat(visitor, shop_url)
    expect(chat.locator("#csat")).to_be_hidden()
    chat.locator("#text").fill("My parcel is late")
    chat.locator("#text").press("Enter")
    expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(1)
    with app.extensions["helpline"].factory() as session:
        ticket = session.scalars(select(Ticket).where(Ticket.inbox_id == widget.inbox_id)).one()
        lifecycle.assign(session, ticket, widget.agent_id, by=widget.agent_id)
        session.commit()
        ticket_id = ticket.id

    agent = browser.new_context().new_page()
    sign_in(agent, live, widget.agent_email)
    agent.goto(f"{live.url}/tickets/{ticket_id}")
    agent.fill("#reply-text", "Found it: it arrives tomorrow.")
    agent.click("#send-reply")
    expect(chat.locator("#log li.agent p").last).to_have_text("Found it: it arrives tomorrow.", timeout=10_000)
    solve_in_agent_ui(agent, live, ticket_id)

    # Live, in place: one question, five named buttons.
    survey = chat.locator("#csat")
    expect(survey).to_be_visible(timeout=10_000)
    expect(chat.locator("#csat-question")).to_have_text("How did we do?")
    expect(chat.locator("#log li.agent p").last).to_be_in_viewport()  # the log keeps its end in view
    scores = chat.get_by_role("group", name="How did we do?").get_by_role("button")
    expect(scores).to_have_count(5)
    four = chat.get_by_role("button", name="4 of 5, good")
    four.click()
    expect(chat.locator("#csat-status")).to_have_text("Thanks! You rated us 4 of 5.")
    expect(four).to_have_attribute("aria-pressed", "true")
    chat.get_by_label("Anything you want to tell us? (optional)").fill("Quick answer, thanks")
    chat.get_by_role("button", name="Send comment").click()
    expect(chat.locator("#csat-status")).to_have_text("Thank you for your feedback!")
    expect(chat.locator("#csat-more")).to_be_hidden()

    # The ticket shows the rating; the lead's report counts it for the agent who solved.
    agent.goto(f"{live.url}/tickets/{ticket_id}")
    expect(agent.locator("#csat-rating")).to_contain_text("Rated 4/5")
    expect(agent.locator("#csat-rating")).to_contain_text("Quick answer, thanks")
    lead_page = browser.new_context().new_page()
    sign_in(lead_page, live, lead_email)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    lead_page.goto(f"{live.url}/reports/?start={today}&end={today}&by=agent")
    row = lead_page.locator("#table-csat tbody tr", has_text=agent_name)
    expect(row).to_contain_text("4.0")

    # The visitor writes again (the chat reopens and the question goes), then leaves.
    chat.locator("#text").fill("One more thing: can I change the address?")
    chat.locator("#text").press("Enter")
    expect(survey).to_be_hidden()
    expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(2)
    visitor.close()
    solve_in_agent_ui(agent, live, ticket_id)

    # Back on the shop later: asked about this solve when the widget loads.
    visitor = visitor_ctx.new_page()
    chat = open_chat(visitor, shop_url)
    expect(chat.locator("#csat")).to_be_visible(timeout=10_000)
    expect(chat.get_by_role("button", name="4 of 5, good")).to_have_attribute("aria-pressed", "false")
    chat.get_by_role("button", name="5 of 5, very good").click()
    expect(chat.locator("#csat-status")).to_have_text("Thanks! You rated us 5 of 5.")
    with app.extensions["helpline"].factory() as session:
        rows = session.scalars(select(CsatRating).where(CsatRating.ticket_id == ticket_id).order_by(CsatRating.id))
        assert [(r.score, r.comment) for r in rows] == [(4, "Quick answer, thanks"), (5, "")]

    # Rated: the next visit asks nothing.
    visitor.reload()
    chat = visitor.frame_locator("#helpline-chat-frame")
    chat.locator("#launcher").click()
    expect(chat.locator("#log li.visitor")).to_have_count(2)
    expect(chat.locator("#csat")).to_be_hidden()
