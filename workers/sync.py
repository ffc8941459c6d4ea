"""Fetch new messages of one inbox, whatever its channel: the one door polls and the mail watcher go through.

Channel modules are imported lazily, by name, so that a channel whose library is missing (or not written yet)
only breaks its own inboxes.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from inbox.models import Inbox
from inbox.runtime import Storage

log = logging.getLogger(__name__)

Syncer = Callable[[Storage, int], Any]

# channel → "module:function" taking (storage, inbox_id); channels missing here are push-only (webhooks, widget).
SYNCERS: dict[str, str | Syncer] = {
    "email": "workers.mail_sync:sync_email_inbox",
    "instagram": "workers.instagram_sync:sync_instagram_inbox",
    "telegram": "workers.telegram_sync:sync_telegram_inbox",
}


def syncer_for(channel: str) -> Syncer | None:
    target = SYNCERS.get(channel)
    if target is None or callable(target):
        return target
    module, _, name = target.partition(":")
    fn: Syncer = getattr(importlib.import_module(module), name)
    return fn


def polls(channel: str) -> bool:
    """True if inboxes of this channel are fetched by polling."""
    return channel in SYNCERS


def sync_inbox(storage: Storage, inbox_id: int) -> Any:
    """Fetch and store what is new in the inbox; returns the channel's result (e.g. mail_sync's SyncResult).

    Raises connectors.errors.* as the channel does; the caller records them on the inbox.
    """
    with storage.factory() as session:
        inbox = session.get(Inbox, inbox_id)
        if inbox is None:
            raise LookupError(f"inbox {inbox_id} does not exist")
        channel = inbox.channel
    fn = syncer_for(channel)
    if fn is None:
        log.debug("inbox %s (%s) does not poll", inbox_id, channel)
        return None
    return fn(storage, inbox_id)
