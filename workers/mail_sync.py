"""Email inboxes: one IMAP sync (raw first, batched, cursor committed with the messages) and the IDLE watcher.

Order of operations, and why:
1. Raw bytes go to the blob store before parsing, so even a message that later fails is never lost.
2. Parse (pure) and ingest each message of a fetch batch in one transaction; the folder's cursor
   (UIDVALIDITY + last UID) is written in the same commit. A crash re-fetches at most one batch, and the unique
   (inbox_id, external_id) turns the re-fetch into duplicates, never into two copies.
3. Unparseable mail becomes one ``Quarantine`` row (raw kept) and the batch moves on.
4. The post-import action (mark seen, move) runs only after the commit.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from connectors.email import parse_email
from connectors.errors import ChannelAuthError, ChannelError, PermanentError
from connectors.imap import ImapMailbox
from inbox import events
from inbox.blobs import BlobStore
from inbox.crypto import decrypt_json
from inbox.db import utcnow
from inbox.errors import SecretError
from inbox.ingest import Inbound, ingest, ingest_many, message_payload
from inbox.models import Inbox, Message, Quarantine
from inbox.runtime import Storage

log = logging.getLogger(__name__)

DEFAULT_BATCH = 200
BATCH_BYTES = 32 * 1024 * 1024  # per fetch: two batches (one storing, one parsing) stay in memory
MailboxFactory = Callable[[dict[str, Any], dict[str, Any]], ImapMailbox]


@dataclass
class SyncResult:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: int = 0
    errors: int = 0
    bounces: int = 0  # delivery reports attached to the outbound message they concern
    resyncs: int = 0  # folders whose UIDVALIDITY changed and were read again from the start

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


def mailbox_from_config(config: dict[str, Any], secrets: dict[str, Any]) -> ImapMailbox:
    return ImapMailbox(
        config["imap_host"],
        int(config.get("imap_port") or 993),
        config.get("imap_security", "ssl"),
        config.get("username") or config.get("address", ""),
        secrets.get("password", ""),
        timeout=float(config.get("timeout", 60)),
        ca_file=config.get("ca_file"),
    )


def own_addresses(inbox: Inbox) -> tuple[str, ...]:
    """The inbox's own addresses: mail from them is never from a customer."""
    return tuple(a.lower() for a in [inbox.address, *inbox.config.get("aliases", [])] if a)


# --- one batch of messages ----------------------------------------------------------------------------------

Parsed = Inbound | str  # an Inbound, or why the raw message could not be parsed


def parse_safe(raw: bytes, own: tuple[str, ...] = ()) -> Parsed:
    """parse_email that reports failure as text: runs in the parse pool too (picklable in and out)."""
    try:
        return parse_email(raw, own_addresses=own)
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines this mail, never the batch
        return f"unparseable: {exc!r}"


def import_raw(session: Session, inbox: Inbox, raw: bytes, *, source_ref: str) -> str:
    """Store one raw message: "stored", "duplicate", "quarantined" or "bounce". Flushes, never commits."""
    session.info["blobs"].put(raw)
    return import_parsed(session, inbox, [(source_ref, raw, parse_safe(raw, own_addresses(inbox)))])[0]


def import_parsed(session: Session, inbox: Inbox, items: list[tuple[str, bytes, Parsed]]) -> list[str]:
    """Store a batch of parsed messages (raw bytes already in the blob store) with one ``ingest_many``."""
    outcomes = [""] * len(items)
    todo: list[tuple[int, Inbound]] = []
    for index, (source_ref, raw, parsed) in enumerate(items):
        if isinstance(parsed, str):
            raw_sha256 = hashlib.sha256(raw).hexdigest()
            log.warning("inbox %s: %s: %s", inbox.id, source_ref, parsed)
            outcomes[index] = quarantine(session, inbox.id, raw_sha256, source_ref, parsed)
            continue
        inbound, raw_sha256 = parsed, parsed.raw_sha256 or hashlib.sha256(raw).hexdigest()
        if inbound.meta.get("from_inbox") and inbound.message_id and _find_by_message_id(session, inbox.id, inbound):
            outcomes[index] = "duplicate"  # our own reply, seen again in a Sent copy or a Bcc
            continue
        if "bounce" in inbound.meta:
            original = apply_bounce(session, inbox.id, inbound)
            if original is None:
                reason = "bounce for no message sent from this inbox"
                outcomes[index] = quarantine(session, inbox.id, raw_sha256, source_ref, reason)
                continue
            inbound = replace(inbound, references=(original.message_id_header or "", *inbound.references))
        todo.append((index, inbound))
    for (index, _), result in zip(todo, _ingest_all(session, inbox, todo, items), strict=True):
        outcomes[index] = result
    return outcomes


def _ingest_all(
    session: Session, inbox: Inbox, todo: list[tuple[int, Inbound]], items: list[tuple[str, bytes, Parsed]]
) -> list[str]:
    if not todo:
        return []
    try:
        with session.begin_nested():
            stored = ingest_many(session, inbox.id, [inbound for _, inbound in todo])
        return [
            "bounce" if "bounce" in i.meta else "stored" if m is not None else "duplicate"
            for (_, i), m in zip(todo, stored, strict=True)
        ]
    except (DataError, IntegrityError, ValueError, TypeError):
        if len(todo) == 1:
            index, inbound = todo[0]
            log.warning("inbox %s: cannot store %s", inbox.id, items[index][0], exc_info=True)
            error = f"cannot store: {sys.exc_info()[1]!r}"[:2000]
            return [quarantine(session, inbox.id, inbound.raw_sha256 or "", items[index][0], error)]
    # One message spoils the batch (e.g. a byte the database refuses): find it by storing them one by one.
    return [out for one in todo for out in _ingest_all(session, inbox, [one], items)]


def quarantine(session: Session, inbox_id: int, raw_sha256: str, source_ref: str, error: str) -> str:
    """Keep an unusable raw message once (visible to admins, re-processable); a re-fetch adds no second row."""
    exists = session.scalar(
        select(Quarantine.id).where(Quarantine.inbox_id == inbox_id, Quarantine.raw_sha256 == raw_sha256).limit(1)
    )
    if exists is not None:
        return "duplicate"
    session.add(Quarantine(inbox_id=inbox_id, raw_sha256=raw_sha256, source_ref=source_ref[:200], error=error))
    session.flush()
    return "quarantined"


def _find_by_message_id(session: Session, inbox_id: int, inbound: Inbound) -> Message | None:
    return session.scalar(
        select(Message)
        .where(Message.inbox_id == inbox_id, Message.message_id_header == inbound.message_id)
        .order_by(Message.id)
        .limit(1)
    )


def apply_bounce(session: Session, inbox_id: int, inbound: Inbound) -> Message | None:
    """Mark the outbound message a delivery report is about as failed (hard) or delayed (soft)."""
    bounce: dict[str, Any] = dict(inbound.meta["bounce"])
    original = None
    if bounce.get("original_message_id"):
        original = session.scalar(
            select(Message).where(
                Message.inbox_id == inbox_id,
                Message.direction == "outbound",
                Message.message_id_header == bounce["original_message_id"],
            )
        )
    verp = bounce.get("verp") or ""
    if original is None and verp.startswith("b") and verp[1:].isdigit():
        candidate = session.get(Message, int(verp[1:]))
        if candidate is not None and candidate.inbox_id == inbox_id and candidate.direction == "outbound":
            original = candidate
    if original is None:
        return None
    hard = bounce.get("kind") == "hard"
    original.delivery_state = "failed" if hard else "delayed"
    detail = " ".join(x for x in (bounce.get("status"), bounce.get("diagnostic")) if x)
    original.delivery_error = f"{'bounced' if hard else 'delayed'}: {detail or 'delivery report received'}"
    original.meta = {**(original.meta or {}), "bounce": bounce}
    session.flush()
    events.record(session, events.MESSAGE_UPDATED, f"ticket:{original.ticket_id}", message_payload(original))
    return original


# --- one sync ------------------------------------------------------------------------------------------------


def sync_email_inbox(
    storage: Storage, inbox_id: int, *, mailbox_factory: MailboxFactory = mailbox_from_config
) -> SyncResult:
    """Fetch what is new in every watched folder of an email inbox; raises ``ChannelError`` kinds after
    recording them on the inbox (``last_error``, ``credential_state``)."""
    result = SyncResult()
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        if inbox is None or inbox.channel != "email":
            raise PermanentError(f"inbox {inbox_id} is not an email inbox")
        config = dict(inbox.config or {})
        try:
            secrets = _secrets(storage, inbox)
            with mailbox_factory(config, secrets) as mailbox:
                for folder in config.get("folders") or ["INBOX"]:
                    _sync_folder(session, inbox, mailbox, folder, config, result)
        except ChannelError as exc:
            session.rollback()
            _record_failure(session, inbox_id, exc)
            raise
        inbox.last_sync_at = utcnow()
        inbox.credential_state = "ok"
        session.commit()
    return result


def _secrets(storage: Storage, inbox: Inbox) -> dict[str, Any]:
    try:
        return decrypt_json(storage.settings.secret_key, inbox.secrets)
    except SecretError as exc:  # SECRET_KEY changed: the password must be entered again
        raise ChannelAuthError(str(exc)) from exc


def _record_failure(session: Session, inbox_id: int, exc: ChannelError) -> None:
    inbox = session.get(Inbox, inbox_id)
    if inbox is None:
        return
    inbox.last_error = exc.reason[:2000]
    inbox.last_error_at = utcnow()
    if isinstance(exc, ChannelAuthError):
        inbox.credential_state = "needs_reauth"
    session.commit()


def _sync_folder(
    session: Session, inbox: Inbox, mailbox: ImapMailbox, folder: str, config: dict[str, Any], result: SyncResult
) -> None:
    action = config.get("after_import", "leave")
    state = mailbox.select(folder, readonly=action == "leave")
    saved = (inbox.cursor or {}).get("folders", {}).get(folder, {})
    last_uid = int(saved.get("last_uid", 0))
    if saved and saved.get("uidvalidity") != state.uidvalidity:
        # The server renumbered the folder: read it again; dedupe by Message-ID + raw hash keeps it idempotent.
        log.warning("inbox %s: UIDVALIDITY of %s changed; resyncing the folder", inbox.id, folder)
        last_uid = 0
        result.resyncs += 1
    own = own_addresses(inbox)
    blobs: BlobStore = session.info["blobs"]
    limit = int(session.info.get("max_attachment_bytes", 25 * 1024 * 1024))
    with _ParsePool(int(config.get("parse_workers", _default_workers()))) as pool:
        pending: _Pending | None = None
        # Pipelined: while batch k is stored and committed here, batch k+1 is written to the blob store and parsed
        # in a worker process (the other core). The worker writes each raw message before it parses it, so batch
        # k+1's raw files are complete before anything of it is stored: a parse failure or a crash never loses a
        # fetched message. It also writes the attachments it finds, so storing them here is only a hash check.
        batches = mailbox.fetch_since(
            last_uid, int(config.get("batch_size") or DEFAULT_BATCH), int(config.get("batch_bytes") or BATCH_BYTES)
        )
        for batch in batches:
            if not batch:
                continue
            parsed = pool.submit([raw for _, raw in batch], own, blobs, limit)
            if pending is not None:
                _store_batch(session, inbox, mailbox, folder, state.uidvalidity, pending, config, result)
            pending = _Pending(batch, parsed)
        if pending is not None:
            _store_batch(session, inbox, mailbox, folder, state.uidvalidity, pending, config, result)


@dataclass
class _Pending:
    batch: list[tuple[int, bytes]]
    parsed: Callable[[], list[Parsed]]


def _store_batch(
    session: Session,
    inbox: Inbox,
    mailbox: ImapMailbox,
    folder: str,
    uidvalidity: int,
    pending: _Pending,
    config: dict[str, Any],
    result: SyncResult,
) -> None:
    batch = pending.batch
    parsed = pending.parsed()  # the raw files are written by now
    items = [(f"{folder} uid {uid} v{uidvalidity}", raw, p) for (uid, raw), p in zip(batch, parsed, strict=True)]
    result.fetched += len(items)
    for outcome in import_parsed(session, inbox, items):
        _count(result, outcome)
    _advance_cursor(inbox, folder, uidvalidity, batch[-1][0])
    try:
        session.commit()
    except OperationalError as exc:  # the database went away: nothing of this batch counts as done
        session.rollback()
        raise ChannelError(f"database unavailable during mail sync: {exc.orig!r}") from exc
    mailbox.after_import([uid for uid, _ in batch], config.get("after_import", "leave"), config.get("move_to"))


def _default_workers() -> int:
    return max(0, min(3, (os.cpu_count() or 1) - 1))  # leave one core to the database work in this process


class _ParsePool:
    """Parses batches in worker processes (parsing is pure CPU; the GIL would serialise threads); inline when
    ``workers`` is 0 or a batch is too small to be worth the trip."""

    MIN_BATCH = 32

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> _ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def submit(
        self, raws: list[bytes], own: tuple[str, ...], blobs: BlobStore, limit: int
    ) -> Callable[[], list[Parsed]]:
        if self.workers <= 0 or len(raws) < self.MIN_BATCH:
            return lambda: _write_and_parse(raws, own, blobs, limit)
        if self._executor is None:
            # fork: the children only run the pure parser and the blob store, never the inherited sockets or
            # database handles.
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("fork"))
        chunk = max(1, len(raws) // (self.workers * 4))
        futures = [
            self._executor.submit(_write_and_parse, raws[i : i + chunk], own, blobs, limit)
            for i in range(0, len(raws), chunk)
        ]

        def results() -> list[Parsed]:
            try:
                return [p for future in futures for p in future.result()]
            except BrokenProcessPool:  # a parse worker died (OOM killer): parse here rather than fail the sync
                log.warning("parse pool broke; parsing inline")
                self.workers, self._executor = 0, None
                return _write_and_parse(raws, own, blobs, limit)  # blob writes are idempotent

        return results


def _write_and_parse(raws: list[bytes], own: tuple[str, ...], blobs: BlobStore, limit: int) -> list[Parsed]:
    """Raw first: each message is in the blob store before it is parsed. Attachments within the size limit are
    written too, so ``store_attachments`` in the main process only finds them there (the store is idempotent)."""
    out: list[Parsed] = []
    for raw in raws:
        digest = blobs.put(raw)
        parsed = parse_safe(raw, own)
        if isinstance(parsed, Inbound):
            for att in parsed.attachments:
                if len(att.data) <= limit:
                    blobs.put(att.data)
            if parsed.raw_sha256 is None:
                parsed = replace(parsed, raw_sha256=digest)
        out.append(parsed)
    return out


def _count(result: SyncResult, outcome: str) -> None:
    if outcome == "stored":
        result.stored += 1
    elif outcome == "bounce":
        result.stored += 1
        result.bounces += 1
    elif outcome == "duplicate":
        result.duplicates += 1
    elif outcome == "quarantined":
        result.quarantined += 1
    else:
        result.errors += 1


def _advance_cursor(inbox: Inbox, folder: str, uidvalidity: int, last_uid: int) -> None:
    cursor = copy.deepcopy(inbox.cursor or {})  # a new object, so the JSON column is seen as changed
    cursor.setdefault("folders", {})[folder] = {"uidvalidity": uidvalidity, "last_uid": last_uid}
    inbox.cursor = cursor


# --- IMAP IDLE watcher ---------------------------------------------------------------------------------------


def watch_mailboxes(
    storage: Storage,
    on_new_mail: Callable[[int], None],
    *,
    stop: threading.Event,
    inbox_ids: Iterable[int] | None = None,
    idle_slice: float = 10.0,
    rescan_every: float = 60.0,
    max_backoff: float = 60.0,
    mailbox_factory: MailboxFactory = mailbox_from_config,
) -> None:
    """Hold IMAP IDLE on every active email inbox (one thread each) until ``stop`` is set.

    ``on_new_mail(inbox_id)`` runs when a server reports new mail and after each (re)connect, to catch up on
    what arrived meanwhile; the caller enqueues a poll there. Inboxes added later are picked up every
    ``rescan_every`` seconds. A dropped connection reconnects with exponential backoff up to ``max_backoff``.
    """
    wanted = set(inbox_ids) if inbox_ids is not None else None
    threads: dict[int, threading.Thread] = {}
    while not stop.is_set():
        for inbox_id in _watchable(storage, wanted):
            if inbox_id not in threads or not threads[inbox_id].is_alive():
                watcher = _Watcher(storage, inbox_id, on_new_mail, stop, idle_slice, max_backoff, mailbox_factory)
                thread = threading.Thread(target=watcher.run, name=f"imap-idle-{inbox_id}", daemon=True)
                thread.start()
                threads[inbox_id] = thread
        stop.wait(rescan_every)
    for thread in threads.values():
        thread.join(timeout=idle_slice + 5)


def _watchable(storage: Storage, wanted: set[int] | None) -> list[int]:
    with storage.factory() as session:
        query = select(Inbox.id).where(Inbox.channel == "email", Inbox.paused.is_(False))
        ids = list(session.scalars(query))
    return [i for i in ids if wanted is None or i in wanted]


@dataclass
class _Watcher:
    storage: Storage
    inbox_id: int
    on_new_mail: Callable[[int], None]
    stop: threading.Event
    idle_slice: float
    max_backoff: float
    mailbox_factory: MailboxFactory

    def run(self) -> None:
        delay = 1.0
        while not self.stop.is_set():
            try:
                with self._connect() as mailbox:
                    delay = 1.0
                    self._notify()  # mail may have arrived while we were not listening
                    while not self.stop.is_set():
                        if mailbox.idle_wait(self.idle_slice):
                            self._notify()
            except ChannelAuthError as exc:
                log.warning("idle %s: credentials refused (%s); retrying in %.0fs", self.inbox_id, exc, 300)
                self.stop.wait(300)
            except Exception as exc:  # noqa: BLE001 - a watcher thread must outlive any one failure
                log.info("idle %s: %r; reconnecting in %.0fs", self.inbox_id, exc, delay)
                self.stop.wait(delay)
                delay = min(delay * 2, self.max_backoff)

    @contextmanager
    def _connect(self) -> Iterator[ImapMailbox]:
        with self.storage.factory() as session:
            inbox = session.get(Inbox, self.inbox_id)
            if inbox is None:
                raise PermanentError(f"inbox {self.inbox_id} is gone")
            config = dict(inbox.config or {})
            secrets = _secrets(self.storage, inbox)
        with self.mailbox_factory(config, secrets) as mailbox:
            mailbox.select((config.get("folders") or ["INBOX"])[0], readonly=True)
            yield mailbox

    def _notify(self) -> None:
        try:
            self.on_new_mail(self.inbox_id)
        except Exception:  # noqa: BLE001 - a failing callback (Redis down) must not kill the watcher
            log.exception("idle %s: on_new_mail failed", self.inbox_id)


# --- quarantine ----------------------------------------------------------------------------------------------


def reprocess_quarantine(storage: Storage, inbox_id: int, ids: Collection[int] | None = None) -> tuple[int, int]:
    """Import the inbox's unresolved quarantined mail again; returns (now imported, still quarantined)."""
    with storage.factory() as session:
        return reprocess_in(session, inbox_id, ids)


def reprocess_in(session: Session, inbox_id: int, ids: Collection[int] | None = None) -> tuple[int, int]:
    """``reprocess_quarantine`` in the caller's session (the admin page's, which retries one row: ``ids``).
    Commits after each row, so one that imports stays imported whatever the next one does."""
    done = left = 0
    inbox = session.get(Inbox, inbox_id)
    if inbox is None:
        raise PermanentError(f"inbox {inbox_id} does not exist")
    if inbox.channel != "email":
        raise PermanentError(f"inbox {inbox.name!r} is not an email inbox; only quarantined mail is re-processed")
    stmt = select(Quarantine).where(Quarantine.inbox_id == inbox_id, Quarantine.resolved_at.is_(None))
    if ids is not None:
        stmt = stmt.where(Quarantine.id.in_(list(ids)))
    for row in list(session.scalars(stmt.order_by(Quarantine.id))):
        if _retry_one(session, inbox, row):
            row.resolved_at = utcnow()
            done += 1
        else:
            left += 1
        session.commit()
    return done, left


def _retry_one(session: Session, inbox: Inbox, row: Quarantine) -> bool:
    raw = session.info["blobs"].get(row.raw_sha256)
    try:
        inbound = replace(parse_email(raw, own_addresses=own_addresses(inbox)), raw_sha256=row.raw_sha256)
    except Exception:  # noqa: BLE001 - still unparseable: it stays in quarantine
        return False
    if "bounce" in inbound.meta:
        original = apply_bounce(session, inbox.id, inbound)
        if original is None:
            return False
        inbound = replace(inbound, references=(original.message_id_header or "", *inbound.references))
    try:
        with session.begin_nested():
            ingest(session, inbox.id, inbound)
    except (DataError, IntegrityError, ValueError, TypeError):
        return False
    return True
