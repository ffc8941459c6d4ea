"""Telegram inboxes: the getUpdates poll, and the per-update handling it shares with the webhook.

Bot API pages: https://core.telegram.org/bots/api#getupdates (offsets) and #getfile (media downloads).

Order of operations, and why:
1. ``getUpdates(offset)`` returns what Telegram still holds; asking with a higher offset later confirms (deletes)
   everything before it. So the next offset is stored in ``Inbox.cursor["update_offset"]`` in the same commit as
   the messages of the batch: a crash before the commit fetches the same batch again (and the unique
   ``(inbox_id, external_id)`` stores each message once); after it, the old updates are never asked for again.
   Nothing is processed twice, nothing skipped.
2. Media are downloaded (``getFile``) before the transaction opens: SQLite's write lock never waits on the network.
   A download that fails for a while (network) aborts the batch before its commit, to be fetched again; a file
   Telegram will never give (too big, gone) is stored as a skipped attachment, never silently dropped.
3. An update that cannot be stored (a bug, a value the database refuses) is quarantined with its raw JSON, so one
   poison update never blocks the inbox.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from connectors.errors import PermanentError, TemporaryError
from connectors.telegram import CHANNEL, MediaRef, ParsedUpdate, TelegramChannel, human_size, parse_update_full
from inbox import events
from inbox.crypto import decrypt_json
from inbox.db import utcnow
from inbox.identities import find_identity
from inbox.ingest import InboundAttachment, find_message, ingest, message_payload
from inbox.models import Attachment, Inbox, Message, Quarantine
from inbox.runtime import Storage
from inbox.telegram_models import TelegramUpdate

log = logging.getLogger(__name__)

BATCH = 100  # getUpdates' maximum
MAX_BATCHES = 20  # per sync; the next poll continues where this one stopped
UNKNOWN_LOG_SIZE = 50  # newest entries of Inbox.cursor["unknown_updates"] kept


@dataclass
class SyncResult:
    fetched: int = 0
    stored: int = 0
    duplicates: int = 0
    edited: int = 0
    ignored: int = 0
    unknown: int = 0
    blocked: int = 0
    files: int = 0
    files_skipped: int = 0
    quarantined: int = 0
    deferred: int = 0  # webhook updates whose media Telegram did not serve this time (tried again later)

    def add(self, outcome: str) -> None:
        setattr(self, outcome, getattr(self, outcome) + 1)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.__dict__.items())


@dataclass(frozen=True)
class PreparedUpdate:
    """One update, parsed, with its files fetched: everything the transaction needs, no network left."""

    raw: dict[str, Any]
    parsed: ParsedUpdate
    files: tuple[InboundAttachment, ...] = ()
    skipped_files: tuple[tuple[MediaRef, str], ...] = ()  # (file, why it was not downloaded)
    already_stored: bool = False


@dataclass(frozen=True)
class InboxAccess:
    """What a sync or webhook job reads of the inbox before touching the network."""

    inbox_id: int
    config: dict[str, Any]
    secrets: dict[str, Any]
    cursor: dict[str, Any] = field(default_factory=dict)

    @property
    def groups(self) -> bool:
        return bool(self.config.get("groups"))

    def channel(self) -> TelegramChannel:
        return TelegramChannel(self.config, self.secrets)


def load_access(storage: Storage, inbox_id: int) -> InboxAccess:
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        if inbox is None:
            raise LookupError(f"inbox {inbox_id} does not exist")
        if inbox.channel != CHANNEL:
            raise ValueError(f"inbox {inbox_id} is a {inbox.channel} inbox, not a Telegram one")
        secrets = decrypt_json(storage.settings.secret_key, inbox.secrets)
        return InboxAccess(inbox.id, dict(inbox.config or {}), secrets, dict(inbox.cursor or {}))


# --- the poll -----------------------------------------------------------------------------------------------


def sync_telegram_inbox(storage: Storage, inbox_id: int) -> SyncResult:
    """Fetch and store the inbox's pending updates (getUpdates), batch by batch, each with its offset.

    Raises connectors.errors.* (the caller records them on the inbox). Webhook inboxes are not polled: Telegram
    refuses getUpdates while a webhook is set (their updates come as jobs, see workers.telegram_updates).
    """
    access = load_access(storage, inbox_id)
    result = SyncResult()
    if access.config.get("mode") == "webhook":
        return result
    channel = access.channel()
    offset: int | None = access.cursor.get("update_offset")
    for _ in range(MAX_BATCHES):
        updates = channel.get_updates(offset, limit=BATCH, timeout=0)
        if not updates:
            break
        result.fetched += len(updates)
        stored = _stored_ids(storage, inbox_id, updates, access.groups)
        prepared = [prepare_update(channel, u, storage.settings.max_attachment_bytes, access.groups, stored)
                    for u in updates]
        next_offset = max(int(u["update_id"]) for u in updates) + 1
        with storage.factory() as session, session.begin():
            inbox = session.get(Inbox, inbox_id)
            if inbox is None:
                raise LookupError(f"inbox {inbox_id} was deleted during its sync")
            for item in prepared:
                result.add(apply_update(session, inbox, item))
                result.files += len(item.files)
                result.files_skipped += len(item.skipped_files)
            cursor = dict(inbox.cursor or {})
            # Never move backwards: a concurrent run (which the poll lock should prevent) must not re-open updates.
            cursor["update_offset"] = max(next_offset, int(cursor.get("update_offset") or 0))
            inbox.cursor = cursor  # a new dict: JSON columns do not see in-place changes
        offset = next_offset
        if len(updates) < BATCH:
            break
    log.info("telegram inbox %s: %s", inbox_id, result)
    return result


def safe_parse(update: dict[str, Any], groups: bool) -> ParsedUpdate:
    """Parse, turning a malformed update (a field missing, a wrong type) into one to quarantine, not a crash."""
    try:
        return parse_update_full(update, groups=groups)
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
        update_id = update.get("update_id") if isinstance(update, dict) else None
        return ParsedUpdate(update_id if isinstance(update_id, int) else None, "malformed", "malformed",
                            reason=f"cannot parse: {exc!r}"[:500])


def _stored_ids(storage: Storage, inbox_id: int, updates: list[dict[str, Any]], groups: bool) -> set[str]:
    """External ids of the batch's new messages already stored (a batch fetched again after a crash)."""
    ids = []
    for update in updates:
        parsed = safe_parse(update, groups)
        if parsed.action == "ingest" and parsed.inbound is not None:
            ids.append(parsed.inbound.external_id)
    if not ids:
        return set()
    with storage.factory() as session:
        return set(session.scalars(select(Message.external_id).where(Message.inbox_id == inbox_id,
                                                                     Message.external_id.in_(ids))))


def prepare_update(channel: TelegramChannel, update: dict[str, Any], max_bytes: int, groups: bool,
                   stored: set[str] | None = None, *, give_up: bool = False) -> PreparedUpdate:
    """Parse an update and download its files (unless the message is stored already). Network only, no DB.

    A download that fails for now raises TemporaryError (try the whole update again later), unless ``give_up``:
    after many tries the message is stored with the file listed as not downloaded, rather than never.
    """
    parsed = safe_parse(update, groups)
    if parsed.action != "ingest" or parsed.inbound is None or not parsed.media:
        return PreparedUpdate(update, parsed)
    if stored is not None and parsed.inbound.external_id in stored:
        return PreparedUpdate(update, parsed, already_stored=True)
    files: list[InboundAttachment] = []
    skipped: list[tuple[MediaRef, str]] = []
    for ref in parsed.media:
        if ref.file_size is not None and ref.file_size > max_bytes:
            skipped.append((ref, f"larger than the {human_size(max_bytes)} limit"))
            continue
        try:
            got = channel.download(ref.file_id, max_bytes)
        except PermanentError as exc:  # the file is gone or refused; TemporaryError propagates: fetch again
            skipped.append((ref, f"not downloadable: {exc.reason}"[:200]))
            continue
        except TemporaryError as exc:
            if not give_up:
                raise
            skipped.append((ref, f"not downloaded, Telegram kept failing: {exc.reason}"[:200]))
            continue
        if got.data is None:
            skipped.append((ref, got.skipped_reason or "not downloaded"))
        else:
            files.append(InboundAttachment(ref.filename, ref.content_type, got.data))
    return PreparedUpdate(update, parsed, tuple(files), tuple(skipped))


# --- one update, inside the caller's transaction --------------------------------------------------------------


def apply_update(session: Session, inbox: Inbox, item: PreparedUpdate) -> str:
    """Store what one update means; returns the SyncResult field to count. Flushes, never commits.

    A failure is quarantined with the raw update (in a savepoint), so the batch and its offset still commit.
    """
    pending = session.info.setdefault("pending_events", [])
    recorded = len(pending)
    try:
        with session.begin_nested():
            return _apply(session, inbox, item)
    except Exception as exc:  # noqa: BLE001 - one poison update must not block every later one
        del pending[recorded:]  # events of the undone savepoint must not be published with the batch
        log.warning("telegram inbox %s: cannot store update %s: %r", inbox.id, item.parsed.update_id, exc)
        quarantine(session, inbox, item.raw, f"cannot store: {exc!r}"[:2000])
        return "quarantined"


def _apply(session: Session, inbox: Inbox, item: PreparedUpdate) -> str:
    parsed = item.parsed
    if parsed.action == "ingest":
        return "duplicates" if item.already_stored else _ingest(session, inbox, item)
    if parsed.action == "edit":
        return _edit(session, inbox, item)
    if parsed.action in ("blocked", "unblocked"):
        identity = find_identity(session, CHANNEL, parsed.handle or "")
        if identity is not None:
            identity.unreachable = parsed.reason if parsed.action == "blocked" else None
        return "blocked" if parsed.action == "blocked" else "ignored"
    if parsed.action == "malformed":
        quarantine(session, inbox, item.raw, parsed.reason)
        return "quarantined"
    if parsed.action == "unknown":
        log_unknown(session, inbox, item.raw, parsed)
        return "unknown"
    log.debug("telegram inbox %s: update %s ignored: %s", inbox.id, parsed.update_id, parsed.reason)
    return "ignored"


def _ingest(session: Session, inbox: Inbox, item: PreparedUpdate) -> str:
    parsed = item.parsed
    assert parsed.inbound is not None
    inbound = replace(parsed.inbound, attachments=item.files)
    if parsed.reply_to_external_id:
        # A reply to an earlier message (the customer's or ours) joins that message's ticket, even when the
        # customer has a newer one; routing honours the token only for a contact already on that ticket.
        answered = find_message(session, inbox.id, parsed.reply_to_external_id)
        if answered is not None:
            inbound = replace(inbound, ticket_token=answered.ticket_id)
    message = ingest(session, inbox.id, inbound)
    if message is None:
        return _late_original(session, inbox, item)
    for ref, reason in item.skipped_files:
        session.add(Attachment(message=message, filename=ref.filename, content_type=ref.content_type,
                               size=ref.file_size or 0, skipped_reason=reason[:200]))
    if message.identity is not None and message.identity.unreachable:
        message.identity.unreachable = None  # they write to the bot again, so they unblocked it
    session.flush()
    return "stored"


def _edit(session: Session, inbox: Inbox, item: PreparedUpdate) -> str:
    """New text for a stored message; the previous versions stay in ``meta["edits"]`` for agents to see."""
    parsed = item.parsed
    assert parsed.inbound is not None
    message = find_message(session, inbox.id, parsed.inbound.external_id)
    if message is None:
        # The original predates the inbox, or its webhook job runs after this one (several workers): the edited
        # text is stored as the message, marked edited; an original arriving later joins its history.
        outcome = _ingest(session, inbox, replace(item, parsed=replace(parsed, action="ingest")))
        created = find_message(session, inbox.id, parsed.inbound.external_id)
        if outcome == "stored" and created is not None:
            at = (parsed.edited_at or utcnow()).isoformat()
            created.meta = dict(created.meta or {}) | {"edited_at": at, "edits": [], "original_missing": True}
        return outcome
    if message.body_text == parsed.inbound.text:
        return "duplicates"  # a redelivered edit (webhook retry) changes nothing
    edited_at = parsed.edited_at or utcnow()
    meta = dict(message.meta or {})
    meta["edits"] = [*meta.get("edits", []), {"text": message.body_text, "replaced_at": edited_at.isoformat()}]
    meta["edited_at"] = edited_at.isoformat()
    message.meta = meta
    message.body_text = parsed.inbound.text
    session.flush()
    payload = message_payload(message) | {"edited_at": meta["edited_at"]}
    events.record(session, events.MESSAGE_UPDATED, f"ticket:{message.ticket_id}", payload)
    events.record(session, events.MESSAGE_UPDATED, f"inbox:{inbox.id}", payload)
    return "edited"


def _late_original(session: Session, inbox: Inbox, item: PreparedUpdate) -> str:
    """A message stored already; if it was stored from its edit, this is the original text: keep it as the first
    version, so agents see the whole history whatever order the updates were processed in."""
    parsed = item.parsed
    assert parsed.inbound is not None
    message = find_message(session, inbox.id, parsed.inbound.external_id)
    if message is None or not (message.meta or {}).get("original_missing"):
        return "duplicates"
    meta = dict(message.meta or {})
    del meta["original_missing"]
    if parsed.inbound.text != message.body_text:
        first = {"text": parsed.inbound.text, "replaced_at": meta.get("edited_at") or utcnow().isoformat()}
        meta["edits"] = [first, *meta.get("edits", [])]
    message.meta = meta
    session.flush()
    events.record(session, events.MESSAGE_UPDATED, f"ticket:{message.ticket_id}", message_payload(message))
    return "edited"


def log_unknown(session: Session, inbox: Inbox, raw: dict[str, Any], parsed: ParsedUpdate) -> None:
    """Keep an update of a kind we do not know: raw JSON in the blob store, an entry in the inbox's log."""
    sha = session.info["blobs"].put(json.dumps(raw, sort_keys=True).encode()) if "blobs" in session.info else None
    cursor = dict(inbox.cursor or {})
    entries = [e for e in cursor.get("unknown_updates", []) if e.get("update_id") != parsed.update_id]
    entries.append({"update_id": parsed.update_id, "kind": parsed.kind, "raw_sha256": sha,
                     "at": dt.datetime.now(dt.UTC).isoformat()})
    cursor["unknown_updates"] = entries[-UNKNOWN_LOG_SIZE:]
    inbox.cursor = cursor
    log.info("telegram inbox %s: update %s of unknown kind %r skipped", inbox.id, parsed.update_id, parsed.kind)


def quarantine(session: Session, inbox: Inbox, raw: dict[str, Any], error: str) -> None:
    data = json.dumps(raw, sort_keys=True).encode()
    sha = session.info["blobs"].put(data)
    exists = session.scalar(select(Quarantine.id).where(Quarantine.inbox_id == inbox.id,
                                                        Quarantine.raw_sha256 == sha).limit(1))
    if exists is None:
        session.add(Quarantine(inbox_id=inbox.id, raw_sha256=sha, source_ref=f"telegram update {raw.get('update_id')}",
                               error=error))
        session.flush()


def reprocess_quarantine(storage: Storage, inbox_id: int, ids: Collection[int] | None = None) -> tuple[int, int]:
    """Store the inbox's unresolved quarantined updates again (after a fix); returns (now stored, still quarantined).

    Each raw update goes through the same path as a fresh one (media downloaded first, then ``apply_update`` in
    its own transaction), and its quarantine row is resolved in that transaction when it stores. One that still
    fails stays (``quarantine`` keeps one row per raw update, so no second row appears). A download that fails for
    now raises TemporaryError, leaving the rest for the next try.
    """
    access = load_access(storage, inbox_id)
    with storage.factory() as session:
        stmt = select(Quarantine.id, Quarantine.raw_sha256).where(Quarantine.inbox_id == inbox_id,
                                                                  Quarantine.resolved_at.is_(None))
        if ids is not None:
            stmt = stmt.where(Quarantine.id.in_(list(ids)))
        rows = list(session.execute(stmt.order_by(Quarantine.id)))
    done = left = 0
    channel: TelegramChannel | None = None
    for quarantine_id, sha in rows:
        try:
            raw = json.loads(storage.blobs.get(sha))
        except (OSError, ValueError, TypeError):  # the raw update is missing or is not JSON: nothing to retry
            left += 1
            continue
        parsed = safe_parse(raw, access.groups)
        if parsed.media and parsed.action == "ingest":
            channel = channel or access.channel()
            item = prepare_update(channel, raw, storage.settings.max_attachment_bytes, access.groups,
                                  _stored_ids(storage, inbox_id, [raw], access.groups))
        else:
            item = PreparedUpdate(raw, parsed)
        with storage.factory() as session, session.begin():
            inbox = session.get(Inbox, inbox_id)
            row = session.get(Quarantine, quarantine_id)
            if inbox is None or row is None or row.resolved_at is not None:
                continue
            if apply_update(session, inbox, item) == "quarantined":
                left += 1
            else:
                row.resolved_at = utcnow()
                done += 1
    log.info("telegram inbox %s: re-processed quarantine, %s stored, %s left", inbox_id, done, left)
    return done, left


# --- the webhook's job, typing --------------------------------------------------------------------------------


def handle_telegram_update(inbox_id: int, update: dict[str, Any]) -> str:
    """The RQ job for one webhook update (ids and JSON only, as RQ's docs advise); see
    ``workers.telegram_updates.process_update`` for its bookkeeping of the stored ``telegram_update`` row."""
    from workers import runtime
    from workers.telegram_updates import process_update

    return process_update(runtime.storage(), inbox_id, update)


def store_update(storage: Storage, inbox_id: int, update: dict[str, Any], *, row_id: int | None = None,
                 give_up: bool = False) -> str:
    """Store one update received by the webhook (downloads first, then one transaction). Returns the outcome.

    With ``row_id`` (its ``telegram_update`` row) the row is locked and marked done in the same transaction as the
    message, so two jobs for one update (a re-enqueue racing the first) store it once.
    """
    access = load_access(storage, inbox_id)
    parsed = safe_parse(update, access.groups)
    stored: set[str] = set()
    if parsed.action == "ingest" and parsed.inbound is not None and parsed.media:
        with storage.factory() as session:  # a redelivered update: no second download
            if find_message(session, inbox_id, parsed.inbound.external_id) is not None:
                stored.add(parsed.inbound.external_id)
    channel = access.channel() if parsed.media and not stored else None
    item = (prepare_update(channel, update, storage.settings.max_attachment_bytes, access.groups, stored,
                           give_up=give_up)
            if channel is not None else PreparedUpdate(update, parsed, already_stored=bool(stored)))
    with storage.factory() as session, session.begin():
        row = None
        if row_id is not None:
            row = session.get(TelegramUpdate, row_id, with_for_update=True)
            if row is None or row.state == "done":
                return "duplicates"
        inbox = session.get(Inbox, inbox_id)
        if inbox is None:
            raise LookupError(f"inbox {inbox_id} does not exist")
        outcome = apply_update(session, inbox, item)
        if row is not None:
            row.state, row.outcome, row.error, row.processed_at = "done", outcome, None, utcnow()
        return outcome


def send_typing(storage: Storage, inbox_id: int, handle: str) -> None:
    """Show "typing…" to the customer while an agent types (call at most every ~4 s: it lasts 5 s)."""
    load_access(storage, inbox_id).channel().send_chat_action(handle, "typing")
