"""Sign-in: Flask-Login sessions over ``inbox.users`` (werkzeug scrypt hashes), rate limits, optional TOTP."""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pyotp
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import LoginManager, UserMixin, current_user, login_required, login_user, logout_user

from inbox import crypto
from inbox.models import User
from inbox.users import check_password, find_user_by_email
from web.db import get_session
from web.throttle import LoginThrottle

bp = Blueprint("auth", __name__)
_totp_lock = threading.Lock()
login_manager = LoginManager()
F = TypeVar("F", bound=Callable[..., Any])
# Dummy hash so an unknown email costs as much as a wrong password (no account enumeration by timing).
_DUMMY = User(password_hash="scrypt:32768:8:1$Kp0wQy8p8x3x7yq1$" + "0" * 128)


class Agent(UserMixin):
    """The signed-in user for Flask-Login, wrapping the row loaded in this request's session."""

    def __init__(self, row: User) -> None:
        self.row = row
        self.id = row.id
        self.role = row.role
        self.name = row.name
        self.email = row.email

    def get_id(self) -> str:
        return session_id(self.row)

    @property
    def is_active(self) -> bool:
        return bool(self.row.is_active)


def session_id(user: User) -> str:
    """User id plus a fingerprint of the credentials: changing the password or TOTP ends other sessions."""
    digest = hashlib.sha256(f"{user.password_hash}|{user.totp_secret or ''}".encode()).hexdigest()[:16]
    return f"{user.id}.{digest}"


@login_manager.user_loader
def load_user(value: str) -> Agent | None:
    user_id, _, _digest = value.partition(".")
    if not user_id.isdigit():
        return None
    row = get_session().get(User, int(user_id))
    if row is None or not row.is_active or session_id(row) != value:
        return None
    return Agent(row)


def me() -> User:
    """The signed-in user's row (views are behind ``login_required``)."""
    row: User = current_user.row
    return row


def role_required(*roles: str) -> Callable[[F], F]:
    """Signed in, and one of ``roles``; anyone else signed in gets 403."""

    def wrap(fn: F) -> F:
        @wraps(fn)
        @login_required
        def inner(*args: Any, **kwargs: Any) -> Any:
            if current_user.role not in roles:
                abort(403)
            return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def _throttles() -> tuple[LoginThrottle, LoginThrottle]:
    return current_app.extensions["login_throttle"]  # type: ignore[no-any-return]


def _safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after sign-in would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("inbox.index")
    if urlsplit(target).netloc:
        return url_for("inbox.index")
    return target


def _too_many(wait: float) -> ResponseReturnValue:
    minutes = max(1, math.ceil(wait / 60))
    body = render_template("login.html", error=f"Too many failed sign-ins. Try again in {minutes} min.")
    return body, 429, {"Retry-After": str(math.ceil(wait))}


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    if current_user.is_authenticated:
        return redirect(url_for("inbox.index"))
    if request.method == "GET":
        return render_template("login.html", next=request.args.get("next", ""))
    per_account, per_address = _throttles()
    email = request.form.get("email", "").strip().lower()
    keys = (f"email:{email}", f"ip:{request.remote_addr}")
    wait = max(per_account.blocked(keys[0]), per_address.blocked(keys[1]))
    if wait:
        return _too_many(wait)
    user = find_user_by_email(get_session(), email) if email else None
    ok = check_password(user or _DUMMY, request.form.get("password", ""))
    if user is None or not ok or not user.is_active:
        per_account.fail(keys[0])
        per_address.fail(keys[1])
        return render_template("login.html", error="Wrong email or password.", email=email), 401
    per_account.reset(keys[0])
    session.clear()  # no fixation: nothing from before sign-in survives
    if user.totp_secret:
        session["totp_user"] = session_id(user)
        session["next"] = _safe_next(request.form.get("next"))
        return redirect(url_for("auth.totp"))
    login_user(Agent(user))
    return redirect(_safe_next(request.form.get("next")))


@bp.route("/login/totp", methods=["GET", "POST"])
def totp() -> ResponseReturnValue:
    pending = session.get("totp_user")
    user_id = pending.partition(".")[0] if pending else ""
    row = get_session().get(User, int(user_id)) if user_id.isdigit() else None
    if row is None or not row.totp_secret or session_id(row) != pending:
        session.pop("totp_user", None)
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("totp.html")
    per_account, _ = _throttles()
    key = f"totp:{row.id}"
    if wait := per_account.blocked(key):
        return _too_many(wait)
    secret = crypto.decrypt_text(current_app.config["SECRET_KEY"], row.totp_secret)
    if not accept_totp(row.id, secret, request.form.get("code", "")):
        per_account.fail(key)
        return render_template("totp.html", error="That code is not valid. Try the current one."), 401
    per_account.reset(key)
    target = session.get("next")
    session.clear()
    login_user(Agent(row))
    return redirect(_safe_next(target))


def accept_totp(user_id: int, secret: str, code: str) -> bool:
    """A code of the current 30-second step or a neighbour (clock drift), and never one already used: a code
    seen over someone's shoulder must not work a second time (RFC 6238, section 5.2)."""
    code = code.replace(" ", "")
    totp, now = pyotp.TOTP(secret), time.time()
    for offset in (0, -1, 1):
        step = totp.timecode(now + offset * totp.interval)
        if code.isdigit() and hmac.compare_digest(totp.generate_otp(step), code):
            used: dict[int, int] = current_app.extensions["totp_used"]
            with _totp_lock:
                if used.get(user_id, -1) >= step:
                    return False
                used[user_id] = step
            return True
    return False


@bp.post("/logout")
@login_required
def logout() -> ResponseReturnValue:
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/account/totp", methods=["GET", "POST"])
@login_required
def totp_setup() -> ResponseReturnValue:
    """Turn two-factor sign-in on (confirming a code from the new secret) or off."""
    row, key = me(), current_app.config["SECRET_KEY"]
    if request.method == "GET":
        secret = pyotp.random_base32()
        session["totp_setup"] = secret
        uri = pyotp.TOTP(secret).provisioning_uri(name=row.email, issuer_name="Helpline")
        return render_template("totp_setup.html", secret=secret, uri=uri, enabled=bool(row.totp_secret))
    if request.form.get("action") == "disable":
        if not check_password(row, request.form.get("password", "")):
            flash("Wrong password; two-factor sign-in stays on.", "error")
            return redirect(url_for("auth.totp_setup"))
        row.totp_secret = None
    else:
        secret = session.get("totp_setup", "")
        if not secret or not pyotp.TOTP(secret).verify(request.form.get("code", "").replace(" ", ""), valid_window=1):
            flash("That code does not match; scan the new secret and try again.", "error")
            return redirect(url_for("auth.totp_setup"))
        row.totp_secret = crypto.encrypt_text(key, secret)
    get_session().commit()
    session.pop("totp_setup", None)
    login_user(Agent(row))  # the session id includes the TOTP fingerprint; keep this session signed in
    flash("Two-factor sign-in is " + ("on." if row.totp_secret else "off."), "info")
    return redirect(url_for("inbox.index"))


def _unauthorized() -> ResponseReturnValue:
    if request.accept_mimetypes.best == "application/json" or request.path.startswith("/fragments"):
        return {"error": "sign in first"}, 401
    return redirect(url_for("auth.login", next=request.full_path if request.method == "GET" else None))


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    login_manager.unauthorized_handler(_unauthorized)
    # 10 failures per account and 50 per client address in 15 minutes.
    app.extensions["login_throttle"] = (LoginThrottle(10, 900), LoginThrottle(50, 900))
    app.extensions["totp_used"] = {}  # user id -> last accepted time step (one process serves the web)
    app.register_blueprint(bp)
