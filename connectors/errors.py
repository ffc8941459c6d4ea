"""How a channel call failed, in the three kinds the workers treat differently (chatwoot's IMAP job)."""

from __future__ import annotations


class ChannelError(Exception):
    """Base of channel failures; ``reason`` is shown to agents on the message or inbox."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class TemporaryError(ChannelError):
    """Try again later: network down, SMTP 4xx, Telegram 429/5xx. ``retry_after`` in seconds when the server said."""


class PermanentError(ChannelError):
    """Will never work as is: SMTP 5xx, a bot blocked by the user, an invalid recipient."""


class ChannelAuthError(PermanentError):
    """The inbox's credentials are rejected: the inbox is marked ``needs_reauth`` until an admin fixes it."""
