"""``GET /healthz``: does the database answer, does Redis answer."""

from __future__ import annotations

from typing import Any

import redis
from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import text

from web.db import get_session

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    checks: dict[str, Any] = {}
    try:
        get_session().execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # report, don't raise: this endpoint exists to say what is wrong
        checks["database"] = f"error: {exc.__class__.__name__}: {exc}"
    redis_url = current_app.config.get("HELPLINE_REDIS_URL")
    if not redis_url:
        checks["redis"] = "not configured"
    else:
        try:
            redis.Redis.from_url(redis_url, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except redis.RedisError as exc:
            checks["redis"] = f"error: {exc}"
    healthy = checks["database"] == "ok" and checks["redis"] in ("ok", "not configured")
    return jsonify(status="ok" if healthy else "error", **checks), 200 if healthy else 503
