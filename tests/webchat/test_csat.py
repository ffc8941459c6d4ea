"""The satisfaction survey in the chat widget, over a real Socket.IO client and HTTP (both databases).

An agent solves a visitor's chat through the agent UI's HTTP action: the connected visitor is asked at once
(``csat:ask``), a visitor who comes back is asked on connect until they rate or the survey expires, the rating goes
through ``tickets.csat.rate`` (one per solve, a new answer replaces it) and counts for the solving agent; a reopened
and solved chat asks again. A visitor can only rate their own chat, and only while it is solved.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import select

from inbox import workspace
from inbox.models import Message, Ticket, TicketEvent
from inbox.report_models import CsatRating, ReportSample
from tests.web.conftest import login
from tests.web.live import LiveServer
from tests.webchat.conftest import SHOP, Visitor, Widget
from tickets import csat, lifecycle

BOTH = pytest.mark.parametrize("db_url", ["sqlite", "postgresql"], indirect=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def switch_survey(app: Flask, on: bool = True) -> None:
    with app.extensions["helpline"].factory() as session:
        workspace.set_setting(session, csat.SETTING, on)
        session.commit()


def start_chat(app: Flask, visitor: Visitor, widget: Widget, client_id: str = "hello-0001") -> int:
    """The visitor writes; the widget's agent takes the ticket. Returns the ticket id."""
    visitor.connect()
    ack = visitor.send(client_id, "Where is my order?")
    assert ack["ok"], ack
    with app.extensions["helpline"].factory() as session:
        message = session.get(Message, ack["id"])
        assert message is not None
        ticket = message.ticket
        if ticket.assignee_id is None:
            lifecycle.assign(session, ticket, widget.agent_id, by=widget.agent_id)
            session.commit()
        return ticket.id


def set_status(app: Flask, widget: Widget, ticket_id: int, status: str = "solved") -> None:
    """The agent's status action in the agent UI (``POST /tickets/<id>/status``), signed in, with CSRF."""
    agent = app.test_client()
    token = login(agent, widget.agent_email)
    response = agent.post(f"/tickets/{ticket_id}/status", data={"status": status, "csrf_token": token})
    assert response.status_code in (200, 302), response.status_code


def rate(
    live: LiveServer, widget: Widget, token: str, survey: str, score: Any, comment: str = "", origin: str = ""
) -> requests.Response:
    """The widget's rating request (``POST /widget/api/rating``), as frame.js sends it."""
    body = {"inbox": widget.public_key, "token": token, "survey": survey, "score": score, "comment": comment}
    headers = {"Origin": origin} if origin else {}
    return requests.post(f"{live.url}/widget/api/rating", json=body, headers=headers, timeout=5)


def asked(visitor: Visitor) -> list[dict[str, Any]]:
    return visitor.events("csat:ask")


@BOTH
def test_solving_asks_the_visitor_live_then_again_until_rated(
    app: Flask, live: LiveServer, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    switch_survey(app)
    visitor = visitors(widget)
    ticket_id = start_chat(app, visitor, widget)
    assert asked(visitor) == []  # an open chat asks nothing
    set_status(app, widget, ticket_id)
    live_ask = wait_for(lambda: asked(visitor))[0]
    assert live_ask["ticket_id"] == ticket_id and set(live_ask) == {"ticket_id", "survey"}
    visitor.close()

    # Back later (a reload): asked again on connect, about the same solve.
    back = visitors(widget, token=visitor.token)
    back.connect()
    again = wait_for(lambda: asked(back))[0]
    assert again["ticket_id"] == ticket_id
    assert csat.read_token(app.config["HELPLINE_SETTINGS"].secret_key, again["survey"]) == csat.read_token(
        app.config["HELPLINE_SETTINGS"].secret_key, live_ask["survey"]
    )

    # One click answers; a comment and a changed mind replace it (one rating per solve), as on the email page.
    first = rate(live, widget, visitor.token, live_ask["survey"], 4)
    assert first.status_code == 200 and first.json() == {"ok": True, "score": 4}
    changed = rate(live, widget, visitor.token, again["survey"], 5, comment="Quick and kind")
    assert changed.status_code == 200
    assert rate(live, widget, visitor.token, again["survey"], 9).status_code == 422
    assert rate(live, widget, visitor.token, again["survey"], "4").status_code == 422
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ratings = list(session.scalars(select(CsatRating)))
        assert [(r.ticket_id, r.score, r.comment) for r in ratings] == [(ticket_id, 5, "Quick and kind")]
        assert ratings[0].solved_at == csat.current_solve(session, ticket)  # the solve the agent made
        kinds = list(session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket_id)))
        assert kinds.count("csat_sent") == 1 and kinds.count("csat_rated") == 2
        sent = session.scalars(
            select(TicketEvent.data).where(TicketEvent.ticket_id == ticket_id, TicketEvent.kind == "csat_sent")
        ).one()
        assert sent["via"] == "webchat"
        # No survey email to a chat visitor: the widget asked.
        assert session.scalar(select(Message).where(Message.thread_reason == "satisfaction survey")) is None
        # It counts for the agent who had the ticket at the solve, in the reports' summary.
        sample = session.scalars(select(ReportSample).where(ReportSample.figure == "csat")).one()
        assert (sample.ticket_id, sample.agent_id, sample.seconds, sample.channel) == (
            ticket_id,
            widget.agent_id,
            5,
            "webchat",
        )

    # Rated: a later visit asks nothing.
    back.close()
    third = visitors(widget, token=visitor.token)
    third.connect()
    wait_for(lambda: third.events("history"))
    time.sleep(0.3)
    assert asked(third) == []


@BOTH
def test_a_reopened_and_solved_chat_asks_again(
    app: Flask, live: LiveServer, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    switch_survey(app)
    visitor = visitors(widget)
    ticket_id = start_chat(app, visitor, widget)
    set_status(app, widget, ticket_id)
    first = wait_for(lambda: asked(visitor))[0]
    assert rate(live, widget, visitor.token, first["survey"], 2).status_code == 200
    # The visitor writes again: the chat reopens, and the first survey can no longer be answered.
    assert visitor.send("again-0001", "Actually, one more thing")["ok"]
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "open"
    refused = rate(live, widget, visitor.token, first["survey"], 1)
    assert refused.status_code == 409
    set_status(app, widget, ticket_id)
    second = wait_for(lambda: asked(visitor)[1:])[0]
    assert second["survey"] != first["survey"] and second["ticket_id"] == ticket_id
    assert rate(live, widget, visitor.token, second["survey"], 5).status_code == 200
    with app.extensions["helpline"].factory() as session:
        scores = session.scalars(
            select(CsatRating.score).where(CsatRating.ticket_id == ticket_id).order_by(CsatRating.solved_at)
        )
        assert list(scores) == [2, 5]


@BOTH
def test_a_visitor_rates_only_their_own_solved_chat(
    app: Flask, live: LiveServer, make_widget: Callable[..., Widget], visitors: Callable[..., Visitor]
) -> None:
    switch_survey(app)
    widget, other_widget = make_widget(), make_widget()
    ann, bob = visitors(widget), visitors(widget)
    ann_ticket = start_chat(app, ann, widget, "ann-00001")
    bob_ticket = start_chat(app, bob, widget, "bob-00001")
    set_status(app, widget, ann_ticket)
    survey = wait_for(lambda: asked(ann))[0]["survey"]
    time.sleep(0.3)
    assert asked(bob) == []  # the question goes to Ann's room only

    # Bob, with his own genuine token, cannot rate Ann's chat: the same 404 as a link that does not exist.
    theirs = rate(live, widget, bob.token, survey, 1)
    assert theirs.status_code == 404 and theirs.json()["ok"] is False
    # Nor with a forged or another inbox's visitor token, from a site not allowed, or through another widget.
    assert rate(live, widget, bob.token.split(".")[0] + "." + "A" * 43, survey, 1).status_code == 403
    assert rate(live, other_widget, ann.token, survey, 1).status_code == 403  # Ann's token is widget's
    assert rate(live, widget, ann.token, survey, 1, origin="https://evil.example").status_code == 403
    assert rate(live, widget, ann.token, "not-a-survey", 1).status_code == 404
    # A survey signed for Bob's chat, which is open (not solved): refused even with Bob's own token.
    secret = app.config["HELPLINE_SETTINGS"].secret_key
    unsolved = csat.make_token(secret, bob_ticket, dt.datetime.now(dt.UTC))
    assert rate(live, widget, bob.token, unsolved, 5).status_code == 409
    # A survey of a solve other than the ticket's current one (made up): refused too.
    made_up = csat.make_token(secret, ann_ticket, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert rate(live, widget, ann.token, made_up, 5).status_code == 409
    with app.extensions["helpline"].factory() as session:
        assert list(session.scalars(select(CsatRating))) == []
    # Ann herself can, from the shop's page.
    assert rate(live, widget, ann.token, survey, 4, origin=SHOP).status_code == 200


@BOTH
def test_no_question_when_the_survey_is_off_or_expired(
    app: Flask, live: LiveServer, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    visitor = visitors(widget)
    ticket_id = start_chat(app, visitor, widget)
    set_status(app, widget, ticket_id)  # the survey is off (the default)
    time.sleep(0.5)
    assert asked(visitor) == []
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "solved"
        assert csat.current_solve(session, ticket) is not None
        kinds = list(session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket_id)))
        assert "csat_sent" not in kinds
    # Turned on later: a solve made while it was off is not asked about.
    switch_survey(app)
    later = visitors(widget, token=visitor.token)
    later.connect()
    wait_for(lambda: later.events("history"))
    time.sleep(0.3)
    assert asked(later) == []

    # A solve asked about 15 days ago: expired, neither asked on connect nor rateable.
    assert visitor.send("again-0002", "Hello again")["ok"]
    set_status(app, widget, ticket_id)
    survey = wait_for(lambda: asked(visitor) or asked(later))[0]["survey"]
    with app.extensions["helpline"].factory() as session:
        old = dt.datetime.now(dt.UTC) - dt.timedelta(days=csat.LINK_DAYS + 1)
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        solved_at = csat.current_solve(session, ticket)
        assert solved_at is not None
        for row in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id)):
            if row.created_at == solved_at:
                row.created_at = old
            if row.kind == "csat_sent":
                row.data = dict(row.data) | {"solved_at": old.isoformat()}
        session.commit()
    expired = csat.make_token(app.config["HELPLINE_SETTINGS"].secret_key, ticket_id, old)
    assert rate(live, widget, visitor.token, expired, 5).status_code == 410
    assert rate(live, widget, visitor.token, survey, 5).status_code == 409  # no longer the current solve
    last = visitors(widget, token=visitor.token)
    last.connect()
    wait_for(lambda: last.events("history"))
    time.sleep(0.3)
    assert asked(last) == []


def test_a_solve_committed_by_a_worker_reaches_the_widget(
    app: Flask, redis_url: str, widget: Widget, visitors: Callable[..., Visitor]
) -> None:
    """Workers (an automation rule that solves) publish through the Redis queue: the question still reaches the
    visitor's room on the /widget namespace."""
    from inbox.events import DomainEvent
    from workers.runtime import SocketIOEmitter

    switch_survey(app)
    visitor = visitors(widget)
    ticket_id = start_chat(app, visitor, widget)
    payload = {"ticket_id": ticket_id, "survey": "token-from-a-worker"}
    room = f"visitor:{visitor.token.split('.')[0]}"
    SocketIOEmitter(redis_url)(DomainEvent(csat.WIDGET_EVENT, room, payload, csat.WIDGET_NAMESPACE))
    assert wait_for(lambda: asked(visitor)) == [payload]
