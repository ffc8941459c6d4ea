"""Sign-in: sessions, CSRF, rate limits, TOTP, roles, and the headers every page carries."""

from __future__ import annotations

from typing import Any

import pyotp
import pytest
from flask import Flask

from inbox import crypto
from inbox.models import User
from tests.web.conftest import PASSWORD, World, csrf_token, login


def _post_login(client: Any, email: str, password: str, **extra: str) -> Any:
    data = {"email": email, "password": password, "csrf_token": csrf_token(client)} | extra
    return client.post("/login", data=data)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_pages_need_sign_in_and_sign_in_works(app: Flask, world: World) -> None:
    client = app.test_client()
    response = client.get(f"/tickets/{world.ticket_a}")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert _post_login(client, world.emails[world.agent_a], "wrong password").status_code == 401
    assert client.get("/").status_code == 302
    response = _post_login(client, world.emails[world.agent_a], PASSWORD, next=f"/tickets/{world.ticket_a}")
    assert response.headers["Location"] == f"/tickets/{world.ticket_a}"
    page = client.get(f"/tickets/{world.ticket_a}")
    assert page.status_code == 200 and world.marker_a in page.get_data(as_text=True)
    cookie = client.get_cookie("helpline_session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_next_cannot_redirect_off_site(app: Flask, world: World) -> None:
    client = app.test_client()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)"):
        response = _post_login(client, world.emails[world.agent_a], PASSWORD, next=target)
        assert response.headers["Location"] == "/"
        client.post("/logout", data={"csrf_token": csrf_token(client, "/")})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_state_changes_need_a_csrf_token(app: Flask, world: World) -> None:
    client = app.test_client()
    assert client.post("/login", data={"email": world.emails[world.agent_a], "password": PASSWORD}).status_code == 400
    token = login(client, world.emails[world.agent_a])
    url = f"/tickets/{world.ticket_a}/status"
    assert client.post(url, data={"status": "solved"}).status_code == 400
    assert client.post(url, data={"status": "solved", "csrf_token": "forged"}).status_code == 400
    assert client.post(url, data={"status": "solved", "csrf_token": token}).status_code == 302
    # Sign-out is a POST with a token too: a cross-site image tag must not sign agents out.
    assert client.get("/logout").status_code == 405
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_failed_sign_ins_are_rate_limited(app: Flask, world: World) -> None:
    client = app.test_client()
    email = world.emails[world.agent_a]
    for _ in range(10):
        assert _post_login(client, email, "guess").status_code == 401
    blocked = _post_login(client, email, PASSWORD)  # even the right password waits now
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # Another account from the same address is not locked by these ten failures.
    assert _post_login(app.test_client(), world.emails[world.agent_b], PASSWORD).status_code == 302


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_totp_second_step(app: Flask, world: World) -> None:
    secret = pyotp.random_base32()
    with app.extensions["helpline"].factory() as session:
        user = session.get(User, world.agent_a)
        assert user is not None
        user.totp_secret = crypto.encrypt_text(app.config["SECRET_KEY"], secret)
        session.commit()
    client = app.test_client()
    response = _post_login(client, world.emails[world.agent_a], PASSWORD)
    assert response.headers["Location"] == "/login/totp"
    assert client.get("/").status_code == 302  # the password alone does not sign in
    token = csrf_token(client, "/login/totp")
    assert client.post("/login/totp", data={"code": "000000", "csrf_token": token}).status_code == 401
    code = pyotp.TOTP(secret).now()
    assert client.post("/login/totp", data={"code": code, "csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 200
    # The same code a second time (someone watching) is refused, even with the right password.
    replay = app.test_client()
    _post_login(replay, world.emails[world.agent_a], PASSWORD)
    token = csrf_token(replay, "/login/totp")
    assert replay.post("/login/totp", data={"code": code, "csrf_token": token}).status_code == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_totp_setup_then_sign_in_needs_code(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_b])
    page = client.get("/account/totp").get_data(as_text=True)
    secret = page.split('id="totp-secret">')[1].split("<")[0]
    token = csrf_token(client, "/")
    client.post("/account/totp", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token})
    assert client.get("/").status_code == 200  # the session that turned it on stays signed in
    other = app.test_client()
    assert _post_login(other, world.emails[world.agent_b], PASSWORD).headers["Location"] == "/login/totp"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_password_change_and_deactivation_end_sessions(app: Flask, world: World) -> None:
    from inbox.users import hash_password

    client = app.test_client()
    login(client, world.emails[world.agent_a])
    with app.extensions["helpline"].factory() as session:
        user = session.get(User, world.agent_a)
        assert user is not None
        user.password_hash = hash_password("a new long password")
        session.commit()
    assert client.get("/").status_code == 302
    login(client, world.emails[world.agent_a], "a new long password")
    with app.extensions["helpline"].factory() as session:
        user = session.get(User, world.agent_a)
        assert user is not None
        user.is_active = False
        session.commit()
    assert client.get("/").status_code == 302


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_security_headers(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    headers = client.get("/").headers
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"


def test_throttle_window_slides() -> None:
    from web.throttle import LoginThrottle

    now = [0.0]
    throttle = LoginThrottle(3, 60, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.blocked("k") == 0
        throttle.fail("k")
    assert throttle.blocked("k") == 60
    now[0] = 30
    assert throttle.blocked("k") == 30
    now[0] = 60.5
    assert throttle.blocked("k") == 0  # the oldest failure left the window
    throttle.fail("k")
    throttle.reset("k")
    assert throttle.blocked("k") == 0
