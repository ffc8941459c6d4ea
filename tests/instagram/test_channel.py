"""Replies through the Graph API, against a loopback stub; non-Graph inboxes are answered by hand."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.base import Outbound
from connectors.errors import ChannelAuthError, PermanentError, TemporaryError
from connectors.instagram import MANUAL_REPLY, InstagramChannel
from connectors.registry import channel_for
from tests.instagram.graph_stub import TOKEN, GraphStub
from tests.services import free_port


@pytest.fixture
def graph() -> Iterator[GraphStub]:
    with GraphStub() as stub:
        yield stub


def channel(graph: GraphStub, token: str = TOKEN) -> InstagramChannel:
    config = {"mode": "graph", "graph_api_base": graph.base, "ig_user_id": "17841400000000001"}
    return InstagramChannel(config, {"access_token": token})


def reply(**kw: object) -> Outbound:
    values: dict[str, object] = {"message_id": 7, "ticket_id": 3, "channel": "instagram", "to_handle": "ann.buyer",
                                 "text": "Yes, it is!", "reply_to_external_id": "17865799348089039"}
    return Outbound(**(values | kw))  # type: ignore[arg-type]


def test_registered() -> None:
    assert channel_for("instagram") is InstagramChannel


def test_comment_reply(graph: GraphStub) -> None:
    assert channel(graph).send(reply()) == "reply-to-17865799348089039"
    [call] = graph.calls
    assert call.path == "/v21.0/17865799348089039/replies" and call.params == {"message": "@ann.buyer Yes, it is!"}
    assert "access_token" not in call.params  # the token travels in a header


def test_direct_message(graph: GraphStub) -> None:
    sent = channel(graph).send(reply(to_handle="igsid:6200000000000001", reply_to_external_id="mid.1"))
    assert sent == "m_reply_1"
    [call] = graph.calls
    assert call.path == "/v21.0/17841400000000001/messages"
    assert call.body == {"recipient": {"id": "6200000000000001"}, "message": {"text": "Yes, it is!"}}


def test_rejected_token_is_an_auth_error(graph: GraphStub) -> None:
    with pytest.raises(ChannelAuthError, match="190: Invalid OAuth access token"):
        channel(graph, token="expired").send(reply())


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, {"code": 4, "message": "Application request limit reached"}, TemporaryError),
        (400, {"code": 100, "message": "Object with ID does not exist"}, PermanentError),
        (400, {"code": 10, "error_subcode": 2534022, "message": "outside of allowed window"}, PermanentError),
        (500, {"code": 1, "message": "An unknown error occurred"}, TemporaryError),
    ],
)
def test_error_codes_become_failure_kinds(graph: GraphStub, status: int, error: dict[str, object],
                                          kind: type) -> None:
    graph.errors.append((status, {"error": {**error, "type": "OAuthException", "fbtrace_id": "X"}}))
    with pytest.raises(kind) as exc:
        channel(graph).send(reply())
    assert str(error["message"]) in exc.value.reason


def test_unreachable_graph_is_temporary() -> None:
    config = {"mode": "graph", "graph_api_base": f"http://127.0.0.1:{free_port()}", "timeout": 2}
    with pytest.raises(TemporaryError, match="unreachable"):
        InstagramChannel(config, {"access_token": TOKEN}).send(reply())


def test_without_graph_mode_replies_are_sent_by_hand() -> None:
    with pytest.raises(PermanentError) as exc:
        InstagramChannel({"profile": "shop"}, {}).send(reply())
    assert exc.value.reason == MANUAL_REPLY == "Instagram replies are sent by hand: open on Instagram"


def test_graph_mode_without_token_is_an_auth_error() -> None:
    with pytest.raises(ChannelAuthError):
        InstagramChannel({"mode": "graph"}, {}).send(reply())
