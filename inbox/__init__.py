"""The domain core: contacts, identities, messages, attachments, ingestion, the customer thread, events."""

from inbox.ingest import Inbound, InboundAttachment, InboundMessage, ingest, ingest_many

__all__ = ["Inbound", "InboundAttachment", "InboundMessage", "ingest", "ingest_many"]
