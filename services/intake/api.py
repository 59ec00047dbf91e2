"""HTTP API of the intake service: the person registry and case opening from every channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import structlog
from fastapi import (
    APIRouter,
    Body,
    Depends,
    FastAPI,
    HTTPException,
    Path,
    Query,
    Request,
    Response,
    status,
)
from pydantic import ValidationError

from shared import idempotency as shared_idempotency
from shared.access import can_act_on_case
from shared.access_log import list_reads
from shared.api import runtime_of
from shared.api_models import BIGINT_MAX, CaseView, IdPath, IdQuery
from shared.auth import CurrentPrincipal, Principal, require_roles
from shared.case_gateway import BreakGlass, CaseId, IdempotencyKey, actor_of, update_case
from shared.contract import Decide, ReceiveDecision
from shared.domain import Channel, Role
from shared.runtime import Runtime
from workflows.case_workflow import CaseWorkflow

from . import bulk, duplicates, opening, reads, repository
from .dedupe import candidate_view, flag_view
from .models import (
    MAX_BATCH_ROWS,
    MAX_BULK_ROWS,
    OPEN_EXAMPLE,
    AccessLogEntry,
    AccessLogPage,
    BatchCreate,
    BatchRowsIn,
    BatchRowStatus,
    BatchView,
    BulkOpenRequest,
    BulkResponse,
    BulkRows,
    CaseList,
    CaseListItem,
    CaseRecord,
    ClassifyRequest,
    DuplicateOut,
    HtcdsRecord,
    IntakeFacts,
    OpenCaseRequest,
    OpenCaseResponse,
    PersonOut,
    ResolveDuplicate,
    WorkflowView,
    normalise_province,
)

log = structlog.get_logger("intake")

DESCRIPTION = """NRM intake service: receives reports and persons from every channel (hotline 111/113,
walk-in, border/coast-guard handover, embassy repatriation, rescue operation, NGO referral, online report,
missing-person report), keeps the **person registry** (the one place a victim's personal data lives,
encrypted), flags possible duplicates, opens the case and starts its CaseWorkflow.

Other services read a person here with the caller's own token: section rules apply, auditors see PII
masked unless they break glass with a reason, and **every read of personal data is access-logged**.
Person and victim fields use HTCDS names and picklists."""

RECONCILE_INTERVAL = 60.0  # seconds; runtime.extras["reconcile_interval"] overrides (None/0 = off)
RECONCILE_OLDER_THAN = 30.0  # leave in-flight openings to their own request
KEY_EXPIRY_INTERVAL = 3600.0  # seconds between trims of common.idempotency_keys


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (the runtime exists): start workflows a crash left unstarted."""
    runtime: Runtime = app.state.runtime
    interval = runtime.extras.get("reconcile_interval", RECONCILE_INTERVAL)
    older = timedelta(
        seconds=float(runtime.extras.get("reconcile_older_than", RECONCILE_OLDER_THAN))
    )
    task = (
        asyncio.create_task(
            _reconcile_loop(runtime, float(interval), older), name="intake-reconcile"
        )
        if interval
        else None
    )
    # background bulk batches: take over those whose process died (this one's own, after a restart)
    resume_every = runtime.extras.get("bulk_resume_interval", bulk.RESUME_INTERVAL)
    resumer = (
        asyncio.create_task(
            bulk.resume_loop(runtime, float(resume_every)), name="intake-bulk-resume"
        )
        if resume_every
        else None
    )
    try:
        yield
    finally:
        for t in (task, resumer):
            if t is not None:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        await bulk.stop_batches(runtime)
        await opening.started_marks(runtime).close()


async def _reconcile_loop(runtime: Runtime, interval: float, older_than: timedelta) -> None:
    expired_at = 0.0
    while True:
        try:
            await opening.reconcile_workflow_starts(runtime, older_than)
        except Exception as exc:  # keep trying; the database or Temporal may be back next time
            log.warning("reconcile_failed", error=type(exc).__name__)
        # the floor's key store has no owner of its own: intake, which every case starts from, trims it
        if time.monotonic() - expired_at > KEY_EXPIRY_INTERVAL:
            try:
                keep = timedelta(days=runtime.settings.idempotency_keep_days)
                forgotten = await shared_idempotency.expire(runtime.pool, keep)
                expired_at = time.monotonic()
                if forgotten:
                    log.info("idempotency_keys_expired", count=forgotten)
            except Exception as exc:
                log.warning("idempotency_expiry_failed", error=type(exc).__name__)
        await asyncio.sleep(interval)


router = APIRouter(lifespan=lifespan)

Caseworker = Annotated[Principal, require_roles(Role.caseworker, Role.supervisor)]
Reader = Annotated[Principal, require_roles(Role.caseworker, Role.supervisor, Role.auditor)]
Overseer = Annotated[Principal, require_roles(Role.supervisor, Role.auditor)]
Purpose = Annotated[
    str | None, Query(max_length=200, description="why this read (recorded in the access log)")
]

AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid bearer token"},
    403: {"description": "role, jurisdiction or case access refused"},
}


def require_content_type(*allowed: str) -> Any:
    async def check(
        request: Request, principal: CurrentPrincipal
    ) -> None:  # authentication first (401)
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if not any(
            ctype == a or (a == "application/json" and ctype.endswith("+json")) for a in allowed
        ):
            raise HTTPException(
                status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                f"Content-Type must be {' or '.join(allowed)}, got {ctype or 'none'}",
            )

    return Depends(check)


JSON_ONLY = require_content_type("application/json")


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _open_response(
    principal: Principal, outcome: repository.OpenOutcome, started: bool
) -> OpenCaseResponse:
    case = outcome.case
    facts = opening.facts_from_row(case)
    return OpenCaseResponse(
        case_id=case["case_id"],
        person_ref=case["person_id"],
        created=outcome.created,
        workflow_started=started,
        age_band=facts.age_band,
        categories=facts.categories,
        opened_at=case["opened_at"],
        duplicates=[flag_view(principal, d) for d in outcome.duplicates],
    )


async def _open(
    request: Request,
    response: Response,
    principal: Principal,
    req: OpenCaseRequest,
    idem_key: str | None,
    source: str,
) -> OpenCaseResponse:
    if not principal.covers_province(req.province):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"province {req.province} is outside your jurisdiction ({principal.province})",
        )
    runtime = runtime_of(request)
    try:
        outcome, started = await opening.open_case(
            runtime,
            req,
            principal,
            idem_key=idem_key,
            request_id=_request_id(request),
            source=source,
        )
    except repository.IdempotencyConflict as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Idempotency-Key was already used for case {exc.case_id} with a different request "
            "body; use a new key for a new case",
        ) from None
    if not started:
        retry = (
            "retry with the same Idempotency-Key (it will be started, not duplicated)"
            if idem_key
            else "it will be started automatically; do not resend this request: without an Idempotency-Key a "
            "resend opens a second case"
        )
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"case {outcome.case['case_id']} was recorded but its workflow could not be started; "
            + retry,
        )
    response.status_code = status.HTTP_201_CREATED if outcome.created else status.HTTP_200_OK
    if not outcome.created:
        response.headers["Idempotent-Replayed"] = "true"
    return _open_response(principal, outcome, started)


@router.post(
    "/cases",
    response_model=OpenCaseResponse,
    status_code=status.HTTP_201_CREATED,
    tags=["cases"],
    summary="Open a case for a person received through any channel",
    description="Writes the person (PII encrypted) and the intake case in one transaction, flags possible "
    "duplicates (never merges), then starts the CaseWorkflow (workflow id = case id). Without an "
    "`Idempotency-Key` every request opens a new case, even with the same facts (two unnamed persons "
    "rescued together are two people). Your retry with the same key returns the same case "
    "(200, `Idempotent-Replayed: true`) and starts the workflow if an earlier attempt could not; "
    "another user's key is theirs alone. A match in a province outside your jurisdiction is flagged "
    "without its case id. "
    "Picklist fields are checked against HTCDS: a wrong value is a 422 naming the field and the "
    "allowed values.",
    responses={
        **AUTH_ERRORS,
        200: {"description": "replay of an earlier identical request"},
        415: {"description": "not JSON"},
        422: {"description": "invalid field, or key reused"},
        503: {"description": "recorded, but the workflow start failed: retry"},
    },
    dependencies=[JSON_ONLY],
)
async def open_case(
    request: Request,
    response: Response,
    principal: Caseworker,
    body: Annotated[
        OpenCaseRequest,
        Body(
            openapi_examples={
                "border handover": {
                    "summary": "a girl handed over at the border",
                    "value": OPEN_EXAMPLE,
                }
            }
        ),
    ],
    idem_key: IdempotencyKey = None,
) -> OpenCaseResponse:
    return await _open(request, response, principal, body, idem_key, "api")


@router.post(
    "/cases/bulk",
    response_model=BulkResponse,
    tags=["cases"],
    summary="Open many cases at once (mass arrivals), one result per row",
    description=f"A JSON list of up to {MAX_BULK_ROWS} case-opening requests (the body of POST /cases), or "
    '`{"rows": [...], "entry_decision": {...}}` to classify every valid row at handover (each case '
    "opens straight into its next stage, as POST /cases/{case_id}/classify by you would; a row you may "
    "not classify is `invalid` with `entry_decision` named). "
    "Each row is validated and opened on its own: valid rows are opened even when others fail. "
    "Per row: `opened` (case_id), `duplicate_flagged` (opened, with possible duplicates), "
    "`replayed` (same Idempotency-Key + row position), `invalid` (errors name the field). "
    "Rows open concurrently; duplicate flags are those of opening in row order (a later row is "
    "flagged against an earlier one). "
    "Idempotency-Key applies per row position; without one every row opens a new case. "
    "For thousands of rows use POST /cases/bulk/batches (answered at once, progress pollable).",
    responses={**AUTH_ERRORS, 415: {"description": "not JSON"}},
    dependencies=[JSON_ONLY],
)
async def open_bulk(
    request: Request,
    principal: Caseworker,
    body: Annotated[BulkRows | BulkOpenRequest, Body(examples=[[OPEN_EXAMPLE]])],
    idem_key: IdempotencyKey = None,
) -> BulkResponse:
    rows, entry = (
        (body.rows, body.entry_decision) if isinstance(body, BulkOpenRequest) else (body, None)
    )
    return await bulk.open_rows(
        runtime_of(request),
        principal,
        rows,
        idem_key=idem_key,
        request_id=_request_id(request),
        source="bulk",
        entry=entry,
    )


BATCH_DESCRIPTION = f"""For a mass arrival: up to {MAX_BATCH_ROWS} rows, answered at once (202) with the batch id,
then opened in the background; poll GET /cases/bulk/batches/{{batch_id}} for `done / total` and the per-row
results. Rows are the body of POST /cases; send `total`, an optional `entry_decision` (every valid row opens
straight into its next stage, classified by you at handover, as POST /cases/{{case_id}}/classify would) and the
first rows; send the rest in order with POST /cases/bulk/batches/{{batch_id}}/rows (a body is limited in size).
Rows open concurrently; duplicate flags are those of opening in row order. The batch is durable: if the intake
service restarts, the batch resumes where it stopped, and no row is opened twice (rows are keyed by the batch's
Idempotency-Key, or the batch id, plus the row position). Your retry with the same Idempotency-Key returns the
same batch (200, `Idempotent-Replayed: true`); with another body, 422."""


async def _own_batch(runtime: Runtime, principal: Principal, batch_id: str) -> Any:
    batch = await repository.get_batch(runtime.pool, batch_id)
    if (
        batch is None or batch["user_id"] != principal.user_id
    ):  # another user's batch is not theirs to see
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"batch {batch_id} not found")
    return batch


@router.post(
    "/cases/bulk/batches",
    response_model=BatchView,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["cases"],
    summary="Open thousands of cases in the background (mass arrival), progress pollable",
    description=BATCH_DESCRIPTION,
    responses={
        **AUTH_ERRORS,
        200: {"description": "replay of an earlier identical request"},
        415: {"description": "not JSON"},
        422: {"description": "invalid field, or key reused"},
    },
    dependencies=[JSON_ONLY],
)
async def create_batch(
    request: Request,
    response: Response,
    principal: Caseworker,
    body: BatchCreate,
    idem_key: IdempotencyKey = None,
) -> BatchView:
    runtime = runtime_of(request)
    if len(body.rows) > body.total:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "rows"],
                    "msg": f"{len(body.rows)} rows but total is {body.total}",
                    "type": "value_error",
                }
            ],
        )
    batch_id = bulk.new_batch_id()
    sealed = bulk.sealed_rows(runtime, batch_id, 0, body.rows)
    header = {
        "total": body.total,
        "entry": body.entry_decision.model_dump(mode="json") if body.entry_decision else None,
        "rows": [h for _, _, h in sealed],
    }
    request_hash = runtime.ring.blind_index(json.dumps(header, sort_keys=True), "intake.bulk_batch")
    lease = bulk.lease_seconds(runtime)
    batch, created = await repository.create_batch(
        runtime.pool,
        {
            "batch_id": batch_id,
            "user_id": principal.user_id,
            "source": "bulk",
            "idem_key": idem_key,
            "principal": principal.model_dump(mode="json", exclude={"display_name"}),
            "request_hash": request_hash,
            "request_id": _request_id(request),
            "total": body.total,
            "entry_classification": body.entry_decision.classification.value
            if body.entry_decision
            else None,
            "entry_justification": opening.seal_justification(
                runtime.ring,
                body.entry_decision.justification if body.entry_decision else None,
                "bulk_batches",
                batch_id,
            ),
            "lease_until": datetime.now(UTC) + timedelta(seconds=lease),
        },
        sealed,
    )
    if not created:
        if batch["request_hash"] != request_hash:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT,
                f"Idempotency-Key was already used for batch {batch['batch_id']} with a different "
                "request body; use a new key for a new batch",
            )
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        log.info("bulk_batch_created", batch_id=batch_id, total=body.total, rows=len(body.rows))
    response.headers["Location"] = f"/cases/bulk/batches/{batch['batch_id']}"
    if batch["finished_at"] is None:
        bulk.spawn(runtime, batch["batch_id"])
    return await bulk.batch_view(runtime, principal, batch)


@router.post(
    "/cases/bulk/batches/{batch_id}/rows",
    response_model=BatchView,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["cases"],
    summary="Send more rows of a background batch, in order",
    description="Rows at positions `offset`.. of the batch. Chunks arrive in order: `offset` is at most the "
    "number of rows received so far (409 names the next offset); a chunk sent again is accepted once "
    "(the same rows at the same positions), a different row at a received position is a 422.",
    responses={
        **AUTH_ERRORS,
        404: {"description": "no such batch (of yours)"},
        409: {"description": "offset beyond the rows received"},
        415: {"description": "not JSON"},
        422: {
            "description": "invalid field, beyond total, or a different row at a received position"
        },
    },
    dependencies=[JSON_ONLY],
)
async def append_batch_rows(
    request: Request,
    batch_id: Annotated[str, Path(max_length=64)],
    principal: Caseworker,
    body: BatchRowsIn,
) -> BatchView:
    runtime = runtime_of(request)
    batch = await _own_batch(runtime, principal, batch_id)
    end = body.offset + len(body.rows)
    if end > batch["total"]:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "rows"],
                    "msg": f"rows {body.offset}..{end - 1} go beyond the batch's total "
                    f"({batch['total']} rows)",
                    "type": "value_error",
                }
            ],
        )
    received = sum((await repository.batch_progress(runtime.pool, batch_id)).values())
    if body.offset > received:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"rows arrive in order: the next offset is {received}"
        )
    _, differ = await repository.append_rows(
        runtime.pool,
        batch_id,
        body.offset,
        bulk.sealed_rows(runtime, batch_id, body.offset, body.rows),
    )
    if differ:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            [
                {
                    "loc": ["body", "rows", i - body.offset],
                    "msg": f"row {i} was received before with other content",
                    "type": "conflict",
                }
                for i in differ[:20]
            ],
        )
    bulk.rows_arrived(runtime, batch_id)
    return await bulk.batch_view(runtime, principal, batch)


@router.get(
    "/cases/bulk/batches/{batch_id}",
    response_model=BatchView,
    tags=["cases"],
    summary="Progress and per-row results of a background batch",
    description="`done / total` rows have their result; `finished_at` is set when all have. Results in row order, "
    "`limit` per page from row index `offset` (pass `next_offset`), optionally only rows of one status "
    "(e.g. `invalid`, to correct and send them again in a new batch). Only the batch's sender sees it.",
    responses={**AUTH_ERRORS, 404: {"description": "no such batch (of yours)"}},
)
async def get_batch(
    request: Request,
    batch_id: Annotated[str, Path(max_length=64)],
    principal: Caseworker,
    offset: Annotated[int, Query(ge=0, le=MAX_BATCH_ROWS)] = 0,
    limit: Annotated[int, Query(ge=0, le=200)] = 50,
    status_filter: Annotated[BatchRowStatus | None, Query(alias="status")] = None,
) -> BatchView:
    runtime = runtime_of(request)
    batch = await _own_batch(runtime, principal, batch_id)
    return await bulk.batch_view(
        runtime, principal, batch, offset=offset, limit=limit, status_filter=status_filter
    )


@router.post(
    "/cases/bulk.csv",
    response_model=BulkResponse,
    tags=["cases"],
    summary="Open many cases from a CSV upload",
    description="`text/csv` body (UTF-8, header row) or `multipart/form-data` with a `file` field. Columns: "
    "channel, province, commune, abroad, already_safe, con_Consent, the prs_* fields with birth_year, "
    "estimated_age, no_documents, the vic_* fields (multiselect values separated by `;`), "
    "report_summary, report_received_at, cas_* referral fields, and one event's hte_* fields. "
    "Empty cell = unknown. Results per data row (index 0 = first data row).",
    responses={
        **AUTH_ERRORS,
        415: {"description": "not text/csv or multipart"},
        422: {"description": "bad header or encoding"},
    },
    openapi_extra={
        "requestBody": {
            "content": {
                "text/csv": {
                    "schema": {"type": "string"},
                    "example": "channel,province,prs_FirstName,prs_SecondName,birth_year,prs_Gender\n"
                    "rescue_operation,20,Lan,Nguyễn,2008,Feminine\n",
                }
            },
            "required": True,
        }
    },
    dependencies=[require_content_type("text/csv", "multipart/form-data")],
)
async def open_bulk_csv(
    request: Request, principal: Caseworker, idem_key: IdempotencyKey = None
) -> BulkResponse:
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "multipart upload needs a `file` field"
            )
        raw = await upload.read()
    else:
        raw = await request.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "the CSV must be UTF-8 encoded"
        ) from None
    try:
        rows = bulk.parse_csv(text)
    except bulk.CsvError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if not rows:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "the CSV has no data rows")
    return await bulk.open_rows(
        runtime_of(request),
        principal,
        rows,
        idem_key=idem_key,
        request_id=_request_id(request),
        source="csv",
    )


@router.post(
    "/cases/import/htcds",
    response_model=OpenCaseResponse,
    status_code=status.HTTP_201_CREATED,
    tags=["htcds"],
    summary="Open a case from an HTCDS record",
    description="The record is keyed by HTCDS field names (as GET /cases/{case_id}/htcds returns it); "
    "`x_nrm` carries channel and province. vic_TraffickingStatus and cas_Status are checked but not "
    "taken over: the new case starts as a possible victim.",
    responses={**AUTH_ERRORS, 415: {"description": "not JSON"}},
    dependencies=[JSON_ONLY],
)
async def import_htcds(
    request: Request,
    response: Response,
    principal: Caseworker,
    record: HtcdsRecord,
    idem_key: IdempotencyKey = None,
) -> OpenCaseResponse:
    try:
        req = record.to_open_request()
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, bulk.error_list(exc)) from None
    return await _open(request, response, principal, req, idem_key, "htcds")


SortKey = Literal["opened_at", "-opened_at", "province", "channel"]


@router.get(
    "/cases",
    response_model=CaseList,
    tags=["cases"],
    summary="List the intake registry (no personal data)",
    description="Cases in the caller's jurisdiction (national users: all, or filter by province), filterable "
    "by channel, province and opening date, sortable, paginated with limit/offset.",
    responses=AUTH_ERRORS,
)
async def list_cases(
    request: Request,
    principal: Reader,
    channel: Channel | None = None,
    province: Annotated[str | None, Query(max_length=8)] = None,
    opened_from: datetime | None = Query(default=None, description="opened at or after"),
    opened_to: datetime | None = Query(default=None, description="opened before"),
    sort: SortKey = "-opened_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> CaseList:
    if province is not None:
        try:
            province = normalise_province(province)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"province: {exc}") from None
    if not principal.national:
        if province is not None and province != principal.province:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"province {province} is outside your jurisdiction ({principal.province})",
            )
        province = principal.province
    rows, total = await repository.list_cases(
        runtime_of(request).pool,
        province=province,
        channel=channel.value if channel else None,
        opened_from=opened_from,
        opened_to=opened_to,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    items = [
        CaseListItem(
            case_id=r["case_id"],
            channel=r["channel"],
            province=r["province"],
            commune=r["commune"],
            age_band=r["age_band"],
            opened_at=r["opened_at"],
            source=r["source"],
            workflow_started=r["workflow_started_at"] is not None,
        )
        for r in rows
    ]
    nxt = offset + len(items)
    return CaseList(
        items=items,
        total=total,
        limit=limit,
        offset=offset,
        next_offset=nxt if nxt < total else None,
    )


@router.get(
    "/cases/{case_id}",
    response_model=CaseRecord,
    tags=["cases"],
    summary="The intake view of a case: facts, workflow state, person summary",
    description="Access follows the workflow's state (owner, participants, invitees, jurisdiction). The "
    "person summary (name) is personal data: it is access-logged and masked for auditors "
    "unless `break_glass_reason` is given.",
    responses={**AUTH_ERRORS, 404: {"description": "no such case"}},
)
async def get_case(
    request: Request, case_id: CaseId, principal: Reader, break_glass_reason: BreakGlass = None
) -> CaseRecord:
    runtime = runtime_of(request)
    case, facts, state = await reads.readable_case(runtime, principal, case_id)
    summary, masked = await reads.person_summary(
        runtime,
        principal,
        case,
        facts,
        break_glass_reason=break_glass_reason,
        request_id=_request_id(request),
    )
    wf = None
    if state is not None:
        wf = WorkflowView(
            stage=state.stage,
            status=state.status,
            owner_agency=state.owner_agency,
            version=state.version,
            trafficking_status=state.trafficking_status,
            participants=state.participants,
            assignee=state.assignee,
            deadline_at=state.deadline.due_at if state.deadline else None,
            escalation_level=state.escalation_level,
            allowed_actions=reads.actions_for(principal, state),
        )
    return CaseRecord(
        case_id=case_id,
        workflow_started=case["workflow_started_at"] is not None,
        workflow=wf,
        person=summary,
        masked=masked,
        open_duplicates=await repository.count_open_duplicates(runtime.pool, case_id),
        facts=IntakeFacts(
            channel=case["channel"],
            province=case["province"],
            commune=case["commune"],
            age_band=case["age_band"],
            abroad=case["abroad"],
            foreign_national=case["foreign_national"],
            already_safe=case["already_safe"],
            opened_at=case["opened_at"],
            opened_by_agency=case["opened_by_agency"],
            source=case["source"],
            referring_organisation=case["referring_organisation"],
        ),
    )


PERSON_DESCRIPTION = (
    "Returns the sections the caller's agency may read (shared/access.py); withheld "
    "sections are named. Auditors see PII masked unless they pass `break_glass_reason` "
    "(at least 10 characters), which is recorded. Every call writes an access-log row "
    "(who, case, person, purpose, reason, time, request id) before data is returned."
)


@router.get(
    "/persons/{person_id}",
    response_model=PersonOut,
    tags=["persons"],
    summary="Read a person from the registry (access-logged)",
    description=PERSON_DESCRIPTION,
    responses={**AUTH_ERRORS, 404: {"description": "no such person"}},
)
async def get_person(
    request: Request,
    person_id: IdPath,
    principal: Reader,
    purpose: Purpose = None,
    break_glass_reason: BreakGlass = None,
) -> PersonOut:
    runtime = runtime_of(request)
    case = await repository.case_of_person(runtime.pool, person_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"person {person_id} not found")
    case, facts, _ = await reads.readable_case(runtime, principal, case["case_id"])
    return await reads.read_person(
        runtime,
        principal,
        case,
        facts,
        purpose=purpose,
        break_glass_reason=break_glass_reason,
        request_id=_request_id(request),
    )


@router.get(
    "/cases/{case_id}/person",
    response_model=PersonOut,
    tags=["persons"],
    summary="Read the person of a case (access-logged)",
    description=PERSON_DESCRIPTION,
    responses={**AUTH_ERRORS, 404: {"description": "no such case"}},
)
async def get_case_person(
    request: Request,
    case_id: CaseId,
    principal: Reader,
    purpose: Purpose = None,
    break_glass_reason: BreakGlass = None,
) -> PersonOut:
    runtime = runtime_of(request)
    case, facts, _ = await reads.readable_case(runtime, principal, case_id)
    return await reads.read_person(
        runtime,
        principal,
        case,
        facts,
        purpose=purpose,
        break_glass_reason=break_glass_reason,
        request_id=_request_id(request),
    )


@router.get(
    "/cases/{case_id}/htcds",
    response_model=HtcdsRecord,
    response_model_exclude_none=True,
    tags=["htcds"],
    summary="Export the case as an HTCDS record (access-logged)",
    description="Keys are HTCDS field names, picklists checked; `historic_trafficking_events` holds the "
    "hte_* records, `x_nrm` the NRM facts HTCDS has no field for. Carries personal data: "
    "access-logged; auditors need `break_glass_reason`.",
    responses={**AUTH_ERRORS, 404: {"description": "no such case"}},
)
async def get_htcds(
    request: Request,
    case_id: CaseId,
    principal: Reader,
    purpose: Purpose = None,
    break_glass_reason: BreakGlass = None,
) -> HtcdsRecord:
    runtime = runtime_of(request)
    case, facts, state = await reads.readable_case(runtime, principal, case_id)
    return await reads.export_htcds(
        runtime,
        principal,
        case,
        facts,
        state,
        purpose=purpose,
        break_glass_reason=break_glass_reason,
        request_id=_request_id(request),
    )


@router.get(
    "/cases/{case_id}/duplicates",
    response_model=list[DuplicateOut],
    tags=["duplicates"],
    summary="Possible duplicates of a case (either side)",
    description="Candidates flagged at opening: same identity number, or same accent-insensitive name + "
    "birth year + province. Only ids and the match kind: read each person to compare. The id of "
    "a case in a province outside your jurisdiction is withheld (`within_your_jurisdiction` "
    "false): you learn only that a match exists elsewhere.",
    responses={**AUTH_ERRORS, 404: {"description": "no such case"}},
)
async def list_duplicates(
    request: Request, case_id: CaseId, principal: Reader
) -> list[DuplicateOut]:
    runtime = runtime_of(request)
    await reads.readable_case(runtime, principal, case_id)
    return [
        candidate_view(principal, r)
        for r in await repository.duplicates_of_case(runtime.pool, case_id)
    ]


@router.post(
    "/duplicates/{candidate_id}/resolve",
    response_model=DuplicateOut,
    tags=["duplicates"],
    summary="Link two cases as the same person, or keep them apart",
    description="A caseworker of an agency that may act on the newer case decides, with a reason; when "
    "the two cases are in different provinces, a national user or a supervisor of either "
    "province. Nothing is merged: `link` records that both cases concern the same person. A "
    "decided candidate cannot be decided again (409). Your retry with the same "
    "`Idempotency-Key` returns the decision (200, `Idempotent-Replayed: true`).",
    responses={
        **AUTH_ERRORS,
        404: {"description": "no such candidate"},
        409: {"description": "decided"},
        422: {"description": "invalid field, or key reused with another body"},
    },
    dependencies=[JSON_ONLY],
)
async def resolve_duplicate(
    request: Request,
    response: Response,
    candidate_id: IdPath,
    body: ResolveDuplicate,
    principal: Caseworker,
    idem_key: IdempotencyKey = None,
) -> DuplicateOut:
    decided, replayed = await duplicates.resolve(
        runtime_of(request), principal, candidate_id, body, idem_key
    )
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return decided


@router.post(
    "/cases/{case_id}/classify",
    response_model=CaseView,
    tags=["cases"],
    summary="Classify the report (the receive-stage decision)",
    description="Sends the `decide` Update with a ReceiveDecision to the case's workflow; the workflow "
    "validates stage, version and agency (409 stale/conflict, 403 forbidden, 422 invalid). "
    "Access is checked first: a caller who may not act on the case starts and changes "
    "nothing. Your retry with the same `Idempotency-Key` is answered once; the key is yours "
    "and this operation's (another user's or another endpoint's same key is a new request); "
    "reused with another body it is a 422.",
    responses={
        **AUTH_ERRORS,
        404: {"description": "no such case"},
        409: {"description": "stale"},
        422: {"description": "invalid field, or key reused with another body"},
        503: {"description": "workflow unavailable"},
    },
    dependencies=[JSON_ONLY],
)
async def classify(
    request: Request,
    case_id: CaseId,
    body: ClassifyRequest,
    principal: Caseworker,
    idem_key: IdempotencyKey = None,
) -> CaseView:
    runtime = runtime_of(request)
    case = await reads.case_or_404(runtime, case_id)
    # before anything starts or is written (an unstarted case is checked against its opener's agency)
    facts, _ = await reads.access_of(runtime, case)
    if not can_act_on_case(principal, facts):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"you may not act on case {case_id}")
    cmd = Decide(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        justification=body.justification,
        override_reason=body.override_reason,
        decision=ReceiveDecision(classification=body.classification, channel=case["channel"]),
    )
    if case["workflow_started_at"] is None and not await opening.start_case_workflow(runtime, case):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, "the case workflow could not be started"
        )
    # the key is scoped to (caller, operation, case) in the one store (common.idempotency_keys)
    state = await update_case(request, case_id, CaseWorkflow.decide, cmd, idem_key)
    log.info("case_classified", case_id=case_id, classification=body.classification.value)
    return CaseView.of(state)


@router.get(
    "/access-log",
    response_model=AccessLogPage,
    tags=["persons"],
    summary="Who read which person's data, when and why",
    description="The one access log of every service (intake, verification, support, ...): each read of "
    "a case's personal data. For auditors and supervisors. Supervisors and provincial auditors "
    "see reads of cases in their province; national auditors all. Filter by case, user or "
    "service. Newest first; pass `next_cursor` as `cursor`.",
    responses=AUTH_ERRORS,
)
async def access_log(
    request: Request,
    principal: Overseer,
    case_id: IdQuery = None,
    user_id: Annotated[str | None, Query(max_length=128)] = None,
    service: Annotated[
        str | None, Query(max_length=32, description="e.g. intake, verification")
    ] = None,
    cursor: Annotated[int | None, Query(ge=1, le=BIGINT_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AccessLogPage:
    runtime = runtime_of(request)
    rows = await list_reads(
        runtime.pool,
        runtime.ring,
        case_id=case_id,
        user_id=user_id,
        province=None if principal.national else principal.province,
        service=service,
        cursor=cursor,
        limit=limit,
    )
    items = [AccessLogEntry.model_validate(r) for r in rows]
    return AccessLogPage(
        items=items, next_cursor=items[-1].access_id if len(items) == limit else None
    )
