"""Process commands: ``helpline run`` (everything on one machine), ``worker``, ``scheduler``, ``mail``, ``status``.

The Procfile runs ``worker``, ``scheduler`` and ``mail`` separately to scale past one machine.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import click

from inbox.config import Settings

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"


def _setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format=LOG_FORMAT)


def _runtime_from_env() -> Settings:
    from workers import runtime

    settings = Settings.from_env().with_secret()
    runtime.configure(settings)
    return settings


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@click.command("run")
@click.option("--host", default="127.0.0.1", show_default=True, help="Where the web process listens.")
@click.option("--port", default=5000, show_default=True, type=int)
@click.option(
    "--only",
    default="web,worker,scheduler,mail",
    show_default=True,
    hidden=True,
    help="Comma-separated processes to start (tests start a subset).",
)
def run_command(host: str, port: int, only: str) -> None:
    """Start web, a worker, the scheduler and the mail watcher; restart any that dies; Ctrl-C stops all."""
    from inbox.migrate import upgrade
    from workers import embedded_redis
    from workers.supervisor import Supervisor, process_argv

    _setup_logging()
    # Until the supervisor takes over the signals, SIGTERM and SIGHUP interrupt like Ctrl-C does, so that the
    # ``finally`` below still stops an embedded Redis started a moment before (their default would skip it).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupt)
    settings = Settings.from_env().with_secret()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.sqlalchemy_url)  # once here, so children don't race to migrate
    started_redis = not settings.redis_url and embedded_redis.running_url(settings) is None
    try:
        redis_url = embedded_redis.ensure_redis(settings)  # inside the try: an interrupt while it starts stops it
        env = dict(
            os.environ, REDIS_URL=redis_url, HELPLINE_DATA_DIR=str(settings.data_dir), SECRET_KEY=settings.secret_key
        )
        extra = {"web": ["--host", host, "--port", str(port)]}
        names = [n.strip() for n in only.split(",") if n.strip()]
        specs = {name: process_argv(name, *extra.get(name, [])) for name in names}
        click.echo(f"helpline: starting {', '.join(names)} (Redis {redis_url}); Ctrl-C stops")
        Supervisor(specs, env).run()
    finally:
        if started_redis:
            embedded_redis.stop_redis(settings)


@click.command("worker")
@click.argument("queues", nargs=-1)
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@click.option("--simple", is_flag=True, help="Run jobs in the worker process instead of a fork per job.")
@click.option(
    "--scheduler/--no-scheduler",
    "with_scheduler",
    default=True,
    show_default=True,
    help="Also move due retries (scheduled jobs) onto their queues.",
)
def worker_command(queues: Sequence[str], burst: bool, simple: bool, with_scheduler: bool) -> None:
    """Run an RQ worker on the outbound, inbound and default queues (or QUEUES)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from rq import SimpleWorker, Worker

    import workers.automation_jobs

    # Imported before the first fork, so each work horse starts with the job modules loaded.
    import workers.inbound
    import workers.maintenance
    import workers.outbound  # noqa: F401
    from workers import runtime

    _setup_logging()
    _runtime_from_env()
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints each thread's stack: a stuck worker explains
    runtime.preload()
    worker_class = SimpleWorker if simple else Worker
    wait = 1.0
    w = None
    while True:
        try:
            # (The previous worker's signal handlers stay installed until the new one runs: they set its flag.)
            w = worker_class(list(queues or runtime.QUEUES), connection=runtime.redis())
            w.work(burst=burst, with_scheduler=with_scheduler, logging_level="INFO")
            # RQ also returns after logging an unhandled error (Redis gone while it watched a job); only a burst
            # that is done or a requested stop (SIGTERM, Ctrl-C) ends this process.
            if burst or _stop_requested(w):
                return
            log.warning("worker loop ended without a stop request; starting it again in %.0fs", wait)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            # RQ gives up when Redis goes away mid-job; a restarted Redis should not need a restarted worker.
            # The job it was running is recovered by the outbox sweeper (replies) or the next poll (inboxes).
            if w is not None and _stop_requested(w):
                return  # SIGTERM while Redis was away: RQ's handler only set the flag
            log.warning("worker lost Redis (%s); reconnecting in %.0fs", exc, wait)
            time.sleep(wait)
            wait = min(wait * 2, 30.0)


def _stop_requested(worker: Any) -> bool:
    """Did SIGTERM/SIGINT ask this RQ worker to stop? (RQ keeps no public flag: a busy worker sets
    ``_stop_requested``, an idle one only records the time before it raises StopRequested.)"""
    return bool(worker._stop_requested or worker._shutdown_requested_date is not None)


@click.command("scheduler")
def scheduler_command() -> None:
    """Enqueue each inbox's poll at its interval and the sweeps every minute (run one or more)."""
    from workers import schedule

    _setup_logging()
    _runtime_from_env()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    schedule.run(stop)


@click.command("mail")
def mail_command() -> None:
    """Watch mailboxes with IMAP IDLE and enqueue a poll as soon as new mail arrives."""
    from workers import runtime, schedule

    _setup_logging()
    _runtime_from_env()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    def on_new_mail(inbox_id: int) -> None:
        # Through the poll lock: a poll already queued or running will see the new mail.
        schedule.try_enqueue_poll(inbox_id)

    try:
        from workers.mail_sync import watch_mailboxes
    except ImportError:
        log.warning("mail: IMAP IDLE watching is not available; inboxes are polled by the scheduler only")
        stop.wait()
        return
    watch_mailboxes(runtime.storage(), on_new_mail=on_new_mail, stop=stop)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def status_command(as_json: bool) -> None:
    """Queue lengths, failed jobs, and each inbox's last sync, last error, backlog and credential state."""
    from redis import Redis

    from inbox.runtime import Storage
    from workers import embedded_redis, status

    settings = Settings.from_env().with_secret()
    # Looking must not start anything: no embedded Redis is launched, no emitter installed.
    url = settings.redis_url or embedded_redis.running_url(settings)
    redis = Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2) if url else None
    storage = Storage.from_settings(settings)
    with storage.factory() as session:
        report = status.collect(session, redis, settings.poll_interval)
    storage.dispose()
    if as_json:
        click.echo(json.dumps(report, default=_json_default, indent=2))
    else:
        click.echo(status.render(report))
    if report["redis_error"] or any(ib["alert"] for ib in report["inboxes"]):
        sys.exit(2)  # scripts and health checks can act on it


def _json_default(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


PROCESS_COMMANDS = [run_command, worker_command, scheduler_command, mail_command, status_command]


def worker_main(argv: Sequence[str]) -> int:
    """Run ``helpline worker ARGV`` (for tests' subprocesses that register extra channels first)."""
    worker_command.main(args=list(argv), prog_name="helpline worker", standalone_mode=False)
    return 0


@click.group()
def _processes() -> None:
    """Helpline's process commands (what ``helpline run`` starts)."""


for _command in PROCESS_COMMANDS:
    _processes.add_command(_command)

if __name__ == "__main__":
    _processes(prog_name="helpline")
