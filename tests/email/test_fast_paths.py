"""The ingest fast paths store exactly what the plain paths store.

- Parsing (and blob writes) in the worker process vs inline in the syncing process, over real Dovecot.
- SQLite ids handed out before the flush (one executemany per table) vs SQLAlchemy's row-by-row INSERT ... RETURNING.

Both run the whole ../shared/corpora/email corpus plus a threaded conversation, each way into its own fresh
database, and compare every stored field that does not depend on the clock or the database's numbering.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.email import parse_email
from inbox.config import Settings
from inbox.crypto import encrypt_json
from inbox.ingest import ingest_many
from inbox.models import Attachment, Contact, Message, MessageRef, Quarantine, Ticket, TicketEvent
from inbox.runtime import Storage
from tests.email.conftest import mail
from tests.factories import make_inbox
from tests.mail_services import PASSWORD, Dovecot
from workers.mail_sync import sync_email_inbox


def corpus_raws(shared_dir: Path) -> list[bytes]:
    files = sorted(p for p in (shared_dir / "corpora" / "email").rglob("*") if p.suffix in (".eml", ".box"))
    assert len(files) >= 200
    return [p.read_bytes() for p in files]


def conversation() -> list[bytes]:
    """A thread with a branch and an attachment, so routing and attachments are compared too."""
    return [
        mail(message_id="<t1@example.com>", attachments=[("log.txt", "text/plain", b"line 1\n" * 50)]),
        mail(message_id="<t2@example.com>", in_reply_to="<t1@example.com>", references="<t1@example.com>"),
        mail(message_id="<t3@example.com>", in_reply_to="<t1@example.com>", references="<t1@example.com>"),
        mail(
            sender="Bea <bea@example.org>",
            message_id="<t4@example.com>",
            in_reply_to="<t3@example.com>",
            references="<t1@example.com> <t3@example.com>",
        ),
        mail(sender="carl@example.net", message_id="<c1@example.net>", subject="Something else"),
    ]


@pytest.fixture
def fresh_storage(tmp_path: Path, sqlite_template: Path) -> Iterator[Any]:
    made: list[Storage] = []

    def make(name: str) -> Storage:
        data = tmp_path / name
        data.mkdir()
        shutil.copy(sqlite_template, data / "helpline.db")
        settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}", secret_key="k" * 16)
        made.append(Storage.from_settings(settings))
        return made[-1]

    yield make
    for storage in made:
        storage.dispose()


def snapshot(storage: Storage) -> dict[str, Any]:
    """Everything stored for the messages, keyed by content (raw hash), not by the database's ids."""
    with storage.factory() as session:
        messages = list(session.scalars(select(Message).order_by(Message.id)))
        raw_of = {m.id: m.raw_sha256 for m in messages}
        contacts = {c.id: c for c in session.scalars(select(Contact))}
        by_message: dict[str, Any] = {}
        for m in messages:
            attachments = session.scalars(
                select(Attachment).where(Attachment.message_id == m.id).order_by(Attachment.id)
            )
            refs = session.scalars(select(MessageRef.ref).where(MessageRef.message_id == m.id).order_by(MessageRef.id))
            by_message[f"{m.raw_sha256}:{m.external_id}"] = {
                "fields": (m.external_id, m.message_id_header, m.subject, m.body_text, m.body_html, m.sent_at),
                "more": (m.is_auto, m.thread_reason, m.direction, m.channel, m.meta),
                "contact": contacts[m.contact_id].name if m.contact_id else None,
                "attachments": [
                    (a.filename, a.content_type, a.size, a.sha256, a.content_id, a.inline, a.skipped_reason)
                    for a in attachments
                ],
                "refs": list(refs),
                "blobs": all(
                    storage.blobs.exists(s) for s in [m.raw_sha256 or "", *[a.sha256 for a in attachments if a.sha256]]
                ),
            }
        tickets = {}
        for t in session.scalars(select(Ticket)):
            members = sorted(
                raw_of[m] or "" for m in session.scalars(select(Message.id).where(Message.ticket_id == t.id))
            )
            events = sorted(e.kind for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == t.id)))
            tickets[members[0]] = (members, t.subject, t.status, t.message_count, t.preview, events)
        quarantined = sorted((q.raw_sha256, q.error) for q in session.scalars(select(Quarantine)))
        return {"messages": by_message, "tickets": tickets, "quarantine": quarantined, "order": list(raw_of.values())}


def test_parse_pool_stores_what_inline_parsing_stores(fresh_storage: Any, dovecot: Dovecot, shared_dir: Path) -> None:
    raws = corpus_raws(shared_dir) + conversation()
    results = []
    for workers in (0, 1):
        user = dovecot.new_user()
        accepted = []
        for raw in raws:
            try:
                dovecot.deliver(user, raw)
            except Exception:  # noqa: BLE001 - a file the server itself refuses is not what is compared here
                continue
            accepted.append(raw)
        assert len(accepted) >= len(raws) * 0.9
        storage: Storage = fresh_storage(f"workers{workers}")
        with storage.factory() as session:
            config = dovecot.config_for(user, parse_workers=workers, batch_size=64)
            inbox = make_inbox(session, address="support@shop.test", config=config)
            inbox.secrets = encrypt_json(storage.settings.secret_key, {"password": PASSWORD})
            session.commit()
            inbox_id = inbox.id
        result = sync_email_inbox(storage, inbox_id)
        assert result.fetched == len(accepted) and result.errors == 0
        results.append((result, snapshot(storage)))
    (inline_result, inline), (pool_result, pooled) = results
    assert str(pool_result) == str(inline_result)
    assert pooled == inline
    assert all(m["blobs"] for m in pooled["messages"].values())  # raw and attachments written by the worker
    assert sum(len(m["attachments"]) for m in pooled["messages"].values()) > 50
    t1 = next(key.split(":")[0] for key, m in pooled["messages"].items() if m["fields"][1] == "<t1@example.com>")
    [thread] = [members for members, *_ in pooled["tickets"].values() if t1 in members]
    assert len(thread) == 4  # the branch and the colleague's reply joined the first mail's ticket


def _ingest_corpus(session: Session, raws: list[bytes]) -> None:
    inbox = make_inbox(session, address="support@shop.test")
    parsed = []
    for raw in raws:
        try:
            parsed.append(parse_email(raw, own_addresses=("support@shop.test",)))
        except Exception:  # noqa: BLE001 - quarantine is not what this test compares
            continue
    for start in range(0, len(parsed), 50):
        with session.begin_nested():
            ingest_many(session, inbox.id, parsed[start : start + 50])
    session.commit()


def test_sqlite_ids_before_flush_store_what_row_by_row_inserts_store(
    fresh_storage: Any, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = corpus_raws(shared_dir) + conversation()
    fast, slow = fresh_storage("fast"), fresh_storage("slow")
    with fast.factory() as session:
        _ingest_corpus(session, raws)
    with monkeypatch.context() as patch:
        patch.setattr(importlib.import_module("inbox.ingest"), "_number_new_rows", lambda session: None)
        with slow.factory() as session:
            _ingest_corpus(session, raws)
    got, expected = snapshot(fast), snapshot(slow)
    assert got == expected
    assert len(got["messages"]) > 200
    with fast.factory() as session, slow.factory() as other:
        # Same ids too: both number rows in insertion order from max(id) + 1, as SQLite does.
        for model in (Message, Ticket, Contact, MessageRef, Attachment, TicketEvent):
            assert list(session.scalars(select(model.id).order_by(model.id))) == list(
                other.scalars(select(model.id).order_by(model.id))
            )
        assert list(session.scalars(select(Message.raw_sha256).order_by(Message.id))) == got["order"]
