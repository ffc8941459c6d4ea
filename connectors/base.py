"""The one protocol every channel speaks, and the explicit registry of channels.

``Outbound`` is what the delivery job hands a channel: everything needed to send, nothing from the database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class OutboundAttachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class Outbound:
    """One reply to send on a channel."""

    message_id: int  # our database id (idempotency key)
    ticket_id: int
    channel: str
    to_handle: str  # address, chat id, username, visitor id
    to_name: str = ""
    from_address: str = ""  # the inbox's address (email)
    from_name: str = ""
    subject: str = ""
    text: str = ""
    html: str | None = None
    message_id_header: str | None = None  # email: our stable Message-ID
    in_reply_to: str | None = None  # email: the customer's message we answer
    references: tuple[str, ...] = ()
    reply_to_external_id: str | None = None  # chats: the provider's id of the message answered
    attachments: tuple[OutboundAttachment, ...] = ()
    auto_generated: bool = False  # automatic mail carries Auto-Submitted: auto-generated
    meta: Mapping[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """A configured channel account that can send. Built from the inbox's config and decrypted secrets."""

    name: str

    def send(self, outbound: Outbound) -> str:
        """Send one message; return the provider's id. Raises connectors.errors.* on failure."""
        ...


ChannelFactory = Callable[[Mapping[str, Any], Mapping[str, Any]], Channel]
"""``factory(config, secrets)``: the inbox's non-secret config and its decrypted secrets."""
