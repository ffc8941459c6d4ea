"""``/settings/channels/<id>/widget``: how a website chat looks and behaves, for admins (routes of the channel
settings blueprint, so the same admin-only gate and authorisation tests cover them).

Colour, title, greeting, position, the websites allowed to show it (the origins checked on the socket and HTTP
endpoints), the pre-chat fields, the reply-time and offline texts, the email inbox that sends offline replies, the
contact-merge switch, and the inbox secret for signed-in customers: write-only, replaced by typing a new one or
regenerated (then shown once).
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Mapping
from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from connectors import webchat
from inbox.crypto import decrypt_json, encrypt_json
from inbox.models import Inbox
from web.auth import role_required
from web.channel_settings_views import _audit, bp
from web.channel_setup import SetupError, webchat_fields, widget_snippet
from web.db import get_or_404, get_session
from web.widget_availability import forget
from web.widget_views import inbox_secret

MIN_SECRET = 16  # characters of a secret an admin types; generated ones have 43


def email_inboxes() -> list[Inbox]:
    session = get_session()
    return [
        i
        for i in session.scalars(select(Inbox).where(Inbox.channel == "email").order_by(Inbox.name))
        if not (i.config or {}).get("archived")
    ]


def _text(form: Mapping[str, str], name: str, label: str, limit: int = webchat.MAX_SETTING_TEXT) -> str:
    value = form.get(name, "").replace("\r\n", "\n").strip()
    if len(value) > limit:
        raise SetupError(f"The {label} is too long (at most {limit} characters).", name)
    return value


def parse_widget_form(form: Mapping[str, str], email_inbox_ids: set[int]) -> dict[str, Any]:
    """The widget's config from the settings form; SetupError names the field that is wrong."""
    color = form.get("color", "").strip()
    if not webchat.COLOR.match(color):
        raise SetupError("Choose a colour like #2d5bd7.", "color")
    position = form.get("position", "right")
    if position not in webchat.POSITIONS:
        raise SetupError("The launcher sits at the bottom right or bottom left.", "position")
    prechat = {}
    for field in ("name", "email"):
        mode = form.get(f"prechat_{field}", "optional")
        if mode not in webchat.PRECHAT_MODES:
            raise SetupError(f"Choose whether the {field} is asked for.", f"prechat_{field}")
        prechat[field] = mode
    raw_email_inbox = form.get("email_inbox_id", "").strip()
    email_inbox_id: int | None = None
    if raw_email_inbox:
        if not raw_email_inbox.isdigit() or int(raw_email_inbox) not in email_inbox_ids:
            raise SetupError("Choose one of your email inboxes for offline replies.", "email_inbox_id")
        email_inbox_id = int(raw_email_inbox)
    return webchat_fields(form) | {
        "title": _text(form, "title", "title", 100),
        "color": color.lower(),
        "greeting": _text(form, "greeting", "greeting"),
        "position": position,
        "prechat": prechat,
        "reply_time": _text(form, "reply_time", "reply-time text"),
        "offline_message": _text(form, "offline_message", "offline message"),
        "email_inbox_id": email_inbox_id,
    }


def form_values(inbox: Inbox) -> dict[str, str]:
    config = inbox.config or {}
    shown = webchat.widget_settings(config, inbox.name)
    return {
        "title": str(config.get("title") or ""),
        "color": shown["color"],
        "greeting": shown["greeting"],
        "position": shown["position"],
        "prechat_name": shown["prechat"]["name"],
        "prechat_email": shown["prechat"]["email"],
        "reply_time": str(config.get("reply_time") or ""),
        "offline_message": shown["offline_message"],
        "email_inbox_id": str(config.get("email_inbox_id") or ""),
        "origins": "\n".join(config.get("origins") or []),
        "merge_contacts": "1" if config.get("merge_contacts") else "",
    }


def _widget_inbox(inbox_id: int) -> Inbox:
    inbox = get_or_404(get_session(), Inbox, inbox_id)
    if inbox.channel != "webchat":
        abort(404)
    return inbox


def _page(inbox: Inbox, form: dict[str, str], **extra: Any) -> str:
    settings = current_app.config["HELPLINE_SETTINGS"]
    return render_template(
        "settings/widget.html",
        inbox=inbox,
        form=form,
        email_inboxes=email_inboxes(),
        snippet=widget_snippet(settings, inbox),
        prechat_modes=webchat.PRECHAT_MODES,
        **extra,
    )


@bp.route("/<int:inbox_id>/widget", methods=["GET", "POST"])
@role_required("admin")
def widget(inbox_id: int) -> ResponseReturnValue:
    inbox = _widget_inbox(inbox_id)
    if request.method == "GET":
        return _page(inbox, form_values(inbox))
    session = get_session()
    form = {k: v for k, v in request.form.items() if k not in ("csrf_token", "secret")}
    try:
        config = parse_widget_form(request.form, {i.id for i in email_inboxes()})
        new_secret = request.form.get("secret", "").strip()
        if new_secret and len(new_secret) < MIN_SECRET:
            raise SetupError(f"A secret has at least {MIN_SECRET} characters; or generate one.", "secret")
    except SetupError as exc:
        return _page(inbox, form, error=exc.reason, error_field=exc.field), 422
    inbox.config = (inbox.config or {}) | config
    if new_secret:
        _store_secret(inbox, new_secret)
    _audit("inbox.widget_updated", inbox, new_credentials=["secret"] if new_secret else [])
    session.commit()
    forget(inbox.id)
    flash(f"{inbox.name}: the chat widget is saved; open pages show it on their next load.", "info")
    return redirect(url_for(".widget", inbox_id=inbox.id))


@bp.post("/<int:inbox_id>/widget/secret")
@role_required("admin")
def widget_secret(inbox_id: int) -> ResponseReturnValue:
    """A new random secret for signing signed-in customers, shown once; the old one stops working at once."""
    inbox = _widget_inbox(inbox_id)
    secret = _secrets.token_urlsafe(32)
    _store_secret(inbox, secret)
    _audit("inbox.widget_secret_regenerated", inbox)
    get_session().commit()
    return _page(inbox, form_values(inbox), new_secret=secret)


def _store_secret(inbox: Inbox, secret: str) -> None:
    """Replace the secret that signs customers; visitor tokens stay signed by the first one (``visitor_secret``),
    so a rotation logs no visitor out of their conversation."""
    key: str = current_app.config["SECRET_KEY"]
    stored = decrypt_json(key, inbox.secrets) if inbox.secrets else {}
    stored.setdefault("visitor_secret", inbox_secret(inbox))
    inbox.secrets = encrypt_json(key, stored | {"secret": secret})
