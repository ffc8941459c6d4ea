"""``/settings/profile``: every user's own name, avatar colour, password, two-factor sign-in and notification
preferences. ``/settings/canned``: canned responses, shared (admins and leads write them) and personal."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required, login_user
from sqlalchemy.exc import SQLAlchemyError

from inbox import people
from inbox.errors import InvalidChange
from web import canned
from web.auth import Agent, me
from web.db import get_session

bp = Blueprint("profile", __name__, url_prefix="/settings/profile")
canned_bp = Blueprint("canned", __name__, url_prefix="/settings/canned")


def _failed(exc: InvalidChange, endpoint: str) -> ResponseReturnValue:
    get_session().rollback()
    flash(str(exc), "error")
    return redirect(url_for(endpoint))


@bp.get("")
@login_required
def index() -> ResponseReturnValue:
    user = me()
    profile = people.profile_of(get_session(), user)
    return render_template(
        "settings/profile.html",
        user=user,
        profile=profile,
        initials=people.initials(user.name, user.email),
        avatar=people.avatar_class(user, profile),
        colors=people.AVATAR_COLORS,
    )


@bp.post("")
@login_required
def save() -> ResponseReturnValue:
    if request.form.get("form") != "profile":
        flash("Nothing to change.", "info")
        return redirect(url_for(".index"))
    session, form = get_session(), request.form
    try:
        people.save_profile(
            session,
            me(),
            name=form.get("name", ""),
            avatar_color=form.get("avatar_color", ""),
            notify_mentions=form.get("notify_mentions") == "1",
            notify_assignments=form.get("notify_assignments") == "1",
            notify_new_tickets=form.get("notify_new_tickets") == "1",
            email_notifications=form.get("email_notifications") == "1",
        )
    except InvalidChange as exc:
        return _failed(exc, ".index")
    session.commit()
    flash("Profile saved.", "info")
    return redirect(url_for(".index"))


@bp.post("/password")
@login_required
def password() -> ResponseReturnValue:
    session, form, user = get_session(), request.form, me()
    try:
        people.change_password(
            session, user, form.get("current", ""), form.get("password", ""), form.get("confirm", "")
        )
    except InvalidChange as exc:
        return _failed(exc, ".index")
    session.commit()
    login_user(Agent(user))  # other sessions end (their id holds the old hash); this one carries on
    flash("Password changed. Your other sessions are signed out.", "info")
    return redirect(url_for(".index"))


def notification_prefs() -> dict[str, Any]:
    """For base.html: which desktop notifications the signed-in user wants (app.js reads them)."""
    from flask_login import current_user

    if not current_user.is_authenticated:
        return {"notify_prefs": ""}
    try:
        profile = people.profile_of(get_session(), me())
    except SQLAlchemyError:  # rendering an error page after a failed transaction: no notifications, no new error
        return {"notify_prefs": ""}
    wanted = [
        name
        for name, on in (
            ("mentions", profile.notify_mentions),
            ("assignments", profile.notify_assignments),
            ("new_tickets", profile.notify_new_tickets),
        )
        if on
    ]
    return {"notify_prefs": " ".join(wanted)}


@canned_bp.get("", endpoint="index")
@login_required
def index_canned() -> ResponseReturnValue:
    user = me()
    rows = canned.visible(get_session(), user)
    return render_template(
        "settings/canned.html",
        shared=[r for r in rows if r.owner_id is None],
        mine=[r for r in rows if r.owner_id is not None],
        preview=lambda body: canned.preview(body, user),
        unknown=canned.unknown_placeholders,
        may_edit=lambda row: canned.may_edit(user, row),
        may_share=user.role in canned.SHARED_EDITORS,
        placeholders=canned.PLACEHOLDERS,
        editing=None,
    )


@canned_bp.post("", endpoint="create")
@login_required
def create_canned() -> ResponseReturnValue:
    session = get_session()
    try:
        canned.create(
            session,
            me(),
            request.form.get("title", ""),
            request.form.get("body", ""),
            shared=request.form.get("shared") == "1",
        )
    except InvalidChange as exc:
        return _failed(exc, ".index")
    session.commit()
    flash("Canned response saved.", "info")
    return redirect(url_for(".index"))


@canned_bp.post("/<int:canned_id>", endpoint="update")
@login_required
def update_canned(canned_id: int) -> ResponseReturnValue:
    session = get_session()
    row = canned.get_visible(session, me(), canned_id)
    try:
        canned.update(session, me(), row, request.form.get("title", ""), request.form.get("body", ""))
    except InvalidChange as exc:
        return _failed(exc, ".index")
    session.commit()
    flash("Canned response saved.", "info")
    return redirect(url_for(".index"))


@canned_bp.post("/<int:canned_id>/delete", endpoint="delete")
@login_required
def delete_canned(canned_id: int) -> ResponseReturnValue:
    session = get_session()
    row = canned.get_visible(session, me(), canned_id)
    try:
        canned.delete(session, me(), row)
    except InvalidChange as exc:
        return _failed(exc, ".index")
    session.commit()
    flash("Canned response deleted.", "info")
    return redirect(url_for(".index"))
