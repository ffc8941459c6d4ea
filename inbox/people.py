"""People: invitations with expiring single-use sign-up links, roles, teams and the inboxes they own,
deactivation, profiles and password changes. Functions flush, never commit (the caller owns the transaction).

The last active admin can neither be demoted nor deactivated: a workspace without an admin could never be
administered again from the browser.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import InvalidChange
from inbox.models import OPEN_STATUSES, ROLES, Inbox, Team, Ticket, User
from inbox.people_models import Invite, UserProfile
from inbox.users import check_password, create_user, find_user_by_email, hash_password

INVITE_DAYS = 7  # how long a sign-up link works
AVATAR_COLORS = ("#2563eb", "#7c3aed", "#db2777", "#dc2626", "#ea580c", "#ca8a04", "#16a34a", "#0891b2")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_invite(
    session: Session,
    email: str,
    *,
    role: str = "agent",
    teams: Sequence[Team] = (),
    invited_by: User | None = None,
    now: dt.datetime | None = None,
    days: int = INVITE_DAYS,
) -> tuple[Invite, str]:
    """Invite ``email``; returns the invite and its token (shown once: only its hash is stored). An earlier
    pending invite for the same address stops working, so only the newest link signs up."""
    email = email.strip().lower()
    if role not in ROLES:
        raise InvalidChange(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidChange(f"not an email address: {email!r}")
    if find_user_by_email(session, email) is not None:
        raise InvalidChange(f"{email} already has an account")
    now = now or utcnow()
    session.execute(
        update(Invite)
        .where(Invite.email == email, Invite.accepted_at.is_(None), Invite.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    token = secrets.token_urlsafe(32)
    invite = Invite(
        email=email,
        role=role,
        team_ids=sorted({t.id for t in teams}),
        token_hash=_hash(token),
        invited_by_id=invited_by.id if invited_by else None,
        expires_at=now + dt.timedelta(days=days),
    )
    session.add(invite)
    session.flush()
    return invite, token


def pending_invites(session: Session, now: dt.datetime | None = None) -> list[Invite]:
    stmt = select(Invite).where(Invite.accepted_at.is_(None), Invite.revoked_at.is_(None))
    return list(session.scalars(stmt.where(Invite.expires_at > (now or utcnow())).order_by(Invite.id.desc())))


def find_invite(session: Session, token: str, now: dt.datetime | None = None) -> Invite | None:
    """The usable invite of ``token``: not accepted, not revoked, not expired; else None."""
    invite = session.scalar(select(Invite).where(Invite.token_hash == _hash(token)))
    if invite is None or invite.accepted_at or invite.revoked_at or invite.expires_at <= (now or utcnow()):
        return None
    return invite


def accept_invite(session: Session, token: str, *, name: str, password: str, now: dt.datetime | None = None) -> User:
    """Create the invited user. The invite is claimed by a conditional UPDATE first, so two tabs submitting the
    same link at once create one account, and a used link never works again."""
    now = now or utcnow()
    invite = find_invite(session, token, now)
    if invite is None:
        raise InvalidChange("This invitation link has expired or was already used. Ask an admin for a new one.")
    if not name.strip():
        raise InvalidChange("Please enter your name.")
    hash_password(password)  # the length check, before the link is spent
    claimed = session.execute(
        update(Invite)
        .where(Invite.id == invite.id, Invite.accepted_at.is_(None), Invite.revoked_at.is_(None))
        .values(accepted_at=now)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        raise InvalidChange("This invitation link was already used.")
    user = create_user(session, invite.email, password, role=invite.role, name=name.strip()[:200])
    if invite.team_ids:
        user.teams = list(session.scalars(select(Team).where(Team.id.in_(invite.team_ids))))
    session.flush()
    return user


def revoke_invite(session: Session, invite: Invite, now: dt.datetime | None = None) -> None:
    if invite.accepted_at is None and invite.revoked_at is None:
        invite.revoked_at = now or utcnow()
        session.flush()


def _other_active_admins(session: Session, user: User) -> int:
    stmt = select(func.count()).select_from(User).where(User.role == "admin", User.is_active.is_(True))
    return int(session.scalar(stmt.where(User.id != user.id)) or 0)


def set_role(session: Session, user: User, role: str) -> None:
    if role not in ROLES:
        raise InvalidChange(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if user.role == "admin" and role != "admin" and user.is_active and _other_active_admins(session, user) == 0:
        raise InvalidChange(f"{user.email} is the last admin; make someone else an admin first")
    user.role = role
    session.flush()


def set_active(session: Session, user: User, active: bool) -> None:
    """Deactivate (they can no longer sign in; their sessions and sockets are refused) or reactivate a user.
    Their tickets stay where they are; ``tickets.staff.reassign_open_tickets`` moves them."""
    if not active and user.role == "admin" and user.is_active and _other_active_admins(session, user) == 0:
        raise InvalidChange(f"{user.email} is the last admin and cannot be deactivated")
    user.is_active = active
    session.flush()


def set_teams(session: Session, user: User, team_ids: Iterable[int]) -> None:
    wanted = set(team_ids)
    user.teams = list(session.scalars(select(Team).where(Team.id.in_(wanted)).order_by(Team.name))) if wanted else []
    session.flush()


def open_ticket_counts(session: Session) -> dict[int, int]:
    """Open tickets per assignee id."""
    stmt = (
        select(Ticket.assignee_id, func.count())
        .where(Ticket.assignee_id.is_not(None), Ticket.status.in_(OPEN_STATUSES), Ticket.merged_into_id.is_(None))
        .group_by(Ticket.assignee_id)
    )
    return {int(uid): int(n) for uid, n in session.execute(stmt) if uid is not None}


def create_team(session: Session, name: str) -> Team:
    name = name.strip()[:100]
    if not name:
        raise InvalidChange("a team needs a name")
    if session.scalar(select(Team.id).where(func.lower(Team.name) == name.lower())) is not None:
        raise InvalidChange(f"a team named {name!r} already exists")
    team = Team(name=name)
    session.add(team)
    session.flush()
    return team


def update_team(
    session: Session, team: Team, *, name: str, inbox_ids: Iterable[int], member_ids: Iterable[int]
) -> None:
    """Rename a team, and set which inboxes it owns (an inbox has one team: it moves here) and its members."""
    name = name.strip()[:100]
    if not name:
        raise InvalidChange("a team needs a name")
    clash = session.scalar(select(Team.id).where(func.lower(Team.name) == name.lower(), Team.id != team.id))
    if clash is not None:
        raise InvalidChange(f"a team named {name!r} already exists")
    team.name = name
    wanted = set(inbox_ids)
    for inbox in session.scalars(select(Inbox).where((Inbox.team_id == team.id) | Inbox.id.in_(wanted))):
        inbox.team_id = team.id if inbox.id in wanted else None
    members = set(member_ids)
    team.members = list(session.scalars(select(User).where(User.id.in_(members)))) if members else []
    session.flush()


def delete_team(session: Session, team: Team) -> None:
    """Delete a team; its inboxes become team-less (admins still see them) and its tickets keep no team."""
    for inbox in session.scalars(select(Inbox).where(Inbox.team_id == team.id)):
        inbox.team_id = None
    session.delete(team)
    session.flush()


def profile_of(session: Session, user: User) -> UserProfile:
    """The user's profile; an unsaved one with the defaults if they never saved theirs (a GET changes nothing)."""
    found = session.get(UserProfile, user.id)
    if found is not None:
        return found
    return UserProfile(
        user_id=user.id,
        avatar_color="",
        notify_mentions=True,
        notify_assignments=True,
        notify_new_tickets=False,
        email_notifications=False,
    )


def save_profile(
    session: Session,
    user: User,
    *,
    name: str,
    avatar_color: str,
    notify_mentions: bool,
    notify_assignments: bool,
    notify_new_tickets: bool,
    email_notifications: bool = False,
) -> UserProfile:
    name = name.strip()[:200]
    if not name:
        raise InvalidChange("Please enter your name.")
    if avatar_color and avatar_color.lower() not in AVATAR_COLORS:
        raise InvalidChange("Pick one of the offered colours.")
    profile = session.get(UserProfile, user.id) or UserProfile(user_id=user.id)
    session.add(profile)
    user.name = name
    profile.avatar_color = avatar_color.lower()
    profile.notify_mentions = notify_mentions
    profile.notify_assignments = notify_assignments
    profile.notify_new_tickets = notify_new_tickets
    profile.email_notifications = email_notifications
    profile.updated_at = utcnow()
    session.flush()
    return profile


def change_password(session: Session, user: User, current: str, new: str, confirm: str) -> None:
    if not check_password(user, current):
        raise InvalidChange("Your current password is not right; nothing changed.")
    if new != confirm:
        raise InvalidChange("The two new passwords differ; nothing changed.")
    user.password_hash = hash_password(new)
    session.flush()


def initials(name: str, email: str = "") -> str:
    words = [w for w in re.split(r"[\s._-]+", name or email.split("@")[0]) if w]
    return "".join(w[0] for w in words[:2]).upper() or "?"


def avatar_class(user: User, profile: UserProfile | None) -> str:
    """The CSS class of the avatar's colour (``av-0`` ... ``av-7``; the CSP allows no inline styles): the chosen
    one, else one derived from the email so that it stays the same."""
    if profile is not None and profile.avatar_color in AVATAR_COLORS:
        return f"av-{AVATAR_COLORS.index(profile.avatar_color)}"
    return f"av-{int(hashlib.sha256(user.email.encode()).hexdigest(), 16) % len(AVATAR_COLORS)}"


def wants_email(session: Session, user_id: int, kind: str) -> bool:
    """Whether an active user wants an email about ``kind`` ("mention" or "assignment"): email notifications on,
    and that kind of notification not switched off."""
    user = session.get(User, user_id)
    profile = session.get(UserProfile, user_id)
    if user is None or not user.is_active or profile is None or not profile.email_notifications:
        return False
    return profile.notify_mentions if kind == "mention" else profile.notify_assignments


def wants_mention(session: Session, user_id: int) -> bool:
    profile = session.get(UserProfile, user_id)
    return profile is None or profile.notify_mentions
