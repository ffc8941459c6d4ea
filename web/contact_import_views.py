"""``/settings/contacts``: CSV import with a column-mapping preview and a report; CSV export of contacts and tickets.

The uploaded file is kept in the blob store (content-addressed) between the preview and the import, so any web
process can finish what another one previewed. Admins only; exports are POSTs because they are audited.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, abort, render_template, request
from flask.typing import ResponseReturnValue

from inbox import contacts_csv, workspace
from inbox.db import utcnow
from web.auth import me, role_required
from web.db import get_session, get_storage
from web.security import DOWNLOAD_CSP

bp = Blueprint("contact_import", __name__, url_prefix="/settings/contacts")
PREVIEW_ROWS = 8
FIELD_LABELS = {
    "name": "Name",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email address",
    "phone": "Phone number",
    "telegram": "Telegram user id",
    "instagram": "Instagram user name",
    "attribute": "Keep as contact detail",
    "ignore": "Ignore this column",
}


@bp.get("")
@role_required("admin")
def index() -> ResponseReturnValue:
    return render_template("settings/contacts.html")


def _parsed(sha: str) -> contacts_csv.ParsedCsv:
    blobs = get_storage().blobs
    try:
        if not blobs.exists(sha):
            abort(404)
        return contacts_csv.parse_csv(blobs.get(sha))
    except ValueError:
        abort(404)


@bp.post("/preview")
@role_required("admin")
def preview() -> ResponseReturnValue:
    upload = request.files.get("file")
    raw = upload.read() if upload is not None else b""
    if not raw:
        return render_template("settings/contacts.html", error="Choose a CSV file to import."), 422
    try:
        parsed = contacts_csv.parse_csv(raw)
    except contacts_csv.CsvError as exc:
        return render_template("settings/contacts.html", error=f"This file cannot be imported: {exc}."), 422
    sha = get_storage().blobs.put(raw)
    return render_template(
        "settings/contacts_preview.html",
        parsed=parsed,
        sha=sha,
        rows=parsed.rows[:PREVIEW_ROWS],
        mapping=contacts_csv.guess_mapping(parsed.headers),
        fields=FIELD_LABELS,
        filename=upload.filename if upload is not None else "",
    )


@bp.post("/import/<sha>")
@role_required("admin")
def run_import(sha: str) -> ResponseReturnValue:
    parsed = _parsed(sha)
    mapping = [request.form.get(f"col{i}", "ignore") for i in range(len(parsed.headers))]
    if any(m not in contacts_csv.FIELDS for m in mapping):
        abort(400)
    session = get_session()
    report = contacts_csv.import_rows(session, parsed, mapping)
    workspace.record(
        session,
        "contacts.imported",
        actor=me(),
        target=f"upload:{sha[:12]}",
        detail={
            "created": report.created,
            "updated": report.updated,
            "duplicates": report.duplicates,
            "unchanged": report.unchanged,
            "skipped": len(report.skipped),
            "warnings": len(report.warnings),
        },
        ip=request.remote_addr or "",
    )
    session.commit()
    return render_template("settings/contacts_report.html", report=report, headers=parsed.headers)


def _download(kind: str) -> ResponseReturnValue:
    session = get_session()
    workspace.record(session, f"{kind}.exported", actor=me(), ip=request.remote_addr or "")
    session.commit()
    factory = get_storage().factory
    export = contacts_csv.export_contacts if kind == "contacts" else contacts_csv.export_tickets

    def chunks() -> Iterator[str]:
        # Its own session, closed as soon as the last row is out: a reader must not hold SQLite's lock until the
        # server gets round to closing the response.
        with factory() as reader:
            yield from export(reader)

    name = f"helpline-{kind}-{utcnow():%Y%m%d-%H%M}.csv"
    headers = {"Content-Disposition": f'attachment; filename="{name}"', "Content-Security-Policy": DOWNLOAD_CSP}
    return Response(chunks(), mimetype="text/csv", headers=headers)


@bp.post("/export/contacts.csv")
@role_required("admin")
def export_contacts() -> ResponseReturnValue:
    return _download("contacts")


@bp.post("/export/tickets.csv")
@role_required("admin")
def export_tickets() -> ResponseReturnValue:
    return _download("tickets")
