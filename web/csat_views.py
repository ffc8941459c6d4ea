"""``/rate/<token>``: the public page where a customer rates a solved ticket (``tickets.csat``).

The signed token is the only credential: it names one ticket and one solve, and expires. The page shows the
ticket's number and subject only (nothing of the conversation), asks for a score and an optional comment, and
takes a changed mind while the link is valid. The form carries a CSRF token like every other form.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from inbox.models import Ticket
from inbox.report_models import CsatRating
from tickets import csat
from web.db import get_session

bp = Blueprint("csat", __name__, url_prefix="/rate")


def _secret() -> str:
    return str(current_app.config["HELPLINE_SETTINGS"].secret_key)


@bp.route("/<token>", methods=["GET", "POST"])
def rate(token: str) -> ResponseReturnValue:
    session = get_session()
    try:
        ticket_id, solved_at = csat.read_token(_secret(), token)
    except csat.BadLink as exc:
        return render_template("csat.html", error=str(exc), ticket=None), 410 if "expired" in str(exc) else 404
    ticket = session.get(Ticket, ticket_id)
    if ticket is None:
        return render_template("csat.html", error="This rating link is not valid.", ticket=None), 404
    existing = session.scalar(
        select(CsatRating).where(CsatRating.ticket_id == ticket.id, CsatRating.solved_at == solved_at)
    )
    # The email's links carry ?score=N to preselect; the form (posted to the same URL) says what was chosen.
    score_text = request.form.get("score", "") if request.method == "POST" else request.args.get("score", "")
    score = int(score_text) if score_text.isdigit() else (existing.score if existing else None)
    comment = request.form.get("comment", existing.comment if existing else "")
    if request.method == "POST":
        try:
            csat.rate(session, ticket, solved_at, score or 0, comment)
        except ValueError as exc:
            session.rollback()
            page = render_template("csat.html", ticket=ticket, score=score, comment=comment, error=str(exc))
            return page, 422
        session.commit()
        return render_template("csat.html", ticket=ticket, score=score, comment=comment, thanks=True)
    return render_template("csat.html", ticket=ticket, score=score, comment=comment, rated=existing is not None)
