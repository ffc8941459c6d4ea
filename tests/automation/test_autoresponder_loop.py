"""Issue 3's loop test: an auto-reply rule on a real mailbox (Dovecot in, aiosmtpd out) against an out-of-office
responder that answers everything for 50 rounds. Helpline sends at most one automatic mail per thread, and stores
every one of the responder's mails.

Each round: the responder's answer is delivered into Dovecot → ``sync_email_inbox`` commits it → the
``AutomationEnqueuer`` enqueues the rules' job → an RQ worker (in-process, burst) runs the rules and delivers any
queued reply over SMTP to the listener → the responder answers the newest mail it has from Helpline.
"""

from __future__ import annotations

import email
from collections import Counter
from email import policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from rq import SimpleWorker
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.crypto import encrypt_json
from inbox.models import Message
from inbox.runtime import Storage
from tests.email.conftest import email_inbox, mail
from tests.mail_services import PASSWORD, SMTP_PASSWORD, SMTP_USER, Dovecot, smtp_server
from tickets import automation
from workers import runtime
from workers.mail_sync import sync_email_inbox

ROUNDS = 50
CUSTOMER = "ann@example.com"


def responder_mail(answered: email.message.EmailMessage, n: int, style: str) -> bytes:
    """The out-of-office answer to one of Helpline's mails."""
    msg = EmailMessage()
    msg["From"] = f"Ann Customer <{CUSTOMER}>"
    msg["To"] = str(answered["From"])
    msg["Message-ID"] = make_msgid(idstring=f"ooo{n}", domain="example.com")
    if style == "broken-threading":  # a naive responder that also drops the thread: a new subject each time
        msg["Subject"] = f"I am away (note {n})"
    else:
        msg["Subject"] = f"{'Out of office' if style == 'rfc3834' else 'Re'}: {answered['Subject']}"
        msg["In-Reply-To"] = str(answered["Message-ID"])
        msg["References"] = f"{answered.get('References', '')} {answered['Message-ID']}".strip()
    if style == "rfc3834":
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Autoreply"] = "yes"
    msg.set_content(f"I am out of the office until Monday. (answer {n})")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def run_jobs() -> None:
    queues = [runtime.queue(name) for name in runtime.QUEUES]
    SimpleWorker(queues, connection=runtime.redis()).work(burst=True, logging_level="WARNING")


@pytest.mark.parametrize(
    ("db_url", "style"),
    [("sqlite", "rfc3834"), ("sqlite", "naive"), ("sqlite", "broken-threading"), ("postgresql", "naive")],
    indirect=["db_url"],
)
def test_out_of_office_loop_gets_at_most_one_automatic_mail_per_thread(
    wk: Storage, dovecot: Dovecot, imap_user: str, style: str
) -> None:
    storage = wk
    with smtp_server(auth=True) as (controller, sink):
        with storage.factory() as session:
            inbox = email_inbox(session, dovecot, imap_user, storage.settings.secret_key, parse_workers=0,
                                smtp_host="127.0.0.1", smtp_port=controller.port, smtp_security="none",
                                smtp_username=SMTP_USER)
            inbox.secrets = encrypt_json(storage.settings.secret_key,
                                         {"password": PASSWORD, "smtp_password": SMTP_PASSWORD})
            inbox_id = inbox.id
            automation.save_rule(session, None, name="Acknowledge", trigger="message_received", match="all",
                                 conditions=[], actions=[{"type": "auto_reply", "subject": "We got your message",
                                                          "value": "Hi {{ contact.first_name }}, thanks!"}])
            session.commit()
        dovecot.deliver(imap_user, mail(sender=f"Ann Customer <{CUSTOMER}>", message_id="<first@example.com>"))
        sync_email_inbox(storage, inbox_id)
        run_jobs()
        assert len(sink.messages) == 1, "the customer's first mail gets its automatic reply"
        answered = 0
        for n in range(1, ROUNDS + 1):
            # The responder answers everything it got; with nothing new, it answers the newest mail again.
            latest = email.message_from_bytes(sink.messages[-1].data, policy=policy.default)
            assert isinstance(latest, EmailMessage)
            dovecot.deliver(imap_user, responder_mail(latest, n, style))
            answered += 1
            result = sync_email_inbox(storage, inbox_id)
            assert result.stored == 1, (n, result)
            run_jobs()
    sent = [email.message_from_bytes(m.data, policy=policy.default) for m in sink.messages]
    assert all(m["Auto-Submitted"] == "auto-generated" for m in sent)
    assert all(m.rcpt_tos == [CUSTOMER] for m in sink.messages)
    with storage.factory() as session:
        by_header = {m.message_id_header: m for m in session.scalars(select(Message).where(
            Message.direction == "outbound"))}
        per_ticket = Counter(by_header[str(m["Message-ID"])].ticket_id for m in sent)
        assert max(per_ticket.values()) == 1, per_ticket  # at most one automatic mail per thread
        inbound = list(session.scalars(select(Message).where(Message.direction == "inbound")))
        assert len(inbound) == 1 + answered  # nothing the responder sent was lost
        assert all(m.delivery_state == "sent" for m in by_header.values())
        _check_style(session, style, sent, inbound)


def _check_style(session: Session, style: str, sent: list[email.message.EmailMessage], inbound: list[Message]) -> None:
    if style == "broken-threading":
        # Every answer starts a new thread; the per-contact limit ends the ping-pong.
        assert len(sent) == automation.AUTO_REPLY_LIMIT
        assert len({m.ticket_id for m in inbound}) == 1 + ROUNDS
    else:
        assert len(sent) == 1
        assert len({m.ticket_id for m in inbound}) == 1  # every answer threads into the customer's ticket
        assert all(m.is_auto == (style == "rfc3834") for m in inbound[1:])
