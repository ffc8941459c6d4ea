"""The first-run wizard over HTTP: redirects while no user exists, owner, workspace, first channel, roles."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import func, select

from inbox import workspace
from inbox.models import Inbox, User
from inbox.settings_models import AuditLog
from tests.settings.conftest import SignIn, csrf_token

OWNER = {"name": "Olga Owner", "email": "Olga@Shop.test", "password": "long enough pw", "password2": "long enough pw"}


def count(app: Flask, model: type) -> int:
    with app.extensions["helpline"].factory() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_empty_install_walks_the_wizard(app: Flask) -> None:
    client = app.test_client()
    for path in ("/", "/login", "/search?q=x", "/settings/people"):
        response = client.get(path)
        assert response.status_code == 302 and response.headers["Location"].endswith("/welcome"), path
    assert client.get("/healthz").status_code != 302  # machines are never redirected
    token = csrf_token(client, "/welcome")
    assert client.post("/welcome", data=OWNER).status_code == 400  # no CSRF token
    mismatch = client.post("/welcome", data=OWNER | {"password2": "other", "csrf_token": token})
    assert mismatch.status_code == 422 and "passwords differ" in mismatch.get_data(as_text=True)
    short = client.post("/welcome", data=OWNER | {"password": "short", "password2": "short", "csrf_token": token})
    assert short.status_code == 422 and "at least 8 characters" in short.get_data(as_text=True)
    assert count(app, User) == 0
    done = client.post("/welcome", data=OWNER | {"csrf_token": token})
    assert done.status_code == 302 and done.headers["Location"].endswith("/welcome/workspace")
    with app.extensions["helpline"].factory() as session:
        owner = session.scalar(select(User))
        assert owner is not None and owner.role == "admin" and owner.email == "olga@shop.test"
        assert session.scalar(select(AuditLog.action)) == "user.created"

    # A second browser cannot create another owner, and signed-out pages now go to the sign-in page.
    other = app.test_client()
    assert other.get("/").headers["Location"].startswith("/login")
    other_token = csrf_token(other, "/login")
    late = other.post("/welcome", data=OWNER | {"email": "eve@shop.test", "csrf_token": other_token})
    assert late.status_code == 302 and "/login" in late.headers["Location"] and count(app, User) == 1

    token = csrf_token(client, "/welcome/workspace")
    bad = client.post("/welcome/workspace", data={"name": "Shop", "timezone": "Mars/Base", "csrf_token": token})
    assert bad.status_code == 422 and "not a time zone" in bad.get_data(as_text=True)
    good = client.post(
        "/welcome/workspace", data={"name": "Olga's Shop", "timezone": "Europe/Berlin", "csrf_token": token}
    )
    assert good.status_code == 302 and good.headers["Location"].endswith("/welcome/channel")
    with app.extensions["helpline"].factory() as session:
        assert workspace.get_setting(session, workspace.WORKSPACE_NAME) == "Olga's Shop"
        assert workspace.get_setting(session, workspace.WORKSPACE_TIMEZONE) == "Europe/Berlin"

    page = client.get("/welcome/channel?kind=webchat").get_data(as_text=True)
    assert 'name="origins"' in page
    failed = client.post(
        "/welcome/channel",
        data={"kind": "webchat", "name": "Chat", "origins": "nope", "csrf_token": token, "submit": "connect"},
    )
    assert failed.status_code == 422 and "not a web site address" in failed.get_data(as_text=True)
    assert count(app, Inbox) == 0
    tested = client.post(
        "/welcome/channel",
        data={"kind": "webchat", "name": "Chat", "origins": "https://shop.test", "csrf_token": token, "submit": "test"},
    )
    assert tested.status_code == 200 and "Connection works" in tested.get_data(as_text=True)
    assert count(app, Inbox) == 0  # a test saves nothing
    connected = client.post(
        "/welcome/channel",
        data={
            "kind": "webchat",
            "name": "Chat",
            "origins": "https://shop.test",
            "csrf_token": token,
            "submit": "connect",
        },
    )
    html = connected.get_data(as_text=True)
    assert connected.status_code == 200 and "widget.js" in html and "shown only now" in html
    assert count(app, Inbox) == 1
    assert client.get("/").status_code == 200


def test_wizard_steps_are_admin_only(app: Flask, sign_in: SignIn) -> None:
    for role in ("agent", "lead"):
        client, token = sign_in(role)
        for path in ("/welcome/workspace", "/welcome/channel", "/welcome/channel?kind=email"):
            assert client.get(path).status_code == 403, (role, path)
        data = {"csrf_token": token, "kind": "webchat", "name": "X", "origins": "https://a.test"}
        assert client.post("/welcome/channel", data=data).status_code == 403
        assert (
            client.post("/welcome/workspace", data={"csrf_token": token, "name": "X", "timezone": "UTC"}).status_code
            == 403
        )
        assert client.post("/welcome/skip", data={"csrf_token": token}).status_code == 403
    assert count(app, Inbox) == 0
