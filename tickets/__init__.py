"""Ticket lifecycle, assignment, SLA clocks and metrics, as functions over a session."""
