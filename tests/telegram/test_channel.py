"""TelegramChannel: the real python-telegram-bot client against the local Bot API stub, errors mapped to ours."""

from __future__ import annotations

import pytest

from connectors.base import Outbound, OutboundAttachment
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from connectors.registry import channel_for
from connectors.telegram import TelegramChannel
from tests.telegram.botapi_stub import TOKEN, BotApiStub
from tests.telegram.conftest import load_update

CHAT = "5550192834"


def channel(stub: BotApiStub, token: str = TOKEN) -> TelegramChannel:
    return TelegramChannel({"api_base": stub.api_base, "timeout": 5}, {"token": token})


def reply(text: str = "Ihre Bestellung ist unterwegs.", *atts: OutboundAttachment, **kw: object) -> Outbound:
    return Outbound(message_id=7, ticket_id=3, channel="telegram", to_handle=CHAT, text=text, attachments=atts,
                    **kw)  # type: ignore[arg-type]


def test_registry_knows_telegram() -> None:
    assert channel_for("telegram") is TelegramChannel


def test_get_me_names_the_bot(tg: BotApiStub) -> None:
    assert channel(tg).get_me()["username"] == "shop_support_bot"


def test_bad_token_is_an_auth_error(tg: BotApiStub) -> None:
    with pytest.raises(ChannelAuthError, match="rejected the bot token"):
        channel(tg, "42:wrong").get_me()


def test_send_text_returns_chat_and_message_id(tg: BotApiStub) -> None:
    provider_id = channel(tg).send(reply(reply_to_external_id=f"{CHAT}:41"))
    (call,) = tg.sent
    assert call.method == "sendMessage"
    assert call.params["chat_id"] == CHAT and call.params["text"] == "Ihre Bestellung ist unterwegs."
    assert call.params["reply_parameters"] == {"message_id": 41, "allow_sending_without_reply": True}
    assert provider_id == f"{CHAT}:{tg.next_message_id}"


def test_text_is_sent_as_plain_text_so_markup_arrives_verbatim(tg: BotApiStub) -> None:
    # No parse_mode: an agent's "<b>", "*" or "_" is never taken for Telegram formatting (which would refuse an
    # unbalanced tag, or count the 4,096 characters after parsing entities).
    text = "Preis: 5 * 3 <b>nicht fett</b> [link](x) snake_case_name"
    channel(tg).send(reply(text))
    (call,) = tg.sent
    assert call.params["text"] == text and "parse_mode" not in call.params


def test_long_text_arrives_in_parts_under_the_limit(tg: BotApiStub) -> None:
    text = "\n\n".join(f"Absatz {i}: " + "Wort " * 300 for i in range(8))
    channel(tg).send(reply(text))
    parts = [c.params["text"] for c in tg.sent]
    assert len(parts) >= 3 and all(len(p) <= 4096 for p in parts)


def test_photo_and_document_are_uploaded_with_their_bytes(tg: BotApiStub) -> None:
    png = OutboundAttachment("label.png", "image/png", b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    pdf = OutboundAttachment("invoice.pdf", "application/pdf", b"%PDF-1.4 invoice")
    channel(tg).send(reply("x" * 2000, png, pdf))
    methods = [c.method for c in tg.sent]
    assert methods == ["sendMessage", "sendPhoto", "sendDocument"]
    assert tg.sent[1].files["photo"][1] == png.data
    assert tg.sent[2].files["document"][:2] == ("invoice.pdf", pdf.data)


def test_flood_control_is_temporary_with_retry_after(tg: BotApiStub) -> None:
    tg.fail("sendMessage", 429, retry_after=17)
    with pytest.raises(TemporaryError) as info:
        channel(tg).send(reply())
    assert info.value.retry_after == 17


def test_blocked_bot_is_permanent(tg: BotApiStub) -> None:
    tg.blocked.add(CHAT)
    with pytest.raises(PermanentError) as info:
        channel(tg).send(reply())
    assert info.value.reason == "bot blocked by the user"
    assert not isinstance(info.value, ChannelAuthError)
    assert getattr(info.value, "unreachable", False)  # for the delivery job to mark the identity


def test_unauthorized_mid_life_is_an_auth_error(tg: BotApiStub) -> None:
    tg.fail("sendMessage", 401)
    with pytest.raises(ChannelAuthError):
        channel(tg).send(reply())


def test_bad_gateway_is_temporary(tg: BotApiStub) -> None:
    tg.fail("sendMessage", 502)
    with pytest.raises(TemporaryError, match="unreachable"):
        channel(tg).send(reply())


def test_connection_refused_is_temporary() -> None:
    with BotApiStub() as stub:
        base = stub.api_base
    with pytest.raises(TemporaryError):
        TelegramChannel({"api_base": base, "timeout": 2}, {"token": TOKEN}).get_me()


def test_missing_token_is_an_auth_error() -> None:
    with pytest.raises(ChannelAuthError):
        TelegramChannel({}, {})


def test_updates_download_and_webhook_calls(tg: BotApiStub) -> None:
    ch = channel(tg)
    tg.push(load_update("private_text"))
    tg.push(load_update("private_photo_caption"))
    updates = ch.get_updates(None)
    assert [u["update_id"] for u in updates] == [815000101, 815000102]
    assert ch.get_updates(815000102)[0]["update_id"] == 815000102  # offset confirms the earlier one
    tg.add_file(b"JFIF photo bytes", file_id="AgACAgIAAxkBAAIBKmdEq1_large", path="photos/file_7.jpg")
    got = ch.download("AgACAgIAAxkBAAIBKmdEq1_large", max_bytes=1024)
    assert got.data == b"JFIF photo bytes" and got.skipped_reason is None
    assert ch.download("AgACAgIAAxkBAAIBKmdEq1_large", max_bytes=4).skipped_reason == "larger than the 4 bytes limit"
    tg.add_file(b"", file_id="huge", reported_size=30 * 1024 * 1024)
    assert "20 MB" in (ch.download("huge", max_bytes=10**9).skipped_reason or "")
    ch.send_chat_action(CHAT)
    assert tg.actions == [(CHAT, "typing")]
    ch.set_webhook("http://127.0.0.1:1/webhooks/telegram/k", "s3cret")
    assert tg.webhook["secret_token"] == "s3cret"
    with pytest.raises(PermanentError, match="webhook is active"):
        ch.get_updates(None)
    ch.delete_webhook()
    assert tg.webhook == {}
