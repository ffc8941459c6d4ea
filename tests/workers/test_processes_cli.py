"""The process commands: the supervisor restarts a dying child and stops all cleanly; the embedded Redis is
started once and reused; ``helpline run`` brings up worker and scheduler that deliver a reply."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from redis import Redis

from inbox.config import Settings
from tests.workers.conftest import ROOT, process_env, queue_replies, states
from tests.workers.stub_channel import StubServer
from tests.workers.test_processes import wait_until
from workers import embedded_redis
from workers.supervisor import Supervisor


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_supervisor_restarts_a_child_that_dies_and_stops_all(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    crasher = [sys.executable, "-c",
               f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(0.2); raise SystemExit(3)"]
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    sup = Supervisor({"crasher": crasher, "sleeper": sleeper}, grace=5, backoff=(0.1, 0.2), stable_after=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not marker.exists() or len(marker.read_text()) < 3):
        sup.check()
        time.sleep(0.05)
    assert len(marker.read_text()) >= 3  # restarted after each exit
    crash, sleep = sup.children
    assert crash.exits[:2] == [3, 3] and sleep.restarts == 0
    pid = sleep.proc.pid if sleep.proc else 0
    sup.stop()
    assert not _alive(pid)


def test_embedded_redis_is_started_once_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", secret_key="k")
    url = embedded_redis.ensure_redis(settings)
    try:
        assert Redis.from_url(url).ping()
        assert embedded_redis.ensure_redis(settings) == url  # a second process reuses it
        assert embedded_redis.running_url(settings) == url
        assert (settings.data_dir / "redis" / "redis.pid").exists()
    finally:
        assert embedded_redis.stop_redis(settings)
    assert embedded_redis.running_url(settings) is None
    assert embedded_redis.ensure_redis(Settings(data_dir=tmp_path, redis_url="redis://x:1/0")) == "redis://x:1/0"


def test_status_command_prints_inboxes_and_queues(file_settings: Settings, redis_url: str, redis: Redis) -> None:
    from web.cli_processes import status_command

    env = process_env(file_settings, redis_url)
    result = CliRunner().invoke(status_command, [], env=env)
    assert result.exit_code == 0, result.output
    assert "outbound" in result.output and "(no inboxes)" in result.output
    result = CliRunner().invoke(status_command, ["--json"], env=env | {"REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.exit_code == 2 and '"redis_error"' in result.output


@pytest.mark.slow
def test_helpline_run_delivers_and_stops_cleanly_on_ctrl_c(
    file_settings: Settings, stub: StubServer, tmp_path: Path,
) -> None:
    from tests.workers.stub_channel import register
    from workers import runtime

    env = process_env(file_settings, "")  # no REDIS_URL: helpline run starts the embedded one
    env.pop("REDIS_URL")
    env["HELPLINE_SWEEP_INTERVAL"] = "1"
    # The stub channel must exist in the children: a sitecustomize on their path registers it.
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text("from tests.workers.stub_channel import register\nregister()\n")
    env["PYTHONPATH"] = f"{hook}:{ROOT}"
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 — closed below
    proc = subprocess.Popen([sys.executable, "-m", "web.cli_processes", "run", "--only", "worker,scheduler"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        wait_until(lambda: embedded_redis.running_url(file_settings) is not None, 20, "the embedded Redis")
        url = embedded_redis.running_url(file_settings)
        register()
        runtime.configure(file_settings, url)
        ids = queue_replies(runtime.storage(), stub, 3)
        wait_until(lambda: set(states(runtime.storage(), ids).values()) == {"sent"}, 30, "replies sent")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert embedded_redis.running_url(file_settings) is None  # the Redis it started is stopped too
    finally:
        runtime.reset()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        embedded_redis.stop_redis(file_settings)
        print((tmp_path / "run.log").read_text()[-2000:])


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "terminal-closed"])
def test_helpline_run_leaves_no_process_behind(file_settings: Settings, tmp_path: Path, signum: int) -> None:
    """Ctrl-C in a terminal signals the whole foreground process group; closing the terminal sends SIGHUP. Either
    way every child and the embedded redis-server (daemonised, so outside the group) must be gone afterwards."""
    from workers.supervisor import descendants, kill_tree

    env = process_env(file_settings, "")
    env.pop("REDIS_URL")
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 — closed below
    # process_group=0: a group of its own, as a shell gives a foreground job; killpg then reaches what a terminal's
    # Ctrl-C reaches.
    proc = subprocess.Popen([sys.executable, "-m", "web.cli_processes", "run", "--only", "worker,scheduler"],
                            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    log.close()
    redis_pid, children = 0, []
    try:
        wait_until(lambda: embedded_redis.running_url(file_settings) is not None, 60, "the embedded Redis")
        redis_pid = int((file_settings.data_dir / "redis" / "redis.pid").read_text())
        wait_until(lambda: len(descendants(proc.pid)) >= 2, 60, "worker and scheduler")
        wait_until(lambda: b"Listening on" in (tmp_path / "run.log").read_bytes(), 60, "the worker listening")
        children = descendants(proc.pid)
        os.killpg(proc.pid, signum)
        assert proc.wait(60) == 0
        wait_until(lambda: not any(_alive(pid) for pid in children), 30, "the children to exit")
        wait_until(lambda: not _alive(redis_pid), 30, "the embedded redis-server to exit")
        assert embedded_redis.running_url(file_settings) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in children:  # orphans, if the supervisor died without stopping them
            if _alive(pid):
                kill_tree(pid)
        if redis_pid and _alive(redis_pid):
            os.kill(redis_pid, signal.SIGTERM)
        print((tmp_path / "run.log").read_text()[-2000:])
