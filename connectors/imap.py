"""A small IMAP client over imapclient: log in, select a folder, fetch by UID in batches, act after import, IDLE.

Sync is by UIDVALIDITY + UID (RFC 3501 2.3.1.1), never by date or the \\Seen flag, and fetches use ``BODY.PEEK[]``
so reading never marks the customer's mail as read. Errors come out as ``connectors.errors`` kinds.
imapclient docs: https://imapclient.readthedocs.io/
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from connectors.errors import ChannelAuthError, PermanentError, TemporaryError

log = logging.getLogger(__name__)

SECURITY_MODES = ("ssl", "starttls", "none")
AFTER_IMPORT = ("leave", "seen", "move")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context (certificate chain and host name), from a cache: building one loads the whole
    system CA bundle (milliseconds of CPU), and SMTP delivery would otherwise pay that for every message. Contexts
    are safe to share between connections and threads. The key includes the CA file's size and mtime, so a
    replaced certificate takes effect on the next connection."""
    if not ca_file:
        return _cached_context(None, 0, 0)
    try:
        stat = os.stat(ca_file)
    except OSError:
        return ssl.create_default_context(cafile=ca_file)  # let ssl raise its own clear error
    return _cached_context(ca_file, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _cached_context(ca_file: str | None, _mtime_ns: int, _size: int) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


def check_security(host: str, security: str) -> None:
    if security not in SECURITY_MODES:
        raise PermanentError(f"unknown security mode {security!r}; use one of {', '.join(SECURITY_MODES)}")
    if security == "none" and not is_loopback(host):
        raise PermanentError("plain (unencrypted) connections are allowed only to a loopback address")


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int


class ImapMailbox:
    """One logged-in IMAP connection. Use as a context manager; every method may raise ``ChannelError`` kinds."""

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        *,
        timeout: float = 60.0,
        ca_file: str | None = None,
    ) -> None:
        check_security(host, security)
        self.host, self.port, self.security = host, port, security
        self._username, self._password = username, password
        self._timeout, self._ca_file = timeout, ca_file
        self.client: imapclient.IMAPClient | None = None

    def __enter__(self) -> ImapMailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        context = tls_context(self._ca_file)
        try:
            client = imapclient.IMAPClient(
                self.host, port=self.port, ssl=self.security == "ssl", ssl_context=context, timeout=self._timeout
            )
            if self.security == "starttls":
                client.starttls(context)
            client.login(self._username, self._password)
        except LoginError as exc:
            raise ChannelAuthError(f"IMAP login refused for {self._username}: {_text(exc)}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"IMAP server certificate not trusted: {exc.verify_message}") from exc
        except (OSError, IMAPClientError, ssl.SSLError) as exc:
            raise TemporaryError(f"cannot reach IMAP server {self.host}:{self.port}: {_text(exc)}") from exc
        self.client = client

    def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            client.logout()
        except (OSError, IMAPClientError, ssl.SSLError):
            try:
                client.shutdown()  # the server is gone already; just drop our end
            except (OSError, IMAPClientError):
                pass

    def _c(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise TemporaryError("IMAP connection is not open")
        return self.client

    def select(self, folder: str, *, readonly: bool = False) -> FolderState:
        try:
            info = self._c().select_folder(folder, readonly=readonly)
        except IMAPClientError as exc:
            raise PermanentError(f"cannot open IMAP folder {folder!r}: {_text(exc)}") from exc
        except OSError as exc:
            raise TemporaryError(f"IMAP connection lost: {exc}") from exc
        uidnext = info.get(b"UIDNEXT")
        return FolderState(int(info[b"UIDVALIDITY"]), int(uidnext) if uidnext else None, int(info.get(b"EXISTS", 0)))

    def fetch_since(
        self, last_uid: int, batch: int = 200, max_bytes: int = 32 * 1024 * 1024
    ) -> Iterator[list[tuple[int, bytes]]]:
        """Yield lists of (uid, raw bytes) for UIDs above ``last_uid``, in UID order: at most ``batch`` messages
        and, unless one message alone is larger, ``max_bytes`` per list, so memory stays flat however big the
        backlog or the attachments."""
        client = self._c()
        try:
            for chunk in self._plan(last_uid, batch, max_bytes):
                data = client.fetch(chunk, ["BODY.PEEK[]"])
                # A message expunged between SEARCH and FETCH is simply absent; it is gone from the server.
                yield [(uid, bytes(data[uid][b"BODY[]"])) for uid in chunk if b"BODY[]" in data.get(uid, {})]
        except IMAPClientError as exc:
            raise TemporaryError(f"IMAP fetch failed: {_text(exc)}") from exc
        except (OSError, ssl.SSLError) as exc:
            raise TemporaryError(f"IMAP connection lost: {exc}") from exc

    def _plan(self, last_uid: int, batch: int, max_bytes: int) -> Iterator[list[int]]:
        client = self._c()
        # "N:*" matches the highest UID even when it is below N (RFC 3501 6.4.8), hence the filter.
        uids = sorted(u for u in client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        for start in range(0, len(uids), 1000):
            window = uids[start : start + 1000]
            sizes = client.fetch(window, ["RFC822.SIZE"])
            chunk: list[int] = []
            total = 0
            for uid in window:
                size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
                if chunk and (len(chunk) >= batch or total + size > max_bytes):
                    yield chunk
                    chunk, total = [], 0
                chunk.append(uid)
                total += size
            if chunk:
                yield chunk

    def after_import(self, uids: Sequence[int], action: str, move_to: str | None = None) -> None:
        """Apply the inbox's post-import action; never deletes unless asked to move (which copies first)."""
        if not uids or action == "leave":
            return
        client = self._c()
        try:
            if action == "seen":
                client.add_flags(uids, [imapclient.SEEN])
            elif action == "move" and move_to:
                client.move(uids, move_to) if client.has_capability("MOVE") else self._copy_delete(uids, move_to)
        except IMAPClientError as exc:
            raise TemporaryError(f"IMAP post-import action {action!r} failed: {_text(exc)}") from exc
        except OSError as exc:
            raise TemporaryError(f"IMAP connection lost: {exc}") from exc

    def _copy_delete(self, uids: Sequence[int], folder: str) -> None:
        client = self._c()
        client.copy(uids, folder)
        client.delete_messages(uids)
        client.uid_expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()

    def ensure_folder(self, folder: str) -> None:
        client = self._c()
        if not client.folder_exists(folder):
            client.create_folder(folder)

    def idle_wait(self, timeout: float) -> bool:
        """Wait in IDLE up to ``timeout`` seconds; True when the server reported new or changed mail."""
        client = self._c()
        try:
            client.idle()
            responses: list[Any] = client.idle_check(timeout=timeout)
            client.idle_done()
        except (IMAPClientError, OSError, ssl.SSLError) as exc:
            raise TemporaryError(f"IMAP IDLE failed: {_text(exc)}") from exc
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

    def noop(self) -> None:
        try:
            self._c().noop()
        except (TimeoutError, IMAPClientError, OSError) as exc:
            raise TemporaryError(f"IMAP connection lost: {exc}") from exc


def _text(exc: BaseException) -> str:
    text = str(exc)
    return text.removeprefix("b'").removeprefix('b"').rstrip("'\"") or type(exc).__name__
