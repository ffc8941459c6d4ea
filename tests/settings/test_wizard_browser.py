"""The first-run wizard in a real browser: an empty install to a connected mailbox on the test Dovecot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import func, select

from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.migrate import upgrade
from inbox.models import Inbox
from tests.mail_services import PASSWORD, running_dovecot
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve
from web import create_app

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_wizard_from_empty_install_to_connected_mailbox(browser: Browser, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    upgrade(f"sqlite:///{data / 'helpline.db'}")
    app = create_app(Settings(data_dir=data, secret_key="wizard-test"))
    factory = app.extensions["helpline"].factory
    with running_dovecot() as dovecot, serve(app) as live:
        mailbox_user = dovecot.new_user()
        dovecot.deliver(mailbox_user, b"Subject: first\r\n\r\nhello", folder="Orders")
        page = browser.new_context().new_page()
        page.goto(live.url + "/")
        expect(page).to_have_url(live.url + "/welcome")

        page.fill("input[name=name]", "Olga Owner")
        page.fill("input[name=email]", "olga@shop.test")
        page.fill("input[name=password]", "a long password")
        page.fill("input[name=password2]", "a long password")
        page.click("main button.primary")
        expect(page).to_have_url(live.url + "/welcome/workspace")

        page.fill("input[name=name]", "Olga's Shop")
        page.select_option("select[name=timezone]", "Europe/Berlin")
        page.click("main button.primary")
        expect(page).to_have_url(live.url + "/welcome/channel")

        page.click("text=Email")
        page.fill("input[name=name]", "Support mail")
        page.fill("input[name=address]", "support@shop.test")
        page.fill("input[name=imap_host]", "127.0.0.1")
        page.select_option("select[name=imap_security]", "none")
        page.fill("input[name=imap_port]", str(dovecot.port))
        page.fill("input[name=username]", mailbox_user)
        page.fill("input[name=password]", "not the password")
        page.fill("input[name=folders]", "INBOX, Orders")
        page.click("button[value=connect]")
        expect(page.locator("#connection-error")).to_contain_text("Wrong user name or password")
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(Inbox)) == 0  # nothing saved
        # What was typed stays, except the password, which is never sent back.
        expect(page.locator("input[name=imap_host]")).to_have_value("127.0.0.1")
        expect(page.locator("input[name=password]")).to_have_value("")
        assert "not the password" not in page.content()

        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=test]")
        expect(page.locator("#connection-ok")).to_contain_text("Connection works", timeout=20_000)
        with factory() as session:
            assert session.scalar(select(func.count()).select_from(Inbox)) == 0  # a test saves nothing
        page.fill("input[name=password]", PASSWORD)
        page.click("button[value=connect]")
        expect(page).to_have_url(live.url + "/", timeout=20_000)
        expect(page.locator(".flash")).to_contain_text("Support mail is connected")
        with factory() as session:
            inbox = session.scalar(select(Inbox))
            assert inbox is not None and inbox.config["folders"] == ["INBOX", "Orders"]
            assert decrypt_json("wizard-test", inbox.secrets)["password"] == PASSWORD
    app.extensions["helpline"].dispose()
