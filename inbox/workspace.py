"""Workspace-wide settings (name, time zone) and the admin audit log, as functions over a session.

Settings are rows of ``workspace_setting`` rather than a file in the data folder, so every web and worker
process sees the same values. Like the rest of the core these functions flush and never commit.
"""

from __future__ import annotations

import zoneinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.errors import InvalidChange
from inbox.models import User
from inbox.settings_models import AuditLog, WorkspaceSetting

WORKSPACE_NAME = "workspace.name"
WORKSPACE_TIMEZONE = "workspace.timezone"
OWNER = "workspace.owner"  # the first admin, set once by the first-run wizard (its unique key guards the race)
ONBOARDED = "workspace.onboarded"
DEFAULTS: dict[str, Any] = {WORKSPACE_NAME: "Helpline", WORKSPACE_TIMEZONE: "UTC"}


def get_setting(session: Session, key: str, default: Any = None) -> Any:
    row = session.get(WorkspaceSetting, key)
    if row is None:
        return DEFAULTS.get(key, default) if default is None else default
    return row.value


def set_setting(session: Session, key: str, value: Any) -> None:
    row = session.get(WorkspaceSetting, key)
    if row is None:
        session.add(WorkspaceSetting(key=key, value=value))
    else:
        row.value = value
        row.updated_at = utcnow()
    session.flush()


def has_users(session: Session) -> bool:
    return session.scalar(select(User.id).limit(1)) is not None


def claim_owner(session: Session, email: str) -> None:
    """Record the first admin; raises InvalidChange if someone else got there first (two browsers at once)."""
    if has_users(session):
        raise InvalidChange("this workspace has an owner already; sign in instead")
    try:
        with session.begin_nested():
            session.add(WorkspaceSetting(key=OWNER, value=email))
    except IntegrityError as exc:
        raise InvalidChange("this workspace has an owner already; sign in instead") from exc


def check_timezone(name: str) -> str:
    name = name.strip()
    if name not in zoneinfo.available_timezones():
        raise InvalidChange(f"{name!r} is not a time zone name like Europe/Berlin or America/New_York")
    return name


def timezones() -> list[str]:
    return sorted(z for z in zoneinfo.available_timezones() if "/" in z or z == "UTC")


def record(
    session: Session,
    action: str,
    *,
    actor: User | None = None,
    target: str = "",
    detail: dict[str, Any] | None = None,
    ip: str = "",
) -> AuditLog:
    """Append one audit row (never a secret in ``detail``: the page shows it to every admin)."""
    row = AuditLog(
        actor_id=actor.id if actor else None,
        actor_email=actor.email if actor else "",
        action=action,
        target=target,
        detail=detail or {},
        ip=ip[:64],
    )
    session.add(row)
    session.flush()
    return row
