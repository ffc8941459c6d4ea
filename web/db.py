"""One database session per request, kept on ``g`` and closed at teardown (flaskr's ``db.py``)."""

from __future__ import annotations

from typing import TypeVar

from flask import Flask, abort, current_app, g
from sqlalchemy.orm import Session

from inbox.runtime import Storage

T = TypeVar("T")


def get_storage() -> Storage:
    storage: Storage = current_app.extensions["helpline"]
    return storage


def get_session() -> Session:
    if "db_session" not in g:
        g.db_session = get_storage().factory()
    session: Session = g.db_session
    return session


def get_or_404(session: Session, model: type[T], ident: int) -> T:
    obj = session.get(model, ident)
    if obj is None:
        abort(404)
    return obj


def close_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()  # an uncommitted change is rolled back here, and its events dropped


def init_app(app: Flask) -> None:
    app.teardown_appcontext(close_session)
