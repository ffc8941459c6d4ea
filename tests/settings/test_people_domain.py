"""People, tags, calendars and canned responses as domain functions, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import people
from inbox.errors import InvalidChange
from inbox.ingest import ingest
from inbox.models import Tag, Ticket, User
from inbox.people_models import UserProfile
from inbox.sla_models import BusinessCalendar, SlaPolicy
from inbox.users import check_password
from tests.factories import inbound, make_inbox, make_team, make_user
from tickets import calendars, lifecycle, tags
from tickets.business_hours import business_seconds, load_calendars
from tickets.staff import reassign_open_tickets
from web import canned


def test_invite_link_works_once_and_expires(session: Session) -> None:
    team = make_team(session)
    admin = make_user(session, role="admin")
    invite, token = people.create_invite(session, " Sam@Shop.test ", role="lead", teams=[team], invited_by=admin)
    assert invite.email == "sam@shop.test" and token not in invite.token_hash and len(token) >= 40
    with pytest.raises(InvalidChange, match="at least 8"):
        people.accept_invite(session, token, name="Sam", password="short")
    assert people.find_invite(session, token) is not None, "a refused password does not spend the link"
    user = people.accept_invite(session, token, name="Sam Lead", password="a long password")
    assert (user.email, user.role, user.name, [t.id for t in user.teams]) == (
        "sam@shop.test",
        "lead",
        "Sam Lead",
        [team.id],
    )
    assert check_password(user, "a long password")
    with pytest.raises(InvalidChange, match="expired or was already used"):
        people.accept_invite(session, token, name="Mallory", password="another long one")
    with pytest.raises(InvalidChange, match="already has an account"):
        people.create_invite(session, "sam@shop.test")

    old, old_token = people.create_invite(session, "kim@shop.test")
    _new, new_token = people.create_invite(session, "kim@shop.test")
    assert people.find_invite(session, old_token) is None and old.revoked_at is not None, "only the newest link works"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=people.INVITE_DAYS, minutes=1)
    assert people.find_invite(session, new_token, now=later) is None
    with pytest.raises(InvalidChange):
        people.accept_invite(session, new_token, name="Kim", password="a long password", now=later)
    assert people.find_invite(session, "not-a-token") is None
    with pytest.raises(InvalidChange, match="unknown role"):
        people.create_invite(session, "x@shop.test", role="owner")


def test_last_admin_stays_admin_and_active(session: Session) -> None:
    first = make_user(session, role="admin")
    agent = make_user(session)
    with pytest.raises(InvalidChange, match="last admin"):
        people.set_role(session, first, "agent")
    with pytest.raises(InvalidChange, match="last admin"):
        people.set_active(session, first, False)
    second = make_user(session, role="admin")
    people.set_active(session, second, False)  # an inactive admin does not count
    with pytest.raises(InvalidChange, match="last admin"):
        people.set_role(session, first, "lead")
    people.set_active(session, second, True)
    people.set_role(session, first, "lead")
    assert first.role == "lead"
    with pytest.raises(InvalidChange):
        people.set_role(session, second, "agent")
    people.set_active(session, agent, False)
    assert not agent.is_active


def test_open_tickets_move_in_bulk_only_to_who_may_see_them(session: Session) -> None:
    team_a, team_b = make_team(session), make_team(session)
    leaving = make_user(session, teams=[team_a, team_b])
    heir = make_user(session, teams=[team_a])
    admin = make_user(session, role="admin")
    box_a, box_b = make_inbox(session, team_id=team_a.id), make_inbox(session, team_id=team_b.id)
    tickets = []
    for box in (box_a, box_a, box_b):
        message = ingest(session, box.id, inbound())
        assert message is not None
        lifecycle.assign(session, message.ticket, leaving.id, by=admin.id)
        tickets.append(message.ticket)
    lifecycle.set_status(session, tickets[1], "solved")
    assert people.open_ticket_counts(session)[leaving.id] == 2
    people.set_active(session, leaving, False)
    assert tickets[0].assignee_id == leaving.id, "deactivating alone keeps the tickets where they are"

    moved, kept = reassign_open_tickets(
        session, leaving, heir, by=admin.id, can_take=lambda t: t.inbox_id in {box_a.id}
    )
    assert (moved, kept) == (1, 1)
    assert [t.assignee_id for t in tickets] == [heir.id, leaving.id, leaving.id], "solved ones keep their owner"
    assert reassign_open_tickets(session, leaving, None, by=admin.id) == (1, 0)
    assert tickets[2].assignee_id is None


def test_teams_own_inboxes(session: Session) -> None:
    sales, support = people.create_team(session, "Sales"), people.create_team(session, "Support")
    with pytest.raises(InvalidChange, match="already exists"):
        people.create_team(session, "sales")
    box = make_inbox(session, team_id=sales.id)
    sam = make_user(session)
    people.update_team(session, support, name="Support", inbox_ids=[box.id], member_ids=[sam.id])
    assert box.team_id == support.id and sam.teams == [support], "an inbox has one team: it moved"
    people.update_team(session, support, name="Customer care", inbox_ids=[], member_ids=[])
    assert box.team_id is None and sam.teams == [] and support.name == "Customer care"
    people.delete_team(session, sales)
    assert session.get(type(sales), sales.id) is None


def test_tags_rename_merge_and_delete(session: Session) -> None:
    box = make_inbox(session)
    ids = []
    for names in (["refund"], ["refunds", "refund"], ["refunds"], ["vip"]):
        message = ingest(session, box.id, inbound())
        assert message is not None
        for name in names:
            lifecycle.add_tag(session, message.ticket, name)
        ids.append(message.ticket_id)
    session.add(SlaPolicy(name="Refunds fast", tag="refunds"))
    session.flush()
    counts = {t.name: n for t, n in tags.tag_counts(session)}
    assert counts == {"refund": 2, "refunds": 2, "vip": 1}

    refund = session.scalar(select(Tag).where(Tag.name == "refund"))
    refunds = session.scalar(select(Tag).where(Tag.name == "refunds"))
    assert refund is not None and refunds is not None
    with pytest.raises(InvalidChange, match="merge into it"):
        tags.update_tag(session, refunds, name="Refund", color="")
    assert tags.merge_tags(session, refunds, refund) == 1  # the ticket with both keeps one
    counts = {t.name: n for t, n in tags.tag_counts(session)}
    assert counts == {"refund": 3, "vip": 1}
    assert session.scalar(select(SlaPolicy.tag)) == "refund", "the policy follows the merge"

    tags.update_tag(session, refund, name="Money back", color="green")
    assert (refund.name, refund.color) == ("money back", "green")
    assert session.scalar(select(SlaPolicy.tag)) == "money back"
    with pytest.raises(InvalidChange, match="colour"):
        tags.update_tag(session, refund, name="money back", color="#fff;")
    assert tags.delete_tag(session, refund) == 3
    assert session.scalar(select(SlaPolicy.active)) is False
    session.expire_all()
    assert [t.name for t in session.get_one(Ticket, ids[0]).tags] == []


def test_edited_calendar_changes_business_time(session: Session) -> None:
    team = make_team(session)
    box = make_inbox(session, team_id=team.id)
    weekdays = {d: "09:00-17:00" for d in ("mon", "tue", "wed", "thu", "fri")}
    row = calendars.save_calendar(
        session, None, name="Office", timezone="Europe/Berlin", days=weekdays, applies_to=f"team:{team.id}"
    )
    # Monday 2026-03-02 08:00 to 12:00 UTC: Berlin is UTC+1, open from 08:00 UTC; four open hours.
    start, end = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC), dt.datetime(2026, 3, 2, 12, tzinfo=dt.UTC)
    assert business_seconds(start, end, load_calendars(session).for_inbox(box.id)) == 4 * 3600
    calendars.save_calendar(
        session,
        row,
        name="Office",
        timezone="Europe/Berlin",
        days=weekdays | {"mon": "10:00-12:00, 13:00-18:00"},
        applies_to=f"team:{team.id}",
    )
    assert business_seconds(start, end, load_calendars(session).for_inbox(box.id)) == 2 * 3600
    calendars.add_holiday(session, row, "2026-03-02", "Staff day")
    session.expire_all()
    assert business_seconds(start, end, load_calendars(session).for_inbox(box.id)) == 0
    # Moving the calendar to the inbox itself, and a second calendar taking the inbox over.
    other = calendars.save_calendar(
        session, None, name="Late", timezone="UTC", days={"mon": "11:00-24:00"}, applies_to=f"inbox:{box.id}"
    )
    assert business_seconds(start, end, load_calendars(session).for_inbox(box.id)) == 3600
    assert other.inbox_id == box.id
    with pytest.raises(InvalidChange, match="Monday"):
        calendars.save_calendar(session, other, name="Late", timezone="UTC", days={"mon": "9-8"}, applies_to="")
    with pytest.raises(InvalidChange, match="overlap"):
        calendars.parse_day("09:00-12:00, 11:00-13:00", "mon")
    with pytest.raises(InvalidChange, match="time zone"):
        calendars.save_calendar(session, other, name="Late", timezone="Mars/Olympus", days={}, applies_to="")
    assert calendars.parse_day("9-17", "tue") == [["09:00", "17:00"]]
    assert session.scalar(select(BusinessCalendar.name).where(BusinessCalendar.is_default)) is None


def test_personal_canned_responses_stay_private(session: Session) -> None:
    admin, ann, bob = make_user(session, role="admin"), make_user(session), make_user(session)
    shared = canned.create(session, admin, "Thanks", "Hi {{contact.first_name}}", shared=True)
    mine = canned.create(session, ann, "My sign-off", "Cheers, {{agent.first_name}}", shared=False)
    with pytest.raises(InvalidChange, match="only admins and leads"):
        canned.create(session, bob, "Shared?", "x", shared=True)
    assert [r.id for r in canned.visible(session, ann)] == [mine.id, shared.id]
    assert [r.id for r in canned.visible(session, bob)] == [shared.id]
    with pytest.raises(Exception, match="no canned response"):
        canned.get_visible(session, bob, mine.id)
    with pytest.raises(InvalidChange):
        canned.delete(session, ann, shared)
    canned.update(session, ann, mine, "Sign-off", "Best, {{agent.name}} {{contact.nmae}}")
    assert canned.unknown_placeholders(mine.body) == ["contact.nmae"]
    assert canned.preview(mine.body, ann).startswith(f"Best, {ann.name} ")


def test_mention_notifications_follow_the_profile(session: Session) -> None:
    team = make_team(session)
    quiet = make_user(session, email="quiet@helpline.test", teams=[team])
    loud = make_user(session, email="loud@helpline.test", teams=[team])
    people.save_profile(
        session,
        quiet,
        name="Quiet",
        avatar_color="",
        notify_mentions=False,
        notify_assignments=True,
        notify_new_tickets=False,
    )
    assert session.get(UserProfile, loud.id) is None and people.profile_of(session, loud).notify_mentions
    box = make_inbox(session, team_id=team.id)
    message = ingest(session, box.id, inbound())
    assert message is not None
    session.info["pending_events"] = []
    lifecycle.add_note(session, message.ticket, "@quiet @loud please look", by=loud.id)
    rooms = {e.room for e in session.info["pending_events"] if e.name == "mention.created"}
    assert rooms == {f"agent:{loud.id}"}
    with pytest.raises(InvalidChange, match="colours"):
        people.save_profile(
            session,
            quiet,
            name="Q",
            avatar_color="red",
            notify_mentions=True,
            notify_assignments=True,
            notify_new_tickets=True,
        )


def test_password_change_needs_the_current_one(session: Session) -> None:
    user: User = make_user(session, password="correct horse")
    with pytest.raises(InvalidChange, match="current password"):
        people.change_password(session, user, "wrong", "new long password", "new long password")
    with pytest.raises(InvalidChange, match="differ"):
        people.change_password(session, user, "correct horse", "new long password", "other long password")
    people.change_password(session, user, "correct horse", "new long password", "new long password")
    assert check_password(user, "new long password") and not check_password(user, "correct horse")
    assert people.initials("Ann Marie Example") == "AM" and people.initials("", "zoe.q@x.test") == "ZQ"
