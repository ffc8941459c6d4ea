"""Automation rules: "when <trigger>, if <conditions>, then <actions>", run in a job after the event's commit.

Rules are evaluated in ``position`` order on the domain events the core already publishes (``trigger_for`` maps
them). Each action goes through ``tickets.lifecycle`` with ``session.info["audit_context"]`` set, so the ticket's
history shows it as done by the rule, and the events it causes carry the chain of rules that led to them: a rule
never fires again on a chain it is already part of, and a chain stops after ``MAX_CHAIN`` rules (A tags → B
untags → A tags ... cannot run forever).

Automatic replies are the dangerous action (two auto-responders answering each other forever), so
``auto_reply_refusal`` allows one only to a human's message (never to one classified as automatic: auto-replies,
bulk, lists, bounces, a null return path, no-reply senders), at most one per ticket, and at most
``AUTO_REPLY_LIMIT`` per contact in ``AUTO_REPLY_WINDOW``. Refusals are recorded on the ticket.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from inbox import audit, events
from inbox.automation_models import AutomationRule
from inbox.db import utcnow
from inbox.errors import InvalidChange, NotFound
from inbox.ingest import message_payload
from inbox.models import CHANNELS, PRIORITIES, STATUSES, Identity, Inbox, Message, Team, Ticket, User
from tickets import lifecycle

log = logging.getLogger(__name__)

# trigger name → label; the domain event each one listens to is in ``trigger_for``.
TRIGGERS: dict[str, str] = {
    "ticket_created": "Ticket created",
    "message_received": "Customer message received",
    "status_changed": "Ticket status changed",
    "assigned": "Ticket assigned",
    "tagged": "Tag added to ticket",
}
TRIGGER_EVENTS: dict[str, str] = {
    "ticket_created": events.TICKET_CREATED,
    "message_received": events.MESSAGE_CREATED,
    "status_changed": events.TICKET_STATUS_CHANGED,
    "assigned": events.TICKET_ASSIGNED,
    "tagged": events.TICKET_UPDATED,
}
# condition field → (label, operators)
CONDITIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "inbox": ("Inbox", ("is", "is_not")),
    "channel": ("Channel", ("is", "is_not")),
    "subject": ("Subject", ("contains", "not_contains", "is", "starts_with")),
    "body": ("Message text", ("contains", "not_contains")),
    "from_address": ("Sender address", ("is", "is_not", "contains")),
    "from_domain": ("Sender domain", ("is", "is_not")),
    "tag": ("Tag", ("has", "has_not")),
    "priority": ("Priority", ("is", "is_not")),
    "status": ("Status", ("is", "is_not")),
    "contact_attribute": ("Contact attribute", ("is", "is_not", "contains", "is_set")),
}
OPERATORS = {
    "is": "is",
    "is_not": "is not",
    "contains": "contains",
    "not_contains": "does not contain",
    "starts_with": "starts with",
    "has": "has",
    "has_not": "has not",
    "is_set": "is set",
}
ACTIONS: dict[str, str] = {
    "assign_agent": "Assign to agent",
    "assign_team": "Assign to team",
    "add_tag": "Add tag",
    "remove_tag": "Remove tag",
    "set_priority": "Set priority",
    "set_status": "Set status",
    "add_note": "Add internal note",
    "auto_reply": "Send automatic reply",
}
PLACEHOLDERS = ("contact.name", "contact.first_name", "contact.email", "ticket.id", "ticket.subject", "inbox.name")
PLACEHOLDER = re.compile(r"\{\{\s*([a-z_.]+)\s*\}\}")

MAX_CHAIN = 3  # rules in one chain of cause and effect; a longer chain is a loop an admin built by accident
AUTO_REPLY_LIMIT = 3  # automatic replies per contact ...
AUTO_REPLY_WINDOW = dt.timedelta(hours=24)  # ... in this window: a sender that breaks threading still stops
NO_REPLY = re.compile(r"^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?|auto-?reply)([+.@-]|$)", re.I)


@dataclass(frozen=True)
class Trigger:
    """One domain event as automation sees it."""

    name: str  # a key of TRIGGERS
    ticket_id: int
    message_id: int | None = None
    chain: tuple[int, ...] = ()  # ids of the rules whose actions caused this event
    detail: Mapping[str, Any] = field(default_factory=dict)


def trigger_for(name: str, room: str, payload: Mapping[str, Any]) -> Trigger | None:
    """The trigger a published domain event fires, or None (pure: runs in the publisher after commit)."""
    if not room.startswith("ticket:"):
        return None  # the same change is announced to several rooms; the ticket's room is the one we count
    data = payload.get("data") or {}
    chain = tuple(int(i) for i in ((data.get("automation") or {}).get("chain") or ()))
    if name == events.MESSAGE_CREATED:
        if payload.get("direction") != "inbound":
            return None
        return Trigger("message_received", int(payload["ticket_id"]), int(payload["id"]))
    if name == events.TICKET_CREATED:
        return Trigger("ticket_created", int(payload["id"]), chain=chain)
    if name == events.TICKET_STATUS_CHANGED:
        return Trigger("status_changed", int(payload["id"]), chain=chain, detail=data)
    if name == events.TICKET_ASSIGNED and payload.get("assignee_id") is not None:
        return Trigger("assigned", int(payload["id"]), chain=chain, detail=data)
    if name == events.TICKET_UPDATED and payload.get("change") == "tag_added":
        return Trigger("tagged", int(payload["id"]), chain=chain, detail=data)
    return None


# --- defining rules ---------------------------------------------------------------------------------------------


def clean_conditions(raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check and normalise conditions from a form; raises ``InvalidChange`` with a message an admin understands."""
    out: list[dict[str, Any]] = []
    for cond in raw:
        field_name, op = str(cond.get("field", "")), str(cond.get("op", ""))
        value = str(cond.get("value", "")).strip()
        if not field_name:
            continue
        if field_name not in CONDITIONS:
            raise InvalidChange(f"unknown condition {field_name!r}")
        label, ops = CONDITIONS[field_name]
        if op not in ops:
            raise InvalidChange(f"{label}: choose one of {', '.join(OPERATORS[o] for o in ops)}")
        item: dict[str, Any] = {"field": field_name, "op": op, "value": value}
        if field_name == "contact_attribute":
            key = str(cond.get("key", "")).strip()
            if not key:
                raise InvalidChange("Contact attribute: name the attribute")
            item["key"] = key
        if not value and op != "is_set":
            raise InvalidChange(f"{label} {OPERATORS[op]}: give a value")
        if field_name == "inbox" and not value.isdigit():
            raise InvalidChange("Inbox: choose an inbox")
        if field_name == "channel" and value not in CHANNELS:
            raise InvalidChange(f"Channel: one of {', '.join(CHANNELS)}")
        if field_name == "priority" and value not in PRIORITIES:
            raise InvalidChange(f"Priority: one of {', '.join(PRIORITIES)}")
        if field_name == "status" and value not in STATUSES:
            raise InvalidChange(f"Status: one of {', '.join(STATUSES)}")
        out.append(item)
    return out


def clean_actions(session: Session, raw: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check and normalise actions from a form (agents, teams and templates must exist and make sense)."""
    out: list[dict[str, Any]] = []
    for action in raw:
        kind, value = str(action.get("type", "")), str(action.get("value", "")).strip()
        if not kind:
            continue
        if kind not in ACTIONS:
            raise InvalidChange(f"unknown action {kind!r}")
        label = ACTIONS[kind]
        item: dict[str, Any] = {"type": kind, "value": value}
        if kind == "assign_agent":
            user = session.get(User, int(value)) if value.isdigit() else None
            if user is None or not user.is_active:
                raise InvalidChange(f"{label}: choose an active user")
        elif kind == "assign_team":
            if not value.isdigit() or session.get(Team, int(value)) is None:
                raise InvalidChange(f"{label}: choose a team")
        elif kind == "set_priority" and value not in PRIORITIES:
            raise InvalidChange(f"{label}: one of {', '.join(PRIORITIES)}")
        elif kind == "set_status" and value not in STATUSES:
            raise InvalidChange(f"{label}: one of {', '.join(STATUSES)}")
        elif not value:
            raise InvalidChange(f"{label}: give a value")
        if kind == "auto_reply":
            item["subject"] = str(action.get("subject", "")).strip()[:300]
            for text in (item["subject"], value):
                unknown = {m.group(1) for m in PLACEHOLDER.finditer(text)} - set(PLACEHOLDERS)
                if unknown:
                    raise InvalidChange(
                        f"{label}: unknown placeholder {', '.join(sorted(unknown))}; use {', '.join(PLACEHOLDERS)}"
                    )
        out.append(item)
    if not out:
        raise InvalidChange("a rule needs at least one action")
    return out


def save_rule(
    session: Session,
    rule: AutomationRule | None,
    *,
    name: str,
    trigger: str,
    match: str,
    conditions: Sequence[Mapping[str, Any]],
    actions: Sequence[Mapping[str, Any]],
    enabled: bool = True,
) -> AutomationRule:
    """Create (``rule`` None, placed last) or update a rule after checking every part of it."""
    name = name.strip()
    if not name:
        raise InvalidChange("a rule needs a name")
    if trigger not in TRIGGERS:
        raise InvalidChange(f"choose a trigger: {', '.join(TRIGGERS.values())}")
    if match not in ("all", "any"):
        raise InvalidChange("match all or any of the conditions")
    cleaned_conditions = clean_conditions(conditions)
    cleaned_actions = clean_actions(session, actions)
    if rule is None:
        last = session.scalar(select(func.max(AutomationRule.position)))
        rule = AutomationRule(position=(last or 0) + 1, fire_count=0)
        session.add(rule)
    rule.name, rule.trigger, rule.match = name[:200], trigger, match
    rule.conditions, rule.actions, rule.enabled = cleaned_conditions, cleaned_actions, enabled
    rule.updated_at = utcnow()
    session.flush()
    return rule


def ordered_rules(session: Session) -> list[AutomationRule]:
    return list(session.scalars(select(AutomationRule).order_by(AutomationRule.position, AutomationRule.id)))


def move_rule(session: Session, rule: AutomationRule, offset: int) -> None:
    """Move a rule up (-1) or down (+1) in the evaluation order."""
    rules = ordered_rules(session)
    index = rules.index(rule)
    target = min(max(index + offset, 0), len(rules) - 1)
    rules.insert(target, rules.pop(index))
    for position, item in enumerate(rules, start=1):
        item.position = position
    session.flush()


def wanted_events(session: Session) -> set[str]:
    """Domain event names enabled rules listen to (the publisher enqueues nothing else for automation)."""
    triggers = session.scalars(select(AutomationRule.trigger).where(AutomationRule.enabled.is_(True)).distinct())
    return {TRIGGER_EVENTS[t] for t in triggers if t in TRIGGER_EVENTS}


# --- running rules ----------------------------------------------------------------------------------------------


@dataclass
class Context:
    ticket: Ticket
    message: Message | None  # the customer message the rule looks at (None: the ticket has none yet)


def run_rules(session: Session, trigger: Trigger, *, mail_domain: str = "helpline.local") -> list[int]:
    """Evaluate the enabled rules of ``trigger`` in order and apply those that match; returns the fired rule ids."""
    if len(trigger.chain) >= MAX_CHAIN:
        log.warning("automation: chain %s on ticket %s is too long; stopping", trigger.chain, trigger.ticket_id)
        return []
    rules = list(
        session.scalars(
            select(AutomationRule)
            .where(AutomationRule.enabled.is_(True), AutomationRule.trigger == trigger.name)
            .order_by(AutomationRule.position, AutomationRule.id)
        )
    )
    if not rules:
        return []
    # The row lock serialises two jobs on one ticket (PostgreSQL), so "one automatic reply per ticket" holds; SQLite
    # transactions here already begin IMMEDIATE.
    ticket = session.get(Ticket, trigger.ticket_id, with_for_update=True)
    if ticket is None or ticket.merged_into_id is not None:
        return []
    message = _context_message(session, ticket, trigger.message_id)
    ctx = Context(ticket, message)
    fired: list[int] = []
    for rule in rules:
        if rule.id in trigger.chain:
            continue  # this rule's own actions caused the event: firing again would loop
        if not matches(rule, ctx):
            continue
        apply_actions(session, rule, ctx, trigger.chain, mail_domain=mail_domain)
        rule.fire_count = (rule.fire_count or 0) + 1
        rule.last_fired_at = utcnow()
        fired.append(rule.id)
    return fired


def _context_message(session: Session, ticket: Ticket, message_id: int | None) -> Message | None:
    if message_id is not None:
        message = session.get(Message, message_id)
        if message is not None and message.direction == "inbound":
            return message
    return session.scalar(
        select(Message)
        .where(Message.ticket_id == ticket.id, Message.direction == "inbound")
        .order_by(Message.id.desc())
        .limit(1)
    )


def matches(rule: AutomationRule, ctx: Context) -> bool:
    results = [_condition(cond, ctx) for cond in rule.conditions or []]
    if not results:
        return True
    return all(results) if rule.match == "all" else any(results)


def _sender(ctx: Context) -> str:
    identity = ctx.message.identity if ctx.message is not None else None
    return identity.handle.lower() if identity is not None else ""


def _actual(cond: Mapping[str, Any], ctx: Context) -> str | set[str] | None:
    ticket, message = ctx.ticket, ctx.message
    getters: dict[str, Callable[[], str | set[str] | None]] = {
        "inbox": lambda: str(ticket.inbox_id),
        "channel": lambda: ticket.channel,
        "subject": lambda: (message.subject if message is not None and message.subject else ticket.subject),
        "body": lambda: message.body_text if message is not None else "",
        "from_address": lambda: _sender(ctx),
        "from_domain": lambda: _sender(ctx).rpartition("@")[2] if "@" in _sender(ctx) else "",
        "tag": lambda: {t.name for t in ticket.tags},
        "priority": lambda: ticket.priority,
        "status": lambda: ticket.status,
        "contact_attribute": lambda: _attribute(ticket, str(cond.get("key", ""))),
    }
    return getters[str(cond["field"])]()


def _attribute(ticket: Ticket, key: str) -> str | None:
    value = (ticket.contact.attributes or {}).get(key)
    return None if value is None else str(value)


def _condition(cond: Mapping[str, Any], ctx: Context) -> bool:
    if cond.get("field") not in CONDITIONS:
        return False  # a rule saved by a newer version: never act on what we cannot check
    actual, op = _actual(cond, ctx), str(cond.get("op"))
    wanted = str(cond.get("value", "")).strip().lower()
    if isinstance(actual, set):
        has = wanted in actual
        return has if op == "has" else not has
    if op == "is_set":
        return actual is not None and actual != ""
    text = (actual or "").lower()
    if op == "is":
        return text == wanted
    if op == "is_not":
        return text != wanted
    if op == "contains":
        return wanted in text
    if op == "not_contains":
        return wanted not in text
    if op == "starts_with":
        return text.startswith(wanted)
    return False


def apply_actions(
    session: Session, rule: AutomationRule, ctx: Context, chain: tuple[int, ...], *, mail_domain: str
) -> None:
    """Apply a rule's actions; each change is audited as done by the rule, with the chain that led to it."""
    ticket = ctx.ticket
    session.info["audit_context"] = {
        "automation": {"rule_id": rule.id, "rule": rule.name, "chain": [*chain, rule.id]}
    }
    try:
        for action in rule.actions or []:
            try:
                _apply(session, action, rule, ctx, mail_domain)
            except (InvalidChange, NotFound) as exc:
                # An agent deactivated since the rule was saved: the other actions still run; admins see why.
                log.warning("automation: rule %s action %s on ticket %s: %s", rule.id, action, ticket.id, exc)
                audit.log(session, ticket, "automation_error", data={"action": action.get("type"), "error": str(exc)})
    finally:
        session.info.pop("audit_context", None)


def _apply(session: Session, action: Mapping[str, Any], rule: AutomationRule, ctx: Context, mail_domain: str) -> None:
    ticket, kind, value = ctx.ticket, str(action.get("type")), str(action.get("value", ""))
    if kind == "assign_agent":
        lifecycle.assign(session, ticket, int(value), by=None)
    elif kind == "assign_team":
        lifecycle.set_team(session, ticket, int(value), by=None)
    elif kind == "add_tag":
        lifecycle.add_tag(session, ticket, value, by=None)
    elif kind == "remove_tag":
        lifecycle.remove_tag(session, ticket, value, by=None)
    elif kind == "set_priority":
        lifecycle.set_priority(session, ticket, value, by=None)
    elif kind == "set_status":
        lifecycle.set_status(session, ticket, value, by=None)
    elif kind == "add_note":
        add_note(session, ticket, render(value, ctx), rule)
    elif kind == "auto_reply":
        refusal = auto_reply_refusal(session, ticket, ctx.message)
        if refusal is not None:
            log.info("automation: no automatic reply on ticket %s: %s", ticket.id, refusal)
            audit.log(session, ticket, "auto_reply_skipped", data={"reason": refusal})
            return
        assert ctx.message is not None
        subject = render(str(action.get("subject") or ""), ctx) or ticket.subject
        queue_auto_reply(session, ticket, ctx.message, subject, render(value, ctx), rule, mail_domain=mail_domain)
    else:
        raise InvalidChange(f"unknown action {kind!r}")


def render(template: str, ctx: Context) -> str:
    """Fill ``{{ contact.first_name }}``-style placeholders (plain substitution: a template cannot run code)."""
    ticket = ctx.ticket
    contact = ticket.contact
    email = next((i.handle for i in contact.identities if i.channel == "email"), "")
    values = {
        "contact.name": contact.name,
        "contact.first_name": contact.first_name,
        "contact.email": email,
        "ticket.id": str(ticket.id),
        "ticket.subject": ticket.subject,
        "inbox.name": ticket.inbox.name,
    }
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def add_note(session: Session, ticket: Ticket, text: str, rule: AutomationRule) -> Message:
    """An internal note written by a rule (no author; the ticket's history names the rule)."""
    note = Message(
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        contact_id=ticket.contact_id,
        direction="note",
        channel=ticket.channel,
        body_text=text,
        thread_reason=f"automation rule {rule.name!r}",
        meta={"automation_rule_id": rule.id},
    )
    session.add(note)
    ticket.updated_at = utcnow()
    session.flush()
    audit.log(session, ticket, "note", data={"message_id": note.id})
    events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", message_payload(note))
    return note


def auto_reply_refusal(session: Session, ticket: Ticket, message: Message | None) -> str | None:
    """Why no automatic reply may answer ``message`` on ``ticket`` (the loop guards); None if one may."""
    if message is None or message.direction != "inbound":
        return "no customer message to answer"
    if message.is_auto:
        reasons = ", ".join((message.meta or {}).get("auto_reasons") or []) or "automatic"
        return f"the customer message is machine-made ({reasons})"
    identity = session.get(Identity, message.identity_id) if message.identity_id is not None else None
    if identity is None:
        return "the message has no sender to answer"
    if identity.unreachable:
        return f"the sender is unreachable ({identity.unreachable})"
    inbox = session.get(Inbox, ticket.inbox_id)
    if NO_REPLY.match(identity.handle) or (inbox is not None and identity.handle.lower() == inbox.address.lower()):
        return f"{identity.handle} does not take replies"
    sent_here = session.scalar(
        select(Message.id)
        .where(Message.ticket_id == ticket.id, Message.direction == "outbound", Message.is_auto.is_(True))
        .limit(1)
    )
    if sent_here is not None:
        return "this ticket already got its one automatic reply"
    since = utcnow() - AUTO_REPLY_WINDOW
    recent = session.scalar(
        select(func.count())
        .select_from(Message)
        .where(
            Message.contact_id == ticket.contact_id,
            Message.direction == "outbound",
            Message.is_auto.is_(True),
            Message.created_at >= since,
        )
    )
    if (recent or 0) >= AUTO_REPLY_LIMIT:
        return f"the contact already got {recent} automatic replies in {AUTO_REPLY_WINDOW}"
    return None


def queue_auto_reply(
    session: Session,
    ticket: Ticket,
    answered: Message,
    subject: str,
    text: str,
    rule: AutomationRule,
    *,
    mail_domain: str = "helpline.local",
) -> Message:
    """Queue an automatic reply in the outbox (delivered by the outbound worker like an agent's reply).

    ``is_auto`` makes the email carry ``Auto-Submitted: auto-generated``; it has no author, so it neither stops the
    first-response clock nor counts as an agent's reply in reports.
    """
    now = utcnow()
    message = Message(
        ticket_id=ticket.id,
        inbox_id=ticket.inbox_id,
        contact_id=answered.contact_id,
        identity_id=answered.identity_id,
        direction="outbound",
        channel=answered.channel,
        body_text=text,
        subject=subject[:500],
        created_at=now,
        is_auto=True,
        delivery_state="queued",
        thread_reason=f"automatic reply (rule {rule.name!r})",
        next_attempt_at=now,
        meta={"automation_rule_id": rule.id},
    )
    session.add(message)
    session.flush()
    message.message_id_header = f"<ticket-{ticket.id}.{message.id}.{secrets.token_hex(4)}@{mail_domain}>"
    message.external_id = f"out:{message.id}"
    ticket.message_count = (ticket.message_count or 0) + 1
    ticket.last_activity_at = now
    ticket.updated_at = now
    audit.log(session, ticket, "auto_reply", data={"message_id": message.id, "answers": answered.id})
    events.record(session, events.MESSAGE_CREATED, f"ticket:{ticket.id}", message_payload(message))
    return message
