"""Real mail servers for the email tests: a private Dovecot (IMAP, STARTTLS and implicit TLS) and an aiosmtpd sink.

Dovecot gets its own config, state and maildirs in a temporary folder and loopback ports; the system-wide
Dovecot is never touched. Any user name logs in with the password ``secret`` (a static passdb), so each test
takes a fresh user and never sees another test's mail. Dovecot refuses to serve mail as root, so under root the
maildirs belong to ``nobody``; as any other user they are that user's.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imapclient
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.services import free_port, wait_port

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "secret"
_users = itertools.count(1)


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost; tests trust it through ``ca_file``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(key_path, 0o644)  # read by Dovecot's unprivileged config process
    return cert_path, key_path


@dataclass
class Dovecot:
    """A private Dovecot; ``restart()`` keeps ports and mail (to test reconnects)."""

    root: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> str:
        return str(self.root / "cert.pem")

    def new_user(self) -> str:
        return f"user{next(_users)}-{os.getpid()}@example.test"

    def write_config(self) -> Path:
        mail = self.root / "mail"
        mail.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            uid = gid = 65534  # nobody: Dovecot will not open mail as root
            internal, login = "dovecot", "dovenull"
            os.chown(mail, uid, gid)
        else:
            uid, gid = os.getuid(), os.getgid()
            internal = login = pwd.getpwuid(uid).pw_name
        make_certificate(self.root)
        conf = self.root / "dovecot.conf"
        conf.write_text(
            f"""instance_name = helpline-test-{self.port}
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
protocols = imap
listen = {self.host}
ssl = yes
ssl_cert = <{self.root}/cert.pem
ssl_key = <{self.root}/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={mail}/%u
}}
mail_location = maildir:~/Maildir
mail_fsync = never
mailbox_idle_check_interval = 1 secs
protocol imap {{
  mail_max_userip_connections = 100
  imap_idle_notify_interval = 1 secs
}}
service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.tls_port}
    ssl = yes
  }}
}}
"""
        )
        return conf

    def start(self) -> None:
        conf = self.root / "dovecot.conf"
        if not conf.exists():
            conf = self.write_config()
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            wait_port(self.host, self.port, 20)
            wait_port(self.host, self.tls_port, 20)
        except TimeoutError:
            self.stop()
            log = (
                (self.root / "dovecot.log").read_text(errors="replace") if (self.root / "dovecot.log").exists() else ""
            )
            raise RuntimeError(f"Dovecot did not start: {log[-2000:]}") from None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """Dovecot's master leaves its imap/log/stats children running (they serve open sessions); a real
        restart drops the clients, so end this instance's children too, found by its unique instance name."""
        marker = f"helpline-test-{self.port}/".encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if marker in (entry / "cmdline").read_bytes():
                        pids.append(int(entry.name))
                except OSError:
                    continue
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def restart(self) -> None:
        self.stop()
        time.sleep(0.2)
        self.start()

    @contextmanager
    def client(self, user: str) -> Iterator[imapclient.IMAPClient]:
        client = imapclient.IMAPClient(self.host, port=self.port, ssl=False, timeout=30)
        client.login(user, PASSWORD)
        try:
            yield client
        finally:
            client.logout()

    def deliver(self, user: str, *raws: bytes, folder: str = "INBOX") -> None:
        """Put messages into a user's folder (IMAP APPEND), creating the folder if needed."""
        with self.client(user) as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in raws:
                client.append(folder, raw)

    def config_for(self, user: str, **overrides: Any) -> dict[str, Any]:
        """An email inbox config pointing at this server (plain IMAP on loopback)."""
        return {
            "imap_host": self.host,
            "imap_port": self.port,
            "imap_security": "none",
            "username": user,
            "folders": ["INBOX"],
            "after_import": "leave",
            "ca_file": self.ca_file,
        } | overrides


@contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        raise RuntimeError("Dovecot is not installed: run `python -m tests.deps` (package dovecot-imapd)")
    # Not pytest's tmp_path: its parents are private to root, and Dovecot's unprivileged users must get in.
    root = Path(tempfile.mkdtemp(prefix="helpline-dovecot-"))
    os.chmod(root, 0o755)
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


# --- SMTP ----------------------------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


class SmtpSink:
    """aiosmtpd handler that keeps what it receives; recipients at ``temp.test``/``perm.test`` are refused."""

    def __init__(self) -> None:
        self.messages: list[Received] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.endswith("@temp.test"):
            return "451 4.3.0 mailbox busy, try later"
        if address.endswith("@perm.test"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        self.messages.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content)))
        return "250 Message accepted"


SMTP_USER, SMTP_PASSWORD = "agent@shop.test", "smtp-secret"


def _authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = (
        isinstance(data, LoginPassword) and data.login == SMTP_USER.encode() and data.password == SMTP_PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd itself answers 535


@contextmanager
def smtp_server(*, tls_folder: Path | None = None, auth: bool = False) -> Iterator[tuple[Controller, SmtpSink]]:
    """An aiosmtpd listener on loopback; with ``tls_folder`` it offers STARTTLS with a self-signed certificate."""
    sink = SmtpSink()
    kwargs: dict[str, Any] = {}
    if tls_folder is not None:
        cert, key = make_certificate(tls_folder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        kwargs |= {"tls_context": context, "require_starttls": True}
    if auth:
        kwargs |= {"authenticator": _authenticator, "auth_require_tls": tls_folder is not None}
    controller = Controller(sink, hostname="127.0.0.1", port=free_port(), **kwargs)
    controller.start()
    try:
        yield controller, sink
    finally:
        controller.stop()
