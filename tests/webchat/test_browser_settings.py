"""In Chromium: what an admin sets on the widget settings page is what the visitor's widget does (colour, greeting,
position, pre-chat fields); with nobody there the widget becomes the offline form that asks for an email; files
go both ways and open in the widget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask
from playwright.sync_api import Browser, expect
from sqlalchemy import select

from inbox.models import Identity, Inbox, Message
from tests.factories import make_inbox, make_user
from tests.web.live import LiveServer
from tests.webchat.conftest import Widget, shop_page
from tests.webchat.test_browser import browser, sign_in  # noqa: F401 - the browser fixture

__all__ = ["browser"]


def test_settings_saved_in_the_browser_change_the_widget(
    browser: Browser, app: Flask, live: LiveServer, make_widget: Callable[..., Widget]  # noqa: F811
) -> None:
    with app.extensions["helpline"].factory() as session:
        admin = make_user(session, role="admin")
        session.commit()
        admin_email = admin.email
    with shop_page(live, make_widget) as (shop_url, widget):
        # An agent of the team is online: the widget is open for chats, not the offline form.
        agent = browser.new_context().new_page()
        sign_in(agent, live, widget.agent_email)
        expect(agent.locator("#live-status")).to_have_text("live")

        settings = browser.new_context().new_page()
        sign_in(settings, live, admin_email)
        settings.goto(f"{live.url}/settings/channels")
        settings.get_by_role("link", name="Chat widget settings").click()
        settings.fill("input[name=title]", "Teapot Shop")
        settings.fill("input[name=color]", "#aa3300")
        settings.fill("textarea[name=greeting]", "Welcome, tea lover!")
        settings.select_option("select[name=position]", "left")
        settings.select_option("select[name=prechat_name]", "required")
        settings.select_option("select[name=prechat_email]", "off")
        settings.fill("input[name=reply_time]", "We answer within 5 minutes.")
        settings.get_by_role("button", name="Save").click()
        expect(settings.locator(".flash")).to_contain_text("the chat widget is saved")

        visitor = browser.new_context().new_page()
        visitor.goto(shop_url)
        chat = visitor.frame_locator("#helpline-chat-frame")
        launcher = chat.locator("#launcher")
        expect(launcher).to_be_visible()
        assert launcher.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(170, 51, 0)"
        box = visitor.locator("#helpline-chat-frame").bounding_box()
        assert box is not None and box["x"] < 20  # bottom left
        expect(launcher).to_have_attribute("aria-label", "Open chat with Teapot Shop")
        launcher.click()
        expect(chat.locator("#title")).to_have_text("Teapot Shop")
        expect(chat.locator("#reply-time")).to_have_text("We answer within 5 minutes.")
        expect(chat.locator("#log li.greeting")).to_have_text("Welcome, tea lover!")
        # Name required, email not asked: the chat starts after the name.
        expect(chat.locator("#compose")).to_be_hidden()
        expect(chat.locator("#profile-email-field")).to_be_hidden()
        chat.get_by_role("button", name="Start chat").click()
        expect(chat.locator("#profile-saved")).to_have_text("Please enter your name.")
        expect(chat.locator("#profile-name")).to_be_focused()
        expect(chat.locator("#profile-name")).to_have_attribute("aria-invalid", "true")
        chat.get_by_label("Name").fill("Mia")
        chat.get_by_role("button", name="Start chat").click()
        expect(chat.locator("#text")).to_be_focused()
        chat.locator("#text").fill("Do you sell green tea?")
        chat.locator("#text").press("Enter")
        expect(chat.locator("#log li.visitor:not(.pending)")).to_have_count(1)
        with app.extensions["helpline"].factory() as session:
            message = session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id)).one()
            assert message.contact.name == "Mia"
        # A reload remembers the visitor: no gate again.
        visitor.reload()
        chat = visitor.frame_locator("#helpline-chat-frame")
        chat.locator("#launcher").click()
        expect(chat.locator("#text")).to_be_visible()
        expect(chat.locator("#log li.visitor p")).to_have_text(["Do you sell green tea?"])


def test_nobody_there_the_widget_asks_for_an_email_and_links_it(
    browser: Browser, app: Flask, live: LiveServer, make_widget: Callable[..., Widget]  # noqa: F811
) -> None:
    with app.extensions["helpline"].factory() as session:
        mail = make_inbox(session, channel="email", address="support@shop.example")
        session.commit()
        mail_id = mail.id
    config = {"email_inbox_id": mail_id, "offline_message": "We're out until 9:00.", "prechat": {"name": "off"}}
    with shop_page(live, make_widget, **config) as (shop_url, widget):
        phone = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
        phone.goto(shop_url)
        chat = phone.frame_locator("#helpline-chat-frame")
        chat.locator("#launcher").click()
        expect(chat.locator("#reply-time")).to_have_text("We're out until 9:00.")
        expect(chat.locator("#about-you summary")).to_have_text("We're away: leave your email")
        expect(chat.locator("#compose")).to_be_hidden()
        expect(chat.locator("#profile-name-field")).to_be_hidden()
        chat.get_by_label("Email").fill("not an address")
        chat.get_by_role("button", name="Start chat").click()
        expect(chat.locator("#profile-saved")).to_have_text("Please enter a valid email address.")
        chat.get_by_label("Email").fill("lee@example.com")
        chat.get_by_role("button", name="Start chat").click()
        chat.locator("#text").fill("Please call me back about order 77.")
        expect(chat.locator("#send")).to_be_in_viewport()
        chat.locator("#send").click()
        expect(chat.locator("#offline-note")).to_have_text("Thanks! We'll answer by email at lee@example.com.")
        with app.extensions["helpline"].factory() as session:
            message = session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id)).one()
            emails = session.scalars(
                select(Identity.handle).where(Identity.contact_id == message.contact_id, Identity.channel == "email")
            ).all()
            assert emails == ["lee@example.com"]
            chat_inbox = session.get(Inbox, widget.inbox_id)
            assert chat_inbox is not None


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2b53f6e0000000049454e44ae426082"
)


def test_files_go_both_ways_and_open_in_the_widget(
    browser: Browser, app: Flask, live: LiveServer, make_widget: Callable[..., Widget], tmp_path: Any  # noqa: F811
) -> None:
    from inbox.ingest import InboundAttachment, store_attachments
    from tickets import lifecycle
    from workers.outbound import deliver_message

    with shop_page(live, make_widget) as (shop_url, widget):
        page = browser.new_context().new_page()
        page.goto(shop_url)
        chat = page.frame_locator("#helpline-chat-frame")
        chat.locator("#launcher").click()
        photo = tmp_path / "teapot.png"
        photo.write_bytes(PNG_1PX)
        chat.locator("#file").set_input_files(str(photo))
        image = chat.locator("#log li.visitor .file img")
        expect(image).to_have_attribute("alt", "teapot.png")
        assert image.evaluate("e => e.complete && e.naturalWidth") == 1  # the real picture, from a blob
        assert (image.get_attribute("src") or "").startswith("blob:")
        # Too big or not an image/PDF: a clear error, nothing stored.
        fake = tmp_path / "notes.png"
        fake.write_bytes(b"<svg onload=alert(1)>")
        chat.locator("#file").set_input_files(str(fake))
        expect(chat.locator("#error")).to_have_text("only images (PNG, JPEG, GIF, WebP) and PDF files")

        with app.extensions["helpline"].factory() as session:
            asked = session.scalars(select(Message).where(Message.inbox_id == widget.inbox_id)).one()
            reply = lifecycle.reply(session, asked.ticket, "Here is the invoice.", by=widget.agent_id)
            pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
            store_attachments(session, reply, (InboundAttachment("invoice.pdf", "application/pdf", pdf),))
            session.commit()
            reply_id = reply.id
        assert deliver_message(reply_id) == "sent"
        link = chat.locator("#log li.agent .file a[download]")
        expect(link).to_have_attribute("download", "invoice.pdf")
        with page.expect_download() as got:
            link.click()
        assert got.value.suggested_filename == "invoice.pdf"
        assert open(got.value.path(), "rb").read().startswith(b"%PDF-")
