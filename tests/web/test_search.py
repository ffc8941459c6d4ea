"""Search on both databases: message text, subjects, contacts; filters; only the user's inboxes; hostile input."""

from __future__ import annotations

import re

from flask import Flask

from inbox.ingest import ingest
from tests.factories import inbound
from tests.web.conftest import World, login
from web.search import fts5_query, pg_tsquery

ROW = re.compile(r'class="ticket-row[^"]*" data-ticket-id="(\d+)"')


def _found(client: object, query: str) -> set[int]:
    response = client.get("/search?" + query)  # type: ignore[attr-defined]
    assert response.status_code == 200
    return set(map(int, ROW.findall(response.get_data(as_text=True))))


def test_search_finds_text_subjects_and_contacts_within_visible_inboxes(app: Flask, world: World) -> None:
    with app.extensions["helpline"].factory() as session:
        msg = ingest(
            session,
            world.inbox_a,
            inbound(
                handle="zoe@example.org",
                display_name="Zoë Quist",
                subject="Broken zipper",
                text="The zipper on my parka broke",
            ),
        )
        ingest(session, world.inbox_b, inbound(text="my parka is too warm"))
        session.commit()
        assert msg is not None
        parka_a = msg.ticket_id
    agent_a, agent_b = app.test_client(), app.test_client()
    login(agent_a, world.emails[world.agent_a])
    login(agent_b, world.emails[world.agent_b])
    assert _found(agent_a, "q=parka") == {parka_a}
    assert _found(agent_a, "q=zipp") == {parka_a}  # the last word is a prefix
    assert _found(agent_a, "q=broken+zipper") == {parka_a}  # subjects are indexed too
    assert _found(agent_a, "q=zoe%40example") == {parka_a}  # a contact's address
    assert _found(agent_a, "q=Quist") == {parka_a}  # a contact's name
    assert parka_a not in _found(agent_b, "q=parka") and len(_found(agent_b, "q=parka")) == 1
    assert _found(agent_b, "q=Secret+plans") == set()  # team A's ticket never shows for team B


def test_search_filters(app: Flask, world: World) -> None:
    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    client.post(f"/tickets/{world.ticket_a}/status", data={"status": "pending", "csrf_token": token})
    assert _found(client, "q=&status=pending") == {world.ticket_a}
    assert _found(client, f"q=&inbox={world.inbox_a}&status=new") == {world.ticket_a2}
    assert _found(client, "q=&assignee=none") == {world.ticket_a, world.ticket_a2}
    assert _found(client, "q=&since=2000-01-01&until=2000-01-02") == set()
    assert _found(client, "q=&since=2000-01-01") == {world.ticket_a, world.ticket_a2}


def test_hostile_queries_are_plain_words(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    for q in ['"', "*", "NEAR(a b)", "a OR b AND", "col:x", "%_\\", "' OR 1=1 --", "((", "-", "^plans"]:
        assert client.get("/search", query_string={"q": q}).status_code == 200
    assert fts5_query('Ann "quote" NEAR(') == '"Ann" "quote" "NEAR"*'
    assert fts5_query("  ") == ""
    assert pg_tsquery("don't stop") == "'don''t' & 'stop':*"
