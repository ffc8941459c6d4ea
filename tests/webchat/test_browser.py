"""The widget in a real browser: a shop page on another loopback origin embeds it; an agent answers live."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, FrameLocator, Page, expect, sync_playwright
from sqlalchemy import select

from connectors import webchat
from inbox.models import Inbox, Message, Ticket
from tests.services import free_port
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer
from tests.webchat.conftest import PASSWORD, Widget, serve_page
from web.widget_socket import notify_agent_typing
from workers.outbound import deliver_message

HOSTILE = "<img src=x onerror=\"window.top.__pwned='widget'\"><script>window.top.__pwned='script'</script>"


@pytest.fixture
def shop(live: LiveServer, make_widget: Any) -> Iterator[tuple[str, Widget]]:
    """A shop page on http://localhost:<port> (another site than the app's 127.0.0.1) with the snippet on it."""
    port = free_port()
    origin = f"http://localhost:{port}"
    widget: Widget = make_widget(origins=[origin])
    # Signed in at the shop: the shop's server signed the customer with the inbox secret.
    sig = webchat.user_signature(widget.secret, "cust-7", "kim@example.com", "Kim")
    page = (
        "<!doctype html><html><head><title>Shop</title><style>iframe{display:none}*{font-size:40px}</style></head>"
        f"<body><h1>Test shop</h1><script src='{live.url}/widget.js' data-inbox='{widget.public_key}' "
        f"data-user-id='cust-7' data-user-email='kim@example.com' data-user-name='Kim' data-user-signature='{sig}' "
        "async></script></body></html>"
    ).encode()

    with serve_page(port, page):
        yield f"{origin}/", widget


@pytest.fixture
def delivery(app: Flask) -> Iterator[None]:
    """Stands in for the outbound worker: runs its job function on each queued reply as soon as it commits."""
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            with app.extensions["helpline"].factory() as session:
                ids = list(
                    session.scalars(
                        select(Message.id).where(Message.direction == "outbound", Message.delivery_state == "queued")
                    )
                )
            for message_id in ids:
                deliver_message(message_id)
            stop.wait(0.1)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


@pytest.fixture
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_chat(page: Page, url: str) -> FrameLocator:
    page.goto(url)
    chat = page.frame_locator("#helpline-chat-frame")
    chat.locator("#launcher").click()
    expect(chat.locator("#text")).to_be_focused()
    return chat


def sign_in(page: Page, live: LiveServer, email: str) -> None:
    page.goto(f"{live.url}/login")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live.url}/")


def test_visitor_and_agent_chat_live(
    browser: Browser, app: Flask, live: LiveServer, shop: tuple[str, Widget], delivery: None
) -> None:
    shop_url, widget = shop
    agent = browser.new_context().new_page()
    sign_in(agent, live, widget.agent_email)
    expect(agent.locator("#live-status")).to_have_text("live")

    visitor_ctx = browser.new_context()
    visitor = visitor_ctx.new_page()
    chat = open_chat(visitor, shop_url)
    frame = visitor.locator("#helpline-chat-frame")
    expect(frame).to_be_visible()  # the host's "iframe { display: none }" does not hide it
    chat.locator("#text").fill("Do you ship to Norway? " + HOSTILE)
    chat.locator("#text").press("Enter")
    expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(1)
    expect(chat.locator("#log li.visitor p")).to_have_text("Do you ship to Norway? " + HOSTILE)

    # The agent's list shows the new chat without a reload; the ticket page shows the message.
    row = agent.locator(".ticket-row").first
    expect(row).to_be_visible(timeout=10_000)
    row.locator("a").click()
    expect(agent.locator("#thread")).to_contain_text("Do you ship to Norway?")
    ticket_id = agent.locator("body").get_attribute("data-ticket-id")
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, int(ticket_id or 0))
        assert ticket is not None
        assert ticket.contact.name == "Kim" and ticket.contact.attributes["shop_user_id"] == "cust-7"

    # A visitor's draft reaches the agents of the ticket as a live preview.
    chat.locator("#text").press_sequentially("And to Sweden", delay=20)
    agent.wait_for_function(
        "() => window.helplineEvents.some(e => e[0] === 'visitor.typing' && e[1].text.includes('Sweden'))"
    )
    typing = agent.evaluate("window.helplineEvents.filter(e => e[0] === 'visitor.typing').pop()[1]")
    assert typing["ticket_id"] == int(ticket_id or 0) and set(typing) == {"ticket_id", "text", "typing"}
    chat.locator("#text").fill("")

    # An agent typing shows in the widget (the agents' typing handler calls this hook).
    with app.app_context():
        notify_agent_typing(int(ticket_id or 0))
    expect(chat.locator("#typing")).to_be_visible()

    agent.fill("#reply-text", "Yes, we ship to Norway in 3-5 days.")
    agent.click("#send-reply")
    expect(chat.locator("#log li.agent p").last).to_have_text("Yes, we ship to Norway in 3-5 days.", timeout=10_000)
    expect(chat.locator("#log li.agent .author").last).not_to_be_empty()
    avatar = chat.locator("#log li.agent .author .avatar").last  # the agent's initials, beside their name
    expect(avatar).to_have_attribute("aria-hidden", "true")
    assert re.fullmatch(r"\w{1,2}", avatar.inner_text().strip())  # "Agent 7": "A7"
    expect(chat.locator("#log li.visitor").first).to_have_class("visitor read")  # the reply marks it as seen

    # Reload: the history comes back from the server, in order, once.
    visitor.reload()
    chat = visitor.frame_locator("#helpline-chat-frame")
    chat.locator("#launcher").click()
    expect(chat.locator("#log li:not(.greeting) p")).to_have_text(
        ["Do you ship to Norway? " + HOSTILE, "Yes, we ship to Norway in 3-5 days."]
    )
    for page in (visitor, agent):
        assert page.evaluate("window.__pwned") is None

    # A second visitor, on a phone: sees the greeting only, and the panel fits the screen.
    phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    chat2 = open_chat(phone, shop_url)
    expect(chat2.locator("#log li")).to_have_count(1)
    expect(chat2.locator("#log")).not_to_contain_text("Norway")
    box = phone.locator("#helpline-chat-frame").bounding_box()
    assert box is not None and box["width"] == 390
    expect(chat2.locator("#send")).to_be_in_viewport()
    chat2.locator("#close").click()
    expect(chat2.locator("#launcher")).to_be_focused()
    phone.keyboard.press("Enter")  # keyboard only: open, then Escape closes and gives focus back
    expect(chat2.locator("#text")).to_be_focused()
    phone.keyboard.press("Escape")
    expect(chat2.locator("#panel")).to_be_hidden()
    expect(chat2.locator("#launcher")).to_be_focused()

    # A forged token (the first visitor's id with a made-up signature) is refused: a fresh, empty chat instead.
    key = f"helpline:{widget.public_key}:token"
    first_token = visitor.evaluate(f"localStorage.getItem('{key}')")  # kept by the loader, first-party
    assert first_token.startswith("v_")
    forged = first_token.split(".")[0] + "." + "A" * 43
    visitor.evaluate(f"localStorage.setItem('{key}', '{forged}')")
    visitor.reload()
    chat = visitor.frame_locator("#helpline-chat-frame")
    chat.locator("#launcher").click()
    frame_page = next(f for f in visitor.frames if "/widget/frame" in f.url)
    frame_page.wait_for_function("() => window.helplineWidget.events.some(e => e[0] === 'history')")
    events = frame_page.evaluate("window.helplineWidget.events")
    assert ["session_refused", "invalid visitor token"] in events and ["history", 0] in events
    expect(chat.locator("#log")).not_to_contain_text("Norway")


def test_widget_refuses_to_load_on_a_site_not_allowed(
    browser: Browser, live: LiveServer, shop: tuple[str, Widget], app: Flask
) -> None:
    shop_url, widget = shop
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, widget.inbox_id)
        assert inbox is not None
        inbox.config = {"origins": ["https://somewhere-else.example"]}
        session.commit()
    page = browser.new_context().new_page()
    page.goto(shop_url)
    page.wait_for_timeout(1000)
    frame = next((f for f in page.frames if "/widget/frame" in f.url), None)
    # The browser blocks the frame (frame-ancestors): no launcher and no script of ours runs in it.
    assert frame is None or frame.evaluate("typeof window.helplineWidget") == "undefined"
    time.sleep(0)


def test_demo_shop_page_chats_with_the_demo_inbox(browser: Browser, app: Flask, live: LiveServer) -> None:
    from web.demo import load_demo

    with app.extensions["helpline"].factory() as session:
        load_demo(session)
        session.commit()
    page = browser.new_context().new_page()
    chat = open_chat(page, f"{live.url}/demo/shop")
    chat.locator("#text").fill("Hello from the demo shop")
    chat.locator("#send").click()
    expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(1)
    with app.extensions["helpline"].factory() as session:
        inbox_id = session.scalar(select(Inbox.id).where(Inbox.channel == "webchat"))
        texts = session.scalars(select(Message.body_text).where(Message.inbox_id == inbox_id)).all()
    assert "Hello from the demo shop" in texts


def test_messages_survive_a_dropped_connection_and_are_stored_once(
    browser: Browser, app: Flask, shop: tuple[str, Widget]
) -> None:
    shop_url, widget = shop
    page = browser.new_context().new_page()
    chat = open_chat(page, shop_url)
    frame = next(f for f in page.frames if "/widget/frame" in f.url)
    frame.wait_for_function("() => window.helplineWidget.socket && window.helplineWidget.socket.connected")
    # Sent, then the connection drops before the acknowledgement can arrive: the widget resends after reconnecting.
    chat.locator("#text").fill("first, ack lost")
    chat.locator("#text").press("Enter")
    frame.evaluate("window.helplineWidget.socket.io.engine.close()")
    # Written while offline: kept pending, sent once the socket is back.
    chat.locator("#text").fill("second, while offline")
    chat.locator("#text").press("Enter")
    frame.wait_for_function("() => window.helplineWidget.socket.connected", timeout=15_000)
    expect(chat.locator("#log li.visitor.pending")).to_have_count(0, timeout=15_000)
    expect(chat.locator("#log li.visitor p")).to_have_text(["first, ack lost", "second, while offline"])
    with app.extensions["helpline"].factory() as session:
        texts = session.scalars(
            select(Message.body_text).where(Message.inbox_id == widget.inbox_id).order_by(Message.id)
        ).all()
    assert texts == ["first, ack lost", "second, while offline"]
