"""Pure parsing of recorded Bot API updates: what each kind of customer message becomes."""

from __future__ import annotations

import datetime as dt

import pytest

from connectors.telegram import parse_update, parse_update_full
from tests.telegram.conftest import load_update

ANNA = "5550192834"


def test_private_text_becomes_an_inbound_with_contact_attributes() -> None:
    inbound = parse_update(load_update("private_text"))
    assert inbound is not None
    assert inbound.channel == "telegram"
    assert inbound.external_id == f"{ANNA}:41"
    assert inbound.handle == ANNA
    assert inbound.display_name == "Anna Müller"
    assert inbound.text.startswith("Hallo! Meine Bestellung #10442")
    assert inbound.sent_at == dt.datetime(2025, 11, 25, 10, 40, tzinfo=dt.UTC)
    assert inbound.contact_attributes == {"telegram_username": "anna_mueller", "language": "de"}
    assert inbound.meta["telegram"]["chat_id"] == int(ANNA)


def test_photo_takes_the_largest_size_and_the_caption() -> None:
    parsed = parse_update_full(load_update("private_photo_caption"))
    assert parsed.action == "ingest"
    assert parsed.inbound is not None and parsed.inbound.text == "So sah das Paket bei der Ankunft aus"
    (ref,) = parsed.media
    assert ref.file_id.endswith("_large") and ref.content_type == "image/jpeg" and ref.filename.endswith(".jpg")
    assert ref.file_size == 64210


@pytest.mark.parametrize(
    ("name", "text", "filename", "content_type"),
    [
        ("private_document", "📎 Rechnung-10442.pdf", "Rechnung-10442.pdf", "application/pdf"),
        ("private_voice", "🎤 Voice message (0:07)", "voice_AgADvo1.ogg", "audio/ogg"),
        ("private_video_note", "🎥 Video message (0:12)", "video_note_AgADvn1.mp4", "video/mp4"),
        ("private_sticker", "👍 (sticker)", "sticker_AgADst2.webp", "image/webp"),
    ],
)
def test_media_messages_get_a_readable_label_and_a_file(name: str, text: str, filename: str, content_type: str) -> None:
    parsed = parse_update_full(load_update(name))
    assert parsed.inbound is not None and parsed.inbound.text == text
    (ref,) = parsed.media
    assert (ref.filename, ref.content_type) == (filename, content_type)


def test_animated_sticker_is_its_emoji_only() -> None:
    parsed = parse_update_full(load_update("private_sticker_animated"))
    assert parsed.inbound is not None and parsed.inbound.text == "😢 (sticker)"
    assert parsed.media == ()


def test_location_venue_and_contact_are_readable_text() -> None:
    loc = parse_update(load_update("private_location"))
    assert loc is not None
    assert loc.text.startswith("📍 Location: 52.520008, 13.404954\nhttps://www.openstreetmap.org/?mlat=52.520008")
    assert loc.meta["location"] == {"latitude": 52.520008, "longitude": 13.404954}
    venue = parse_update(load_update("private_venue"))
    assert venue is not None and venue.text.startswith("📍 Tour Eiffel, Champ de Mars")
    assert venue.contact_attributes == {"language": "fr"}  # no username: no empty attribute
    contact = parse_update(load_update("private_contact"))
    assert contact is not None and contact.text == "👤 Contact: Jonas Müller, +4915112345678"


def test_reply_names_the_answered_message() -> None:
    parsed = parse_update_full(load_update("private_reply"))
    assert parsed.reply_to_external_id == f"{ANNA}:41"
    assert parsed.inbound is not None and parsed.inbound.meta["reply_to"] == f"{ANNA}:41"


def test_edited_message_is_an_edit_of_the_same_external_id() -> None:
    parsed = parse_update_full(load_update("edited_message"))
    assert parsed.action == "edit"
    assert parsed.inbound is not None and parsed.inbound.external_id == f"{ANNA}:41"
    assert "#10443" in parsed.inbound.text
    assert parsed.edited_at == dt.datetime.fromtimestamp(1764067520, tz=dt.UTC)


def test_group_chats_are_ignored_unless_enabled() -> None:
    update = load_update("group_text")
    off = parse_update_full(update)
    assert off.action == "ignore" and "group" in off.reason and off.inbound is None
    on = parse_update(update, groups=True)
    assert on is not None
    assert on.handle == "-1002233445566"  # replies go to the group
    assert on.display_name == "Shop Wholesale Partners"
    assert on.text == "Piotr: @shop_support_bot is the spring catalogue out yet?"


def test_blocking_the_bot_is_reported() -> None:
    parsed = parse_update_full(load_update("my_chat_member_kicked"))
    assert (parsed.action, parsed.handle, parsed.reason) == ("blocked", ANNA, "bot blocked by the user")


@pytest.mark.parametrize(("name", "action"), [("callback_query", "ignore"), ("channel_post", "ignore"),
                                              ("unknown_kind", "unknown")])
def test_other_kinds_are_reported_not_raised(name: str, action: str) -> None:
    parsed = parse_update_full(load_update(name))
    assert parsed.action == action and parsed.inbound is None and parsed.update_id is not None
    assert parsed.kind in parsed.reason


def test_unsupported_content_still_reaches_the_agent() -> None:
    update = load_update("private_text")
    del update["message"]["text"]
    update["message"]["giveaway"] = {"chats": [], "winners_selection_date": 1764100000, "winner_count": 1}
    inbound = parse_update(update)
    assert inbound is not None and inbound.text == "[unsupported Telegram message: giveaway]"


def test_service_messages_and_bots_are_ignored() -> None:
    update = load_update("group_text")
    del update["message"]["text"]
    update["message"]["new_chat_members"] = [{"id": 1, "is_bot": False, "first_name": "X"}]
    assert parse_update_full(update, groups=True).reason == "service message"
    bot = load_update("private_text")
    bot["message"]["from"]["is_bot"] = True
    assert parse_update(bot) is None


def test_ptb_round_trip_parses_the_same() -> None:
    """getUpdates goes through PTB's Update objects and back to dicts: the result must not change."""
    from telegram import Update

    for name in ("private_text", "private_photo_caption", "private_reply", "edited_message", "private_contact"):
        raw = load_update(name)
        again = Update.de_json(raw, None).to_dict()
        assert parse_update_full(again) == parse_update_full(raw), name
