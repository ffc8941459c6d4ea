"""Who can be chosen where: assignees must be able to see the ticket they get."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from inbox.models import Inbox, TeamMember, User


def assignable_users(session: Session, viewer: User, inbox_ids: set[int] | None) -> list[User]:
    """Active users who can see at least one of ``inbox_ids`` (None: every inbox), by name."""
    stmt = select(User).where(User.is_active.is_(True))
    if inbox_ids is not None:
        teams = select(Inbox.team_id).where(Inbox.id.in_(inbox_ids))
        members = select(TeamMember.user_id).where(TeamMember.team_id.in_(teams))
        stmt = stmt.where(or_(User.id.in_(members), User.role == "admin"))
    return list(session.scalars(stmt.order_by(User.name, User.id)))


def can_be_assigned(session: Session, user: User, inbox_id: int) -> bool:
    if not user.is_active:
        return False
    if user.role == "admin":
        return True
    team_id = session.scalar(select(Inbox.team_id).where(Inbox.id == inbox_id))
    return team_id is not None and any(t.id == team_id for t in user.teams)
