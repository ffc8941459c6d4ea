"""Reports for leads and admins: volume, response and resolution times, SLA compliance, backlog, agents, queue.

Every table is built once by ``build_tables`` from the figure methods of ``tickets.metrics.Report`` (and
``tickets.sla.compliance``); the page's cards, charts and tables and the CSV export all render those same
``Table`` objects, so they cannot disagree. Leads see the inboxes of their teams, admins all; agents get 403.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy import select
from sqlalchemy.orm import Session

from inbox.db import utcnow
from inbox.models import CHANNELS, OPEN_STATUSES, Inbox, Team, TeamMember, Ticket, User
from tickets import sla, summary_rebuild
from tickets.csat import SATISFIED
from tickets.metrics import Filters, Sample, Summary, group, group_key, open_load, time_buckets
from tickets.summary import SummaryReport as Report
from web.access import visible_inbox_ids
from web.auth import me, role_required
from web.db import get_session
from web.errors import render_error

bp = Blueprint("reports", __name__, url_prefix="/reports")
for _code in (400, 403, 404):  # the agent UI's error pages (web.errors only styles its listed blueprints)
    bp.register_error_handler(_code, lambda exc: render_error(exc.code or 500))

GROUPS = ("day", "week", "month", "agent", "team", "inbox", "channel")
TIME_FIGURES = (("first_response", "First response"), ("next_response", "Next response"), ("resolution", "Resolution"))
BACKLOG_BANDS = ((0, "under 1 day"), (86400, "1-3 days"), (3 * 86400, "3-7 days"), (7 * 86400, "7 days or more"))
MAX_DAYS = 400  # a period longer than this is refused: one request must stay fast


@dataclass
class Table:
    """Rows of one report table; ``kinds`` says how each column renders (text, count, seconds, percent)."""

    name: str
    title: str
    columns: list[str]
    kinds: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    drill: list[dict[str, str] | None] = field(default_factory=list)  # per row: query args of the drill-down


@dataclass
class Names:
    agents: dict[int, str]
    teams: dict[int, str]
    inboxes: dict[int, str]

    def label(self, by: str, key: Any) -> str:
        if by in ("day", "week", "month"):
            return str(key) if by != "month" else str(key)[:7]
        if by == "channel":
            return str(key)
        table = {"agent": self.agents, "team": self.teams, "inbox": self.inboxes}[by]
        if key is None:
            return {"agent": "(unassigned)", "team": "(no team)", "inbox": "(none)"}[by]
        return table.get(key, f"#{key}")


# -- request → filters -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    filters: Filters
    by: str
    start_day: dt.date
    end_day: dt.date  # inclusive, as typed
    args: dict[str, str]  # the query string to repeat in links (CSV, drill-down)


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


def parse_query(session: Session, user: User) -> Query:
    tz_name = request.args.get("tz") or "UTC"
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        abort(400)
    today = utcnow().astimezone(tz).date()
    try:
        end_day = dt.date.fromisoformat(request.args["end"]) if request.args.get("end") else today
        start_day = (
            dt.date.fromisoformat(request.args["start"]) if request.args.get("start") else end_day - dt.timedelta(29)
        )
    except ValueError:
        abort(400)
    if start_day > end_day or (end_day - start_day).days > MAX_DAYS:
        abort(400)
    by = request.args.get("by", "day")
    if by not in GROUPS:
        abort(400)
    allowed = visible_inbox_ids(session, user)
    inbox_ids: frozenset[int] | None = None if allowed is None else frozenset(allowed)
    inbox_id = _int_arg("inbox")
    if inbox_id is not None:
        inbox_ids = frozenset({inbox_id}) & inbox_ids if inbox_ids is not None else frozenset({inbox_id})
    channel = request.args.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        abort(400)
    filters = Filters(
        start=dt.datetime.combine(start_day, dt.time(), tzinfo=tz).astimezone(dt.UTC),
        end=dt.datetime.combine(end_day + dt.timedelta(days=1), dt.time(), tzinfo=tz).astimezone(dt.UTC),
        inbox_ids=inbox_ids,
        team_id=_int_arg("team"),
        channel=channel,
        agent_id=_int_arg("agent"),
        tz=tz_name,
    )
    args = {
        k: v for k, v in request.args.items() if k in ("start", "end", "by", "inbox", "team", "channel", "agent", "tz")
    }
    args |= {"start": start_day.isoformat(), "end": end_day.isoformat(), "by": by, "tz": tz_name}
    return Query(filters, by, start_day, end_day, args)


def load_names(session: Session, inbox_ids: frozenset[int] | None) -> Names:
    inboxes = select(Inbox.id, Inbox.name)
    if inbox_ids is not None:
        inboxes = inboxes.where(Inbox.id.in_(inbox_ids))
    return Names(
        agents={i: n or e for i, n, e in session.execute(select(User.id, User.name, User.email))},
        teams={i: n for i, n in session.execute(select(Team.id, Team.name))},
        inboxes={i: n for i, n in session.execute(inboxes)},
    )


# -- the tables -------------------------------------------------------------------------------------------------
def _keys(q: Query, *groups: dict[Any, Any]) -> list[Any]:
    if q.by in ("day", "week", "month"):
        return list(time_buckets(q.filters.start, q.filters.end, q.by, q.filters.tz))
    keys: dict[Any, None] = {}
    for g in groups:
        keys.update(dict.fromkeys(g))
    return sorted(keys, key=lambda k: (k is None, k if k is not None else 0))


def _drill(q: Query, figure: str, key: Any) -> dict[str, str]:
    return q.args | {"figure": figure, "key": "" if key is None else str(key)}


def volume_table(report: Report, q: Query, names: Names) -> Table:
    created, solved = report.counts("created", q.by), report.counts("solved", q.by)
    t = Table("volume", "Volume", [q.by, "created", "solved"], ["text", "count", "count"])
    for key in _keys(q, created, solved):
        t.rows.append([names.label(q.by, key), created.get(key, 0), solved.get(key, 0)])
        t.drill.append(_drill(q, "created", key))
    return t


def times_table(report: Report, q: Query, names: Names, figure: str, title: str) -> Table:
    groups, everything = report.summaries(figure, q.by)
    t = Table(
        figure,
        f"{title} time",
        [q.by, "count", "median", "p90", "median (business)", "p90 (business)"],
        ["text", "count", "seconds", "seconds", "seconds", "seconds"],
    )
    empty = Summary(0, None, None, None, None)
    for key in _keys(q, groups):
        s = groups.get(key, empty)
        t.rows.append([names.label(q.by, key), s.count, s.median, s.p90, s.median_business, s.p90_business])
        t.drill.append(_drill(q, figure, key))
    s = everything
    t.rows.append(["all", s.count, s.median, s.p90, s.median_business, s.p90_business])
    t.drill.append(_drill(q, figure, "") | {"key": "*"})
    return t


def sla_table(report: Report, q: Query, now: dt.datetime) -> Table:
    counts = report.compliance_counts(now)
    t = Table(
        "sla", "SLA compliance", ["target", "met", "breached", "compliance"], ["text", "count", "count", "percent"]
    )
    for figure, title in TIME_FIGURES:
        met, breached = counts.get(f"sla_{figure}", (0, 0))
        t.rows.append([title, met, breached, (met / (met + breached)) if met + breached else None])
        t.drill.append(q.args | {"figure": f"sla_{figure}", "key": "*"})
    return t


def backlog_table(report: Report, q: Query, now: dt.datetime) -> tuple[Table, dt.datetime]:
    at = min(q.filters.end, now)
    counts = report.backlog_counts(at, [low for low, _label in BACKLOG_BANDS])
    t = Table("backlog", "Backlog age", ["age", "tickets"], ["text", "count"])
    for i, ((_low, label), n) in enumerate(zip(BACKLOG_BANDS, counts, strict=True)):
        t.rows.append([label, n])
        t.drill.append(q.args | {"figure": "backlog", "key": str(i)})
    t.rows.append(["all", sum(counts)])
    t.drill.append(q.args | {"figure": "backlog", "key": "*"})
    return t, at


def agents_table(session: Session, report: Report, q: Query, names: Names) -> Table:
    replies = report.reply_counts()
    first, _all = report.summaries("first_response", "agent")
    load = open_load(session, q.filters.inbox_ids)
    t = Table(
        "agents",
        "Agents",
        [
            "agent",
            "tickets handled",
            "replies",
            "median first response",
            "median first response (business)",
            "open now",
        ],
        ["text", "count", "count", "seconds", "seconds", "count"],
    )
    keys = [k for k in _keys_agents(replies, first, load) if q.filters.agent_id is None or k == q.filters.agent_id]
    for key in keys:
        s = first.get(key, Summary(0, None, None, None, None))
        handled, count = replies.get(key, (0, 0))
        t.rows.append([names.label("agent", key), handled, count, s.median, s.median_business, load.get(key, 0)])
        t.drill.append(q.args | {"figure": "replies", "key": str(key), "by": "agent"})
    return t


def csat_table(report: Report, q: Query, names: Names) -> Table:
    """Responses, average score and the share satisfied (4 or 5) per group, from the ``csat`` samples."""
    groups = group(report.csat(), q.by, q.filters.tz)
    t = Table(
        "csat",
        "Customer satisfaction",
        [q.by, "responses", "average score", "satisfied"],
        ["text", "count", "score", "percent"],
    )

    def row(label: str, samples: list[Sample]) -> list[Any]:
        scores = [s.seconds for s in samples]
        if not scores:
            return [label, 0, None, None]
        return [
            label,
            len(scores),
            round(sum(scores) / len(scores), 2),
            sum(x >= SATISFIED for x in scores) / len(scores),
        ]

    everything: list[Sample] = []
    for key in _keys(q, groups):
        samples = groups.get(key, [])
        everything.extend(samples)
        t.rows.append(row(names.label(q.by, key), samples))
        t.drill.append(_drill(q, "csat", key))
    t.rows.append(row("all", everything))
    t.drill.append(_drill(q, "csat", "") | {"key": "*"})
    return t


def _keys_agents(*groups: dict[Any, Any]) -> list[int]:
    keys = {k for g in groups for k in g if k is not None}
    return sorted(keys)


def build_tables(session: Session, q: Query, now: dt.datetime) -> tuple[dict[str, Table], dt.datetime]:
    report = Report(session, q.filters)
    names = load_names(session, q.filters.inbox_ids)
    tables = {"volume": volume_table(report, q, names)}
    for figure, title in TIME_FIGURES:
        tables[figure] = times_table(report, q, names, figure, title)
    tables["sla"] = sla_table(report, q, now)
    tables["backlog"], backlog_at = backlog_table(report, q, now)
    tables["agents"] = agents_table(session, report, q, names)
    tables["csat"] = csat_table(report, q, names)
    return tables, backlog_at


def chart_data(tables: dict[str, Table]) -> dict[str, Any]:
    """What the charts draw: the very rows of the tables (durations in hours)."""

    def hours(v: int | None) -> float | None:
        return None if v is None else round(v / 3600, 3)

    volume = tables["volume"].rows
    out: dict[str, Any] = {
        "volume": {
            "labels": [r[0] for r in volume],
            "created": [r[1] for r in volume],
            "solved": [r[2] for r in volume],
        }
    }
    for figure, _title in TIME_FIGURES:
        rows = tables[figure].rows[:-1]  # without the "all" row
        out[figure] = {
            "labels": [r[0] for r in rows],
            "median": [hours(r[2]) for r in rows],
            "p90": [hours(r[3]) for r in rows],
        }
    backlog = tables["backlog"].rows[:-1]
    out["backlog"] = {"labels": [r[0] for r in backlog], "tickets": [r[1] for r in backlog]}
    return out


# -- rendering helpers ------------------------------------------------------------------------------------------
def duration(seconds: int | None) -> str:
    """1d 4h, 3h 05m, 12m 30s: exact to the second below an hour."""
    if seconds is None:
        return "–"
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m {seconds % 60:02d}s"


def cell(kind: str, value: Any) -> str:
    if value is None:
        return "–"
    if kind == "seconds":
        return duration(int(value))
    if kind == "percent":
        return f"{value * 100:.1f} %"
    if kind == "score":
        return f"{value:.2f}"
    return str(value)


def _csv_safe(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to spreadsheet programs: never let a name run as one.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def csv_response(filename: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Response:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if v is None else _csv_safe(v) for v in row])
    return Response(
        buf.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )


def _csv_columns(t: Table) -> list[str]:
    return [
        f"{c} (seconds)" if k == "seconds" else (f"{c} (ratio)" if k == "percent" else c)
        for c, k in zip(t.columns, t.kinds, strict=True)
    ]


def _options(session: Session, user: User, inbox_ids: frozenset[int] | None) -> dict[str, Any]:
    inboxes = select(Inbox).order_by(Inbox.name)
    teams = select(Team).order_by(Team.name)
    agents = select(User).where(User.is_active.is_(True)).order_by(User.name)
    if user.role != "admin":
        mine = select(TeamMember.team_id).where(TeamMember.user_id == user.id)
        inboxes = inboxes.where(Inbox.team_id.in_(mine))
        teams = teams.where(Team.id.in_(mine))
        agents = agents.where(User.id.in_(select(TeamMember.user_id).where(TeamMember.team_id.in_(mine))))
    return {
        "inboxes": list(session.scalars(inboxes)),
        "teams": list(session.scalars(teams)),
        "agents": list(session.scalars(agents)),
        "channels": CHANNELS,
        "groups": GROUPS,
    }


# -- routes -----------------------------------------------------------------------------------------------------
@bp.get("/")
@role_required("lead", "admin")
def index() -> ResponseReturnValue:
    session, user = get_session(), me()
    q = parse_query(session, user)
    now = utcnow()
    tables, backlog_at = build_tables(session, q, now)
    return render_template(
        "reports/index.html",
        q=q,
        tables=tables,
        charts=chart_data(tables),
        backlog_at=backlog_at,
        cell=cell,
        options=_options(session, user, q.filters.inbox_ids),
        rebuild=summary_rebuild.status(session),
    )


@bp.get("/export/<name>.csv")
@role_required("lead", "admin")
def export(name: str) -> ResponseReturnValue:
    session, user = get_session(), me()
    q = parse_query(session, user)
    tables, _at = build_tables(session, q, utcnow())
    if name not in tables:
        abort(404)
    t = tables[name]
    return csv_response(f"helpline-{name}-{q.start_day}-{q.end_day}.csv", _csv_columns(t), t.rows)


DRILL_COLUMNS = ["ticket", "figure", "start", "end", "seconds", "business seconds", "agent", "team", "inbox", "channel"]


def drill_rows(session: Session, q: Query, figure: str, key: str) -> list[list[Any]]:
    """The tickets behind one cell: the same samples the cell was computed from."""
    report = Report(session, q.filters)
    now = utcnow()
    names = load_names(session, q.filters.inbox_ids)
    if figure.startswith("sla_"):
        samples: Sequence[Any] = [s for s in report.compliance(now) if s.figure == figure]
    elif figure == "backlog":
        samples = report.backlog(min(q.filters.end, now))
        if key not in ("*", ""):
            band = int(key) if key.isdigit() and int(key) < len(BACKLOG_BANDS) else abort(400)
            low = BACKLOG_BANDS[band][0]
            high = BACKLOG_BANDS[band + 1][0] if band + 1 < len(BACKLOG_BANDS) else None
            samples = [s for s in samples if s.seconds >= low and (high is None or s.seconds < high)]
        key = "*"
    else:
        try:
            samples = report.figure(figure)
        except ValueError:
            abort(404)
    if key != "*":
        samples = [s for s in samples if _key_text(s, q) == key]
    rows: list[list[Any]] = []
    for s in samples:
        if isinstance(s, sla.SlaSample):
            secs: Any = "met" if s.met else "breached"
            biz: Any = s.due_at.isoformat()
        elif s.figure == "csat":
            secs, biz = f"score {s.seconds}", ""
        else:
            secs, biz = s.seconds, s.business_seconds
        rows.append(
            [
                s.ticket_id,
                s.figure,
                s.start.isoformat(),
                s.end.isoformat(),
                secs,
                biz,
                names.label("agent", s.agent_id),
                names.label("team", s.team_id),
                names.label("inbox", s.inbox_id),
                s.channel,
            ]
        )
    return rows


def _key_text(s: Any, q: Query) -> str:
    key = group_key(s, q.by, q.filters.tz)
    return "" if key is None else str(key)


@bp.get("/drill")
@role_required("lead", "admin")
def drill() -> ResponseReturnValue:
    session, user = get_session(), me()
    q = parse_query(session, user)
    figure, key = request.args.get("figure", ""), request.args.get("key", "*")
    rows = drill_rows(session, q, figure, key)
    if request.args.get("format") == "csv":
        return csv_response(f"helpline-{figure}-{q.start_day}-{q.end_day}.csv", DRILL_COLUMNS, rows)
    return render_template("reports/drill.html", q=q, figure=figure, key=key, rows=rows, columns=DRILL_COLUMNS)


# -- the live queue ---------------------------------------------------------------------------------------------
def online_in_scope(session: Session, inbox_ids: frozenset[int] | None, online: dict[int, str]) -> dict[int, str]:
    """The online users a lead may see: members of the teams that own the lead's inboxes (admins: everyone)."""
    if inbox_ids is None:
        return online
    teams = select(Inbox.team_id).where(Inbox.id.in_(inbox_ids))
    members = set(session.scalars(select(TeamMember.user_id).where(TeamMember.team_id.in_(teams))))
    return {uid: name for uid, name in online.items() if uid in members}


def queue_snapshot(
    session: Session, inbox_ids: frozenset[int] | None, now: dt.datetime, online: dict[int, str] | None = None
) -> dict[str, Any]:
    """Right now: customers waiting, the oldest wait, SLA clocks at risk, agents online and each one's open load."""
    stmt = select(Ticket.id, Ticket.subject, Ticket.waiting_since, Ticket.assignee_id, Ticket.inbox_id).where(
        Ticket.status.in_(OPEN_STATUSES), Ticket.merged_into_id.is_(None)
    )
    if inbox_ids is not None:
        stmt = stmt.where(Ticket.inbox_id.in_(inbox_ids))
    open_rows = list(session.execute(stmt))
    waiting = sorted((r for r in open_rows if r.waiting_since is not None), key=lambda r: r.waiting_since)
    statuses = sla.sla_statuses(session, [r.id for r in open_rows], now)
    at_risk = sorted(
        ((r, st) for r in open_rows if (st := statuses.get(r.id)) is not None and st.state in ("warning", "overdue")),
        key=lambda pair: pair[1].due_at,
    )
    names = load_names(session, inbox_ids)
    load = open_load(session, inbox_ids)
    here = online_in_scope(session, inbox_ids, online or {})
    return {
        "now": now.isoformat(),
        "waiting": len(waiting),
        "oldest_waiting": (
            {
                "ticket_id": waiting[0].id,
                "subject": waiting[0].subject,
                "seconds": int((now - waiting[0].waiting_since).total_seconds()),
                "label": duration(int((now - waiting[0].waiting_since).total_seconds())),
            }
            if waiting
            else None
        ),
        "at_risk": [
            {
                "ticket_id": r.id,
                "subject": r.subject,
                "metric": st.metric,
                "state": st.state,
                "label": st.label,
                "url": url_for("tickets.show", ticket_id=r.id) if _has_endpoint("tickets.show") else "",
            }
            for r, st in at_risk[:50]
        ],
        "online": len(here),
        "agents": [
            {"id": a, "agent": here.get(a) or names.label("agent", a), "online": a in here, "open": load.get(a, 0)}
            for a in sorted(
                set(load) | set(here), key=lambda a: (a not in here, -load.get(a, 0), names.label("agent", a))
            )
        ],
    }


def _has_endpoint(name: str) -> bool:
    return name in current_app.view_functions


def _scope(session: Session) -> frozenset[int] | None:
    allowed = visible_inbox_ids(session, me())
    return None if allowed is None else frozenset(allowed)


@bp.get("/queue")
@role_required("lead", "admin")
def queue() -> ResponseReturnValue:
    session, scope = get_session(), _scope(get_session())
    rooms = sorted(scope if scope is not None else session.scalars(select(Inbox.id)))
    return render_template("reports/queue.html", snap=queue_snapshot(session, scope, utcnow(), _online()), rooms=rooms)


@bp.get("/queue.json")
@role_required("lead", "admin")
def queue_json() -> ResponseReturnValue:
    session = get_session()
    return queue_snapshot(session, _scope(session), utcnow(), _online())


def _online() -> dict[int, str]:
    from web.socket_events import presence

    return presence().users()
