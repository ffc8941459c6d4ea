"""The quarantine page: mail that could not be imported through the real IMAP sync, listed to admins with its raw
source as a safe download, re-processed through ``helpline inbox reprocess``'s code, or discarded (audited)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.models import AuditLog, Message, Quarantine, Ticket
from inbox.runtime import Storage
from tests.email.conftest import email_inbox, mail
from tests.email.test_imap_sync import _dsn
from tests.factories import make_user
from tests.mail_services import Dovecot
from tests.web.conftest import login
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, serve
from web import create_app
from workers.mail_sync import sync_email_inbox

NEVER_SENT = "<never-sent-yet@shop.test>"
OTHER = "<someone-elses@shop.test>"


@pytest.fixture
def app(storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(storage.settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


def admin_client(app: Flask, session: Session) -> tuple[FlaskClient, str]:
    admin = make_user(session, role="admin")
    session.commit()
    client = app.test_client()
    return client, login(client, admin.email)


def test_quarantined_mail_is_listed_downloaded_reprocessed_and_discarded(
    app: Flask, storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    inbox_id = inbox.id
    dovecot.deliver(imap_user, mail(message_id="<first@example.com>"), _dsn(NEVER_SENT, "5.1.1"),
                    _dsn(OTHER, "5.1.1").replace(b"dsn-5.1.1", b"dsn-other"), mail(message_id="<after@x.test>"))
    result = sync_email_inbox(storage, inbox_id)
    assert (result.fetched, result.stored, result.quarantined) == (4, 2, 2)  # and the batch went on
    client, token = admin_client(app, session)

    page = client.get("/settings/quarantine").get_data(as_text=True)
    rows = [(q.id, q.raw_sha256, q.error) for q in session.scalars(select(Quarantine).order_by(Quarantine.id))]
    (bounce_id, bounce_sha, error), (other_id, other_sha, _) = rows
    assert f'id="quarantine-{bounce_id}"' in page
    assert "MAILER-DAEMON@mx.example.com" in page and "bounce for no message sent from this inbox" in page
    assert error == "bounce for no message sent from this inbox" and f'id="quarantine-{other_id}"' in page
    assert inbox.name in page and f"{len(storage.blobs.get(bounce_sha))} B</td>" in page  # its size
    session.rollback()  # SQLite: every transaction holds the write lock (BEGIN IMMEDIATE); the app needs it

    raw = client.get(f"/settings/quarantine/{bounce_id}/raw")
    assert raw.status_code == 200 and raw.data == storage.blobs.get(bounce_sha)
    assert raw.headers["Content-Disposition"].startswith("attachment;")
    assert raw.headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in raw.headers["Content-Security-Policy"]

    # Re-processing it now fails the same way: it stays, and the page says so.
    done = client.post(f"/settings/quarantine/{bounce_id}/reprocess", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "still cannot be imported" in done
    session.expire_all()
    assert session.get(Quarantine, bounce_id).resolved_at is None  # type: ignore[union-attr]
    session.rollback()

    # The reply it is about turns up (e.g. restored from a backup): now the bounce imports and marks it failed.
    first = session.scalars(select(Message).where(Message.message_id_header == "<first@example.com>")).one()
    from tickets.lifecycle import reply

    sent = reply(session, first.ticket, "Your parcel is on its way", by=None, mail_domain="shop.test")
    sent.message_id_header = NEVER_SENT
    sent.delivery_state = "sent"
    sent_id, tickets_before = sent.id, session.scalar(select(Ticket.id).order_by(Ticket.id.desc()))
    session.commit()
    done = client.post(f"/settings/quarantine/{bounce_id}/reprocess", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Imported" in done and f'id="quarantine-{bounce_id}"' not in done
    session.expire_all()
    assert session.get(Quarantine, bounce_id).resolved_at is not None  # type: ignore[union-attr]
    bounced = session.get(Message, sent_id)
    assert bounced is not None and bounced.delivery_state == "failed" and "5.1.1" in (bounced.delivery_error or "")
    assert session.scalar(select(Ticket.id).order_by(Ticket.id.desc())) == tickets_before  # no ticket opened
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "quarantine.reprocessed")).all()
    assert [a.detail["imported"] for a in audit] == [False, True]
    session.rollback()

    # The other one: discarded, with a record of who and what; it leaves the list but not the audit log.
    done = client.post(f"/settings/quarantine/{other_id}/discard", data={"csrf_token": token},
                       follow_redirects=True).get_data(as_text=True)
    assert "Discarded" in done and f'id="quarantine-{other_id}"' not in done
    session.expire_all()
    assert session.get(Quarantine, other_id).resolved_at is not None  # type: ignore[union-attr]
    [entry] = session.scalars(select(AuditLog).where(AuditLog.action == "quarantine.discarded"))
    assert entry.target == f"quarantine:{other_id}" and entry.detail["raw_sha256"] == other_sha
    session.rollback()
    assert "Nothing in quarantine" in client.get("/settings/quarantine").get_data(as_text=True)
    listed = client.get("/settings/quarantine?resolved=1").get_data(as_text=True)
    assert f'id="quarantine-{other_id}"' in listed and "discarded by" in listed
    # A second sync from scratch quarantines nothing twice.
    session.expire_all()
    session.get(type(inbox), inbox_id).cursor = {}  # type: ignore[union-attr]
    session.commit()
    assert sync_email_inbox(storage, inbox_id).quarantined == 0


def test_quarantine_needs_an_admin_and_a_csrf_token(
    app: Flask, storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(imap_user, _dsn(NEVER_SENT, "5.1.1"))
    assert sync_email_inbox(storage, inbox.id).quarantined == 1
    [q] = session.scalars(select(Quarantine))
    agent = make_user(session, role="lead")
    session.commit()
    client = app.test_client()
    token = login(client, agent.email)
    for path in ("/settings/quarantine", f"/settings/quarantine/{q.id}/raw"):
        assert client.get(path).status_code == 403
    for action in ("reprocess", "discard"):
        assert client.post(f"/settings/quarantine/{q.id}/{action}", data={"csrf_token": token}).status_code == 403
    admin, _token = admin_client(app, session)
    assert admin.post(f"/settings/quarantine/{q.id}/discard", data={}).status_code == 400  # no CSRF token
    session.expire_all()
    assert session.get(Quarantine, q.id).resolved_at is None  # type: ignore[union-attr]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_admin_downloads_reprocesses_and_discards_in_the_browser(
    app: Flask, storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(imap_user, _dsn(NEVER_SENT, "5.1.1"), _dsn(OTHER, "5.1.1").replace(b"dsn-5.1.1", b"dsn-other"))
    assert sync_email_inbox(storage, inbox.id).quarantined == 2
    first, second = session.scalars(select(Quarantine.id).order_by(Quarantine.id)).all()
    admin = make_user(session, role="admin")
    email = admin.email
    session.commit()
    with serve(app) as live, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(live.url + "/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", "correct horse")
        page.click("button[type=submit]")
        page.wait_for_url(live.url + "/")
        page.click("text=Settings")
        page.click("nav.settings-nav >> text=Quarantine")
        row = page.locator(f"#quarantine-{first}")
        expect(row).to_contain_text("MAILER-DAEMON@mx.example.com")
        expect(row).to_contain_text("bounce for no message sent from this inbox")
        with page.expect_download() as download:
            row.locator("text=Download raw").click()
        saved = tmp_path / "raw.eml"
        download.value.save_as(saved)
        assert saved.read_bytes().startswith(b"From: MAILER-DAEMON") and download.value.suggested_filename.endswith(
            ".eml")
        row.locator("button", has_text="Re-process").click()
        expect(page.locator(".flash")).to_contain_text("still cannot be imported")
        page.on("dialog", lambda dialog: dialog.accept())  # "Discard this message for good?"
        page.locator(f"#quarantine-{second} button", has_text="Discard").click()
        expect(page.locator(".flash")).to_contain_text("Discarded")
        expect(page.locator(f"#quarantine-{second}")).to_have_count(0)
        expect(page.locator(f"#quarantine-{first}")).to_have_count(1)
        if os.environ.get("HELPLINE_ARTIFACTS"):
            page.screenshot(path=str(Path(os.environ["HELPLINE_ARTIFACTS"]) / "quarantine-page.png"), full_page=True)
        browser.close()
