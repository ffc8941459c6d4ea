"""Email out: ``EmailChannel.send`` renders a reply (connectors.email.render_reply) and hands it to SMTP.

SMTP replies are classified the way the delivery job needs them (RFC 5321 4.2.1): 4xx → ``TemporaryError``
(retried with backoff), 5xx → ``PermanentError`` with the server's own words, rejected credentials →
``ChannelAuthError``. Plain SMTP is allowed only to a loopback address. Python docs: ``smtplib``.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any

from connectors.base import Outbound
from connectors.email import RenderError, render_reply
from connectors.errors import ChannelAuthError, ChannelError, PermanentError, TemporaryError
from connectors.imap import check_security, tls_context

_DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


def _reason(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {' '.join(text.split())}"


def classify(code: int, message: bytes | str) -> ChannelError:
    """4xx is worth retrying; anything else the server refused is final."""
    reason = _reason(code, message)
    return TemporaryError(reason) if 400 <= code < 500 else PermanentError(reason)


class EmailChannel:
    """Sends an inbox's replies through its SMTP server. ``config``: smtp_host, smtp_port, smtp_security
    (ssl|starttls|none), smtp_username (default: username), address; ``secrets``: smtp_password or password."""

    name = "email"

    def __init__(self, config: Mapping[str, Any], secrets: Mapping[str, Any]) -> None:
        self.host: str = config.get("smtp_host") or ""
        self.security: str = config.get("smtp_security") or "starttls"
        self.port = int(config.get("smtp_port") or _DEFAULT_PORTS.get(self.security, 587))
        self.username: str = config.get("smtp_username") or config.get("username") or ""
        self.password: str = secrets.get("smtp_password") or secrets.get("password") or ""
        self.address: str = config.get("address") or ""
        self.ca_file: str | None = config.get("ca_file")
        self.timeout = float(config.get("timeout", 60))
        self.verp: bool = bool(config.get("verp", False))

    def send(self, outbound: Outbound) -> str:
        """Send one reply; returns its Message-ID (stable across retries, so a retry never forks the thread)."""
        if not self.host:
            raise PermanentError("no SMTP server configured for this inbox")
        check_security(self.host, self.security)
        if not outbound.from_address and self.address:
            outbound = _with_from(outbound, self.address)
        try:
            message = render_reply(outbound, date=dt.datetime.now(dt.UTC))
        except RenderError as exc:
            raise PermanentError(str(exc)) from exc
        envelope_from = self._envelope_from(outbound)
        data = message.as_bytes()
        self._deliver(envelope_from, outbound.to_handle.strip(), data)
        return str(message["Message-ID"])

    def send_message(self, message: EmailMessage) -> None:
        """Send a message built elsewhere (Helpline's own mail to its users: invitations, notifications) to its
        To address, from this inbox's address."""
        if not self.host:
            raise PermanentError("no SMTP server configured for this inbox")
        check_security(self.host, self.security)
        self._deliver(self.address, str(message["To"].addresses[0].addr_spec), message.as_bytes())

    def _envelope_from(self, outbound: Outbound) -> str:
        # VERP (support+b123@shop.test) lets a bounce name the message it is about even without its headers.
        if self.verp and "@" in outbound.from_address:
            local, _, domain = outbound.from_address.rpartition("@")
            return f"{local}+b{outbound.message_id}@{domain}"
        return outbound.from_address

    def _deliver(self, envelope_from: str, recipient: str, data: bytes) -> None:
        try:
            with self._connect() as smtp:
                if self.username and self.password:
                    smtp.login(self.username, self.password)
                refused = smtp.sendmail(envelope_from, [recipient], data)
        except smtplib.SMTPAuthenticationError as exc:
            raise ChannelAuthError(f"SMTP login refused: {_reason(exc.smtp_code, exc.smtp_error)}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, message = next(iter(exc.recipients.values()))
            raise classify(code, message) from exc
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, unexpected replies
            raise classify(exc.smtp_code, exc.smtp_error) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(f"SMTP server does not support what this inbox needs: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"SMTP server certificate not trusted: {exc.verify_message}") from exc
        except (smtplib.SMTPException, OSError) as exc:  # disconnects, timeouts, refused connections
            raise TemporaryError(f"SMTP server {self.host}:{self.port} unavailable: {exc}") from exc
        if refused:
            code, message = next(iter(refused.values()))
            raise classify(code, message)

    def _connect(self) -> smtplib.SMTP:
        # The context (the system CA store: ~35 ms) is built only when TLS is used; plain SMTP on loopback needs none.
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=tls_context(self.ca_file))
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            if self.security == "starttls":
                smtp.starttls(context=tls_context(self.ca_file))
                smtp.ehlo()
        except BaseException:
            smtp.close()
            raise
        return smtp


def _with_from(outbound: Outbound, address: str) -> Outbound:
    from dataclasses import replace

    return replace(outbound, from_address=address)
