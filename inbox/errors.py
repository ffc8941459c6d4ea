"""Small named exceptions of the domain core (like ``rq/exceptions.py``)."""

from __future__ import annotations


class HelplineError(Exception):
    """Base of every error Helpline raises on purpose."""


class ConfigError(HelplineError):
    """The environment or a setting is invalid."""


class NotFound(HelplineError):
    """A row that was asked for does not exist (or is not visible to the caller)."""


class InvalidChange(HelplineError):
    """A requested change breaks a domain rule (merging a ticket into itself, an unknown status)."""


class AttachmentTooLarge(HelplineError):
    """An attachment exceeds the configured size limit."""


class SecretError(HelplineError):
    """A stored secret cannot be decrypted with the configured key."""
