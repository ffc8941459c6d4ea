"""Outgoing webhooks: subscriptions, signed JSON payloads, target checks and the per-subscription delivery log.

The HTTP call itself is a worker job (``workers.automation_jobs.send_webhook``); this module decides what is sent,
to whom, how it is signed, and records each outcome. Receivers verify
``X-Helpline-Signature: sha256=hex(HMAC-SHA256(secret, f"{X-Helpline-Timestamp}.{body}"))``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from inbox import events
from inbox.automation_models import WebhookDelivery, WebhookSubscription
from inbox.crypto import decrypt_json, encrypt_json
from inbox.db import utcnow
from inbox.errors import InvalidChange

# What a subscription can listen to; "ping" is the settings page's "send test event".
EVENTS: dict[str, str] = {
    events.TICKET_CREATED: "A ticket was created",
    events.TICKET_UPDATED: "A ticket changed (priority, team, tags, notes, replies)",
    events.TICKET_STATUS_CHANGED: "A ticket's status changed",
    events.TICKET_ASSIGNED: "A ticket was assigned",
    events.TICKET_MERGED: "Tickets were merged",
    events.MESSAGE_CREATED: "A message, reply or note was added",
    events.MESSAGE_UPDATED: "A reply's delivery state changed",
    events.CONTACT_MERGED: "Contacts were merged",
}
PING = "ping"
KEEP_DELIVERIES = 100  # log entries kept per subscription
SIGNATURE_HEADER = "X-Helpline-Signature"
TIMESTAMP_HEADER = "X-Helpline-Timestamp"


class TargetRefused(InvalidChange):
    """The webhook URL points somewhere Helpline must not send to (a private network, a non-http scheme)."""


def event_room_matches(name: str, room: str) -> bool:
    """Each change is announced to several rooms; count it once (the ticket's room, or the contact's)."""
    if name == events.CONTACT_MERGED:
        return room.startswith("contact:")
    return room.startswith("ticket:")


def check_url(url: str, *, allow_private: bool, resolve: bool = True) -> str:
    """Return the URL if it is http(s) to a public host; raises ``TargetRefused`` otherwise.

    With ``resolve`` every address the host name resolves to is checked, so a DNS name cannot point inside the
    network (``HELPLINE_WEBHOOK_ALLOW_PRIVATE=true`` lifts this for installations that post to their intranet).
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("the URL must start with http:// or https:// and name a host")
    if parts.username or parts.password:
        raise TargetRefused("put credentials in the secret, not in the URL")
    if len(url) > 2000:
        raise TargetRefused("the URL is too long")
    if allow_private:
        return url
    host = parts.hostname
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith((".localhost", ".local", ".internal")):
            raise TargetRefused(f"{host} is a private host") from None
        if not resolve:
            return url
        try:
            infos = socket.getaddrinfo(host, port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc}") from exc
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if not address.is_global or address.is_multicast:
            raise TargetRefused(
                f"{host} resolves to {address}, a private or reserved address "
                "(set HELPLINE_WEBHOOK_ALLOW_PRIVATE=true to allow it)"
            )
    return url


def clean_events(names: Sequence[str]) -> list[str]:
    chosen = [n for n in EVENTS if n in set(names)]
    unknown = set(names) - set(EVENTS)
    if unknown:
        raise InvalidChange(f"unknown events: {', '.join(sorted(unknown))}")
    if not chosen:
        raise InvalidChange("choose at least one event")
    return chosen


def save_subscription(
    session: Session,
    sub: WebhookSubscription | None,
    *,
    secret_key: str,
    name: str,
    url: str,
    event_names: Sequence[str],
    secret: str,
    enabled: bool,
    allow_private: bool,
) -> WebhookSubscription:
    """Create or update a subscription. An empty ``secret`` keeps the stored one (a new one needs a secret)."""
    url = check_url(url, allow_private=allow_private, resolve=False)  # resolved again before every send
    chosen = clean_events(event_names)
    if sub is None:
        if len(secret) < 16:
            raise InvalidChange("the signing secret must be at least 16 characters")
        sub = WebhookSubscription()
        session.add(sub)
    elif secret and len(secret) < 16:
        raise InvalidChange("the signing secret must be at least 16 characters")
    if secret:
        sub.secret = encrypt_json(secret_key, {"secret": secret})
    sub.name, sub.url, sub.events, sub.enabled = name.strip()[:200] or url[:200], url, chosen, enabled
    sub.updated_at = utcnow()
    session.flush()
    return sub


def signing_secret(secret_key: str, sub: WebhookSubscription) -> str:
    return str(decrypt_json(secret_key, sub.secret)["secret"])


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Helpline-Signature`` value: HMAC-SHA256 over ``"<timestamp>.<body>"``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance: int = 300) -> bool:
    """What a receiver does (documented in the README, used by the tests): reject stale or forged requests."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(now - ts) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def body_for(delivery: WebhookDelivery) -> bytes:
    envelope = {
        "id": delivery.event_id,
        "event": delivery.event,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True, default=str).encode()


def wanted_events(session: Session) -> set[str]:
    out: set[str] = set()
    for names in session.scalars(select(WebhookSubscription.events).where(WebhookSubscription.enabled.is_(True))):
        out.update(names or [])
    return out


def create_deliveries(session: Session, name: str, payload: dict[str, Any]) -> list[int]:
    """One pending delivery per enabled subscription to ``name``; returns their ids (enqueue after commit)."""
    ids = []
    for sub in session.scalars(select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))):
        if name in (sub.events or []):
            ids.append(new_delivery(session, sub, name, payload).id)
    return ids


def new_delivery(session: Session, sub: WebhookSubscription, name: str, payload: dict[str, Any]) -> WebhookDelivery:
    now = utcnow()
    row = WebhookDelivery(
        subscription_id=sub.id, event=name, event_id=str(uuid.uuid4()), payload=payload, state="pending",
        attempts=0, created_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    _prune(session, sub.id)
    return row


def _prune(session: Session, subscription_id: int) -> None:
    cutoff = session.scalar(
        select(WebhookDelivery.id)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(WebhookDelivery.id.desc())
        .offset(KEEP_DELIVERIES)
        .limit(1)
    )
    if cutoff is not None:
        session.execute(
            delete(WebhookDelivery).where(
                WebhookDelivery.subscription_id == subscription_id,
                WebhookDelivery.id <= cutoff,
                WebhookDelivery.state.in_(("delivered", "failed")),
            )
        )


def record_attempt(
    delivery: WebhookDelivery,
    *,
    state: str,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_in: float | None = None,
) -> None:
    now = utcnow()
    delivery.state = state
    delivery.status_code = status_code
    delivery.error = error[:2000] if error else None
    delivery.duration_ms = duration_ms
    delivery.updated_at = now
    delivery.next_attempt_at = now + dt.timedelta(seconds=retry_in) if retry_in is not None else None


def deliveries_of(session: Session, subscription_id: int, limit: int = 50) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )
