"""JSON shapes of the API (and of the browser's data calls), in one place."""

from __future__ import annotations

import datetime as dt
from typing import Any

from inbox.models import Attachment, Contact, Identity, Message, Ticket


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_json(ticket: Ticket, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": ticket.id,
        "subject": ticket.subject,
        "preview": ticket.preview,
        "status": ticket.status,
        "priority": ticket.priority,
        "channel": ticket.channel,
        "inbox": {"id": ticket.inbox.id, "name": ticket.inbox.name},
        "contact": {"id": ticket.contact.id, "name": ticket.contact.name},
        "assignee": {"id": ticket.assignee.id, "name": ticket.assignee.name} if ticket.assignee else None,
        "team_id": ticket.team_id,
        "tags": tags if tags is not None else [t.name for t in ticket.tags],
        "message_count": ticket.message_count,
        "parent_id": ticket.parent_id,
        "merged_into_id": ticket.merged_into_id,
        "created_at": iso(ticket.created_at),
        "updated_at": iso(ticket.updated_at),
        "last_activity_at": iso(ticket.last_activity_at),
        "first_inbound_at": iso(ticket.first_inbound_at),
        "first_response_at": iso(ticket.first_response_at),
        "waiting_since": iso(ticket.waiting_since),
        "solved_at": iso(ticket.solved_at),
        "snoozed_until": iso(ticket.snoozed_until),
    }


def attachment_json(att: Attachment) -> dict[str, Any]:
    return {
        "id": att.id,
        "filename": att.filename,
        "content_type": att.content_type,
        "size": att.size,
        "inline": att.inline,
        "stored": att.sha256 is not None,
        "skipped_reason": att.skipped_reason,
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "id": message.id,
        "ticket_id": message.ticket_id,
        "inbox_id": message.inbox_id,
        "contact_id": message.contact_id,
        "direction": message.direction,
        "channel": message.channel,
        "author": {"id": message.author.id, "name": message.author.name} if message.author else None,
        "subject": message.subject,
        "text": message.body_text,
        "has_html": message.body_html is not None,
        "sent_at": iso(message.sent_at),
        "created_at": iso(message.created_at),
        "is_auto": message.is_auto,
        "thread_reason": message.thread_reason,
        "delivery_state": message.delivery_state,
        "delivery_error": message.delivery_error,
        "attachments": [attachment_json(a) for a in message.attachments],
    }


def identity_json(identity: Identity) -> dict[str, Any]:
    return {
        "id": identity.id,
        "channel": identity.channel,
        "handle": identity.handle,
        "display_name": identity.display_name,
        "unreachable": identity.unreachable,
    }


def contact_json(contact: Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "name": contact.name,
        "attributes": contact.attributes,
        "merged_into_id": contact.merged_into_id,
        "created_at": iso(contact.created_at),
        "identities": [identity_json(i) for i in contact.identities],
    }
