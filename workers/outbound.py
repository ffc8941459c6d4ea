"""Outbox delivery: send one queued reply through its channel, exactly the states an agent can see.

``queued`` → ``sending`` (claimed, committed before the network call) → ``sent``; or ``delayed`` (temporary
error, retried with exponential backoff and jitter) → ... → ``failed`` with the reason.

Guarantees and their limit:
- A message in ``sent`` (or later) is never sent again: the claim is a compare-and-set on the row.
- Two jobs for one message never send concurrently: only one wins the claim.
- A worker that dies mid-send leaves ``sending`` with a lease (``next_attempt_at``); once it expires the message is
  claimed again and resent with the same Message-ID. A worker that dies in the few milliseconds between the
  channel accepting a message and our commit of ``sent`` therefore causes one duplicate (at-least-once); the
  message's ``meta["interrupted"]`` counts such recoveries, so it is visible, and mail clients collapse the copies
  by their identical Message-ID.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.base import Channel, Outbound, OutboundAttachment
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from inbox import events
from inbox.crypto import decrypt_json
from inbox.db import utcnow
from inbox.ingest import message_payload
from inbox.models import Attachment, Identity, Inbox, Message, MessageRef, Ticket
from inbox.runtime import Storage
from workers import enqueue, runtime
from workers.health import health_payload, record_health  # noqa: F401 — health_payload: its old home

log = logging.getLogger(__name__)

# Seconds before retry n (1-based) after a temporary error; jitter ±20% spreads a thundering herd after an outage.
BACKOFF = [10, 30, 120, 600, 1800]
MAX_ATTEMPTS = len(BACKOFF) + 1
JITTER = 0.2
# How long a claimed send may take before a crashed worker is assumed; longer than the job timeout, so a slow but
# live send is never taken over.
SEND_LEASE = enqueue.DELIVER_TIMEOUT + 60


def _env_overrides() -> None:
    """Let tests and the benchmark shorten the clocks of worker subprocesses through the environment."""
    global BACKOFF, MAX_ATTEMPTS, SEND_LEASE
    if raw := os.environ.get("HELPLINE_DELIVERY_BACKOFF"):
        BACKOFF = [int(x) for x in raw.split(",")]
        MAX_ATTEMPTS = len(BACKOFF) + 1
    if raw := os.environ.get("HELPLINE_SEND_LEASE"):
        SEND_LEASE = int(raw)


_env_overrides()


def backoff_delay(attempts: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt; the server's Retry-After wins when it gave one."""
    if retry_after is not None and retry_after > 0:
        return float(retry_after)
    base = BACKOFF[min(max(attempts, 1), len(BACKOFF)) - 1]
    return base * (1 + (rng or random).uniform(-JITTER, JITTER))


def deliver_message(message_id: int) -> str:
    """Deliver one outbound message (the ``outbound`` queue's job). Returns what happened, for the job result."""
    storage = runtime.storage()
    claimed = claim(storage, message_id)
    if claimed is None:
        return "skipped"
    try:
        with storage.factory() as session:
            outbound, channel = prepare(session, storage, message_id)
        # No transaction is open while we talk to the channel: SQLite's write lock must not wait on the network.
        provider_id = channel.send(outbound)
    except TemporaryError as exc:
        return _temporary(storage, message_id, exc.reason, exc.retry_after)
    except ChannelAuthError as exc:
        return _failed(storage, message_id, f"inbox needs re-authentication: {exc.reason}", reauth=True)
    except PermanentError as exc:
        # A customer who blocked the bot: mark that identity unreachable so agents see why (Telegram's 403).
        return _failed(storage, message_id, exc.reason, unreachable=bool(getattr(exc, "unreachable", False)))
    except LookupError as exc:  # no channel can send this (unknown channel, inbox deleted)
        return _failed(storage, message_id, str(exc))
    except Exception as exc:
        # A bug: keep the reply retrying on the normal schedule, and let RQ record the traceback.
        _temporary(storage, message_id, f"internal error: {exc!r}", None)
        raise
    mark_sent(storage, message_id, provider_id)
    return "sent"


def claim(storage: Storage, message_id: int) -> Message | None:
    """Move the message to ``sending`` if it is due; None if another job has it, or it is sent, failed or not due."""
    now = utcnow()
    with storage.factory() as session, session.begin():
        msg = session.get(Message, message_id)
        if msg is None or msg.direction != "outbound":
            log.warning("deliver: message %s is not an outbound message", message_id)
            return None
        state, attempts, due = msg.delivery_state, msg.delivery_attempts or 0, msg.next_attempt_at
        stale = state == "sending" and due is not None and due <= now
        if state not in ("queued", "delayed") and not stale:
            log.info("deliver: message %s is %s; nothing to do", message_id, state)
            return None
        if state == "delayed" and due is not None and due > now + dt.timedelta(seconds=1):
            log.info("deliver: message %s is not due before %s", message_id, due.isoformat())
            return None
        meta = dict(msg.meta or {})
        if stale:
            # The previous sender died mid-send; we cannot know whether the channel took it, so we send again.
            meta["interrupted"] = int(meta.get("interrupted", 0)) + 1
            log.warning("deliver: message %s was left sending by a dead worker; sending again", message_id)
        won = session.execute(
            update(Message)
            .where(Message.id == message_id, Message.delivery_state == state,
                   Message.delivery_attempts == attempts)
            .values(delivery_state="sending", delivery_attempts=attempts + 1,
                    next_attempt_at=now + dt.timedelta(seconds=SEND_LEASE), meta=meta)
            .execution_options(synchronize_session=False)
        ).rowcount
        if won != 1:
            log.info("deliver: message %s was claimed by another job", message_id)
            return None
        session.refresh(msg)
        _announce(session, msg)
        return msg


def prepare(session: Session, storage: Storage, message_id: int) -> tuple[Outbound, Channel]:
    """Build the Outbound value and the inbox's channel from the database."""
    from connectors.registry import channel_for  # imported late: the registry imports every channel's library

    msg = session.get(Message, message_id)
    assert msg is not None
    inbox = session.get(Inbox, msg.inbox_id)
    if inbox is None:
        raise LookupError(f"inbox {msg.inbox_id} of message {message_id} no longer exists")
    factory = channel_for(inbox.channel)
    secrets = decrypt_json(storage.settings.secret_key, inbox.secrets) if inbox.secrets else {}
    channel = factory(dict(inbox.config or {}), secrets)
    return build_outbound(session, storage, msg, inbox), channel


def build_outbound(session: Session, storage: Storage, msg: Message, inbox: Inbox) -> Outbound:
    """Everything needed to send ``msg``; email threading answers the customer's latest message in the ticket."""
    ticket = session.get(Ticket, msg.ticket_id)
    identity = session.get(Identity, msg.identity_id) if msg.identity_id is not None else None
    if identity is None:
        raise PermanentError("the reply has no recipient")
    answered = session.scalar(
        select(Message)
        .where(Message.ticket_id == msg.ticket_id, Message.direction == "inbound", Message.id < msg.id,
               Message.contact_id == identity.contact_id)
        .order_by(Message.id.desc())
        .limit(1)
    )
    in_reply_to: str | None = None
    references: list[str] = []
    if answered is not None and answered.message_id_header:
        in_reply_to = answered.message_id_header
        # Stored newest first (In-Reply-To, then References reversed); the header wants oldest first.
        refs = list(session.scalars(select(MessageRef.ref).where(MessageRef.message_id == answered.id)
                                    .order_by(MessageRef.id)))
        for ref in [*reversed(refs), in_reply_to]:
            if ref not in references:
                references.append(ref)
        references = references[-20:]  # long threads: keep the newest, as mail clients do
    subject = msg.subject or (ticket.subject if ticket else "")
    if answered is not None and subject and not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    attachments: list[OutboundAttachment] = []
    attachment_ids: list[int] = []
    for att in session.scalars(select(Attachment).where(Attachment.message_id == msg.id).order_by(Attachment.id)):
        if att.sha256 is None:
            continue  # recorded as skipped when it was added; nothing to send
        attachments.append(OutboundAttachment(att.filename, att.content_type, storage.blobs.get(att.sha256)))
        attachment_ids.append(att.id)
    config: dict[str, Any] = dict(inbox.config or {})
    return Outbound(
        message_id=msg.id,
        ticket_id=msg.ticket_id,
        channel=inbox.channel,
        to_handle=identity.handle,
        to_name=identity.display_name,
        from_address=inbox.address,
        from_name=str(config.get("from_name") or inbox.name),
        subject=subject,
        text=msg.body_text,
        html=msg.body_html,
        message_id_header=msg.message_id_header,
        in_reply_to=in_reply_to,
        references=tuple(references),
        reply_to_external_id=answered.external_id if answered is not None else None,
        attachments=tuple(attachments),
        auto_generated=msg.is_auto,
        meta={
            "ticket_id": msg.ticket_id,
            "attempt": msg.delivery_attempts,
            "author_name": msg.author.name if msg.author is not None else "",
            "attachment_ids": attachment_ids,  # the chat widget fetches the files by id
        },
    )


def mark_sent(storage: Storage, message_id: int, provider_id: str | None) -> None:
    now = utcnow()
    with storage.factory() as session, session.begin():
        msg = session.get(Message, message_id)
        assert msg is not None
        msg.delivery_state = "sent"
        msg.delivery_error = None
        msg.next_attempt_at = None
        msg.sent_at = now
        if provider_id:
            meta = dict(msg.meta or {})
            meta["provider_id"] = provider_id
            msg.meta = meta
            try:
                # The provider's id becomes the external id (dedup of echoes), unless it collides with one stored.
                with session.begin_nested():
                    msg.external_id = provider_id
            except IntegrityError:
                msg.external_id = f"out:{msg.id}"
        _announce(session, msg)
    log.info("deliver: message %s sent (%s)", message_id, provider_id)


def _temporary(storage: Storage, message_id: int, reason: str, retry_after: float | None) -> str:
    with storage.factory() as session, session.begin():
        msg = session.get(Message, message_id)
        assert msg is not None
        if msg.delivery_attempts >= MAX_ATTEMPTS:
            msg.delivery_state = "failed"
            msg.delivery_error = f"gave up after {msg.delivery_attempts} attempts: {reason}"
            msg.next_attempt_at = None
            _announce(session, msg)
            log.warning("deliver: message %s failed: %s", message_id, msg.delivery_error)
            return "failed"
        delay = backoff_delay(msg.delivery_attempts, retry_after)
        msg.delivery_state = "delayed"
        msg.delivery_error = reason
        msg.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
        _announce(session, msg)
    log.info("deliver: message %s delayed %.1fs after attempt failed: %s", message_id, delay, reason)
    try:
        enqueue.enqueue_delivery(message_id, delay=delay)
    except Exception:  # Redis gone: the sweeper enqueues it once next_attempt_at has passed
        log.exception("deliver: could not schedule the retry of message %s", message_id)
    return "delayed"


def _failed(storage: Storage, message_id: int, reason: str, *, reauth: bool = False, unreachable: bool = False) -> str:
    with storage.factory() as session, session.begin():
        msg = session.get(Message, message_id)
        assert msg is not None
        msg.delivery_state = "failed"
        msg.delivery_error = reason
        msg.next_attempt_at = None
        _announce(session, msg)
        if unreachable and msg.identity_id is not None:
            identity = session.get(Identity, msg.identity_id)
            if identity is not None:
                identity.unreachable = reason[:200]
        if reauth:
            inbox = session.get(Inbox, msg.inbox_id)
            if inbox is not None:
                inbox.credential_state = "needs_reauth"
                inbox.last_error = reason
                inbox.last_error_at = utcnow()
                record_health(session, inbox, storage.settings.poll_interval)
    log.warning("deliver: message %s failed: %s", message_id, reason)
    return "failed"


def retry_delivery(message_id: int) -> bool:
    """Put a failed or delayed reply back in the queue now (the UI's retry button). False if it is not retryable."""
    storage = runtime.storage()
    with storage.factory() as session, session.begin():
        msg = session.get(Message, message_id)
        if msg is None or msg.direction != "outbound" or msg.delivery_state not in ("failed", "delayed"):
            return False
        requeue(session, msg)  # the DeliveryEnqueuer installed by runtime enqueues it after this commit
    return True


def requeue(session: Session, msg: Message) -> None:
    """Reset a failed/delayed reply to ``queued`` with a fresh set of attempts. After the caller commits, the
    ``DeliveryEnqueuer`` (``workers.enqueue.install_delivery_enqueuer``) enqueues it; else the sweeper does."""
    msg.delivery_state = "queued"
    msg.delivery_error = None
    msg.delivery_attempts = 0
    msg.next_attempt_at = utcnow()
    _announce(session, msg)


def delivery_payload(msg: Message) -> dict[str, Any]:
    return message_payload(msg) | {
        "delivery_error": msg.delivery_error,
        "delivery_attempts": msg.delivery_attempts,
        "next_attempt_at": msg.next_attempt_at.isoformat() if msg.next_attempt_at else None,
    }


def _announce(session: Session, msg: Message) -> None:
    events.record(session, events.MESSAGE_UPDATED, f"ticket:{msg.ticket_id}", delivery_payload(msg))
