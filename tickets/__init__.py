"""Ticket lifecycle, assignment, SLA clocks and metrics, as functions over a session."""

# The report summary's session listeners (tickets/summary.py) must be active wherever tickets are changed: every
# process that changes them imports this package.
# The survey hook (csat) runs before the summary's, so that a survey queued by a solve is in the same commit.
from tickets import csat as _csat  # noqa: E402, F401
from tickets import summary as _summary  # noqa: E402, F401
