"""Contacts CSV: messy real-world files import what they can, merge into existing contacts, and report the rest."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox import contacts_csv as cc
from inbox.ingest import ingest
from inbox.models import Contact, Identity
from tests import factories

DATA = Path(__file__).resolve().parents[1] / "data" / "csv"


def test_reading_messy_files() -> None:
    parsed = cc.parse_csv((DATA / "messy_semicolon_bom.csv").read_bytes())
    assert parsed.delimiter == ";" and parsed.encoding == "utf-8"
    assert parsed.headers[0] == "Name"  # the BOM is not part of the first header
    assert len(parsed.rows) == 7  # the blank line is no row; the quoted newline is inside one
    line, first = parsed.rows[0]
    assert line == 2 and first[5] == "likes\nexpress shipping"
    assert parsed.rows[-1][0] == 11  # line numbers count the quoted newlines, as an editor shows them
    assert cc.guess_mapping(parsed.headers) == ["name", "email", "phone", "instagram", "attribute", "attribute"]

    excel = cc.parse_csv((DATA / "excel_cp1252.csv").read_bytes())
    assert excel.encoding == "windows-1252" and excel.rows[0][1][:2] == ["René", "Müller"]
    assert any("Windows-1252" in n for n in excel.notes)
    assert cc.guess_mapping(excel.headers) == ["first_name", "last_name", "email", "telegram"]
    with pytest.raises(cc.CsvError):
        cc.parse_csv(b"")


def test_import_dedupes_and_reports_everything(session: Session) -> None:
    inbox = factories.make_inbox(session)
    eve = ingest(session, inbox.id, factories.inbound(handle="eve@shop.test", display_name="Eve"))
    assert eve is not None
    carla = Contact(name="Carla", attributes={"phone": "+49 171 7654321"})
    session.add(carla)
    session.commit()
    contacts_before = session.scalar(select(func.count()).select_from(Contact))

    parsed = cc.parse_csv((DATA / "messy_semicolon_bom.csv").read_bytes())
    report = cc.import_rows(session, parsed, cc.guess_mapping(parsed.headers))
    session.commit()

    assert (report.created, report.updated, report.duplicates) == (3, 2, 1)  # Ann, Bob, Dan; Carla, Eve; Ann again
    assert [p.line for p in report.skipped] == [7]  # no email, phone or handle
    assert report.skipped[0].values["Notes"] == "a row nobody can be found by"  # shown back, not lost
    warned = {p.line: p.reason for p in report.warnings}
    assert "not an email address" in warned[8] and "beyond the header" in warned[9]
    assert report.rows_read == len(parsed.rows)
    assert session.scalar(select(func.count()).select_from(Contact)) == (contacts_before or 0) + 3

    ann = session.scalar(select(Identity).where(Identity.handle == "ann@shop.test"))
    assert ann is not None and ann.contact.name == "Ann Archer"
    assert {(i.channel, i.handle) for i in ann.contact.identities} == {
        ("email", "ann@shop.test"),
        ("instagram", "ann.archer"),
    }
    assert ann.contact.attributes == {
        "phone": "+491701234567",
        "Loyalty tier": "gold",
        "Notes": "likes\nexpress shipping",
    }
    session.refresh(carla)
    assert carla.attributes["E-Mail (invalid)"] == "carla(at)shop.test"  # merged by phone; the bad cell kept
    assert carla.attributes["Notes"] == 'says "hi"'
    eve_contact = session.get(Contact, eve.contact_id)
    assert eve_contact is not None and eve_contact.attributes["Loyalty tier"] == "platinum"
    dan = session.scalar(select(Identity).where(Identity.handle == "dan@shop.test"))
    assert dan is not None and dan.contact.attributes["extra_1"] == "surplus cell"

    again = cc.import_rows(session, parsed, cc.guess_mapping(parsed.headers))
    assert again.created == 0 and again.updated == 0  # importing the same file twice changes nothing


def test_row_matching_two_contacts_is_reported_not_guessed(session: Session) -> None:
    inbox = factories.make_inbox(session)
    a = ingest(session, inbox.id, factories.inbound(handle="a@shop.test"))
    b = ingest(session, inbox.id, factories.inbound(channel="telegram", handle="777", message_id=None))
    assert a is not None and b is not None
    parsed = cc.parse_csv(b"email,telegram\na@shop.test,777\n")
    report = cc.import_rows(session, parsed, ["email", "telegram"])
    assert report.skipped and "matches several contacts" in report.skipped[0].reason


def test_export_round_trips_and_defuses_formulas(session: Session) -> None:
    inbox = factories.make_inbox(session)
    msg = ingest(session, inbox.id, factories.inbound(handle="x@shop.test", display_name='=HYPERLINK("evil")'))
    assert msg is not None
    session.commit()
    text = "".join(cc.export_contacts(session))
    rows = list(csv.DictReader(io.StringIO(text.lstrip("\ufeff"))))
    row = next(r for r in rows if r["email"] == "x@shop.test")
    assert row["name"].startswith("'=")
    tickets = list(csv.DictReader(io.StringIO("".join(cc.export_tickets(session)).lstrip("\ufeff"))))
    assert any(t["contact_email"] == "x@shop.test" and t["inbox"] == inbox.name for t in tickets)
    parsed = cc.parse_csv(text.encode())
    mapping = cc.guess_mapping(parsed.headers)
    assert mapping[:7] == ["ignore", "name", "email", "phone", "telegram", "instagram", "attribute"]
    assert cc.import_rows(session, parsed, ["ignore", "ignore", "email", *(["ignore"] * 6)]).created == 0
