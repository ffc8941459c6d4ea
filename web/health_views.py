"""``/settings/health``: channel health for admins, live; and the failing-inbox banner in every agent's screen.

The page shows what ``helpline status`` prints, from the same function (``workers.status.collect``): queues, failed
jobs, and per inbox its last good sync, last error, reply backlog and credential state. It redraws when an
``inbox.health`` event arrives (workers publish one when an inbox starts or stops failing) and every few seconds
for the queue counts, which have no event. Admins can sync an inbox now (through the poll lock, like the
scheduler), retry a failed job or a failed reply, and set how long an inbox may fail before agents are told.

The banner (``_health_banner.html``, included by ``base.html``) lists the inboxes the user may see that have failed
for longer than their threshold; each agent's socket joins the ``health:<inbox>`` rooms of those inboxes on connect.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user
from flask_socketio import join_room
from redis import Redis
from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError

from inbox import workspace
from inbox.config import Settings
from inbox.models import Inbox, Message, Quarantine
from web import access, jobs
from web.auth import me, role_required
from web.db import get_or_404, get_session
from workers.health import alert_state, health_room

log = logging.getLogger(__name__)
bp = Blueprint("channel_health", __name__, url_prefix="/settings/health")
REFRESH_SECONDS = 10  # queue counts have no event: the page re-reads them this often
MAX_ALERT_MINUTES = 7 * 24 * 60


def _settings() -> Settings:
    settings: Settings = current_app.config["HELPLINE_SETTINGS"]
    return settings


def _redis() -> Redis | None:
    url = current_app.config.get("HELPLINE_REDIS_URL")
    return Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2) if url else None


def _report() -> dict[str, Any]:
    from workers.status import collect, failed_replies

    session = get_session()
    redis = _redis()
    try:
        report = collect(session, redis, _settings().poll_interval)
    finally:
        if redis is not None:
            redis.close()
    report["failed_reply_list"] = failed_replies(session)
    report["quarantined"] = dict(session.execute(
        select(Quarantine.inbox_id, func.count()).where(Quarantine.resolved_at.is_(None)).group_by(Quarantine.inbox_id)
    ).all())
    return report


def _audit(action: str, target: str, **detail: Any) -> None:
    workspace.record(get_session(), action, actor=me(), target=target, detail=detail, ip=request.remote_addr or "")


@bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    return render_template("settings/health.html", report=_report(), refresh=REFRESH_SECONDS)


@bp.get("/panel")
@role_required("admin")
def panel() -> ResponseReturnValue:
    """The page's tables alone, fetched again on every health event and every few seconds."""
    return render_template("settings/_health_panel.html", report=_report())


@bp.post("/inboxes/<int:inbox_id>/sync")
@role_required("admin")
def sync_now(inbox_id: int) -> ResponseReturnValue:
    """Enqueue a poll of the inbox now, unless one is already queued or running (the scheduler's lock)."""
    from workers.schedule import try_enqueue_poll
    from workers.sync import polls

    inbox = get_or_404(get_session(), Inbox, inbox_id)
    if not polls(inbox.channel):
        flash(f"{inbox.name} receives its messages as they are sent (webhook or widget); there is nothing to "
              "fetch.", "error")
    elif inbox.paused:
        flash(f"{inbox.name} is paused; resume it under Channels first.", "error")
    elif not current_app.config.get("HELPLINE_REDIS_URL"):
        flash("No Redis is configured, so no worker can run the sync.", "error")
    else:
        try:
            job = try_enqueue_poll(inbox.id)
        except Exception as exc:  # Redis down: say so, change nothing
            log.warning("sync now of inbox %s failed", inbox.id, exc_info=True)
            flash(f"Could not reach Redis to queue the sync: {exc}", "error")
        else:
            if job is None:
                flash(f"A sync of {inbox.name} is already queued or running.", "info")
            else:
                _audit("inbox.sync_requested", f"inbox:{inbox.id}", name=inbox.name)
                get_session().commit()
                flash(f"Sync of {inbox.name} queued.", "success")
    return redirect(url_for(".index"))


@bp.post("/inboxes/<int:inbox_id>/threshold")
@role_required("admin")
def threshold(inbox_id: int) -> ResponseReturnValue:
    """How many minutes the inbox may fail before every agent of it sees a banner (empty: the default)."""
    session = get_session()
    inbox = get_or_404(session, Inbox, inbox_id)
    raw = request.form.get("minutes", "").strip()
    if raw and (not raw.isdigit() or not 1 <= int(raw) <= MAX_ALERT_MINUTES):
        flash(f"Give the threshold in whole minutes, from 1 to {MAX_ALERT_MINUTES}, or leave it empty.", "error")
        return redirect(url_for(".index"))
    config = dict(inbox.config or {})
    if raw:
        config["alert_after"] = int(raw) * 60
    else:
        config.pop("alert_after", None)
    inbox.config = config
    _audit("inbox.alert_threshold_changed", f"inbox:{inbox.id}", name=inbox.name,
           minutes=int(raw) if raw else None)
    from workers.health import record_health

    record_health(session, inbox, _settings().poll_interval)  # banners appear or go at once
    session.commit()
    flash(f"{inbox.name}: flagged after {raw + ' minutes' if raw else 'the default time'} of failure.", "success")
    return redirect(url_for(".index"))


@bp.post("/jobs/<job_id>/retry")
@role_required("admin")
def retry_job(job_id: str) -> ResponseReturnValue:
    from workers.status import retry_failed_job

    redis = _redis()
    if redis is None:
        abort(404)
    try:
        done = retry_failed_job(redis, job_id)
    finally:
        redis.close()
    if not done:
        abort(404)
    _audit("job.retried", f"job:{job_id}")
    get_session().commit()
    flash("Job queued again.", "success")
    return redirect(url_for(".index"))


@bp.post("/replies/<int:message_id>/retry")
@role_required("admin")
def retry_reply(message_id: int) -> ResponseReturnValue:
    """A failed reply goes back to ``queued`` with fresh attempts and is handed to a worker."""
    from workers.outbound import requeue

    session = get_session()
    msg = get_or_404(session, Message, message_id)
    if msg.direction != "outbound" or msg.delivery_state not in ("failed", "delayed"):
        flash("That reply is not waiting for a retry.", "error")
        return redirect(url_for(".index"))
    requeue(session, msg)
    _audit("message.retried", f"message:{msg.id}", ticket_id=msg.ticket_id)
    session.commit()
    jobs.enqueue_delivery(msg.id)  # after the commit, as a new reply is; if Redis is down the sweeper does it
    flash(f"Reply on ticket #{msg.ticket_id} queued again.", "success")
    return redirect(url_for(".index"))


# --- the banner in every agent's screen --------------------------------------------------------------------------


def failing_inboxes() -> list[dict[str, Any]]:
    """The failing inboxes the signed-in user may see, with whether to flag them now or in how many seconds.

    Runs on every page, so it reads only inbox rows that have an error or bad credentials (no message counts).
    """
    if not current_user.is_authenticated:
        return []
    try:
        return _failing_inboxes()
    except SQLAlchemyError:  # the page may be the error page of a database outage: it must still render
        log.warning("could not read channel health for the banner", exc_info=True)
        get_session().rollback()
        return []


def _failing_inboxes() -> list[dict[str, Any]]:
    session = get_session()
    stmt = select(Inbox).where(
        Inbox.paused.is_(False), or_(Inbox.last_error_at.is_not(None), Inbox.credential_state != "ok")
    ).order_by(Inbox.name)
    out = []
    for inbox in session.scalars(access.restrict_inboxes(stmt, access.visible_inbox_ids(session, me()))):
        state = alert_state(inbox, _settings().poll_interval)
        if state["failing"]:
            out.append({"id": inbox.id, "name": inbox.name, "channel": inbox.channel,
                        "last_error": inbox.last_error, "credential_state": inbox.credential_state} | state)
    return out


def join_health_rooms() -> None:
    """On an agent's socket connect: hear the health of every inbox they may see (server-side; clients can't ask)."""
    session = get_session()
    ids = access.visible_inbox_ids(session, me())
    if ids is None:
        ids = set(session.scalars(select(Inbox.id)))
    for inbox_id in ids:
        join_room(health_room(inbox_id))


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    from web import quarantine_views

    app.register_blueprint(quarantine_views.bp)

    @app.context_processor
    def _banner() -> dict[str, Any]:
        return {"failing_inboxes": failing_inboxes}  # called by the template, so JSON and fragments skip it
