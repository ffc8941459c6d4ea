"""Error pages: domain errors become 404/422, and each status gets a page that says what to do next."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from inbox.errors import InvalidChange, NotFound
from web.db import get_session

log = logging.getLogger(__name__)

# Blueprints of the agent pages (None: routes outside any blueprint, e.g. a 404 for an unknown URL).
AGENT_BLUEPRINTS = {None, "auth", "inbox", "tickets", "messages", "admin", "search", "contacts", "reports"}
HINTS = {
    400: "The request was not understood. Reload the page and try again.",
    403: "Your role does not allow this. Ask an admin if you need access.",
    404: "This page does not exist, or it belongs to an inbox you are not a member of.",
    405: "This address does not accept that kind of request.",
    413: "That upload is too large.",
    422: "That change is not possible.",
    429: "Too many attempts. Wait a little and try again.",
    500: "Something went wrong on our side. The change was not saved; try again.",
}


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def render_error(status: int, detail: str | None = None) -> ResponseReturnValue:
    hint = detail or HINTS.get(status, "")
    if _wants_json():
        return {"error": hint}, status
    return render_template("error.html", status=status, hint=hint), status


def init_app(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_failed(exc: CSRFError) -> ResponseReturnValue:
        return render_error(400, "The form expired or came from elsewhere. Reload the page and try again.")

    @app.errorhandler(NotFound)
    def domain_not_found(exc: NotFound) -> ResponseReturnValue:
        return render_error(404)

    @app.errorhandler(InvalidChange)
    def invalid_change(exc: InvalidChange) -> ResponseReturnValue:
        get_session().rollback()
        return render_error(422, str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> ResponseReturnValue:
        if request.blueprint not in AGENT_BLUEPRINTS:
            return exc  # the API, webhooks and the widget keep their own error shapes
        return render_error(exc.code or 500)

    @app.errorhandler(Exception)
    def crashed(exc: Exception) -> ResponseReturnValue:
        log.exception("unhandled error on %s %s", request.method, request.path)
        get_session().rollback()
        return render_error(500)
