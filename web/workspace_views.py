"""``/settings/tags`` (create, rename, colour, merge, delete, with ticket counts) and ``/settings/hours``
(business-hour calendars with weekly hours, time zone and holidays, applied to the workspace, a team or an inbox;
SLA clocks and reports count in them). Admins only."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from inbox import workspace
from inbox.errors import InvalidChange
from inbox.models import Inbox, Tag, Team
from inbox.sla_models import BusinessCalendar, BusinessHoliday
from tickets import calendars, tags
from tickets.business_hours import DAY_NAMES
from web.auth import me, role_required
from web.db import get_or_404, get_session

tags_bp = Blueprint("tags", __name__, url_prefix="/settings/tags")
hours_bp = Blueprint("calendars", __name__, url_prefix="/settings/hours")


def _audit(action: str, target: str, **detail: Any) -> None:
    workspace.record(get_session(), action, actor=me(), target=target, detail=detail, ip=request.remote_addr or "")


def _failed(exc: InvalidChange, endpoint: str, **values: Any) -> ResponseReturnValue:
    get_session().rollback()
    flash(str(exc), "error")
    return redirect(url_for(endpoint, **values))


@tags_bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    rows = tags.tag_counts(get_session())
    return render_template("settings/tags.html", rows=rows, colors=tags.COLORS, all_tags=[t for t, _ in rows])


@tags_bp.post("")
@role_required("admin")
def create() -> ResponseReturnValue:
    session = get_session()
    try:
        tag = tags.create_tag(session, request.form.get("name", ""), request.form.get("color", ""))
    except InvalidChange as exc:
        return _failed(exc, ".index")
    _audit("tag.created", f"tag:{tag.id}", name=tag.name)
    session.commit()
    return redirect(url_for(".index"))


@tags_bp.post("/<int:tag_id>")
@role_required("admin")
def update(tag_id: int) -> ResponseReturnValue:
    session = get_session()
    tag = get_or_404(session, Tag, tag_id)
    old = tag.name
    try:
        tags.update_tag(session, tag, name=request.form.get("name", ""), color=request.form.get("color", ""))
    except InvalidChange as exc:
        return _failed(exc, ".index")
    _audit("tag.updated", f"tag:{tag.id}", name=f"{old} → {tag.name}", color=tag.color)
    session.commit()
    flash(f"Saved tag {tag.name}.", "info")
    return redirect(url_for(".index"))


@tags_bp.post("/<int:tag_id>/merge")
@role_required("admin")
def merge(tag_id: int) -> ResponseReturnValue:
    session = get_session()
    source = get_or_404(session, Tag, tag_id)
    target = session.get(Tag, request.form.get("into", type=int) or 0)
    if target is None:
        flash("Pick the tag to merge into.", "error")
        return redirect(url_for(".index"))
    names = (source.name, target.name)
    try:
        moved = tags.merge_tags(session, source, target)
    except InvalidChange as exc:
        return _failed(exc, ".index")
    _audit("tag.merged", f"tag:{target.id}", merged=names[0], into=names[1], tickets=moved)
    session.commit()
    flash(f"Merged {names[0]} into {names[1]}: {moved} tickets gained {names[1]}.", "info")
    return redirect(url_for(".index"))


@tags_bp.post("/<int:tag_id>/delete")
@role_required("admin")
def remove(tag_id: int) -> ResponseReturnValue:
    session = get_session()
    tag = get_or_404(session, Tag, tag_id)
    name = tag.name
    count = tags.delete_tag(session, tag)
    _audit("tag.deleted", f"tag:{tag_id}", name=name, tickets=count)
    session.commit()
    flash(f"Deleted tag {name}; it was on {count} tickets.", "info")
    return redirect(url_for(".index"))


def _targets() -> dict[str, str]:
    session = get_session()
    options = {"": "nothing yet", "default": "the whole workspace (default)"}
    options |= {f"team:{t.id}": f"team {t.name}" for t in session.scalars(select(Team).order_by(Team.name))}
    options |= {f"inbox:{i.id}": f"inbox {i.name}" for i in session.scalars(select(Inbox).order_by(Inbox.name))}
    return options


def _form_page(row: BusinessCalendar | None, form: dict[str, str] | None = None) -> ResponseReturnValue:
    if form is None:
        hours = row.hours if row else {d: [["09:00", "17:00"]] for d in DAY_NAMES[:5]}
        form = {
            "name": row.name if row else "",
            "timezone": row.timezone
            if row
            else str(workspace.get_setting(get_session(), workspace.WORKSPACE_TIMEZONE, "UTC")),
            "applies_to": calendars.applies_to(row) if row else "",
        } | {d: calendars.format_day(hours.get(d, [])) for d in DAY_NAMES}
    return render_template(
        "settings/calendar.html",
        calendar=row,
        form=form,
        days=calendars.DAY_LABELS,
        targets=_targets(),
        timezones=workspace.timezones(),
    )


@hours_bp.get("", endpoint="index")
@role_required("admin")
def hours_index() -> ResponseReturnValue:
    session = get_session()
    rows = list(session.scalars(select(BusinessCalendar).order_by(BusinessCalendar.name)))
    return render_template(
        "settings/calendars.html",
        rows=rows,
        targets=_targets(),
        applies_to=calendars.applies_to,
        days=calendars.DAY_LABELS,
        format_day=calendars.format_day,
    )


@hours_bp.get("/new")
@role_required("admin")
def new() -> ResponseReturnValue:
    return _form_page(None)


def _save(row: BusinessCalendar | None) -> ResponseReturnValue:
    session, form = get_session(), request.form.to_dict()
    try:
        saved = calendars.save_calendar(
            session,
            row,
            name=form.get("name", ""),
            timezone=form.get("timezone", ""),
            days={d: form.get(d, "") for d in DAY_NAMES},
            applies_to=form.get("applies_to", ""),
        )
    except InvalidChange as exc:
        session.rollback()
        flash(str(exc), "error")
        return _form_page(session.get(BusinessCalendar, row.id) if row else None, form), 422
    _audit("calendar.saved", f"calendar:{saved.id}", name=saved.name, hours=saved.hours, timezone=saved.timezone)
    session.commit()
    flash(f"Saved {saved.name}. SLA clocks and reports count in these hours from now on.", "info")
    return redirect(url_for(".edit", calendar_id=saved.id))


@hours_bp.post("/new", endpoint="create")
@role_required("admin")
def hours_create() -> ResponseReturnValue:
    if "name" not in request.form:
        return redirect(url_for(".new"))
    return _save(None)


@hours_bp.get("/<int:calendar_id>")
@role_required("admin")
def edit(calendar_id: int) -> ResponseReturnValue:
    return _form_page(get_or_404(get_session(), BusinessCalendar, calendar_id))


@hours_bp.post("/<int:calendar_id>")
@role_required("admin")
def save(calendar_id: int) -> ResponseReturnValue:
    row = get_or_404(get_session(), BusinessCalendar, calendar_id)
    if "name" not in request.form:
        return redirect(url_for(".edit", calendar_id=calendar_id))
    return _save(row)


@hours_bp.post("/<int:calendar_id>/delete")
@role_required("admin")
def delete(calendar_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, BusinessCalendar, calendar_id)
    name = row.name
    session.delete(row)
    _audit("calendar.deleted", f"calendar:{calendar_id}", name=name)
    session.commit()
    flash(f"Deleted {name}; what used it now counts in the next calendar that applies (or around the clock).", "info")
    return redirect(url_for(".index"))


@hours_bp.post("/<int:calendar_id>/holidays")
@role_required("admin")
def add_holiday(calendar_id: int) -> ResponseReturnValue:
    session = get_session()
    row = get_or_404(session, BusinessCalendar, calendar_id)
    try:
        holiday = calendars.add_holiday(session, row, request.form.get("day", ""), request.form.get("name", ""))
    except InvalidChange as exc:
        return _failed(exc, ".edit", calendar_id=calendar_id)
    _audit("calendar.holiday_added", f"calendar:{row.id}", day=holiday.day.isoformat(), name=holiday.name)
    session.commit()
    return redirect(url_for(".edit", calendar_id=calendar_id))


@hours_bp.post("/<int:calendar_id>/holidays/<int:holiday_id>/delete")
@role_required("admin")
def delete_holiday(calendar_id: int, holiday_id: int) -> ResponseReturnValue:
    session = get_session()
    holiday = get_or_404(session, BusinessHoliday, holiday_id)
    if holiday.calendar_id != calendar_id:
        return redirect(url_for(".edit", calendar_id=calendar_id))
    _audit("calendar.holiday_removed", f"calendar:{calendar_id}", day=holiday.day.isoformat())
    session.delete(holiday)
    session.commit()
    return redirect(url_for(".edit", calendar_id=calendar_id))
