"""common.case_index: the per-case read model every people's screen reads (docs/reference/DESIGN.md "Data flow":
people's screens read PostgreSQL, operators read Temporal).

One row per case, non-PII only (ids, codes, agencies, times). Written by two writers, both through this
module, both idempotent upserts that only a newer state wins ((version, last_event_seq) strictly greater;
every change the workflow makes bumps `version`, carried over continue-as-new):

(a) the oversight audit activity, in the same transaction as each audit event (services/oversight/
    audit_log.append_event): every change of the case, including those no API call causes (deadline
    reminders and escalations fired by the workflow's timers);
(b) the service API right after the workflow accepted an Update, from the CaseState the Update returned
    (shared.case_gateway.update_case), and intake right after it started a case's workflow
    (`record_opened`, version 0). So the caller's action is in the index before its HTTP call returns
    (read-your-writes), and everybody else sees it as soon as either write lands.

If (b) is lost (the API process dies between the Update and the write, PostgreSQL is away for a moment),
(a) writes the same state or a newer one; if (a) is delayed (the oversight worker is down), (b) is the
one write until (a) catches up. Either way the row converges to the workflow's state.

Staleness bound (stated in the APIs as STALENESS): an accepted action is in the index when its HTTP call
returns; a change made by the workflow itself (timer escalation, reminder) appears within the audit
activity's latency, typically under a second, longer only while the oversight worker or PostgreSQL is down
(the activity is retried until it lands)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from shared.contract import CaseFacts, CaseState, HandoffState
from shared.db import Conn
from shared.domain import CaseStatus, Stage

log = structlog.get_logger("case-index")
T = "common.case_index"
OPEN_STATUSES = (CaseStatus.Active.value, CaseStatus.FollowUp.value)
# open = not closed, written exactly as in the partial indexes of shared/migrations/003_case_index.sql
OPEN = "status <> 'Closed' AND status <> 'ClosedReferred'"
STALENESS = (
    "This list is read from the case index in PostgreSQL (not from Temporal): it reflects every "
    "accepted action at once (the action's own HTTP call writes it before returning); a change the "
    "workflow makes by itself (deadline reminder or escalation fired by its timer) appears within "
    "the audit activity's latency, typically under 1 s (longer only while the oversight worker or "
    "PostgreSQL is down: the activity is retried until it lands)."
)
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

_COLUMNS = (
    "case_id",
    "province",
    "commune",
    "stage",
    "status",
    "outcome",
    "owner_agency",
    "participants",
    "pending_to",
    "pending_handoffs",
    "oldest_handoff_accept_by",
    "assignee",
    "deadline_at",
    "reminder_at",
    "escalation_level",
    "categories",
    "is_child",
    "is_abroad",
    "channel",
    "age_band",
    "trafficking_status",
    "version",
    "last_event_seq",
    "stage_entered_at",
    "opened_at",
    "updated_at",
    "closed_at",
    "written_by",
    "pending_at",
)
_UPSERT = f"""
    INSERT INTO {T} AS ci ({", ".join(_COLUMNS)})
    VALUES ({", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))})
    ON CONFLICT (case_id) DO UPDATE SET
        {", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS[1:])}, indexed_at = now()
    WHERE (ci.version, ci.last_event_seq) < (EXCLUDED.version, EXCLUDED.last_event_seq)"""


def pending_at(s: CaseState, pending: Sequence[Any]) -> list[str]:
    """Where each waiting invitee is: "agency@province" (a transfer's receiving province, else the case's)."""
    return sorted({f"{h.to_agency.value}@{h.to_province or s.province}" for h in pending})


def row_of(s: CaseState, written_by: str) -> tuple[Any, ...]:
    """The index row of a case state (column order of _COLUMNS)."""
    pending = sorted(
        (h for h in s.handoffs if h.state == HandoffState.requested), key=lambda h: h.accept_by
    )
    open_ = s.status.value in OPEN_STATUSES
    deadline = s.deadline if open_ else None
    stage_entered = (
        s.stages[-1].entered_at
        if s.stages and s.stage != Stage.closed
        else s.closed_at or s.updated_at
    )
    return (
        s.case_id,
        s.province,
        s.facts.commune,
        s.stage.value,
        s.status.value,
        s.outcome.value if s.outcome else None,
        s.owner_agency.value,
        sorted(a.value for a in s.participants),
        sorted({h.to_agency.value for h in pending}),
        [
            {
                "handoff_id": h.handoff_id,
                "to_agency": h.to_agency.value,
                "kind": h.kind.value,
                "to_province": h.to_province or s.province,
                "accept_by": h.accept_by.isoformat(),
                "escalation_level": h.escalation_level,
            }
            for h in pending
        ],  # jsonb: the pool's codec (shared.db) encodes it
        pending[0].accept_by if pending else None,
        s.assignee,
        deadline.due_at if deadline else None,
        deadline.reminder_at if deadline else None,
        s.escalation_level,
        list(s.facts.categories),
        s.facts.child,
        s.facts.abroad,
        s.facts.channel.value,
        s.facts.age_band.value,
        s.trafficking_status.value,
        s.version,
        s.last_event_seq,
        stage_entered,
        s.opened_at or s.facts.opened_at,
        s.updated_at,
        s.closed_at,
        written_by,
        pending_at(s, pending),
    )


async def upsert(conn: Conn | asyncpg.Pool, state: CaseState, written_by: str) -> bool:
    """Write the state if it is newer than the row's. Returns whether it was written."""
    status = await conn.execute(_UPSERT, *row_of(state, written_by))
    return status.endswith(" 1")


async def upsert_many(
    conn: Conn | asyncpg.Pool, states: Sequence[CaseState], written_by: str
) -> None:
    """The newest state of each case in one round trip (older ones would lose anyway)."""
    newest: dict[str, CaseState] = {}
    for s in states:
        kept = newest.get(s.case_id)
        if kept is None or (s.version, s.last_event_seq) > (kept.version, kept.last_event_seq):
            newest[s.case_id] = s
    if newest:
        await conn.executemany(_UPSERT, [row_of(s, written_by) for s in newest.values()])


def opened_state(facts: CaseFacts) -> CaseState:
    """What the index knows of a case whose workflow was just started: receive stage, owned by the
    opener's agency (policy: `stage_owners.receive: opener`), version 0, no deadline yet (the workflow
    resolves its policy; the receive deadline arrives with the first audit event)."""
    return CaseState(
        case_id=facts.case_id,
        version=0,
        stage=Stage.receive,
        status=CaseStatus.Active,
        facts=facts,
        owner_agency=facts.opened_by.agency,
        province=facts.province,
        policy_version="pending",
        last_event_seq=0,
        opened_at=facts.opened_at,
        updated_at=facts.opened_at,
    )


async def record_opened(pool: asyncpg.Pool, facts: CaseFacts) -> None:
    """Intake, right after the workflow start: the case is listed at once. Best effort (the audit
    activity writes the case_opened state anyway)."""
    try:
        await upsert(pool, opened_state(facts), "open")
    except _DB_ERRORS as exc:
        log.warning("case_index_open_not_written", case_id=facts.case_id, error=type(exc).__name__)


async def record_update(pool: asyncpg.Pool, state: CaseState) -> None:
    """The service API, right after the workflow accepted an Update: the state it returned. Best effort:
    the Update is accepted whatever happens here, and the audit activity writes this state (or a newer
    one) in the transaction of its audit event, so a lost write only delays other users' view."""
    try:
        await upsert(pool, state, "update")
    except _DB_ERRORS as exc:
        log.warning(
            "case_index_update_not_written",
            case_id=state.case_id,
            version=state.version,
            error=type(exc).__name__,
        )


async def get(conn: Conn | asyncpg.Pool, case_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT * FROM {T} WHERE case_id = $1", case_id)


# ---- the verification inbox ----------------------------------------------------------------
@dataclass(frozen=True)
class InboxQuery:
    """One inbox view. `province` None = national (every province)."""

    view: str  # waiting_acceptance | in_progress | due_soon | overdue
    agency: str
    province: str | None
    now: datetime
    due_within: timedelta
    stages: tuple[
        str, ...
    ]  # stages the view covers (one when the caller filtered by stage; () = any)
    category: str | None = None
    assignee: str | None = None
    descending: bool = False
    limit: int = 50
    offset: int = 0


def _inbox_where(q: InboxQuery) -> tuple[str, list[Any]]:
    args: list[Any] = []

    def arg(v: Any) -> str:
        args.append(v)
        return f"${len(args)}"

    if q.view == "waiting_acceptance" and q.province is not None:
        # invitations to the caller's agency in the caller's province, wherever the case is now (a transfer
        # from another province waits here before the case moves)
        where = [
            "pending_at <> '{}'",
            f"pending_at @> ARRAY[{arg(f'{q.agency}@{q.province}')}]::text[]",
        ]
    elif q.view == "waiting_acceptance":
        where = ["pending_to <> '{}'", f"pending_to @> ARRAY[{arg(q.agency)}]::text[]"]
    else:
        where = ["status = 'Active'", f"owner_agency = {arg(q.agency)}"]
    if q.province is not None and q.view != "waiting_acceptance":
        where.append(f"province = {arg(q.province)}")
    if len(q.stages) == 1:
        where.append(f"stage = {arg(q.stages[0])}")
    elif q.stages:
        where.append(f"stage = ANY({arg(list(q.stages))}::text[])")
    if q.category:
        where.append(f"categories @> ARRAY[{arg(q.category)}]::text[]")
    if q.assignee is not None:
        where.append(f"assignee = {arg(q.assignee)}")
    if q.view == "overdue":
        where.append(f"deadline_at < {arg(q.now)}")
    elif q.view == "due_soon":
        where.append(f"deadline_at BETWEEN {arg(q.now)} AND {arg(q.now + q.due_within)}")
    return " AND ".join(where), args


def inbox_sql(q: InboxQuery) -> tuple[str, str, list[Any]]:
    """(page query, count query, args): the page in deadline order (cases without a deadline last, then
    case id; `descending` reverses the whole order), the count of every matching case."""
    where, args = _inbox_where(q)
    order = (
        "deadline_at DESC NULLS FIRST, case_id DESC"
        if q.descending
        else "deadline_at ASC NULLS LAST, case_id"
    )
    n = len(args)
    page = f"""SELECT case_id, stage, owner_agency, province, status, deadline_at, assignee, categories, pending_to,
                      escalation_level
               FROM {T} WHERE {where} ORDER BY {order} LIMIT ${n + 1} OFFSET ${n + 2}"""
    count = f"SELECT count(*) FROM {T} WHERE {where}"
    return page, count, args


async def inbox(conn: Conn | asyncpg.Pool, q: InboxQuery) -> tuple[list[asyncpg.Record], int]:
    """One page of the view and the exact number of matching cases."""
    page, count, args = inbox_sql(q)
    rows = await conn.fetch(page, *args, q.limit, q.offset)
    if q.offset == 0 and len(rows) < q.limit:
        return list(rows), len(rows)
    return list(rows), int(await conn.fetchval(count, *args))
