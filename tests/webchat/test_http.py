"""The widget's HTTP side: sessions, uploads with size and type limits, the loader, the frame, the demo shop."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from inbox.models import Attachment, Inbox, Message
from tests.web.live import LiveServer
from tests.webchat.conftest import SHOP, Widget, session_api

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n"


def upload(live: LiveServer, widget: Widget, token: str, name: str, data: bytes, ctype: str, **extra: str):
    form = {"inbox": widget.public_key, "token": token, "id": extra.pop("id", "upload-0001")} | extra
    return requests.post(
        f"{live.url}/widget/api/attachments", data=form, files={"file": (name, data, ctype)}, timeout=5
    )


def test_session_issues_a_token_and_keeps_a_valid_one(live: LiveServer, widget: Widget) -> None:
    first = session_api(live, widget).json()
    assert first["ok"] and first["token"].startswith("v_") and first["settings"]["title"]
    again = session_api(live, widget, token=first["token"]).json()
    assert again["token"] == first["token"]
    assert session_api(live, Widget(0, "no-such-inbox-key", "", 0, "")).status_code == 404


def test_attachments_within_limits_are_stored(app: Flask, live: LiveServer, make_widget: Callable[..., Widget]) -> None:
    widget = make_widget(max_attachment_bytes=1024)
    token = widget.token()
    ok = upload(live, widget, token, "photo.png", PNG, "image/png")
    assert ok.status_code == 200
    shown = ok.json()["attachment"]
    assert isinstance(shown.pop("id"), int) and shown == {"name": "photo.png", "type": "image/png"}
    assert upload(live, widget, token, "invoice.pdf", PDF, "application/pdf", id="upload-0002").status_code == 200
    # Resent after a lost answer: stored once.
    assert upload(live, widget, token, "photo.png", PNG, "image/png").json()["id"] == ok.json()["id"]
    too_big = upload(live, widget, token, "big.png", PNG + b"\x00" * 2000, "image/png", id="upload-0003")
    assert too_big.status_code == 413
    # Declared as an image, but HTML or SVG inside: refused by its bytes.
    for name, data in (("x.png", b"<html><script>alert(1)</script>"), ("x.svg", b"<svg onload=alert(1)/>")):
        assert upload(live, widget, token, name, data, "image/png", id="upload-0004").status_code == 415
    assert upload(live, widget, "v_forged.x", "photo.png", PNG, "image/png").status_code == 403
    evil = requests.post(
        f"{live.url}/widget/api/attachments",
        data={"inbox": widget.public_key, "token": token, "id": "upload-0005"},
        files={"file": ("p.png", PNG, "image/png")},
        headers={"Origin": "https://evil.example"},
        timeout=5,
    )
    assert evil.status_code == 403
    with app.extensions["helpline"].factory() as session:
        rows = session.scalars(select(Attachment).join(Message).where(Message.inbox_id == widget.inbox_id)).all()
        assert sorted((a.filename, a.content_type) for a in rows) == [
            ("invoice.pdf", "application/pdf"), ("photo.png", "image/png")
        ]
        att_id = rows[0].id
    # The visitor can fetch their own file; another visitor cannot.
    params = {"inbox": widget.public_key, "token": token}
    mine = requests.get(f"{live.url}/widget/api/attachments/{att_id}", params=params, timeout=5)
    assert mine.status_code == 200 and "sandbox" in mine.headers["Content-Security-Policy"]
    theirs = requests.get(
        f"{live.url}/widget/api/attachments/{att_id}", params=params | {"token": widget.token()}, timeout=5
    )
    assert theirs.status_code == 404
    # The widget sends the token in a header, which keeps it out of URLs and access logs.
    url = f"{live.url}/widget/api/attachments/{att_id}"
    by_header = requests.get(url, params={"inbox": widget.public_key}, headers={"X-Visitor-Token": token}, timeout=5)
    assert by_header.status_code == 200 and by_header.content in (PNG, PDF)
    assert requests.get(url, params={"inbox": widget.public_key}, timeout=5).status_code == 404


def test_minifying_the_widget_scripts_keeps_the_code() -> None:
    """rjsmin drops comments and layout, and keeps strings, regular expressions and templates as written (the
    browser tests run the minified widget in Chromium)."""
    from web.widget_assets import STATIC, compact_js

    source = """/* header
     * more */
    var a = "x // not a comment"; // gone
    var b = /\\/\\//.test(c); // a regular expression first
      // a whole-line comment
    var t = `a ${b} // kept`;
    call('it'); // gone too
    """
    out = compact_js(source)
    assert "header" not in out and "gone" not in out and "whole-line" not in out
    assert '"x // not a comment"' in out and "/\\/\\//.test(c)" in out and "`a ${b} // kept`" in out
    assert "call('it');" in out
    frame = (STATIC / "frame.js").read_text(encoding="utf-8")
    assert len(compact_js(frame)) < 0.9 * len(frame)


def test_loader_is_small_and_frame_is_framable_only_by_allowed_origins(live: LiveServer, widget: Widget) -> None:
    loader = requests.get(f"{live.url}/widget.js", timeout=5)
    assert loader.status_code == 200 and loader.headers["Content-Type"].startswith("application/javascript")
    frame = requests.get(f"{live.url}/widget/frame", params={"inbox": widget.public_key}, timeout=5)
    assert frame.status_code == 200
    csp = frame.headers["Content-Security-Policy"]
    assert f"frame-ancestors {SHOP} " in csp and "script-src 'self'" in csp
    total = len(loader.content)
    for src in ("/widget/frame.js", "/static/vendor/socket.io.min.js"):
        assert src in frame.text
        total += len(requests.get(f"{live.url}{src}", timeout=5).content)
    assert total < 60 * 1024
    assert requests.get(f"{live.url}/widget/frame", params={"inbox": "nope-nope-nope"}, timeout=5).status_code == 404


def test_widget_endpoints_need_no_csrf_token_but_agent_forms_still_do(live: LiveServer, widget: Widget) -> None:
    assert session_api(live, widget).status_code == 200
    assert requests.post(f"{live.url}/login", data={"email": "x", "password": "y"}, timeout=5).status_code == 400


@pytest.mark.parametrize("with_demo", [False, True])
def test_demo_shop_page(app: Flask, live: LiveServer, with_demo: bool) -> None:
    if with_demo:
        from web.demo import load_demo

        with app.extensions["helpline"].factory() as session:
            load_demo(session)
            session.commit()
    page = requests.get(f"{live.url}/demo/shop", timeout=5)
    if not with_demo:
        assert page.status_code == 404
        return
    with app.extensions["helpline"].factory() as session:
        inbox = session.scalars(select(Inbox).where(Inbox.channel == "webchat")).one()
    assert page.status_code == 200 and f'data-inbox="{inbox.public_key}"' in page.text
    # The page is on the app's own origin, which the widget always accepts.
    assert session_api(live, Widget(inbox.id, inbox.public_key or "", "", 0, ""), origin=live.url).status_code == 200


def test_every_control_of_the_widget_has_an_accessible_name(
    live: LiveServer, make_widget: Callable[..., Widget]
) -> None:
    """Screen readers announce each control: a label around it or pointing at it, an aria-label, or button text."""
    import re
    from html.parser import HTMLParser

    class Controls(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.labels: list[bool] = []  # open <label> elements
            self.label_for: set[str] = set()
            self.found: list[dict[str, str | None]] = []
            self.button: dict[str, str | None] | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "label":
                self.labels.append(True)
                if a.get("for"):
                    self.label_for.add(str(a["for"]))
            elif tag in ("input", "textarea", "select", "button") and a.get("type") != "hidden":
                named = a | {"_in_label": "1" if self.labels else None, "_tag": tag, "_text": ""}
                self.found.append(named)
                if tag == "button":
                    self.button = named

        def handle_endtag(self, tag: str) -> None:
            if tag == "label" and self.labels:
                self.labels.pop()
            if tag == "button":
                self.button = None

        def handle_data(self, data: str) -> None:
            if self.button is not None:
                self.button["_text"] = (self.button["_text"] or "") + data.strip()

    for config in ({}, {"prechat": {"name": "required", "email": "required"}}):
        widget = make_widget(**config)
        html = requests.get(f"{live.url}/widget/frame", params={"inbox": widget.public_key}, timeout=5).text
        parser = Controls()
        parser.feed(html)
        assert len(parser.found) >= 7
        for control in parser.found:
            named = (
                control.get("aria-label")
                or control["_in_label"]
                or control.get("id") in parser.label_for
                or (control["_tag"] == "button" and re.search(r"[A-Za-z]", control["_text"] or ""))
            )  # a symbol such as "×" or an emoji is not a name
            assert named, control
