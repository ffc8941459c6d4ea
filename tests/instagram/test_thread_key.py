"""``Inbound.thread_key``: chats with a key keep one ticket per (contact, key) on an inbox; without one, as before."""

from __future__ import annotations

from sqlalchemy.orm import Session

from inbox import Inbound, ingest, ingest_many
from inbox.models import Message, Ticket
from tests.factories import inbound, make_inbox


def ig(handle: str, key: str | None, **kw: object) -> Inbound:
    return inbound(channel="instagram", handle=handle, thread_key=key, subject="", **kw)


def test_one_ticket_per_contact_and_key(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    a1 = ingest(session, box.id, ig("ann", "POST1"))
    a2 = ingest(session, box.id, ig("ann", "POST1"))
    b1 = ingest(session, box.id, ig("bob", "POST1"))
    a3 = ingest(session, box.id, ig("ann", "POST2"))
    session.commit()
    assert a1 and a2 and b1 and a3
    assert a1.ticket_id == a2.ticket_id
    assert b1.ticket_id != a1.ticket_id  # same post, another commenter
    assert a3.ticket_id != a1.ticket_id  # same commenter, another post: a new ticket, not her latest one
    assert a2.thread_reason == "open chat ticket (thread POST1)"
    assert a3.thread_reason == "new ticket for thread POST2"
    assert a1.meta["thread_key"] == "POST1"


def test_key_routing_within_one_batch(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    stored = ingest_many(session, box.id, [ig("cat", "P1"), ig("cat", "P2"), ig("cat", "P1")])
    session.commit()
    first, second, third = stored
    assert first and second and third
    assert first.ticket_id == third.ticket_id != second.ticket_id


def test_key_found_again_in_a_later_transaction(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    ingest(session, box.id, ig("dan", "P1"))
    ingest(session, box.id, ig("dan", "P2"))
    session.commit()
    later = ingest(session, box.id, ig("dan", "P1"))
    session.commit()
    p1 = session.query(Message).filter(Message.meta["thread_key"].as_string() == "P1").order_by(Message.id).first()
    assert later is not None and p1 is not None and later.ticket_id == p1.ticket_id


def test_closed_keyed_ticket_starts_a_new_one_with_a_link(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    first = ingest(session, box.id, ig("eve", "P1"))
    assert first is not None
    ticket = session.get(Ticket, first.ticket_id)
    assert ticket is not None
    ticket.status = "closed"
    session.commit()
    again = ingest(session, box.id, ig("eve", "P1"))
    session.commit()
    assert again is not None and again.ticket_id != first.ticket_id
    assert again.ticket.parent_id == first.ticket_id


def test_solved_keyed_ticket_reopens(session: Session) -> None:
    box = make_inbox(session, channel="instagram")
    first = ingest(session, box.id, ig("fay", "P1"))
    assert first is not None
    ticket = session.get(Ticket, first.ticket_id)
    assert ticket is not None
    ticket.status = "solved"
    session.commit()
    again = ingest(session, box.id, ig("fay", "P1"))
    session.commit()
    assert again is not None and again.ticket_id == first.ticket_id and again.ticket.status == "open"


def test_without_key_chats_still_join_the_latest_ticket(session: Session) -> None:
    box = make_inbox(session, channel="telegram")
    m1 = ingest(session, box.id, inbound(channel="telegram", handle="42", subject=""))
    m2 = ingest(session, box.id, inbound(channel="telegram", handle="42", subject=""))
    session.commit()
    assert m1 and m2 and m1.ticket_id == m2.ticket_id and "thread_key" not in m2.meta


def test_email_ignores_thread_keys(session: Session) -> None:
    box = make_inbox(session)
    m1 = ingest(session, box.id, inbound(handle="g@x.test", thread_key="K"))
    m2 = ingest(session, box.id, inbound(handle="g@x.test", thread_key="K"))
    session.commit()
    assert m1 and m2 and m1.ticket_id != m2.ticket_id  # email threads by Message-ID chains only

