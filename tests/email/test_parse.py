"""parse_email on hand-built mail: threading headers, tokens, loops, bounces, bodies, attachments."""

from __future__ import annotations

import hashlib

from connectors.email import external_id_for, fold_quoted, parse_email, sanitize_html, ticket_token
from tests.email.conftest import mail


def test_headers_are_decoded_and_the_sender_is_the_customer() -> None:
    raw = mail(sender="=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen@Example.COM>", subject="=?iso-8859-1?q?Gr=FC=DFe?=")
    got = parse_email(raw)
    assert (got.handle, got.display_name, got.subject) == ("juergen@example.com", "Jürgen Müller", "Grüße")
    assert got.sent_at is not None and got.sent_at.isoformat() == "2026-11-20T09:30:00+00:00"
    assert got.text.strip() == "Where is my parcel?" and got.html is None and not got.is_auto


def test_references_are_in_reply_to_first_then_newest_first() -> None:
    raw = mail(message_id="<c@x>", in_reply_to="<b@x>", references="<root@x> <a@x> <b@x>")
    got = parse_email(raw)
    assert got.message_id == "<c@x>"
    assert got.references == ("<b@x>", "<a@x>", "<root@x>")


def test_external_id_is_message_id_plus_raw_hash() -> None:
    without_id = mail(message_id="")
    got = parse_email(without_id)
    assert got.message_id is None
    assert got.external_id == external_id_for(None, hashlib.sha256(without_id).hexdigest())
    assert parse_email(without_id).external_id == got.external_id  # the same bytes import once
    one, two = mail(message_id="<same@x>", body="first"), mail(message_id="<same@x>", body="second")
    assert parse_email(one).external_id != parse_email(two).external_id  # both kept


def test_ticket_token_from_subject_or_plus_address_only() -> None:
    assert parse_email(mail(subject="Re: Order late [#1234]")).ticket_token == 1234
    own = ("support@shop.test",)
    assert parse_email(mail(to="support+t77@shop.test"), own_addresses=own).ticket_token == 77
    assert parse_email(mail(to="other+t77@elsewhere.test"), own_addresses=own).ticket_token is None
    assert parse_email(mail(subject="Order #1234 late")).ticket_token is None  # never a bare number
    assert ticket_token("x", ["support+t5@shop.test"]) == 5


def test_loop_headers_mark_mail_as_automatic() -> None:
    cases = {
        "Auto-Submitted": "auto-replied",
        "Precedence": "bulk",
        "X-Auto-Response-Suppress": "All",
        "X-Autoreply": "yes",
        "X-Loop": "support@shop.test",
        "List-Id": "<news.shop.test>",
    }
    for name, value in cases.items():
        got = parse_email(mail(headers={name: value}))
        assert got.is_auto, name
        assert got.meta["auto_reasons"], name
    assert not parse_email(mail(headers={"Auto-Submitted": "no"})).is_auto
    assert parse_email(mail(headers={"Return-Path": "<>"})).is_auto


def test_mail_from_the_inbox_itself_is_never_a_customer() -> None:
    raw = mail(sender="Support <support@shop.test>", to="Ann <ann@example.com>")
    got = parse_email(raw, own_addresses=("support@shop.test",))
    assert got.handle == "ann@example.com" and got.is_auto and got.meta["from_inbox"]


def test_html_is_sanitised_and_remote_content_blocked() -> None:
    html = (
        '<p onclick="x()">Hello<script>alert(1)</script></p><img src="https://track.test/p.gif">'
        '<img src="cid:logo@x"><a href="javascript:alert(1)">bad</a><svg><script>alert(2)</script></svg>'
        '<div style="background:url(https://track.test/bg)">b</div><meta http-equiv="refresh" content="0;url=x">'
    )
    got = parse_email(mail(body="plain version", html=html))
    assert got.html is not None
    for bad in ("script", "onclick", "track.test", "javascript", "svg", "refresh", "url("):
        assert bad not in got.html
    assert 'src="cid:logo@x"' in got.html
    assert got.meta["remote_content_blocked"] == 2
    assert got.text.strip() == "plain version"
    remote = parse_email(mail(body="plain version", html=html), allow_remote=True)
    assert "https://track.test/p.gif" in (remote.html or "") and "script" not in (remote.html or "")


def test_html_only_mail_gets_a_plain_text_derivation() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: form\r\nContent-Type: text/html; charset=windows-1252\r\n\r\n"
        b"<p>Caf\xe9 &amp; more</p><p>Line two<br>three</p>"
    )
    got = parse_email(raw)
    assert got.text == "Café & more\n\nLine two\nthree"


def test_attachments_inline_images_forwarded_mail_and_winmail_dat() -> None:
    forwarded = mail(subject="the original", body="forwarded text")
    raw = mail(
        attachments=[
            ("Rechnung März.pdf", "application/pdf", b"%PDF-1.4 fake"),
            ("winmail.dat", "application/ms-tnef", b"\x78\x9f\x3e\x22"),
        ]
    )
    got = parse_email(raw)
    assert [(a.filename, a.content_type, a.data) for a in got.attachments] == [
        ("Rechnung März.pdf", "application/pdf", b"%PDF-1.4 fake"),
        ("winmail.dat", "application/ms-tnef", b"\x78\x9f\x3e\x22"),
    ]
    rfc822 = (
        b"From: a@example.com\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee below\r\n'
        b"--b\r\nContent-Type: message/rfc822\r\n\r\n" + forwarded + b"\r\n--b--\r\n"
    )
    got = parse_email(rfc822)
    assert got.text.strip() == "see below"
    [att] = got.attachments
    assert att.content_type == "message/rfc822" and att.filename == "the original.eml"
    assert b"forwarded text" in att.data


def test_related_images_are_inline_with_their_content_id() -> None:
    raw = (
        b"From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: multipart/related; boundary=r\r\n\r\n"
        b'--r\r\nContent-Type: text/html\r\n\r\n<p>logo: <img src="cid:logo@x"></p>\r\n'
        b"--r\r\nContent-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"iVBORw0KGgo=\r\n--r--\r\n"
    )
    got = parse_email(raw)
    [img] = got.attachments
    assert (img.content_id, img.inline, img.data) == ("logo@x", True, b"\x89PNG\r\n\x1a\n")
    assert 'src="cid:logo@x"' in (got.html or "")


def test_charsets_decode_as_mail_clients_do() -> None:
    for charset, text in (
        ("iso-2022-jp", "お問い合わせ"),
        ("koi8-r", "Привет"),
        ("gb2312", "你好"),
        ("shift_jis", "注文"),
    ):
        raw = (
            f"From: a@example.com\r\nSubject: x\r\nContent-Type: text/plain; charset={charset}\r\n\r\n".encode()
            + text.encode(charset)
        )
        assert parse_email(raw).text == text, charset
    assert parse_email(b"From: a@example.com\r\nContent-Type: text/plain; charset=bogus\r\n\r\n\xc3\xa9").text == "é"


def test_garbage_never_raises() -> None:
    for raw in (
        b"",
        b"\x00\x01\x02",
        b"From:\r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary",
        b"x" * 5000,
    ):
        got = parse_email(raw)
        assert got.handle == "unknown-sender@invalid" or "@" in got.handle
        assert "\x00" not in got.text


def test_quoted_replies_fold_away_but_nothing_is_lost() -> None:
    text = "Thanks, it works now.\n\nOn Mon, 1 Jan 2026 at 10:00, Support <support@shop.test> wrote:\n> old text\n"
    latest, folded = fold_quoted(text)
    assert latest == "Thanks, it works now."
    assert "old text" in folded
    assert fold_quoted("just one line") == ("just one line", "")
    assert fold_quoted("Hi,\n\nthanks!\n\n-- \nAnn Smith\nShop Ltd\n") == ("Hi,\n\nthanks!", "-- \nAnn Smith\nShop Ltd")


HOSTILE_HTML = [
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">x</a>',
    '<a href="JaVaScRiPt:alert(1)">x</a>',
    '<a href="&#106;avascript:alert(1)">x</a>',
    '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>',
    '<div style="width: expression(alert(1))">x</div>',
    '<div style="background-image: url(javascript:alert(1))">x</div>',
    "<style>@import 'https://evil.test/x.css';</style>",
    '<svg><g onload="alert(1)"></g><script>alert(1)</script></svg>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<iframe src="https://evil.test"></iframe>',
    '<object data="https://evil.test/x.swf"></object>',
    '<form action="https://evil.test"><input name=p></form>',
    '<meta http-equiv="refresh" content="0;url=https://evil.test">',
    '<base href="https://evil.test/">',
    '<link rel=stylesheet href="https://evil.test/x.css">',
    '<img srcset="https://evil.test/a.png 1x">',
    '<table background="https://evil.test/bg.png"><tr><td>x</td></tr></table>',
    "<scr<script>ipt>alert(1)</script>",
    "<<script>script>alert(1)<</script>/script>",
    '<p title="</p><script>alert(1)</script>">x</p>',
    "<!--[if gte mso 9]><script>alert(1)</script><![endif]-->",
    '<video poster="https://evil.test/p.png"></video><audio src="https://evil.test/a.mp3"></audio>',
]


def test_hostile_html_never_survives_sanitising() -> None:
    for hostile in HOSTILE_HTML:
        got = parse_email(mail(body="text", html=f"<p>before</p>{hostile}<p>after</p>"))
        html = (got.html or "").lower()
        assert "before" in html, hostile
        for bad in (
            "<script",
            "onerror",
            "onload",
            "javascript:",
            "expression(",
            "evil.test",
            "<iframe",
            "<object",
            "<form",
            "<meta",
            "<base",
            "<link",
            "<svg",
            "<math",
            "srcset",
            "data:text",
        ):
            assert bad not in html, (hostile, bad, html)


def test_cid_images_resolve_only_to_this_messages_attachments() -> None:
    from connectors.email import resolve_cid

    safe = sanitize_html('<img src="cid:logo@x"><img src="cid:other@y"><img src="https://t.test/p.gif">').html
    out = resolve_cid(safe, {"logo@x": '/attachments/7?inline=1&sig=a"b'})
    assert 'src="/attachments/7?inline=1&amp;sig=a&quot;b"' in out
    assert "cid:" not in out and "t.test" not in out
