"""Reports in a real browser (Debian's Chromium through Playwright) against a live server: a lead sees the charts
and downloads a table as CSV; an agent is refused."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy import select

from inbox.config import Settings
from inbox.models import User
from tests.reports.world import World, build
from tests.web.conftest import PASSWORD
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve, wait_js
from web import create_app

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")
PERIOD = "start=2026-10-19&end=2026-11-01&tz=Europe/Berlin&by=week"


@dataclass
class Site:
    live: LiveServer
    world: World
    emails: dict[int, str]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[Site]:
    data = tmp_path_factory.mktemp("reports-live")
    shutil.copy(sqlite_template, data / "helpline.db")
    settings = Settings(data_dir=data, database_url=f"sqlite:///{data / 'helpline.db'}", secret_key="reports-test")
    app = create_app(settings)
    with app.extensions["helpline"].factory() as session:
        world = build(session)
        session.commit()
        emails = {u.id: u.email for u in session.scalars(select(User))}
    with serve(app) as live:
        yield Site(live, world, emails)
    app.extensions["helpline"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def signed_in(browser: Browser, site: Site, user_id: int) -> Page:
    page = browser.new_context(accept_downloads=True).new_page()
    page.goto(site.live.url + "/login")
    page.fill("input[name=email]", site.emails[user_id])
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(site.live.url + "/")
    return page



def test_lead_sees_charts_and_downloads_csv(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, site.world.lead)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.click("text=Reports")
    page.goto(f"{site.live.url}/reports/?{PERIOD}")
    wait_js(page, "window.helplineCharts && window.helplineCharts.length === 5")
    # Each chart drew its datasets from the table rows: volume per week, created then solved.
    volume = page.evaluate("() => window.helplineCharts[0].data.datasets.map(d => d.data)")
    assert volume == [[3, 1], [2, 1]]
    frt = page.evaluate("() => window.helplineCharts[1].data.datasets[0].data")
    assert frt == [1, 91]  # medians in hours: week of the 19th (1 h), of the 26th (91 h)
    canvas_width = page.evaluate("() => document.getElementById('chart-volume').width")
    assert canvas_width > 100
    assert page.locator("#card-frt").inner_text() == "5h 00m"
    assert page.locator("#definitions").is_visible()
    with page.expect_download() as info:
        page.click("a.csv-link[data-table=first_response]")
    path = info.value.path()
    assert info.value.suggested_filename == "helpline-first_response-2026-10-19-2026-11-01.csv"
    assert Path(path).read_text().splitlines() == [
        "week,count,median (seconds),p90 (seconds),median (business) (seconds),p90 (business) (seconds)",
        "2026-10-19,2,3600,18000,0,3600",
        "2026-10-26,1,327600,327600,7200,7200",
        "all,3,18000,327600,3600,7200",
    ]
    assert errors == []
    if shots := os.environ.get("HELPLINE_ARTIFACTS"):
        page.set_viewport_size({"width": 1280, "height": 900})
        page.screenshot(path=str(Path(shots) / "reports.png"), full_page=True)
    page.context.close()


def test_agent_cannot_open_reports(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, site.world.b)
    assert page.locator("nav >> text=Reports").count() == 0
    response = page.goto(f"{site.live.url}/reports/?{PERIOD}")
    assert response is not None and response.status == 403
    response = page.goto(f"{site.live.url}/reports/export/volume.csv?{PERIOD}")
    assert response is not None and response.status == 403
    page.context.close()


def test_admin_adds_edits_and_deletes_an_sla_policy(browser: Browser, site: Site) -> None:
    page = signed_in(browser, site, site.world.admin)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{site.live.url}/settings/sla/")
    assert page.locator("#policy-1").count() == 1  # the world's "Standard"
    page.click("text=Add a policy")
    page.fill("input[name=name]", "Urgent mail")
    page.fill("input[name=position]", "0")
    page.select_option("select[name=inbox_id]", str(site.world.inbox2))
    page.check("input[name=business_hours]")
    page.select_option("select[name=calendar_id]", label="Berlin office (Europe/Berlin)")
    page.fill("input[name=urgent_first_response]", "30")
    page.fill("input[name=urgent_resolution]", "240")
    page.click("button:has-text('Add policy')")
    page.wait_for_url(f"{site.live.url}/settings/sla/")
    row = page.locator("tr", has_text="Urgent mail")
    assert "business hours (Berlin office)" in row.inner_text() and "30 min" in row.inner_text()
    row.locator("a", has_text="Urgent mail").click()
    page.fill("input[name=name]", "standard")
    page.fill("input[name=urgent_first_response]", "45")
    page.click("button:has-text('Save')")
    assert page.locator("#form-error").inner_text() == "A policy named 'standard' exists already."
    assert page.input_value("input[name=urgent_first_response]") == "45"  # the form comes back as typed
    page.fill("input[name=name]", "Urgent mail")
    page.click("button:has-text('Save')")
    page.wait_for_url(f"{site.live.url}/settings/sla/")
    assert "45 min" in page.locator("tr", has_text="Urgent mail").inner_text()
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("tr", has_text="Urgent mail").locator("button:has-text('Delete')").click()
    page.wait_for_selector("text=Policy Urgent mail deleted.")
    assert page.locator("tr", has_text="Urgent mail").count() == 0
    assert errors == []
    page.context.close()


def test_live_queue_shows_agents_coming_and_going(browser: Browser, site: Site) -> None:
    lead = signed_in(browser, site, site.world.lead)
    lead.goto(f"{site.live.url}/reports/queue")
    alice_row = lead.locator("#q-agents tr", has_text="Alice")
    assert "offline" in alice_row.inner_text()
    wait_js(lead, "window.helplineSocket && window.helplineSocket.connected", timeout=30)
    wait_js(lead, "document.querySelector('#q-online').textContent === '1'", timeout=30)  # the lead herself
    alice = signed_in(browser, site, site.world.a)  # her inbox page opens her socket: she is online
    wait_js(lead, "document.querySelector('#q-online').textContent === '2'", timeout=30)
    assert "online" in lead.locator("#q-agents tr", has_text="Alice").inner_text()
    alice.context.close()
    wait_js(lead, "document.querySelector('#q-online').textContent === '1'", timeout=30)
    assert "offline" in lead.locator("#q-agents tr", has_text="Alice").inner_text()
    lead.context.close()


def test_customer_rates_a_solved_ticket(browser: Browser, site: Site) -> None:
    from tests.reports.world import Z
    from tickets import csat

    token = csat.make_token("reports-test", site.world.t2, Z("2026-10-23 08:00"))
    page = browser.new_context().new_page()
    page.goto(f"{site.live.url}/rate/{token}?score=5")
    assert page.locator("input[name=score][value='5']").is_checked()
    page.click("label.score:has-text('4')")
    page.fill("textarea[name=comment]", "Helpful, if slow")
    page.click("button:has-text('Send rating')")
    assert (
        "You rated request" in page.locator("#thanks").inner_text()
        and "4 out of 5" in page.locator("#thanks").inner_text()
    )
    page.context.close()
