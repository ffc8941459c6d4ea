"""The people, profile, tags, business-hours and canned-response pages over HTTP (SQLite; the domain functions
run on both databases in test_people_domain.py)."""

from __future__ import annotations

import re
from email import message_from_bytes, policy

import pytest
from flask import Flask
from sqlalchemy import select

from inbox.crypto import encrypt_json
from inbox.ingest import ingest
from inbox.models import Ticket, User
from inbox.people_models import Invite
from tests import factories
from tests.mail_services import smtp_server
from tests.settings.conftest import PASSWORD, SignIn, csrf_token, login
from tickets import lifecycle
from web.realtime import socketio

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
LINK = re.compile(r"https?://[^/\s]+(/invite/[A-Za-z0-9_-]+)")


def test_invite_is_mailed_and_the_link_signs_up_once(app: Flask, sign_in: SignIn) -> None:
    with smtp_server() as (controller, sink), app.extensions["helpline"].factory() as session:
        team = factories.make_team(session, name="Support")
        factories.make_inbox(
            session,
            name="Mail",
            config={
                "smtp_host": "127.0.0.1",
                "smtp_port": controller.port,
                "smtp_security": "none",
                "address": "help@shop.test",
            },
            secrets=encrypt_json(app.config["SECRET_KEY"], {"password": "x"}),
        )
        session.commit()
        admin, token = sign_in("admin")
        form = {"csrf_token": token, "email": "Sam@Shop.test", "role": "lead", "team_id": str(team.id)}
        sent = admin.post("/settings/people/invite", data=form)
        page = sent.get_data(as_text=True)
        assert sent.status_code == 200 and "Emailed from help@shop.test" in page
        assert len(sink.messages) == 1 and sink.messages[0].rcpt_tos == ["sam@shop.test"]
        mail = message_from_bytes(sink.messages[0].data, policy=policy.default)
        assert mail["Auto-Submitted"] == "auto-generated" and "invited you to Helpline as lead" in mail.get_content()
        assert (
            mail["Subject"] == "You are invited to Helpline" and mail["From"].addresses[0].addr_spec == "help@shop.test"
        )
        match = LINK.search(mail.get_content())
        assert match is not None and match.group(1) in page
        refused = admin.post("/settings/people/invite", data=form | {"email": "gone@perm.test"})
        assert "could not be sent (550 5.1.1 no such user here)" in refused.get_data(as_text=True)
        assert LINK.search(refused.get_data(as_text=True)) is not None, "the link is shown to pass on instead"
    path = match.group(1)
    assert "sam@shop.test" in admin.get("/settings/people").get_data(as_text=True)  # pending

    invitee = app.test_client()
    signup = invitee.get(path).get_data(as_text=True)
    assert "invited as <strong>lead</strong>" in signup
    token = csrf_token(invitee, path)
    differ = invitee.post(
        path, data={"csrf_token": token, "name": "Sam", "password": "a long pass", "confirm": "other"}
    )
    assert differ.status_code == 422 and "differ" in differ.get_data(as_text=True)
    no_csrf = invitee.post(path, data={"name": "Sam", "password": "a long pass", "confirm": "a long pass"})
    assert no_csrf.status_code == 400
    done = invitee.post(
        path, data={"csrf_token": token, "name": "Sam Lead", "password": "a long pass", "confirm": "a long pass"}
    )
    assert done.status_code == 302
    assert "Sam Lead" in invitee.get("/").get_data(as_text=True), "signed in straight away"
    again = app.test_client().get(path)
    assert again.status_code == 404 and "no longer works" in again.get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        user = session.scalar(select(User).where(User.email == "sam@shop.test"))
        assert user is not None and user.role == "lead" and [t.name for t in user.teams] == ["Support"]
    fresh = app.test_client()
    login(fresh, "sam@shop.test", "a long pass")


def test_without_a_mail_inbox_the_link_is_shown(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    page = admin.post("/settings/people/invite", data={"csrf_token": token, "email": "kim@shop.test"})
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "no email inbox with an SMTP server" in text
    match = LINK.search(text)
    assert match is not None
    with app.extensions["helpline"].factory() as session:
        invite = session.scalar(select(Invite))
        assert invite is not None and invite.sent_error and match.group(1).split("/")[-1] not in invite.token_hash
        invite_id = invite.id
    assert admin.post(f"/settings/people/invites/{invite_id}/revoke", data={"csrf_token": token}).status_code == 302
    assert app.test_client().get(match.group(1)).status_code == 404
    bad = admin.post("/settings/people/invite", data={"csrf_token": token, "email": "not an address"})
    assert bad.status_code == 302 and "not an email address" in admin.get("/settings/people").get_data(as_text=True)


def test_deactivated_user_is_signed_out_and_their_tickets_move(app: Flask, sign_in: SignIn) -> None:
    with app.extensions["helpline"].factory() as session:
        team = factories.make_team(session)
        leaving = factories.make_user(session, teams=[team], password=PASSWORD)
        heir = factories.make_user(session, teams=[team], password=PASSWORD)
        box = factories.make_inbox(session, team_id=team.id)
        ids = []
        for _ in range(3):
            message = ingest(session, box.id, factories.inbound())
            assert message is not None
            lifecycle.assign(session, message.ticket, leaving.id)
            ids.append(message.ticket_id)
        session.commit()
        leaving_email, leaving_id, heir_id = leaving.email, leaving.id, heir.id
    agent = app.test_client()
    login(agent, leaving_email)
    sock = socketio.test_client(app, flask_test_client=agent)
    assert sock.is_connected()
    admin, token = sign_in("admin")
    assert f"user-{leaving_id}" in admin.get("/settings/people").get_data(as_text=True)
    form = {"csrf_token": token, "reassign_to": str(heir_id)}
    done = admin.post(f"/settings/people/users/{leaving_id}/deactivate", data=form, follow_redirects=True)
    assert "can no longer sign in. 3 open tickets moved." in done.get_data(as_text=True)
    assert not sock.is_connected(), "their live socket ended"
    response = agent.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"], "their session ended"
    retry = app.test_client()
    token2 = csrf_token(retry)
    assert (
        retry.post("/login", data={"email": leaving_email, "password": PASSWORD, "csrf_token": token2}).status_code
        == 401
    )
    with app.extensions["helpline"].factory() as session:
        assert set(session.scalars(select(Ticket.assignee_id).where(Ticket.id.in_(ids)))) == {heir_id}
    # Moving someone's tickets to nobody; an admin cannot deactivate themselves (or the last admin).
    moved = admin.post(
        f"/settings/people/users/{heir_id}/reassign",
        data={"csrf_token": token, "reassign_to": "none"},
        follow_redirects=True,
    )
    assert "3 open tickets moved" in moved.get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        assert set(session.scalars(select(Ticket.assignee_id).where(Ticket.id.in_(ids)))) == {None}
        me_id = session.scalar(select(User.id).where(User.role == "admin"))
    own = admin.post(f"/settings/people/users/{me_id}/deactivate", data={"csrf_token": token}, follow_redirects=True)
    assert "cannot deactivate yourself" in own.get_data(as_text=True)
    demote = admin.post(
        f"/settings/people/users/{me_id}", data={"csrf_token": token, "role": "agent"}, follow_redirects=True
    )
    assert "is the last admin" in demote.get_data(as_text=True)
    assert admin.post(f"/settings/people/users/{leaving_id}/activate", data={"csrf_token": token}).status_code == 302
    login(app.test_client(), leaving_email)


def test_profile_saves_preferences_and_changes_the_password(app: Flask, sign_in: SignIn) -> None:
    client, token = sign_in("agent")
    page = client.get("/settings/profile").get_data(as_text=True)
    assert 'data-notify="mentions assignments"' in page and "Set up two-factor sign-in" in page
    form = {
        "csrf_token": token,
        "form": "profile",
        "name": "Ann Agent",
        "avatar_color": "#16a34a",
        "notify_new_tickets": "1",
        "email_notifications": "1",
    }
    assert client.post("/settings/profile", data=form).status_code == 302
    page = client.get("/settings/profile").get_data(as_text=True)
    assert 'data-notify="new_tickets"' in page and 'class="avatar av-6"' in page and ">AA</span>" in page
    assert 'name="email_notifications" value="1" checked' in page
    other = app.test_client()
    with app.extensions["helpline"].factory() as session:
        email = session.scalar(select(User.email).where(User.name == "Ann Agent"))
    assert email is not None
    login(other, email)
    wrong = {"csrf_token": token, "current": "nope", "password": "brand new pass", "confirm": "brand new pass"}
    assert "not right" in client.post("/settings/profile/password", data=wrong, follow_redirects=True).get_data(
        as_text=True
    )
    right = wrong | {"current": PASSWORD}
    assert client.post("/settings/profile/password", data=right).status_code == 302
    assert client.get("/").status_code == 200, "this session carries on"
    assert other.get("/").status_code == 302, "the other session is signed out"
    login(app.test_client(), email, "brand new pass")


def test_tags_calendars_and_canned_pages(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    assert "No tags yet" in admin.get("/settings/tags").get_data(as_text=True)
    assert "No calendars yet" in admin.get("/settings/hours").get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        box = factories.make_inbox(session)
        message = ingest(session, box.id, factories.inbound())
        assert message is not None
        lifecycle.add_tag(session, message.ticket, "billing")
        lifecycle.add_tag(session, message.ticket, "invoice")
        session.commit()
        box_id, ticket_id = box.id, message.ticket_id
    page = admin.get("/settings/tags").get_data(as_text=True)
    assert "Delete (1 tickets)" in page
    assert admin.post("/settings/tags", data={"csrf_token": token, "name": "Urgent", "color": "red"}).status_code == 302
    assert 'tag-red"></span> urgent' in admin.get("/settings/tags").get_data(as_text=True)
    with app.extensions["helpline"].factory() as session:
        from inbox.models import Tag

        ids = {t.name: t.id for t in session.scalars(select(Tag))}
    merge = admin.post(
        f"/settings/tags/{ids['invoice']}/merge",
        data={"csrf_token": token, "into": ids["billing"]},
        follow_redirects=True,
    )
    assert "Merged invoice into billing" in merge.get_data(as_text=True)
    recolour = {"csrf_token": token, "name": "Billing", "color": "blue"}
    assert admin.post(f"/settings/tags/{ids['billing']}", data=recolour).status_code == 302
    ticket_page = admin.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    assert '<span class="badge tag tc-blue">#billing' in ticket_page and "#invoice" not in ticket_page

    new = admin.get("/settings/hours/new").get_data(as_text=True)
    assert 'value="09:00-17:00"' in new and "Europe/Berlin" in new
    form = {
        "csrf_token": token,
        "name": "Office",
        "timezone": "Europe/Berlin",
        "applies_to": f"inbox:{box_id}",
        "mon": "9-17",
        "tue": "25:00-26:00",
    }
    bad = admin.post("/settings/hours/new", data=form)
    assert (
        bad.status_code == 422
        and "Tuesday" in bad.get_data(as_text=True)
        and 'value="Office"' in bad.get_data(as_text=True)
    ), "a mistake keeps what was typed"
    saved = admin.post("/settings/hours/new", data=form | {"tue": ""})
    assert saved.status_code == 302
    edit = admin.get(saved.headers["Location"]).get_data(as_text=True)
    assert 'value="09:00-17:00"' in edit and "No holidays yet" in edit
    holiday = admin.post(
        saved.headers["Location"] + "/holidays",
        data={"csrf_token": token, "day": "2026-12-25", "name": "Christmas"},
        follow_redirects=True,
    )
    assert "2026-12-25" in holiday.get_data(as_text=True)

    agent, agent_token = sign_in("agent")
    for path in ("/settings/tags", "/settings/hours", "/settings/people"):
        assert agent.get(path).status_code == 403
    assert "You have no personal responses yet" in agent.get("/settings/canned").get_data(as_text=True)
    mine = {"csrf_token": agent_token, "title": "Sign-off", "body": "Cheers, {{agent.first_name}} {{contact.nmae}}"}
    assert agent.post("/settings/canned", data=mine).status_code == 302
    page = agent.get("/settings/canned").get_data(as_text=True)
    assert "only you see this one" in page and "Unknown placeholders stay as typed: contact.nmae" in page
    assert "Sign-off" not in admin.get("/settings/canned").get_data(as_text=True)
