"""Email notifications of mentions and assignments: enqueued after commit for users who want them, sent by a real
RQ worker through the email inbox's SMTP server (aiosmtpd on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from inbox import events, people
from inbox.crypto import encrypt_json
from inbox.ingest import ingest
from inbox.runtime import Storage
from tests import factories
from tests.mail_services import smtp_server
from tickets import lifecycle
from workers.notify import NotificationEnqueuer


@pytest.fixture
def enqueuer() -> Iterator[None]:
    events.add_publisher(NotificationEnqueuer())
    yield
    events.remove_publisher(NotificationEnqueuer())


def _notifications(queue: Queue) -> list[str]:
    return [job.id for job in queue.get_jobs() if (job.func_name or "").startswith("workers.notify.")]


def test_mentions_and_assignments_are_emailed_to_who_wants_them(wk: Storage, redis: Redis, enqueuer: None) -> None:
    secret = wk.settings.secret_key
    with smtp_server() as (controller, sink):
        with wk.factory() as session:
            team = factories.make_team(session)
            wants = factories.make_user(session, email="wants@helpline.test", name="Wanda", teams=[team])
            quiet = factories.make_user(session, email="quiet@helpline.test", name="Quinn", teams=[team])
            boss = factories.make_user(session, email="boss@helpline.test", name="Bo Boss", role="admin")
            for user, email_on in ((wants, True), (quiet, False)):
                people.save_profile(
                    session,
                    user,
                    name=user.name,
                    avatar_color="",
                    notify_mentions=True,
                    notify_assignments=True,
                    notify_new_tickets=False,
                    email_notifications=email_on,
                )
            box = factories.make_inbox(
                session,
                team_id=team.id,
                config={
                    "smtp_host": "127.0.0.1",
                    "smtp_port": controller.port,
                    "smtp_security": "none",
                    "address": "help@shop.test",
                },
                secrets=encrypt_json(secret, {}),
            )
            message = ingest(session, box.id, factories.inbound(subject="Broken kettle"))
            assert message is not None
            ticket = message.ticket
            session.commit()
            lifecycle.assign(session, ticket, wants.id, by=boss.id)
            lifecycle.add_note(session, ticket, "@wants @quiet have a look", by=boss.id)
            session.commit()
            lifecycle.assign(session, ticket, quiet.id, by=boss.id)
            lifecycle.assign(session, ticket, wants.id, by=wants.id)  # taking it oneself: no email
            session.commit()
            ticket_id = ticket.id
        queue = Queue("default", connection=redis)
        # The worker runtime also queues automation events on this queue (workers.automation_jobs); count ours.
        assert len(_notifications(queue)) == 2, "only Wanda's mention and assignment by someone else are queued"
        SimpleWorker([queue], connection=redis).work(burst=True)
        mails = [message_from_bytes(m.data, policy=policy.default) for m in sink.messages]
        assert sorted(m.rcpt_tos[0] for m in sink.messages) == ["wants@helpline.test"] * 2
        bodies = sorted(m.get_content() for m in mails)
        assert bodies[0].startswith(f"Bo Boss assigned you ticket #{ticket_id}: Broken kettle")
        assert bodies[1].startswith(f"Bo Boss mentioned you in a note on ticket #{ticket_id}")
        assert all(m["Subject"] == f"Ticket {ticket_id}: Broken kettle" and m["Auto-Submitted"] for m in mails)

        # Switched off after the event was queued: the job reads the preference again and sends nothing.
        with wk.factory() as session:
            ticket = session.get_one(type(ticket), ticket_id)
            lifecycle.add_note(session, ticket, "@wants once more", by=boss.id)
            session.commit()
            wanda = session.get_one(type(wants), wants.id)
            people.save_profile(
                session,
                wanda,
                name="Wanda",
                avatar_color="",
                notify_mentions=True,
                notify_assignments=True,
                notify_new_tickets=False,
                email_notifications=False,
            )
            session.commit()
        assert len(_notifications(queue)) == 1
        SimpleWorker([queue], connection=redis).work(burst=True)
        assert len(sink.messages) == 2
