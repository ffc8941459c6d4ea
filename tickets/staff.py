"""Moving a person's open tickets in bulk: when they leave, go on holiday or are deactivated."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.models import OPEN_STATUSES, Ticket, User
from tickets import lifecycle


def reassign_open_tickets(
    session: Session,
    from_user: User,
    to_user: User | None,
    *,
    by: int | None,
    can_take: Callable[[Ticket], bool] = lambda _ticket: True,
) -> tuple[int, int]:
    """Give ``from_user``'s open tickets to ``to_user`` (None: unassign them). A ticket ``to_user`` may not see
    (``can_take`` false) stays where it is. Returns (moved, kept). Every move is a logged assignment."""
    stmt = select(Ticket).where(
        Ticket.assignee_id == from_user.id, Ticket.status.in_(OPEN_STATUSES), Ticket.merged_into_id.is_(None)
    )
    moved = kept = 0
    for ticket in session.scalars(stmt.order_by(Ticket.id)).all():
        if to_user is not None and not can_take(ticket):
            kept += 1
            continue
        lifecycle.assign(session, ticket, to_user.id if to_user else None, by=by)
        moved += 1
    session.flush()
    return moved, kept
