"""Contacts: merge two records of the same customer (history and identities move, nothing is lost)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import login_required
from sqlalchemy import select

from inbox.errors import InvalidChange
from inbox.identities import live_contact, merge_contacts
from inbox.models import Contact, Identity
from web import access
from web.auth import me
from web.db import get_session

bp = Blueprint("contacts", __name__, url_prefix="/contacts")


def visible_contact(contact_id: int) -> Contact:
    session = get_session()
    contact = session.get(Contact, contact_id)
    if contact is None or not access.can_see_contact(session, me(), contact.id):
        abort(404)
    return live_contact(session, contact)


def _find_other(raw: str) -> Contact:
    """The contact to merge in: "#12" by number, else by an address or handle (a Telegram id is digits too)."""
    session = get_session()
    raw = raw.strip()
    if raw.startswith("#") and raw[1:].isdigit():
        return visible_contact(int(raw[1:]))
    handles = {raw, raw.lower()}
    contact_id = session.scalar(select(Identity.contact_id).where(Identity.handle.in_(handles)).limit(1))
    if contact_id is None and raw.isdigit():
        contact_id = int(raw)
    if contact_id is None:
        raise InvalidChange(f"no contact with the address or handle {raw!r}")
    return visible_contact(contact_id)


@bp.post("/<int:contact_id>/merge")
@login_required
def merge(contact_id: int) -> ResponseReturnValue:
    """Merge another contact into this one."""
    target = visible_contact(contact_id)
    source = _find_other(request.form.get("other", ""))
    if source.id == target.id:
        raise InvalidChange("that is the same contact")
    merge_contacts(get_session(), source, target, actor_id=me().id)
    get_session().commit()
    flash(f"Merged {source.name or 'the contact'} into {target.name or 'this contact'}.", "info")
    back = request.form.get("ticket_id", type=int)
    return redirect(url_for("tickets.show", ticket_id=back) if back else url_for("inbox.index"))
