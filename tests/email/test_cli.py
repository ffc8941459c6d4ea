"""The inbox commands end to end: add an email inbox, sync it from Dovecot, export the message map."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from inbox.config import Settings
from inbox.crypto import decrypt_json
from inbox.migrate import upgrade
from inbox.models import Inbox, Message
from inbox.runtime import Storage
from tests.email.conftest import mail
from tests.mail_services import PASSWORD, Dovecot
from web.cli_inbox import export_group, inbox_group


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    values = {"HELPLINE_DATA_DIR": str(tmp_path / "data"), "SECRET_KEY": "cli-test-key", "MAIL_PW": PASSWORD}
    (tmp_path / "data").mkdir()
    upgrade(Settings.from_env(values).sqlalchemy_url)
    return values


def test_add_sync_export(env: dict[str, str], dovecot: Dovecot, imap_user: str) -> None:
    runner = CliRunner()
    add = [
        "add",
        "email",
        "--name",
        "support",
        "--address",
        "Support@Shop.test",
        "--imap-host",
        "127.0.0.1",
        "--imap-port",
        str(dovecot.port),
        "--imap-security",
        "none",
        "--username",
        imap_user,
        "--password-env",
        "MAIL_PW",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        "2525",
        "--smtp-security",
        "none",
    ]
    result = runner.invoke(inbox_group, add, env=env)
    assert result.exit_code == 0, result.output
    assert "added email inbox 'support'" in result.output
    again = runner.invoke(inbox_group, add, env=env)
    assert again.exit_code != 0 and "exists already" in again.output

    dovecot.deliver(imap_user, mail(message_id="<a@x.test>"), mail(message_id="<b@x.test>", in_reply_to="<a@x.test>"))
    result = runner.invoke(inbox_group, ["sync", "support"], env=env)
    assert result.exit_code == 0, result.output
    assert "fetched=2, stored=2, duplicates=0, quarantined=0" in result.output

    result = runner.invoke(export_group, ["message-map", "--inbox", "support"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line.split("\t") for line in result.output.splitlines()]
    assert [m for m, _ in lines] == ["<a@x.test>", "<b@x.test>"] and lines[0][1] == lines[1][1]

    storage = Storage.from_settings(Settings.from_env(env))
    with storage.factory() as session:
        inbox = session.scalars(select(Inbox)).one()
        assert inbox.address == "support@shop.test" and inbox.config["imap_security"] == "none"
        assert PASSWORD not in (inbox.secrets or "")  # encrypted at rest
        assert decrypt_json("cli-test-key", inbox.secrets) == {"password": PASSWORD}
        assert len(list(session.scalars(select(Message)))) == 2
    storage.dispose()


def test_add_refuses_plain_imap_to_a_remote_host_and_missing_passwords(env: dict[str, str]) -> None:
    runner = CliRunner()
    base = ["add", "email", "--name", "x", "--address", "a@b.test", "--username", "u", "--password-env", "MAIL_PW"]
    plain = runner.invoke(inbox_group, [*base, "--imap-host", "imap.example.com", "--imap-security", "none"], env=env)
    assert plain.exit_code != 0 and "loopback" in plain.output
    nopw = runner.invoke(inbox_group, [*base, "--imap-host", "127.0.0.1", "--password-env", "NOPE"], env=env)
    assert nopw.exit_code != 0 and "NOPE" in nopw.output
    sync = runner.invoke(inbox_group, ["sync", "nope"], env=env)
    assert sync.exit_code != 0 and "no inbox named" in sync.output


def test_sync_publishes_to_browsers_and_jobs_like_a_worker(
    env: dict[str, str], dovecot: Dovecot, imap_user: str, redis_url: str
) -> None:
    """Mail fetched by ``helpline inbox sync`` appears in agents' screens at once (issue 4): the command publishes
    its committed events on the Socket.IO message queue and queues automation jobs, as a worker would."""
    import json

    from redis import Redis
    from rq import Queue

    from workers import runtime

    redis = Redis.from_url(redis_url)
    redis.flushdb()
    env = env | {"REDIS_URL": redis_url}
    runner = CliRunner()
    add = ["add", "email", "--name", "live", "--address", "live@shop.test", "--imap-host", "127.0.0.1",
           "--imap-port", str(dovecot.port), "--imap-security", "none", "--username", imap_user,
           "--password-env", "MAIL_PW"]
    assert runner.invoke(inbox_group, add, env=env).exit_code == 0
    dovecot.deliver(imap_user, mail(message_id="<live@x.test>"))
    pubsub = redis.pubsub()
    pubsub.subscribe("flask-socketio")  # Flask-SocketIO's default channel for its Redis message queue
    pubsub.get_message(timeout=2)  # the subscription confirmation
    try:
        result = runner.invoke(inbox_group, ["sync", "live"], env=env)
    finally:
        runtime.reset()  # the command configured this (test) process's worker runtime
    assert result.exit_code == 0, result.output
    assert "Redis is not reachable" not in result.output
    published = []
    while (item := pubsub.get_message(timeout=2)) is not None:
        if item["type"] == "message":
            published.append(json.loads(item["data"]))
    pubsub.close()
    emitted = [(p["event"], p["room"]) for p in published if p.get("method") == "emit"]
    assert any(event == "message.created" and room.startswith("ticket:") for event, room in emitted), emitted
    jobs = Queue("default", connection=redis).get_jobs()
    assert any(job.func_name == "workers.automation_jobs.process_event" for job in jobs), [j.func_name for j in jobs]
    redis.flushdb()


def test_sync_without_redis_still_imports_and_says_live_updates_are_off(
    env: dict[str, str], dovecot: Dovecot, imap_user: str
) -> None:
    env = env | {"REDIS_URL": "redis://127.0.0.1:9/0"}  # nothing listens on the discard port
    runner = CliRunner()
    add = ["add", "email", "--name", "off", "--address", "off@shop.test", "--imap-host", "127.0.0.1",
           "--imap-port", str(dovecot.port), "--imap-security", "none", "--username", imap_user,
           "--password-env", "MAIL_PW"]
    assert runner.invoke(inbox_group, add, env=env).exit_code == 0
    dovecot.deliver(imap_user, mail(message_id="<off@x.test>"))
    result = runner.invoke(inbox_group, ["sync", "off"], env=env)
    assert result.exit_code == 0, result.output
    assert "stored=1" in result.output and "Redis is not reachable" in result.output
