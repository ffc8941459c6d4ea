"""Instagram Graph API webhooks (business accounts): the subscription handshake and signed deliveries.

Pages: https://developers.facebook.com/docs/graph-api/webhooks/getting-started ("Verification Requests",
"Event Notifications", "Validating Payloads") and https://developers.facebook.com/docs/instagram-platform/webhooks.

- ``GET /webhooks/instagram/<public_key>?hub.mode=subscribe&hub.verify_token=...&hub.challenge=...``: answer the
  challenge when the verify token is the inbox's.
- ``POST /webhooks/instagram/<public_key>``: ``X-Hub-Signature-256`` is the HMAC-SHA256 of the raw body with the
  app secret; forged or missing -> 403 and nothing is read. Meta redelivers until it gets a 200, so a delivery is
  stored idempotently (messages are unique per inbox and external id). Fields we do not know are ignored.

The path names the inbox by its unguessable ``public_key``; the secrets (``app_secret``, ``verify_token``) are
stored encrypted with the inbox.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from connectors import instagram
from inbox.crypto import decrypt_json
from inbox.errors import SecretError
from inbox.ingest import ingest_many
from inbox.models import Inbox
from web.db import get_storage
from web.security import csrf

log = logging.getLogger(__name__)

bp = Blueprint("instagram_webhook", __name__, url_prefix="/webhooks/instagram")
csrf.exempt(bp)  # Meta signs its POSTs and sends no cookies: CSRF cannot apply
SIGNATURE_HEADER = "X-Hub-Signature-256"


def _answer(status: int, **body: Any) -> ResponseReturnValue:
    response = jsonify(body)
    response.status_code = status
    return response


def _inbox_secrets(public_key: str) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    storage = get_storage()
    # A short session of our own: on SQLite a transaction kept open by the request would block the ingest below.
    with storage.factory() as session:
        inbox = session.scalar(select(Inbox).where(Inbox.public_key == public_key, Inbox.channel == "instagram"))
        if inbox is None:
            return None
        inbox_id, sealed, config = inbox.id, inbox.secrets, dict(inbox.config or {})
    return inbox_id, config, decrypt_json(storage.settings.secret_key, sealed)


@bp.get("/<public_key>")
def verify(public_key: str) -> ResponseReturnValue:
    """The subscription handshake: echo ``hub.challenge`` if ``hub.verify_token`` is ours."""
    try:
        found = _inbox_secrets(public_key)
    except SecretError:
        return _answer(503, error="inbox secrets unreadable")
    if found is None:
        return _answer(404, error="no such webhook")
    expected = str(found[2].get("verify_token") or "")
    given = request.args.get("hub.verify_token", "")
    if (request.args.get("hub.mode") != "subscribe" or not expected
            or not hmac.compare_digest(given.encode(), expected.encode())):
        return _answer(403, error="wrong verify token")
    return request.args.get("hub.challenge", ""), 200, {"Content-Type": "text/plain; charset=utf-8"}


@bp.post("/<public_key>")
def deliver(public_key: str) -> ResponseReturnValue:
    """Check the signature of the raw body, then store the comments and messages it carries."""
    try:
        found = _inbox_secrets(public_key)
    except SecretError:
        log.exception("instagram webhook %s: secrets cannot be decrypted", public_key[:6])
        return _answer(503, error="inbox secrets unreadable")
    if found is None:
        return _answer(404, error="no such webhook")
    inbox_id, config, secrets = found
    body = request.get_data(cache=False)  # the exact bytes Meta signed, before any parsing
    if not instagram.verify_signature(str(secrets.get("app_secret") or ""), body,
                                      request.headers.get(SIGNATURE_HEADER)):
        log.warning("instagram webhook of inbox %s: bad or missing signature", inbox_id)
        return _answer(403, error="bad or missing signature")
    try:
        payload = json.loads(body)
    except ValueError:
        return _answer(400, error="not JSON")
    if not isinstance(payload, dict):
        return _answer(400, error="not a webhook delivery")
    inbounds = instagram.parse_webhook(payload, own_id=str(config.get("ig_user_id") or ""))
    stored = 0
    if inbounds:
        # Stored inline (text only, milliseconds); Meta retries anything but a 200, which the dedupe absorbs.
        with get_storage().factory() as session:
            stored = sum(1 for m in ingest_many(session, inbox_id, inbounds) if m is not None)
            session.commit()
    return _answer(200, ok=True, received=len(inbounds), stored=stored)
