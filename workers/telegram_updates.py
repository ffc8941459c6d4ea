"""Telegram webhook updates as jobs, and "typing…" in the customer's chat while an agent writes.

Bot API pages: https://core.telegram.org/bots/api#setwebhook (any answer but 2xx makes Telegram deliver the update
again later) and #sendchataction (the status lasts 5 s or until our next message).

A webhook update goes, in this order:
1. ``receive_update`` (in the web request): the raw Update is committed as a ``telegram_update`` row, unique per
   inbox and ``update_id``; a redelivered update hits the constraint and is answered 200 without a second row.
2. ``enqueue_update`` after that commit: the job ``workers.telegram_sync.handle_telegram_update(inbox_id, update)``
   on the ``inbound`` queue. Should Redis be down, the row waits as ``pending`` and ``sweep_telegram_updates``
   (every minute, from the scheduler) enqueues it once Redis is back; it also re-enqueues updates whose job was lost
   or failed, and forgets processed rows after ``KEEP_DONE``. ``helpline inbox sync NAME`` processes pending updates
   in the foreground.
3. ``process_update`` in a worker: downloads, then one transaction that stores the message and marks the row done.
   A download Telegram does not serve for now fails the job, which RQ retries with backoff; after ``GIVE_UP_AFTER``
   failed tries the message is stored with the file listed as not downloaded, so a message is never held forever.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from rq import Retry
from rq.job import Job
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.errors import ChannelError
from connectors.telegram import CHANNEL
from inbox.db import utcnow
from inbox.identities import find_identity
from inbox.runtime import Storage
from inbox.telegram_models import TelegramUpdate
from workers import runtime
from workers.telegram_sync import SyncResult

log = logging.getLogger(__name__)

RETRY_INTERVALS = [10, 30, 120, 600, 1800]  # seconds (DESIGN.md §7); RQ moves the retries with --with-scheduler
GIVE_UP_AFTER = len(RETRY_INTERVALS) + 1  # failed tries before a file that will not download is given up
PENDING_GRACE = dt.timedelta(seconds=30)  # a row this young still has its own job on the way
KEEP_DONE = dt.timedelta(days=3)  # Telegram gives up redelivering long before this
SWEEP_BATCH = 500
# Past this many failed tries an update is not enqueued again by the sweeper (a bug, not a download: downloads are
# given up after GIVE_UP_AFTER); it stays pending, its error on the row, until ``helpline inbox sync`` retries it.
SWEEP_MAX_ATTEMPTS = 3 * GIVE_UP_AFTER
JOB_TIMEOUT = 300  # seconds: an update with a 20 MB file to download
TYPING_EVERY = 4  # seconds: at most one sendChatAction per chat this often (Telegram shows it for 5 s)
TYPING_TTL = 10  # seconds a typing job may wait in the queue before it is pointless


def job_id(inbox_id: int, update_id: int) -> str:
    return f"telegram-update-{inbox_id}-{update_id}"


def receive_update(session: Session, inbox_id: int, update: dict[str, Any]) -> bool:
    """Commit the raw update as a pending row. False if this inbox already has an update with its ``update_id``."""
    update_id = int(update["update_id"])
    known = select(TelegramUpdate.id).where(TelegramUpdate.inbox_id == inbox_id, TelegramUpdate.update_id == update_id)
    if session.scalar(known) is not None:
        return False
    session.add(TelegramUpdate(inbox_id=inbox_id, update_id=update_id, raw=update))
    try:
        session.commit()
    except IntegrityError:  # the same update, POSTed twice at once: the other request stored it
        session.rollback()
        return False
    return True


def enqueue_update(inbox_id: int, update: dict[str, Any]) -> Job:
    """Put the update's job on the ``inbound`` queue (one job id per update, so a re-enqueue replaces, not adds)."""
    update_id = int(update["update_id"])
    return runtime.queue(runtime.INBOUND).enqueue(
        "workers.telegram_sync.handle_telegram_update", inbox_id, update,
        job_id=job_id(inbox_id, update_id), job_timeout=JOB_TIMEOUT, result_ttl=60, failure_ttl=24 * 3600,
        retry=Retry(max=len(RETRY_INTERVALS), interval=RETRY_INTERVALS),
        description=f"telegram update {update_id} of inbox {inbox_id}",
    )


def process_update(storage: Storage, inbox_id: int, update: dict[str, Any]) -> str:
    """Store one webhook update and mark its row done; returns the outcome (``stored``, ``duplicates``, ...).

    An update without a row (enqueued by hand) is stored all the same; the message's unique external id still
    keeps it once.
    """
    from workers.telegram_sync import store_update

    update_id = update.get("update_id")
    with storage.factory() as session:
        row = session.scalar(select(TelegramUpdate).where(TelegramUpdate.inbox_id == inbox_id,
                                                          TelegramUpdate.update_id == update_id))
        row_id, state, attempts = (row.id, row.state, row.attempts) if row is not None else (None, None, 0)
    if state == "done":
        return "duplicates"
    try:
        return store_update(storage, inbox_id, update, row_id=row_id, give_up=attempts + 1 >= GIVE_UP_AFTER)
    except LookupError:
        log.info("telegram inbox %s is gone; update %s dropped with it", inbox_id, update_id)
        return "inbox deleted"
    except Exception as exc:
        reason = exc.reason if isinstance(exc, ChannelError) else f"internal error: {exc!r}"
        if row_id is not None:
            _record_failure(storage, row_id, reason)
        log.warning("telegram inbox %s: update %s failed (try %d): %s", inbox_id, update_id, attempts + 1, reason)
        raise  # RQ retries it after the next interval (a bug lands in the failed-job registry in the end)


def _record_failure(storage: Storage, row_id: int, reason: str) -> None:
    with storage.factory() as session, session.begin():
        failed = session.get(TelegramUpdate, row_id)
        if failed is not None:
            failed.attempts += 1
            failed.error = reason[:2000]


def process_pending(storage: Storage, inbox_id: int, result: SyncResult) -> SyncResult:
    """Process the inbox's webhook updates still pending, oldest first, in this process (``helpline inbox sync``,
    e.g. while Redis or the workers are down). A job running for the same update at once is harmless: the row is
    locked and checked in the transaction that stores it."""
    with storage.factory() as session:
        pending = list(session.execute(
            select(TelegramUpdate.raw).where(TelegramUpdate.inbox_id == inbox_id, TelegramUpdate.state == "pending")
            .order_by(TelegramUpdate.update_id).limit(SWEEP_BATCH)
        ).scalars())
    for raw in pending:
        result.fetched += 1
        try:
            outcome = process_update(storage, inbox_id, dict(raw))
        except Exception:  # noqa: BLE001 - recorded on its row by process_update; the next update must not wait
            outcome = "deferred"
        result.add(outcome if hasattr(result, outcome) else "ignored")
    return result


_PENDING_JOB = ("queued", "started", "scheduled", "deferred")


def sweep_telegram_updates(now: dt.datetime | None = None) -> int:
    """Enqueue pending webhook updates that have no live job (Redis was down, the job was lost or gave up), and
    forget processed ones after ``KEEP_DONE``. Returns how many were enqueued."""
    now = now or utcnow()
    storage = runtime.storage()
    with storage.factory() as session, session.begin():
        session.execute(delete(TelegramUpdate).where(TelegramUpdate.state == "done",
                                                     TelegramUpdate.received_at < now - KEEP_DONE))
    with storage.factory() as session:
        rows = session.execute(
            select(TelegramUpdate.inbox_id, TelegramUpdate.raw)
            .where(TelegramUpdate.state == "pending", TelegramUpdate.received_at < now - PENDING_GRACE,
                   TelegramUpdate.attempts < SWEEP_MAX_ATTEMPTS)
            .order_by(TelegramUpdate.id)
            .limit(SWEEP_BATCH)
        ).all()
    if not rows:
        return 0
    jobs = Job.fetch_many([job_id(r.inbox_id, int(r.raw["update_id"])) for r in rows], connection=runtime.redis())
    count = 0
    for row, job in zip(rows, jobs, strict=True):
        status = job.get_status(refresh=False) if job is not None else None
        if status is not None and status.value in _PENDING_JOB:
            continue
        enqueue_update(row.inbox_id, dict(row.raw))
        count += 1
    if count:
        log.info("sweep_telegram_updates: enqueued %d webhook updates that had no job", count)
    return count


# --- typing ---------------------------------------------------------------------------------------------------


def typing_key(inbox_id: int, handle: str) -> str:
    return f"helpline:telegram-typing:{inbox_id}:{handle}"


def request_typing(inbox_id: int, handle: str) -> Job | None:
    """Enqueue ``sendChatAction typing`` for the chat, unless one was enqueued in the last ``TYPING_EVERY`` s.

    The throttle is a Redis key (``SET NX EX``), so it holds across web processes and agents.
    """
    if not runtime.redis().set(typing_key(inbox_id, handle), "1", nx=True, ex=TYPING_EVERY):
        return None
    return runtime.queue(runtime.OUTBOUND).enqueue(
        "workers.telegram_updates.send_typing_action", inbox_id, handle, ttl=TYPING_TTL, result_ttl=0,
        failure_ttl=3600, job_timeout=60, description=f"typing in telegram chat {handle}",
    )


def send_typing_action(inbox_id: int, handle: str) -> str:
    """The job: show "typing…" in the customer's chat. Best effort: a failure is logged, never retried, since the
    moment has passed by then."""
    from workers.telegram_sync import send_typing

    storage = runtime.storage()
    try:
        send_typing(storage, inbox_id, handle)
    except (ChannelError, LookupError) as exc:
        log.info("telegram inbox %s: typing in chat %s not shown: %s", inbox_id, handle, exc)
        if getattr(exc, "unreachable", False):  # blocked meanwhile: agents see it before they send the reply
            with storage.factory() as session, session.begin():
                identity = find_identity(session, CHANNEL, handle)
                if identity is not None and not identity.unreachable:
                    identity.unreachable = getattr(exc, "reason", str(exc))[:200]
        return "failed"
    return "sent"
