"""``/settings/sla``: admins list, create, edit and delete SLA policies; everyone else gets 403; CSRF; audit rows."""
# ruff: noqa: F811 - the settings pages' fixtures (app, sign_in) are imported, then named as test arguments

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select

from inbox.models import Base
from inbox.settings_models import AuditLog
from inbox.sla_models import BusinessCalendar, SlaPolicy
from tests import factories
from tests.settings.conftest import SignIn, app, sign_in  # noqa: F401 - the settings pages' fixtures

FORM = {
    "name": "VIP",
    "position": "1",
    "tag": "VIP",
    "business_hours": "1",
    "warn_before": "30",
    "active": "1",
    "high_first_response": "60",
    "high_resolution": "480",
    "normal_first_response": "240",
    "normal_next_response": "120",
}


def policies(app: Flask) -> list[SlaPolicy]:
    with app.extensions["helpline"].factory() as session:
        out = list(session.scalars(select(SlaPolicy).order_by(SlaPolicy.id)))
        for p in out:
            _ = [t.priority for t in p.targets]  # loaded before the session closes
        session.expunge_all()
        return out


def counts(app: Flask) -> dict[str, int]:
    with app.extensions["helpline"].factory() as session:
        return {
            t.name: int(session.scalar(select(func.count()).select_from(t)) or 0) for t in Base.metadata.sorted_tables
        }


def test_admin_creates_edits_and_deletes_a_policy(app: Flask, sign_in: SignIn) -> None:
    with app.extensions["helpline"].factory() as session:
        inbox = factories.make_inbox(session, name="Shop mail")
        cal = BusinessCalendar(name="Lisbon", timezone="Europe/Lisbon", hours={"mon": [["09:00", "18:00"]]})
        session.add(cal)
        session.commit()
        inbox_id, cal_id = inbox.id, cal.id
    admin, token = sign_in("admin")
    page = admin.get("/settings/sla/").get_data(as_text=True)
    assert "No SLA policies yet" in page
    form = admin.get("/settings/sla/new").get_data(as_text=True)
    assert "Shop mail" in form and "Lisbon (Europe/Lisbon)" in form
    response = admin.post(
        "/settings/sla/new", data=FORM | {"inbox_id": str(inbox_id), "calendar_id": str(cal_id), "csrf_token": token}
    )
    assert response.status_code == 302
    [policy] = policies(app)
    assert (policy.name, policy.tag, policy.inbox_id, policy.calendar_id) == ("VIP", "vip", inbox_id, cal_id)
    assert policy.business_hours and policy.active and policy.warn_before_seconds == 1800
    targets = {
        t.priority: (t.first_response_seconds, t.next_response_seconds, t.resolution_seconds) for t in policy.targets
    }
    assert targets == {"normal": (14400, 7200, None), "high": (3600, None, 28800)}
    listing = admin.get("/settings/sla/").get_data(as_text=True)
    assert "VIP" in listing and "Shop mail" in listing and "Lisbon" in listing and "60 min" in listing

    # Edit: the form shows the stored values; dropping the high targets removes that row; turning it off.
    edit = admin.get(f"/settings/sla/{policy.id}").get_data(as_text=True)
    assert 'value="240"' in edit and 'value="480"' in edit
    changed = {k: v for k, v in FORM.items() if not k.startswith("high_") and k != "active"}
    response = admin.post(f"/settings/sla/{policy.id}", data=changed | {"name": "VIP mail", "csrf_token": token})
    assert response.status_code == 302
    [policy] = policies(app)
    assert policy.name == "VIP mail" and not policy.active and [t.priority for t in policy.targets] == ["normal"]
    assert policy.inbox_id is None and policy.calendar_id is None

    response = admin.post(f"/settings/sla/{policy.id}/delete", data={"csrf_token": token})
    assert response.status_code == 302 and policies(app) == []
    with app.extensions["helpline"].factory() as session:
        actions = list(session.scalars(select(AuditLog.action).order_by(AuditLog.id)))
    assert [a for a in actions if a.startswith("sla_policy.")] == [
        "sla_policy.created",
        "sla_policy.updated",
        "sla_policy.deleted",
    ]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_wrong_form_comes_back_as_typed_and_changes_nothing(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    admin.post("/settings/sla/new", data=FORM | {"csrf_token": token})
    before = counts(app)
    cases = [
        ({"name": ""}, "name"),
        ({"name": "vip"}, "exists already"),  # names are unique, whatever the case
        ({"normal_first_response": "-5"}, "whole number"),
        ({"normal_first_response": "9999999999"}, "whole number"),
        ({"inbox_id": "999"}, "Pick an inbox"),
        ({"calendar_id": "999"}, "Pick a calendar"),
        ({k: "" for k in FORM if "_" in k and k != "warn_before"}, "at least one target"),
    ]
    for change, message in cases:
        response = admin.post("/settings/sla/new", data=FORM | {"name": "Other"} | change | {"csrf_token": token})
        body = response.get_data(as_text=True)
        assert response.status_code == 422, change
        assert message in body, (change, body[:300])
    assert counts(app) == before
    edit = admin.post("/settings/sla/1", data=FORM | {"name": "  ", "high_resolution": "17", "csrf_token": token})
    assert edit.status_code == 422 and 'value="17"' in edit.get_data(as_text=True)
    assert counts(app) == before and policies(app)[0].name == "VIP"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_only_admins_and_only_with_csrf(app: Flask, sign_in: SignIn) -> None:
    admin, token = sign_in("admin")
    admin.post("/settings/sla/new", data=FORM | {"csrf_token": token})
    routes = [("GET", "/settings/sla/"), ("GET", "/settings/sla/new"), ("POST", "/settings/sla/new")]
    routes += [("GET", "/settings/sla/1"), ("POST", "/settings/sla/1"), ("POST", "/settings/sla/1/delete")]
    clients = [sign_in(role) for role in ("agent", "lead")]
    before = counts(app)
    for client, their_token in clients:
        for method, url in routes:
            response = client.open(url, method=method, data=FORM | {"csrf_token": their_token})
            assert response.status_code == 403, (method, url)
    for method, url in routes:
        if method == "POST":  # the admin's own session, without the token
            assert admin.open(url, method=method, data=FORM | {"name": "No token"}).status_code == 400, url
    anonymous = app.test_client()
    for method, url in routes:
        assert anonymous.open(url, method=method).status_code in (302, 400), url
    assert counts(app) == before
    assert admin.get("/settings/sla/999").status_code == 404
