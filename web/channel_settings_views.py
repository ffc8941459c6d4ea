"""``/settings/channels``: every inbox with its sync status, last error and credential state; add, edit (secrets
write-only), test, pause, resume, archive and remove. Admins only; agents and leads get 403.

An inbox with tickets is never deleted (its tickets would lose their channel): it is archived instead, which pauses
it and hides it from this list. Channel health comes from ``workers.status.inbox_health``.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select

from connectors.errors import ChannelError
from connectors.imap import ImapMailbox
from inbox import workspace
from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.errors import SecretError
from inbox.models import CHANNELS, Inbox, Ticket
from web.auth import me, role_required
from web.channel_setup import Connected, SetupError, connect_from_form, explain_network, widget_snippet
from web.db import get_or_404, get_session
from web.onboarding_views import CHANNEL_LABELS, SECRET_FIELDS
from workers.status import inbox_health

bp = Blueprint("channel_settings", __name__, url_prefix="/settings/channels")


def _settings() -> Settings:
    settings: Settings = current_app.config["HELPLINE_SETTINGS"]
    return settings


def _audit(action: str, inbox: Inbox, **detail: Any) -> None:
    workspace.record(
        get_session(),
        action,
        actor=me(),
        target=f"inbox:{inbox.id}",
        detail={"name": inbox.name, "channel": inbox.channel} | detail,
        ip=request.remote_addr or "",
    )


def submitted_form() -> dict[str, str]:
    """The posted fields as a flat dict; the email folder picker's checkboxes become the ``folders`` field."""
    form = request.form.to_dict()
    picked = request.form.getlist("folder")
    if picked:
        form["folders"] = ", ".join(picked)
    return form


def form_of(inbox: Inbox) -> dict[str, str]:
    """The non-secret values of an inbox as form fields, to edit it."""
    c = inbox.config or {}
    values: dict[str, Any] = {"name": inbox.name}
    if inbox.channel == "email":
        keys = (
            "address",
            "imap_host",
            "imap_port",
            "imap_security",
            "username",
            "smtp_host",
            "smtp_port",
            "smtp_security",
            "smtp_username",
            "ca_file",
            "after_import",
            "move_to",
        )
        values |= {k: c.get(k) for k in keys} | {"folders": ", ".join(c.get("folders") or ["INBOX"])}
    elif inbox.channel == "telegram":
        values |= {"mode": c.get("mode"), "api_base": c.get("api_base"), "groups": "1" if c.get("groups") else ""}
    elif inbox.channel == "instagram":
        values |= {k: c.get(k) for k in ("profile", "mode", "ig_user_id", "graph_api_base")}
    elif inbox.channel == "webchat":
        values |= {
            "origins": "\n".join(c.get("origins") or []),
            "merge_contacts": "1" if c.get("merge_contacts") else "",
        }
    return {k: "" if v is None else str(v) for k, v in values.items()}


def public_form(form: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in form.items() if k not in SECRET_FIELDS and k != "csrf_token"}


@bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    session, settings = get_session(), _settings()
    show_archived = request.args.get("archived") == "1"
    archived = {i.id for i in session.scalars(select(Inbox)) if (i.config or {}).get("archived")}
    rows = [r for r in inbox_health(session, settings.poll_interval) if (r["id"] in archived) == show_archived]
    tickets = dict(session.execute(select(Ticket.inbox_id, func.count()).group_by(Ticket.inbox_id)).all())
    return render_template(
        "settings/channels.html",
        rows=rows,
        tickets=tickets,
        labels=CHANNEL_LABELS,
        show_archived=show_archived,
        archived_count=len(archived),
    )


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def new() -> ResponseReturnValue:
    kind = request.values.get("kind", "")
    if kind and kind not in CHANNELS:
        abort(404)
    context: dict[str, Any] = {"kind": kind, "labels": CHANNEL_LABELS, "form": {}, "inbox": None}
    if request.method == "GET":
        return render_template("settings/channel_form.html", **context)
    session, settings = get_session(), _settings()
    form = submitted_form()
    try:
        result = connect_from_form(session, settings, kind, form, test_only=request.form.get("submit") == "test")
    except SetupError as exc:
        session.rollback()
        context |= {"form": public_form(form), "error": exc.reason, "error_field": exc.field}
        return render_template("settings/channel_form.html", **context), 422
    if not isinstance(result, Connected):
        session.rollback()
        context |= {"form": public_form(form), "tested": result}
        return render_template("settings/channel_form.html", **context)
    _audit("inbox.created", result.inbox)
    session.commit()
    if kind == "webchat":
        return render_template(
            "onboarding/done.html",
            inbox=result.inbox,
            test=result.test,
            snippet=widget_snippet(settings, result.inbox),
            widget_secret=result.widget_secret,
        )
    flash(f"{result.inbox.name} is connected. {result.test.summary}", "info")
    return redirect(url_for(".index"))


def _folders_from_server(inbox: Inbox) -> tuple[list[str], str | None]:
    """The mailbox's folders read live with the stored credentials, or an error in plain words."""
    c = inbox.config or {}
    try:
        stored = decrypt_json(_settings().secret_key, inbox.secrets)
        with ImapMailbox(
            c["imap_host"],
            int(c["imap_port"]),
            c["imap_security"],
            c["username"],
            str(stored.get("password", "")),
            timeout=10,
            ca_file=c.get("ca_file"),
        ) as mailbox:
            assert mailbox.client is not None
            return sorted(str(f[2]) for f in mailbox.client.list_folders()), None
    except SecretError as exc:
        return [], str(exc)
    except ChannelError as exc:
        return [], explain_network(exc, "IMAP", c["imap_host"], int(c["imap_port"]), c["imap_security"])


@bp.route("/<int:inbox_id>", methods=["GET", "POST"])
@role_required("admin")
def edit(inbox_id: int) -> ResponseReturnValue:
    session, settings = get_session(), _settings()
    inbox = get_or_404(session, Inbox, inbox_id)
    context: dict[str, Any] = {
        "kind": inbox.channel,
        "labels": CHANNEL_LABELS,
        "inbox": inbox,
        "stored": True,
        "form": form_of(inbox),
        "folders": None,
    }
    if request.method == "GET":
        if inbox.channel == "email" and request.args.get("folders") == "1":
            context["folders"], context["error"] = _folders_from_server(inbox)
        return render_template("settings/channel_form.html", **context)
    form = submitted_form()
    test_only = request.form.get("submit") == "test"
    try:
        result = connect_from_form(session, settings, inbox.channel, form, inbox=inbox, test_only=test_only)
    except SetupError as exc:
        session.rollback()
        context |= {"form": public_form(form), "error": exc.reason, "error_field": exc.field}
        return render_template("settings/channel_form.html", **context), 422
    if not isinstance(result, Connected):
        session.rollback()
        context |= {"form": public_form(form), "tested": result, "folders": result.folders or None}
        return render_template("settings/channel_form.html", **context)
    changed_secrets = sorted(k for k in SECRET_FIELDS if form.get(k))
    _audit("inbox.updated", inbox, new_credentials=changed_secrets)
    session.commit()
    flash(f"{inbox.name} is saved. {result.test.summary}", "info")
    return redirect(url_for(".index"))


@bp.post("/<int:inbox_id>/test")
@role_required("admin")
def test(inbox_id: int) -> ResponseReturnValue:
    """Test the stored settings as they are (the list's "Test connection" button)."""
    session, settings = get_session(), _settings()
    inbox = get_or_404(session, Inbox, inbox_id)
    try:
        result = connect_from_form(session, settings, inbox.channel, form_of(inbox), inbox=inbox, test_only=True)
    except SetupError as exc:
        flash(f"{inbox.name}: {exc.reason}", "error")
    except SecretError as exc:
        flash(f"{inbox.name}: {exc}", "error")
    else:
        summary = result.test.summary if isinstance(result, Connected) else result.summary
        flash(f"{inbox.name}: connection works. {summary}", "info")
    session.rollback()
    return redirect(url_for(".index"))


def _set(inbox_id: int, action: str, *, paused: bool, archived: bool | None = None) -> ResponseReturnValue:
    session = get_session()
    inbox = get_or_404(session, Inbox, inbox_id)
    inbox.paused = paused
    if archived is not None:
        config = dict(inbox.config or {})
        config["archived"] = archived
        inbox.config = config
    _audit(action, inbox)
    session.commit()
    flash(f"{inbox.name} is {action.split('.')[1]}.", "info")
    return redirect(url_for(".index"))


@bp.post("/<int:inbox_id>/pause")
@role_required("admin")
def pause(inbox_id: int) -> ResponseReturnValue:
    return _set(inbox_id, "inbox.paused", paused=True)


@bp.post("/<int:inbox_id>/resume")
@role_required("admin")
def resume(inbox_id: int) -> ResponseReturnValue:
    return _set(inbox_id, "inbox.resumed", paused=False, archived=False)


@bp.post("/<int:inbox_id>/archive")
@role_required("admin")
def archive(inbox_id: int) -> ResponseReturnValue:
    """Paused and hidden; its tickets stay where they are and it can be resumed."""
    return _set(inbox_id, "inbox.archived", paused=True, archived=True)


@bp.post("/<int:inbox_id>/delete")
@role_required("admin")
def remove(inbox_id: int) -> ResponseReturnValue:
    session = get_session()
    inbox = get_or_404(session, Inbox, inbox_id)
    if session.scalar(select(Ticket.id).where(Ticket.inbox_id == inbox.id).limit(1)) is not None:
        flash(
            f"{inbox.name} has tickets, so it cannot be removed (they would lose their channel). "
            "Archive it instead: it stops syncing and disappears from this list.",
            "error",
        )
        return redirect(url_for(".index"))
    if request.form.get("confirm") != inbox.name:
        flash(f"To remove {inbox.name}, type its name to confirm.", "error")
        return redirect(url_for(".index"))
    _audit("inbox.deleted", inbox)
    session.delete(inbox)  # quarantined inputs, calendars and SLA policies of the inbox go with it (ON DELETE CASCADE)
    session.commit()
    flash(f"{inbox.name} is removed.", "info")
    return redirect(url_for(".index"))

from web import widget_settings_views  # noqa: E402,F401  (the widget page: routes of this blueprint)
