"""The explicit registry of channels that can send (easier to grep than register-on-import)."""

from __future__ import annotations

from connectors.base import ChannelFactory
from connectors.instagram import InstagramChannel
from connectors.smtp import EmailChannel
from connectors.telegram import TelegramChannel
from connectors.webchat import WebchatChannel

# Each channel module adds its line here as it lands: "email": EmailChannel, "telegram": TelegramChannel, ...
CHANNELS: dict[str, ChannelFactory] = {
    "email": EmailChannel,
    "instagram": InstagramChannel,
    "telegram": TelegramChannel,
    "webchat": WebchatChannel,
}


def channel_for(name: str) -> ChannelFactory:
    try:
        return CHANNELS[name]
    except KeyError:
        raise LookupError(f"no channel can send on {name!r} (known: {', '.join(sorted(CHANNELS)) or 'none'})") from None
