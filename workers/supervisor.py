"""``helpline run``: web, worker, scheduler and mail watcher as child processes of one command.

A child that dies is restarted after a backoff that grows while it keeps dying (1 s up to 30 s) and resets once it
has run for a minute. Ctrl-C, SIGTERM or SIGHUP (the terminal closed) stops them all: SIGTERM first (an RQ
worker finishes its current job), then SIGKILL to the child's whole process group after ``grace`` seconds.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

BACKOFF = (1.0, 2.0, 5.0, 10.0, 30.0)
STABLE_AFTER = 60.0  # seconds a child must live for its restart backoff to reset
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl-C, kill / systemd, terminal closed


def process_argv(name: str, *extra: str) -> list[str]:
    """The command line of one Helpline process, run by this interpreter."""
    if name == "web":
        return [sys.executable, "-m", "web.cli", "web", *extra]
    # Our own commands start without loading the whole CLI (and each channel's library) first.
    return [sys.executable, "-m", "web.cli_processes", name, *extra]


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc). RQ's work horses call setsid(), so a process-group kill of the
    worker misses them."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
        except OSError:
            continue
        kids = [int(x) for x in text.split()]
        found += kids
        todo += kids
    return found


def kill_tree(pid: int) -> None:
    """SIGKILL a process, its process group and everything below it."""
    try:
        os.kill(pid, signal.SIGSTOP)  # no new work horse may be forked while we list them
    except ProcessLookupError:
        return
    for target in [pid, *descendants(pid)]:
        for kill in (os.killpg, os.kill):
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = 0
    exits: list[int] = field(default_factory=list)


class Supervisor:
    def __init__(self, specs: Mapping[str, Sequence[str]], env: Mapping[str, str] | None = None, *,
                 grace: float = 30.0, backoff: Sequence[float] = BACKOFF, stable_after: float = STABLE_AFTER) -> None:
        self.children = [Child(name, list(argv)) for name, argv in specs.items()]
        self.env = dict(env if env is not None else os.environ)
        self.grace = grace
        self.backoff = tuple(backoff)
        self.stable_after = stable_after
        self.stopping = False

    def _start(self, child: Child) -> None:
        # A session of its own: a terminal's Ctrl-C reaches only us, and we stop the children in order.
        child.proc = subprocess.Popen(child.argv, env=self.env, start_new_session=True)
        child.started_at = time.monotonic()
        child.restart_at = None
        log.info("started %s (pid %s)", child.name, child.proc.pid)

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if not self.stopping:
            log.info("stopping all processes%s", f" (signal {signum})" if signum else "")
        self.stopping = True

    def check(self) -> None:
        """Notice children that died and (re)start those whose backoff has passed."""
        now = time.monotonic()
        for child in self.children:
            if child.proc is not None and (code := child.proc.poll()) is not None:
                child.exits.append(code)
                lived = now - child.started_at
                child.failures = 0 if lived >= self.stable_after else child.failures + 1
                delay = self.backoff[min(max(child.failures - 1, 0), len(self.backoff) - 1)]
                log.warning("%s exited with %s after %.1fs; restarting in %.0fs", child.name, code, lived, delay)
                child.proc = None
                child.restart_at = now + delay
                child.restarts += 1
            if child.proc is None and (child.restart_at is None or child.restart_at <= now):
                self._start(child)

    def stop(self) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", child.name, self.grace)
            if child.proc.poll() is None:
                kill_tree(child.proc.pid)  # with its work horse, which lives in a session of its own
            child.proc.wait()
        log.info("all processes stopped")

    def run(self, poll: float = 0.5) -> int:
        # SIGHUP: the terminal was closed. Its default would end us at once and orphan every child.
        old = {s: signal.signal(s, self.request_stop) for s in STOP_SIGNALS}
        try:
            while not self.stopping:
                self.check()
                time.sleep(poll)
        finally:
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)
        return 0
