"""``/settings/people``: users (role, teams, deactivate, reassign their tickets), invitations and teams with the
inboxes they own. Admins only. ``/invite/<token>`` is the public sign-up page of an invitation.

A deactivated user can no longer sign in, and their sessions and live sockets end at once (``web.auth.load_user``
refuses inactive users on every request; their sockets are disconnected here). Their tickets stay assigned until
an admin moves them, in bulk, to another agent or to nobody.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from connectors.errors import ChannelError
from inbox import people, workspace
from inbox.errors import InvalidChange
from inbox.models import ROLES, Inbox, Team, Ticket, User
from inbox.people_models import Invite
from tickets.staff import reassign_open_tickets
from web.auth import Agent, me, role_required
from web.db import get_or_404, get_session
from web.people import can_be_assigned
from workers.system_mail import NoMailer, send_system_mail

bp = Blueprint("people", __name__, url_prefix="/settings/people")
signup_bp = Blueprint("signup", __name__)


def _audit(action: str, target: str, **detail: Any) -> None:
    workspace.record(get_session(), action, actor=me(), target=target, detail=detail, ip=request.remote_addr or "")


def _failed(exc: InvalidChange, endpoint: str = ".index", **values: Any) -> ResponseReturnValue:
    get_session().rollback()
    flash(str(exc), "error")
    return redirect(url_for(endpoint, **values))


@bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    session = get_session()
    users = list(
        session.scalars(select(User).options(selectinload(User.teams)).order_by(User.is_active.desc(), User.name))
    )
    teams = list(session.scalars(select(Team).options(selectinload(Team.members)).order_by(Team.name)))
    inboxes = list(session.scalars(select(Inbox).order_by(Inbox.name)))
    return render_template(
        "settings/people.html",
        users=users,
        teams=teams,
        inboxes=inboxes,
        team_inboxes={t.id: [i for i in inboxes if i.team_id == t.id] for t in teams},
        invites=people.pending_invites(session),
        open_counts=people.open_ticket_counts(session),
        roles=ROLES,
        team_names={t.id: t.name for t in teams},
    )


@bp.post("/invite")
@role_required("admin")
def invite() -> ResponseReturnValue:
    session = get_session()
    team_ids = [int(v) for v in request.form.getlist("team_id") if v.isdigit()]
    teams = list(session.scalars(select(Team).where(Team.id.in_(team_ids)))) if team_ids else []
    try:
        row, token = people.create_invite(
            session, request.form.get("email", ""), role=request.form.get("role", "agent"), teams=teams, invited_by=me()
        )
    except InvalidChange as exc:
        return _failed(exc)
    link = url_for("signup.accept", token=token, _external=True)
    _audit("invite.created", f"invite:{row.id}", email=row.email, role=row.role)
    session.commit()  # the invite exists before the mail goes out: a slow SMTP server must not lose it
    sent_from, error = "", ""
    body = (
        f"Hello,\n\n{me().name} invited you to Helpline as {row.role}.\n\n"
        f"Open this link to choose your name and password (it works once, until "
        f"{row.expires_at:%Y-%m-%d %H:%M} UTC):\n\n{link}\n"
    )
    try:
        secret = current_app.config["SECRET_KEY"]
        sent_from = send_system_mail(session, secret, row.email, "You are invited to Helpline", body)
    except NoMailer as exc:
        error = f"{exc}; pass the link on yourself."
    except ChannelError as exc:
        error = f"the invitation email could not be sent ({exc}); pass the link on yourself."
    if error:
        row.sent_error = error[:1000]
        session.commit()
    return render_template("settings/invite_sent.html", invite=row, link=link, sent_from=sent_from, error=error)


@bp.post("/invites/<int:invite_id>/revoke")
@role_required("admin")
def revoke(invite_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, Invite, invite_id)
    people.revoke_invite(session, row)
    _audit("invite.revoked", f"invite:{row.id}", email=row.email)
    session.commit()
    flash(f"The invitation of {row.email} no longer works.", "info")
    return redirect(url_for(".index"))


@bp.post("/users/<int:user_id>")
@role_required("admin")
def update_user(user_id: int) -> ResponseReturnValue:
    session = get_session()
    user = get_or_404(session, User, user_id)
    if "role" not in request.form:
        flash("Nothing to change.", "info")
        return redirect(url_for(".index"))
    try:
        people.set_role(session, user, request.form.get("role", ""))
        people.set_teams(session, user, (int(v) for v in request.form.getlist("team_id") if v.isdigit()))
    except InvalidChange as exc:
        return _failed(exc)
    session.commit()
    if user.id == current_user.id:
        login_user(Agent(user))  # keep this admin's session on their own row's new role
    flash(f"Saved {user.name}.", "info")
    return redirect(url_for(".index"))


def _reassign(session: Any, user: User, target: str) -> tuple[int, int] | None:
    """``target``: "keep", "none" (unassign) or a user id."""
    if target in ("", "keep"):
        return None
    to_user = None
    if target != "none":
        to_user = session.get(User, int(target)) if target.isdigit() else None
        if to_user is None or not to_user.is_active or to_user.id == user.id:
            raise InvalidChange("Pick an active user to take the tickets over.")

    def can_take(ticket: Ticket) -> bool:
        return to_user is not None and can_be_assigned(session, to_user, ticket.inbox_id)

    return reassign_open_tickets(session, user, to_user, by=me().id, can_take=can_take)


def _moved_text(result: tuple[int, int] | None) -> str:
    if result is None:
        return ""
    moved, kept = result
    text = f" {moved} open ticket{'s' if moved != 1 else ''} moved."
    if kept:
        text += f" {kept} stayed: the new owner cannot see their inbox."
    return text


@bp.post("/users/<int:user_id>/deactivate")
@role_required("admin")
def deactivate(user_id: int) -> ResponseReturnValue:
    session = get_session()
    user = get_or_404(session, User, user_id)
    if user.id == current_user.id:
        flash("You cannot deactivate yourself; ask another admin.", "error")
        return redirect(url_for(".index"))
    try:
        people.set_active(session, user, False)
        result = _reassign(session, user, request.form.get("reassign_to", "keep"))
    except InvalidChange as exc:
        return _failed(exc)
    session.commit()
    from web.socket_events import end_sockets

    end_sockets(user.id)
    flash(f"{user.name} can no longer sign in.{_moved_text(result)}", "info")
    return redirect(url_for(".index"))


@bp.post("/users/<int:user_id>/activate")
@role_required("admin")
def activate(user_id: int) -> ResponseReturnValue:
    session = get_session()
    user = get_or_404(session, User, user_id)
    people.set_active(session, user, True)
    session.commit()
    flash(f"{user.name} can sign in again.", "info")
    return redirect(url_for(".index"))


@bp.post("/users/<int:user_id>/reassign")
@role_required("admin")
def reassign(user_id: int) -> ResponseReturnValue:
    session = get_session()
    user = get_or_404(session, User, user_id)
    try:
        result = _reassign(session, user, request.form.get("reassign_to", "keep"))
    except InvalidChange as exc:
        return _failed(exc)
    session.commit()
    flash(f"{user.name}:{_moved_text(result) or ' nothing moved.'}", "info")
    return redirect(url_for(".index"))


@bp.post("/teams")
@role_required("admin")
def create_team() -> ResponseReturnValue:
    session = get_session()
    try:
        team = people.create_team(session, request.form.get("name", ""))
    except InvalidChange as exc:
        return _failed(exc)
    _audit("team.created", f"team:{team.id}", name=team.name)
    session.commit()
    return redirect(url_for(".team", team_id=team.id))


@bp.get("/teams/<int:team_id>")
@role_required("admin")
def team(team_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, Team, team_id)
    return render_template(
        "settings/team.html",
        team=row,
        member_ids={u.id for u in row.members},
        users=list(session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name))),
        inboxes=list(session.scalars(select(Inbox).options(selectinload(Inbox.team)).order_by(Inbox.name))),
    )


@bp.post("/teams/<int:team_id>")
@role_required("admin")
def update_team(team_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, Team, team_id)
    if "name" not in request.form:
        return redirect(url_for(".team", team_id=team_id))
    try:
        people.update_team(
            session,
            row,
            name=request.form.get("name", ""),
            inbox_ids=(int(v) for v in request.form.getlist("inbox_id") if v.isdigit()),
            member_ids=(int(v) for v in request.form.getlist("member_id") if v.isdigit()),
        )
    except InvalidChange as exc:
        return _failed(exc, ".team", team_id=team_id)
    _audit("team.updated", f"team:{row.id}", name=row.name)
    session.commit()
    flash(f"Saved team {row.name}.", "info")
    return redirect(url_for(".index"))


@bp.post("/teams/<int:team_id>/delete")
@role_required("admin")
def delete_team(team_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, Team, team_id)
    name = row.name
    people.delete_team(session, row)
    _audit("team.deleted", f"team:{team_id}", name=name)
    session.commit()
    flash(f"Team {name} deleted; its inboxes now have no team (admins still see them).", "info")
    return redirect(url_for(".index"))


@signup_bp.route("/invite/<token>", methods=["GET", "POST"])
def accept(token: str) -> ResponseReturnValue:
    """The invitee chooses a name and password; then they are signed in."""
    session = get_session()
    row = people.find_invite(session, token)
    if row is None:
        return render_template("settings/signup.html", invite=None), 404
    if request.method == "GET":
        return render_template("settings/signup.html", invite=row, name="")
    name = request.form.get("name", "")
    if request.form.get("password", "") != request.form.get("confirm", ""):
        error = "The two passwords differ."
        return render_template("settings/signup.html", invite=row, name=name, error=error), 422
    try:
        user = people.accept_invite(session, token, name=name, password=request.form.get("password", ""))
    except InvalidChange as exc:
        session.rollback()
        return render_template("settings/signup.html", invite=row, name=name, error=str(exc)), 422
    session.commit()
    from flask import session as cookie

    cookie.clear()
    login_user(Agent(user))
    flash(f"Welcome, {user.name}! You are signed in.", "info")
    return redirect(url_for("inbox.index"))
