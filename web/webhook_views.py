"""Channel webhooks: Telegram POSTs each update of a webhook-mode bot here.

Bot API page: https://core.telegram.org/bots/api#setwebhook — every request carries the ``secret_token`` given to
``setWebhook`` in ``X-Telegram-Bot-Api-Secret-Token``; any answer but 2xx makes Telegram deliver the update again
later, so redelivery must be harmless. The view checks the secret, commits the raw update (unique per inbox and
``update_id``, so a redelivery is stored once), enqueues its job and answers 200 at once: a worker downloads media
and stores the message (``workers.telegram_updates``). The path names the inbox by its unguessable
``public_key``; the secret, stored encrypted, proves the sender.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from inbox.crypto import decrypt_json
from inbox.errors import SecretError
from inbox.models import Inbox
from web.db import get_storage
from web.security import csrf

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
csrf.exempt(bp)  # callers prove themselves with a secret header and send no cookies: CSRF cannot apply
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1024 * 1024  # an Update is a few KB; files come by getFile, never in the POST


def _answer(status: int, **body: Any) -> ResponseReturnValue:
    response = jsonify(body)
    response.status_code = status
    return response


@bp.post("/telegram/<public_key>")
def telegram_update(public_key: str) -> ResponseReturnValue:
    """Check the secret, keep the update, enqueue its job. Wrong or missing secret: 403; not an Update: 400."""
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
    if (request.content_length or 0) > MAX_UPDATE_BYTES:
        return _answer(413, error="update too large")
    update = request.get_json(silent=True)
    if not isinstance(update, dict):
        return _answer(400, error="not a Telegram Update")
    update_id = update.get("update_id")
    if type(update_id) is not int or not 0 <= update_id < 2**63:  # bool is an int too; BIGINT holds the rest
        return _answer(400, error="not a Telegram Update")

    from workers.telegram_updates import receive_update

    # Stored first, processed by a worker: Telegram waits for nothing but this commit, and a Redis outage or a dead
    # worker loses no update (the sweeper enqueues pending rows). A redelivered update_id is answered 200 at once.
    with storage.factory() as session:
        fresh = receive_update(session, inbox_id, update)
    if fresh:
        _enqueue(inbox_id, update)
    return _answer(200, ok=True, queued=fresh)


def _enqueue(inbox_id: int, update: dict[str, Any]) -> None:
    if not current_app.config.get("HELPLINE_REDIS_URL"):
        log.info("no Redis configured; telegram update %s left pending for the sweeper", update["update_id"])
        return
    from workers.telegram_updates import enqueue_update

    try:
        enqueue_update(inbox_id, update)
    except Exception:  # Redis down: the row is committed as pending, the sweeper enqueues it later
        log.warning("enqueue of telegram update %s failed; left pending for the sweeper", update["update_id"],
                    exc_info=True)
