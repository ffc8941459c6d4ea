"""A fixed history of tickets with hand-computed figures (tests/reports/test_figures.py holds the arithmetic).

All times are UTC. Inbox 1 (team 1) keeps Berlin office hours, Mon-Fri 09:00-17:00 Europe/Berlin, closed on the
holiday Monday 2026-10-26; summer time ends on Sunday 2026-10-25 at 01:00 UTC (CEST +2 -> CET +1). Inbox 2
(team 2) has no calendar: its business time is calendar time.

T1  customer Fri 23 Oct 14:00 (16:00 CEST); moved to team 2 Mon 26 08:00; assigned A Tue 27 08:30;
    A replies Tue 27 09:00 (10:00 CET); A solves Tue 27 10:00.                       weekend + DST + holiday
T2  customer Wed 21 08:30; auto-reply (is_auto, by A) 08:31 and a note by B 08:40 do not count; assigned B 08:35;
    B replies 09:30; customer 10:00 and 10:30; B replies 12:00; B solves 13:00; customer Thu 22 15:00 reopens;
    reassigned to A Thu 22 16:00; A replies Fri 23 07:30; A solves Fri 23 08:00.           reopen + reassignment
T3  priority high; customer Sat 24 22:30 (Sun 00:30 CEST); assigned A 22:31; A replies Sun 25 03:30 (04:30 CET,
    5 real hours later, 4 on the wall clock). Still open.                                         DST night
T4  customer Mon 26 10:00 (holiday); nobody answers. Still new, unassigned.                       SLA breach
T6  inbox 2: customer Tue 27 12:00; assigned C 12:05; C replies 12:10. Still open.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from inbox.models import Contact, Message, Ticket, TicketEvent
from inbox.sla_models import BusinessCalendar, BusinessHoliday, SlaPolicy, SlaTarget
from tests.factories import make_inbox, make_team, make_user

WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
START = dt.datetime(2026, 10, 19, tzinfo=dt.UTC)  # the report period: two ISO weeks
END = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def Z(text: str) -> dt.datetime:  # noqa: N802 - reads like a literal
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@dataclass
class World:
    team1: int
    team2: int
    inbox1: int
    inbox2: int
    a: int
    b: int
    c: int
    lead: int
    admin: int
    t1: int
    t2: int
    t3: int
    t4: int
    t6: int


class _Builder:
    def __init__(self, session: Session) -> None:
        self.s = session
        self.contact = Contact(name="Ann Customer")
        session.add(self.contact)
        session.flush()

    def ticket(self, inbox_id: int, team_id: int, at: str, status: str, **kw: object) -> Ticket:
        t = Ticket(
            inbox_id=inbox_id,
            contact_id=self.contact.id,
            channel="email",
            subject="fixture",
            status=status,
            team_id=team_id,
            created_at=Z(at),
            updated_at=Z(at),
            last_activity_at=Z(at),
            **kw,
        )
        self.s.add(t)
        self.s.flush()
        self.event(t, "created", at)
        return t

    def customer(self, t: Ticket, at: str, *, sent: str | None = None) -> None:
        self._msg(t, "inbound", at, sent_at=Z(sent) if sent else Z(at))

    def reply(self, t: Ticket, at: str, by: int, *, auto: bool = False) -> None:
        self._msg(t, "outbound", at, author_id=by, is_auto=auto, delivery_state="sent")

    def note(self, t: Ticket, at: str, by: int) -> None:
        self._msg(t, "note", at, author_id=by)

    def _msg(self, t: Ticket, direction: str, at: str, **kw: object) -> None:
        self.s.add(
            Message(
                ticket_id=t.id,
                inbox_id=t.inbox_id,
                contact_id=self.contact.id,
                direction=direction,
                channel="email",
                body_text=direction,
                created_at=Z(at),
                **kw,
            )
        )
        self.s.flush()

    def event(self, t: Ticket, kind: str, at: str, by: int | None = None, **data: object) -> None:
        self.s.add(TicketEvent(ticket_id=t.id, actor_id=by, kind=kind, data=dict(data), created_at=Z(at)))
        self.s.flush()

    def status(self, t: Ticket, at: str, before: str, after: str, by: int | None = None) -> None:
        self.event(t, "status", at, by, **{"from": before, "to": after})


def sent_reply(ticket: Ticket, by: int, at: dt.datetime, text: str = "answer") -> Message:
    """An agent's delivered email reply on ``ticket`` at ``at``, for tests that add one outside the fixture."""
    return Message(
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        contact_id=ticket.contact_id,
        direction="outbound",
        channel="email",
        author_id=by,
        body_text=text,
        created_at=at,
        delivery_state="sent",
    )


def build(session: Session) -> World:
    team1, team2 = make_team(session), make_team(session)
    a = make_user(session, teams=[team1, team2], name="Alice")
    b = make_user(session, teams=[team1], name="Bob")
    c = make_user(session, teams=[team2], name="Carol")
    lead = make_user(session, role="lead", teams=[team1], name="Lena Lead")
    admin = make_user(session, role="admin", name="Ada Admin")
    inbox1 = make_inbox(session, team_id=team1.id)
    inbox2 = make_inbox(session, team_id=team2.id)
    cal = BusinessCalendar(name="Berlin office", timezone="Europe/Berlin", hours=WEEKDAYS_9_TO_5, inbox_id=inbox1.id)
    cal.holidays.append(BusinessHoliday(day=dt.date(2026, 10, 26), name="Fixture holiday"))
    policy = SlaPolicy(name="Standard", position=1, inbox_id=inbox1.id, business_hours=True, warn_before_seconds=1800)
    policy.targets.append(
        SlaTarget(
            priority="normal",
            first_response_seconds=4 * 3600,
            next_response_seconds=2 * 3600,
            resolution_seconds=16 * 3600,
        )
    )
    policy.targets.append(SlaTarget(priority="high", first_response_seconds=3600))
    session.add_all([cal, policy])
    bld = _Builder(session)

    t2 = bld.ticket(inbox1.id, team1.id, "2026-10-21 08:30", "solved", assignee_id=a.id)
    bld.customer(t2, "2026-10-21 08:30")
    bld.reply(t2, "2026-10-21 08:31", a.id, auto=True)
    bld.event(t2, "assignee", "2026-10-21 08:35", None, **{"from": None, "to": b.id})
    bld.note(t2, "2026-10-21 08:40", b.id)
    bld.reply(t2, "2026-10-21 09:30", b.id)
    bld.status(t2, "2026-10-21 09:30", "new", "open", b.id)
    bld.customer(t2, "2026-10-21 10:00")
    bld.customer(t2, "2026-10-21 10:30")
    bld.reply(t2, "2026-10-21 12:00", b.id)
    bld.status(t2, "2026-10-21 13:00", "open", "solved", b.id)
    bld.customer(t2, "2026-10-22 15:00")
    bld.status(t2, "2026-10-22 15:00", "solved", "open")
    bld.event(t2, "assignee", "2026-10-22 16:00", None, **{"from": b.id, "to": a.id})
    bld.reply(t2, "2026-10-23 07:30", a.id)
    bld.status(t2, "2026-10-23 08:00", "open", "solved", a.id)

    t1 = bld.ticket(inbox1.id, team2.id, "2026-10-23 14:00", "solved", assignee_id=a.id)
    bld.customer(t1, "2026-10-23 14:00")
    bld.event(t1, "team", "2026-10-26 08:00", None, **{"from": team1.id, "to": team2.id})
    bld.event(t1, "assignee", "2026-10-27 08:30", None, **{"from": None, "to": a.id})
    bld.reply(t1, "2026-10-27 09:00", a.id)
    bld.status(t1, "2026-10-27 09:00", "new", "open", a.id)
    bld.status(t1, "2026-10-27 10:00", "open", "solved", a.id)

    t3 = bld.ticket(inbox1.id, team1.id, "2026-10-24 22:30", "open", assignee_id=a.id, priority="high")
    bld.customer(t3, "2026-10-24 22:30")
    bld.event(t3, "assignee", "2026-10-24 22:31", None, **{"from": None, "to": a.id})
    bld.reply(t3, "2026-10-25 03:30", a.id)
    bld.status(t3, "2026-10-25 03:30", "new", "open", a.id)

    t4 = bld.ticket(
        inbox1.id,
        team1.id,
        "2026-10-26 10:00",
        "new",
        waiting_since=Z("2026-10-26 10:00"),
        first_inbound_at=Z("2026-10-26 10:00"),
    )
    bld.customer(t4, "2026-10-26 10:00")

    t6 = bld.ticket(inbox2.id, team2.id, "2026-10-27 12:00", "open", assignee_id=c.id)
    bld.customer(t6, "2026-10-27 12:00")
    bld.event(t6, "assignee", "2026-10-27 12:05", None, **{"from": None, "to": c.id})
    bld.reply(t6, "2026-10-27 12:10", c.id)
    bld.status(t6, "2026-10-27 12:10", "new", "open", c.id)
    session.flush()
    return World(
        team1.id,
        team2.id,
        inbox1.id,
        inbox2.id,
        a.id,
        b.id,
        c.id,
        lead.id,
        admin.id,
        t1.id,
        t2.id,
        t3.id,
        t4.id,
        t6.id,
    )
