"""Split and move a message, SLA badges and Instagram answered by hand, in Chromium against a live server.

Reuses the live site (demo workspace) and browser of tests/web/test_browser.py; a second agent watches each change
arrive without reloading.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect
from sqlalchemy import select

from inbox.db import utcnow
from inbox.ingest import ingest
from inbox.models import Inbox, Message, SlaPolicy, SlaTarget, Ticket
from tests.factories import inbound
from tests.web.live import CHROMIUM
from tests.web.test_browser import LEAD_EMAIL, OUTSIDER_EMAIL, Site, browser, live, signed_in, site  # noqa: F401 (fixtures)
from tickets import lifecycle, sla
from web.demo import DEMO_EMAIL, DEMO_PASSWORD

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (tests/deps.py)")


def email_ticket(on: Site, handle: str, *texts: str) -> tuple[int, list[int]]:
    """One email ticket of ``handle`` holding ``texts`` as a reply chain; returns its id and the message ids."""
    with on.session() as session:
        box = session.scalar(select(Inbox).where(Inbox.channel == "email"))
        assert box is not None
        ids: list[int] = []
        refs: tuple[str, ...] = ()
        for n, text in enumerate(texts):
            mid = f"<{handle}-{n}@example.com>"
            m = ingest(
                session,
                box.id,
                inbound(
                    handle=handle,
                    display_name=handle.split("@")[0].title(),
                    subject=f"Order of {handle}",
                    text=text,
                    message_id=mid,
                    references=refs,
                ),
            )
            assert m is not None
            refs = (mid, *refs)
            ids.append(m.id)
        session.commit()
        ticket_id = session.get(Message, ids[0]).ticket_id  # type: ignore[union-attr]
        return ticket_id, ids


def open_ticket(page: Page, on: Site, ticket_id: int) -> None:
    page.goto(f"{on.live.url}/tickets/{ticket_id}")
    live(page)
    page.evaluate("window.__noReload = 'still here'")


def test_split_seen_live_by_a_second_agent(browser: Browser, site: Site) -> None:  # noqa: F811
    source, (first, second) = email_ticket(site, "rita@example.com", "Where is my parcel?", "Also, my invoice is wrong")
    dana = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    lee = signed_in(browser, site, LEAD_EMAIL)
    lee_inbox = signed_in(browser, site, LEAD_EMAIL)
    open_ticket(dana, site, source)
    open_ticket(lee, site, source)
    live(lee_inbox)
    lee_inbox.evaluate("window.__noReload = 'still here'")
    expect(lee.locator("#thread .group.current")).to_contain_text("my invoice is wrong")
    expect(dana.locator(f"#m{second} .why")).to_contain_text("in-reply-to")  # why it joined this ticket

    dana.locator(f"#m{second} .msg-menu summary").click()
    expect(dana.locator(f"#m{second} .split-message")).to_be_visible()
    dana.screenshot(path=str(site.artifacts / "ticket-message-menu.png"))
    dana.locator(f"#m{second} .split-message").click()
    dana.wait_for_url(lambda url: f"/tickets/{source}" not in url)
    new_id = int(dana.url.rsplit("/", 1)[1])
    expect(dana.locator(f"#m{second} .why")).to_have_text(f"split off #{source} by Dana Demo")
    expect(dana.locator("#thread .group.current")).to_contain_text("my invoice is wrong")

    # Lee, still on the old ticket, sees the message leave it (folded under the new ticket), without reloading.
    expect(lee.locator("#thread .group.current")).not_to_contain_text("my invoice is wrong")
    expect(lee.locator("#thread .group.current")).to_contain_text("Where is my parcel?")
    expect(lee.locator("#thread details.group.other")).to_contain_text(f"Ticket #{new_id}")
    assert lee.evaluate("window.__noReload") == "still here"
    expect(lee_inbox.locator(f'.ticket-row[data-ticket-id="{new_id}"]')).to_contain_text("my invoice is wrong")
    assert lee_inbox.evaluate("window.__noReload") == "still here"
    with site.session() as session:
        old, new = session.get(Ticket, source), session.get(Ticket, new_id)
        assert old is not None and new is not None
        assert (old.message_count, new.message_count, new.contact_id) == (1, 1, old.contact_id)
    assert first
    for page in (dana, lee, lee_inbox):
        page.context.close()


def test_move_seen_live_on_both_tickets(browser: Browser, site: Site) -> None:  # noqa: F811
    source, (_, stray) = email_ticket(site, "omar@example.com", "Hello there", "About the other order: any news?")
    target, _ = email_ticket(site, "omar2@example.com", "The other order")
    dana = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    lee_source = signed_in(browser, site, LEAD_EMAIL)
    lee_target = signed_in(browser, site, LEAD_EMAIL)
    open_ticket(dana, site, source)
    open_ticket(lee_source, site, source)
    open_ticket(lee_target, site, target)
    expect(lee_target.locator("#thread")).not_to_contain_text("any news?")

    dana.locator(f"#m{stray} .msg-menu summary").click()
    dana.locator(f"#m{stray} input[name=into]").fill(f"#{target}")
    dana.locator(f"#m{stray} .move-message").click()
    dana.wait_for_load_state()
    expect(dana.locator("#thread .group.current")).not_to_contain_text("any news?")

    expect(lee_target.locator("#thread .group.current")).to_contain_text("any news?")
    expect(lee_target.locator(f"#m{stray} .why")).to_have_text(f"moved from #{source} by Dana Demo")
    # On the source ticket the message now sits, folded, under the ticket it was moved to.
    expect(lee_source.locator("#thread .group.current")).not_to_contain_text("any news?")
    expect(lee_source.locator("#thread details.group.other")).to_contain_text(f"Ticket #{target}")
    for page in (lee_source, lee_target):
        assert page.evaluate("window.__noReload") == "still here"
    for page in (dana, lee_source, lee_target):
        page.context.close()


def test_sla_badge_in_list_and_header(browser: Browser, site: Site) -> None:  # noqa: F811
    with site.session() as session:
        box = session.scalar(select(Inbox).where(Inbox.channel == "email"))
        assert box is not None
        policy = SlaPolicy(name="Browser test policy", position=-1, inbox_id=box.id, tag="sla-browser")
        policy.targets = [SlaTarget(priority="normal", first_response_seconds=7200)]
        session.add(policy)
        late = ingest(
            session, box.id, inbound(subject="Late one", sent_at=utcnow() - dt.timedelta(hours=2, minutes=15))
        )
        assert late is not None
        lifecycle.add_tag(session, late.ticket, "sla-browser")
        session.commit()
        ticket_id = late.ticket_id
    page = signed_in(browser, site, LEAD_EMAIL)
    row = page.locator(f'.ticket-row[data-ticket-id="{ticket_id}"]')
    expect(row.locator(".sla-badge")).to_have_text("overdue 15m")
    expect(row.locator(".sla-badge")).to_have_attribute("data-sla-state", "overdue")
    page.goto(f"{site.live.url}/tickets/{ticket_id}")
    expect(page.locator(".ticket-head .sla-badge")).to_have_text("overdue 15m")
    page.context.close()


def test_instagram_open_copy_and_mark_answered(browser: Browser, site: Site) -> None:  # noqa: F811
    with site.session() as session:
        insta = session.scalar(select(Inbox).where(Inbox.channel == "instagram"))
        assert insta is not None and (insta.config or {}).get("mode") != "graph"
        comment = ingest(
            session,
            insta.id,
            inbound(
                channel="instagram",
                handle="lena.k",
                display_name="Lena",
                message_id=None,
                text="Is the green vase back in stock?",
                thread_key="VASE42",
                meta={
                    "post_shortcode": "VASE42",
                    "comment_id": "17900",
                    "post_url": "https://www.instagram.com/p/VASE42/",
                },
            ),
        )
        assert comment is not None
        session.commit()
        ticket_id = comment.ticket_id
    dana = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD, permissions=["clipboard-read", "clipboard-write"])
    lee = signed_in(browser, site, LEAD_EMAIL)
    open_ticket(dana, site, ticket_id)
    open_ticket(lee, site, ticket_id)
    expect(dana.locator("#ig-open")).to_have_attribute("href", "https://www.instagram.com/p/VASE42/c/17900/")
    expect(dana.locator("#ig-open")).to_have_attribute("target", "_blank")

    dana.locator("#ig-copy").click()
    expect(dana.locator("#ig-copy-status")).to_have_text("Write the reply first.")
    dana.fill("#reply-text", "Yes! Back since Monday, @lena.k")
    dana.locator("#ig-copy").click()
    expect(dana.locator("#ig-copy-status")).to_have_text("Copied.")
    expect(dana.locator("#ig-copy")).to_have_attribute("data-copied", "Yes! Back since Monday, @lena.k")
    assert dana.evaluate("navigator.clipboard.readText()") == "Yes! Back since Monday, @lena.k"

    dana.screenshot(path=str(site.artifacts / "ticket-instagram.png"))
    dana.locator("#ig-answered").click()
    dana.wait_for_url(f"{site.live.url}/tickets/{ticket_id}")
    reply = dana.locator("#thread article.dir-outbound").last
    expect(reply).to_contain_text("Back since Monday")
    expect(reply.locator(".delivery-manual")).to_have_text("manual")
    expect(lee.locator("#thread")).to_contain_text("Back since Monday")  # live for the other agent
    with site.session() as session:
        out = session.scalar(select(Message).where(Message.ticket_id == ticket_id, Message.direction == "outbound"))
        ticket = session.get(Ticket, ticket_id)
        assert out is not None and ticket is not None
        assert out.delivery_state == "manual" and ticket.first_response_at == out.created_at
    for page in (dana, lee):
        page.context.close()


def _sla_ticket(on: Site, tag: str, handle: str, waited: dt.timedelta, **policy: Any) -> int:
    """An email ticket of ``handle``, tagged ``tag``, whose customer wrote ``waited`` ago; a policy for the tag."""
    with on.session() as session:
        box = session.scalar(select(Inbox).where(Inbox.channel == "email"))
        assert box is not None
        targets = policy.pop("targets")
        row = SlaPolicy(name=f"Live {tag}", position=-1, inbox_id=box.id, tag=tag, **policy)
        row.targets = [SlaTarget(priority=p, **t) for p, t in targets.items()]
        session.add(row)
        first = ingest(
            session,
            box.id,
            inbound(
                handle=handle, subject=f"Clock {tag}", message_id=f"<{tag}@example.com>", sent_at=utcnow() - waited
            ),
        )
        assert first is not None
        lifecycle.add_tag(session, first.ticket, tag)
        session.commit()
        return first.ticket_id


def _head_badge(page: Page) -> Locator:
    return page.locator(".ticket-head #ticket-sla .sla-badge")


def _post(page: Page, path: str, **form: str) -> None:
    """A form post as the page's signed-in user (its cookies and CSRF token), not through the page itself."""
    token = page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    got = page.request.post(f"{page.url.split('/tickets')[0]}{path}", form=form | {"csrf_token": token})
    assert got.ok, got.status


def test_header_sla_badge_follows_changes_made_elsewhere_live(browser: Browser, site: Site) -> None:  # noqa: F811
    """Reply, customer message, priority change and solve by another agent (HTTP) or by the mail side (another
    session) re-render the header badge of an open ticket page in place; an outsider hears nothing of it."""
    targets = {
        "normal": {"first_response_seconds": 7200, "next_response_seconds": 3600},
        "urgent": {"first_response_seconds": 600, "next_response_seconds": 3600},
    }
    ticket_id = _sla_ticket(site, "sla-live", "clara@example.com", dt.timedelta(minutes=30), targets=targets)
    lee = signed_in(browser, site, LEAD_EMAIL)
    dana = signed_in(browser, site, DEMO_EMAIL, DEMO_PASSWORD)
    otto = signed_in(browser, site, OUTSIDER_EMAIL)
    live(otto)
    open_ticket(lee, site, ticket_id)
    dana.goto(f"{site.live.url}/tickets/{ticket_id}")
    badge = _head_badge(lee)
    expect(badge).to_have_attribute("data-sla-state", "running")
    expect(badge).to_have_text(re.compile(r"^due in 1h (29|30)m$"))

    _post(dana, f"/tickets/{ticket_id}/priority", priority="urgent")  # first response now due 10 min after start
    expect(badge).to_have_attribute("data-sla-state", "overdue")
    expect(badge).to_have_text(re.compile(r"^overdue (19|20)m$"))

    _post(dana, f"/tickets/{ticket_id}/reply", text="Looking into it now.")  # the first response stops the clock
    expect(badge).to_have_count(0)
    expect(lee.locator("#thread")).to_contain_text("Looking into it now.")

    with site.session() as session:  # the customer answers by mail: a next-response clock starts
        again = ingest(
            session,
            session.scalar(select(Inbox.id).where(Inbox.channel == "email")),
            inbound(
                handle="clara@example.com",
                subject="Re: Clock sla-live",
                references=("<sla-live@example.com>",),
                sent_at=utcnow(),
            ),
        )
        session.commit()
        assert again is not None and again.ticket_id == ticket_id
    expect(badge).to_have_attribute("data-sla-state", "running")
    expect(badge).to_have_text(re.compile(r"^due in (59m|1h 0m)$"))

    _post(dana, f"/tickets/{ticket_id}/status", status="solved")  # a solve stops every clock
    expect(badge).to_have_count(0)
    assert lee.evaluate("window.__noReload") == "still here"

    # Access: the badge fragment is the ticket's, so an agent of another team gets a 404 and never an event.
    assert otto.request.get(f"{site.live.url}/tickets/{ticket_id}/sla").status == 404
    assert lee.request.get(f"{site.live.url}/tickets/{ticket_id}/sla").status == 200
    heard = otto.evaluate("window.helplineEvents")
    assert [e for e in heard if isinstance(e[1], dict) and ticket_id in (e[1].get("id"), e[1].get("ticket_id"))] == []
    for page in (lee, dana, otto):
        page.context.close()


def test_header_sla_badge_follows_the_sweep_live(browser: Browser, site: Site) -> None:  # noqa: F811
    """Time alone changes nothing on the page; the sweep's warning and breach events re-render the header."""
    warn = {"normal": {"first_response_seconds": 3600}}
    lead = 15  # seconds until both clocks change state: time to open the pages first
    created = time.monotonic()
    # Warning 600 s after the customer wrote (3000 s before the due time): ``lead`` seconds from now.
    warning_id = _sla_ticket(
        site,
        "sla-sweep-warn",
        "wes@example.com",
        dt.timedelta(seconds=600 - lead),
        targets=warn,
        warn_before_seconds=3000,
    )
    # Due ``lead`` seconds from now, already within its warning time.
    breach_id = _sla_ticket(
        site,
        "sla-sweep-due",
        "bea@example.com",
        dt.timedelta(seconds=3600 - lead),
        targets=warn,
        warn_before_seconds=3000,
    )
    warning_page = signed_in(browser, site, LEAD_EMAIL)
    breach_page = signed_in(browser, site, LEAD_EMAIL)
    open_ticket(warning_page, site, warning_id)
    open_ticket(breach_page, site, breach_id)
    expect(_head_badge(warning_page)).to_have_attribute("data-sla-state", "running")
    expect(_head_badge(breach_page)).to_have_attribute("data-sla-state", "warning")
    # Both clocks move on; the pages don't poll, so nothing shows until an event says so.
    warning_page.wait_for_timeout(max(0.0, created + lead + 1.5 - time.monotonic()) * 1000)
    expect(_head_badge(warning_page)).to_have_attribute("data-sla-state", "running")
    expect(_head_badge(breach_page)).to_have_attribute("data-sla-state", "warning")

    with site.session() as session:
        counts = sla.sweep_sla(session, utcnow())
        session.commit()
    assert counts[sla.WARNING] >= 1 and counts[sla.BREACH] >= 1
    expect(_head_badge(warning_page)).to_have_attribute("data-sla-state", "warning")
    expect(_head_badge(warning_page)).to_have_class(re.compile(r"\bsla-warn\b"))
    expect(_head_badge(breach_page)).to_have_attribute("data-sla-state", "overdue")
    expect(_head_badge(breach_page)).to_have_text(re.compile(r"^overdue 0m$"))
    for page in (warning_page, breach_page):
        assert page.evaluate("window.__noReload") == "still here"
        page.context.close()
