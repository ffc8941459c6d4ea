"""Reports in a real browser (Debian's Chromium through Playwright) against a live server: a lead sees the charts
and downloads a table as CSV; an agent is refused."""

from __future__ import annotations

import os
import shutil
import time
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
from tests.web.live import CHROMIUM, CHROMIUM_ARGS, LiveServer, serve
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


def wait_js(page: Page, predicate: str, timeout: float = 10.0) -> None:
    """Poll a JS predicate (``wait_for_function`` evals a string, which the app's CSP forbids)."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(f"() => Boolean({predicate})"):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        page.wait_for_timeout(50)


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
