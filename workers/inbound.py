"""Polling: fetch one inbox (the ``inbound`` queue's job), record the inbox's health, release the poll lock.

At most one poll per inbox is queued or running: ``schedule.try_enqueue_poll`` takes a Redis lock (``SET NX EX``)
before enqueueing, and the job frees it when done, so adding workers never fetches one mailbox twice at once.
Each message commits with the inbox's cursor, so a poll killed half-way resumes where it stopped, and the unique
``(inbox_id, external_id)`` stores a refetched message once.
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.errors import ChannelAuthError, ChannelError
from inbox.db import utcnow
from inbox.models import Inbox
from inbox.runtime import Storage
from workers import runtime
from workers.health import is_failing, record_health
from workers.sync import sync_inbox

log = logging.getLogger(__name__)

LOCK_PREFIX = "helpline:poll-lock:"
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


def lock_key(inbox_id: int) -> str:
    return f"{LOCK_PREFIX}{inbox_id}"


def release_lock(inbox_id: int, token: str) -> bool:
    """Free the inbox's poll lock if we still hold it (an expired lock may belong to a newer poll by now)."""
    return bool(runtime.redis().eval(_RELEASE, 1, lock_key(inbox_id), token))


def poll_inbox(inbox_id: int, lock_token: str | None = None) -> str:
    """Fetch what is new in one inbox. ``lock_token`` is the scheduler's lock value, released at the end."""
    try:
        return sync_and_record(runtime.storage(), inbox_id)
    finally:
        if lock_token is not None:
            try:
                release_lock(inbox_id, lock_token)
            except Exception:  # Redis gone: the lock expires by itself
                log.exception("poll: could not release the lock of inbox %s", inbox_id)


def sync_and_record(storage: Storage, inbox_id: int) -> str:
    """Run the channel's sync and write the outcome on the inbox (last sync, last error, credential state)."""
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        if inbox is None or inbox.paused:
            return "skipped"
    try:
        result: Any = sync_inbox(storage, inbox_id)
    except ChannelAuthError as exc:
        _record(storage, inbox_id, error=exc.reason, reauth=True)
        return "needs_reauth"
    except ChannelError as exc:
        # Temporary or permanent, the next poll tries again; the inbox shows the error meanwhile.
        _record(storage, inbox_id, error=exc.reason)
        return "error"
    except Exception as exc:
        _record(storage, inbox_id, error=f"internal error: {exc!r}")
        raise  # a bug: RQ keeps the traceback in the failed-job registry
    _record(storage, inbox_id, error=None)
    return f"ok {result}" if result is not None else "ok"


def _record(storage: Storage, inbox_id: int, *, error: str | None, reauth: bool = False) -> None:
    now = utcnow()
    with storage.factory() as session, session.begin():
        inbox = session.get(Inbox, inbox_id)
        if inbox is None:
            return
        before = (is_failing(inbox), inbox.last_error, inbox.credential_state)
        if error is None:
            # last_error stays as history; the inbox is healthy because its last sync is newer than it.
            inbox.last_sync_at = now
            if inbox.credential_state == "needs_reauth":
                inbox.credential_state = "ok"  # the credentials work again (an admin fixed them)
        else:
            inbox.last_error = error
            inbox.last_error_at = now
            if reauth:
                inbox.credential_state = "needs_reauth"
        if (is_failing(inbox), inbox.last_error, inbox.credential_state) != before:
            record_health(session, inbox, storage.settings.poll_interval)
    if error is not None:
        log.warning("poll: inbox %s: %s", inbox_id, error)
