"""Pure parts of connectors.webchat: tokens, signed customers, origins, parsing, file sniffing."""

from __future__ import annotations

import pytest

from connectors import webchat
from connectors.base import Outbound

KEY = webchat.visitor_key("inbox-secret")


def test_visitor_tokens_verify_and_forgeries_do_not() -> None:
    visitor_id = webchat.new_visitor_id()
    token = webchat.sign_visitor(KEY, visitor_id)
    assert webchat.verify_visitor(KEY, token) == visitor_id
    other_key = webchat.visitor_key("another inbox")
    for forged in (
        visitor_id,
        webchat.sign_visitor(other_key, visitor_id),
        token[:-2],
        token + "x",
        token.replace(visitor_id, webchat.new_visitor_id()),
        "v_../../etc." + token.split(".")[1],
        None,
        123,
        {"token": token},
        "",
        "x" * 5000,
    ):
        assert webchat.verify_visitor(KEY, forged) is None


def test_visitor_key_is_not_the_shared_secret() -> None:
    # The shop's server knows the inbox secret; it must not be able to mint visitor tokens with it directly.
    visitor_id = webchat.new_visitor_id()
    assert webchat.verify_visitor(b"inbox-secret", webchat.sign_visitor(KEY, visitor_id)) is None


def test_signed_customer_identity() -> None:
    sig = webchat.user_signature("inbox-secret", "cust-42", "Ann@Example.com", "Ann Lee")
    data = {"id": "cust-42", "email": "ann@example.com", "name": "Ann Lee", "signature": sig}
    assert webchat.verify_user("inbox-secret", data) == webchat.VerifiedUser("cust-42", "ann@example.com", "Ann Lee")
    assert webchat.verify_user("inbox-secret", data | {"email": "eve@example.com"}) is None
    assert webchat.verify_user("other-secret", data) is None
    assert webchat.verify_user("inbox-secret", data | {"signature": ""}) is None
    assert webchat.verify_user("inbox-secret", "cust-42") is None


@pytest.mark.parametrize(
    ("origin", "ok"),
    [
        (None, True),
        ("https://shop.example", True),
        ("https://SHOP.example:443", True),
        ("https://shop.example:8443", False),
        ("http://shop.example", False),
        ("https://shop.example.evil.test", False),
        ("https://evil.test", False),
        ("null", False),
        ("https://shop.example,https://evil.test", False),
        ("http://127.0.0.1:5000", True),
    ],
)
def test_origin_allowed(origin: str | None, ok: bool) -> None:
    assert webchat.origin_allowed(origin, ["https://shop.example/"], ["http://127.0.0.1:5000"]) is ok


def test_parse_visitor_message() -> None:
    inbound = webchat.parse_visitor_message(
        "v_abcdefghijklmnopqrstuv",
        {"id": "client-0001", "text": "  Hello\r\nthere  ", "page": "https://shop.example/p/1"},
        display_name="Ann",
        attributes={"webchat_email": "ann@example.com"},
    )
    assert inbound.channel == "webchat" and inbound.handle == "v_abcdefghijklmnopqrstuv"
    assert inbound.external_id == "v_abcdefghijklmnopqrstuv:client-0001"
    assert inbound.text == "Hello\nthere" and inbound.display_name == "Ann"
    assert inbound.meta == {"page": "https://shop.example/p/1"}
    for bad in (
        None,
        "hello",
        {"id": "short", "text": "x"},
        {"id": "has space 01", "text": "x"},
        {"id": "client-0001", "text": ""},
        {"id": "client-0001", "text": 5},
        {"id": "client-0001", "text": "x" * (webchat.MAX_TEXT + 1)},
    ):
        with pytest.raises(webchat.InvalidEvent):
            webchat.parse_visitor_message("v_abcdefghijklmnopqrstuv", bad)


def test_typed_email_is_kept_but_never_an_identity() -> None:
    name, attrs = webchat.parse_profile({"name": " Ann ", "email": "Ann@Example.com"})
    assert name == "Ann" and attrs == {"webchat_email": "ann@example.com"}
    assert webchat.parse_profile({"email": "not an address"}) == ("", {})


def test_sniff_type_trusts_bytes_not_names() -> None:
    assert webchat.sniff_type(b"\x89PNG\r\n\x1a\n....") == "image/png"
    assert webchat.sniff_type(b"%PDF-1.7\n") == "application/pdf"
    assert webchat.sniff_type(b"RIFF\x00\x00\x00\x00WEBPVP8 ") == "image/webp"
    assert webchat.sniff_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None
    assert webchat.sniff_type(b"<svg onload=alert(1)>") is None
    assert webchat.sniff_type(b"<html><script>") is None
    assert webchat.safe_filename("../../evil.html", "image/png") == "evil.html.png"
    assert webchat.safe_filename("photo.JPG", "image/jpeg") == "photo.JPG"


def test_send_emits_to_the_visitor_room_only() -> None:
    sent: list[tuple[str, dict[str, object], str]] = []
    channel = webchat.WebchatChannel({}, {}, emitter=lambda e, p, r: sent.append((e, p, r)))
    out = Outbound(message_id=7, ticket_id=3, channel="webchat", to_handle="v_abcdefghijklmnopqrstuv", text="Hi",
                   from_name="Demo Shop", meta={"ticket_id": 3})
    assert channel.send(out) == "webchat:7"
    assert sent == [
        ("agent:message", {"id": 7, "from": "agent", "text": "Hi", "author": "Demo Shop", "attachments": []},
         "visitor:v_abcdefghijklmnopqrstuv")
    ]
    sent.clear()
    answered = Outbound(message_id=9, ticket_id=3, channel="webchat", to_handle="v_abcdefghijklmnopqrstuv", text="Ok",
                        reply_to_external_id="v_abcdefghijklmnopqrstuv:client-0001")
    channel.send(answered)
    assert [(e, r) for e, _p, r in sent] == [("agent:message", "visitor:v_abcdefghijklmnopqrstuv")] * 1 + [
        ("read", "visitor:v_abcdefghijklmnopqrstuv")
    ]
    assert sent[1][1] == {"client_id": "client-0001"}
    from connectors.errors import PermanentError

    with pytest.raises(PermanentError):
        channel.send(Outbound(message_id=8, ticket_id=3, channel="webchat", to_handle="ann@example.com"))
