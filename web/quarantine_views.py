"""``/settings/quarantine``: input that could not be imported, kept raw, for admins to inspect, retry or discard.

Mail that cannot be parsed or stored (and bounces for mail this inbox never sent) is kept once with its raw bytes
(``workers.mail_sync.quarantine``); so are Telegram updates that cannot be stored. Admins download the raw source
(as an attachment, never rendered on our origin), re-process one message through the same code as
``helpline inbox reprocess`` once a fix is deployed, or discard it (kept in the audit log, raw bytes stay in the
content-addressed store, which may share them with other messages).
"""

from __future__ import annotations

import email.parser
import email.policy
import logging
from email.utils import getaddresses
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from inbox import workspace
from inbox.db import utcnow
from inbox.models import Inbox, Quarantine
from web.auth import me, role_required
from web.db import get_or_404, get_session, get_storage
from web.message_views import _download

log = logging.getLogger(__name__)
bp = Blueprint("quarantine", __name__, url_prefix="/settings/quarantine")
PAGE = 100
REPROCESSABLE = ("email", "telegram")
HEADER_BYTES = 64 * 1024  # enough for any real header block; a hostile file is not read whole to find a sender


def sender_of(raw: bytes) -> str:
    """The From address of a raw mail if one can be recovered, else "" (the parse that failed may be the reason
    it is here, so this reads headers only, with the lenient compat32 policy, and never raises)."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(raw[:HEADER_BYTES])
        value = headers.get("From") or headers.get("Sender") or ""
        found = [addr for _name, addr in getaddresses([str(value)]) if "@" in addr]
        return found[0][:320] if found else str(value)[:120]
    except Exception:  # noqa: BLE001 - a sender is a nicety; the row is listed anyway
        return ""


def _row(q: Quarantine, inbox: Inbox) -> dict[str, Any]:
    blobs = get_storage().blobs
    size: int | None = None
    sender = ""
    if q.raw_sha256 and blobs.exists(q.raw_sha256):
        path = blobs.path(q.raw_sha256)
        size = path.stat().st_size
        if inbox.channel == "email":
            with path.open("rb") as fh:
                sender = sender_of(fh.read(HEADER_BYTES))
    return {"id": q.id, "inbox": inbox, "created_at": q.created_at, "resolved_at": q.resolved_at,
            "source_ref": q.source_ref, "error": q.error, "size": size, "sender": sender,
            "reprocessable": inbox.channel in REPROCESSABLE and size is not None}


@bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    session = get_session()
    show_resolved = request.args.get("resolved") == "1"
    inbox_id = request.args.get("inbox", type=int)
    stmt = (select(Quarantine, Inbox).join(Inbox, Inbox.id == Quarantine.inbox_id)
            .where(Quarantine.resolved_at.is_not(None) if show_resolved else Quarantine.resolved_at.is_(None))
            .order_by(Quarantine.id.desc()).limit(PAGE + 1))
    before = request.args.get("before", type=int)
    if before:
        stmt = stmt.where(Quarantine.id < before)
    if inbox_id:
        stmt = stmt.where(Quarantine.inbox_id == inbox_id)
    found = session.execute(stmt).all()
    rows = [_row(q, inbox) for q, inbox in found[:PAGE]]
    counts = dict(session.execute(
        select(Quarantine.inbox_id, func.count()).where(Quarantine.resolved_at.is_(None)).group_by(Quarantine.inbox_id)
    ).all())
    inboxes = list(session.scalars(select(Inbox).where(Inbox.id.in_(list(counts))).order_by(Inbox.name)))
    more = found[PAGE - 1][0].id if len(found) > PAGE else None
    return render_template("settings/quarantine.html", rows=rows, counts=counts, inboxes=inboxes,
                           inbox_id=inbox_id, show_resolved=show_resolved, more=more)


@bp.get("/<int:quarantine_id>/raw")
@role_required("admin")
def raw(quarantine_id: int) -> ResponseReturnValue:
    """The raw source as a download: attachment, nosniff and a sandbox CSP, like a message's raw source."""
    session = get_session()
    q = get_or_404(session, Quarantine, quarantine_id)
    blobs = get_storage().blobs
    if not q.raw_sha256 or not blobs.exists(q.raw_sha256):
        abort(404)
    inbox = session.get(Inbox, q.inbox_id)
    extension = "eml" if inbox is not None and inbox.channel == "email" else "json"
    return _download(blobs.get(q.raw_sha256), f"quarantine-{q.id}.{extension}", "text/plain")


@bp.post("/<int:quarantine_id>/reprocess")
@role_required("admin")
def reprocess(quarantine_id: int) -> ResponseReturnValue:
    """Import it again through ``reprocess_in`` (what ``helpline inbox reprocess`` runs), for this row only."""
    from connectors.errors import ChannelError
    from workers.mail_sync import reprocess_in

    session = get_session()
    q = get_or_404(session, Quarantine, quarantine_id)
    inbox_id, target = q.inbox_id, f"quarantine:{q.id}"
    if q.resolved_at is not None:
        flash("That message was already imported or discarded.", "info")
        return redirect(url_for(".index"))
    inbox = session.get(Inbox, inbox_id)
    try:
        if inbox is not None and inbox.channel == "telegram":
            from workers.telegram_sync import reprocess_quarantine

            # It stores in its own transactions (media are fetched before they open), so this request's must
            # end first: on SQLite it would hold the write lock. close(), not rollback(): the signed-in user's
            # row stays loaded (rollback would expire it, and reloading it inside those transactions would wait).
            session.close()
            done, _left = reprocess_quarantine(get_storage(), inbox_id, ids=[quarantine_id])
        else:
            done, _left = reprocess_in(session, inbox_id, ids=[quarantine_id])
    except ChannelError as exc:
        flash(f"Cannot re-process it: {exc.reason}", "error")
        return redirect(url_for(".index"))
    workspace.record(session, "quarantine.reprocessed", actor=me(), target=target,
                     detail={"inbox_id": inbox_id, "imported": bool(done)}, ip=request.remote_addr or "")
    session.commit()
    if done:
        flash("Imported: the message is now in its ticket.", "success")
    else:
        flash("It still cannot be imported, so it stays in quarantine.", "error")
    return redirect(url_for(".index"))


@bp.post("/<int:quarantine_id>/discard")
@role_required("admin")
def discard(quarantine_id: int) -> ResponseReturnValue:
    """Drop it from the list for good; the audit log keeps who did it, and what it was."""
    session = get_session()
    q = get_or_404(session, Quarantine, quarantine_id)
    inbox = session.get(Inbox, q.inbox_id)
    if q.resolved_at is not None:
        flash("That message was already imported or discarded.", "info")
        return redirect(url_for(".index"))
    workspace.record(session, "quarantine.discarded", actor=me(), target=f"quarantine:{q.id}",
                     detail={"inbox": inbox.name if inbox else q.inbox_id, "source": q.source_ref,
                             "raw_sha256": q.raw_sha256, "error": q.error[:300]},
                     ip=request.remote_addr or "")
    # Marked resolved, not deleted: a re-fetch of the same bytes then finds the row and is not quarantined again.
    q.resolved_at = utcnow()
    q.error = f"discarded by {me().email}: {q.error}"[:2000]
    session.commit()
    flash("Discarded.", "success")
    return redirect(url_for(".index"))
