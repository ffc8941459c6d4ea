"""Outgoing webhooks through a real RQ worker process to a receiver on loopback: signature, retries, failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import events
from inbox.automation_models import WebhookDelivery
from inbox.config import Settings
from inbox.errors import InvalidChange
from inbox.ingest import ingest
from inbox.models import Ticket
from inbox.runtime import Storage
from tests import factories
from tests.automation.receiver import receiver
from tests.workers.conftest import Workers, process_env
from tests.workers.test_processes import wait_until
from tickets import automation, webhooks

SECRET = "a-long-enough-signing-secret"


def subscribe(session: Session, settings: Settings, url: str, names: list[str]) -> int:
    sub = webhooks.save_subscription(session, None, secret_key=settings.secret_key, name=url, url=url,
                                     event_names=names, secret=SECRET, enabled=True, allow_private=True)
    return sub.id


def deliveries(storage: Storage, sub_id: int) -> list[WebhookDelivery]:
    with storage.factory() as session:
        rows = list(session.scalars(select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id)))
        session.expunge_all()
        return rows


def test_worker_signs_retries_and_fails_webhooks_and_runs_rules(
    file_storage: Storage, file_settings: Settings, redis_url: str,
    workers_factory: Callable[[dict[str, str]], Workers],
) -> None:
    with receiver() as rx:
        rx.script = {"/flaky": [503, 200], "/gone": [410], "/bad": [400], "/down": [503]}
        with file_storage.factory() as session:
            subs = {p: subscribe(session, file_settings, rx.url(p), [events.TICKET_CREATED])
                    for p in ("/flaky", "/gone", "/bad", "/down")}
            quiet = subscribe(session, file_settings, rx.url("/quiet"), [events.CONTACT_MERGED])
            automation.save_rule(session, None, name="tag it", trigger="ticket_created", match="all",
                                 conditions=[], actions=[{"type": "add_tag", "value": "seen-by-worker"}])
            inbox = factories.make_inbox(session)
            session.commit()
            msg = ingest(session, inbox.id, factories.inbound(subject="Webhook me"))
            assert msg is not None
            session.commit()  # the AutomationEnqueuer of this process enqueues process_event now
            ticket_id = msg.ticket_id
        workers = workers_factory(process_env(file_settings, redis_url, HELPLINE_WEBHOOK_ALLOW_PRIVATE="true",
                                              HELPLINE_WEBHOOK_BACKOFF="1,1"))
        workers.start()

        def settled() -> bool:
            states = [d.state for sub in subs.values() for d in deliveries(file_storage, sub)]
            return len(states) == 4 and all(s in ("delivered", "failed") for s in states)

        wait_until(settled, 90, "every webhook delivered or failed", workers)
        flaky = rx.at("/flaky")
        assert len(flaky) == 2  # a 503, then the retry that succeeded
        now = time.time()
        for request in flaky:
            h = request.headers
            assert webhooks.verify(SECRET, h["x-helpline-timestamp"], request.body, h["x-helpline-signature"],
                                   now=now)
            assert not webhooks.verify("wrong-secret-wrong-secret", h["x-helpline-timestamp"], request.body,
                                       h["x-helpline-signature"], now=now)
            assert h["content-type"] == "application/json" and h["x-helpline-event"] == "ticket.created"
        assert flaky[0].headers["x-helpline-delivery"] == flaky[1].headers["x-helpline-delivery"]  # receivers dedupe
        body = json.loads(flaky[1].body)
        assert body["event"] == "ticket.created" and body["data"]["id"] == ticket_id
        assert body["data"]["subject"] == "Webhook me"
        [ok] = deliveries(file_storage, subs["/flaky"])
        assert (ok.state, ok.attempts, ok.status_code, ok.error) == ("delivered", 2, 200, None)
        for path in ("/gone", "/bad"):
            [failed] = deliveries(file_storage, subs[path])
            assert (failed.state, failed.attempts) == ("failed", 1), path  # a 4xx is final at once
            assert failed.error is not None and f"HTTP {failed.status_code}" in failed.error
            assert len(rx.at(path)) == 1
        [down] = deliveries(file_storage, subs["/down"])
        assert (down.state, down.attempts, down.status_code) == ("failed", 3, 503)
        assert down.error is not None and down.error.startswith("gave up after 3 attempts: HTTP 503")
        assert len(rx.at("/down")) == 3
        assert deliveries(file_storage, quiet) == [] and rx.at("/quiet") == []
        with file_storage.factory() as session:
            ticket = session.get_one(Ticket, ticket_id)
            assert [t.name for t in ticket.tags] == ["seen-by-worker"]


def test_private_targets_are_refused_unless_allowed(session: Session, settings: Settings) -> None:
    for url in ("http://127.0.0.1:8080/x", "http://10.0.0.5/x", "http://[::1]/x", "http://localhost/x",
                "http://169.254.169.254/latest/meta-data", "http://192.168.1.1/"):
        with pytest.raises(webhooks.TargetRefused, match="private"):
            webhooks.check_url(url, allow_private=False)
    for url in ("ftp://example.com/x", "javascript:alert(1)", "http:///nohost", "https://user:pw@example.com/"):
        with pytest.raises(webhooks.TargetRefused):
            webhooks.check_url(url, allow_private=True)
    assert webhooks.check_url("http://127.0.0.1:8080/x", allow_private=True) == "http://127.0.0.1:8080/x"
    assert webhooks.check_url("https://93.184.215.14/hook", allow_private=False) == "https://93.184.215.14/hook"
    with pytest.raises(InvalidChange, match="at least 16"):
        webhooks.save_subscription(session, None, secret_key=settings.secret_key, name="", url="https://a.example/",
                                   event_names=[events.TICKET_CREATED], secret="short", enabled=True,
                                   allow_private=False)


def test_secret_is_encrypted_at_rest(session: Session, settings: Settings) -> None:
    sub_id = subscribe(session, settings, "https://hooks.example.com/x", [events.MESSAGE_CREATED])
    session.commit()
    raw = session.execute(select(webhooks.WebhookSubscription.secret)).scalar_one()
    assert SECRET not in raw
    sub = session.get_one(webhooks.WebhookSubscription, sub_id)
    assert webhooks.signing_secret(settings.secret_key, sub) == SECRET
