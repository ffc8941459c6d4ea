"""Channel webhooks: Telegram POSTs each update of a webhook-mode bot here.

Bot API page: https://core.telegram.org/bots/api#setwebhook — every request carries the ``secret_token`` given to
``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token``; any answer but 2xx makes Telegram deliver the update again
later, so redelivery must be harmless (messages are unique per inbox and external id; edits compare text).
The path names the inbox by its unguessable ``public_key``; the secret, stored encrypted, proves the sender.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from connectors.errors import ChannelError
from inbox.crypto import decrypt_json
from inbox.errors import SecretError
from inbox.models import Inbox
from web.db import get_storage
from web.security import csrf

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)  # callers prove themselves with a secret header and send no cookies: CSRF cannot apply
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def _answer(status: int, **body: Any) -> ResponseReturnValue:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.post("/telegram/<public_key>")
def telegram_update(public_key: str) -> ResponseReturnValue:
    """Check the secret, then store the update. Wrong or missing secret: 403; not an Update: 400."""
    storage = get_storage()
    # A short session of our own, closed before the update is stored: on SQLite every transaction takes the write
    # lock (BEGIN IMMEDIATE), so a request session kept open would block the handler's own.
    with storage.factory() as session:
        inbox = session.scalar(select(Inbox).where(Inbox.public_key == public_key, Inbox.channel == "telegram"))
        if inbox is None:
            return _answer(404, error="no such webhook")
        inbox_id, sealed = inbox.id, inbox.secrets
    try:
        expected = str(decrypt_json(storage.settings.secret_key, sealed).get("webhook_secret") or "")
    except SecretError:
        log.exception("telegram webhook of inbox %s: secrets cannot be decrypted", inbox_id)
        return _answer(503, error="inbox secrets unreadable")
    given = request.headers.get(SECRET_HEADER, "")
    # compare_digest: the time taken must not tell an attacker how much of a guess was right.
    if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
        return _answer(403, error="wrong or missing secret token")
    update = request.get_json(silent=True)
    if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
        return _answer(400, error="not a Telegram Update")

    from workers.telegram_sync import store_update

    # Stored inline: workers/enqueue.py has no helper for inbound updates yet. Text updates take milliseconds;
    # an update with media waits for its getFile download. Once an enqueue helper exists, enqueue the job
    # ``workers.telegram_sync.handle_telegram_update(inbox_id, update)`` (ids and JSON only) and answer at once.
    try:
        outcome = store_update(storage, inbox_id, update)
    except ChannelError as exc:
        # A media download failed for now: a non-2xx makes Telegram deliver the update again later.
        log.warning("telegram webhook of inbox %s: update %s deferred: %s", inbox_id, update["update_id"], exc.reason)
        return _answer(503, error=exc.reason)
    return _answer(200, ok=True, outcome=outcome)
