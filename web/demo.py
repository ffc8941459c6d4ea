"""Demo workspace: realistic customers on four channels, so a newcomer's first screen is a living inbox.

Demo inboxes are paused and marked ``demo`` in their config: nothing polls them and replies on them are marked
sent without leaving the machine.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.identities import merge_contacts, resolve_identity
from inbox.ingest import Inbound, InboundAttachment, ingest
from inbox.models import Inbox, Team
from inbox.users import create_user, find_user_by_email
from tickets import lifecycle

DEMO_EMAIL = "demo@helpline.test"
DEMO_PASSWORD = "helpline-demo"


@dataclass(frozen=True)
class Say:
    """One line of a demo conversation: who speaks, what, how long ago (minutes)."""

    who: str  # "customer" or "agent" or "note"
    text: str
    ago: int


def _inbox(session: Session, team: Team, name: str, channel: str, address: str) -> Inbox:
    box = Inbox(
        name=name,
        channel=channel,
        address=address,
        team_id=team.id,
        paused=True,
        config={"demo": True},
        public_key=secrets.token_urlsafe(16) if channel == "webchat" else None,
    )
    session.add(box)
    session.flush()
    return box


def load_demo(session: Session) -> bool:
    """Create the demo workspace; returns False (and changes nothing) when it already exists."""
    if find_user_by_email(session, DEMO_EMAIL) is not None:
        return False
    team = session.scalar(select(Team).where(Team.name == "Support")) or Team(name="Support")
    session.add(team)
    owner = create_user(session, DEMO_EMAIL, DEMO_PASSWORD, role="admin", name="Dana Demo")
    sam = create_user(session, "sam@demo-shop.test", secrets.token_urlsafe(12), role="agent", name="Sam Rivera")
    owner.teams.append(team)
    sam.teams.append(team)
    mail = _inbox(session, team, "Support email", "email", "support@demo-shop.test")
    bot = _inbox(session, team, "Shop bot", "telegram", "demo_shop_bot")
    chat = _inbox(session, team, "Website chat", "webchat", "demo-shop.test")
    insta = _inbox(session, team, "Instagram @demo.shop", "instagram", "demo.shop")
    now = utcnow()
    counter = iter(range(1, 10_000))

    def converse(box: Inbox, handle: str, name: str, subject: str, lines: list[Say], **extra: object) -> int:
        ticket_id: int | None = None
        last_mid: str | None = None
        for line in lines:
            at = now - dt.timedelta(minutes=line.ago)
            if line.who == "customer":
                n = next(counter)
                mid = f"<demo-{n}@{handle.split('@')[-1]}>" if box.channel == "email" else None
                message = ingest(
                    session,
                    box.id,
                    Inbound(
                        channel=box.channel,
                        external_id=f"demo-{n}",
                        handle=handle,
                        display_name=name,
                        text=line.text,
                        subject=subject if box.channel == "email" else "",
                        sent_at=at,
                        message_id=mid,
                        references=(last_mid,) if last_mid else (),
                        **extra,  # type: ignore[arg-type]
                    ),
                )
                assert message is not None
                message.created_at = at
                ticket_id, last_mid = message.ticket_id, mid
            else:
                assert ticket_id is not None
                ticket = lifecycle.get_ticket(session, ticket_id)
                if line.who == "note":
                    note = lifecycle.add_note(session, ticket, line.text, by=owner.id)
                    note.created_at = at
                    continue
                reply = lifecycle.reply(session, ticket, line.text, by=sam.id)
                reply.created_at = at
                reply.delivery_state, reply.delivered_at = "sent", at
                ticket.first_response_at = min(ticket.first_response_at or at, at)
                last_mid = reply.message_id_header
            ticket = lifecycle.get_ticket(session, ticket_id)
            ticket.last_activity_at = at
        assert ticket_id is not None
        return ticket_id

    t1 = converse(
        mail,
        "ann.lee@example.com",
        "Ann Lee",
        "Where is my order #1042?",
        [
            Say(
                "customer",
                "Hi! I ordered the linen shirt last Monday (order #1042) and it still says 'processing'. "
                "Could you check what is going on?",
                2900,
            ),
            Say(
                "agent",
                "Hi Ann, sorry for the wait! Your parcel left our warehouse this morning; tracking: "
                "DHL 00340434161234567. It should arrive on Thursday.",
                2850,
            ),
            Say("customer", "Great, thank you so much!", 2700),
        ],
    )
    lifecycle.set_status(session, lifecycle.get_ticket(session, t1), "solved", by=sam.id)
    converse(
        chat,
        "visitor-ann-7f3a",
        "Ann Lee",
        "",
        [
            Say("customer", "Hello again, the shirt arrived but it's a bit small. Can I swap it for an L?", 35),
        ],
    )
    ann_mail = resolve_identity(session, "email", "ann.lee@example.com")
    ann_chat = resolve_identity(session, "webchat", "visitor-ann-7f3a")
    merge_contacts(session, ann_chat.contact, ann_mail.contact, actor_id=owner.id)
    converse(
        bot,
        "482913377",
        "Marco Bianchi",
        "",
        [
            Say("customer", "Ciao! Do you ship to Italy? And how long does it take?", 12),
        ],
        contact_attributes={"language": "it", "username": "marcob"},
    )
    converse(
        insta,
        "priya.designs",
        "Priya Nair",
        "",
        [
            Say("customer", "Is the blue one back in stock?? 😍", 48),
        ],
        meta={"post_url": "https://www.instagram.com/p/demo-blue-dress/", "post_caption": "New in: the Riviera dress"},
    )
    t5 = converse(
        mail,
        "jonas.weber@example.de",
        "Jonas Weber",
        "Refund for a damaged item",
        [
            Say(
                "customer",
                "Hello, the ceramic mug I received was broken in the box. I attached the delivery note. "
                "I would like a refund please.",
                300,
            ),
            Say("note", "@sam please check with the warehouse whether this batch had more breakages.", 290),
        ],
        attachments=(
            InboundAttachment(
                "delivery-note.txt", "text/plain", b"Demo Shop - delivery note\nOrder 1057\n1x Ceramic mug, sand\n"
            ),
        ),
    )
    ticket5 = lifecycle.get_ticket(session, t5)
    lifecycle.assign(session, ticket5, sam.id, by=owner.id)
    lifecycle.set_priority(session, ticket5, "high", by=owner.id)
    lifecycle.add_tag(session, ticket5, "refund", by=owner.id)
    converse(
        chat,
        "visitor-19c2",
        "Website visitor",
        "",
        [
            Say("customer", "Hi, do you have a size guide for the jackets?", 3),
        ],
    )
    t7 = converse(
        mail,
        "chen.li@acme-corp.test",
        "Chen Li",
        "Invoice with our VAT number",
        [
            Say("customer", "Could you send the invoice for order #1031 with our VAT number DE812345678?", 1500),
            Say("agent", "Of course. Could you confirm the company address it should show?", 1440),
        ],
    )
    lifecycle.set_status(session, lifecycle.get_ticket(session, t7), "pending", by=sam.id)
    converse(
        mail,
        "office@example.org",
        "Office Team",
        "Automatic reply: Out of office",
        [
            Say("customer", "I am out of the office until Monday and will answer your message when I return.", 60),
        ],
        is_auto=True,
    )
    session.flush()
    return True
