"""Splitting a message off into a new ticket and moving one into another: threading, counters, audit, events."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import events
from inbox.errors import InvalidChange, NotFound
from inbox.ingest import ingest
from inbox.models import Message, Ticket, TicketEvent
from tests.factories import inbound, make_inbox, make_user
from tickets import lifecycle
from tickets.metrics import REPLY, load_timelines

ANN = "ann@example.com"


def mail(session: Session, inbox_id: int, **kw: object) -> Message:
    message = ingest(session, inbox_id, inbound(handle=ANN, display_name="Ann", **kw))
    assert message is not None
    session.flush()
    return message


def kinds(session: Session, ticket: Ticket) -> list[tuple[str, int | None, dict]]:
    rows = session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id).order_by(TicketEvent.id))
    return [(r.kind, r.actor_id, r.data) for r in rows]


def test_split_makes_a_new_ticket_and_later_replies_follow_it(
    session: Session, published: list[events.DomainEvent]
) -> None:
    box = make_inbox(session)
    agent = make_user(session, name="Sam Agent")
    first = mail(session, box.id, subject="Order 1", message_id="<a@x>", text="Where is order 1?")
    source = first.ticket
    lifecycle.reply(session, source, "On its way", by=agent.id)
    second = mail(
        session,
        box.id,
        subject="Re: Order 1",
        message_id="<b@x>",
        references=("<a@x>",),
        text="Also: my invoice is wrong",
        sent_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1),
    )
    assert second.ticket_id == source.id and source.message_count == 3
    session.commit()
    published.clear()

    new = lifecycle.split_message(session, second, by=agent.id)
    session.commit()

    assert new.id != source.id
    assert (new.contact_id, new.inbox_id, new.channel) == (source.contact_id, source.inbox_id, "email")
    assert second.ticket_id == new.id
    assert second.thread_reason == f"split off #{source.id} by Sam Agent"
    assert second.meta["threading_history"][0]["reason"] == "in-reply-to <a@x>"
    # Counters and clocks of both tickets, from the messages each holds now.
    assert (source.message_count, new.message_count) == (2, 1)
    assert source.waiting_since is None and source.first_response_at is not None  # the reply answered message 1
    assert new.first_response_at is None and new.waiting_since is not None  # the invoice question waits
    assert new.first_inbound_at == new.waiting_since <= second.created_at
    assert new.created_at == second.created_at and new.last_activity_at == second.created_at
    assert source.preview == "Where is order 1?" and new.preview == "Also: my invoice is wrong"
    assert new.subject == "Re: Order 1" and new.status == "new"
    # Audited on both tickets, and published after the commit to both tickets' rooms.
    assert kinds(session, new)[0] == (
        "created",
        agent.id,
        {"reason": f"split off #{source.id}", "split_from": source.id, "message_ids": [second.id]},
    )
    assert ("message_split", agent.id, {"into": new.id, "message_ids": [second.id]}) in kinds(session, source)
    moved = [e for e in published if e.name == events.MESSAGE_MOVED]
    assert {e.room for e in moved} == {f"ticket:{source.id}", f"ticket:{new.id}", f"inbox:{box.id}"}
    assert all(e.payload["from_ticket_id"] == source.id and e.payload["ticket_id"] == new.id for e in moved)
    assert any(e.name == events.TICKET_CREATED and e.payload["id"] == new.id for e in published)

    # The customer answers the split message: it threads to the new ticket, not the old one.
    answer = mail(session, box.id, subject="Re: Order 1", message_id="<c@x>", references=("<b@x>", "<a@x>"))
    assert answer.ticket_id == new.id and answer.thread_reason == "in-reply-to <b@x>"
    # And a reply to the message that stayed still goes to the old ticket.
    other = mail(session, box.id, subject="Re: Order 1", message_id="<d@x>", references=("<a@x>",))
    assert other.ticket_id == source.id
    session.commit()
    assert (source.message_count, new.message_count) == (3, 2)


def test_split_with_later_messages_of_the_same_sender(session: Session) -> None:
    box = make_inbox(session, channel="telegram")
    agent = make_user(session)
    chat = {"channel": "telegram", "handle": "4242", "message_id": None}
    m1 = ingest(session, box.id, inbound(**chat, text="hi, about my order"))
    assert m1 is not None
    source = m1.ticket
    m2 = ingest(session, box.id, inbound(**chat, text="new question: do you ship to Norway?"))
    lifecycle.reply(session, source, "Yes we do", by=agent.id)
    m3 = ingest(session, box.id, inbound(**chat, text="great, and how long does it take?"))
    assert m2 is not None and m3 is not None and m3.ticket_id == source.id
    note = lifecycle.add_note(session, source, "shipping question", by=agent.id)
    session.commit()

    new = lifecycle.split_message(session, m2, by=agent.id, with_later=True)
    session.commit()
    assert [m.ticket_id for m in (m1, m2, m3)] == [source.id, new.id, new.id]
    assert note.ticket_id == source.id  # the agents' replies and notes stay with the matter they were about
    reply = session.scalar(select(Message).where(Message.direction == "outbound"))
    assert reply is not None and reply.ticket_id == source.id
    assert (source.message_count, new.message_count) == (2, 2)
    assert new.preview == "great, and how long does it take?"
    # A chat joins the contact's newest ticket on the inbox: now the split one.
    m4 = ingest(session, box.id, inbound(**chat, text="thanks"))
    assert m4 is not None and m4.ticket_id == new.id


def test_split_refusals(session: Session) -> None:
    box = make_inbox(session)
    agent = make_user(session)
    only = mail(session, box.id)
    with pytest.raises(InvalidChange, match="only message"):
        lifecycle.split_message(session, only, by=agent.id)
    lifecycle.add_note(session, only.ticket, "a note is not a message of the conversation", by=agent.id)
    with pytest.raises(InvalidChange, match="only message"):
        lifecycle.split_message(session, only, by=agent.id)
    out = lifecycle.reply(session, only.ticket, "hello", by=agent.id)
    with pytest.raises(InvalidChange, match="customer message"):
        lifecycle.split_message(session, out, by=agent.id)
    with pytest.raises(NotFound):
        lifecycle.split_message(session, only, by=agent.id, allowed_inbox_ids={box.id + 1000})
    session.commit()
    assert session.scalar(select(Ticket.id).where(Ticket.id != only.ticket_id)) is None


def test_move_into_another_ticket(session: Session, published: list[events.DomainEvent]) -> None:
    box, other_box = make_inbox(session), make_inbox(session)
    agent = make_user(session, name="Kim")
    a1 = mail(session, box.id, message_id="<a1@x>", text="first matter")
    mail(session, box.id, message_id="<a2@x>", references=("<a1@x>",), text="first matter again")
    b1 = mail(session, box.id, message_id="<b1@x>", subject="Second matter", text="second matter")
    source, target = a1.ticket, b1.ticket
    assert source.id != target.id
    lifecycle.reply(session, target, "answered", by=agent.id)
    lifecycle.set_status(session, target, "solved", by=agent.id)
    session.commit()
    published.clear()

    lifecycle.move_message(session, a1, target, by=agent.id, allowed_inbox_ids={box.id})
    session.commit()
    assert a1.ticket_id == target.id and a1.thread_reason == f"moved from #{source.id} by Kim"
    assert (source.message_count, target.message_count) == (1, 3)
    # Older than the target's reply, so answered as the reports count it: the solved ticket stays solved.
    assert target.status == "solved" and target.waiting_since is None and source.preview == "first matter again"
    assert ("message_moved_in", agent.id, {"from": source.id, "message_ids": [a1.id]}) in kinds(session, target)
    assert ("message_moved_out", agent.id, {"into": target.id, "message_ids": [a1.id]}) in kinds(session, source)
    assert {e.room for e in published if e.name == events.MESSAGE_MOVED} == {
        f"ticket:{source.id}",
        f"ticket:{target.id}",
        f"inbox:{box.id}",
    }
    # A reply to the moved message follows it.
    answer = mail(session, box.id, message_id="<a3@x>", references=("<a1@x>",))
    assert answer.ticket_id == target.id and target.status == "open"
    # A newer, unanswered customer message moved into a solved ticket reopens it.
    lifecycle.set_status(session, source, "solved", by=agent.id)
    lifecycle.move_message(session, answer, source, by=agent.id)
    assert source.status == "open" and source.waiting_since is not None

    # Refusals: the same ticket, a ticket of an inbox the agent cannot see, the only message of a ticket.
    with pytest.raises(InvalidChange, match="already"):
        lifecycle.move_message(session, a1, target, by=agent.id)
    elsewhere = ingest(session, other_box.id, inbound(handle=ANN))
    assert elsewhere is not None
    with pytest.raises(NotFound):
        lifecycle.move_message(session, answer, elsewhere.ticket, by=agent.id, allowed_inbox_ids={box.id})
    with pytest.raises(InvalidChange, match="only message"):
        lifecycle.move_message(session, elsewhere, target, by=agent.id)
    session.rollback()


def test_moved_agent_reply_keeps_its_thread(session: Session) -> None:
    """Our own Message-IDs name the ticket they were sent from; a moved reply's answers follow the move."""
    box = make_inbox(session)
    agent = make_user(session)
    a = mail(session, box.id, message_id="<q1@x>")
    b = mail(session, box.id, message_id="<q2@x>", subject="Other")
    reply = lifecycle.reply(session, a.ticket, "answer", by=agent.id)
    assert reply.message_id_header is not None and f"ticket-{a.ticket_id}." in reply.message_id_header
    lifecycle.move_message(session, reply, b.ticket, by=agent.id)
    session.commit()
    answer = mail(session, box.id, message_id="<q3@x>", references=(reply.message_id_header,))
    assert answer.ticket_id == b.ticket_id
    assert a.ticket.first_response_at is None and b.ticket.first_response_at == reply.created_at


def test_reply_sent_elsewhere_counts_as_a_public_reply(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    agent = make_user(session)
    msg = ingest(session, box.id, inbound(channel="instagram", handle="ann.shop", message_id=None, text="price?"))
    assert msg is not None
    ticket = msg.ticket
    out = lifecycle.reply(session, ticket, "It is 20 EUR", by=agent.id, sent_elsewhere=True)
    session.commit()
    assert out.delivery_state == lifecycle.MANUAL and out.next_attempt_at is None and out.delivered_at is not None
    assert ticket.first_response_at == out.created_at and ticket.waiting_since is None and ticket.status == "open"
    event = kinds(session, ticket)[-1]
    assert event[0] == "reply" and event[2]["sent_elsewhere"] is True
    (tl,) = load_timelines(session, [ticket.id])
    assert [p.kind for p in tl.points if p.kind == REPLY] == [REPLY]  # the reports count it as the first response
