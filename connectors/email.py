"""Email: raw RFC 5322 bytes to ``Inbound`` values, and agent replies to RFC 5322 messages.

Parsing uses the standard ``email`` package. The MIME tree is read with the ``compat32`` parser (about six times
faster than ``policy.default`` on support mail, see docs/benchmarks.md), and the few headers we need are decoded
with ``policy.default``'s header classes (RFC 2047/2231/5322, RFC 6532 UTF-8), so no header is decoded twice or
for nothing. Rendering uses ``policy.SMTP``, which refuses CR/LF inside header values. Pure functions: no network,
database or clock. References: RFC 5322, RFC 2045-2049, RFC 3834 (auto-replies), RFC 3464 (DSNs).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import quopri
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser, BytesParser
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from typing import Any

from connectors.base import Outbound
from connectors.email_html import SafeHtml, html_to_text, resolve_cid, sanitize_html
from inbox.ingest import Inbound, InboundAttachment

__all__ = [
    "BounceInfo",
    "SafeHtml",
    "fold_quoted",
    "html_to_text",
    "original_html",
    "parse_email",
    "render_reply",
    "resolve_cid",
    "sanitize_html",
]

_PARSER = BytesParser(policy=policy.compat32)
_HEADER_FACTORY = policy.default.header_factory
_MSGID = re.compile(r"<([^<>\s]+)>")
_TOKEN_SUBJECT = re.compile(r"\[#(\d{1,12})\]")
_TOKEN_PLUS = re.compile(r"^([^+@\s]+)\+t(\d{1,12})@(.+)$", re.I)
_VERP = re.compile(r"^[^+@\s]+\+(b\d{1,12}|verp-[A-Za-z0-9]+)@", re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_DSN_STATUS = re.compile(r"^Status:\s*([245])\.(\d{1,3})\.(\d{1,3})", re.I | re.M)
_DSN_ACTION = re.compile(r"^Action:\s*(\w+)", re.I | re.M)
_DSN_DIAG = re.compile(r"^Diagnostic-Code:\s*(.+(?:\n[ \t].+)*)", re.I | re.M)
_DSN_RECIPIENT = re.compile(r"^Final-Recipient:\s*[^;]*;\s*(\S+)", re.I | re.M)
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply"}
_DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "mailer_daemon"}
# Charsets as browsers read them (WHATWG): supersets that decode what the label promises and more.
_CHARSET_ALIASES = {
    "us-ascii": "cp1252",
    "ascii": "cp1252",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "shift_jis": "cp932",
    "x-sjis": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "ks_c_5601-1987": "cp949",
    "euc-kr": "cp949",
    "tis-620": "cp874",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
}


@dataclass(frozen=True)
class BounceInfo:
    """What a delivery status notification says about a mail we sent."""

    kind: str  # "hard" (5.x.x, failed) or "soft" (4.x.x, delayed)
    original_message_id: str | None
    status: str = ""
    recipients: tuple[str, ...] = ()
    diagnostic: str = ""
    verp: str | None = None  # the plus-tag of a VERP return address, e.g. "b123" (our message 123)

    def as_meta(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "original_message_id": self.original_message_id,
            "status": self.status,
            "recipients": list(self.recipients),
            "diagnostic": self.diagnostic,
            "verp": self.verp,
        }


@dataclass
class _Body:
    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    attachments: list[InboundAttachment] = field(default_factory=list)


# --- headers -------------------------------------------------------------------------------------------------


def _as_text(value: str) -> str:
    """Undo the parser's surrogate escapes: raw 8-bit header bytes are UTF-8 (RFC 6532) or, failing that, cp1252."""
    if value.isascii() or not _SURROGATE.search(value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def _unfold(value: str) -> str:
    return re.sub(r"\r?\n(?=[ \t])", "", value).replace("\r", "").replace("\n", " ").strip()


def _headers(msg: Message) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in msg.raw_items():
        found.setdefault(name.lower(), []).append(_unfold(_as_text(str(value))))
    return found


def _first(headers: Mapping[str, list[str]], name: str) -> str:
    values = headers.get(name)
    return values[0] if values else ""


_SURROGATE = re.compile("[\udc80-\udcff]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?\s]*)\?=")


def _decode_unstructured(value: str) -> str:
    if "=?" not in value:
        return value
    try:
        decoded = str(_HEADER_FACTORY("subject", value))
    except Exception:  # noqa: BLE001 - hostile encoded words must never stop an import
        decoded = value
    if "=?" in decoded:
        decoded = _ENCODED_WORD.sub(_lenient_word, decoded)
    return decoded


def _lenient_word(match: re.Match[str]) -> str:
    """Decode an encoded word the strict parser left alone (raw 8-bit inside it, bad padding)."""
    charset, kind, payload = match.group(1).split("*", 1)[0], match.group(2).upper(), match.group(3)
    data = payload.encode("cp1252", "replace")
    try:
        if kind == "Q":
            data = quopri.decodestring(data.replace(b"_", b" "), header=True)
        else:
            data = base64.b64decode(data + b"=" * (-len(data) % 4))
    except (ValueError, binascii.Error):
        return match.group(0)
    return decode_bytes(data, charset)


def _clean_line(value: str) -> str:
    return " ".join(_CONTROL.sub(" ", value).split())


def _addresses(value: str) -> list[tuple[str, str]]:
    """(display name, address) pairs; policy.default first, the forgiving ``getaddresses`` as the fallback."""
    if not value:
        return []
    if value.isascii() and "=?" not in value:
        # Plain ASCII lists: the stdlib's regex-based parser agrees with policy.default here, at a tenth the cost.
        pairs = getaddresses([value])
        if all("@" in a and not _CONTROL.search(a + n) for n, a in pairs):
            return [(_clean_line(n), a.strip("<>").lower()) for n, a in pairs if a]
    try:
        header = _HEADER_FACTORY("to", value)
        pairs = [(a.display_name, a.addr_spec) for a in header.addresses]
    except Exception:  # noqa: BLE001
        pairs = []
    if not any("@" in addr for _, addr in pairs):
        pairs = [(_decode_unstructured(n), a) for n, a in getaddresses([value])]
    elif len(pairs) == 1 and not pairs[0][0] and "(" in value:
        # "MAILER-DAEMON@host (Mail Delivery System)": the old comment form of a display name.
        pairs = [(_decode_unstructured(parseaddr(value)[0]), pairs[0][1])]
    return [(_clean_line(n), _clean_line(a).strip("<>").lower()) for n, a in pairs if a and "@" in a]


def _message_ids(value: str) -> list[str]:
    ids = [f"<{m}>" for m in _MSGID.findall(value)]
    if not ids and value.strip() and " " not in value.strip() and "@" in value:
        ids = [f"<{value.strip().strip('<>')}>"]  # some clients drop the angle brackets
    return [i[:500] for i in ids]


def _date(value: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # "-0000": UTC with no claim about the sender's zone (RFC 5322 3.3)
    return when if 1971 <= when.year <= 2200 else None


# --- bodies --------------------------------------------------------------------------------------------------


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode text in the declared charset (browser-style aliases), falling back to UTF-8 and then cp1252."""
    name = (charset or "").strip().strip('"').lower()
    for candidate in (_CHARSET_ALIASES.get(name, name), "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate).replace("\x00", "")
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("cp1252", "replace").replace("\x00", "")


_UU_ENCODINGS = {"x-uuencode", "uuencode", "x-uue", "uue"}


def _uudecode(data: bytes) -> bytes:
    """Decode uuencoded lines, with or without the ``begin`` line (the stdlib insists on it)."""
    out = []
    for line in data.splitlines():
        if line.startswith(b"begin ") or not line.strip():
            continue
        if line.strip() in (b"end", b"`"):
            break
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            # Some encoders pad lines wrongly; decode only the bytes the length character announces.
            nbytes = (((line[0] - 32) & 63) * 4 + 5) // 3
            try:
                out.append(binascii.a2b_uu(line[:nbytes]))
            except binascii.Error:
                return data
    return b"".join(out)


def _payload_bytes(part: Message) -> bytes:
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    payload = part.get_payload()
    if cte in _UU_ENCODINGS and isinstance(payload, str):
        return _uudecode(payload.encode("utf-8", "surrogateescape"))
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a broken transfer encoding keeps the raw payload
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    if isinstance(raw, str):
        return raw.encode("utf-8", "surrogateescape")
    return b""


def _message_bytes(part: Message) -> bytes:
    inner = part.get_payload()
    if isinstance(inner, list):
        chunks = []
        for sub in inner:
            if not isinstance(sub, Message):
                continue
            try:
                chunks.append(sub.as_bytes())
            except Exception:  # noqa: BLE001
                chunks.append(str(sub).encode("utf-8", "surrogateescape"))
        return b"\n".join(chunks)
    return _payload_bytes(part)


def _filename(part: Message) -> str:
    try:
        name = part.get_filename() or part.get_param("name") or ""
    except Exception:  # noqa: BLE001
        name = ""
    if isinstance(name, tuple):  # an RFC 2231 value the stdlib could not collapse
        name = name[2]
    name = _decode_unstructured(_as_text(str(name)))
    return _clean_line(name).replace("/", "_").replace("\\", "_")[:250]


def _attachment(part: Message, ctype: str, *, inline: bool = False) -> InboundAttachment:
    if ctype.startswith("message/") or ctype == "text/rfc822-headers":
        data = _message_bytes(part)
    else:
        data = _payload_bytes(part)
    cid = part.get("Content-ID")
    content_id = _clean_line(str(cid)).strip("<>")[:300] if cid else None
    name = _filename(part)
    if not name:
        name = _default_name(part, ctype)
    return InboundAttachment(
        filename=name, content_type=ctype, data=data, content_id=content_id, inline=inline and bool(content_id)
    )


def _default_name(part: Message, ctype: str) -> str:
    if ctype == "message/rfc822":
        inner = part.get_payload()
        subject = ""
        if isinstance(inner, list) and inner and isinstance(inner[0], Message):
            subject = _clean_line(_decode_unstructured(_as_text(str(inner[0].get("Subject", "")))))
        return f"{subject[:100] or 'forwarded message'}.eml"
    if ctype == "message/delivery-status":
        return "delivery-status.txt"
    if ctype == "text/rfc822-headers":
        return "returned-headers.txt"
    return "attachment" + {"text/calendar": ".ics", "application/ms-tnef": ".dat"}.get(ctype, "")


def _collect(part: Message, body: _Body) -> None:
    ctype = part.get_content_type()
    maintype = ctype.split("/", 1)[0]
    if maintype == "message" or ctype == "text/rfc822-headers":
        body.attachments.append(_attachment(part, ctype))  # forwarded mail and DSN parts stay whole
        return
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if ctype == "multipart/alternative":
            _collect_alternative(children, body)
        elif ctype == "multipart/related" and children:
            _collect(children[0], body)  # the root; the rest are resources it refers to by cid:
            for child in children[1:]:
                _collect_resource(child, body)
        else:
            for child in children:
                _collect(child, body)
        return
    disposition = (part.get_content_disposition() or "").lower()
    if disposition == "attachment" or (ctype not in ("text/plain", "text/html") and maintype != "multipart"):
        body.attachments.append(_attachment(part, ctype, inline=disposition == "inline"))
    elif body.plain and ctype == "text/plain" and _filename(part):
        body.attachments.append(_attachment(part, ctype))  # a named text file after the body, e.g. a log
    else:
        text = decode_bytes(_payload_bytes(part), part.get_content_charset())
        (body.html if ctype == "text/html" else body.plain).append(text)


def _collect_alternative(children: list[Message], body: _Body) -> None:
    """Keep the richest plain and the richest HTML alternative; attachments of every alternative survive."""
    plain: list[str] = []
    html: list[str] = []
    for child in children:
        sub = _Body()
        _collect(child, sub)
        if sub.plain and not sub.html:
            plain = sub.plain
        if sub.html:
            html = sub.html
            plain = plain or sub.plain
        body.attachments.extend(sub.attachments)
    body.plain.extend(plain)
    body.html.extend(html)


def _collect_resource(part: Message, body: _Body) -> None:
    if part.is_multipart():
        _collect(part, body)
        return
    body.attachments.append(_attachment(part, part.get_content_type(), inline=True))


# --- loops and bounces ---------------------------------------------------------------------------------------


def auto_reasons(headers: Mapping[str, list[str]], content_type: str, sender: str) -> list[str]:
    """Why a message is machine-made (RFC 3834 and the headers mail systems really send); empty for humans."""
    reasons = []
    auto = _first(headers, "auto-submitted").lower()
    if auto and not auto.startswith("no"):
        reasons.append(f"auto-submitted: {auto}")
    precedence = _first(headers, "precedence").lower()
    if precedence in _BULK_PRECEDENCE:
        reasons.append(f"precedence: {precedence}")
    for name in ("x-auto-response-suppress", "x-autoreply", "x-autorespond", "x-auto-reply", "x-loop"):
        if name in headers:
            reasons.append(name)
    if any(name in headers for name in ("list-id", "list-unsubscribe", "list-post")):
        reasons.append("mailing list")
    if "return-path" in headers and _first(headers, "return-path").strip() in ("<>", ""):
        reasons.append("null return path")
    if content_type == "multipart/report":
        reasons.append("delivery report")
    if sender.split("@", 1)[0] in _DAEMONS:
        reasons.append("mailer daemon")
    return reasons


def _bounce(msg: Message, headers: Mapping[str, list[str]], sender: str) -> BounceInfo | None:
    is_report = msg.get_content_type() == "multipart/report"
    if not is_report and sender.split("@", 1)[0] not in _DAEMONS:
        return None
    status_text, original = "", None
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            status_text += _message_bytes(part).decode("utf-8", "replace") + "\n"
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original is None:
            original = _returned_message_id(part, ctype)
    match = _DSN_STATUS.search(status_text)
    action_match = _DSN_ACTION.search(status_text)
    action = action_match.group(1).lower() if action_match else ""
    if match is None and not action and not is_report:
        return None  # a postmaster writing by hand
    soft = (match is not None and match.group(1) == "4") or action == "delayed"
    diag = _DSN_DIAG.search(status_text)
    return BounceInfo(
        kind="soft" if soft else "hard",
        original_message_id=original,
        status=".".join(match.groups()) if match else "",
        recipients=tuple(_DSN_RECIPIENT.findall(status_text)),
        diagnostic=_clean_line(diag.group(1))[:500] if diag else "",
        verp=_verp_tag(headers),
    )


def _returned_message_id(part: Message, ctype: str) -> str | None:
    if ctype == "message/rfc822":
        inner = part.get_payload()
        first = inner[0] if isinstance(inner, list) and inner else None
        value = str(first.get("Message-ID", "")) if isinstance(first, Message) else ""
    else:
        value = str(BytesHeaderParser(policy=policy.compat32).parsebytes(_payload_bytes(part)).get("Message-ID", ""))
    ids = _message_ids(_unfold(value))
    return ids[0] if ids else None


def _verp_tag(headers: Mapping[str, list[str]]) -> str | None:
    for name in ("delivered-to", "x-original-to", "envelope-to", "to"):
        for value in headers.get(name, []):
            for _, addr in _addresses(value):
                match = _VERP.match(addr)
                if match:
                    return match.group(1).lower()
    return None


# --- the parser ----------------------------------------------------------------------------------------------


def external_id_for(message_id: str | None, raw_sha256: str) -> str:
    """Message-ID plus the raw hash: a mail without Message-ID imports once, two mails sharing one are both kept."""
    return f"{raw_sha256}:{message_id or ''}"[:500]


def ticket_token(subject: str, recipients: Iterable[str], own_addresses: Iterable[str] = ()) -> int | None:
    """The ticket number in ``[#123]`` or in ``support+t123@``; routing accepts it only from a ticket's contact."""
    match = _TOKEN_SUBJECT.search(subject)
    if match:
        return int(match.group(1))
    own = {a.lower() for a in own_addresses}
    for addr in recipients:
        plus = _TOKEN_PLUS.match(addr)
        if plus and (not own or f"{plus.group(1)}@{plus.group(3)}".lower() in own):
            return int(plus.group(2))
    return None


def parse_email(raw: bytes, *, own_addresses: Iterable[str] = (), allow_remote: bool = False) -> Inbound:
    """Turn one raw message into an Inbound; never raises for malformed mail a real server could hold."""
    raw_sha256 = hashlib.sha256(raw).hexdigest()
    msg = _parse_tolerant(raw)
    headers = _headers(msg)
    own = {a.lower() for a in own_addresses}
    senders = _addresses(_first(headers, "from")) or _addresses(_first(headers, "sender"))
    display_name, sender = senders[0] if senders else ("", "")
    to = [a for v in headers.get("to", []) for _, a in _addresses(v)]
    cc = [a for v in headers.get("cc", []) for _, a in _addresses(v)]
    envelope = [a for n in ("delivered-to", "x-original-to") for v in headers.get(n, []) for _, a in _addresses(v)]
    subject = _clean_line(_decode_unstructured(_first(headers, "subject")))
    message_ids = _message_ids(_first(headers, "message-id"))
    message_id = message_ids[0] if message_ids else None
    references = _reference_chain(headers, message_id)
    body = _Body()
    _collect(msg, body)
    text, html, blocked = _render_body(body, allow_remote)
    reasons = auto_reasons(headers, msg.get_content_type(), sender)
    bounce = _bounce(msg, headers, sender)
    meta: dict[str, Any] = {"to": to[:50], "cc": cc[:50]}  # a list mail to thousands stays a small row
    reply_to = _addresses(_first(headers, "reply-to"))
    if reply_to:
        meta["reply_to"] = reply_to[0][1]
    if reasons:
        meta["auto_reasons"] = reasons
    if blocked:
        meta["remote_content_blocked"] = blocked
    if bounce is not None:
        meta["bounce"] = bounce.as_meta()
        if bounce.original_message_id:
            references = (bounce.original_message_id, *[r for r in references if r != bounce.original_message_id])
    if sender in own:
        # Our own mail (a Sent copy, an agent answering from a mail client): the customer is the recipient.
        meta["from_inbox"] = True
        reasons.append("sent by the inbox")
        others = [a for a in to + cc if a not in own]
        display_name, sender = "", others[0] if others else sender
    if not sender:
        meta["sender_unknown"] = _first(headers, "from")[:300]
        sender = "unknown-sender@invalid"
    if msg.defects:
        meta["defects"] = sorted({type(d).__name__ for d in msg.defects})
    return Inbound(
        channel="email",
        external_id=external_id_for(message_id, raw_sha256),
        handle=sender,
        display_name=display_name[:200],
        text=text,
        html=html,
        subject=subject[:500],
        sent_at=_date(_first(headers, "date")),
        message_id=message_id,
        references=references,
        ticket_token=ticket_token(subject, to + cc + envelope, own),
        attachments=tuple(body.attachments),
        raw_sha256=raw_sha256,
        is_auto=bool(reasons),
        meta=meta,
    )


_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.M)


def _parse_tolerant(raw: bytes) -> Message:
    """Parse; when junk before the first header line hides every header, skip the junk (as mail-parser does)."""
    msg = _PARSER.parsebytes(raw)
    if len(msg) == 0 and raw[:1] not in (b"\r", b"\n"):
        first = _HEADER_LINE.search(raw)
        if first is not None and 0 < first.start() < 1000:
            msg = _PARSER.parsebytes(raw[first.start() :])
    return msg


def _reference_chain(headers: Mapping[str, list[str]], own_id: str | None) -> tuple[str, ...]:
    """In-Reply-To first, then References newest first (the order routing tries them in)."""
    chain = _message_ids(_first(headers, "in-reply-to"))
    chain += list(reversed(_message_ids(" ".join(headers.get("references", [])))))
    return tuple(r for r in dict.fromkeys(chain) if r != own_id)[:100]


def _render_body(body: _Body, allow_remote: bool) -> tuple[str, str | None, int]:
    text = "\n\n".join(p.strip("\r\n") for p in body.plain if p.strip()).replace("\r\n", "\n")
    if not body.html:
        return text, None, 0
    safe = sanitize_html("\n".join(body.html), allow_remote=allow_remote)
    return text or html_to_text(safe.html), safe.html, safe.blocked


def original_html(raw: bytes, *, allow_remote: bool = True) -> str | None:
    """The sanitised HTML again from the raw source, with remote images when the agent asked to load them."""
    return parse_email(raw, allow_remote=allow_remote).html


def fold_quoted(text: str, languages: Iterable[str] = ("en", "de", "fr", "es", "it", "nl", "pl")) -> tuple[str, str]:
    """Split a body into what the sender wrote now and what is folded away (quotes, earlier mails, signature)."""
    from mailparser_reply import EmailReplyParser  # imported lazily: only the UI needs it

    body = text.strip().replace("\r\n", "\n")
    signature = re.search(r"\n-- ?\n", body)  # RFC 3676 4.3 signature separator
    head = body[: signature.start()] if signature else body
    try:
        latest = (EmailReplyParser(languages=list(languages)).parse_reply(text=head) or "").strip()
    except Exception:  # noqa: BLE001 - the full text is always shown when the reply parser gives up
        latest = head
    if not latest or not head.startswith(latest):
        latest = head  # the parser rewrote the text: never show something the sender didn't write
    folded = body[len(latest) :].strip("\n")
    return (latest, folded) if latest else (text, "")


# --- rendering -----------------------------------------------------------------------------------------------

# Headers are not folded below RFC 5322's hard limit: the stdlib's folder drops the quotes around a display name
# with specials when it has to split it (found by the property test in tests/email/test_render.py), which would
# turn "x@evil.test" inside a name into a recipient. Names are cut to 200 characters, so they never need folding.
_SMTP = policy.SMTP.clone(max_line_length=998)
_STRICT_MSGID = re.compile(r"^<[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.\[\]:_-]+>$")
_ADDR = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+$|^[^\s@<>,;\"]+@[^\s@<>,;\"]+$")


class RenderError(ValueError):
    """The reply cannot be rendered safely (a malformed address): a permanent failure for the message."""


def _safe_text(value: str) -> str:
    # CR, LF, bare CR and other controls never reach a header; encoded-word look-alikes lose their "=?" so a
    # client that decodes them cannot be tricked into showing (or a gateway into emitting) a second header.
    return _clean_line(value).replace("=?", "= ?")


def _safe_address(addr: str, name: str = "") -> Address:
    addr = addr.strip()
    if not _ADDR.match(addr) or _CONTROL.search(addr):
        raise RenderError(f"not a safe mail address: {addr!r}")
    local, _, domain = addr.rpartition("@")
    return Address(display_name=_safe_text(name)[:200], username=local, domain=domain)


def _safe_ids(ids: Iterable[str | None]) -> list[str]:
    return [i for i in dict.fromkeys(i.strip() for i in ids if i) if _STRICT_MSGID.match(i)]


def reply_subject(subject: str, ticket_id: int) -> str:
    subject = _safe_text(subject) or f"Ticket {ticket_id}"
    if not re.match(r"^(re|aw|sv|antw)\s*:", subject, re.I):
        subject = f"Re: {subject}"
    token = f"[#{ticket_id}]"
    return subject if token in subject else f"{subject} {token}"


def render_reply(outbound: Outbound, *, date: dt.datetime, message_id: str | None = None) -> EmailMessage:
    """Build the RFC 5322 message for an agent's (or an automatic) reply; header values cannot inject headers."""
    msg = EmailMessage(policy=_SMTP)
    msg["From"] = _safe_address(outbound.from_address, outbound.from_name)
    msg["To"] = _safe_address(outbound.to_handle, outbound.to_name)
    msg["Subject"] = reply_subject(outbound.subject, outbound.ticket_id)
    msg["Date"] = date
    own_id = _safe_ids([message_id or outbound.message_id_header])
    if not own_id:
        raise RenderError(f"no valid Message-ID for message {outbound.message_id}")
    msg["Message-ID"] = own_id[0]
    parent = _safe_ids([outbound.in_reply_to])
    refs = _safe_ids([*outbound.references, *parent])
    if parent:
        msg["In-Reply-To"] = parent[0]
    if refs:
        # RFC 5322 3.6.4: keep the thread's first id and the most recent ones when the chain grows long.
        msg["References"] = " ".join(refs if len(refs) <= 20 else [refs[0], *refs[-19:]])
    if outbound.auto_generated:
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    msg.set_content(outbound.text.replace("\r\n", "\n"))
    if outbound.html:
        msg.add_alternative(sanitize_html(outbound.html, allow_remote=True).html, subtype="html")
    for att in outbound.attachments:
        maintype, _, subtype = (att.content_type or "application/octet-stream").partition("/")
        if not subtype or _CONTROL.search(att.content_type):
            maintype, subtype = "application", "octet-stream"
        name = _safe_text(att.filename).replace("/", "_").replace("\\", "_") or "attachment"
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype, filename=name)
    return msg
