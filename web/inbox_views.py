"""The inbox: folders with counts and the ticket list, plus the fragments the page refreshes itself with."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import select

from inbox.models import CHANNELS, PRIORITIES, Inbox
from web import access, folders
from web.auth import me
from web.db import get_session
from web.people import assignable_users

bp = Blueprint("inbox", __name__)


def _page(folder: str) -> folders.ListPage:
    page = folders.list_page(get_session(), me(), folder, request.args, request.args.get("cursor"))
    if page is None:
        abort(404)
    return page


@bp.get("/")
@login_required
def index() -> ResponseReturnValue:
    folder = request.args.get("folder", "open")
    page = _page(folder)
    session, user = get_session(), me()
    all_folders = folders.folders(session, user)
    visible = access.visible_inbox_ids(session, user)
    return render_template(
        "inbox.html",
        folder=folder,
        folders=all_folders,
        folder_label=next((f.label for f in all_folders if f.key == folder), folder),
        page=page,
        filters={k: request.args.get(k, "") for k in ("priority", "channel", "assignee")},
        priorities=PRIORITIES,
        channels=CHANNELS,
        agents=assignable_users(session, user, visible),
        # The rooms this page listens to: every inbox the user can see.
        inbox_ids=sorted(visible if visible is not None else session.scalars(select(Inbox.id))),
    )


@bp.get("/fragments/inbox/rows")
@login_required
def rows() -> ResponseReturnValue:
    """The list body alone: the page swaps it in when a live event says something changed."""
    folder = request.args.get("folder", "open")
    return render_template("_ticket_rows.html", page=_page(folder), folder=folder)


@bp.get("/fragments/inbox/counts")
@login_required
def counts() -> ResponseReturnValue:
    return {f.key: f.count for f in folders.folders(get_session(), me())}
