"""Inbox and ticket pages: folders, paging, filters, the controls, and how untrusted bytes are served."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy import select

from inbox.config import Settings
from inbox.ingest import ingest
from inbox.models import Message, Ticket
from inbox.people_models import CannedResponse
from tests.factories import inbound
from tests.web.conftest import World, build_world, login
from web import create_app, folders

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
ROW = re.compile(r'class="ticket-row[^"]*" data-ticket-id="(\d+)"')


def _ticket(app: Flask, ticket_id: int) -> Ticket:
    with app.extensions["helpline"].factory() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        session.expunge(ticket)
        return ticket


def test_folders_count_and_list_only_visible_tickets(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    page = client.get("/").get_data(as_text=True)
    assert set(map(int, ROW.findall(page))) == {world.ticket_a, world.ticket_a2}
    counts = client.get("/fragments/inbox/counts").get_json()
    assert counts["open"] == 2 and counts["unassigned"] == 2 and counts["mine"] == 0
    assert counts[f"inbox:{world.inbox_a}"] == 2 and f"inbox:{world.inbox_b}" not in counts
    admin = app.test_client()
    login(admin, world.emails[world.admin])
    assert admin.get("/fragments/inbox/counts").get_json()["open"] == 3
    assert client.get("/?folder=inbox:" + str(world.inbox_b)).get_data(as_text=True).count("ticket-row") == 0
    assert client.get("/?folder=nonsense").status_code == 404


def test_keyset_paging_walks_every_ticket_once(app: Flask, world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folders, "PAGE_SIZE", 3)
    with app.extensions["helpline"].factory() as session:
        for _ in range(8):
            ingest(session, world.inbox_a, inbound())
        session.commit()
        expected = list(
            session.scalars(
                select(Ticket.id)
                .where(Ticket.inbox_id == world.inbox_a)
                .order_by(Ticket.last_activity_at.desc(), Ticket.id.desc())
            )
        )
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    seen: list[int] = []
    url: str | None = "/?folder=open"
    while url:
        html = client.get(url).get_data(as_text=True)
        seen += map(int, ROW.findall(html))
        more = re.search(r'<p class="more"><a href="([^"]+)"', html)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert seen == expected and len(expected) == 10


def test_filters_and_rows_fragment(app: Flask, world: World) -> None:
    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    client.post(f"/tickets/{world.ticket_a2}/priority", data={"priority": "urgent", "csrf_token": token})
    rows = client.get("/fragments/inbox/rows?folder=open&priority=urgent").get_data(as_text=True)
    assert list(map(int, ROW.findall(rows))) == [world.ticket_a2]
    client.post(f"/tickets/{world.ticket_a}/assign", data={"agent_id": "me", "csrf_token": token})
    mine = client.get("/?folder=mine").get_data(as_text=True)
    assert list(map(int, ROW.findall(mine))) == [world.ticket_a]


def test_ticket_controls(app: Flask, world: World) -> None:
    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    base = f"/tickets/{world.ticket_a}"

    def post(path: str, **form: str) -> int:
        return client.post(base + path, data=form | {"csrf_token": token}).status_code

    assert post("/reply", text="We are on it", status="pending") == 302
    assert post("/note", text="internal only") == 302
    assert post("/tags", name="VIP") == 302
    assert post("/priority", priority="high") == 302
    assert post("/assign", agent_id=str(world.agent_b)) == 422  # agent B cannot see this inbox
    assert post("/assign", agent_id=str(world.lead_a)) == 302
    assert post("/team", team_id="1") == 403  # agents do not move tickets between teams
    ticket = _ticket(app, world.ticket_a)
    assert (ticket.status, ticket.priority, ticket.assignee_id) == ("pending", "high", world.lead_a)
    with app.extensions["helpline"].factory() as session:
        reply = session.scalar(select(Message).where(Message.direction == "outbound"))
        assert reply is not None and reply.delivery_state == "queued" and reply.body_text == "We are on it"
        assert session.scalar(select(Message.id).where(Message.direction == "note")) is not None
    page = client.get(base).get_data(as_text=True)
    assert "We are on it" in page and "internal only" in page and "#vip" in page
    assert post("/tags/remove", name="vip") == 302
    assert post("/snooze", hours="4") == 302
    assert _ticket(app, world.ticket_a).status == "snoozed"
    assert post("/snooze", hours="5") == 422
    assert post("/status", status="bogus") == 422
    assert post("/merge", into=str(world.ticket_b)) == 404  # another team's ticket: as if it did not exist
    assert post("/merge", into=f"#{world.ticket_a2}") == 302
    assert _ticket(app, world.ticket_a).merged_into_id == world.ticket_a2
    response = client.get(base)
    assert response.status_code == 302 and response.headers["Location"] == f"/tickets/{world.ticket_a2}"


def test_thread_shows_other_tickets_folded(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    html = client.get(f"/tickets/{world.ticket_a2}").get_data(as_text=True)
    assert '<details class="group other">' in html and f"Ticket #{world.ticket_a}" in html
    assert '<section class="group current"' in html


def test_email_html_is_served_sandboxed(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    page = client.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
    assert f'sandbox="" referrerpolicy="no-referrer" title="Email message {world.message_a}"' in page
    assert "onerror" not in page and "<script>window" not in page  # the HTML never enters the app's page
    body = client.get(f"/messages/{world.message_a}/body")
    csp = body.headers["Content-Security-Policy"]
    assert csp == "default-src 'none'; style-src 'unsafe-inline'; img-src data: cid:; frame-ancestors 'self'; sandbox"
    assert body.headers["X-Frame-Options"] == "SAMEORIGIN"
    remote = client.get(f"/messages/{world.message_a}/body?images=1").headers["Content-Security-Policy"]
    assert "img-src data: cid: https: http:" in remote and "script" not in remote and "sandbox" in remote


def test_attachments_and_raw_source_download(app: Flask, world: World) -> None:
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    att = client.get(f"/attachments/{world.attachment_a}")
    assert att.status_code == 200 and att.data == b"<script>alert(1)</script>"
    assert att.headers["Content-Disposition"].startswith('attachment; filename="evil.html"')
    assert att.headers["Content-Type"] == "application/octet-stream"  # never text/html from our origin
    assert att.headers["X-Content-Type-Options"] == "nosniff"
    assert att.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"
    raw = client.get(f"/messages/{world.message_a}/raw")
    assert raw.status_code == 200 and b"Subject: Secret plans A" in raw.data
    assert raw.headers["Content-Disposition"].startswith("attachment;")


@pytest.fixture
def redis_app(settings: Settings, redis_url: str) -> Iterator[Flask]:
    app = create_app(settings, redis_url=redis_url)
    yield app
    app.extensions["helpline"].dispose()


def test_reply_enqueues_its_delivery(redis_app: Flask, redis_url: str) -> None:
    from redis import Redis
    from rq import Queue

    with redis_app.extensions["helpline"].factory() as session:
        world = build_world(session)
    client = redis_app.test_client()
    token = login(client, world.emails[world.agent_a])
    client.post(f"/tickets/{world.ticket_a}/reply", data={"text": "On its way", "csrf_token": token})
    with redis_app.extensions["helpline"].factory() as session:
        message_id = session.scalar(select(Message.id).where(Message.direction == "outbound"))
    queue = Queue("outbound", connection=Redis.from_url(redis_url))
    assert f"deliver-{message_id}" in queue.job_ids
    queue.empty()


def test_email_frame_inlines_cid_images_and_loads_remote_ones_on_request(app: Flask, world: World) -> None:
    from email.message import EmailMessage

    from connectors.email import parse_email

    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "Ann <ann@example.com>", "support@shop.test", "Our logo"
    mail["Message-ID"] = "<logo-1@example.com>"
    mail.set_content("plain part")
    mail.add_alternative('<p>Hi <img src="cid:logo@x"><img src="https://tracker.example/p.gif"></p>', subtype="html")
    mail.get_payload()[1].add_related(b"\x89PNG\r\n\x1a\nfake", maintype="image", subtype="png", cid="<logo@x>")
    raw = mail.as_bytes()
    with app.extensions["helpline"].factory() as session:
        sha = session.info["blobs"].put(raw)
        parsed = parse_email(raw)
        message = ingest(session, world.inbox_a, replace(parsed, raw_sha256=sha))
        assert message is not None
        session.commit()
        message_id, ticket_id = message.id, message.ticket_id
    client = app.test_client()
    login(client, world.emails[world.agent_a])
    blocked = client.get(f"/messages/{message_id}/body").get_data(as_text=True)
    assert 'src="data:image/png;base64,' in blocked and "tracker.example" not in blocked
    assert "Load remote images" in client.get(f"/tickets/{ticket_id}").get_data(as_text=True)
    allowed = client.get(f"/messages/{message_id}/body?images=1").get_data(as_text=True)
    assert 'src="https://tracker.example/p.gif"' in allowed and 'src="data:image/png;base64,' in allowed


def test_reply_with_attachment_is_stored_for_the_worker(app: Flask, world: World) -> None:
    import io

    client = app.test_client()
    token = login(client, world.emails[world.agent_a])
    data = {"text": "The label is attached", "csrf_token": token, "files": (io.BytesIO(b"%PDF-1.4 label"), "label.pdf")}
    response = client.post(f"/tickets/{world.ticket_a}/reply", data=data, content_type="multipart/form-data")
    assert response.status_code == 302
    with app.extensions["helpline"].factory() as session:
        reply = session.scalar(select(Message).where(Message.direction == "outbound"))
        assert reply is not None and [(a.filename, a.size) for a in reply.attachments] == [("label.pdf", 14)]


def test_contact_merge_needs_both_contacts_visible(app: Flask, world: World) -> None:
    with app.extensions["helpline"].factory() as session:
        ann_chat = ingest(session, world.inbox_a, inbound(channel="telegram", handle="777", display_name="Ann TG"))
        bob = session.scalar(select(Ticket.contact_id).where(Ticket.id == world.ticket_b))
        session.commit()
        assert ann_chat is not None
        chat_contact = ann_chat.contact_id
    agent_b = app.test_client()
    token_b = login(agent_b, world.emails[world.agent_b])
    stolen = agent_b.post(f"/contacts/{bob}/merge", data={"other": "ann@example.com", "csrf_token": token_b})
    assert stolen.status_code == 404  # team B cannot pull team A's customer into its own contact
    agent_a = app.test_client()
    token = login(agent_a, world.emails[world.agent_a])
    form = {"other": "777", "csrf_token": token, "ticket_id": str(world.ticket_a)}
    assert agent_a.post(f"/contacts/{world.contact_a}/merge", data=form).status_code == 302
    page = agent_a.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
    assert "Te</span> 777" in page  # the Telegram identity now belongs to Ann
    with app.extensions["helpline"].factory() as session:
        merged = session.scalar(select(Ticket.contact_id).where(Ticket.id == ann_chat.ticket_id))
        assert merged == world.contact_a and chat_contact != world.contact_a


def test_canned_responses_fill_placeholders_and_never_run_templates(app: Flask, world: World) -> None:
    admin = app.test_client()
    token = login(admin, world.emails[world.admin])
    body = "Hi {{contact.first_name}}, ticket #{{ ticket.id }} is ours. {{ 7*7 }} {{config.SECRET_KEY}} {{agent.name}}"
    form = {"title": "Thanks", "body": body, "shared": "1", "csrf_token": token}
    assert admin.post("/settings/canned", data=form).status_code == 302
    agent = app.test_client()
    agent_token = login(agent, world.emails[world.agent_a])
    # An agent cannot write a shared response: nothing is saved.
    agent.post("/settings/canned", data={"title": "x", "body": "y", "shared": "1", "csrf_token": agent_token})
    assert '<option data-text="y">' not in agent.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
    page = agent.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
    option = re.search(r'<option data-text="([^"]*)">Thanks</option>', page)
    assert option is not None
    text = html.unescape(option.group(1))
    assert text.startswith(f"Hi Ann, ticket #{world.ticket_a} is ours.")
    assert "{{ 7*7 }}" in text and " 49 " not in text and app.config["SECRET_KEY"] not in text
    with app.extensions["helpline"].factory() as session:
        canned_id = session.scalar(select(CannedResponse.id).where(CannedResponse.title == "Thanks"))
    assert agent.post(f"/settings/canned/{canned_id}/delete", data={"csrf_token": agent_token}).status_code == 302
    assert 'id="canned"' in agent.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)  # agents cannot delete it
    assert admin.post(f"/settings/canned/{canned_id}/delete", data={"csrf_token": token}).status_code == 302
    assert 'id="canned"' not in agent.get(f"/tickets/{world.ticket_a}").get_data(as_text=True)
