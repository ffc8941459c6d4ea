"""Pure rendering of replies: the 4,096-character split and the plan of Bot API calls."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connectors.base import Outbound, OutboundAttachment
from connectors.telegram import (
    CAPTION_LIMIT,
    TEXT_LIMIT,
    SendStep,
    render_outbound,
    render_text_chunks,
    utf16_len,
)


def outbound(text: str = "Hi", *atts: OutboundAttachment, reply: str | None = None) -> Outbound:
    return Outbound(message_id=1, ticket_id=1, channel="telegram", to_handle="5550192834", text=text,
                    attachments=atts, reply_to_external_id=reply)


def test_short_text_is_one_message() -> None:
    assert render_text_chunks("Hello Anna") == ["Hello Anna"]
    assert render_text_chunks("   ") == []


def test_long_text_splits_at_paragraphs_first() -> None:
    para = "x" * 3000
    chunks = render_text_chunks(f"{para}\n\n{para}\n\n{para}")
    assert chunks == [para, para, para]


def test_split_counts_utf16_units() -> None:
    text = "😀" * 3000  # 6,000 UTF-16 units in 3,000 code points
    chunks = render_text_chunks(text)
    assert all(utf16_len(c) <= TEXT_LIMIT for c in chunks)
    assert "".join(chunks) == text


def test_words_are_not_cut_when_a_space_is_near() -> None:
    text = " ".join(["helpdesk"] * 1000)
    chunks = render_text_chunks(text)
    assert all(c.startswith("helpdesk") and c.endswith("helpdesk") for c in chunks)
    assert " ".join(chunks) == text


@given(st.text(min_size=0, max_size=12000))
def test_split_never_exceeds_the_limit_nor_loses_non_space_text(text: str) -> None:
    chunks = render_text_chunks(text, limit=500)
    assert all(0 < utf16_len(c) <= 500 for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


def test_lone_photo_carries_the_text_as_caption_and_the_reply() -> None:
    photo = OutboundAttachment("label.png", "image/png", b"\x89PNG...")
    steps = render_outbound(outbound("Here is your return label", photo, reply="5550192834:41"))
    assert steps == [SendStep("sendPhoto", "Here is your return label", 0, 41)]


def test_long_text_with_files_sends_text_first_then_each_file() -> None:
    pdf = OutboundAttachment("invoice.pdf", "application/pdf", b"%PDF-1.4")
    gif = OutboundAttachment("dance.gif", "image/gif", b"GIF89a")
    steps = render_outbound(outbound("y" * (CAPTION_LIMIT + 1), pdf, gif))
    assert [s.method for s in steps] == ["sendMessage", "sendDocument", "sendDocument"]


def test_reply_to_another_chat_is_not_quoted() -> None:
    steps = render_outbound(outbound("Hi", reply="999:41"))
    assert steps == [SendStep("sendMessage", "Hi")]
