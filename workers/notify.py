"""Email notifications: a user who switched them on (Settings → My profile) gets an email when someone
@mentions them or assigns them a ticket, sent by a job through the first email inbox's SMTP server.

``NotificationEnqueuer`` is an event publisher: after a commit, each ``mention.created`` and ``ticket.assigned``
event for an agent's room becomes an ``email_notification`` job. The job reads the user's preference afresh, so
switching email off stops mail that is still queued.
"""

from __future__ import annotations

import logging
from typing import Any

from rq import Retry

from inbox import events, people
from inbox.models import Ticket, User
from workers import runtime
from workers.system_mail import NoMailer, send_system_mail

log = logging.getLogger(__name__)

KINDS = {"mention.created": "mention", events.TICKET_ASSIGNED: "assignment"}


def email_notification(user_id: int, kind: str, ticket_id: int, actor_id: int | None) -> str:
    """Email ``user_id`` about a mention or an assignment on ``ticket_id``; returns what happened."""
    storage = runtime.storage()
    with storage.factory() as session:
        if not people.wants_email(session, user_id, kind):
            return "not wanted"
        user, ticket = session.get(User, user_id), session.get(Ticket, ticket_id)
        if user is None or ticket is None:
            return "gone"
        actor = session.get(User, actor_id) if actor_id else None
        who = actor.name if actor else "Someone"
        what = "mentioned you in a note on" if kind == "mention" else "assigned you"
        link = f"{storage.settings.base_url.rstrip('/')}/tickets/{ticket.id}"
        text = (
            f"{who} {what} ticket #{ticket.id}: {ticket.subject or ticket.preview}\n\n{link}\n\n"
            "You get these emails because email notifications are on in your Helpline profile."
        )
        try:
            subject = f"Ticket {ticket.id}: {ticket.subject or ticket.preview}"
            send_system_mail(session, storage.settings.secret_key, user.email, subject, text)
        except NoMailer as exc:
            log.info("notification for user %s not emailed: %s", user_id, exc)
            return "no mailer"
    return "sent"


class NotificationEnqueuer:
    """Enqueue an ``email_notification`` job for each committed mention or assignment of an agent (not for
    assigning oneself). Should Redis be down, the notification is skipped: the in-app one still shows."""

    def __call__(self, ev: events.DomainEvent) -> None:
        kind = KINDS.get(ev.name)
        if kind is None or not ev.room.startswith("agent:"):
            return
        user_id = int(ev.room.partition(":")[2])
        payload: dict[str, Any] = ev.payload
        actor = payload.get("by") if kind == "mention" else payload.get("actor_id")
        ticket_id = payload.get("ticket_id") if kind == "mention" else payload.get("id")
        if ticket_id is None or actor == user_id or not payload.get("email"):
            return  # the domain put the user's preference in the event (one read, inside the transaction)
        try:
            runtime.queue("default").enqueue(
                "workers.notify.email_notification",
                user_id,
                kind,
                int(ticket_id),
                actor,
                job_timeout=90,
                result_ttl=60,
                retry=Retry(max=3, interval=[30, 120, 600]),
                description=f"email {kind} notification to user {user_id}",
            )
        except Exception:  # Redis down: the desktop notification still reached the browser
            log.warning("could not enqueue the %s email for user %s", kind, user_id, exc_info=True)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NotificationEnqueuer)

    def __hash__(self) -> int:
        return hash(NotificationEnqueuer)
