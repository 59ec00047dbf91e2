"""Read queries of the oversight service (asyncpg SQL only). The write side lives in audit_log.py.

The supervisors' screens (stuck list, board) read the floor's case index, common.case_index
(shared/case_index.py: an accepted action is there before its HTTP call returns, a timer's escalation
within the audit activity's latency); the auditors' reads and the KPIs read this schema's audit log and
its case_summary projection. Open case = status not Closed / ClosedReferred, written exactly as in the
partial indexes (shared/migrations/003_case_index.sql, migrations 001/002 here) so the planner uses them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.db import Conn

OPEN = "status <> 'Closed' AND status <> 'ClosedReferred'"
DUE = "LEAST(deadline_at, oldest_handoff_accept_by)"


# ---- auditors -----------------------------------------------------------------------------
async def latest_state(conn: Conn, case_id: str) -> dict[str, Any] | None:
    """The current non-PII state of a case: the projection row, else its last audit event."""
    row = await conn.fetchval(
        "SELECT state FROM oversight.case_summary WHERE case_id = $1", case_id
    )
    if row is not None:
        return dict(row)
    row = await conn.fetchval(
        "SELECT state FROM oversight.case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1",
        case_id,
    )
    return dict(row) if row is not None else None


async def history(
    conn: Conn, case_id: str, limit: int, offset: int, until: datetime | None = None
) -> tuple[list[asyncpg.Record], int]:
    """The case's events in order; `until`: only those up to that moment (a province the case left)."""
    rows = await conn.fetch(
        """SELECT seq, event_id, kind, occurred_at, recorded_at, actor_user_id, actor_agency, stage, reason,
                  request_id, policy_version, data, hash, hash_version, free_text, free_text_digest,
                  free_text_erased_at
           FROM oversight.case_events WHERE case_id = $1 AND ($4::timestamptz IS NULL OR occurred_at <= $4)
           ORDER BY seq LIMIT $2 OFFSET $3""",
        case_id,
        limit,
        offset,
        until,
    )
    total = await conn.fetchval(
        "SELECT count(*) FROM oversight.case_events WHERE case_id = $1 "
        "AND ($2::timestamptz IS NULL OR occurred_at <= $2)",
        case_id,
        until,
    )
    return list(rows), int(total)


async def state_as_of(conn: Conn, case_id: str, at: datetime) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT seq, event_id, kind, occurred_at, reason, data, state, hash_version, free_text, free_text_digest,
                  free_text_erased_at FROM oversight.case_events
           WHERE case_id = $1 AND occurred_at <= $2 ORDER BY seq DESC LIMIT 1""",
        case_id,
        at,
    )


async def case_ids(conn: Conn, province: str | None, limit: int, offset: int) -> list[str]:
    """Every case the oversight schema knows: in the projection, with audit events, or with an exported
    history (so a case whose events were all deleted is still checked). With a province: the projection's
    cases of that province (the case's current province)."""
    if province is None:
        rows = await conn.fetch(
            """SELECT case_id FROM oversight.case_summary UNION SELECT case_id FROM oversight.case_events
               UNION SELECT case_id FROM oversight.workflow_histories ORDER BY case_id LIMIT $1 OFFSET $2""",
            limit,
            offset,
        )
    else:
        rows = await conn.fetch(
            "SELECT case_id FROM oversight.case_summary WHERE province = $1 ORDER BY case_id LIMIT $2 OFFSET $3",
            province,
            limit,
            offset,
        )
    return [r["case_id"] for r in rows]


async def exported_histories(conn: Conn, case_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "SELECT run_id, key_id, history, exported_at FROM oversight.workflow_histories WHERE case_id = $1"
            " ORDER BY exported_at",
            case_id,
        )
    )


async def last_event(conn: Conn, case_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq DESC LIMIT 1", case_id
    )


async def last_export(conn: Conn, case_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT run_id, key_id, history FROM oversight.workflow_histories WHERE case_id = $1"
        " ORDER BY exported_at DESC LIMIT 1",
        case_id,
    )


async def case_status(conn: Conn, case_id: str) -> str | None:
    v = await conn.fetchval("SELECT status FROM oversight.case_summary WHERE case_id = $1", case_id)
    return str(v) if v is not None else None


# ---- supervisors --------------------------------------------------------------------------
@dataclass
class StuckFilter:
    now: datetime
    province: str | None
    reasons: set[str] = field(default_factory=set)  # empty = any database-side reason
    due_within: timedelta = timedelta(hours=24)
    idle_for: timedelta = timedelta(days=7)
    level: int | None = None
    agency: str | None = None
    stage: str | None = None
    categories: set[str] = field(default_factory=set)
    assignee: str | None = None
    limit: int = 50
    offset: int = 0


def _stuck_sql(f: StuckFilter) -> tuple[str, list[Any]]:
    args: list[Any] = [f.now]
    where = [OPEN]

    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args)}"

    if f.province is not None:
        # the province's cases, and transfers from elsewhere waiting for one of its agencies (issue 18)
        p = arg(f.province)
        where.append(
            f"(province = {p} OR (pending_at <> '{{}}' AND EXISTS "
            f"(SELECT 1 FROM unnest(pending_at) AS w WHERE split_part(w, '@', 2) = {p})))"
        )
    if f.agency:
        where.append(f"owner_agency = {arg(f.agency)}")
    if f.stage:
        where.append(f"stage = {arg(f.stage)}")
    if f.assignee:
        where.append(f"assignee = {arg(f.assignee)}")
    cat = {
        "child": "is_child",
        "adult": "NOT is_child",
        "abroad": "is_abroad",
        "domestic": "NOT is_abroad",
    }
    where += [cat[c] for c in sorted(f.categories)]
    conditions: dict[str, Callable[[], str]] = {
        "overdue": lambda: "deadline_at < $1",
        "due_soon": lambda: (
            f"(deadline_at >= $1 AND deadline_at < $1 + {arg(f.due_within)}::interval)"
        ),
        "handoff_waiting": lambda: "pending_to <> '{}'",
        "idle": lambda: f"updated_at < $1 - {arg(f.idle_for)}::interval",
        "escalated": lambda: (
            f"escalation_level = {arg(f.level)}" if f.level is not None else "escalation_level > 0"
        ),
    }
    wanted = f.reasons or set(conditions)
    if "technical" not in wanted:
        # with technical asked for, every open case is a candidate: Temporal is checked page by page and
        # the page keeps the cases with a requested reason (see api.stuck_cases)
        where.append(
            "(" + " OR ".join(conditions[r]() for r in sorted(wanted) if r in conditions) + ")"
        )
    if f.level is not None and "escalated" not in wanted:
        where.append(f"escalation_level = {arg(f.level)}")
    sql = f"""SELECT case_id, province, stage, owner_agency, assignee, is_child, is_abroad, deadline_at,
                     $1::timestamptz AS as_of, escalation_level, jsonb_array_length(pending_handoffs) AS open_handoffs,
                     oldest_handoff_accept_by, updated_at AS last_event_at, {DUE} AS due
              FROM common.case_index
              WHERE {" AND ".join(where)}
              ORDER BY {DUE} ASC NULLS LAST, case_id
              LIMIT {arg(f.limit)} OFFSET {arg(f.offset)}"""
    return sql, args


async def stuck(conn: Conn, f: StuckFilter) -> list[asyncpg.Record]:
    sql, args = _stuck_sql(f)
    return list(await conn.fetch(sql, *args))


async def board(conn: Conn, province: str | None, now: datetime) -> list[asyncpg.Record]:
    if province is None:
        return list(
            await conn.fetch(
                f"""SELECT stage, owner_agency, count(*) AS open, count(*) FILTER (WHERE deadline_at < $1) AS overdue
                FROM common.case_index WHERE {OPEN} GROUP BY stage, owner_agency ORDER BY stage, owner_agency""",
                now,
            )
        )
    return list(
        await conn.fetch(
            f"""SELECT stage, owner_agency, count(*) AS open, count(*) FILTER (WHERE deadline_at < $1) AS overdue
            FROM common.case_index WHERE province = $2 AND {OPEN}
            GROUP BY stage, owner_agency ORDER BY stage, owner_agency""",
            now,
            province,
        )
    )


async def summary_facts(conn: Conn, case_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT case_id, province, state FROM oversight.case_summary WHERE case_id = $1", case_id
    )


# ---- KPIs ---------------------------------------------------------------------------------
# A case travels with the person (issue 18): each figure belongs to the province that held the case when the
# work was done. Received = the province where the case was opened (CaseFacts.province, fixed); a stage
# completion, an escalation, an open case at a date = the province in the state of that event; transfers
# between provinces count out of the sending province and into the receiving one. So no case is counted
# twice or lost between two provinces' reports, and the provinces' figures add up to the national ones.
HELD = """(s.province = {p} OR s.state->'facts'->>'province' = {p}
           OR s.state->'jurisdictions' @> jsonb_build_array(jsonb_build_object('province', {p}::text)))"""


def _held(p: str) -> str:
    """The cases that the province held at some time (a cheap filter before the per-event province test)."""
    return HELD.format(p=p)


async def received_cases(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """Cases opened in [start, end) in the province (where they were opened, wherever they are now), each with
    the facts KPIs need as of `end`: classification, stage decisions, first service, and the state at `end`."""
    return list(
        await conn.fetch(
            """SELECT s.case_id, s.channel, s.is_child, s.is_abroad, s.opened_at,
                  (SELECT e.state FROM oversight.case_events e
                    WHERE e.case_id = s.case_id AND e.occurred_at < $3 ORDER BY e.seq DESC LIMIT 1) AS state_at_end,
                  (SELECT array_agg(DISTINCT e.data->'decision'->>'stage') FROM oversight.case_events e
                    WHERE e.case_id = s.case_id AND e.kind = 'stage_decided' AND e.occurred_at < $3
                      AND coalesce((e.data->>'interim')::boolean, false) = false) AS decided_stages,
                  (SELECT e.data->'decision'->>'classification' FROM oversight.case_events e
                    WHERE e.case_id = s.case_id AND e.kind = 'stage_decided' AND e.occurred_at < $3
                      AND e.data->'decision'->>'stage' = 'receive' ORDER BY e.seq LIMIT 1) AS classification,
                  (SELECT min(e.occurred_at) FROM oversight.case_events e
                    WHERE e.case_id = s.case_id AND e.kind = 'service_delivered' AND e.occurred_at < $3)
                    AS first_service_at
           FROM oversight.case_summary s
           WHERE ($1::text IS NULL OR coalesce(s.state->'facts'->>'province', s.province) = $1)
             AND s.opened_at >= $2 AND s.opened_at < $3
           ORDER BY s.opened_at""",
            province,
            start,
            end,
        )
    )


async def stage_completions(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """Every stage completed (a non-interim stage decision) in [start, end) by the province holding the case
    then, with what the state said just before it: the owning agency, the (possibly extended) deadline and
    when the stage began."""
    return list(
        await conn.fetch(
            f"""WITH ev AS (
               SELECT e.case_id, e.seq, e.kind, e.occurred_at, e.data, e.state->>'province' AS held_by,
                      lag(e.state) OVER (PARTITION BY e.case_id ORDER BY e.seq) AS prev
               FROM oversight.case_events e
               WHERE e.case_id IN (SELECT case_id FROM oversight.case_summary s WHERE $1::text IS NULL OR {_held("$1")})
                 AND e.occurred_at < $3)
           SELECT case_id, occurred_at, data->'decision'->>'stage' AS stage,
                  prev->>'owner_agency' AS agency,
                  (prev->'deadline'->>'due_at')::timestamptz AS due_at,
                  (prev->'stages'->-1->>'entered_at')::timestamptz AS entered_at
           FROM ev
           WHERE kind = 'stage_decided' AND occurred_at >= $2 AND ($1::text IS NULL OR held_by = $1)
             AND coalesce((data->>'interim')::boolean, false) = false
           ORDER BY occurred_at""",
            province,
            start,
            end,
        )
    )


async def open_counts(conn: Conn, province: str | None, at: datetime) -> list[asyncpg.Record]:
    """Open cases at `at` by stage (the state of each case's last event before `at`), in the province that
    held each case at `at`."""
    return list(
        await conn.fetch(
            f"""SELECT st->>'stage' AS stage, count(*) AS n,
                  count(*) FILTER (WHERE (st->'deadline'->>'due_at')::timestamptz < $2) AS overdue
           FROM (SELECT (SELECT e.state FROM oversight.case_events e WHERE e.case_id = s.case_id
                          AND e.occurred_at < $2 ORDER BY e.seq DESC LIMIT 1) AS st
                 FROM oversight.case_summary s WHERE ($1::text IS NULL OR {_held("$1")})) x
           WHERE st IS NOT NULL AND st->>'status' IN ('Active', 'FollowUp')
             AND ($1::text IS NULL OR st->>'province' = $1)
           GROUP BY 1 ORDER BY 1""",
            province,
            at,
        )
    )


async def escalations(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """Escalations in [start, end), in the province holding the case when each was raised."""
    return list(
        await conn.fetch(
            f"""SELECT coalesce((e.data->>'level')::int, 0) AS level, count(*) AS n
           FROM oversight.case_events e
           WHERE e.kind IN ('deadline_escalated', 'escalated_by_supervisor', 'handoff_escalated')
             AND e.occurred_at >= $2 AND e.occurred_at < $3
             AND ($1::text IS NULL OR e.state->>'province' = $1)
             AND e.case_id IN (SELECT case_id FROM oversight.case_summary s WHERE $1::text IS NULL OR {_held("$1")})
           GROUP BY 1 ORDER BY 1""",
            province,
            start,
            end,
        )
    )


async def transfers(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> dict[str, int]:
    """Cases transferred between provinces in [start, end) (accepted transfers): out of the province and into
    it. Nationally both count every transfer once."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE $1::text IS NULL OR e.data->>'from_province' = $1) AS transferred_out,
                  count(*) FILTER (WHERE $1::text IS NULL OR e.data->>'to_province' = $1) AS transferred_in
           FROM oversight.case_events e
           WHERE e.kind = 'handoff_accepted' AND e.data ? 'to_province'
             AND e.occurred_at >= $2 AND e.occurred_at < $3""",
        province,
        start,
        end,
    )
    assert row is not None  # an aggregate always returns a row
    return {
        "transferred_out": int(row["transferred_out"]),
        "transferred_in": int(row["transferred_in"]),
    }


async def identified_victims(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> int:
    """Persons identified as victims in [start, end) (identification decisions ActualVictimOfTrafficking), in the
    province holding the case when the decision was taken."""
    return int(
        await conn.fetchval(
            """SELECT count(DISTINCT e.case_id) FROM oversight.case_events e
           WHERE e.kind = 'stage_decided' AND e.data->'decision'->>'stage' = 'identify'
             AND e.data->'decision'->>'status' = 'ActualVictimOfTrafficking'
             AND coalesce((e.data->>'interim')::boolean, false) = false
             AND e.occurred_at >= $2 AND e.occurred_at < $3
             AND ($1::text IS NULL OR e.state->>'province' = $1)""",
            province,
            start,
            end,
        )
    )


async def services_by_type(
    conn: Conn, province: str | None, start: datetime, end: datetime
) -> list[asyncpg.Record]:
    """Support services delivered in [start, end) by type (service_delivered events), with the number of
    persons (cases) served, in the province holding the case when each was delivered."""
    return list(
        await conn.fetch(
            """SELECT coalesce(e.data->>'service_type', 'other') AS service_type, count(*) AS n,
                  count(DISTINCT e.case_id) AS persons
           FROM oversight.case_events e
           WHERE e.kind = 'service_delivered' AND e.occurred_at >= $2 AND e.occurred_at < $3
             AND ($1::text IS NULL OR e.state->>'province' = $1)
           GROUP BY 1 ORDER BY 1""",
            province,
            start,
            end,
        )
    )
