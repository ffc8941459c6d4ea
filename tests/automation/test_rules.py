"""Automation rules on both databases: triggers from real domain events, conditions, actions, audit, loop guards."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox import events
from inbox.automation_models import AutomationRule
from inbox.errors import InvalidChange
from inbox.ingest import ingest
from inbox.models import Message, Ticket, TicketEvent
from tests import factories
from tickets import automation, lifecycle


def rule(session: Session, trigger: str = "message_received", *, conditions: Any = (), actions: Any = (),
         match: str = "all", name: str = "r") -> AutomationRule:
    return automation.save_rule(session, None, name=name, trigger=trigger, match=match,
                                conditions=list(conditions), actions=list(actions))


def run_published(session: Session, seen: list[events.DomainEvent], rounds: int = 10) -> list[int]:
    """What the jobs do: run the rules for every published event, and for the events those runs publish."""
    fired: list[int] = []
    done = 0
    for _ in range(rounds):
        todo, done = seen[done:], len(seen)
        if not todo:
            break
        for ev in todo:
            trigger = automation.trigger_for(ev.name, ev.room, ev.payload)
            if trigger is not None:
                fired += automation.run_rules(session, trigger)
                session.commit()
    seen.clear()  # consumed, as the queue's jobs are
    return fired


def customer_mail(session: Session, inbox_id: int, **kw: Any) -> Message:
    msg = ingest(session, inbox_id, factories.inbound(**kw))
    assert msg is not None
    session.commit()
    return msg


def test_conditions_and_actions_act_on_an_ingested_message_and_are_audited(
    session: Session, published: list[events.DomainEvent]
) -> None:
    team = factories.make_team(session)
    agent = factories.make_user(session, teams=[team])
    inbox = factories.make_inbox(session, team_id=team.id)
    vip = rule(
        session,
        conditions=[
            {"field": "subject", "op": "contains", "value": "REFUND"},
            {"field": "from_domain", "op": "is", "value": "bigcorp.test"},
            {"field": "inbox", "op": "is", "value": str(inbox.id)},
        ],
        actions=[
            {"type": "add_tag", "value": "Refund"},
            {"type": "set_priority", "value": "urgent"},
            {"type": "assign_agent", "value": str(agent.id)},
            {"type": "add_note", "value": "Refund request from {{ contact.first_name }} on #{{ ticket.id }}"},
        ],
        name="VIP refunds",
    )
    session.commit()
    hit = customer_mail(session, inbox.id, handle="ann@BigCorp.test", display_name="Ann Smith",
                        subject="Please refund order 7")
    miss = customer_mail(session, inbox.id, handle="bob@small.test", subject="Please refund order 8")
    assert run_published(session, published) == [vip.id]
    session.expire_all()
    ticket = session.get_one(Ticket, hit.ticket_id)
    assert [t.name for t in ticket.tags] == ["refund"]
    assert (ticket.priority, ticket.assignee_id, ticket.status) == ("urgent", agent.id, "open")
    note = session.scalar(select(Message).where(Message.ticket_id == ticket.id, Message.direction == "note"))
    assert note is not None and note.body_text == f"Refund request from Ann on #{ticket.id}"
    kinds = {e.kind: e for e in session.scalars(select(TicketEvent).where(TicketEvent.ticket_id == ticket.id))}
    for kind in ("tag_added", "priority", "assignee", "note"):
        assert kinds[kind].actor_id is None
        assert kinds[kind].data["automation"]["rule"] == "VIP refunds", kind
    other = session.get_one(Ticket, miss.ticket_id)
    assert (other.priority, other.tags) == ("normal", [])
    assert session.get_one(AutomationRule, vip.id).fire_count == 1


def test_any_match_tags_status_and_contact_attributes(session: Session, published: list[events.DomainEvent]) -> None:
    inbox = factories.make_inbox(session)
    r = rule(
        session,
        match="any",
        conditions=[
            {"field": "body", "op": "contains", "value": "urgent"},
            {"field": "contact_attribute", "key": "plan", "op": "is", "value": "gold"},
        ],
        actions=[{"type": "add_tag", "value": "priority-queue"}],
    )
    session.commit()
    a = customer_mail(session, inbox.id, text="This is URGENT please")
    b = customer_mail(session, inbox.id, contact_attributes={"plan": "Gold"})
    c = customer_mail(session, inbox.id, text="no hurry")
    run_published(session, published)
    session.expire_all()
    tagged = {t.id for t in session.scalars(select(Ticket)) if t.tags}
    assert tagged == {a.ticket_id, b.ticket_id}
    assert c.ticket_id not in tagged and r.fire_count == 2


def test_rules_run_in_order_and_disabled_rules_do_not(session: Session, published: list[events.DomainEvent]) -> None:
    inbox = factories.make_inbox(session)
    first = rule(session, actions=[{"type": "set_priority", "value": "high"}], name="first")
    second = rule(session, conditions=[{"field": "priority", "op": "is", "value": "high"}],
                  actions=[{"type": "add_tag", "value": "saw-high"}], name="second")
    off = rule(session, actions=[{"type": "add_tag", "value": "never"}], name="off")
    off.enabled = False
    session.commit()
    msg = customer_mail(session, inbox.id)
    assert run_published(session, published) == [first.id, second.id]
    automation.move_rule(session, second, -1)
    session.commit()
    assert [r.name for r in automation.ordered_rules(session)] == ["second", "first", "off"]
    ticket = session.get_one(Ticket, msg.ticket_id)
    assert [t.name for t in ticket.tags] == ["saw-high"]


def test_rule_chains_stop_instead_of_looping(session: Session, published: list[events.DomainEvent]) -> None:
    """A tags → B untags and retags → A ... would loop forever; the chain guard stops it."""
    inbox = factories.make_inbox(session)
    a = rule(session, "tagged", conditions=[{"field": "tag", "op": "has", "value": "x"}],
             actions=[{"type": "add_tag", "value": "y"}, {"type": "remove_tag", "value": "x"}], name="A")
    b = rule(session, "tagged", conditions=[{"field": "tag", "op": "has", "value": "y"}],
             actions=[{"type": "remove_tag", "value": "y"}, {"type": "add_tag", "value": "x"}], name="B")
    self_loop = rule(session, "status_changed", actions=[{"type": "set_status", "value": "pending"},
                                                          {"type": "set_status", "value": "open"}], name="flip")
    session.commit()
    msg = customer_mail(session, inbox.id)
    ticket = session.get_one(Ticket, msg.ticket_id)
    lifecycle.add_tag(session, ticket, "x", by=None)
    lifecycle.set_status(session, ticket, "open", by=None)
    session.commit()
    fired = run_published(session, published, rounds=50)
    assert fired.count(self_loop.id) == 1  # its own status changes never trigger it again
    assert len(fired) <= 1 + automation.MAX_CHAIN * 2
    assert {a.id, b.id} <= set(fired)


def test_auto_reply_loop_guards(session: Session, published: list[events.DomainEvent]) -> None:
    inbox = factories.make_inbox(session, address="support@shop.test")
    rule(session, actions=[{"type": "auto_reply", "subject": "We got your mail",
                            "value": "Hi {{ contact.first_name }}, ticket #{{ ticket.id }} is open."}])
    session.commit()
    human = customer_mail(session, inbox.id, handle="ann@example.com", display_name="Ann Lee")
    again = customer_mail(session, inbox.id, handle="ann@example.com", references=(human.message_id_header,),
                          subject="Re: more")
    ooo = customer_mail(session, inbox.id, handle="carl@example.com", is_auto=True,
                        meta={"auto_reasons": ["auto-submitted: auto-replied"]})
    noreply = customer_mail(session, inbox.id, handle="no-reply@shop-platform.test")
    own = customer_mail(session, inbox.id, handle="support@shop.test")
    run_published(session, published)
    session.expire_all()
    autos = list(session.scalars(select(Message).where(Message.is_auto.is_(True), Message.direction == "outbound")))
    assert len(autos) == 1
    [reply] = autos
    assert reply.ticket_id == human.ticket_id == again.ticket_id
    assert reply.body_text == f"Hi Ann, ticket #{human.ticket_id} is open." and reply.subject == "We got your mail"
    assert (reply.delivery_state, reply.author_id) == ("queued", None)
    ticket = session.get_one(Ticket, human.ticket_id)
    assert ticket.first_response_at is None  # an automatic mail is not an agent's answer
    skipped = {
        e.ticket_id: e.data["reason"]
        for e in session.scalars(select(TicketEvent).where(TicketEvent.kind == "auto_reply_skipped"))
    }
    assert "already got its one automatic reply" in skipped[human.ticket_id]
    assert "machine-made (auto-submitted: auto-replied)" in skipped[ooo.ticket_id]
    assert "does not take replies" in skipped[noreply.ticket_id]
    assert "does not take replies" in skipped[own.ticket_id]


def test_auto_reply_rate_limit_per_contact(session: Session, published: list[events.DomainEvent]) -> None:
    """A sender who starts a new thread with every mail still gets at most AUTO_REPLY_LIMIT automatic mails."""
    inbox = factories.make_inbox(session)
    rule(session, "ticket_created", actions=[{"type": "auto_reply", "value": "Thanks!"}])
    session.commit()
    for i in range(6):
        customer_mail(session, inbox.id, handle="loop@example.com", subject=f"Out of office {i}")
    run_published(session, published)
    autos = session.scalars(select(Message).where(Message.is_auto.is_(True), Message.direction == "outbound"))
    assert len(list(autos)) == automation.AUTO_REPLY_LIMIT
    old = dt.datetime.now(dt.UTC) - automation.AUTO_REPLY_WINDOW - dt.timedelta(minutes=1)
    for m in session.scalars(select(Message).where(Message.is_auto.is_(True))):
        m.created_at = old
    session.commit()
    customer_mail(session, inbox.id, handle="loop@example.com", subject="A day later")
    run_published(session, published)
    recent = session.scalars(select(Message).where(Message.is_auto.is_(True), Message.created_at > old))
    assert len(list(recent)) == 1


@pytest.mark.parametrize(
    ("conditions", "actions", "error"),
    [
        ([{"field": "subject", "op": "has", "value": "x"}], [{"type": "add_tag", "value": "a"}], "Subject: choose"),
        ([{"field": "priority", "op": "is", "value": "meh"}], [{"type": "add_tag", "value": "a"}], "Priority"),
        ([], [], "at least one action"),
        ([], [{"type": "assign_agent", "value": "999"}], "active user"),
        ([], [{"type": "auto_reply", "value": "{{ contact.password }}"}], "unknown placeholder contact.password"),
        ([{"field": "contact_attribute", "op": "is", "value": "x"}], [{"type": "add_tag", "value": "a"}], "name the"),
    ],
)
def test_invalid_rules_get_a_clear_error(session: Session, conditions: Any, actions: Any, error: str) -> None:
    with pytest.raises(InvalidChange, match=error):
        rule(session, conditions=conditions, actions=actions)
