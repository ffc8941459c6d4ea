"""The ingestion pipeline: dedupe, identities, routing rules, reopen rules, SLA stamps, events."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox import ingest
from inbox.events import DomainEvent
from inbox.ingest import InboundAttachment
from inbox.models import Attachment, Contact, Identity, Message, Ticket, TicketEvent
from tests.factories import inbound, make_inbox, make_user
from tickets import lifecycle


def count(session: Session, model: type) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_same_message_twice_is_stored_once(session: Session) -> None:
    box = make_inbox(session)
    msg = inbound(external_id="dup-1")
    first = ingest(session, box.id, msg)
    second = ingest(session, box.id, msg)
    session.commit()
    assert first is not None and second is None
    assert count(session, Message) == 1 and count(session, Ticket) == 1 and count(session, Contact) == 1


def test_same_external_id_in_two_inboxes_is_two_messages(session: Session) -> None:
    a, b = make_inbox(session), make_inbox(session)
    ingest(session, a.id, inbound(external_id="x"))
    ingest(session, b.id, inbound(external_id="x"))
    session.commit()
    assert count(session, Message) == 2


def test_first_sight_creates_contact_and_identity_then_reuses_it(session: Session) -> None:
    box = make_inbox(session)
    m1 = ingest(session, box.id, inbound(handle="Ann@Shop.Test", display_name="Ann Lee"))
    m2 = ingest(session, box.id, inbound(handle="ann@shop.test", display_name=""))
    session.commit()
    assert m1 is not None and m2 is not None
    assert m1.contact_id == m2.contact_id
    ident = session.scalar(select(Identity))
    assert ident is not None and ident.handle == "ann@shop.test" and ident.contact.name == "Ann Lee"
    assert count(session, Contact) == 1


def test_email_reply_joins_ticket_by_in_reply_to(session: Session) -> None:
    box = make_inbox(session)
    root = ingest(session, box.id, inbound(message_id="<root@x>", handle="bob@x.test"))
    reply = ingest(session, box.id, inbound(message_id="<r1@x>", references=("<root@x>",), handle="bob@x.test"))
    assert root is not None and reply is not None
    assert reply.ticket_id == root.ticket_id
    assert reply.thread_reason == "in-reply-to <root@x>"


def test_email_reply_joins_by_older_reference_when_parent_missing(session: Session) -> None:
    box = make_inbox(session)
    root = ingest(session, box.id, inbound(message_id="<root@x>"))
    reply = ingest(session, box.id, inbound(message_id="<r2@x>", references=("<missing@x>", "<root@x>")))
    assert root is not None and reply is not None
    assert reply.ticket_id == root.ticket_id and reply.thread_reason.startswith("references")


def test_email_with_same_subject_but_no_chain_is_a_new_ticket(session: Session) -> None:
    box = make_inbox(session)
    a = ingest(session, box.id, inbound(subject="Order 42", handle="c@x.test"))
    b = ingest(session, box.id, inbound(subject="Order 42", handle="c@x.test"))
    assert a is not None and b is not None and a.ticket_id != b.ticket_id


def test_reply_arriving_before_its_parent_still_threads(session: Session) -> None:
    box = make_inbox(session)
    child = ingest(session, box.id, inbound(message_id="<child@x>", references=("<parent@x>",)))
    parent = ingest(session, box.id, inbound(message_id="<parent@x>"))
    assert child is not None and parent is not None
    assert parent.ticket_id == child.ticket_id
    assert "parent of a stored reply" in parent.thread_reason


def test_our_own_message_id_threads_even_without_stored_parent(session: Session) -> None:
    box = make_inbox(session)
    first = ingest(session, box.id, inbound(handle="d@x.test"))
    assert first is not None
    ref = f"<ticket-{first.ticket_id}.999.abcd@helpline.local>"
    answer = ingest(session, box.id, inbound(handle="d@x.test", references=(ref,)))
    assert answer is not None and answer.ticket_id == first.ticket_id


def test_ticket_token_only_from_a_contact_on_the_ticket(session: Session) -> None:
    box = make_inbox(session)
    first = ingest(session, box.id, inbound(handle="owner@x.test"))
    assert first is not None
    same = ingest(session, box.id, inbound(handle="owner@x.test", ticket_token=first.ticket_id))
    stranger = ingest(session, box.id, inbound(handle="stranger@x.test", ticket_token=first.ticket_id))
    assert same is not None and stranger is not None
    assert same.ticket_id == first.ticket_id and same.thread_reason == f"ticket token #{first.ticket_id}"
    assert stranger.ticket_id != first.ticket_id


def test_chat_messages_join_the_contacts_open_ticket(session: Session) -> None:
    box = make_inbox(session, channel="telegram")
    a = ingest(session, box.id, inbound(channel="telegram", handle="111"))
    b = ingest(session, box.id, inbound(channel="telegram", handle="111"))
    other = ingest(session, box.id, inbound(channel="telegram", handle="222"))
    assert a is not None and b is not None and other is not None
    assert a.ticket_id == b.ticket_id != other.ticket_id
    assert b.thread_reason == "open chat ticket"


def test_message_on_solved_ticket_reopens_it(session: Session) -> None:
    box = make_inbox(session, channel="telegram")
    a = ingest(session, box.id, inbound(channel="telegram", handle="333"))
    assert a is not None
    lifecycle.set_status(session, a.ticket, "solved")
    b = ingest(session, box.id, inbound(channel="telegram", handle="333"))
    assert b is not None and b.ticket_id == a.ticket_id
    assert a.ticket.status == "open" and a.ticket.solved_at is None and a.ticket.reopened_at is not None
    kinds = [e.data for e in session.scalars(select(TicketEvent).where(TicketEvent.kind == "status"))]
    assert kinds[-1] == {"from": "solved", "to": "open", "why": "customer replied"}


def test_message_on_closed_ticket_starts_new_linked_ticket(session: Session) -> None:
    box = make_inbox(session)
    a = ingest(session, box.id, inbound(message_id="<c1@x>", handle="e@x.test"))
    assert a is not None
    lifecycle.set_status(session, a.ticket, "closed")
    b = ingest(session, box.id, inbound(references=("<c1@x>",), handle="e@x.test"))
    assert b is not None and b.ticket_id != a.ticket_id
    assert b.ticket.parent_id == a.ticket_id and "after closed" in b.thread_reason
    chat_box = make_inbox(session, channel="webchat")
    c = ingest(session, chat_box.id, inbound(channel="webchat", handle="v1"))
    assert c is not None
    lifecycle.set_status(session, c.ticket, "closed")
    d = ingest(session, chat_box.id, inbound(channel="webchat", handle="v1"))
    assert d is not None and d.ticket_id != c.ticket_id and d.ticket.parent_id == c.ticket_id


def test_auto_reply_does_not_reopen_or_start_clocks(session: Session) -> None:
    box = make_inbox(session)
    a = ingest(session, box.id, inbound(message_id="<a1@x>"))
    assert a is not None
    lifecycle.set_status(session, a.ticket, "solved")
    auto = ingest(session, box.id, inbound(references=("<a1@x>",), is_auto=True))
    assert auto is not None and auto.ticket_id == a.ticket_id
    assert a.ticket.status == "solved"


def test_sla_timestamps(session: Session) -> None:
    box = make_inbox(session)
    agent = make_user(session)
    sent = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    first = ingest(session, box.id, inbound(sent_at=sent, message_id="<s1@x>", handle="sla@x.test"))
    assert first is not None
    ticket = first.ticket
    assert ticket.first_inbound_at == sent and ticket.waiting_since == sent and ticket.first_response_at is None
    lifecycle.add_note(session, ticket, "internal only", by=agent.id)
    assert ticket.first_response_at is None, "a note is not a response"
    out = lifecycle.reply(session, ticket, "We are on it", by=agent.id)
    assert (
        out.delivery_state == "queued"
        and out.message_id_header
        and out.message_id_header.startswith(f"<ticket-{ticket.id}.")
    )
    assert ticket.first_response_at is not None and ticket.waiting_since is None and ticket.status == "open"
    responded = ticket.first_response_at
    again = ingest(
        session, box.id, inbound(references=("<s1@x>",), handle="sla@x.test", sent_at=dt.datetime.now(dt.UTC))
    )
    assert again is not None and ticket.waiting_since is not None
    lifecycle.reply(session, ticket, "Done", by=agent.id, new_status="solved")
    assert ticket.first_response_at == responded and ticket.solved_at is not None


def test_future_dates_are_clamped_to_arrival(session: Session) -> None:
    box = make_inbox(session)
    m = ingest(session, box.id, inbound(sent_at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3)))
    assert m is not None and m.ticket.first_inbound_at is not None
    assert m.ticket.first_inbound_at <= dt.datetime.now(dt.UTC)


def test_attachments_are_content_addressed_and_limits_recorded(session: Session) -> None:
    box = make_inbox(session)
    session.info["max_attachment_bytes"] = 1000
    data = b"%PDF-1.4 tiny"
    m1 = ingest(
        session,
        box.id,
        inbound(
            attachments=(
                InboundAttachment("a.pdf", "application/pdf", data),
                InboundAttachment("big.bin", "application/octet-stream", b"x" * 5000),
            )
        ),
    )
    m2 = ingest(session, box.id, inbound(attachments=(InboundAttachment("copy.pdf", "application/pdf", data),)))
    session.commit()
    assert m1 is not None and m2 is not None
    rows = list(session.scalars(select(Attachment).order_by(Attachment.id)))
    assert [r.filename for r in rows] == ["a.pdf", "big.bin", "copy.pdf"]
    assert rows[0].sha256 == rows[2].sha256 and rows[0].sha256 is not None
    assert session.info["blobs"].get(rows[0].sha256) == data
    assert rows[1].sha256 is None and rows[1].skipped_reason and rows[1].size == 5000


def test_events_are_published_after_commit_only(session: Session, published: list[DomainEvent]) -> None:
    box = make_inbox(session)
    ingest(session, box.id, inbound())
    assert published == []
    session.rollback()
    assert published == []
    assert count(session, Message) == 0
    box = make_inbox(session)
    m = ingest(session, box.id, inbound())
    session.commit()
    assert m is not None
    names = {(e.name, e.room) for e in published}
    assert ("message.created", f"ticket:{m.ticket_id}") in names
    assert ("ticket.created", f"inbox:{box.id}") in names


def test_ticket_created_event_row(session: Session) -> None:
    box = make_inbox(session)
    m = ingest(session, box.id, inbound())
    assert m is not None
    row = session.scalar(select(TicketEvent).where(TicketEvent.ticket_id == m.ticket_id))
    assert row is not None and row.kind == "created" and row.data == {"reason": "new ticket"}


def test_batch_threads_within_itself_and_skips_repeats(session: Session) -> None:
    from inbox import ingest_many

    box, chat = make_inbox(session), make_inbox(session, channel="webchat")
    batch = [
        inbound(message_id="<b1@x>", external_id="b1", handle="p@x.test"),
        inbound(message_id="<b2@x>", external_id="b2", handle="p@x.test", references=("<b1@x>",)),
        inbound(message_id="<b3@x>", external_id="b3", handle="q@x.test", references=("<b-later@x>",)),
        inbound(message_id="<b-later@x>", external_id="b4", handle="q@x.test"),
        inbound(message_id="<b1@x>", external_id="b1", handle="p@x.test"),  # a repeat inside the batch
    ]
    out = ingest_many(session, box.id, batch)
    assert [m is not None for m in out] == [True, True, True, True, False]
    m1, m2, m3, m4, _ = out
    assert m1 and m2 and m3 and m4
    assert m2.ticket_id == m1.ticket_id and m2.thread_reason == "in-reply-to <b1@x>"
    assert m4.ticket_id == m3.ticket_id and "parent of a stored reply" in m4.thread_reason
    assert m1.contact_id == m2.contact_id != m3.contact_id
    again = ingest_many(session, box.id, batch)
    assert again == [None] * 5
    chats = ingest_many(
        session, chat.id, [inbound(channel="webchat", handle="v9"), inbound(channel="webchat", handle="v9")]
    )
    assert chats[0] and chats[1] and chats[0].ticket_id == chats[1].ticket_id
    session.commit()
    assert count(session, Ticket) == 3


def test_batch_and_one_by_one_give_the_same_tickets(session: Session) -> None:
    """The batch path is an optimisation only: same routing as ingesting the messages one at a time."""
    import random

    from inbox import ingest_many

    rng = random.Random(3)
    senders = [f"s{i}@x.test" for i in range(6)]
    stream = []
    for i in range(60):
        refs = (f"<k{rng.randrange(i)}@x>",) if i and rng.random() < 0.5 else ()
        channel = "webchat" if rng.random() < 0.3 else "email"
        stream.append(
            dict(
                external_id=f"k{i}",
                message_id=f"<k{i}@x>" if channel == "email" else None,
                handle=rng.choice(senders),
                channel=channel,
                references=refs if channel == "email" else (),
            )
        )
    a_mail, a_chat, b_mail, b_chat = (make_inbox(session, channel=c) for c in ("email", "webchat", "email", "webchat"))

    def shape(messages: list) -> list[int]:
        first_seen: dict[int, int] = {}
        return [first_seen.setdefault(m.ticket_id, len(first_seen)) for m in messages]

    one = [ingest(session, (a_chat if d["channel"] == "webchat" else a_mail).id, inbound(**d)) for d in stream]
    many: list = []
    for i in range(0, 60, 17):
        chunk = stream[i : i + 17]
        mails = [d for d in chunk if d["channel"] == "email"]
        chats = [d for d in chunk if d["channel"] == "webchat"]
        got = dict(
            zip(
                [d["external_id"] for d in mails],
                ingest_many(session, b_mail.id, [inbound(**d) for d in mails]),
                strict=True,
            )
        )
        got |= dict(
            zip(
                [d["external_id"] for d in chats],
                ingest_many(session, b_chat.id, [inbound(**d) for d in chats]),
                strict=True,
            )
        )
        many.extend(got[d["external_id"]] for d in chunk)
    assert all(one) and all(many)
    assert shape(one) == shape(many)
    assert [m.thread_reason for m in one] == [m.thread_reason for m in many]
