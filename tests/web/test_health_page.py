"""The channel health page and the failing-channel banner on both databases: the page shows what ``helpline
status`` computes, the banner reaches exactly the agents of the failing inbox (and admins), after its threshold."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from flask import Flask
from redis import Redis
from rq import Queue
from sqlalchemy import select

from inbox.db import utcnow
from inbox.models import AuditLog, Inbox, Message, Ticket
from tests.web.conftest import World, login
from tickets import lifecycle
from web import create_app
from workers import status

BANNER_SHOWN = 'id="health-banner" class="health-banner" role="alert"\n'


@pytest.fixture
def redis_app(settings, storage, redis_url: str) -> Iterator[Flask]:  # type: ignore[no-untyped-def]
    Redis.from_url(redis_url).flushdb()
    flask_app = create_app(settings, redis_url=redis_url)
    yield flask_app
    flask_app.extensions["helpline"].dispose()
    Redis.from_url(redis_url).flushdb()
    from workers import runtime

    runtime.reset()


def make_failing(app: Flask, inbox_id: int, minutes: float, error: str = "IMAP server unavailable: refused") -> None:
    """The inbox's last good sync was ``minutes`` ago and every attempt since has failed."""
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, inbox_id)
        assert inbox is not None
        inbox.last_sync_at = utcnow() - dt.timedelta(minutes=minutes)
        inbox.last_error, inbox.last_error_at = error, utcnow()
        session.commit()


def banner_of(app: Flask, world: World, user_id: int) -> str:
    client = app.test_client()
    login(client, world.emails[user_id])
    html = client.get("/").get_data(as_text=True)
    start = html.index('<div id="health-banner"')
    return html[start:html.index("</div>", start)]


def test_banner_reaches_the_inbox_team_and_admins_after_the_threshold(app: Flask, world: World) -> None:
    make_failing(app, world.inbox_a, minutes=5)  # failing, but not yet for the default 15 minutes
    assert " hidden" in banner_of(app, world, world.agent_a).split(">")[0]
    make_failing(app, world.inbox_a, minutes=20)
    for who in (world.agent_a, world.lead_a, world.admin):
        shown = banner_of(app, world, who)
        assert " hidden" not in shown.split(">")[0] and "IMAP server unavailable" in shown, who
    hidden = banner_of(app, world, world.agent_b)  # team B does not own inbox A: not a word about it
    assert " hidden" in hidden.split(">")[0] and "refused" not in hidden and str(world.inbox_a) not in hidden
    with app.extensions["helpline"].factory() as session:  # paused on purpose: nothing to flag
        inbox = session.get(Inbox, world.inbox_a)
        assert inbox is not None
        inbox.paused = True
        session.commit()
    assert " hidden" in banner_of(app, world, world.agent_a).split(">")[0]


def test_health_page_shows_the_status_figures_and_sets_the_threshold(redis_app: Flask, world: World) -> None:
    app = redis_app
    make_failing(app, world.inbox_a, minutes=20)
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, world.ticket_a)
        assert ticket is not None
        lifecycle.reply(session, ticket, "waiting", by=None)
        failed = lifecycle.reply(session, ticket, "bounced", by=None)
        failed.delivery_state, failed.delivery_error = "failed", "550 mailbox unknown"
        session.commit()
        report = status.collect(session, Redis.from_url(app.config["HELPLINE_REDIS_URL"]))
    row_a = next(r for r in report["inboxes"] if r["id"] == world.inbox_a)
    assert (row_a["alert"], row_a["backlog"], row_a["failed_replies"]) == (True, 1, 1)

    client = app.test_client()
    token = login(client, world.emails[world.admin])
    page = client.get("/settings/health").get_data(as_text=True)
    row = page[page.index(f'id="health-inbox-{world.inbox_a}"'):]
    row = row[:row.index("</tr>")]
    assert 'data-state="alert"' in row and "FAILING for 20 min" in row and "IMAP server unavailable" in row
    assert "<td>1<br><small>oldest" in row  # one reply waiting, as helpline status counts it
    assert "550 mailbox unknown" in page and 'id="queue-outbound"' in page and "Workers running" in page
    assert '<tr id="stored-automation_events"><td>Automation events (rules, webhooks) to run</td><td>0</td>' in page
    panel = client.get("/settings/health/panel").get_data(as_text=True)
    assert f'id="health-inbox-{world.inbox_a}"' in panel and "<html" not in panel

    # Flag it only after an hour: the banner goes for its agents; the change is audited.
    client.post(f"/settings/health/inboxes/{world.inbox_a}/threshold", data={"minutes": "60", "csrf_token": token})
    assert " hidden" in banner_of(app, world, world.agent_a).split(">")[0]
    bad = client.post(f"/settings/health/inboxes/{world.inbox_a}/threshold",
                      data={"minutes": "-3", "csrf_token": token}, follow_redirects=True)
    assert "whole minutes" in bad.get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, world.inbox_a)
        assert inbox is not None and inbox.config["alert_after"] == 3600
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "inbox.alert_threshold_changed")).one()
        assert audit.detail["minutes"] == 60
    client.post(f"/settings/health/inboxes/{world.inbox_a}/threshold", data={"minutes": "", "csrf_token": token})
    assert " hidden" not in banner_of(app, world, world.agent_a).split(">")[0]  # back to the default 15 minutes

    # Retry the failed reply: queued again with fresh attempts, and its delivery job is on the outbound queue.
    client.post(f"/settings/health/replies/{failed.id}/retry", data={"csrf_token": token})
    with app.extensions["helpline"].factory() as session:
        msg = session.get(Message, failed.id)
        assert msg is not None and (msg.delivery_state, msg.delivery_attempts) == ("queued", 0)
    outbound = Queue("outbound", connection=Redis.from_url(app.config["HELPLINE_REDIS_URL"]))
    assert f"deliver-{failed.id}" in outbound.job_ids


def test_sync_now_goes_through_the_poll_lock(redis_app: Flask, world: World) -> None:
    app = redis_app
    with app.extensions["helpline"].factory() as session:
        inbox = session.get(Inbox, world.inbox_a)
        assert inbox is not None
        inbox.config = {"imap_host": "127.0.0.1", "imap_port": 1, "imap_security": "none"}
        session.commit()
    client = app.test_client()
    token = login(client, world.emails[world.admin])
    first = client.post(f"/settings/health/inboxes/{world.inbox_a}/sync", data={"csrf_token": token},
                        follow_redirects=True).get_data(as_text=True)
    second = client.post(f"/settings/health/inboxes/{world.inbox_a}/sync", data={"csrf_token": token},
                         follow_redirects=True).get_data(as_text=True)
    assert "queued." in first and "already queued or running" in second
    inbound = Queue("inbound", connection=Redis.from_url(app.config["HELPLINE_REDIS_URL"]))
    assert len(inbound.jobs) == 1 and inbound.jobs[0].func_name == "workers.inbound.poll_inbox"
    with app.extensions["helpline"].factory() as session:
        assert session.scalar(select(AuditLog.target).where(AuditLog.action == "inbox.sync_requested")) == (
            f"inbox:{world.inbox_a}")
    agent = app.test_client()
    agent_token = login(agent, world.emails[world.agent_a])
    assert agent.post(f"/settings/health/inboxes/{world.inbox_a}/sync",
                      data={"csrf_token": agent_token}).status_code == 403
    assert len(inbound.jobs) == 1
