"""render_reply: threading headers, token, parts, and no header injection whatever the agent or customer typed."""

from __future__ import annotations

import datetime as dt
from email import message_from_bytes, policy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Outbound, OutboundAttachment
from connectors.email import RenderError, render_reply

DATE = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
EXPECTED_HEADERS = {
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
}


def outbound(**overrides: object) -> Outbound:
    values: dict[str, object] = {
        "message_id": 9,
        "ticket_id": 42,
        "channel": "email",
        "to_handle": "ann@example.com",
        "to_name": "Ann Customer",
        "from_address": "support@shop.test",
        "from_name": "Shop Support",
        "subject": "Order 1001 is late",
        "text": "Hello Ann,\nit ships today.",
        "html": "<p>Hello Ann,</p><p>it ships <b>today</b>.</p><script>x</script>",
        "message_id_header": "<ticket-42.9.abcd@shop.test>",
        "in_reply_to": "<c2@example.com>",
        "references": ("<c1@example.com>", "<ticket-42.7.ffff@shop.test>"),
    }
    values.update(overrides)
    return Outbound(**values)  # type: ignore[arg-type]


def reparse(raw: bytes):  # type: ignore[no-untyped-def]
    return message_from_bytes(raw, policy=policy.default)


def test_reply_threads_and_carries_the_token() -> None:
    msg = reparse(render_reply(outbound(), date=DATE).as_bytes())
    assert msg["Subject"] == "Re: Order 1001 is late [#42]"
    assert msg["Message-ID"] == "<ticket-42.9.abcd@shop.test>"
    assert msg["In-Reply-To"] == "<c2@example.com>"
    assert msg["References"].split() == ["<c1@example.com>", "<ticket-42.7.ffff@shop.test>", "<c2@example.com>"]
    assert str(msg["From"]) == "Shop Support <support@shop.test>"
    assert msg["Auto-Submitted"] is None
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").strip() == "Hello Ann,\nit ships today."
    html = msg.get_body(("html",)).get_content()
    assert "<b>today</b>" in html and "script" not in html


def test_automatic_mail_is_marked_and_attachments_survive() -> None:
    ob = outbound(
        auto_generated=True, attachments=(OutboundAttachment("Lieferschein März.pdf", "application/pdf", b"%PDF"),)
    )
    msg = reparse(render_reply(ob, date=DATE).as_bytes())
    assert msg["Auto-Submitted"] == "auto-generated"
    [att] = list(msg.iter_attachments())
    assert att.get_filename() == "Lieferschein März.pdf" and att.get_content() == b"%PDF"


def test_bad_addresses_and_message_ids_are_refused() -> None:
    with pytest.raises(RenderError):
        render_reply(outbound(to_handle="ann@example.com\r\nBcc: eve@evil.test"), date=DATE)
    with pytest.raises(RenderError):
        render_reply(outbound(to_handle="ann@example.com, eve@evil.test"), date=DATE)
    msg = reparse(render_reply(outbound(in_reply_to="<x>\r\nBcc: eve@evil.test", references=()), date=DATE).as_bytes())
    assert msg["In-Reply-To"] is None and msg["References"] is None


_PIECES = [
    "a",
    "Z",
    " ",
    "\r",
    "\n",
    "\r\n",
    ":",
    "=?",
    "?=",
    "utf-8?q?",
    "=0D=0A",
    "Bcc: eve@evil.test",
    "ü",
    "\t",
    "<",
    ">",
    "@",
    ",",
    '"',
    "\x00",
    "\x0b",
    "\u2028",
    "=?utf-8?q?x=0D=0ABcc:_e@evil.test?=",
]
hostile = st.lists(st.sampled_from(_PIECES), max_size=20).map("".join)


@settings(max_examples=200, deadline=None)
@given(subject=hostile, to_name=hostile, from_name=hostile, filename=hostile)
def test_no_header_injection_from_any_text(subject: str, to_name: str, from_name: str, filename: str) -> None:
    ob = outbound(
        subject=subject,
        to_name=to_name,
        from_name=from_name,
        attachments=(OutboundAttachment(filename or "f", "text/plain", b"data"),),
    )
    raw = render_reply(ob, date=DATE).as_bytes()
    msg = reparse(raw)
    assert set(msg.keys()) == EXPECTED_HEADERS
    assert [a.addr_spec for a in msg["To"].addresses] == ["ann@example.com"]
    assert [a.addr_spec for a in msg["From"].addresses] == ["support@shop.test"]
    assert "\n" not in str(msg["Subject"]) and "\r" not in str(msg["Subject"])
    parts = list(msg.iter_attachments())
    assert len(parts) == 1 and set(parts[0].keys()) <= {
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
    }
    assert "\n" not in (parts[0].get_filename() or "")
