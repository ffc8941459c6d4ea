"""Contacts from and to CSV: read messy real-world files, map their columns, merge rows into existing contacts.

Real exports come with a byte-order mark, semicolons (spreadsheets in many locales), quoted newlines, repeated
rows and columns nobody asked for. Import takes what it can and reports every row and cell it could not use,
with its line number: nothing is dropped silently. Rows are matched to contacts by email address, phone number
and channel handles (``inbox.identities``); a row matching two different contacts is reported, not guessed.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from inbox.identities import normalise_handle
from inbox.models import Contact, Identity, Inbox, Ticket, User

# What a column can be mapped to. "attribute" keeps the value on the contact under the column's name.
FIELDS = ("name", "first_name", "last_name", "email", "phone", "telegram", "instagram", "attribute", "ignore")
HANDLE_CHANNELS = ("email", "telegram", "instagram")
SYNONYMS: dict[str, tuple[str, ...]] = {
    "name": ("name", "full name", "fullname", "contact", "contact name", "customer", "display name", "nom", "naam"),
    "first_name": ("first name", "firstname", "given name", "vorname", "prenom", "prénom"),
    "last_name": ("last name", "lastname", "surname", "family name", "nachname", "nom de famille"),
    "email": ("email", "e-mail", "mail", "email address", "e-mail address", "emails", "e-mail-adresse", "courriel"),
    "phone": ("phone", "telephone", "tel", "mobile", "cell", "phone number", "telefon", "handy", "téléphone"),
    "telegram": ("telegram", "telegram id", "telegram user id", "tg"),
    "instagram": ("instagram", "instagram handle", "ig", "insta", "instagram username"),
    "ignore": ("id", "created at"),  # Helpline's own export: ids are per install, the date is ours
}
EMAIL = re.compile(r"^[^@\s<>(),;:\"]+@[^@\s<>(),;:\"]+\.[^@\s<>(),;:\"]+$")
MAX_ROWS = 100_000


class CsvError(ValueError):
    """The file cannot be read as CSV at all."""


@dataclass
class ParsedCsv:
    """A CSV file as header and rows of strings, with the line each row started on."""

    headers: list[str]
    rows: list[tuple[int, list[str]]]
    delimiter: str
    encoding: str
    notes: list[str] = field(default_factory=list)


@dataclass
class Problem:
    line: int
    reason: str
    values: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportReport:
    created: int = 0
    updated: int = 0
    duplicates: int = 0  # rows that repeated an earlier row of the same file
    unchanged: int = 0
    skipped: list[Problem] = field(default_factory=list)  # rows not imported, with why
    warnings: list[Problem] = field(default_factory=list)  # rows imported, but some cell was not used
    notes: list[str] = field(default_factory=list)
    contact_ids: list[int] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return self.created + self.updated + self.duplicates + self.unchanged + len(self.skipped)


# -- reading ------------------------------------------------------------------------------------------------------


def decode(raw: bytes) -> tuple[str, str]:
    """Text of an uploaded file: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 (never fails)."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace"), "windows-1252"


def sniff_delimiter(text: str) -> str:
    """The delimiter of the header line: the candidate that occurs most outside quotes."""
    first = next(iter(_logical_lines(text)), "")
    counts = {d: _count_outside_quotes(first, d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _logical_lines(text: str) -> Iterator[str]:
    buf: list[str] = []
    quoted = False
    for line in text.splitlines(keepends=True):
        buf.append(line)
        quoted ^= line.count('"') % 2 == 1
        if not quoted:
            yield "".join(buf)
            buf = []
    if buf:
        yield "".join(buf)


def _count_outside_quotes(line: str, char: str) -> int:
    count, quoted = 0, False
    for c in line:
        if c == '"':
            quoted = not quoted
        elif c == char and not quoted:
            count += 1
    return count


def parse_csv(raw: bytes) -> ParsedCsv:
    """Read a CSV file of any common dialect; raises CsvError when there is no header row at all."""
    text, encoding = decode(raw)
    if "\x00" in text:
        raise CsvError("this is not a text file (it contains NUL bytes); export the sheet as CSV first")
    delimiter = sniff_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar='"', strict=False)
    headers: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    notes: list[str] = []
    if encoding == "windows-1252":
        notes.append("The file is not UTF-8; it was read as Windows-1252 (Excel's default). Check accented letters.")
    line = 1
    try:
        for record in reader:
            start, line = line, reader.line_num + 1
            if headers is None:
                if not any(cell.strip() for cell in record):
                    continue
                headers = [h.strip() for h in record]
                continue
            if not any(cell.strip() for cell in record):
                continue  # blank lines carry no data
            if len(rows) >= MAX_ROWS:
                notes.append(f"Only the first {MAX_ROWS} rows were read; split the file to import the rest.")
                break
            rows.append((start, record))
    except csv.Error as exc:
        notes.append(f"Reading stopped at line {line}: {exc}. The rows before it were read.")
    if not headers:
        raise CsvError("the file is empty: there is no header row")
    return ParsedCsv(headers=headers, rows=rows, delimiter=delimiter, encoding=encoding, notes=notes)


def _key(header: str) -> str:
    return " ".join(re.sub(r"[_\-.]+", " ", header.strip().lower()).split())


def guess_mapping(headers: Sequence[str]) -> list[str]:
    """A field for each column (FIELDS); unknown columns become attributes, so nothing is lost by default."""
    out: list[str] = []
    for header in headers:
        key = _key(header)
        if not key:
            out.append("ignore")
            continue
        guess = next((f for f, words in SYNONYMS.items() if key in words or key.replace(" ", "") in words), None)
        if guess is None and key.startswith(("email", "e mail")):
            guess = "email"
        out.append(guess or "attribute")
    return out


# -- importing ----------------------------------------------------------------------------------------------------


def normalise_phone(value: str) -> str | None:
    """Digits with a leading + kept; None when it has too few digits to be a phone number."""
    value = value.strip()
    digits = re.sub(r"\D", "", value)
    if len(digits) < 6:
        return None
    return ("+" if value.startswith(("+", "00")) else "") + (digits[2:] if value.startswith("00") else digits)


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"[\s,;]+", value.strip()) if v]


def _split_phones(value: str) -> list[str]:
    return [v.strip() for v in re.split(r"[,;/]+", value) if v.strip()]


@dataclass
class _Row:
    name: str = ""
    handles: list[tuple[str, str]] = field(default_factory=list)  # (channel, normalised handle)
    phones: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    bad: list[str] = field(default_factory=list)


def _read_row(headers: Sequence[str], mapping: Sequence[str], cells: Sequence[str]) -> _Row:
    row = _Row()
    first = last = ""
    for i, cell in enumerate(cells):
        value = cell.strip()
        if not value:
            continue
        if i >= len(mapping):
            row.attributes[f"extra_{i - len(mapping) + 1}"] = value
            row.bad.append(
                f"cell {i + 1} is beyond the header's {len(mapping)} columns: kept as extra_{i - len(mapping) + 1}"
            )
            continue
        target, header = mapping[i], headers[i] or f"column {i + 1}"
        if target == "name":
            row.name = value
        elif target == "first_name":
            first = value
        elif target == "last_name":
            last = value
        elif target == "email":
            for address in _split(value):
                address = address.strip("<>").lower()
                if EMAIL.match(address):
                    row.handles.append(("email", address))
                else:
                    row.bad.append(f"“{address}” in {header} is not an email address: kept as attribute")
                    row.attributes[f"{header} (invalid)"] = address
        elif target == "phone":
            for part in _split_phones(value):
                phone = normalise_phone(part)
                if phone is None:
                    row.bad.append(f"“{part}” in {header} is not a phone number: kept as attribute")
                    row.attributes[f"{header} (invalid)"] = part
                elif phone not in row.phones:
                    row.phones.append(phone)
        elif target in ("telegram", "instagram"):
            row.handles.append((target, normalise_handle(target, value)))
        elif target == "attribute":
            row.attributes[header] = value
    if not row.name:
        row.name = " ".join(p for p in (first, last) if p)
    return row


def _phone_index(session: Session) -> dict[str, int]:
    index: dict[str, int] = {}
    for contact_id, attributes in session.execute(
        select(Contact.id, Contact.attributes).where(Contact.merged_into_id.is_(None))
    ):
        for phone in _split_phones(str((attributes or {}).get("phone") or "")):
            if (normalised := normalise_phone(phone)) is not None:
                index.setdefault(normalised, contact_id)
    return index


def import_rows(session: Session, parsed: ParsedCsv, mapping: Sequence[str]) -> ImportReport:
    """Create or update contacts from ``parsed`` with ``mapping`` (one of FIELDS per column). Flushes, never
    commits: the caller commits the whole import at once, or nothing."""
    if len(mapping) != len(parsed.headers) or any(m not in FIELDS for m in mapping):
        raise ValueError("the mapping must give one known field per column")
    report = ImportReport(notes=list(parsed.notes))
    if not any(m in ("email", "phone", "telegram", "instagram") for m in mapping):
        report.notes.append("No column is mapped to email, phone, Telegram or Instagram: rows cannot be matched.")
    phones = _phone_index(session)
    seen: dict[int, int] = {}  # contact id -> first line of this file that touched it
    for line, cells in parsed.rows:
        values = {parsed.headers[i] or f"column {i + 1}": c for i, c in enumerate(cells[: len(parsed.headers)])}
        row = _read_row(parsed.headers, mapping, cells)
        if not row.handles and not row.phones:
            reason = "no email address, phone number or handle to identify the contact"
            report.skipped.append(Problem(line, "; ".join([reason, *row.bad]), values))
            continue
        matches: dict[int, Contact] = {}
        for channel, handle in row.handles:
            identity = session.scalar(select(Identity).where(Identity.channel == channel, Identity.handle == handle))
            if identity is not None:
                contact = _live(session, identity.contact)
                matches[contact.id] = contact
        for phone in row.phones:
            if phone in phones:
                contact = _live(session, session.get_one(Contact, phones[phone]))
                matches[contact.id] = contact
        if len(matches) > 1:
            ids = ", ".join(f"#{i}" for i in sorted(matches))
            report.skipped.append(Problem(line, f"matches several contacts ({ids}); merge them first", values))
            continue
        if matches:
            contact = next(iter(matches.values()))
            changed = _update(session, contact, row, report, line)
            if contact.id in seen:
                report.duplicates += 1
            elif changed:
                report.updated += 1
            else:
                report.unchanged += 1
        else:
            contact = Contact(name=row.name or (row.handles[0][1] if row.handles else row.phones[0]), attributes={})
            session.add(contact)
            session.flush()
            _update(session, contact, row, report, line)
            report.created += 1
        for phone in row.phones:
            phones.setdefault(phone, contact.id)
        seen.setdefault(contact.id, line)
        if contact.id not in report.contact_ids:
            report.contact_ids.append(contact.id)
        if row.bad:
            report.warnings.append(Problem(line, "; ".join(row.bad), values))
    return report


def _live(session: Session, contact: Contact) -> Contact:
    while contact.merged_into_id is not None:
        contact = session.get_one(Contact, contact.merged_into_id)
    return contact


def _update(session: Session, contact: Contact, row: _Row, report: ImportReport, line: int) -> bool:
    """Add what the row knows and the contact does not; never overwrite (differences become warnings)."""
    changed = False
    if row.name and (not contact.name or contact.name == _first_handle(contact)):
        contact.name, changed = row.name, True
    attributes = dict(contact.attributes or {})
    if row.phones:
        known = _split_phones(str(attributes.get("phone") or ""))
        new = [p for p in row.phones if p not in {normalise_phone(k) for k in known}]
        if new:
            attributes["phone"] = ", ".join([*known, *new])
    for key, value in row.attributes.items():
        if key not in attributes:
            attributes[key] = value
        elif str(attributes[key]) != value:
            row.bad.append(f"{key} differs from the stored value (“{attributes[key]}” kept, “{value}” not used)")
    if attributes != (contact.attributes or {}):
        contact.attributes, changed = attributes, True
    for channel, handle in row.handles:
        if any(i.channel == channel and i.handle == handle for i in contact.identities):
            continue
        try:
            with session.begin_nested():
                session.add(Identity(contact=contact, channel=channel, handle=handle, display_name=row.name))
        except IntegrityError:  # written by a message arriving meanwhile: belongs to that contact now
            row.bad.append(f"{channel} {handle} was just taken by another contact: not added")
            continue
        changed = True
    session.flush()
    return changed


def _first_handle(contact: Contact) -> str:
    return contact.identities[0].handle if contact.identities else ""


# -- exporting ----------------------------------------------------------------------------------------------------


def safe_cell(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP "CSV injection")."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv_lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    buf = io.StringIO()
    writer = csv.writer(buf)
    buf.write("\ufeff")  # so that Excel reads UTF-8
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
        if buf.tell() > 64 * 1024:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


CONTACT_COLUMNS = ("id", "name", "email", "phone", "telegram", "instagram", "webchat", "created_at", "attributes")


def export_contacts(session: Session) -> Iterator[str]:
    """Every live contact as CSV text chunks; several handles of one channel are space-separated."""

    def rows() -> Iterator[list[Any]]:
        stmt = (
            select(Contact)
            .where(Contact.merged_into_id.is_(None))
            .options(selectinload(Contact.identities))
            .order_by(Contact.id)
            .execution_options(yield_per=500)
        )
        for contact in session.scalars(stmt):
            by_channel: dict[str, list[str]] = {}
            for identity in contact.identities:
                by_channel.setdefault(identity.channel, []).append(identity.handle)
            attributes = {k: v for k, v in (contact.attributes or {}).items() if k != "phone"}
            yield [
                contact.id,
                contact.name,
                " ".join(by_channel.get("email", [])),
                (contact.attributes or {}).get("phone", ""),
                " ".join(by_channel.get("telegram", [])),
                " ".join(by_channel.get("instagram", [])),
                " ".join(by_channel.get("webchat", [])),
                contact.created_at,
                _attributes_text(attributes),
            ]

    return _csv_lines(CONTACT_COLUMNS, rows())


def _attributes_text(attributes: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in sorted(attributes.items())) if attributes else ""


TICKET_COLUMNS = (
    "id",
    "subject",
    "status",
    "priority",
    "channel",
    "inbox",
    "contact",
    "contact_email",
    "assignee",
    "tags",
    "messages",
    "created_at",
    "first_response_at",
    "solved_at",
    "closed_at",
    "last_activity_at",
)


def export_tickets(session: Session) -> Iterator[str]:
    """Every ticket as CSV text chunks (merged ones included: the id they went into is in no column here)."""

    def rows() -> Iterator[list[Any]]:
        inboxes = dict(session.execute(select(Inbox.id, Inbox.name)).all())
        users = dict(session.execute(select(User.id, User.email)).all())
        stmt = (
            select(Ticket)
            .options(selectinload(Ticket.contact).selectinload(Contact.identities), selectinload(Ticket.tags))
            .order_by(Ticket.id)
            .execution_options(yield_per=500)
        )
        for t in session.scalars(stmt):
            email = next((i.handle for i in t.contact.identities if i.channel == "email"), "")
            yield [
                t.id,
                t.subject,
                t.status,
                t.priority,
                t.channel,
                inboxes.get(t.inbox_id, ""),
                t.contact.name,
                email,
                users.get(t.assignee_id, "") if t.assignee_id else "",
                " ".join(tag.name for tag in t.tags),
                t.message_count,
                t.created_at,
                t.first_response_at,
                t.solved_at,
                t.closed_at,
                t.last_activity_at,
            ]

    return _csv_lines(TICKET_COLUMNS, rows())
