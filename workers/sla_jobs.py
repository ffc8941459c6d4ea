"""The SLA sweep job (``default`` queue, every minute): warnings before a breach, a breach record when it happens.

Wiring (owned by workers/schedule.py): ``"sweep_sla": ("workers.sla_jobs.sweep_sla", 60)`` in ``PERIODIC``.
"""

from __future__ import annotations

import datetime as dt
import logging

from inbox.db import utcnow
from tickets import sla
from workers import runtime

log = logging.getLogger(__name__)


def sweep_sla(now: str | None = None) -> dict[str, int]:
    """Run ``tickets.sla.sweep_sla`` in one transaction; the events it records go out after the commit.

    :param now: an ISO 8601 instant with offset (tests); the current time when omitted.
    """
    at = dt.datetime.fromisoformat(now) if now else utcnow()
    if at.tzinfo is None:
        raise ValueError("sweep_sla needs an instant with a UTC offset")
    with runtime.storage().factory() as session, session.begin():
        counts = sla.sweep_sla(session, at)
    if any(counts.values()):
        log.info("sweep_sla: %d warnings, %d breaches recorded", counts[sla.WARNING], counts[sla.BREACH])
    return counts
