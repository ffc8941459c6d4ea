"""Ticket lifecycle: every change recorded as an event row; merge, snooze, tags, notes."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import ingest
from inbox.errors import InvalidChange
from inbox.models import Message, Ticket, TicketEvent
from tests.factories import inbound, make_inbox, make_team, make_user
from tickets import lifecycle


def ticket_events(session: Session, ticket: Ticket) -> list[tuple[str, int | None, dict]]:
    rows = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id))
    return [(r.kind, r.actor_id, r.data) for r in rows]


def new_ticket(session: Session, **kw: object) -> Ticket:
    box = make_inbox(session)
    message = ingest(session, box.id, inbound(**kw))
    assert message is not None
    return message.ticket


def test_each_change_is_an_event_row_with_actor(session: Session) -> None:
    agent, lead = make_user(session), make_user(session, role="lead")
    team = make_team(session)
    ticket = new_ticket(session)
    lifecycle.assign(session, ticket, agent.id, by=lead.id)
    lifecycle.set_priority(session, ticket, "urgent", by=lead.id)
    lifecycle.set_team(session, ticket, team.id, by=lead.id)
    lifecycle.add_tag(session, ticket, "Refund", by=agent.id)
    lifecycle.add_tag(session, ticket, "refund", by=agent.id)  # same tag: no second event
    lifecycle.remove_tag(session, ticket, "refund", by=agent.id)
    lifecycle.set_status(session, ticket, "solved", by=agent.id)
    session.commit()
    kinds = [(k, a) for k, a, _ in ticket_events(session, ticket)]
    assert kinds == [
        ("created", None),
        ("assignee", lead.id),
        ("priority", lead.id),
        ("team", lead.id),
        ("tag_added", agent.id),
        ("tag_removed", agent.id),
        ("status", agent.id),
    ]
    assert ticket.status == "solved" and ticket.solved_at is not None
    assert ticket_events(session, ticket)[1][2] == {"from": None, "to": agent.id}


def test_assigning_a_new_ticket_opens_it(session: Session) -> None:
    ticket = new_ticket(session)
    lifecycle.assign(session, ticket, make_user(session).id)
    assert ticket.status == "open"


def test_invalid_values_are_refused(session: Session) -> None:
    ticket = new_ticket(session)
    with pytest.raises(InvalidChange):
        lifecycle.set_status(session, ticket, "done")
    with pytest.raises(InvalidChange):
        lifecycle.set_priority(session, ticket, "asap")
    with pytest.raises(InvalidChange):
        lifecycle.snooze(session, ticket, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1))


def test_note_is_internal_and_notifies_mentions(session: Session) -> None:
    team, other = make_team(session), make_team(session)
    agent = make_user(session, email="sam@helpline.test", teams=[team])
    outsider = make_user(session, email="eve@helpline.test", teams=[other])
    box = make_inbox(session, team_id=team.id)
    message = ingest(session, box.id, inbound())
    assert message is not None
    ticket = message.ticket
    note = lifecycle.add_note(session, ticket, "@sam can you look? cc @eve", by=agent.id)
    assert note.direction == "note" and note.delivery_state is None
    kind, _, data = ticket_events(session, ticket)[-1]
    assert kind == "note" and data["mentions"] == [agent.id], "someone outside the inbox's team is not notified"
    assert not any(e.room == f"agent:{outsider.id}" for e in session.info["pending_events"])
    assert any(e.name == "mention.created" and e.room == f"agent:{agent.id}" for e in session.info["pending_events"])


def test_snooze_and_wake(session: Session) -> None:
    ticket = new_ticket(session)
    until = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    lifecycle.snooze(session, ticket, until)
    assert ticket.status == "snoozed" and ticket.snoozed_until == until
    assert lifecycle.wake_snoozed(session, now=until - dt.timedelta(minutes=1)) == []
    assert lifecycle.wake_snoozed(session, now=until + dt.timedelta(seconds=1)) == [ticket.id]
    assert ticket.status == "open" and ticket.snoozed_until is None


def test_customer_message_wakes_snoozed_ticket(session: Session) -> None:
    box = make_inbox(session, channel="telegram")
    first = ingest(session, box.id, inbound(channel="telegram", handle="55"))
    assert first is not None
    lifecycle.snooze(session, first.ticket, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    ingest(session, box.id, inbound(channel="telegram", handle="55"))
    assert first.ticket.status == "open"


def test_close_solved_after_days(session: Session) -> None:
    ticket = new_ticket(session)
    lifecycle.set_status(session, ticket, "solved")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    assert lifecycle.close_solved(session, dt.timedelta(days=7), now=later) == [ticket.id]
    assert ticket.status == "closed" and ticket.closed_at is not None


def test_merge_tickets_moves_messages_and_keeps_both_histories(session: Session) -> None:
    box = make_inbox(session)
    a = ingest(session, box.id, inbound(handle="m@x.test"))
    b = ingest(session, box.id, inbound(handle="m@x.test"))
    assert a is not None and b is not None and a.ticket_id != b.ticket_id
    source = b.ticket
    lifecycle.add_tag(session, source, "vip")
    target = lifecycle.merge_tickets(session, source, a.ticket)
    session.commit()
    assert set(session.scalars(select(Message.ticket_id))) == {a.ticket_id}
    assert target.message_count == 2 and [t.name for t in target.tags] == ["vip"]
    assert b.ticket is target, "moved messages point at the surviving ticket"
    assert source.status == "closed" and source.merged_into_id == a.ticket_id and source.message_count == 0
    assert ticket_events(session, source)[-1][0] == "merged_into"
    assert ticket_events(session, a.ticket)[-1][0] == "merged_from"
    # A reply to the merged ticket's message now lands on the surviving ticket.
    late = ingest(session, box.id, inbound(handle="m@x.test", references=(b.message_id_header,)))
    assert late is not None and late.ticket_id == a.ticket_id
    with pytest.raises(InvalidChange):
        lifecycle.merge_tickets(session, a.ticket, a.ticket)


def test_reply_on_another_channel_of_the_contact(session: Session) -> None:
    from inbox.identities import merge_contacts, resolve_identity

    ticket = new_ticket(session, handle="multi@x.test")
    tg = resolve_identity(session, "telegram", "777")
    merge_contacts(session, tg.contact, ticket.contact)
    out = lifecycle.reply(session, ticket, "Answering on Telegram", by=None, identity_id=tg.id)
    assert out.channel == "telegram" and out.identity_id == tg.id
    stranger = resolve_identity(session, "telegram", "888")
    with pytest.raises(InvalidChange):
        lifecycle.reply(session, ticket, "wrong person", by=None, identity_id=stranger.id)
