"""``/settings/audit``: who did what and when (sign-ins, settings and permission changes, exports). Admins only.

Sign-ins are recorded from Flask-Login's ``user_logged_in`` signal, so the sign-in views need not know about it;
the settings pages record their own changes with ``inbox.workspace.record``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, has_request_context, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, user_logged_in
from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Session

from inbox import workspace
from inbox.models import Inbox, User
from inbox.settings_models import AuditLog
from web.auth import role_required
from web.db import get_session

bp = Blueprint("audit", __name__, url_prefix="/settings")
PAGE = 100


@bp.get("")
@role_required("admin")
def home() -> ResponseReturnValue:
    return redirect(url_for("channel_settings.index"))


@bp.get("/audit")
@role_required("admin")
def index() -> ResponseReturnValue:
    session = get_session()
    stmt = select(AuditLog).order_by(AuditLog.id.desc()).limit(PAGE + 1)
    before = request.args.get("before", type=int)
    if before:
        stmt = stmt.where(AuditLog.id < before)
    action = request.args.get("action", "").strip()
    if action:
        stmt = stmt.where(AuditLog.action.startswith(action))
    rows = list(session.scalars(stmt))
    older = rows[PAGE - 1].id if len(rows) > PAGE else None  # the next page starts below the last one shown
    return render_template("settings/audit.html", rows=rows[:PAGE], more=older, action=action)


def _on_login(sender: Flask, user: Any, **_extra: Any) -> None:
    """Record a sign-in in the same request's session (committed here: the view has already committed)."""
    session = get_session()
    row = getattr(user, "row", None)
    workspace.record(session, "user.signed_in", actor=row, target=f"user:{user.id}", ip=request.remote_addr or "")
    session.commit()


WATCHED_USER_FIELDS = ("role", "is_active", "password_hash", "totp_secret", "email")


def _audit_user_changes(session: Session, _context: Any, _instances: Any) -> None:
    """Record permission changes made through the web app, whichever page made them (users, invites, profile).

    A ``before_flush`` hook on the app's session factory: the row is written in the same transaction as the
    change, so a rolled-back change leaves no audit row. Values of secrets are never recorded, only that they
    changed.
    """
    if not has_request_context():
        return
    actor = getattr(current_user, "row", None) if current_user and current_user.is_authenticated else None
    ip = request.remote_addr or ""
    for obj in list(session.new):
        if isinstance(obj, User):
            session.add(_row(actor, "user.created", obj, {"email": obj.email, "role": obj.role}, ip))
    for obj in list(session.dirty):
        if isinstance(obj, User):
            changes: dict[str, Any] = {}
            state = inspect(obj)
            for name in WATCHED_USER_FIELDS:
                history = state.attrs[name].history
                if history.has_changes():
                    secret = name in ("password_hash", "totp_secret")
                    old = history.deleted[0] if history.deleted else None
                    changes[name] = "changed" if secret else f"{old} → {history.added[0] if history.added else None}"
            teams = state.attrs["teams"].history
            if teams.has_changes():
                changes["teams"] = {"added": [t.name for t in teams.added], "removed": [t.name for t in teams.deleted]}
            if changes:
                session.add(_row(actor, "user.updated", obj, changes, ip))
        elif isinstance(obj, Inbox) and inspect(obj).attrs["team_id"].history.has_changes():
            history = inspect(obj).attrs["team_id"].history
            detail = {"team_id": f"{(history.deleted or [None])[0]} → {(history.added or [None])[0]}"}
            session.add(
                AuditLog(
                    actor_id=actor.id if actor else None,
                    actor_email=actor.email if actor else "",
                    action="inbox.team_changed",
                    target=f"inbox:{obj.id}",
                    detail=detail,
                    ip=ip[:64],
                )
            )


def _row(actor: User | None, action: str, user: User, detail: dict[str, Any], ip: str) -> AuditLog:
    target = f"user:{user.id}" if user.id else f"user:{user.email}"
    return AuditLog(
        actor_id=actor.id if actor else None,
        actor_email=actor.email if actor else "",
        action=action,
        target=target,
        detail=detail,
        ip=ip[:64],
    )


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    user_logged_in.connect(_on_login, app)
    storage = app.extensions["helpline"]
    event.listen(storage.factory, "before_flush", _audit_user_changes)
