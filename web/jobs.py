"""Handing committed replies to the workers. The one place the web enqueues jobs."""

from __future__ import annotations

import logging

from flask import Flask, current_app

log = logging.getLogger(__name__)


def enqueue_delivery(message_id: int) -> None:
    """Ask a worker to deliver a committed outbound message now.

    If Redis or the workers package is unavailable the message stays ``queued`` in the database, and the workers'
    sweeper re-enqueues queued messages: a reply is never lost because the enqueue failed.
    """
    if not current_app.config.get("HELPLINE_REDIS_URL"):
        log.info("no Redis configured; message %s left queued for the sweeper", message_id)
        return
    try:
        from workers.enqueue import enqueue_delivery as enqueue
    except ImportError:
        log.info("workers.enqueue not available; message %s left queued for the sweeper", message_id)
        return
    try:
        enqueue(message_id)
    except Exception:  # Redis down: the row is committed as queued, the sweeper picks it up
        log.warning("enqueue of message %s failed; left queued for the sweeper", message_id, exc_info=True)


def init_app(app: Flask) -> None:
    """Point the workers' runtime at this app's Redis, so an enqueue never starts an embedded Redis of its own."""
    url = app.config.get("HELPLINE_REDIS_URL")
    if not url:
        return
    try:
        from workers import runtime
    except ImportError:
        return
    runtime.configure(app.config["HELPLINE_SETTINGS"], url)
