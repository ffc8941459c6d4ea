"""Replies by email: a real worker process sends through connectors.smtp to an aiosmtpd listener on loopback."""

from __future__ import annotations

import email
from collections.abc import Callable
from email import policy

from inbox.config import Settings
from inbox.models import Message
from inbox.runtime import Storage
from tests import factories
from tests.mail_services import smtp_server
from tests.workers.conftest import Workers, customer_ticket, process_env, states
from tests.workers.test_processes import wait_until
from tickets import lifecycle


def test_worker_sends_a_threaded_reply_over_smtp_once(
    file_storage: Storage, file_settings: Settings, redis_url: str,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    with smtp_server() as (controller, sink):
        with file_storage.factory() as session:
            inbox = factories.make_inbox(session, channel="email", config={
                "smtp_host": "127.0.0.1", "smtp_port": controller.port, "smtp_security": "none"})
            ticket = customer_ticket(session, inbox, message_id="<order-42@customer.test>", subject="Order 42")
            ok = lifecycle.reply(session, ticket, "Your order ships today.", by=None)
            busy = lifecycle.reply(session, ticket, "Second thought", by=None,
                                   identity_id=factories_identity(session, "later@temp.test", ticket))
            session.commit()
        workers = workers_factory(process_env(file_settings, redis_url))
        workers.start()
        wait_until(lambda: states(file_storage, [ok.id])[ok.id] == "sent", 30, "the reply sent", workers)
        wait_until(lambda: states(file_storage, [busy.id])[busy.id] == "delayed", 30, "4xx delays", workers)
    assert len(sink.messages) == 1
    sent = email.message_from_bytes(sink.messages[0].data, policy=policy.default)
    assert sent["In-Reply-To"] == "<order-42@customer.test>"
    assert sent["Subject"].startswith("Re: Order 42")  # the renderer adds the ticket token
    assert sink.messages[0].rcpt_tos == [ticket.contact.identities[0].handle]
    with file_storage.factory() as session:
        row = session.get(Message, ok.id)
        assert row is not None and row.external_id == sent["Message-ID"] == row.message_id_header
        delayed = session.get(Message, busy.id)
        assert delayed is not None and delayed.delivery_error is not None and "451" in delayed.delivery_error


def factories_identity(session: object, handle: str, ticket: object) -> int:
    """A second address of the ticket's contact (one that the SMTP sink answers 451)."""
    from inbox.models import Identity, Ticket

    assert isinstance(ticket, Ticket)
    identity = Identity(contact_id=ticket.contact_id, channel="email", handle=handle)
    session.add(identity)  # type: ignore[attr-defined]
    session.flush()  # type: ignore[attr-defined]
    return identity.id
