"""Untrusted bytes: email HTML in a sandboxed frame, raw sources and attachments as downloads.

The email frame has its own CSP (no script, no network but inline images) and the ``sandbox`` directive, so even
opened top-level it runs nothing and has no access to the app's origin. Downloads carry ``Content-Disposition:
attachment`` and ``nosniff``, so an uploaded HTML or SVG file never renders as a page of ours.
"""

from __future__ import annotations

import base64
import logging
import re
from html import unescape as html_unescape
from urllib.parse import quote

from flask import Blueprint, Response, abort, request
from flask.typing import ResponseReturnValue
from flask_login import login_required

from inbox.models import Attachment, Message
from web import access, security
from web.auth import me
from web.db import get_session, get_storage

bp = Blueprint("messages", __name__)
log = logging.getLogger(__name__)
# Types a browser may show inline in a new tab if the user asks; everything else is a plain byte stream.
CID_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
CID_MAX_BYTES = 5 * 1024 * 1024
CID_SRC = re.compile(r'src="cid:([^"]+)"', re.I)
SAFE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain"}


def _visible_message(message_id: int) -> Message:
    session = get_session()
    message = session.get(Message, message_id)
    if message is None:
        abort(404)
    # Its own inbox, or the ticket it is on now (moved or merged in from another inbox): the ticket page shows it.
    if not (
        access.can_see_inbox(session, me(), message.inbox_id) or access.can_see_ticket(session, me(), message.ticket)
    ):
        abort(404)
    return message


def _with_remote_images(message: Message) -> str | None:
    """The email's HTML sanitised again from its raw source with remote images kept (the agent asked)."""
    if not message.raw_sha256 or not get_storage().blobs.exists(message.raw_sha256):
        return None
    from connectors.email import original_html

    try:
        return original_html(get_storage().blobs.get(message.raw_sha256), allow_remote=True)
    except Exception:  # a source that parsed once but not now: keep showing the stored, image-less HTML
        log.warning("re-rendering message %s with remote images failed", message.id, exc_info=True)
        return None


def _inline_cid_images(html: str, message: Message) -> str:
    """Point ``cid:`` images at the message's own image attachments, as data: URLs.

    The frame has an opaque origin (sandbox without allow-same-origin), so it could not fetch our attachment
    URLs with the agent's cookie anyway; data: URLs are what its CSP allows. Only raster images, never SVG.
    """
    images = {
        (a.content_id or "").strip("<>"): a
        for a in message.attachments
        if a.content_id and a.sha256 and a.content_type in CID_TYPES and a.size <= CID_MAX_BYTES
    }

    def swap(match: re.Match[str]) -> str:
        att = images.get(html_unescape(match.group(1)))
        if att is None or att.sha256 is None:
            return match.group(0)
        data = base64.b64encode(get_storage().blobs.get(att.sha256)).decode()
        return f'src="data:{att.content_type};base64,{data}"'

    return CID_SRC.sub(swap, html) if images else html


@bp.get("/messages/<int:message_id>/body")
@login_required
def body(message_id: int) -> ResponseReturnValue:
    message = _visible_message(message_id)
    if message.body_html is None:
        abort(404)
    remote = request.args.get("images") == "1"
    html = (_with_remote_images(message) if remote else None) or message.body_html
    html = _inline_cid_images(html, message)
    doc = '<!doctype html><html><head><meta charset="utf-8"></head><body>' + html + "</body></html>"
    response = Response(doc, mimetype="text/html")
    response.headers["Content-Security-Policy"] = security.EMAIL_CSP_REMOTE_IMAGES if remote else security.EMAIL_CSP
    response.headers["Referrer-Policy"] = "no-referrer"  # loaded images must not learn the ticket URL
    return response


def _download(data: bytes, filename: str, content_type: str) -> Response:
    mimetype = content_type if content_type in SAFE_TYPES else "application/octet-stream"
    response = Response(data, mimetype=mimetype)
    ascii_name = "".join(c if c.isalnum() or c in "._-" else "_" for c in filename)[:150] or "download"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"
    response.headers["Content-Disposition"] = disposition
    response.headers["Content-Security-Policy"] = security.DOWNLOAD_CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/messages/<int:message_id>/raw")
@login_required
def raw(message_id: int) -> ResponseReturnValue:
    message = _visible_message(message_id)
    if not message.raw_sha256 or not get_storage().blobs.exists(message.raw_sha256):
        abort(404)
    return _download(get_storage().blobs.get(message.raw_sha256), f"message-{message.id}.eml", "text/plain")


@bp.get("/attachments/<int:attachment_id>")
@login_required
def attachment(attachment_id: int) -> ResponseReturnValue:
    att = get_session().get(Attachment, attachment_id)
    if att is None:
        abort(404)
    _visible_message(att.message_id)
    if att.sha256 is None or not get_storage().blobs.exists(att.sha256):
        abort(404)  # over the size limit when it arrived: the page says so
    return _download(get_storage().blobs.get(att.sha256), att.filename, att.content_type)
