"""Handing committed replies to the workers. The one place the web enqueues jobs."""

from __future__ import annotations

import logging

from flask import Flask, Response, current_app, flash, g, request

from tickets.summary_rebuild import DEFERRED

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
    app.after_request(_rebuild_notice)
    try:
        from workers import report_jobs, runtime
        from workers.automation_jobs import remove_automation_enqueuer
    except ImportError:
        return
    factory = app.extensions["helpline"].factory
    if not url:
        # No Redis for this app: no automation jobs either (an enqueuer left by an earlier app in this process, as
        # in the tests, would otherwise start an embedded Redis in the working directory), and a settings change
        # recomputes the report summary inside its own commit.
        remove_automation_enqueuer()
        report_jobs.uninstall(factory)
        return
    # A calendar, holiday, SLA policy or inbox team change recomputes the report summary in a worker job.
    report_jobs.install(factory, url)
    runtime.configure(app.config["HELPLINE_SETTINGS"], url)
    from workers.automation_jobs import install_automation_enqueuer

    install_automation_enqueuer()  # agents' changes and chat messages run automation rules and webhooks


def _rebuild_notice(response: Response) -> Response:
    """After a page's commit left the report summary to a background rebuild, say so on the next page."""
    session = g.get("db_session")
    if session is not None and session.info.pop(DEFERRED, None) and request.blueprint != "api":
        flash("Report figures are being recomputed in the background after this change; the reports page shows "
              "the progress.", "info")
    return response


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
