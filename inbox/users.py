"""Users and API tokens: creation, password hashing (werkzeug's scrypt), token lookup by hash."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from inbox.db import utcnow
from inbox.errors import InvalidChange, NotFound
from inbox.models import ROLES, ApiToken, User

MIN_PASSWORD = 8


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise InvalidChange(f"a password needs at least {MIN_PASSWORD} characters")
    return generate_password_hash(password, method="scrypt")


def check_password(user: User, password: str) -> bool:
    return bool(user.password_hash) and check_password_hash(user.password_hash, password)


def find_user_by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def create_user(session: Session, email: str, password: str, *, role: str = "agent", name: str = "") -> User:
    if role not in ROLES:
        raise InvalidChange(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    email = email.strip().lower()
    if "@" not in email:
        raise InvalidChange(f"not an email address: {email!r}")
    if find_user_by_email(session, email) is not None:
        raise InvalidChange(f"a user with email {email} already exists")
    user = User(email=email, name=name or email.split("@")[0], role=role, password_hash=hash_password(password))
    session.add(user)
    session.flush()
    return user


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: User, name: str = "") -> str:
    """Create an API token and return it; only its hash is stored, so it is shown once."""
    token = "hl_" + secrets.token_urlsafe(32)
    session.add(ApiToken(user_id=user.id, token_hash=_hash_token(token), name=name))
    session.flush()
    return token


def user_for_token(session: Session, token: str) -> User:
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _hash_token(token)))
    if row is None:
        raise NotFound("unknown token")
    user = session.get(User, row.user_id)
    if user is None or not user.is_active:
        raise NotFound("token of an inactive user")
    row.last_used_at = utcnow()
    return user
