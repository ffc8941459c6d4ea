"""The Flask app factory: agent UI, JSON API, webhooks, health, Socket.IO."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inbox.config import Settings
from inbox.runtime import Storage

if TYPE_CHECKING:
    from flask import Flask


def create_app(settings: Settings | None = None, *, redis_url: str | None = None) -> Flask:
    """Build the app. Tests pass their own ``Settings``; ``redis_url`` overrides ``settings.redis_url``."""
    from flask import Flask  # here, not at the top: the ``helpline`` CLI lives in this package and most of its
    # commands (inbox sync, export, db upgrade) never need Flask, whose import costs ~0.5 s per command.

    settings = (settings or Settings.from_env()).with_secret()
    storage = Storage.from_settings(settings)
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="helpline_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=settings.secure_cookies,
        REMEMBER_COOKIE_SAMESITE="Lax",
        WTF_CSRF_TIME_LIMIT=None,  # the token lives as long as the session; a long shift must not hit 400s
        WTF_CSRF_SSL_STRICT=settings.secure_cookies,
        MAX_CONTENT_LENGTH=settings.max_attachment_bytes + 1024 * 1024,
        HELPLINE_SETTINGS=settings,
        HELPLINE_REDIS_URL=redis_url if redis_url is not None else settings.redis_url,
    )
    app.extensions["helpline"] = storage

    from web import (
        api,
        auth,
        contact_views,
        csat_views,
        db,
        errors,
        filters,
        health,
        health_views,
        inbox_views,
        instagram_webhook,
        jobs,
        message_views,
        onboarding_views,
        realtime,
        report_views,
        search,
        security,
        sla_views,
        ticket_views,
        webhook_views,
        widget_views,
    )

    db.init_app(app)
    security.init_app(app)
    auth.init_app(app)
    errors.init_app(app)
    filters.init_app(app)
    jobs.init_app(app)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(webhook_views.bp)  # channel webhooks; exempt from CSRF in webhook_views (secret header)
    app.register_blueprint(instagram_webhook.bp)  # Graph API webhooks; CSRF-exempt there (signed with the app secret)
    security.csrf.exempt(api.bp)  # bearer tokens, no cookies: CSRF cannot apply
    for bp in (inbox_views.bp, ticket_views.bp, message_views.bp, search.bp, contact_views.bp):
        app.register_blueprint(bp)
    app.register_blueprint(report_views.bp)  # team-lead reports and the live queue (issue 9)
    app.register_blueprint(sla_views.bp)  # SLA policies, admins only (issue 9)
    app.register_blueprint(csat_views.bp)  # the public rating page of the satisfaction survey (issue 9)
    onboarding_views.init_app(app)  # first-run wizard and the /settings pages (issue 10)
    from web import automation_views

    app.register_blueprint(automation_views.bp)  # automation rules and outgoing webhooks (admins)
    realtime.init_app(app, app.config["HELPLINE_REDIS_URL"])
    widget_views.init_app(app)  # the public chat widget: routes, its CSRF exemption, the /widget namespace
    health_views.init_app(app)  # /settings/health, /settings/quarantine and the failing-channel banner (issues 3, 4)
    return app
