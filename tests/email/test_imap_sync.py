"""IMAP sync against a real Dovecot: tickets, threading, attachments, cursor, UIDVALIDITY, quarantine, TLS."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connectors.errors import ChannelAuthError
from inbox.crypto import encrypt_json
from inbox.models import Attachment, Inbox, Message, Quarantine, Ticket
from inbox.runtime import Storage
from tests.email.conftest import email_inbox, mail
from tests.mail_services import Dovecot
from workers.mail_sync import sync_email_inbox


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_sync_creates_tickets_threads_replies_and_keeps_attachments(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(
        imap_user,
        mail(message_id="<q1@example.com>", attachments=[("photo.jpg", "image/jpeg", b"\xff\xd8jpeg")]),
        mail(
            message_id="<q2@example.com>",
            in_reply_to="<q1@example.com>",
            references="<q1@example.com>",
            subject="Re: Order 1001 is late",
        ),
        mail(sender="bob@example.org", message_id="<other@example.org>", subject="Another matter"),
    )
    result = sync_email_inbox(storage, inbox.id)
    assert (result.fetched, result.stored, result.duplicates, result.quarantined) == (3, 3, 0, 0)
    session.expire_all()
    messages = {m.message_id_header: m for m in session.scalars(select(Message))}
    first, reply = messages["<q1@example.com>"], messages["<q2@example.com>"]
    assert reply.ticket_id == first.ticket_id and reply.thread_reason == "in-reply-to <q1@example.com>"
    assert messages["<other@example.org>"].ticket_id != first.ticket_id
    assert count(session, Ticket) == 2
    [att] = session.scalars(select(Attachment))
    assert (att.filename, att.size, att.message_id) == ("photo.jpg", 6, first.id)
    assert storage.blobs.get(att.sha256 or "") == b"\xff\xd8jpeg"
    assert storage.blobs.exists(first.raw_sha256 or "")  # raw source kept
    refreshed = session.get(Inbox, inbox.id)
    assert refreshed is not None and refreshed.last_sync_at is not None
    assert refreshed.cursor["folders"]["INBOX"]["last_uid"] == 3
    # Nothing new: a second sync fetches nothing; the customer's mail is still there, still unread.
    inbox_id = inbox.id
    session.rollback()  # end our read transaction: SQLite allows one writer
    assert sync_email_inbox(storage, inbox_id).fetched == 0
    with dovecot.client(imap_user) as client:
        client.select_folder("INBOX", readonly=True)
        assert len(client.search("UNSEEN")) == 3


def test_reply_before_parent_threads_once_the_parent_arrives(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key, batch_size=1)
    dovecot.deliver(imap_user, mail(message_id="<child@x.test>", in_reply_to="<parent@x.test>"))
    dovecot.deliver(imap_user, mail(message_id="<parent@x.test>"))
    sync_email_inbox(storage, inbox.id)
    session.expire_all()
    tickets = {m.message_id_header: m.ticket_id for m in session.scalars(select(Message))}
    assert tickets["<child@x.test>"] == tickets["<parent@x.test>"]


def test_uidvalidity_change_resyncs_without_duplicates(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    raws = [mail(message_id=f"<m{i}@x.test>") for i in range(3)] + [mail(message_id="")]
    dovecot.deliver(imap_user, *raws, folder="Support")
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key, folders=["Support"])
    first = sync_email_inbox(storage, inbox.id)
    assert first.stored == 4
    with dovecot.client(imap_user) as client:  # recreate the folder: new UIDVALIDITY, UIDs from 1 again
        client.delete_folder("Support")
        client.create_folder("Support")
    dovecot.deliver(imap_user, *raws, mail(message_id="<new@x.test>"), folder="Support")
    second = sync_email_inbox(storage, inbox.id)
    assert (second.resyncs, second.fetched, second.stored, second.duplicates) == (1, 5, 1, 4)
    session.expire_all()
    assert count(session, Message) == 5


def test_unparseable_mail_is_quarantined_once_and_the_batch_goes_on(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.mail_sync as mail_sync

    real = mail_sync.parse_email

    def fussy(raw: bytes, **kw: object):  # type: ignore[no-untyped-def]
        if b"POISON" in raw:
            raise ValueError("cannot parse this one")
        return real(raw, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(mail_sync, "parse_email", fussy)
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(imap_user, mail(body="POISON"), mail(message_id="<after@x.test>"))
    result = sync_email_inbox(storage, inbox.id)
    assert (result.stored, result.quarantined) == (1, 1)
    # Forget the cursor: the re-fetch neither quarantines twice nor stores twice.
    session.expire_all()
    row = session.get(Inbox, inbox.id)
    assert row is not None
    row.cursor = {}
    session.commit()
    again = sync_email_inbox(storage, inbox.id)
    assert (again.stored, again.duplicates, again.quarantined) == (0, 2, 0)
    session.expire_all()
    [q] = session.scalars(select(Quarantine))
    assert "cannot parse this one" in q.error and b"POISON" in storage.blobs.get(q.raw_sha256)


def test_after_import_mark_seen_and_move(storage: Storage, session: Session, dovecot: Dovecot) -> None:
    seen_user, move_user = dovecot.new_user(), dovecot.new_user()
    seen = email_inbox(session, dovecot, seen_user, storage.settings.secret_key, after_import="seen")
    dovecot.deliver(seen_user, mail())
    sync_email_inbox(storage, seen.id)
    with dovecot.client(seen_user) as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search("SEEN") == [1]
    moved = email_inbox(
        session, dovecot, move_user, storage.settings.secret_key, after_import="move", move_to="Imported"
    )
    dovecot.deliver(move_user, mail(), mail())
    dovecot.deliver(move_user, mail(), folder="Imported")
    assert sync_email_inbox(storage, moved.id).stored == 2
    with dovecot.client(move_user) as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0
        assert client.select_folder("Imported")[b"EXISTS"] == 3


def test_wrong_password_marks_the_inbox_for_reauth(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    inbox.secrets = encrypt_json(storage.settings.secret_key, {"password": "wrong"})
    session.commit()
    with pytest.raises(ChannelAuthError):
        sync_email_inbox(storage, inbox.id)
    session.expire_all()
    row = session.get(Inbox, inbox.id)
    assert row is not None and row.credential_state == "needs_reauth" and "login refused" in (row.last_error or "")


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_modes_verify_the_server(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, security: str
) -> None:
    port = dovecot.tls_port if security == "ssl" else dovecot.port
    inbox = email_inbox(
        session, dovecot, imap_user, storage.settings.secret_key, imap_security=security, imap_port=port
    )
    dovecot.deliver(imap_user, mail())
    assert sync_email_inbox(storage, inbox.id).stored == 1
    untrusted = email_inbox(
        session,
        dovecot,
        dovecot.new_user(),
        storage.settings.secret_key,
        imap_security=security,
        imap_port=port,
        ca_file=None,
    )
    from connectors.errors import PermanentError

    with pytest.raises(PermanentError, match="certificate"):
        sync_email_inbox(storage, untrusted.id)


def _dsn(original_id: str, status: str, to: str = "support@shop.test") -> bytes:
    action = "failed" if status.startswith("5") else "delayed"
    return (
        f"From: MAILER-DAEMON@mx.example.com (Mail Delivery System)\r\nTo: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-" + status + "@mx.example.com>\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
        f"Final-Recipient: rfc822; ann@example.com\r\nAction: {action}\r\nStatus: {status}\r\n"
        "Diagnostic-Code: smtp; 550 mailbox unknown\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: support@shop.test\r\nTo: ann@example.com\r\nMessage-ID: {original_id}\r\nSubject: Re: x\r\n"
        "--b--\r\n"
    ).encode()


def test_bounces_mark_the_outbound_message_and_never_open_tickets(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str
) -> None:
    from tickets.lifecycle import reply

    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    dovecot.deliver(imap_user, mail(message_id="<q@example.com>"))
    sync_email_inbox(storage, inbox.id)
    first = session.scalars(select(Message)).one()
    hard = reply(session, first.ticket, "Answer one", by=None, mail_domain="shop.test")
    soft = reply(session, first.ticket, "Answer two", by=None, mail_domain="shop.test")
    ids = (inbox.id, first.ticket_id, hard.id, soft.id, hard.message_id_header, soft.message_id_header)
    session.commit()
    inbox_id, ticket_id, hard_id, soft_id, hard_mid, soft_mid = ids
    dovecot.deliver(
        imap_user,
        _dsn(hard_mid or "", "5.1.1"),
        _dsn(soft_mid or "", "4.2.2"),
        _dsn("<never-sent@shop.test>", "5.1.1").replace(b"dsn-5.1.1", b"dsn-other"),
    )
    session.rollback()
    result = sync_email_inbox(storage, inbox_id)
    assert (result.bounces, result.quarantined) == (2, 1)
    session.expire_all()
    got_hard, got_soft = session.get(Message, hard_id), session.get(Message, soft_id)
    assert got_hard is not None and got_soft is not None
    assert got_hard.delivery_state == "failed" and "5.1.1" in (got_hard.delivery_error or "")
    assert got_soft.delivery_state == "delayed"
    assert count(session, Ticket) == 1  # the reports joined the ticket, none opened one
    reports = list(session.scalars(select(Message).where(Message.subject.like("Undelivered%"))))
    assert len(reports) == 2 and all(m.ticket_id == ticket_id and m.is_auto for m in reports)
    ticket = session.get(Ticket, ticket_id)
    assert ticket is not None and ticket.status == "open"  # an automatic report reopens nothing


def test_quarantined_mail_can_be_reprocessed(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.mail_sync as mail_sync

    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key)
    inbox_id = inbox.id
    dovecot.deliver(imap_user, mail(message_id="<later@x.test>"))
    with monkeypatch.context() as patched:
        patched.setattr(mail_sync, "parse_email", lambda raw, **kw: (_ for _ in ()).throw(ValueError("bug")))
        assert sync_email_inbox(storage, inbox_id).quarantined == 1
    assert mail_sync.reprocess_quarantine(storage, inbox_id) == (1, 0)
    assert mail_sync.reprocess_quarantine(storage, inbox_id) == (0, 0)
    session.expire_all()
    assert session.scalars(select(Message)).one().message_id_header == "<later@x.test>"
    assert session.scalars(select(Quarantine)).one().resolved_at is not None


def test_a_crash_mid_sync_loses_nothing_and_duplicates_nothing(
    storage: Storage, session: Session, dovecot: Dovecot, imap_user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.mail_sync as mail_sync

    dovecot.deliver(imap_user, *[mail(message_id=f"<burst{i}@x.test>") for i in range(120)])
    inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key, batch_size=40)
    inbox_id = inbox.id
    real, calls = mail_sync.import_parsed, []

    def dies_on_third_batch(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 3:
            raise ChannelError("worker killed")  # stands in for a crash after two committed batches
        return real(*args, **kwargs)

    from connectors.errors import ChannelError

    monkeypatch.setattr(mail_sync, "import_parsed", dies_on_third_batch)
    with pytest.raises(ChannelError):
        sync_email_inbox(storage, inbox_id)
    session.expire_all()
    row = session.get(Inbox, inbox_id)
    assert row is not None and row.cursor["folders"]["INBOX"]["last_uid"] == 80
    assert count(session, Message) == 80
    session.rollback()
    monkeypatch.setattr(mail_sync, "import_parsed", real)
    result = sync_email_inbox(storage, inbox_id)
    assert (result.fetched, result.stored, result.duplicates) == (40, 40, 0)
    session.expire_all()
    assert count(session, Message) == 120


def test_fetch_batches_are_bounded_by_count_and_bytes(dovecot: Dovecot, imap_user: str) -> None:
    from connectors.imap import ImapMailbox
    from tests.mail_services import PASSWORD

    big = [mail(attachments=[("big.bin", "application/octet-stream", bytes(300_000))]) for _ in range(3)]
    dovecot.deliver(imap_user, mail(), mail(), *big, mail())
    with ImapMailbox(dovecot.host, dovecot.port, "none", imap_user, PASSWORD) as mailbox:
        mailbox.select("INBOX", readonly=True)
        sizes = [[len(raw) for _, raw in batch] for batch in mailbox.fetch_since(0, batch=2, max_bytes=500_000)]
        uids = [uid for batch in mailbox.fetch_since(3, batch=10) for uid, _ in batch]
    assert [len(b) for b in sizes] == [2, 1, 1, 2]  # count limit; big ones alone; the last small one fits
    assert all(sum(b) <= 500_000 or len(b) == 1 for b in sizes)
    assert uids == [4, 5, 6]
