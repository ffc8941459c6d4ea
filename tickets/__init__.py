"""Ticket lifecycle, assignment, SLA clocks and metrics, as functions over a session."""

# The report summary's session listeners (tickets/summary.py) must be active wherever tickets are changed: every
# process that changes them imports this package.
from tickets import summary as _summary  # noqa: E402, F401
