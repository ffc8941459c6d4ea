"""Contacts: merging loses nothing; the customer thread spans channels, newest first, paged."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import ingest
from inbox.identities import live_contact, merge_contacts, resolve_identity
from inbox.models import Contact, Identity, Message, Ticket
from inbox.thread import customer_thread
from tests.factories import inbound, make_inbox


def test_merge_moves_identities_tickets_and_messages(session: Session) -> None:
    mail, chat = make_inbox(session), make_inbox(session, channel="webchat")
    m1 = ingest(session, mail.id, inbound(handle="ann@x.test", display_name="Ann"))
    m2 = ingest(
        session,
        chat.id,
        inbound(channel="webchat", handle="visitor-1", display_name="", contact_attributes={"city": "Oslo"}),
    )
    assert m1 is not None and m2 is not None
    source, target = m2.contact, m1.contact
    source.attributes = {"city": "Oslo", "plan": "free"}
    target.attributes = {"plan": "pro"}
    merge_contacts(session, source, target)
    session.commit()
    assert {i.handle for i in session.scalars(select(Identity).where(Identity.contact_id == target.id))} == {
        "ann@x.test",
        "visitor-1",
    }
    assert set(session.scalars(select(Message.contact_id))) == {target.id}
    assert set(session.scalars(select(Ticket.contact_id))) == {target.id}
    assert target.attributes == {"city": "Oslo", "plan": "pro"}
    assert source.merged_into_id == target.id and live_contact(session, source).id == target.id
    # A new chat message from the merged identity lands on the surviving contact.
    m3 = ingest(session, chat.id, inbound(channel="webchat", handle="visitor-1"))
    assert m3 is not None and m3.contact_id == target.id and m3.ticket_id == m2.ticket_id
    assert session.get(Contact, source.id) is not None  # kept as a pointer, nothing deleted


def test_resolve_identity_race_safe_savepoint(session: Session) -> None:
    a = resolve_identity(session, "telegram", "42", "Zed")
    b = resolve_identity(session, "telegram", "42")
    assert a.id == b.id and a.contact.name == "Zed"


def test_customer_thread_spans_channels_newest_first_paged(session: Session) -> None:
    mail, tg = make_inbox(session), make_inbox(session, channel="telegram")
    base = dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)
    ids = []
    for i in range(5):
        m = ingest(session, mail.id, inbound(handle="t@x.test", sent_at=base + dt.timedelta(minutes=i)))
        assert m is not None
        m.created_at = base + dt.timedelta(minutes=i)
        ids.append(m.id)
    tg_msg = ingest(session, tg.id, inbound(channel="telegram", handle="9001"))
    assert tg_msg is not None
    merge_contacts(session, tg_msg.contact, session.get(Contact, session.get(Message, ids[0]).contact_id))
    other = ingest(session, mail.id, inbound(handle="someone-else@x.test"))
    session.commit()
    contact_id = session.get(Message, ids[0]).contact_id
    page1 = customer_thread(session, contact_id, limit=4)
    assert [m.id for m in page1.messages] == [tg_msg.id, ids[4], ids[3], ids[2]]
    assert page1.next_cursor == ids[2]
    page2 = customer_thread(session, contact_id, limit=4, before_id=page1.next_cursor)
    assert [m.id for m in page2.messages] == [ids[1], ids[0]] and page2.next_cursor is None
    assert other is not None and other.id not in [m.id for m in page1.messages + page2.messages]
    only_mail = customer_thread(session, contact_id, inbox_ids={mail.id})
    assert tg_msg.id not in [m.id for m in only_mail.messages]
