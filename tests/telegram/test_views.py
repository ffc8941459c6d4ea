"""The edit history of a customer's message as agents see it (web/templates/_message_edits.html)."""

from __future__ import annotations

from types import SimpleNamespace

from inbox.config import Settings
from web import create_app

HOSTILE = "<img src=x onerror=alert(1)>"


def render(settings: Settings, meta: dict[str, object] | None) -> str:
    app = create_app(settings)
    try:
        with app.test_request_context():
            return app.jinja_env.get_template("_message_edits.html").render(m=SimpleNamespace(meta=meta))
    finally:
        app.extensions["helpline"].dispose()


def test_edits_show_behind_a_marker_oldest_first_and_escaped(settings: Settings) -> None:
    meta = {"edited_at": "2025-11-25T10:50:00+00:00",
            "edits": [{"text": "first " + HOSTILE, "replaced_at": "2025-11-25T10:45:20+00:00"},
                      {"text": "second", "replaced_at": "2025-11-25T10:50:00+00:00"}]}
    html = render(settings, meta)
    assert '<details class="msg-edits">' in html and "2025-11-25 10:50 UTC · 2 earlier versions" in html
    assert html.index("first ") < html.index("second")
    assert "Original, replaced 2025-11-25 10:45 UTC" in html and "Edited version, replaced" in html
    assert HOSTILE not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_unedited_messages_show_nothing(settings: Settings) -> None:
    assert render(settings, None).strip() == ""
    assert render(settings, {"kind": "text"}).strip() == ""


def test_an_edit_whose_original_never_arrived_says_so(settings: Settings) -> None:
    html = render(settings, {"edited_at": "2025-11-25T10:50:00+00:00", "edits": [], "original_missing": True})
    assert "edited</span> 2025-11-25 10:50 UTC · the earlier text never reached Helpline" in html
