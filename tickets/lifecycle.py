"""Ticket lifecycle: status, priority, assignee, team, tags, notes, replies, merge and snooze.

Every change is a ``ticket_event`` row (who, what, when) via ``inbox.audit.log``, so reports and the audit trail
can be rebuilt. Functions flush, never commit.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inbox import audit, events
from inbox.db import utcnow
from inbox.errors import InvalidChange, NotFound
from inbox.ingest import message_payload
from inbox.models import PRIORITIES, STATUSES, Identity, Message, Tag, Team, Ticket, TicketTag, User
from inbox.people import wants_email, wants_mention

MANUAL = "manual"  # delivery state of a reply the agent sent by hand outside Helpline (never delivered by us)
MENTION = re.compile(r"@([\w.+-]+@[\w-]+\.[\w.-]+|[\w.-]+)")


def get_ticket(session: Session, ticket_id: int) -> Ticket:
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        raise NotFound(f"no ticket #{ticket_id}")
    return ticket


def set_status(session: Session, ticket: Ticket, status: str, *, by: int | None = None) -> Ticket:
    if status not in STATUSES:
        raise InvalidChange(f"unknown status {status!r}; use one of {', '.join(STATUSES)}")
    old = ticket.status
    if old == status:
        return ticket
    now = utcnow()
    ticket.status = status
    ticket.updated_at = now
    if status == "solved":
        ticket.solved_at = now
    elif status == "closed":
        ticket.closed_at = now
        ticket.solved_at = ticket.solved_at or now
    elif old in ("solved", "closed"):
        ticket.solved_at = None
        ticket.closed_at = None
        ticket.reopened_at = now
    if status != "snoozed":
        ticket.snoozed_until = None
    audit.log(
        session,
        ticket,
        "status",
        actor_id=by,
        data={"from": old, "to": status},
        live_event=events.TICKET_STATUS_CHANGED,
    )
    return ticket


def snooze(session: Session, ticket: Ticket, until: dt.datetime, *, by: int | None = None) -> Ticket:
    if until.tzinfo is None:
        raise InvalidChange("snooze time must carry a time zone")
    if until <= utcnow():
        raise InvalidChange("snooze time must be in the future")
    old = ticket.status
    ticket.status = "snoozed"
    ticket.snoozed_until = until
    ticket.updated_at = utcnow()
    audit.log(
        session,
        ticket,
        "snoozed",
        actor_id=by,
        data={"from": old, "until": until.isoformat()},
        live_event=events.TICKET_STATUS_CHANGED,
    )
    return ticket


def wake_snoozed(session: Session, now: dt.datetime | None = None) -> list[int]:
    """Reopen snoozed tickets whose time has come; returns their ids."""
    now = now or utcnow()
    due = list(session.scalars(select(Ticket).where(Ticket.status == "snoozed", Ticket.snoozed_until <= now)))
    for ticket in due:
        ticket.status = "open"
        ticket.snoozed_until = None
        ticket.updated_at = now
        audit.log(
            session,
            ticket,
            "status",
            data={"from": "snoozed", "to": "open", "why": "snooze ended"},
            live_event=events.TICKET_STATUS_CHANGED,
        )
    return [t.id for t in due]


def close_solved(session: Session, older_than: dt.timedelta, now: dt.datetime | None = None) -> list[int]:
    """Close tickets solved longer ago than ``older_than``; a later customer message then opens a new ticket."""
    now = now or utcnow()
    due = list(session.scalars(select(Ticket).where(Ticket.status == "solved", Ticket.solved_at <= now - older_than)))
    for ticket in due:
        set_status(session, ticket, "closed")
    return [t.id for t in due]


def set_priority(session: Session, ticket: Ticket, priority: str, *, by: int | None = None) -> Ticket:
    if priority not in PRIORITIES:
        raise InvalidChange(f"unknown priority {priority!r}; use one of {', '.join(PRIORITIES)}")
    if ticket.priority != priority:
        old, ticket.priority, ticket.updated_at = ticket.priority, priority, utcnow()
        audit.log(session, ticket, "priority", actor_id=by, data={"from": old, "to": priority})
    return ticket


def assign(session: Session, ticket: Ticket, agent_id: int | None, *, by: int | None = None) -> Ticket:
    if agent_id is not None:
        agent = session.get(User, agent_id)
        if agent is None or not agent.is_active:
            raise NotFound(f"no active user {agent_id}")
    if ticket.assignee_id != agent_id:
        old, ticket.assignee_id, ticket.updated_at = ticket.assignee_id, agent_id, utcnow()
        if ticket.status == "new" and agent_id is not None:
            ticket.status = "open"
        audit.log(
            session,
            ticket,
            "assignee",
            actor_id=by,
            data={"from": old, "to": agent_id},
            live_event=events.TICKET_ASSIGNED,
        )
        if agent_id is not None:
            payload = audit.ticket_payload(ticket) | {"actor_id": by}  # who assigned: no notice for oneself
            payload["email"] = agent_id != by and wants_email(session, agent_id, "assignment")
            events.record(session, events.TICKET_ASSIGNED, f"agent:{agent_id}", payload)
    return ticket


def set_team(session: Session, ticket: Ticket, team_id: int | None, *, by: int | None = None) -> Ticket:
    if team_id is not None and session.get(Team, team_id) is None:
        raise NotFound(f"no team {team_id}")
    if ticket.team_id != team_id:
        old, ticket.team_id, ticket.updated_at = ticket.team_id, team_id, utcnow()
        audit.log(session, ticket, "team", actor_id=by, data={"from": old, "to": team_id})
    return ticket


def find_or_create_tag(session: Session, name: str) -> Tag:
    name = name.strip().lower()
    if not name:
        raise InvalidChange("a tag needs a name")
    tag = session.scalar(select(Tag).where(Tag.name == name))
    if tag is None:
        tag = Tag(name=name)
        session.add(tag)
        session.flush()
    return tag


def add_tag(session: Session, ticket: Ticket, name: str, *, by: int | None = None) -> Ticket:
    tag = find_or_create_tag(session, name)
    if tag not in ticket.tags:
        ticket.tags.append(tag)
        ticket.updated_at = utcnow()
        audit.log(session, ticket, "tag_added", actor_id=by, data={"tag": tag.name})
    return ticket


def remove_tag(session: Session, ticket: Ticket, name: str, *, by: int | None = None) -> Ticket:
    tag = session.scalar(select(Tag).where(Tag.name == name.strip().lower()))
    if tag is not None and tag in ticket.tags:
        ticket.tags.remove(tag)
        ticket.updated_at = utcnow()
        audit.log(session, ticket, "tag_removed", actor_id=by, data={"tag": tag.name})
    return ticket


def add_note(session: Session, ticket: Ticket, text: str, *, by: int) -> Message:
    """An internal note: visible to agents, never sent, and no SLA clock moves. @mentions notify users."""
    if not text.strip():
        raise InvalidChange("a note needs text")
    note = Message(
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        contact_id=ticket.contact_id,
        author_id=by,
        direction="note",
        channel=ticket.channel,
        body_text=text,
        thread_reason="internal note",
    )
    session.add(note)
    ticket.updated_at = utcnow()
    session.flush()
    mentioned = _mentioned_users(session, ticket, text)
    audit.log(session, ticket, "note", actor_id=by, data={"message_id": note.id, "mentions": [u.id for u in mentioned]})
    for user in mentioned:
        if not wants_mention(session, user.id):
            continue  # they turned mention notifications off on their profile (the note still names them)
        payload = {"ticket_id": ticket.id, "message_id": note.id, "by": by}
        payload["email"] = user.id != by and wants_email(session, user.id, "mention")
        events.record(session, "mention.created", f"agent:{user.id}", payload)
    events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", message_payload(note))
    return note


def _mentioned_users(session: Session, ticket: Ticket, text: str) -> list[User]:
    """Active users named in ``text`` who may see the ticket: a mention must not reveal a ticket to an outsider."""
    names = {m.group(1).lower() for m in MENTION.finditer(text)}
    if not names:
        return []
    team_id = ticket.inbox.team_id
    users = session.scalars(select(User).where(User.is_active.is_(True)))
    return [
        u
        for u in users
        if (u.email.lower() in names or u.email.split("@")[0].lower() in names)
        and (u.role == "admin" or any(t.id == team_id for t in u.teams))
    ]


def reply(
    session: Session,
    ticket: Ticket,
    text: str,
    *,
    by: int | None,
    html: str | None = None,
    identity_id: int | None = None,
    new_status: str | None = None,
    mail_domain: str = "helpline.local",
    sent_elsewhere: bool = False,
    inbox_id: int | None = None,
) -> Message:
    """Queue an agent's public reply: committed as ``queued`` first, delivered later by a worker job.

    ``sent_elsewhere``: the agent already sent it by hand on the channel (an Instagram comment answered in the
    app): it is recorded as ``manual`` and never delivered, and counts as a public reply like any other.
    ``inbox_id`` sends it through another inbox than the ticket's (a chat answered by email through the widget's
    linked email inbox); the message stays on this ticket, and email answers thread back to it.
    """
    if not text.strip():
        raise InvalidChange("a reply needs text")
    identity = session.get(Identity, identity_id) if identity_id is not None else _reply_identity(session, ticket)
    if identity is None or not _on_ticket(session, ticket, identity.contact_id):
        raise InvalidChange("the reply's recipient is not a contact of this ticket")
    now = utcnow()
    message = Message(
        ticket_id=ticket.id,
        inbox_id=inbox_id if inbox_id is not None else ticket.inbox_id,
        contact_id=ticket.contact_id,
        identity_id=identity.id,
        author_id=by,
        direction="outbound",
        channel=identity.channel,
        body_text=text,
        body_html=html,
        subject=ticket.subject,
        created_at=now,
        delivery_state=MANUAL if sent_elsewhere else "queued",
        delivered_at=now if sent_elsewhere else None,
        thread_reason="agent reply, sent by hand on the channel" if sent_elsewhere else "agent reply",
        next_attempt_at=None if sent_elsewhere else now,
    )
    session.add(message)
    session.flush()
    # A stable Message-ID chosen before sending, so a retry never forks the email thread.
    message.message_id_header = f"<ticket-{ticket.id}.{message.id}.{secrets.token_hex(4)}@{mail_domain}>"
    message.external_id = f"out:{message.id}"
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.last_activity_at = now
    ticket.updated_at = now
    if ticket.first_response_at is None:
        ticket.first_response_at = now
    ticket.waiting_since = None
    if new_status is None and ticket.status == "new":
        new_status = "open"
    if new_status is not None:
        set_status(session, ticket, new_status, by=by)
    data: dict[str, object] = {"message_id": message.id, "channel": identity.channel}
    if sent_elsewhere:
        data["sent_elsewhere"] = True
    audit.log(session, ticket, "reply", actor_id=by, data=data)
    events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", message_payload(message))
    return message


def _on_ticket(session: Session, ticket: Ticket, contact_id: int) -> bool:
    if ticket.contact_id == contact_id:
        return True
    found = session.scalar(
        select(Message.id).where(Message.ticket_id == ticket.id, Message.contact_id == contact_id).limit(1)
    )
    return found is not None


def _reply_identity(session: Session, ticket: Ticket) -> Identity | None:
    """Answer on the channel of the customer's latest message in this ticket."""
    identity_id = session.scalar(
        select(Message.identity_id)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound", Message.identity_id.is_not(None))
        .order_by(Message.id.desc())
        .limit(1)
    )
    return session.get(Identity, identity_id) if identity_id is not None else None


def merge_tickets(session: Session, source: Ticket, target: Ticket, *, by: int | None = None) -> Ticket:
    """Move every message of ``source`` into ``target``; ``source`` is closed and points at ``target``."""
    if source.id == target.id:
        raise InvalidChange("cannot merge a ticket into itself")
    if target.merged_into_id is not None:
        raise InvalidChange(f"ticket #{target.id} was itself merged into #{target.merged_into_id}")
    moved = session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == source.id)) or 0
    session.execute(update(Message).where(Message.ticket_id == source.id).values(ticket_id=target.id))
    for obj in list(session.identity_map.values()):  # cached relationships don't follow bulk UPDATEs
        if isinstance(obj, Message) and obj.ticket_id == target.id:
            session.expire(obj, ["ticket"])
    count = session.scalar(select(func.count()).select_from(Message).where(Message.ticket_id == target.id)) or 0
    target.message_count = count
    for name in (t.name for t in list(source.tags)):
        add_tag(session, target, name, by=by)
    for field in ("first_inbound_at", "first_response_at"):
        values = [v for v in (getattr(source, field), getattr(target, field)) if v is not None]
        setattr(target, field, min(values) if values else None)
    waits = [v for v in (source.waiting_since, target.waiting_since) if v is not None]
    target.waiting_since = min(waits) if waits else None
    target.last_activity_at = max(source.last_activity_at, target.last_activity_at)
    target.updated_at = utcnow()
    if target.status in ("solved", "closed") and source.status not in ("solved", "closed"):
        set_status(session, target, "open", by=by)
    source.merged_into_id = target.id
    source.message_count = 0
    set_status(session, source, "closed", by=by)
    audit.log(session, source, "merged_into", actor_id=by, data={"into": target.id}, live_event=events.TICKET_MERGED)
    audit.log(
        session,
        target,
        "merged_from",
        actor_id=by,
        data={"from": source.id, "messages": moved},
        live_event=events.TICKET_MERGED,
    )
    return target


def ticket_tags(session: Session, ticket_ids: Sequence[int]) -> dict[int, list[str]]:
    rows = session.execute(
        select(TicketTag.ticket_id, Tag.name)
        .join(Tag, Tag.id == TicketTag.tag_id)
        .where(TicketTag.ticket_id.in_(ticket_ids))
    )
    out: dict[int, list[str]] = {}
    for ticket_id, name in rows:
        out.setdefault(ticket_id, []).append(name)
    return out


# --- split and move: one message (or a run of them) leaves its ticket ------------------------------------------
#
# What moves: the chosen message and, for a split with ``with_later=True``, the same sender's later customer
# messages in that ticket (a customer who opened a new matter usually keeps writing about it); agents' replies and
# notes in between stay where they are, since they answered the old matter. A message keeps its inbox (its
# external id is unique per inbox) and its Message-ID, so a later email reply to it (In-Reply-To/References) finds
# it and threads to the ticket it now belongs to. Chat messages keep joining the contact's newest ticket on the
# inbox, which after a split is the new one. Both tickets' counters and clocks are recomputed from their messages,
# the way ingestion and replies set them, so the list, the SLA badges and the reports agree.


def _recount(session: Session, ticket: Ticket) -> None:
    """Set ``ticket``'s message count, last activity, preview and response clocks from the messages it now holds."""
    from tickets.metrics import customer_time  # metrics defines when a customer message counts from

    rows = session.execute(
        select(
            Message.direction,
            Message.author_id,
            Message.is_auto,
            Message.created_at,
            Message.sent_at,
            Message.body_text,
        )
        .where(Message.ticket_id == ticket.id, Message.direction != "note")
        .order_by(Message.created_at, Message.id)
    ).all()
    ticket.message_count = len(rows)
    ticket.last_activity_at = max((r.created_at for r in rows), default=ticket.created_at)
    ticket.first_inbound_at = None
    ticket.first_response_at = None
    ticket.waiting_since = None
    for r in rows:
        if r.is_auto:
            continue  # an out-of-office starts no clock and answers nothing
        if r.direction == "inbound":
            at = customer_time(r.sent_at, r.created_at)
            ticket.first_inbound_at = min(ticket.first_inbound_at or at, at)
            ticket.waiting_since = ticket.waiting_since or at
        elif r.author_id is not None:  # an agent reply, as tickets.metrics counts one
            ticket.first_response_at = ticket.first_response_at or r.created_at
            ticket.waiting_since = None
    inbound_texts = [" ".join(r.body_text.split()) for r in rows if r.direction == "inbound" and r.body_text.strip()]
    ticket.preview = inbound_texts[-1][:300] if inbound_texts else ""
    ticket.updated_at = utcnow()


def _movable(session: Session, message: Message, with_later: bool) -> list[Message]:
    """The message, plus (``with_later``) the same contact's later customer messages in its ticket."""
    if not with_later or message.direction != "inbound":
        return [message]
    later = session.scalars(
        select(Message)
        .where(
            Message.ticket_id == message.ticket_id,
            Message.contact_id == message.contact_id,
            Message.direction == "inbound",
            Message.id > message.id,
        )
        .order_by(Message.id)
    )
    return [message, *later]


def _check_source(session: Session, source: Ticket, moving: list[Message], verb: str) -> None:
    left = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.ticket_id == source.id,
            Message.direction != "note",
            Message.id.not_in([m.id for m in moving]),
        )
    )
    if not left:
        raise InvalidChange(
            f"cannot {verb} the only message of ticket #{source.id}"
            + ("; merge the ticket instead" if verb == "move" else "")
        )


def _agent_name(session: Session, by: int | None) -> str:
    user = session.get(User, by) if by is not None else None
    return (user.name or user.email) if user is not None else "Helpline"


def _relocate(session: Session, moving: list[Message], source: Ticket, target: Ticket, reason: str) -> None:
    for m in moving:
        history = list((m.meta or {}).get("threading_history", []))
        history.append({"ticket_id": source.id, "reason": m.thread_reason, "at": utcnow().isoformat()})
        m.meta = dict(m.meta or {}) | {"threading_history": history[-10:]}
        m.ticket_id = target.id
        m.thread_reason = reason[:200]
    session.flush()
    for m in moving:
        session.expire(m, ["ticket"])
    _recount(session, source)
    _recount(session, target)


def _moved_events(session: Session, moving: list[Message], source: Ticket, target: Ticket) -> None:
    rooms = {f"ticket:{source.id}", f"ticket:{target.id}", f"inbox:{source.inbox_id}", f"inbox:{target.inbox_id}"}
    for m in moving:
        payload = message_payload(m) | {"ticket_id": target.id, "from_ticket_id": source.id}
        for room in sorted(rooms):
            events.record(session, events.MESSAGE_MOVED, room, payload)


def split_message(
    session: Session,
    message: Message,
    *,
    by: int | None,
    with_later: bool = False,
    allowed_inbox_ids: set[int] | None = None,
) -> Ticket:
    """Split a customer message off its ticket into a new ticket of the same contact and inbox.

    The new ticket starts when the message arrived (so its SLA clocks count from then), with the source ticket's
    priority, team and assignee (open when assigned, else new). ``with_later`` also moves the same sender's later
    customer messages of that ticket. ``allowed_inbox_ids`` (None: any) are the inboxes the acting user may see.
    """
    source = get_ticket(session, message.ticket_id)
    if allowed_inbox_ids is not None and source.inbox_id not in allowed_inbox_ids:
        raise NotFound(f"no ticket #{source.id}")
    if message.direction != "inbound":
        raise InvalidChange("only a customer message can start a new ticket; move replies and notes instead")
    moving = _movable(session, message, with_later)
    _check_source(session, source, moving, "split")
    arrived = message.created_at
    ticket = Ticket(
        inbox_id=source.inbox_id,
        contact_id=message.contact_id,
        channel=message.channel,
        subject=(message.subject or message.body_text.strip().split("\n", 1)[0])[:500],
        status="open" if source.assignee_id is not None else "new",
        priority=source.priority,
        assignee_id=source.assignee_id,
        team_id=source.team_id,
        created_at=arrived,
        updated_at=utcnow(),
        last_activity_at=arrived,
        message_count=0,
    )
    session.add(ticket)
    session.flush()
    name = _agent_name(session, by)
    _relocate(session, moving, source, ticket, f"split off #{source.id} by {name}")
    ids = [m.id for m in moving]
    audit.log(
        session,
        ticket,
        "created",
        actor_id=by,
        data={"reason": f"split off #{source.id}", "split_from": source.id, "message_ids": ids},
        live_event=events.TICKET_CREATED,
    )
    audit.log(session, source, "message_split", actor_id=by, data={"into": ticket.id, "message_ids": ids})
    _moved_events(session, moving, source, ticket)
    return ticket


def move_message(
    session: Session,
    message: Message,
    target: Ticket,
    *,
    by: int | None,
    allowed_inbox_ids: set[int] | None = None,
) -> Ticket:
    """Move one message (customer message, reply or note) into another existing ticket.

    Both tickets must lie in inboxes the acting user may see (``allowed_inbox_ids``, None: any). A solved or
    closed target reopens when the move leaves a customer waiting there (no agent reply after the message).
    """
    source = get_ticket(session, message.ticket_id)
    for ticket in (source, target):
        if allowed_inbox_ids is not None and ticket.inbox_id not in allowed_inbox_ids:
            raise NotFound(f"no ticket #{ticket.id}")
    if target.id == source.id:
        raise InvalidChange(f"the message is already on ticket #{target.id}")
    if target.merged_into_id is not None:
        raise InvalidChange(f"ticket #{target.id} was merged into #{target.merged_into_id}; move it there")
    _check_source(session, source, [message], "move")
    _relocate(session, [message], source, target, f"moved from #{source.id} by {_agent_name(session, by)}")
    audit.log(session, source, "message_moved_out", actor_id=by, data={"into": target.id, "message_ids": [message.id]})
    audit.log(session, target, "message_moved_in", actor_id=by, data={"from": source.id, "message_ids": [message.id]})
    if target.waiting_since is not None and target.status in ("solved", "closed"):
        set_status(session, target, "open", by=by)  # an unanswered customer message moved in
    _moved_events(session, [message], source, target)
    return target
