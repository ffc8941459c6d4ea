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
    try:
        from workers import runtime
        from workers.automation_jobs import remove_automation_enqueuer
    except ImportError:
        return
    if not url:
        # No Redis for this app: no automation jobs either (an enqueuer left by an earlier app in this process, as
        # in the tests, would otherwise start an embedded Redis in the working directory).
        remove_automation_enqueuer()
        return
    runtime.configure(app.config["HELPLINE_SETTINGS"], url)
    from workers.automation_jobs import install_automation_enqueuer

    install_automation_enqueuer()  # agents' changes and chat messages run automation rules and webhooks


def automation_changed(wanted: dict[str, list[str]]) -> None:
    """Tell the publishers of every process which events rules and webhooks now want (after a settings change)."""
    if not current_app.config.get("HELPLINE_REDIS_URL"):
        return
    from workers.automation_jobs import publish_gate

    publish_gate(wanted)


def enqueue_webhook(delivery_id: int) -> bool:
    """Ask a worker to send one webhook delivery now (the settings page's test event); False without Redis."""
    if not current_app.config.get("HELPLINE_REDIS_URL"):
        return False
    from workers.automation_jobs import enqueue_webhook as enqueue

    try:
        enqueue(delivery_id)
    except Exception:
        log.warning("enqueue of webhook delivery %s failed", delivery_id, exc_info=True)
        return False
    return True
