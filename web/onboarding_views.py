"""The first-run wizard: create the owner, name the workspace, connect a first channel, land in the inbox.

While no user exists every page of the agent UI redirects here (a ``before_app_request`` hook of this blueprint),
so a fresh install needs no console step. Webhooks, the widget, the API and health checks are never redirected.
"""

from __future__ import annotations

from flask import Blueprint, Flask, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user

from inbox import workspace
from inbox.config import Settings
from inbox.errors import InvalidChange
from inbox.models import CHANNELS
from inbox.users import MIN_PASSWORD, create_user
from web.auth import Agent, me, role_required
from web.channel_setup import Connected, SetupError, connect_from_form, widget_snippet
from web.db import get_session

bp = Blueprint("onboarding", __name__, url_prefix="/welcome")

# Blueprints that serve machines or strangers, never the first-run redirect.
EXEMPT_BLUEPRINTS = {"onboarding", "health", "api", "webhooks", "instagram_webhook", "widget"}
CHANNEL_LABELS = {"email": "Email", "telegram": "Telegram", "instagram": "Instagram", "webchat": "Web chat"}
# Form fields that hold secrets: never sent back to the browser, not even after a failed test.
SECRET_FIELDS = ("password", "smtp_password", "token", "access_token", "app_secret")


def _users_exist() -> bool:
    """Cached once true: users are not deleted back to none, and the check runs on every request."""
    if current_app.extensions.get("onboarding_users_exist"):
        return True
    found = workspace.has_users(get_session())
    if found:
        current_app.extensions["onboarding_users_exist"] = True
    return found


@bp.before_app_request
def first_run_redirect() -> ResponseReturnValue | None:
    if request.method != "GET" or request.endpoint is None or request.endpoint == "static":
        return None
    if request.blueprint in EXEMPT_BLUEPRINTS or request.path.startswith("/fragments"):
        return None
    if _users_exist():
        return None
    return redirect(url_for("onboarding.owner"))


def _settings() -> Settings:
    settings: Settings = current_app.config["HELPLINE_SETTINGS"]
    return settings


@bp.route("", methods=["GET", "POST"])
def owner() -> ResponseReturnValue:
    """Step 1: the owner account (an admin), signed in at once."""
    session = get_session()
    if workspace.has_users(session):
        if current_user.is_authenticated and current_user.role == "admin":
            return redirect(url_for(".workspace_step"))
        return redirect(url_for("auth.login"))
    if request.method == "GET":
        return render_template("onboarding/owner.html", form={}, min_password=MIN_PASSWORD)
    form = request.form
    error = None
    if form.get("password", "") != form.get("password2", ""):
        error = "The two passwords differ; type the same password twice."
    else:
        try:
            workspace.claim_owner(session, form.get("email", ""))
            user = create_user(
                session,
                form.get("email", ""),
                form.get("password", ""),
                role="admin",
                name=form.get("name", "").strip(),
            )
        except InvalidChange as exc:
            session.rollback()
            error = str(exc)[:1].upper() + str(exc)[1:] + "."
    if error is not None:
        values = {"email": form.get("email", ""), "name": form.get("name", "")}
        return render_template("onboarding/owner.html", form=values, error=error, min_password=MIN_PASSWORD), 422
    session.commit()  # web.audit_views records the new admin ("user.created") in this transaction
    login_user(Agent(user))
    return redirect(url_for(".workspace_step"))


@bp.route("/workspace", methods=["GET", "POST"])
@role_required("admin")
def workspace_step() -> ResponseReturnValue:
    """Step 2: the workspace's name and time zone."""
    session = get_session()
    values = {
        "name": workspace.get_setting(session, workspace.WORKSPACE_NAME),
        "timezone": workspace.get_setting(session, workspace.WORKSPACE_TIMEZONE),
    }
    if request.method == "POST":
        values = {"name": request.form.get("name", "").strip(), "timezone": request.form.get("timezone", "")}
        try:
            if not values["name"]:
                raise InvalidChange("give the workspace a name, e.g. your shop's")
            tz = workspace.check_timezone(values["timezone"])
        except InvalidChange as exc:
            return render_template(
                "onboarding/workspace.html", form=values, error=str(exc), timezones=workspace.timezones()
            ), 422
        workspace.set_setting(session, workspace.WORKSPACE_NAME, values["name"][:100])
        workspace.set_setting(session, workspace.WORKSPACE_TIMEZONE, tz)
        workspace.record(
            session,
            "workspace.updated",
            actor=me(),
            detail={"name": values["name"], "timezone": tz},
            ip=request.remote_addr or "",
        )
        onboarded = workspace.get_setting(session, workspace.ONBOARDED, False)
        session.commit()
        if onboarded:  # reached from Settings later: back there, not into the wizard
            flash("Workspace saved.", "info")
            return redirect(url_for("channel_settings.index"))
        return redirect(url_for(".channel"))
    return render_template("onboarding/workspace.html", form=values, timezones=workspace.timezones())


def public_form() -> dict[str, str]:
    """The submitted form without its secrets, to fill the form in again."""
    return {k: v for k, v in request.form.items() if k not in SECRET_FIELDS and k != "csrf_token"}


@bp.route("/channel", methods=["GET", "POST"])
@role_required("admin")
def channel() -> ResponseReturnValue:
    """Step 3: connect a first channel, tested live; nothing is saved unless the test passes."""
    kind = request.values.get("kind", "")
    if kind and kind not in CHANNELS:
        abort(404)
    context = {"kind": kind, "labels": CHANNEL_LABELS, "form": {}, "action": url_for(".channel")}
    if request.method == "GET":
        return render_template("onboarding/channel.html", **context)
    session, settings = get_session(), _settings()
    test_only = request.form.get("submit") == "test"
    try:
        result = connect_from_form(session, settings, kind, request.form, test_only=test_only)
    except SetupError as exc:
        session.rollback()
        return render_template(
            "onboarding/channel.html",
            **context | {"form": public_form(), "error": exc.reason, "error_field": exc.field},
        ), 422
    if not isinstance(result, Connected):
        session.rollback()
        return render_template("onboarding/channel.html", **context | {"form": public_form(), "tested": result})
    workspace.set_setting(session, workspace.ONBOARDED, True)
    workspace.record(
        session,
        "inbox.created",
        actor=me(),
        target=f"inbox:{result.inbox.id}",
        detail={"channel": kind, "name": result.inbox.name},
        ip=request.remote_addr or "",
    )
    session.commit()
    if kind == "webchat":
        return render_template(
            "onboarding/done.html",
            inbox=result.inbox,
            test=result.test,
            snippet=widget_snippet(settings, result.inbox),
            widget_secret=result.widget_secret,
        )
    flash(f"{result.inbox.name} is connected. {result.test.summary} New messages appear here within a minute.", "info")
    return redirect(url_for("inbox.index"))


@bp.post("/skip")
@role_required("admin")
def skip() -> ResponseReturnValue:
    session = get_session()
    workspace.set_setting(session, workspace.ONBOARDED, True)
    session.commit()
    return redirect(url_for("inbox.index"))


def init_app(app: Flask) -> None:
    """Register the wizard and the settings pages of issue 10 (one line in ``create_app``)."""
    from web import (
        audit_views,
        channel_settings_views,
        contact_import_views,
        people_views,
        profile_views,
        workspace_views,
    )

    app.register_blueprint(bp)
    for extra in (people_views.bp, people_views.signup_bp, profile_views.bp, profile_views.canned_bp):
        app.register_blueprint(extra)
    app.register_blueprint(workspace_views.tags_bp)
    app.register_blueprint(workspace_views.hours_bp)
    app.context_processor(profile_views.notification_prefs)
    if app.config.get("HELPLINE_REDIS_URL"):
        from inbox import events
        from workers.notify import NotificationEnqueuer

        events.add_publisher(NotificationEnqueuer())  # mentions and assignments by email, for who wants them
    app.register_blueprint(channel_settings_views.bp)
    app.register_blueprint(contact_import_views.bp)
    audit_views.init_app(app)
