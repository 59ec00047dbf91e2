"""HTTP API of the oversight service: supervisors (stuck cases, board, actions, KPIs, reports) and
auditors (history, state as of a time, chain check, replay)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel

from services.oversight import jurisdiction as jur
from services.oversight import kpi as kpis_mod
from services.oversight import replay as replay_mod
from services.oversight import reports as reports_mod
from services.oversight import repository as repo
from services.oversight.audit_reads import chain_verification, history_page, state_as_of
from services.oversight.models import (
    AsOfState,
    Board,
    BoardCell,
    Category,
    ChainVerification,
    EscalateRequest,
    ExtendDeadlineRequest,
    HistoryPage,
    Kpis,
    Lang,
    ReassignRequest,
    ReopenRequest,
    ReplayOutcome,
    ReportFormat,
    ReportKind,
    StuckPage,
    StuckReason,
)
from services.oversight.periods import PeriodError, now_of, period
from services.oversight.stuck import stuck_page
from shared import case_index
from shared.access import CaseAccessFacts, can_act_on_case, can_read_case, read_until
from shared.api import runtime_of
from shared.api_models import ID_PATTERN, CaseView, IdQuery, Offset
from shared.auth import Principal, require_roles
from shared.case_gateway import CaseId, IdempotencyKey, UpdateRef, actor_of, update_case
from shared.contract import Actor, CaseState
from shared.domain import AgencyRole, Role, Stage
from workflows.case_workflow import CaseWorkflow

DESCRIPTION = """\
NRM oversight service, for **supervisors** and **auditors** (caseworkers get 403 everywhere here).

Supervisors (their province; national users any province):
- `GET /stuck`: cases that need a supervisor: overdue, due soon, handoffs waiting for acceptance, idle,
  escalated, and technically stuck (a failing activity or workflow task, read from Temporal for the
  cases of the returned page only). Filters: agency, stage, category, assignee, level. Most late first,
  `limit`/`offset` pagination.
- `GET /board`: open cases by stage × owning agency, with the overdue count of each cell.
- `POST /cases/{id}/reassign | extend-deadline | escalate | reopen`: Updates on the case workflow, audited
  by the workflow; the actor is the caller's token. `Idempotency-Key` makes a retry safe.
- `GET /kpis`, `GET /reports/{six_monthly|annual|ad_hoc}`: the plans' KPIs (formulas, targets and sources in
  `services/oversight/kpis.yaml`) and the reports to the steering committee (Ban Chỉ đạo 138) in JSON,
  CSV or printable HTML (Vietnamese, or English).
  Outside the jurisdiction: whole months only, counts below 5 show as "<5", others rounded to 5.

Auditors (national or their province):
- `GET /cases/{id}/history`, `GET /cases/{id}/as-of?at=`: the audit log and the state at any past time.
- `GET /audit/verify`: the keyed hash chain of one case or of every case in the jurisdiction.
- `GET /audit/replay?case_id=`: replays the recorded Temporal history against the current code.
- Who read a victim's personal data is in intake's access log (`GET /access-log` on the intake service).
"""

router = APIRouter(tags=["oversight"])
SUPERVISOR = require_roles(Role.supervisor)
AUDIT_READER = require_roles(Role.auditor, Role.supervisor)
Supervisor = Annotated[Principal, SUPERVISOR]
AuditReader = Annotated[Principal, AUDIT_READER]
ProvinceQ = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=8,
        pattern=r"^(\*|[0-9]{1,8})$",
        description="province code; default the caller's",
    ),
]


def _province(p: Principal, province: str | None) -> str | None:
    try:
        return jur.province_of(p, province)
    except jur.OutsideJurisdiction as exc:
        raise HTTPException(403, str(exc)) from None


def _period(
    start: datetime | None, end: datetime | None, kind: ReportKind | None, now: datetime
) -> tuple[datetime, datetime]:
    try:
        return period(start, end, kind, now)
    except PeriodError as exc:
        raise HTTPException(422, str(exc)) from None


def _facts(state: dict[str, Any]) -> CaseAccessFacts:
    return CaseState.model_validate(state).access_facts()


async def _projected_state(request: Request, case_id: str) -> dict[str, Any]:
    """The case's state as oversight's projection holds it (404 when oversight never heard of it)."""
    async with runtime_of(request).pool.acquire() as conn:
        state = await repo.latest_state(conn, case_id)
    if state is None:
        raise HTTPException(404, "case not found")
    return state


async def _readable_state(request: Request, p: Principal, case_id: str) -> dict[str, Any]:
    state = await _projected_state(request, case_id)
    if not can_read_case(p, _facts(state)):
        raise HTTPException(403, "case: outside your jurisdiction")
    return state


# ---- supervisors: stuck cases and board ----------------------------------------------------
@router.get(
    "/stuck",
    response_model=StuckPage,
    summary="Stuck cases in your jurisdiction, most late first",
    description=(
        "Open cases that match **any** of the requested `reason`s (all when none is given): `overdue` "
        "(stage deadline passed), `due_soon` (deadline within `due_within_hours`), `handoff_waiting` "
        "(a handoff waits for acceptance), `idle` (no audit event for `idle_days`), `escalated` "
        "(level ≥ 1, or exactly `level`), `technical` (Temporal shows a pending activity retrying or "
        "failing, or a failing workflow task). Filters narrow the list: `agency` (owning agency), "
        "`stage`, `category` (child, adult, abroad, domestic; repeatable, all must hold), `assignee`. "
        "Sorted by the earliest due instant (stage deadline or oldest waiting handoff), so the most "
        "late come first; cases without a deadline last. `limit`/`offset` paginate; `next_offset` is "
        "null on the last page.\n\nTemporal is asked only about the cases of the page "
        "(`check_temporal=true`, default): each gets its `technical` problems. When `technical` is "
        "among the requested reasons, every open case is a candidate and the page keeps those with a "
        "requested reason, so a page can hold fewer than `limit` items before the last page.\n\n"
        + case_index.STALENESS
    ),
    responses={403: {"description": "not a supervisor, or another province"}},
)
async def stuck_cases(
    request: Request,
    p: Supervisor,
    province: ProvinceQ = None,
    reason: Annotated[list[StuckReason], Query(description="repeatable; none = every reason")] = [],  # noqa: B006
    due_within_hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    idle_days: Annotated[int, Query(ge=1, le=3650)] = 7,
    level: Annotated[int | None, Query(ge=1, le=3, description="escalation level (exact)")] = None,
    agency: AgencyRole | None = None,
    stage: Stage | None = None,
    category: Annotated[
        list[Category], Query(description="repeatable: child, adult, abroad, domestic")
    ] = [],  # noqa: B006
    assignee: Annotated[str | None, Query(max_length=128)] = None,
    check_temporal: bool = True,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> StuckPage:
    rt = runtime_of(request)
    f = repo.StuckFilter(
        now=now_of(rt),
        province=_province(p, province),
        reasons={r.value for r in reason},
        due_within=timedelta(hours=due_within_hours),
        idle_for=timedelta(days=idle_days),
        level=level,
        agency=agency.value if agency else None,
        stage=stage.value if stage else None,
        categories={c.value for c in category},
        assignee=assignee,
        limit=limit,
        offset=offset,
    )
    return await stuck_page(rt, f, check_temporal=check_temporal)


@router.get(
    "/board",
    response_model=Board,
    summary="Open cases by stage × agency, with overdue counts",
    description="One cell per (stage, owning agency) that has open cases in the province; `overdue` counts "
    "the cell's cases whose stage deadline has passed.\n\n" + case_index.STALENESS,
    responses={403: {"description": "not a supervisor, or another province"}},
)
async def board(request: Request, p: Supervisor, province: ProvinceQ = None) -> Board:
    prov = _province(p, province)
    rt = runtime_of(request)
    now = now_of(rt)
    async with rt.pool.acquire() as conn:
        rows = await repo.board(conn, prov, now)
    cells = [
        BoardCell(
            stage=r["stage"], owner_agency=r["owner_agency"], open=r["open"], overdue=r["overdue"]
        )
        for r in rows
    ]
    return Board(
        province=prov or "*",
        as_of=now,
        cells=cells,
        total_open=sum(c.open for c in cells),
        total_overdue=sum(c.overdue for c in cells),
    )


# ---- supervisors: actions ----------------------------------------------------------------
async def _act(
    request: Request,
    p: Principal,
    case_id: str,
    update: UpdateRef,
    command: Callable[[Actor], BaseModel],
    key: str | None,
) -> CaseView:
    """A supervisor's Update: access checked on oversight's projection (a supervisor acts on the cases of
    their jurisdiction, whichever agency owns the stage), then sent through the one gateway with the
    caller's Actor (the Update id and the Idempotency-Key rules are the same for every service)."""
    if not can_act_on_case(p, _facts(await _projected_state(request, case_id))):
        raise HTTPException(403, "case: outside your jurisdiction")
    cmd = command(actor_of(p, request))
    return CaseView.of(await update_case(request, case_id, update, cmd, key))


_ACTION_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"description": "not a supervisor, or the case is outside your jurisdiction"},
    404: {"description": "case not found"},
    409: {"description": "stale version or the case does not allow it now"},
    422: {"description": "invalid request"},
    503: {"description": "the case workflow did not answer"},
}


@router.post(
    "/cases/{case_id}/reassign",
    response_model=CaseView,
    summary="Assign the current stage to someone",
    responses=_ACTION_ERRORS,
)
async def reassign(
    request: Request,
    p: Supervisor,
    case_id: CaseId,
    body: ReassignRequest,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    return await _act(request, p, case_id, CaseWorkflow.assign, body.command, idempotency_key)


@router.post(
    "/cases/{case_id}/extend-deadline",
    response_model=CaseView,
    summary="Extend the stage deadline (or a waiting handoff's) with a reason",
    responses=_ACTION_ERRORS,
)
async def extend_deadline(
    request: Request,
    p: Supervisor,
    case_id: CaseId,
    body: ExtendDeadlineRequest,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    return await _act(
        request, p, case_id, CaseWorkflow.extend_deadline, body.command, idempotency_key
    )


@router.post(
    "/cases/{case_id}/escalate",
    response_model=CaseView,
    summary="Raise the escalation level by hand",
    responses=_ACTION_ERRORS,
)
async def escalate(
    request: Request,
    p: Supervisor,
    case_id: CaseId,
    body: EscalateRequest,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    return await _act(request, p, case_id, CaseWorkflow.escalate, body.command, idempotency_key)


@router.post(
    "/cases/{case_id}/reopen",
    response_model=CaseView,
    summary="Reopen a closed case to a stage",
    responses=_ACTION_ERRORS,
)
async def reopen(
    request: Request,
    p: Supervisor,
    case_id: CaseId,
    body: ReopenRequest,
    idempotency_key: IdempotencyKey = None,
) -> CaseView:
    return await _act(request, p, case_id, CaseWorkflow.reopen, body.command, idempotency_key)


# ---- KPIs and reports ----------------------------------------------------------------------
@router.get(
    "/kpis",
    response_model=Kpis,
    summary="The provincial plans' KPIs for a jurisdiction and period",
    description="Ratios with targets, time-in-stage p50/p90 per stage and deadline compliance per stage and "
    "agency. Each formula is in `services/oversight/kpis.yaml` and repeated in the response.",
    responses={403: {"description": "not a supervisor/auditor, or another province"}},
)
async def get_kpis(
    request: Request,
    p: AuditReader,
    province: ProvinceQ = None,
    start: Annotated[
        datetime | None, Query(alias="from", examples=["2026-01-01T00:00:00+07:00"])
    ] = None,
    end: Annotated[
        datetime | None, Query(alias="to", examples=["2026-07-01T00:00:00+07:00"])
    ] = None,
    lang: Lang = Lang.en,
) -> Kpis:
    prov = _province(p, province)
    rt = runtime_of(request)
    start, end = _period(start, end, None, now_of(rt))
    async with rt.pool.acquire() as conn:
        return await kpis_mod.compute(conn, prov, start, end, lang.value)


@router.get(
    "/reports/{kind}",
    summary="Report to the steering committee (Ban Chỉ đạo 138)",
    description="`six_monthly` and `annual` default to the current half-year / year (or start at `from`); "
    "`ad_hoc` (đột xuất) needs `from` and `to`. `format=html` is printable and `format=pdf` is the "
    "document to sign and file (Vietnamese by default, `lang=en` for English; every key shown with "
    "its Vietnamese (or English) label, province and commune names, dates dd/mm/yyyy, the period's last day "
    "included). Disclosure control when the report leaves the jurisdiction (the "
    "caller's province differs from the report's, or `external=true`): whole calendar months "
    'only (from/to on the 1st at 00:00+07:00, at least one month), counts 1-4 show as "<5", '
    "larger counts are rounded to a multiple of 5, rates on such counts are withheld and others "
    "computed from the rounded counts, so two overlapping reports cannot be subtracted to "
    "reveal a single arrival.",
    responses={
        200: {
            "content": {
                "application/json": {},
                "text/csv": {},
                "text/html": {},
                "application/pdf": {},
            }
        },
        403: {"description": "not a supervisor/auditor"},
        422: {"description": "bad period"},
    },
)
async def get_report(
    request: Request,
    p: AuditReader,
    kind: ReportKind,
    province: ProvinceQ = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    format: ReportFormat = ReportFormat.json,
    lang: Lang = Lang.vi,
    external: bool = False,
) -> Response:
    try:
        prov = jur.report_province(p, province)
    except jur.OutsideJurisdiction as exc:
        raise HTTPException(403, str(exc)) from None
    rt = runtime_of(request)
    now = now_of(rt)
    start, end = _period(start, end, kind, now)
    suppress = jur.report_leaves_jurisdiction(p, prov, external)
    if suppress:  # whole months only, so overlapping periods cannot be subtracted (see reports.py)
        try:
            reports_mod.check_disclosure_window(start, end)
        except reports_mod.DisclosureError as exc:
            raise HTTPException(422, str(exc)) from None
    async with rt.pool.acquire() as conn:
        report = await reports_mod.build(conn, kind, prov, start, end, lang.value, now)
    return reports_mod.render(report, format, lang.value, suppress)


# ---- auditors -----------------------------------------------------------------------------
@router.get(
    "/cases/{case_id}/history",
    response_model=HistoryPage,
    summary="Every audit event of a case",
    description="Actor, agency, time, reason, request id and policy version of each event, in order. "
    "Who read the person's data is in intake's access log.",
    responses={
        403: {"description": "not an auditor/supervisor of this jurisdiction"},
        404: {"description": "case not found"},
    },
)
async def case_history(
    request: Request,
    p: AuditReader,
    case_id: CaseId,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Offset = 0,
) -> HistoryPage:
    # a province the case was transferred away from reads its history up to the transfer only
    until = read_until(p, _facts(await _readable_state(request, p, case_id)))
    return await history_page(runtime_of(request), case_id, limit, offset, until)


@router.get(
    "/cases/{case_id}/as-of",
    response_model=AsOfState,
    summary="The case's state at a past time",
    description="The `state` recorded with the last audit event at or before `at`.",
    responses={
        403: {"description": "not an auditor/supervisor of this jurisdiction"},
        404: {"description": "case not found, or it did not exist yet at `at`"},
    },
)
async def case_as_of(
    request: Request,
    p: AuditReader,
    case_id: CaseId,
    at: Annotated[datetime, Query(examples=["2026-03-01T12:00:00+07:00"])],
) -> AsOfState:
    if at.tzinfo is None:
        raise HTTPException(422, "at: needs a time zone (e.g. 2026-03-01T12:00:00+07:00)")
    until = read_until(p, _facts(await _readable_state(request, p, case_id)))
    state = await state_as_of(runtime_of(request), case_id, at, until)
    if state is None:
        raise HTTPException(404, f"at: the case had no events yet at {at.isoformat()}")
    return state


@router.get(
    "/audit/verify",
    response_model=ChainVerification,
    summary="Check the keyed hash chain",
    description="With `case_id`: that case. Without: every case of the jurisdiction (`province`, default "
    "the caller's; national users all cases), `limit`/`offset` at a time. Each result names the "
    "first broken link (`first_broken_seq`) and why. A case fails too when its log holds fewer "
    "events than the workflow emitted (`expected_events`, from the projection, the live "
    "workflow or the history exported at closure): a deleted tail, or every event deleted.",
    responses={
        403: {"description": "not an auditor/supervisor of this jurisdiction"},
        404: {"description": "case not found"},
    },
)
async def audit_verify(
    request: Request,
    p: AuditReader,
    case_id: IdQuery = None,
    province: ProvinceQ = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Offset = 0,
) -> ChainVerification:
    rt = runtime_of(request)
    if case_id:
        await _readable_state(request, p, case_id)
        ids = [case_id]
    else:
        async with rt.pool.acquire() as conn:
            ids = await repo.case_ids(conn, _province(p, province), limit, offset)
    more = not case_id and len(ids) == limit
    return await chain_verification(rt, ids, limit, offset, more=more)


@router.get(
    "/audit/replay",
    response_model=list[ReplayOutcome],
    summary="Replay a case's history on current code",
    description="Deterministic replay of the recorded Temporal history (live, or the copy exported at "
    "closure) with the current CaseWorkflow, and whether its final state matches the audit log.",
    responses={
        403: {"description": "not an auditor/supervisor of this jurisdiction"},
        404: {"description": "no history for this case"},
    },
)
async def audit_replay(
    request: Request,
    p: AuditReader,
    case_id: Annotated[str, Query(min_length=1, max_length=64, pattern=ID_PATTERN)],
) -> list[ReplayOutcome]:
    await _readable_state(request, p, case_id)
    rt = runtime_of(request)
    async with rt.pool.acquire() as conn:
        reports = await replay_mod.replay_case(rt.temporal, conn, rt.ring, case_id)
    if not reports:
        raise HTTPException(404, "no history for this case (neither in Temporal nor exported)")
    return [ReplayOutcome(**r.as_dict()) for r in reports]
