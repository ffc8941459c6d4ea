"""The ticket page's split/move actions, SLA badges, archived inboxes and Instagram answered by hand, over HTTP."""

from __future__ import annotations

import datetime as dt
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.ingest import ingest
from inbox.models import Inbox, Message, SlaPolicy, SlaTarget, Ticket, TicketEvent
from tests.factories import inbound
from tests.web.conftest import World, login
from tickets import lifecycle
from tickets.sla import sla_statuses

ANN = "ann@example.com"


def factory(app: Flask) -> Any:
    return app.extensions["helpline"].factory


def add_policy(session: Session, seconds: int = 7200) -> None:
    policy = SlaPolicy(name=f"Standard {seconds}", position=0)
    policy.targets = [SlaTarget(priority=p, first_response_seconds=seconds) for p in ("low", "normal", "high")]
    session.add(policy)


def test_split_and_move_over_http(app: Flask, world: World) -> None:
    with factory(app)() as session:
        later = ingest(
            session,
            world.inbox_a,
            inbound(
                handle=ANN,
                subject="Re: Secret plans A",
                text="And my invoice?",
                references=("<nope@x>",),
                ticket_token=world.ticket_a,
            ),
        )
        assert later is not None and later.ticket_id == world.ticket_a
        later_id = later.id
        session.commit()
    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    page = client.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
    assert f"ticket token #{world.ticket_a}" in page  # every message says why it is on its ticket
    assert f"/tickets/{world.ticket_a}/messages/{later_id}/split" in page

    # No CSRF token: refused, nothing moves.
    assert client.post(f"/tickets/{world.ticket_a}/messages/{later_id}/split").status_code == 400
    response = client.post(f"/tickets/{world.ticket_a}/messages/{later_id}/split", data={"csrf_token": token})
    assert response.status_code == 302
    new_id = int(response.headers["Location"].rsplit("/", 1)[1])
    assert new_id not in (world.ticket_a, world.ticket_a2)
    page = client.get(f"/tickets/{new_id}").get_data(as_text=True)
    assert f"split off #{world.ticket_a} by " in html.unescape(page)

    # Move it on into ticket A2 by number ("#" allowed), then refuse the only message of a ticket with a 422.
    response = client.post(
        f"/tickets/{new_id}/messages/{later_id}/move", data={"csrf_token": token, "into": f"#{world.ticket_a2}"}
    )
    assert response.status_code == 422  # it is the only message of the split ticket
    response = client.post(
        f"/tickets/{world.ticket_a}/messages/{world.message_a}/move", data={"csrf_token": token, "into": "abc"}
    )
    assert response.status_code == 422
    with factory(app)() as session:
        message = session.get(Message, later_id)
        assert message is not None and message.ticket_id == new_id


def test_no_move_into_or_out_of_another_teams_ticket(app: Flask, world: World) -> None:
    with factory(app)() as session:
        extra = ingest(session, world.inbox_b, inbound(handle="bob@example.com", ticket_token=world.ticket_b))
        assert extra is not None and extra.ticket_id == world.ticket_b
        extra_id = extra.id
        session.commit()
    client = app.test_client()
    token = login(client, world.emails[world.agent_b])
    response = client.post(
        f"/tickets/{world.ticket_b}/messages/{extra_id}/move", data={"csrf_token": token, "into": str(world.ticket_a)}
    )
    assert response.status_code == 404  # team A's ticket does not exist for team B
    # A message id of another ticket under this ticket's URL is a 404 too.
    response = client.post(f"/tickets/{world.ticket_b}/messages/{world.message_a}/split", data={"csrf_token": token})
    assert response.status_code == 404
    with factory(app)() as session:
        assert session.get(Message, extra_id).ticket_id == world.ticket_b  # type: ignore[union-attr]
        assert session.get(Message, world.message_a).ticket_id == world.ticket_a  # type: ignore[union-attr]


@contextmanager
def counting(app: Flask) -> Iterator[list[str]]:
    engine = app.extensions["helpline"].engine
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_sla_badges_in_list_and_header_match_the_engine(app: Flask, world: World) -> None:
    now = utcnow()
    with factory(app)() as session:
        add_policy(session)
        due = ingest(session, world.inbox_a, inbound(sent_at=now - dt.timedelta(minutes=30)))
        late = ingest(session, world.inbox_a, inbound(sent_at=now - dt.timedelta(hours=2, minutes=15)))
        assert due is not None and late is not None
        session.commit()
        due_id, late_id = due.ticket_id, late.ticket_id
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    rows = client.get("/fragments/inbox/rows?folder=open").get_data(as_text=True)
    with factory(app)() as session:
        expected = sla_statuses(session, [due_id, late_id], utcnow())
    assert expected[due_id] is not None and expected[late_id] is not None
    assert expected[due_id].label == "due in 1h 29m" and expected[late_id].label == "overdue 15m"  # type: ignore[union-attr]
    badges = dict(
        re.findall(r'data-ticket-id="(\d+)".*?<span class="badge sla sla-badge[^>]*>([^<]+)</span>', rows, re.S)
    )
    assert badges[str(due_id)] == "due in 1h 29m" and badges[str(late_id)] == "overdue 15m"
    header = client.get(f"/tickets/{late_id}").get_data(as_text=True)
    assert re.search(r'<header class="ticket-head">.*overdue 15m.*</header>', header, re.S)

    # The badges of a page cost the same few queries for 3 tickets or 40: batched, never one per row.
    with counting(app) as few:
        client.get("/fragments/inbox/rows?folder=open")
    with factory(app)() as session:
        for _ in range(40):
            ingest(session, world.inbox_a, inbound(sent_at=now - dt.timedelta(minutes=10)))
        session.commit()
    with counting(app) as many:
        body = client.get("/fragments/inbox/rows?folder=open").get_data(as_text=True)
    assert body.count("sla-badge") >= 40
    assert len(many) == len(few), (len(few), len(many))


def test_archived_inbox_leaves_folders_and_filters_but_not_search(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.lead_a])
    assert f"inbox:{world.inbox_a}" in client.get("/fragments/inbox/counts").get_json()
    with factory(app)() as session:
        inbox = session.get(Inbox, world.inbox_a)
        assert inbox is not None
        inbox.config = dict(inbox.config or {}) | {"archived": True}
        inbox.paused = True
        session.commit()
        name = inbox.name
    assert f"inbox:{world.inbox_a}" not in client.get("/fragments/inbox/counts").get_json()
    page = client.get("/").get_data(as_text=True)
    assert f'data-folder="inbox:{world.inbox_a}"' not in page
    search = client.get("/search?q=Secret").get_data(as_text=True)
    assert f">{name}</option>" not in search  # not offered as a filter any more
    assert f'data-ticket-id="{world.ticket_a}"' in search  # but its tickets are still found
    assert client.get(f"/tickets/{world.ticket_a}").status_code == 200  # and reachable by URL
    assert name not in re.sub(r"<title>.*?</title>", "", page)


def instagram_ticket(session: Session, **config: Any) -> tuple[int, int]:
    box = session.scalar(select(Inbox).where(Inbox.channel == "email"))
    assert box is not None
    ig = Inbox(
        name=f"Instagram {len(config)}", channel="instagram", address="myshop", team_id=box.team_id, config=config
    )
    session.add(ig)
    session.flush()
    message = ingest(
        session,
        ig.id,
        inbound(
            channel="instagram",
            handle="ann.shop",
            message_id=None,
            text="How much is the blue mug?",
            thread_key="ABC123",
            meta={"post_shortcode": "ABC123", "comment_id": "1789", "post_url": "https://www.instagram.com/p/ABC123/"},
        ),
    )
    assert message is not None
    session.commit()
    return ig.id, message.ticket_id


def test_instagram_answered_by_hand(app: Flask, world: World) -> None:
    with factory(app)() as session:
        _, ticket_id = instagram_ticket(session)
        _, graph_ticket = instagram_ticket(session, mode="graph")
    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    page = client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert 'href="https://www.instagram.com/p/ABC123/c/1789/"' in page and 'id="ig-copy"' in page
    assert 'id="ig-answered"' in page
    assert 'id="ig-answered"' not in client.get(f"/tickets/{graph_ticket}").get_data(as_text=True)  # Graph: composer
    assert 'id="ig-answered"' not in client.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)

    response = client.post(
        f"/tickets/{ticket_id}/answered", data={"csrf_token": token, "text": "It is 20 EUR", "status": "pending"}
    )
    assert response.status_code == 302
    for other in (graph_ticket, world.ticket_a):  # delivered by Helpline there: no manual record
        assert client.post(f"/tickets/{other}/answered", data={"csrf_token": token, "text": "x"}).status_code == 422
    with factory(app)() as session:
        out = session.scalar(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound"))
        ticket = session.get(Ticket, ticket_id)
        assert out is not None and ticket is not None
        assert (out.delivery_state, out.channel, out.author_id, out.body_text) == (
            lifecycle.MANUAL,
            "instagram",
            world.agent_a,
            "It is 20 EUR",
        )
        assert out.next_attempt_at is None
        assert ticket.status == "pending" and ticket.first_response_at == out.created_at
        audit = session.scalar(
            select(TicketEvent).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "reply")
        )
        assert audit is not None and audit.actor_id == world.agent_a and audit.data["sent_elsewhere"] is True
    assert "manual" in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)


def test_message_moved_to_another_inbox_is_seen_with_its_new_ticket(app: Flask, world: World) -> None:
    with factory(app)() as session:
        extra = ingest(
            session,
            world.inbox_a,
            inbound(handle=ANN, ticket_token=world.ticket_a, text="For the wholesale team", html="<p>Wholesale</p>"),
        )
        assert extra is not None and extra.ticket_id == world.ticket_a
        extra_id = extra.id
        session.commit()
    admin = app.test_client()
    token = login(admin, world.emails[world.admin])
    response = admin.post(
        f"/tickets/{world.ticket_a}/messages/{extra_id}/move", data={"csrf_token": token, "into": str(world.ticket_b)}
    )
    assert response.status_code == 302
    agent_b = app.test_client()
    login(agent_b, world.emails[world.agent_b])
    page = agent_b.get(f"/tickets/{world.ticket_b}").get_data(as_text=True)
    assert f'id="m{extra_id}"' in page  # whoever sees a ticket sees all of it, wherever a message came in
    assert "Wholesale" in agent_b.get(f"/messages/{extra_id}/body").get_data(as_text=True)
    assert world.marker_a not in page and agent_b.get(f"/messages/{world.message_a}/body").status_code == 404
