"""The ``helpline`` command as a user runs it: the README's first line, in a fresh data folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.services import free_port, wait_port

HELPLINE = [sys.executable, "-m", "web.cli"]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HELPLINE, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY")}
    return clean | {"HELPLINE_DATA_DIR": str(tmp_path / "data")}


def test_db_upgrade_admin_and_token(env: dict[str, str]) -> None:
    assert run_cli(env, "db", "upgrade").returncode == 0
    made = run_cli(env, "create-admin", "--email", "Boss@Shop.test", "--password", "long enough pw")
    assert made.returncode == 0, made.stderr
    dup = run_cli(env, "create-admin", "--email", "boss@shop.test", "--password", "long enough pw")
    assert dup.returncode != 0 and "already exists" in dup.stderr
    short = run_cli(env, "create-admin", "--email", "x@shop.test", "--password", "short")
    assert short.returncode != 0 and "at least 8" in short.stderr
    tok = run_cli(env, "token", "create", "--email", "boss@shop.test")
    assert tok.returncode == 0 and tok.stdout.strip().startswith("hl_")
    missing = run_cli(env, "token", "create", "--email", "nobody@shop.test")
    assert missing.returncode != 0 and "no user" in missing.stderr


def test_readme_first_line_serves_demo_on_embedded_defaults(env: dict[str, str]) -> None:
    """`helpline demo && helpline run`: SQLite, embedded Redis, health and the JSON listing answer."""
    first = run_cli(env, "demo")
    assert first.returncode == 0 and "demo data created" in first.stdout, first.stderr
    again = run_cli(env, "demo")
    assert again.returncode == 0 and "already present" in again.stdout
    token = run_cli(env, "token", "create", "--email", "demo@helpline.test").stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [*HELPLINE, "run", "--port", str(port)],
        env=env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_port("127.0.0.1", port, timeout=60)
        deadline = time.monotonic() + 30
        health: dict[str, str] = {}
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as res:
                    health = json.load(res)
                    break
            except OSError:
                time.sleep(0.3)
        assert health == {"status": "ok", "database": "ok", "redis": "ok"}
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/tickets?per_page=100", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as res:
            listing = json.load(res)
        assert listing["total"] >= 7
        assert {t["channel"] for t in listing["tickets"]} >= {"email", "telegram", "webchat"}
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode is not None
