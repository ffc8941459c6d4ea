"""``/settings/sla``: SLA policies (targets per priority, optional inbox/tag condition, business hours, calendar), and
the switch of the satisfaction survey (``tickets.csat``).

Admins only; every change is a CSRF-checked POST and an audit row. Saving a policy changes which clocks tickets
have, so the report summary is recomputed for every ticket in the same commit (``tickets.summary``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox import workspace
from inbox.models import PRIORITIES, Inbox, Tag
from inbox.sla_models import BusinessCalendar, SlaPolicy, SlaTarget
from tickets import csat
from web.auth import me, role_required
from web.db import get_session

bp = Blueprint("sla_settings", __name__, url_prefix="/settings/sla")
METRICS = (("first_response", "First response"), ("next_response", "Next response"), ("resolution", "Resolution"))
MAX_MINUTES = 365 * 24 * 60  # a target longer than a year is a typing mistake


class FormError(ValueError):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field_name = field_name


@dataclass
class PolicyForm:
    """The posted (or stored) values, as text, so a refused form comes back exactly as typed."""

    values: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, policy: SlaPolicy | None) -> PolicyForm:
        if policy is None:
            return cls({"active": "1", "warn_before": "15", "position": "0"})
        values = {
            "name": policy.name,
            "position": str(policy.position),
            "inbox_id": str(policy.inbox_id or ""),
            "tag": policy.tag or "",
            "business_hours": "1" if policy.business_hours else "",
            "calendar_id": str(policy.calendar_id or ""),
            "warn_before": str(policy.warn_before_seconds // 60),
            "active": "1" if policy.active else "",
        }
        for t in policy.targets:
            for metric, _label in METRICS:
                seconds = getattr(t, f"{metric}_seconds")
                values[f"{t.priority}_{metric}"] = "" if seconds is None else str(seconds // 60)
        return cls(values)

    def get(self, name: str) -> str:
        return self.values.get(name, "")


def _minutes(form: PolicyForm, name: str, *, low: int = 1) -> int | None:
    text = form.get(name).strip()
    if not text:
        return None
    if not text.isdigit() or not low <= int(text) <= MAX_MINUTES:
        raise FormError(name, f"Minutes must be a whole number from {low} to {MAX_MINUTES}.")
    return int(text)


def apply_form(session: Session, policy: SlaPolicy, form: PolicyForm) -> None:
    """Validate the form and copy it onto ``policy``; raises FormError, changing nothing, when a field is wrong."""
    name = form.get("name").strip()
    if not name or len(name) > 100:
        raise FormError("name", "Give the policy a name of at most 100 characters.")
    taken = session.scalar(select(SlaPolicy.id).where(func.lower(SlaPolicy.name) == name.lower()))
    if taken is not None and taken != policy.id:
        raise FormError("name", f"A policy named {name!r} exists already.")
    position_text = form.get("position").strip() or "0"
    if not position_text.lstrip("-").isdigit() or abs(int(position_text)) > 10_000:
        raise FormError("position", "Order must be a whole number.")
    inbox_id = int(form.get("inbox_id")) if form.get("inbox_id").isdigit() else None
    if inbox_id is not None and session.get(Inbox, inbox_id) is None:
        raise FormError("inbox_id", "Pick an inbox from the list.")
    tag = form.get("tag").strip().lower() or None
    if tag is not None and len(tag) > 60:
        raise FormError("tag", "A tag has at most 60 characters.")
    calendar_id = int(form.get("calendar_id")) if form.get("calendar_id").isdigit() else None
    if calendar_id is not None and session.get(BusinessCalendar, calendar_id) is None:
        raise FormError("calendar_id", "Pick a calendar from the list.")
    warn = _minutes(form, "warn_before", low=0)
    targets: dict[str, tuple[int | None, ...]] = {}
    for priority in PRIORITIES:
        minutes = tuple(_minutes(form, f"{priority}_{metric}") for metric, _label in METRICS)
        if any(m is not None for m in minutes):
            targets[priority] = minutes
    if not targets:
        raise FormError("normal_first_response", "Set at least one target.")
    policy.name, policy.position, policy.inbox_id, policy.tag = name, int(position_text), inbox_id, tag
    policy.business_hours = form.get("business_hours") == "1"
    policy.calendar_id = calendar_id
    policy.warn_before_seconds = (warn or 0) * 60
    policy.active = form.get("active") == "1"
    existing = {t.priority: t for t in policy.targets}
    for priority, target in existing.items():
        if priority not in targets:
            policy.targets.remove(target)
    for priority, minutes in targets.items():
        target = existing.get(priority) or SlaTarget(priority=priority)
        target.first_response_seconds, target.next_response_seconds, target.resolution_seconds = (
            None if m is None else m * 60 for m in minutes
        )
        if priority not in existing:
            policy.targets.append(target)


def _choices(session: Session) -> dict[str, Any]:
    return {
        "inboxes": list(session.scalars(select(Inbox).order_by(Inbox.name))),
        "calendars": list(session.scalars(select(BusinessCalendar).order_by(BusinessCalendar.name))),
        "tags": list(session.scalars(select(Tag.name).order_by(Tag.name))),
        "priorities": PRIORITIES,
        "metrics": METRICS,
    }


def _audit(session: Session, action: str, policy: SlaPolicy) -> None:
    detail = {"name": policy.name, "inbox_id": policy.inbox_id, "tag": policy.tag, "active": policy.active}
    workspace.record(
        session, action, actor=me(), target=f"sla_policy:{policy.id}", detail=detail, ip=request.remote_addr or ""
    )


def _form_page(session: Session, policy: SlaPolicy | None, form: PolicyForm, error: FormError | None = None) -> Any:
    page = render_template(
        "settings/sla_form.html",
        policy=policy,
        form=form,
        error=str(error) if error else None,
        error_field=error.field_name if error else None,
        **_choices(session),
    )
    return (page, 422) if error else page


@bp.get("/")
@role_required("admin")
def index() -> ResponseReturnValue:
    session = get_session()
    policies = list(session.scalars(select(SlaPolicy).order_by(SlaPolicy.position, SlaPolicy.id)))
    return render_template("settings/sla.html", policies=policies, csat_on=csat.enabled(session), **_choices(session))


@bp.post("/csat")
@role_required("admin")
def csat_switch() -> ResponseReturnValue:
    """Turn the satisfaction survey after a solve on or off."""
    session = get_session()
    on = request.form.get("enabled") == "1"
    workspace.set_setting(session, csat.SETTING, on)
    workspace.record(
        session, "csat.switched", actor=me(), target="workspace", detail={"enabled": on}, ip=request.remote_addr or ""
    )
    session.commit()
    flash(f"Satisfaction survey turned {'on' if on else 'off'}.", "info")
    return redirect(url_for(".index"))


@bp.route("/new", methods=["GET", "POST"])
@role_required("admin")
def new() -> ResponseReturnValue:
    session = get_session()
    if request.method == "GET":
        return _form_page(session, None, PolicyForm.of(None))
    form = PolicyForm(request.form.to_dict())
    policy = SlaPolicy()
    try:
        apply_form(session, policy, form)
    except FormError as exc:
        return _form_page(session, None, form, exc)
    session.add(policy)
    session.flush()
    _audit(session, "sla_policy.created", policy)
    session.commit()
    flash(f"Policy {policy.name} created.", "info")
    return redirect(url_for(".index"))


@bp.route("/<int:policy_id>", methods=["GET", "POST"])
@role_required("admin")
def edit(policy_id: int) -> ResponseReturnValue:
    session = get_session()
    policy = session.get(SlaPolicy, policy_id) or abort(404)
    if request.method == "GET":
        return _form_page(session, policy, PolicyForm.of(policy))
    form = PolicyForm(request.form.to_dict())
    try:
        with session.no_autoflush:
            apply_form(session, policy, form)
    except FormError as exc:
        session.rollback()
        policy = session.get(SlaPolicy, policy_id) or abort(404)
        return _form_page(session, policy, form, exc)
    _audit(session, "sla_policy.updated", policy)
    session.commit()
    flash(f"Policy {policy.name} saved.", "info")
    return redirect(url_for(".index"))


@bp.post("/<int:policy_id>/delete")
@role_required("admin")
def delete(policy_id: int) -> ResponseReturnValue:
    session = get_session()
    policy = session.get(SlaPolicy, policy_id) or abort(404)
    _audit(session, "sla_policy.deleted", policy)
    session.delete(policy)
    session.commit()
    flash(f"Policy {policy.name} deleted.", "info")
    return redirect(url_for(".index"))
