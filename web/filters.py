"""Jinja filters: relative times and channel names, computed on the server so pages need no date library."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Flask, request

from inbox.db import utcnow

CHANNEL_LABELS = {"email": "Email", "telegram": "Telegram", "instagram": "Instagram", "webchat": "Chat"}


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = int(((now or utcnow()) - value).total_seconds())
    if seconds < 60:
        return "just now" if seconds >= -60 else value.strftime("%d %b %H:%M")
    for size, unit in ((86400 * 7, "w"), (86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return "just now"


def waiting_class(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """SLA badge colour by how long the customer has waited for an answer (no SLA policies exist yet)."""
    if value is None:
        return ""
    hours = ((now or utcnow()) - value).total_seconds() / 3600
    return "sla-breach" if hours >= 24 else "sla-warn" if hours >= 4 else "sla-ok"


def with_args(**changes: Any) -> dict[str, Any]:
    """This request's query string with some values replaced (for paging links that keep the filters)."""
    return request.args.to_dict() | changes


def init_app(app: Flask) -> None:
    app.add_template_global(with_args)
    app.add_template_filter(ago)
    app.add_template_filter(waiting_class)
    app.add_template_filter(lambda c: CHANNEL_LABELS.get(c, c), "channel_label")
    app.add_template_filter(lambda v: v.isoformat() if v else "", "iso")
