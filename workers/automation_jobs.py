"""Automation and outgoing webhooks as RQ jobs: ``process_event`` (run the rules for one event and record its
webhook deliveries) and ``send_webhook`` (POST one delivery, retried with backoff and jitter).

``AutomationEnqueuer`` is a transactional outbox: a commit that raises an event some rule or webhook wants also
writes it as an ``AutomationEvent`` row, and ``process_event`` is enqueued after the commit; the job deletes the
row in the transaction that runs the rules. A Redis outage at the commit therefore delays automation (the
scheduler's ``sweep_automation_events`` enqueues the rows once Redis is back) instead of losing it. Ingest must
stay fast, so only events some enabled rule or subscription wants are written: that set lives in Redis
(``GATE_KEY``, rewritten by every ``process_event`` and by the settings pages) and is cached here for
``GATE_TTL`` seconds; without Redis it is read from the database. Without the key (a flushed Redis) every candidate
event is written, so nothing is missed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import time
from typing import Any

import requests
from rq.job import Job
from sqlalchemy import and_, event, insert, or_, select, update
from sqlalchemy.orm import Session

from inbox import events
from inbox.automation_models import AutomationEvent, WebhookDelivery
from inbox.db import utcnow
from tickets import automation, webhooks
from workers import runtime

log = logging.getLogger(__name__)

GATE_KEY = "helpline:automation:wanted"
GATE_TTL = 2.0  # seconds a process trusts its cached copy (a new rule acts within this time)
AUTOMATION_TIMEOUT = 120  # seconds one process_event job may take
WEBHOOK_TIMEOUT = 60
HTTP_TIMEOUT = (5.0, 15.0)  # connect, read seconds
BACKOFF = [10, 60, 300, 1800, 7200]  # seconds before retry n of a webhook (network error, 408, 429, 5xx)
JITTER = 0.2
USER_AGENT = "Helpline-Webhooks/1"
# The sweeper (``sweep_webhooks``) leaves a new delivery this long for the job ``process_event`` enqueues right
# after its commit, and a retry this long past its time for the scheduler that holds it.
PENDING_GRACE = dt.timedelta(seconds=60)
SCHEDULED_GRACE = dt.timedelta(seconds=60)
SWEEP_BATCH = 1000
MAX_SWEEPS = 5  # an outbox event whose job failed this many times is left to an admin
_OUTBOX = "automation_outbox"  # session.info: (row id, event) written by this transaction


def _backoff() -> list[int]:
    if raw := os.environ.get("HELPLINE_WEBHOOK_BACKOFF"):  # tests shorten the clock of worker subprocesses
        return [int(x) for x in raw.split(",")]
    return BACKOFF


def backoff_delay(attempts: int, retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failures; the receiver's Retry-After wins (capped)."""
    if retry_after is not None and retry_after > 0:
        return min(float(retry_after), 3600.0)
    steps = _backoff()
    base = steps[min(max(attempts, 1), len(steps)) - 1]
    return float(base) * (1 + (rng or random).uniform(-JITTER, JITTER))


# --- the jobs ---------------------------------------------------------------------------------------------------


def process_event(name: str, room: str, payload: dict[str, Any], event_id: int | None = None) -> dict[str, Any]:
    """Run the automation rules for one committed domain event and fan it out to webhook subscriptions.

    ``event_id`` is its ``AutomationEvent`` row: deleted (under a row lock) in the transaction that runs the rules,
    so a second job for the same event (the sweeper's, racing the first) finds it gone and does nothing."""
    storage = runtime.storage()
    mail_domain = runtime.settings().mail_domain
    fired: list[int] = []
    deliveries: list[int] = []
    with storage.factory() as session, session.begin():
        if event_id is not None:
            row = session.get(AutomationEvent, event_id, with_for_update=True)
            if row is None:
                return {"skipped": "already processed"}
            session.delete(row)
        trigger = automation.trigger_for(name, room, payload)
        if trigger is not None:
            fired = automation.run_rules(session, trigger, mail_domain=mail_domain)
        if webhooks.event_room_matches(name, room):
            deliveries = webhooks.create_deliveries(session, name, payload)
        wanted = wanted_events(session)
    publish_gate(wanted)
    for delivery_id in deliveries:
        enqueue_webhook(delivery_id)
    if fired:
        log.info("automation: %s on %s fired rules %s", name, room, fired)
    return {"fired": fired, "webhooks": deliveries}


def send_webhook(delivery_id: int) -> str:
    """POST one webhook delivery; returns its new state."""
    storage = runtime.storage()
    settings = runtime.settings()
    with storage.factory() as session, session.begin():
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.state in ("delivered", "failed"):
            return "skipped"
        sub = delivery.subscription
        if not sub.enabled and delivery.event != webhooks.PING:
            webhooks.record_attempt(delivery, state="failed", status_code=None, error="subscription disabled",
                                    duration_ms=0)
            return "failed"
        delivery.attempts += 1
        attempts = delivery.attempts
        try:
            url = webhooks.check_url(sub.url, allow_private=settings.webhook_allow_private)
            secret = webhooks.signing_secret(settings.secret_key, sub)
        except Exception as exc:  # a refused target or an undecryptable secret: retrying cannot help
            webhooks.record_attempt(delivery, state="failed", status_code=None, error=str(exc), duration_ms=0)
            log.warning("webhook %s: %s", delivery_id, exc)
            return "failed"
        body = webhooks.body_for(delivery)
        event_name, event_id = delivery.event, delivery.event_id
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        webhooks.SIGNATURE_HEADER: webhooks.sign(secret, timestamp, body),
        webhooks.TIMESTAMP_HEADER: str(timestamp),
        "X-Helpline-Event": event_name,
        "X-Helpline-Delivery": event_id,
    }
    started = time.monotonic()
    status: int | None = None
    retry_after: float | None = None
    try:
        # No redirects: a 30x to an internal address would undo the target check.
        response = requests.post(url, data=body, headers=headers, timeout=HTTP_TIMEOUT, allow_redirects=False)
        status = response.status_code
        error = None if 200 <= status < 300 else f"HTTP {status} {response.reason}: {response.text[:300]}"
        retryable = status in (408, 429) or status >= 500
        if (raw := response.headers.get("Retry-After", "")).isdigit():
            retry_after = float(raw)
    except requests.RequestException as exc:
        error, retryable = f"{type(exc).__name__}: {exc}", True
    duration_ms = int((time.monotonic() - started) * 1000)
    return _record(delivery_id, attempts, status, error, retryable, retry_after, duration_ms)


def _record(delivery_id: int, attempts: int, status: int | None, error: str | None, retryable: bool,
            retry_after: float | None, duration_ms: int) -> str:
    storage = runtime.storage()
    delay: float | None = None
    with storage.factory() as session, session.begin():
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "skipped"  # the subscription was deleted meanwhile
        if error is None:
            state = "delivered"
        elif retryable and attempts <= len(_backoff()):
            state, delay = "retrying", backoff_delay(attempts, retry_after)
        else:
            state = "failed"
            if retryable:
                error = f"gave up after {attempts} attempts: {error}"
        webhooks.record_attempt(delivery, state=state, status_code=status, error=error, duration_ms=duration_ms,
                                retry_in=delay)
    if delay is not None:
        log.info("webhook %s: attempt %s failed (%s); retrying in %.1fs", delivery_id, attempts, error, delay)
        enqueue_webhook(delivery_id, delay=delay)
    elif state == "failed":
        log.warning("webhook %s failed: %s", delivery_id, error)
    return state


def sweep_webhooks(now: dt.datetime | None = None) -> int:
    """Enqueue webhook deliveries that have no job: Redis was down when ``process_event`` committed them, or lost
    them (a restart without persistence), or the scheduler holding a retry died. Returns how many were enqueued.

    A delivery past its last allowed attempt is marked failed instead, so a job that keeps crashing before it
    records an attempt is not retried forever. A delivery sent twice (a worker died between the POST and its
    record) carries the same ``X-Helpline-Delivery`` id both times: receivers dedupe by it.
    """
    now = now or utcnow()
    storage = runtime.storage()
    d = WebhookDelivery
    with storage.factory() as session:
        rows = session.execute(
            select(d.id, d.state, d.attempts)
            .where(
                or_(
                    and_(d.state == "pending", d.created_at < now - PENDING_GRACE),
                    and_(d.state == "retrying", or_(d.next_attempt_at.is_(None),
                                                    d.next_attempt_at < now - SCHEDULED_GRACE)),
                )
            )
            .order_by(d.id)
            .limit(SWEEP_BATCH)
        ).all()
    if not rows:
        return 0
    jobs = Job.fetch_many([webhook_job_id(r.id) for r in rows], connection=runtime.redis())
    count = 0
    given_up: list[int] = []
    for row, job in zip(rows, jobs, strict=True):
        status = job.get_status(refresh=False) if job is not None else None
        if status is not None and status.value in ("queued", "started", "deferred"):
            continue  # its job is on the way (a lost worker's "started" job is failed by RQ, then swept)
        if row.attempts > len(_backoff()):
            given_up.append(row.id)
            continue
        enqueue_webhook(row.id)
        count += 1
    if given_up:
        with storage.factory() as session, session.begin():
            for delivery in session.scalars(select(d).where(d.id.in_(given_up))):
                last = delivery.error or "no outcome recorded"
                webhooks.record_attempt(delivery, state="failed", status_code=delivery.status_code,
                                        error=f"gave up after {delivery.attempts} attempts: {last}",
                                        duration_ms=delivery.duration_ms or 0)
    if count:
        log.info("sweep_webhooks: enqueued %d webhook deliveries that had no job", count)
    return count


def wanted_events(session: Session) -> dict[str, list[str]]:
    """The events enabled rules and subscriptions listen to (what ``AutomationEnqueuer`` lets through)."""
    return {"rules": sorted(automation.wanted_events(session)), "webhooks": sorted(webhooks.wanted_events(session))}


# --- enqueueing -------------------------------------------------------------------------------------------------


def event_job_id(event_id: int) -> str:
    return f"automation-event-{event_id}"


def enqueue_event(name: str, room: str, payload: dict[str, Any], event_id: int | None = None) -> Job:
    return runtime.queue(runtime.DEFAULT).enqueue(
        "workers.automation_jobs.process_event", name, room, payload, event_id,
        job_id=event_job_id(event_id) if event_id is not None else None,
        job_timeout=AUTOMATION_TIMEOUT, result_ttl=60, failure_ttl=7 * 24 * 3600,
        description=f"automation for {name} on {room}",
    )


def webhook_job_id(delivery_id: int) -> str:
    return f"webhook-{delivery_id}"


def enqueue_webhook(delivery_id: int, delay: float = 0.0) -> Job:
    q = runtime.queue(runtime.DEFAULT)
    opts: dict[str, Any] = {
        "job_id": webhook_job_id(delivery_id),
        "job_timeout": WEBHOOK_TIMEOUT,
        "result_ttl": 60,
        "failure_ttl": 7 * 24 * 3600,
        "description": f"send webhook delivery {delivery_id}",
    }
    if delay > 0:
        return q.enqueue_in(dt.timedelta(seconds=delay), "workers.automation_jobs.send_webhook", delivery_id, **opts)
    return q.enqueue("workers.automation_jobs.send_webhook", delivery_id, **opts)


def publish_gate(wanted: dict[str, list[str]]) -> None:
    """Tell every process which events automation and webhooks want (called after their settings change)."""
    try:
        runtime.redis().set(GATE_KEY, json.dumps(wanted))
    except Exception:
        log.warning("could not publish the automation event filter", exc_info=True)
    AutomationEnqueuer.cache = (0.0, None)


def refresh_gate() -> None:
    """Publish what rules and webhooks want from the database (a worker at start-up, before any job)."""
    try:
        with runtime.storage().factory() as session:
            wanted = wanted_events(session)
    except Exception:  # no schema yet (before `helpline db upgrade`): publishers let everything through
        log.warning("could not read automation rules for the event filter", exc_info=True)
        return
    publish_gate(wanted)


class AutomationEnqueuer:
    """The transactional outbox of automation: in ``before_commit``, every pending domain event that a rule or a
    webhook wants becomes an ``AutomationEvent`` row of the same transaction; after the commit each row's
    ``process_event`` job is enqueued. If Redis is down then (or the process dies first), the rows wait, and
    ``sweep_automation_events`` enqueues them. Events nobody wants cost nothing (the gate: ``GATE_KEY``)."""

    cache: tuple[float, dict[str, set[str]] | None] = (0.0, None)
    enabled = False  # set by install_automation_enqueuer in processes that run automation (web, workers, CLI sync)

    @staticmethod
    def wanted(session: Session | None = None) -> dict[str, set[str]] | None:
        """What rules and webhooks listen to: Redis's copy (cached ``GATE_TTL`` s); if Redis does not answer, the
        database's (``session``); None (everything) when neither is known."""
        fetched_at, value = AutomationEnqueuer.cache
        if time.monotonic() - fetched_at < GATE_TTL:
            return value
        try:
            known = runtime.known_redis()  # never start an embedded Redis from inside a commit
            if known is None:
                raise ConnectionError("this process has no Redis configured")
            raw = known.get(GATE_KEY)
            value = {k: set(v) for k, v in json.loads(raw).items()} if raw else None
        except Exception:  # Redis is down: the outbox rows are what matters now, so ask the database
            if session is None:
                return None
            value = {k: set(v) for k, v in wanted_events(session).items()}
        AutomationEnqueuer.cache = (time.monotonic(), value)
        return value

    @staticmethod
    def wants(ev: events.DomainEvent, wanted: dict[str, set[str]] | None) -> bool:
        for_rules = automation.trigger_for(ev.name, ev.room, ev.payload) is not None and (
            wanted is None or ev.name in wanted.get("rules", ())
        )
        for_hooks = webhooks.event_room_matches(ev.name, ev.room) and (
            wanted is None or ev.name in wanted.get("webhooks", ())
        )
        return for_rules or for_hooks


@event.listens_for(Session, "before_commit")
def _write_outbox(session: Session) -> None:
    if not AutomationEnqueuer.enabled or session.in_nested_transaction():
        return
    pending: list[events.DomainEvent] = session.info.get("pending_events") or []
    if not pending:
        return
    candidates = [ev for ev in pending if AutomationEnqueuer.wants(ev, None)]  # no I/O for events nobody can want
    if not candidates:
        return
    wanted = AutomationEnqueuer.wanted(session)
    chosen = [ev for ev in candidates if AutomationEnqueuer.wants(ev, wanted)]
    if not chosen:
        return
    rows = [{"name": ev.name, "room": ev.room, "payload": dict(ev.payload), "sweeps": 0, "created_at": utcnow()}
            for ev in chosen]
    ids = list(session.scalars(insert(AutomationEvent).returning(AutomationEvent.id, sort_by_parameter_order=True),
                               rows))
    session.info[_OUTBOX] = list(zip(ids, chosen, strict=True))


@event.listens_for(Session, "after_commit")
def _enqueue_outbox(session: Session) -> None:
    if session.in_nested_transaction():
        return
    written: list[tuple[int, events.DomainEvent]] = session.info.pop(_OUTBOX, [])
    if written and runtime.known_redis() is None:
        log.warning("%d automation events not enqueued (no Redis configured here); the sweeper will", len(written))
        return
    for event_id, ev in written:
        try:
            enqueue_event(ev.name, ev.room, dict(ev.payload), event_id)
        except Exception:  # Redis is down: the row waits for sweep_automation_events
            log.warning("automation event %s (%s) not enqueued; the sweeper will", event_id, ev.name, exc_info=True)
            break


@event.listens_for(Session, "after_soft_rollback")
def _forget_outbox(session: Session, previous: Any) -> None:
    if not previous.nested:
        session.info.pop(_OUTBOX, None)


def sweep_automation_events(now: dt.datetime | None = None) -> int:
    """Enqueue outbox events that have no job (Redis was down at their commit, or lost the job). Returns how many.

    An event swept ``MAX_SWEEPS`` times is left alone (its job keeps failing: the failed-job list on the health
    page says why) rather than run every minute forever."""
    now = now or utcnow()
    e = AutomationEvent
    with runtime.storage().factory() as session:
        rows = session.execute(
            select(e.id, e.name, e.room, e.payload)
            .where(e.created_at < now - PENDING_GRACE, e.sweeps < MAX_SWEEPS)
            .order_by(e.id)
            .limit(SWEEP_BATCH)
        ).all()
    if not rows:
        return 0
    jobs = Job.fetch_many([event_job_id(r.id) for r in rows], connection=runtime.redis())
    todo = []
    for row, job in zip(rows, jobs, strict=True):
        status = job.get_status(refresh=False) if job is not None else None
        if status is not None and status.value in ("queued", "started", "deferred", "scheduled"):
            continue
        todo.append(row)
    if not todo:
        return 0
    with runtime.storage().factory() as session, session.begin():
        session.execute(update(e).where(e.id.in_([r.id for r in todo])).values(sweeps=e.sweeps + 1))
    for row in todo:
        enqueue_event(row.name, row.room, dict(row.payload), row.id)
    log.info("sweep_automation_events: enqueued %d automation events that had no job", len(todo))
    return len(todo)


def install_automation_enqueuer() -> None:
    """Run automation and webhooks for this process's commits (web, workers, ``helpline inbox sync``)."""
    AutomationEnqueuer.enabled = True


def remove_automation_enqueuer() -> None:
    AutomationEnqueuer.enabled = False
