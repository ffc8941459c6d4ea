"""The satisfaction survey: sent by the commit that solves an email ticket, rated on a signed page, reported.

Both databases: the survey is an automatic outbound message in the outbox (rendered with Auto-Submitted), the
public page takes a score and a comment through a signed link (forged and expired links are refused), the rating
shows on the ticket, in the audit trail and in the reports' CSAT table with its drill-down and CSV.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator

import pytest
from flask import Flask
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import select

from connectors.email import render_reply
from inbox import workspace
from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Inbox, Message, Ticket, TicketEvent
from inbox.report_models import CsatRating
from inbox.runtime import Storage
from tests.factories import inbound, make_inbox, make_team, make_user
from tests.reports.test_views import client_for
from tests.web.conftest import csrf_token
from tickets import csat, lifecycle
from web import create_app
from workers.outbound import build_outbound

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


def solve_email_ticket(app: Flask, *, survey: bool = True, channel: str = "email") -> tuple[int, int, int]:
    """An email ticket answered and solved by an agent of team 1; returns (ticket, agent, lead) ids."""
    with app.extensions["helpline"].factory() as session:
        team = make_team(session)
        agent = make_user(session, teams=[team], name="Alice")
        lead = make_user(session, role="lead", teams=[team], name="Lena")
        inbox = make_inbox(session, team_id=team.id, channel=channel)
        handle = "ann@example.com" if channel == "email" else "4242"
        first = ingest(session, inbox.id, inbound(channel=channel, handle=handle, subject="Broken zipper"))
        assert first is not None
        workspace.set_setting(session, csat.SETTING, survey)
        session.commit()
        ticket = first.ticket
        lifecycle.assign(session, ticket, agent.id, by=agent.id)
        lifecycle.reply(session, ticket, "Fixed!", by=agent.id, new_status="solved")
        session.commit()
        return ticket.id, agent.id, lead.id


def survey_of(app: Flask, ticket_id: int) -> Message | None:
    with app.extensions["helpline"].factory() as session:
        found = session.scalar(
            select(Message).where(Message.ticket_id == ticket_id, Message.thread_reason == "satisfaction survey")
        )
        if found is not None:
            session.expunge(found)
        return found


def test_solving_queues_the_survey_and_the_customer_rates(app: Flask) -> None:
    ticket_id, agent_id, lead_id = solve_email_ticket(app)
    survey = survey_of(app, ticket_id)
    assert survey is not None
    assert survey.is_auto and survey.author_id is None and survey.delivery_state == "queued"
    links = re.findall(r"http\S+/rate/(\S+)\?score=(\d)", survey.body_text)
    assert [n for _t, n in links] == ["5", "4", "3", "2", "1"]
    token = links[0][0]
    with app.extensions["helpline"].factory() as session:
        msg = session.get(Message, survey.id)
        inbox = session.get(Inbox, msg.inbox_id) if msg is not None else None
        assert msg is not None and inbox is not None
        email = render_reply(build_outbound(session, app.extensions["helpline"], msg, inbox), date=msg.created_at)
        assert email["Auto-Submitted"] == "auto-generated" and email["To"].addresses[0].addr_spec == "ann@example.com"
        # The survey is not an agent reply: the ticket has exactly one reply in the reports.
        events = [e.kind for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket_id))]
        assert events.count("csat_sent") == 1

    customer = app.test_client()  # not signed in: the link is the credential
    page = customer.get(f"/rate/{token}?score=4")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Broken zipper" in html and 'value="4" required checked' in html
    assert "Fixed!" not in html  # nothing of the conversation
    form_token = CSRF.search(html)
    assert form_token
    assert customer.post(f"/rate/{token}", data={"score": "4", "comment": "Quick, thanks"}).status_code == 400
    done = customer.post(
        f"/rate/{token}", data={"score": "4", "comment": "Quick, thanks", "csrf_token": form_token.group(1)}
    )
    assert done.status_code == 200 and "Thank you" in done.get_data(as_text=True)
    # A changed mind replaces the rating of that solve.
    again = customer.post(f"/rate/{token}", data={"score": "2", "comment": "", "csrf_token": form_token.group(1)})
    assert again.status_code == 200
    bad = customer.post(f"/rate/{token}", data={"score": "9", "csrf_token": form_token.group(1)})
    assert bad.status_code == 422
    with app.extensions["helpline"].factory() as session:
        ratings = list(session.scalars(select(CsatRating)))
        assert [(r.ticket_id, r.score, r.comment) for r in ratings] == [(ticket_id, 2, "")]
        kinds = list(session.scalars(select(TicketEvent.kind).where(TicketEvent.ticket_id == ticket_id)))
        assert kinds.count("csat_rated") == 2

    # The ticket shows it; the reports count it for the agent of the solve.
    agent = client_for(app, agent_id)
    assert "Rated 2/5" in agent.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    lead = client_for(app, lead_id)
    today = dt.datetime.now(dt.UTC).date().isoformat()
    csv_text = lead.get(f"/reports/export/csat.csv?start={today}&end={today}&by=agent").get_data(as_text=True)
    assert csv_text.splitlines() == [
        "agent,responses,average score,satisfied (ratio)",
        "Alice,1,2.0,0.0",
        "all,1,2.0,0.0",
    ]
    drill = lead.get(f"/reports/drill?start={today}&end={today}&by=agent&figure=csat&key={agent_id}&format=csv")
    assert f"{ticket_id},csat," in drill.get_data(as_text=True) and "score 2" in drill.get_data(as_text=True)
    page = lead.get(f"/reports/?start={today}&end={today}").get_data(as_text=True)
    assert 'id="table-csat"' in page and 'id="card-csat">0.0 %<' in page


def test_forged_and_expired_links_are_refused(app: Flask) -> None:
    ticket_id, _agent, _lead = solve_email_ticket(app)
    secret = app.config["HELPLINE_SETTINGS"].secret_key
    solved_at = dt.datetime.now(dt.UTC)
    client = app.test_client()
    assert client.get("/rate/not-a-token").status_code == 404
    forged = csat.make_token("another secret", ticket_id, solved_at)
    assert client.get(f"/rate/{forged}").status_code == 404

    class Old(TimestampSigner):  # signs as if it were LINK_DAYS + 1 days ago
        def get_timestamp(self) -> int:
            return int(time.time()) - (csat.LINK_DAYS + 1) * 86400

    old = URLSafeTimedSerializer(secret, salt="helpline-csat", signer=Old)
    expired = old.dumps({"t": ticket_id, "s": solved_at.isoformat()})
    response = client.get(f"/rate/{expired}")
    assert response.status_code == 410 and "expired" in response.get_data(as_text=True)
    token = csrf_token(client)
    assert client.post(f"/rate/{expired}", data={"score": "5", "csrf_token": token}).status_code == 410
    with app.extensions["helpline"].factory() as session:
        assert list(session.scalars(select(CsatRating))) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_no_survey_when_off_or_not_email(app: Flask) -> None:
    off, _a, _l = solve_email_ticket(app, survey=False)
    assert survey_of(app, off) is None
    chat, _a, _l = solve_email_ticket(app, channel="telegram")
    assert survey_of(app, chat) is None
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, off)
        assert ticket is not None
        assert not any(e == "csat_sent" for e in session.scalars(select(TicketEvent.kind)))


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_admins_switch_the_survey(app: Flask) -> None:
    with app.extensions["helpline"].factory() as session:
        admin, agent = make_user(session, role="admin"), make_user(session)
        session.commit()
        admin_id, agent_id = admin.id, agent.id
    admin_client, agent_client = client_for(app, admin_id), client_for(app, agent_id)
    page = admin_client.get("/settings/sla/").get_data(as_text=True)
    assert "Survey is off." in page
    token = CSRF.search(page)
    assert token
    assert agent_client.post("/settings/sla/csat", data={"enabled": "1"}).status_code in (400, 403)
    assert admin_client.post("/settings/sla/csat", data={"enabled": "1"}).status_code == 400  # no CSRF token
    assert (
        admin_client.post("/settings/sla/csat", data={"enabled": "1", "csrf_token": token.group(1)}).status_code == 302
    )
    assert "Survey is on." in admin_client.get("/settings/sla/").get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        assert csat.enabled(session)
