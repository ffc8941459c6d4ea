"""``/settings/automation`` and ``/settings/webhooks``: automation rules and outgoing webhooks. Admins only.

Rules: list (in evaluation order), create, edit, enable/disable, move up/down, delete. Webhooks: list, create,
edit (the signing secret is write-only), delete, send a test event, and each subscription's delivery log.
Every change is recorded in the admin audit log and tells the event publishers what is now wanted.
"""

from __future__ import annotations

import secrets as pysecrets
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from inbox import workspace
from inbox.automation_models import AutomationRule, WebhookSubscription
from inbox.config import Settings
from inbox.errors import InvalidChange
from inbox.models import PRIORITIES, STATUSES, Inbox, Tag, Team, User
from tickets import automation, webhooks
from web import jobs
from web.auth import me, role_required
from web.db import get_or_404, get_session

bp = Blueprint("automation", __name__, url_prefix="/settings")
ROWS = 5  # condition and action rows on the form (a rule with more is edited in place: rows grow to fit)


def _settings() -> Settings:
    settings: Settings = current_app.config["HELPLINE_SETTINGS"]
    return settings


def _audit(action: str, target: str, **detail: Any) -> None:
    workspace.record(get_session(), action, actor=me(), target=target, detail=detail, ip=request.remote_addr or "")


def _changed() -> None:
    """After a commit: tell every process's event publisher which events rules and webhooks want now."""
    from workers.automation_jobs import wanted_events

    jobs.automation_changed(wanted_events(get_session()))


# --- rules ------------------------------------------------------------------------------------------------------


@bp.get("/automation")
@role_required("admin")
def rules() -> ResponseReturnValue:
    session = get_session()
    return render_template(
        "settings/automation.html",
        rules=automation.ordered_rules(session),
        triggers=automation.TRIGGERS,
        actions=automation.ACTIONS,
        describe=_describe_condition,
        auto_limit=automation.AUTO_REPLY_LIMIT,
    )


def _choices() -> dict[str, Any]:
    session = get_session()
    return {
        "triggers": automation.TRIGGERS,
        "conditions": automation.CONDITIONS,
        "operators": automation.OPERATORS,
        "actions": automation.ACTIONS,
        "placeholders": automation.PLACEHOLDERS,
        "inboxes": list(session.scalars(select(Inbox).order_by(Inbox.name))),
        "users": list(session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name))),
        "teams": list(session.scalars(select(Team).order_by(Team.name))),
        "tags": list(session.scalars(select(Tag.name).order_by(Tag.name))),
        "priorities": PRIORITIES,
        "statuses": STATUSES,
    }


def _rule_form(rule: AutomationRule | None) -> dict[str, Any]:
    if rule is None:
        return {"name": "", "trigger": "message_received", "match": "all", "enabled": True, "conditions": [],
                "actions": []}
    return {"name": rule.name, "trigger": rule.trigger, "match": rule.match, "enabled": rule.enabled,
            "conditions": list(rule.conditions or []), "actions": list(rule.actions or [])}


def _posted_rule() -> dict[str, Any]:
    """The form's rows as conditions and actions; an action's value comes from the field its type uses."""
    f = request.form
    conditions, actions = [], []
    for i in range(int(f.get("rows", ROWS) or ROWS)):
        if field := f.get(f"cond-{i}-field", ""):
            conditions.append({"field": field, "op": f.get(f"cond-{i}-op", ""), "key": f.get(f"cond-{i}-key", ""),
                               "value": f.get(f"cond-{i}-value", "")})
        if kind := f.get(f"act-{i}-type", ""):
            source = {"assign_agent": "agent", "assign_team": "team"}.get(kind, "value")
            actions.append({"type": kind, "value": f.get(f"act-{i}-{source}", ""),
                            "subject": f.get(f"act-{i}-subject", "")})
    return {"name": f.get("name", ""), "trigger": f.get("trigger", ""), "match": f.get("match", "all"),
            "enabled": f.get("enabled") == "1", "conditions": conditions, "actions": actions}


def _render_rule_form(rule: AutomationRule | None, form: dict[str, Any], error: str | None = None) -> Any:
    rows = max(ROWS, len(form["conditions"]) + 1, len(form["actions"]) + 1)
    return render_template("settings/automation_form.html", rule=rule, form=form, error=error, rows=rows,
                           **_choices())


def _save_rule(rule: AutomationRule | None) -> ResponseReturnValue:
    session = get_session()
    form = _posted_rule()
    try:
        saved = automation.save_rule(session, rule, **form)
    except InvalidChange as exc:
        session.rollback()
        return _render_rule_form(rule, form, str(exc)), 422
    _audit("automation.rule_saved" if rule else "automation.rule_created", f"automation_rule:{saved.id}",
           name=saved.name, trigger=saved.trigger)
    session.commit()
    _changed()
    flash(f"Rule “{saved.name}” saved.", "ok")
    return redirect(url_for(".rules"))


@bp.route("/automation/new", methods=["GET", "POST"])
@role_required("admin")
def new_rule() -> ResponseReturnValue:
    if request.method == "POST":
        return _save_rule(None)
    return _render_rule_form(None, _rule_form(None))


@bp.route("/automation/<int:rule_id>", methods=["GET", "POST"])
@role_required("admin")
def edit_rule(rule_id: int) -> ResponseReturnValue:
    rule = get_or_404(get_session(), AutomationRule, rule_id)
    if request.method == "POST":
        return _save_rule(rule)
    return _render_rule_form(rule, _rule_form(rule))


@bp.post("/automation/<int:rule_id>/toggle")
@role_required("admin")
def toggle_rule(rule_id: int) -> ResponseReturnValue:
    session = get_session()
    rule = get_or_404(session, AutomationRule, rule_id)
    rule.enabled = not rule.enabled
    _audit("automation.rule_enabled" if rule.enabled else "automation.rule_disabled", f"automation_rule:{rule.id}",
           name=rule.name)
    session.commit()
    _changed()
    return redirect(url_for(".rules"))


@bp.post("/automation/<int:rule_id>/move")
@role_required("admin")
def move_rule(rule_id: int) -> ResponseReturnValue:
    session = get_session()
    rule = get_or_404(session, AutomationRule, rule_id)
    automation.move_rule(session, rule, -1 if request.form.get("direction") == "up" else 1)
    _audit("automation.rule_moved", f"automation_rule:{rule.id}", name=rule.name, position=rule.position)
    session.commit()
    return redirect(url_for(".rules"))


@bp.post("/automation/<int:rule_id>/delete")
@role_required("admin")
def delete_rule(rule_id: int) -> ResponseReturnValue:
    session = get_session()
    rule = get_or_404(session, AutomationRule, rule_id)
    _audit("automation.rule_deleted", f"automation_rule:{rule.id}", name=rule.name)
    session.delete(rule)
    session.commit()
    _changed()
    flash(f"Rule “{rule.name}” deleted.", "ok")
    return redirect(url_for(".rules"))


def _describe_condition(cond: dict[str, Any]) -> str:
    label = automation.CONDITIONS.get(cond.get("field", ""), (cond.get("field", "?"), ()))[0]
    if cond.get("field") == "contact_attribute":
        label = f"{label} “{cond.get('key', '')}”"
    op = automation.OPERATORS.get(cond.get("op", ""), cond.get("op", ""))
    return f"{label} {op} {cond.get('value', '')}".strip()


# --- webhooks ---------------------------------------------------------------------------------------------------


@bp.get("/webhooks")
@role_required("admin")
def webhook_list() -> ResponseReturnValue:
    session = get_session()
    subs = list(session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id)))
    last = {s.id: (webhooks.deliveries_of(session, s.id, 1) or [None])[0] for s in subs}
    return render_template("settings/webhooks.html", subs=subs, last=last,
                           allow_private=_settings().webhook_allow_private)


def _webhook_form(sub: WebhookSubscription | None) -> dict[str, Any]:
    if sub is None:
        return {"name": "", "url": "", "events": [], "enabled": True}
    return {"name": sub.name, "url": sub.url, "events": list(sub.events or []), "enabled": sub.enabled}


def _render_webhook_form(sub: WebhookSubscription | None, form: dict[str, Any], error: str | None = None) -> Any:
    deliveries = webhooks.deliveries_of(get_session(), sub.id) if sub is not None else []
    return render_template("settings/webhook_form.html", sub=sub, form=form, error=error, events=webhooks.EVENTS,
                           deliveries=deliveries, allow_private=_settings().webhook_allow_private)


def _save_webhook(sub: WebhookSubscription | None) -> ResponseReturnValue:
    session = get_session()
    f = request.form
    form = {"name": f.get("name", ""), "url": f.get("url", ""), "events": f.getlist("events"),
            "enabled": f.get("enabled") == "1"}
    secret = f.get("secret", "").strip()
    generated = sub is None and not secret
    if generated:
        secret = pysecrets.token_urlsafe(32)
    try:
        saved = webhooks.save_subscription(
            session, sub, secret_key=_settings().secret_key, name=form["name"], url=form["url"],
            event_names=form["events"], secret=secret, enabled=form["enabled"],
            allow_private=_settings().webhook_allow_private,
        )
    except InvalidChange as exc:
        session.rollback()
        return _render_webhook_form(sub, form, str(exc)), 422
    _audit("webhook.saved" if sub else "webhook.created", f"webhook:{saved.id}", url=saved.url,
           events=saved.events, secret_changed=bool(secret))
    session.commit()
    _changed()
    if generated:
        # Shown once: the stored secret is encrypted and never displayed again.
        flash(f"Webhook saved. Its signing secret (shown only now): {secret}", "ok")
    else:
        flash("Webhook saved.", "ok")
    return redirect(url_for(".edit_webhook", webhook_id=saved.id))


@bp.route("/webhooks/new", methods=["GET", "POST"])
@role_required("admin")
def new_webhook() -> ResponseReturnValue:
    if request.method == "POST":
        return _save_webhook(None)
    return _render_webhook_form(None, _webhook_form(None))


@bp.route("/webhooks/<int:webhook_id>", methods=["GET", "POST"])
@role_required("admin")
def edit_webhook(webhook_id: int) -> ResponseReturnValue:
    sub = get_or_404(get_session(), WebhookSubscription, webhook_id)
    if request.method == "POST":
        return _save_webhook(sub)
    return _render_webhook_form(sub, _webhook_form(sub))


@bp.post("/webhooks/<int:webhook_id>/test")
@role_required("admin")
def test_webhook(webhook_id: int) -> ResponseReturnValue:
    session = get_session()
    sub = get_or_404(session, WebhookSubscription, webhook_id)
    delivery = webhooks.new_delivery(session, sub, webhooks.PING, {"message": "Test event from Helpline",
                                                                   "webhook_id": sub.id})
    _audit("webhook.tested", f"webhook:{sub.id}", url=sub.url)
    session.commit()
    if jobs.enqueue_webhook(delivery.id):
        flash("Test event queued; its result appears in the delivery log below.", "ok")
    else:
        flash("Test event recorded, but no worker queue is reachable (is Redis running?).", "error")
    return redirect(url_for(".edit_webhook", webhook_id=sub.id))


@bp.post("/webhooks/<int:webhook_id>/delete")
@role_required("admin")
def delete_webhook(webhook_id: int) -> ResponseReturnValue:
    session = get_session()
    sub = get_or_404(session, WebhookSubscription, webhook_id)
    _audit("webhook.deleted", f"webhook:{sub.id}", url=sub.url)
    session.delete(sub)
    session.commit()
    _changed()
    flash("Webhook deleted.", "ok")
    return redirect(url_for(".webhook_list"))
