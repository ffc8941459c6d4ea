"""The admin pages of automation rules and webhooks: forms, validation that loses nothing, audit, secrets."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select

from inbox.automation_models import AutomationRule, WebhookDelivery, WebhookSubscription
from inbox.settings_models import AuditLog
from tests.settings.conftest import SignIn
from tickets import webhooks

RULE_FORM = {
    "name": "Refunds to billing",
    "trigger": "message_received",
    "match": "all",
    "enabled": "1",
    "cond-0-field": "subject",
    "cond-0-op": "contains",
    "cond-0-value": "refund",
    "act-0-type": "add_tag",
    "act-0-value": "billing",
    "act-1-type": "auto_reply",
    "act-1-subject": "About your refund",
    "act-1-value": "Hi {{ contact.first_name }}, we are on it.",
}


def rules(app: Flask) -> list[AutomationRule]:
    with app.extensions["helpline"].factory() as session:
        found = list(session.scalars(select(AutomationRule).order_by(AutomationRule.position)))
        session.expunge_all()
        return found


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_admin_creates_edits_orders_toggles_and_deletes_rules(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    bad = admin.post("/settings/automation/new", data=RULE_FORM | {"cond-0-op": "has", "csrf_token": token})
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert "Subject: choose one of" in page and "Refunds to billing" in page and "we are on it" in page
    assert rules(app) == []
    assert admin.post("/settings/automation/new", data=RULE_FORM).status_code == 400  # no CSRF token
    assert admin.post("/settings/automation/new", data=RULE_FORM | {"csrf_token": token}).status_code == 302
    second = RULE_FORM | {"name": "Second", "csrf_token": token}
    assert admin.post("/settings/automation/new", data=second).status_code == 302
    first, other = rules(app)
    assert first.conditions == [{"field": "subject", "op": "contains", "value": "refund"}]
    assert [a["type"] for a in first.actions] == ["add_tag", "auto_reply"]
    assert first.actions[1]["subject"] == "About your refund"
    listing = admin.get("/settings/automation").get_data(as_text=True)
    assert "Refunds to billing" in listing and "Subject contains refund" in listing
    edit = admin.get(f"/settings/automation/{first.id}").get_data(as_text=True)
    assert 'value="refund"' in edit
    admin.post(f"/settings/automation/{other.id}/move", data={"direction": "up", "csrf_token": token})
    assert [r.name for r in rules(app)] == ["Second", "Refunds to billing"]
    admin.post(f"/settings/automation/{first.id}/toggle", data={"csrf_token": token})
    assert not [r for r in rules(app) if r.id == first.id][0].enabled
    changed = RULE_FORM | {"name": "Renamed", "enabled": "", "act-1-type": "", "csrf_token": token}
    assert admin.post(f"/settings/automation/{first.id}", data=changed).status_code == 302
    renamed = [r for r in rules(app) if r.id == first.id][0]
    assert (renamed.name, len(renamed.actions), renamed.enabled) == ("Renamed", 1, False)
    admin.post(f"/settings/automation/{other.id}/delete", data={"csrf_token": token})
    assert [r.name for r in rules(app)] == ["Renamed"]
    with app.extensions["helpline"].factory() as session:
        actions = [a.action for a in session.scalars(select(AuditLog).where(AuditLog.action.like("automation.%")))]
    assert {"automation.rule_created", "automation.rule_moved", "automation.rule_disabled",
            "automation.rule_saved", "automation.rule_deleted"} <= set(actions)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_webhook_secret_is_write_only_and_private_targets_refused(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    form = {"name": "CRM", "url": "http://127.0.0.1:9/hook", "events": ["ticket.created", "message.created"],
            "enabled": "1", "csrf_token": token}
    refused = admin.post("/settings/webhooks/new", data=form)
    assert refused.status_code == 422
    assert "private or reserved address" in refused.get_data(as_text=True)
    assert "HELPLINE_WEBHOOK_ALLOW_PRIVATE" in refused.get_data(as_text=True)
    created = admin.post("/settings/webhooks/new", data=form | {"url": "https://93.184.215.14/hook"},
                         follow_redirects=True)
    page = created.get_data(as_text=True)
    assert created.status_code == 200 and "shown only now" in page
    with app.extensions["helpline"].factory() as session:
        sub = session.scalars(select(WebhookSubscription)).one()
        secret = webhooks.signing_secret(app.config["HELPLINE_SETTINGS"].secret_key, sub)
        assert secret not in sub.secret and sub.events == ["ticket.created", "message.created"]
        sub_id = sub.id
    edit = admin.get(f"/settings/webhooks/{sub_id}").get_data(as_text=True)
    assert secret not in edit and "Send test event" in edit
    admin.post(f"/settings/webhooks/{sub_id}", data=form | {"url": "https://93.184.215.14/v2", "secret": ""})
    with app.extensions["helpline"].factory() as session:
        sub = session.get_one(WebhookSubscription, sub_id)
        assert sub.url == "https://93.184.215.14/v2"
        assert webhooks.signing_secret(app.config["HELPLINE_SETTINGS"].secret_key, sub) == secret  # kept
    tested = admin.post(f"/settings/webhooks/{sub_id}/test", data={"csrf_token": token}, follow_redirects=True)
    assert "no worker queue is reachable" in tested.get_data(as_text=True)  # this app has no Redis
    with app.extensions["helpline"].factory() as session:
        [ping] = session.scalars(select(WebhookDelivery))
        assert (ping.event, ping.state) == ("ping", "pending")
    assert "ping" in admin.get(f"/settings/webhooks/{sub_id}").get_data(as_text=True)
    admin.post(f"/settings/webhooks/{sub_id}/delete", data={"csrf_token": token})
    with app.extensions["helpline"].factory() as session:
        assert session.scalars(select(WebhookDelivery)).all() == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_agents_and_leads_cannot_reach_automation(app: Flask, sign_in: SignIn) -> None:
    for role in ("agent", "lead"):
        client, token = sign_in(role)
        for url in ("/settings/automation", "/settings/automation/new", "/settings/webhooks", "/settings/webhooks/new"):
            assert client.get(url).status_code == 403, (role, url)
        response = client.post("/settings/automation/new", data=RULE_FORM | {"csrf_token": token})
        assert response.status_code == 403
    assert rules(app) == []
