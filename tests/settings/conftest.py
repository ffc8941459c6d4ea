"""Fixtures for the settings tests: an app on both databases, admin/agent clients, the CSRF token of a page."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inbox.config import Settings
from inbox.runtime import Storage
from tests.factories import make_user
from web import create_app

PASSWORD = "correct horse"
CSRF_META = re.compile(r'name="csrf-token" content="([^"]+)"')


@pytest.fixture
def app(settings: Settings, storage: Storage) -> Iterator[Flask]:
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["helpline"].dispose()


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    match = CSRF_META.search(html)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD) -> str:
    token = csrf_token(client)
    response = client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return csrf_token(client, "/")


SignIn = Callable[[str], tuple[FlaskClient, str]]


@pytest.fixture
def sign_in(app: Flask) -> SignIn:
    """``sign_in(role)`` -> (client, csrf token) of a new user with that role."""

    def make(role: str) -> tuple[FlaskClient, str]:
        with app.extensions["helpline"].factory() as session:
            user = make_user(session, role=role, password=PASSWORD)
            session.commit()
            email = user.email
        client = app.test_client()
        return client, login(client, email)

    return make
