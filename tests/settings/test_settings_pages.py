"""The admin settings pages over HTTP: channels (with the test Dovecot), contacts import/export, the audit log."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from inbox.crypto import decrypt_json, encrypt_json
from inbox.ingest import ingest
from inbox.models import Contact, Inbox, Ticket
from inbox.settings_models import AuditLog
from tests import factories
from tests.mail_services import PASSWORD, Dovecot, running_dovecot
from tests.settings.conftest import SignIn

DATA = Path(__file__).resolve().parents[1] / "data" / "csv"


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    with running_dovecot() as server:
        yield server


def actions(app: Flask) -> list[str]:
    with app.extensions["helpline"].factory() as session:
        return list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_channel_settings(app: Flask, sign_in: SignIn, dovecot: Dovecot) -> None:
    user = dovecot.new_user()
    dovecot.deliver(user, b"Subject: x\r\n\r\ny", folder="Orders")
    secret_key = app.config["SECRET_KEY"]
    with app.extensions["helpline"].factory() as session:
        mail = factories.make_inbox(
            session,
            name="Mail",
            config=dovecot.config_for(user) | {"address": "s@shop.test"},
            secrets=encrypt_json(secret_key, {"password": PASSWORD}),
        )
        mail.last_error = "IMAP login refused"
        chat = factories.make_inbox(session, name="Chat", channel="webchat", config={"origins": ["https://a.test"]})
        assert ingest(session, mail.id, factories.inbound(handle="c@x.test")) is not None
        session.commit()
        mail_id, chat_id = mail.id, chat.id
    client, token = sign_in("admin")
    page = client.get("/settings/channels").get_data(as_text=True)
    assert "Mail" in page and "IMAP login refused" in page and "Chat" in page

    edit = client.get(f"/settings/channels/{mail_id}?folders=1").get_data(as_text=True)
    assert PASSWORD not in edit and "leave empty to keep it" in edit
    assert 'value="Orders"' in edit  # the folder picker, read from the server

    # Save with the password field empty (kept) and two folders picked; a wrong new password saves nothing.
    form = {
        "csrf_token": token,
        "name": "Mail",
        "address": "s@shop.test",
        "imap_host": "127.0.0.1",
        "imap_port": str(dovecot.port),
        "imap_security": "none",
        "username": user,
        "password": "",
        "folder": ["INBOX", "Orders"],
        "ca_file": dovecot.ca_file,
        "submit": "save",
    }
    bad = client.post(f"/settings/channels/{mail_id}", data=form | {"password": "wrong"})
    assert bad.status_code == 422 and "Wrong user name or password" in bad.get_data(as_text=True)
    assert "wrong" not in bad.get_data(as_text=True).replace("Wrong", "")
    ok = client.post(f"/settings/channels/{mail_id}", data=form)
    assert ok.status_code == 302
    with app.extensions["helpline"].factory() as session:
        inbox = session.get_one(Inbox, mail_id)
        assert inbox.config["folders"] == ["INBOX", "Orders"]
        assert decrypt_json(secret_key, inbox.secrets) == {"password": PASSWORD}

    assert client.post(f"/settings/channels/{mail_id}/test", data={"csrf_token": token}).status_code == 302
    assert "connection works" in client.get("/settings/channels").get_data(as_text=True)

    client.post(f"/settings/channels/{mail_id}/pause", data={"csrf_token": token})
    client.post(f"/settings/channels/{mail_id}/delete", data={"csrf_token": token, "confirm": "Mail"})
    client.post(f"/settings/channels/{chat_id}/delete", data={"csrf_token": token, "confirm": "wrong name"})
    with app.extensions["helpline"].factory() as session:
        assert session.get_one(Inbox, mail_id).paused  # paused, and not removed: it has tickets
        assert session.scalar(select(Ticket.id).where(Ticket.inbox_id == mail_id)) is not None
        assert session.get(Inbox, chat_id) is not None  # the confirmation did not match
    client.post(f"/settings/channels/{mail_id}/archive", data={"csrf_token": token})
    listing = client.get("/settings/channels").get_data(as_text=True)
    assert f'id="inbox-{mail_id}"' not in listing and "1 archived" in listing
    assert f'id="inbox-{mail_id}"' in client.get("/settings/channels?archived=1").get_data(as_text=True)
    client.post(f"/settings/channels/{chat_id}/delete", data={"csrf_token": token, "confirm": "Chat"})
    client.post(f"/settings/channels/{mail_id}/resume", data={"csrf_token": token})
    with app.extensions["helpline"].factory() as session:
        assert session.get(Inbox, chat_id) is None
        resumed = session.get_one(Inbox, mail_id)
        assert not resumed.paused and not resumed.config.get("archived")
    assert {"inbox.updated", "inbox.paused", "inbox.archived", "inbox.deleted", "inbox.resumed"} <= set(actions(app))
    audit = client.get("/settings/audit").get_data(as_text=True)
    assert "inbox.archived" in audit and "user.signed_in" in audit
    assert PASSWORD not in audit


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_contacts_import_and_export_pages(app: Flask, sign_in: SignIn) -> None:
    client, token = sign_in("admin")
    raw = (DATA / "messy_semicolon_bom.csv").read_bytes()
    preview = client.post(
        "/settings/contacts/preview",
        data={"csrf_token": token, "file": (io.BytesIO(raw), "x.csv")},
        content_type="multipart/form-data",
    )
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200 and "Import 7 rows" in html and "Loyalty tier" in html
    with app.extensions["helpline"].factory() as session:
        assert session.scalar(select(Contact.id)) is None  # a preview imports nothing
    sha = html.split("/settings/contacts/import/")[1][:64]
    mapping = {
        "col0": "name",
        "col1": "email",
        "col2": "phone",
        "col3": "instagram",
        "col4": "attribute",
        "col5": "ignore",
    }
    done = client.post(f"/settings/contacts/import/{sha}", data={"csrf_token": token} | mapping)
    report = done.get_data(as_text=True)
    assert done.status_code == 200 and "<strong>5</strong> new contacts" in report
    assert "no email address, phone number or handle" in report and "bronze" in report
    export = client.post("/settings/contacts/export/contacts.csv", data={"csrf_token": token})
    text = export.get_data(as_text=True)
    assert export.headers["Content-Type"].startswith("text/csv") and "ann@shop.test" in text
    tickets = client.post("/settings/contacts/export/tickets.csv", data={"csrf_token": token})
    assert tickets.get_data(as_text=True).lstrip("\ufeff").startswith("id,subject,status")
    assert {"contacts.imported", "contacts.exported", "tickets.exported"} <= set(actions(app))
    empty = client.post(
        "/settings/contacts/preview",
        data={"csrf_token": token, "file": (io.BytesIO(b""), "e.csv")},
        content_type="multipart/form-data",
    )
    assert empty.status_code == 422


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_permission_changes_are_audited(app: Flask, sign_in: SignIn) -> None:
    client, token = sign_in("admin")
    with app.extensions["helpline"].factory() as session:
        user = factories.make_user(session, role="agent", email="new@shop.test", password="long enough pw")
        session.commit()
        user_id = user.id
    assert (
        client.post(f"/settings/people/users/{user_id}", data={"csrf_token": token, "role": "lead"}).status_code == 302
    )
    client.post(f"/settings/people/users/{user_id}/deactivate", data={"csrf_token": token})
    with app.extensions["helpline"].factory() as session:
        rows = list(session.scalars(select(AuditLog).where(AuditLog.action == "user.updated").order_by(AuditLog.id)))
        assert [r.detail for r in rows] == [{"role": "agent → lead"}, {"is_active": "True → False"}]
        assert rows[1].target == f"user:{user_id}" and rows[1].actor_email.endswith("@helpline.test")
    page = client.get("/settings/audit?action=user.").get_data(as_text=True)
    assert "is_active: True → False" in page and "long enough pw" not in page
