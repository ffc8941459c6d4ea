"""Admin pages: users and their teams, inboxes at a glance. Admins only; everyone else gets 403."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from inbox.models import ROLES, Inbox, Team, User
from inbox.users import create_user
from web import canned
from web.auth import role_required
from web.db import get_session

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/users")
@role_required("admin")
def users() -> ResponseReturnValue:
    session = get_session()
    return render_template(
        "admin_users.html",
        users=list(session.scalars(select(User).options(selectinload(User.teams)).order_by(User.name))),
        teams=list(session.scalars(select(Team).order_by(Team.name))),
        inboxes=list(session.scalars(select(Inbox).options(selectinload(Inbox.team)).order_by(Inbox.name))),
        roles=ROLES,
    )


@bp.post("/users")
@role_required("admin")
def add_user() -> ResponseReturnValue:
    session = get_session()
    user = create_user(
        session,
        request.form.get("email", ""),
        request.form.get("password", ""),
        role=request.form.get("role", "agent"),
        name=request.form.get("name", ""),
    )
    team = session.get(Team, request.form.get("team_id", type=int) or 0)
    if team is not None:
        user.teams.append(team)
    session.commit()
    flash(f"{user.email} can now sign in.", "info")
    return redirect(url_for(".users"))


@bp.post("/users/<int:user_id>/active")
@role_required("admin")
def set_active(user_id: int) -> ResponseReturnValue:
    session = get_session()
    user = session.get(User, user_id)
    if user is None:
        return redirect(url_for(".users"))
    user.is_active = request.form.get("active") == "1"
    session.commit()  # the user's sessions and sockets are refused from their next request
    return redirect(url_for(".users"))


@bp.get("/canned")
@role_required("admin")
def canned_list() -> ResponseReturnValue:
    return render_template("admin_canned.html", responses=canned.responses(get_session()))


@bp.post("/canned")
@role_required("admin")
def canned_add() -> ResponseReturnValue:
    canned.add(get_session(), request.form.get("title", ""), request.form.get("body", ""))
    get_session().commit()
    return redirect(url_for(".canned_list"))


@bp.post("/canned/<int:index>/delete")
@role_required("admin")
def canned_remove(index: int) -> ResponseReturnValue:
    canned.remove(get_session(), index)
    get_session().commit()
    return redirect(url_for(".canned_list"))
