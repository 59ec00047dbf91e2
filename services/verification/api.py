"""HTTP API of the verification service: verify, identify, rescue, protect.

Every change to a case is an Update on its CaseWorkflow (the only writer of case state); this
service keeps its own encrypted records (evidence metadata, rescue operations, refusal letters,
suspected perpetrators) and hands the workflow only their ids."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from asyncpg.pool import PoolConnectionProxy
from fastapi import APIRouter, Body, HTTPException, Path, Query, Request, status

from services.verification import inbox, proceedings
from services.verification import repository as repo
from services.verification.models import (
    AssignRequest,
    ClaimRequest,
    EvidencePage,
    IdentificationRequest,
    IdentificationResult,
    InboxPage,
    InboxView,
    LinkedCasesOut,
    LinkKind,
    PerpetratorIn,
    PerpetratorLinks,
    PerpetratorOut,
    PerpetratorPage,
    PerpetratorRole,
    ProceedingIn,
    ProceedingOut,
    ProceedingPage,
    ProceedingStepIn,
    ProtectionMeasuresRequest,
    ProtectionMeasuresResult,
    ProtectionRequest,
    ProtectionResult,
    RescueCompleteRequest,
    RescueNotNeededRequest,
    RescueOperationOut,
    RescuePage,
    RescuePlanRequest,
    RescueResult,
    RescueStatus,
    VerificationRequest,
)
from shared import case_index, criminal_proceedings
from shared.api import runtime_of
from shared.api_models import CaseView, IdPath, Limit, Offset, action_errors
from shared.auth import CurrentPrincipal, Principal, require_roles
from shared.case_gateway import (
    BreakGlass,
    CaseId,
    CaseReadLog,
    IdempotencyKey,
    UpdateRef,
    act,
    actionable_case,
    actor_of,
    check_may_act,
    new_id,
    readable_case,
    update_case,
    write_with_update,
)
from shared.contract import (
    AddNote,
    Decide,
    EvidenceKind,
    EvidenceRef,
    IdentifyDecision,
    ProtectDecision,
    RecordRescue,
    RescueDecision,
)
from shared.criminal_proceedings import Step
from shared.domain import AgencyRole, Role, Section, Stage
from workflows.case_workflow import CaseWorkflow

DESCRIPTION = """\
NRM verification service: the verify, identify, rescue and protect stages (police, border guard,
coast guard, and social protection where Law 53/2024 Art. 27(2) has it lead).

* Decisions go to the case's workflow as Updates; a stale version or wrong stage is **409**, a wrong
  agency or jurisdiction **403**, an invalid decision **422**. Send `Idempotency-Key` to retry safely.
* Evidence metadata, rescue operations, refusal letters and suspected perpetrators are stored here,
  encrypted; the workflow only sees their ids.
* Criminal proceedings (`/cases/{case_id}/proceedings`): the crime report and, in order, the decision to
  open a criminal case or not, the investigation's result (police, border guard, coast guard), prosecution
  and the trial's verdict (procuracy), linked to the case's suspected perpetrators; police data.
* `GET /inbox` lists the caller's agency's cases in its jurisdiction from the case index in PostgreSQL
  (an accepted action shows at once; a timer's escalation within the audit activity's latency, < 1 s).
* Reading personal data (evidence, rescue operations, perpetrators) writes a line to the one access log first.
  Oversight roles (auditors) see it masked unless they pass `break_glass_reason` (10-500 characters, recorded).
"""

router = APIRouter(tags=["verification"])
Actor_ = require_roles(Role.caseworker, Role.supervisor)
POLICE_WRITERS = frozenset({AgencyRole.police, AgencyRole.border_guard, AgencyRole.coast_guard})
ERRORS = action_errors()


_log_read = CaseReadLog("verification")


# ---- claim / assign ---------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/claim",
    response_model=CaseView,
    responses=ERRORS,
    summary="Take the current stage of a case",
    description="The caller (a caseworker of the owning agency) becomes the assignee of the current stage.",
)
async def claim(
    case_id: CaseId,
    body: ClaimRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> CaseView:
    return CaseView.of(
        await act(request, principal, case_id, CaseWorkflow.claim, body.command, key)
    )


@router.post(
    "/cases/{case_id}/assign",
    response_model=CaseView,
    responses=ERRORS,
    summary="Assign the current stage to a staff member",
    description="A supervisor (or a caseworker of the owning agency, if the workflow allows it) "
    "assigns the current stage to `assignee_user_id`.",
)
async def assign(
    case_id: CaseId,
    body: AssignRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> CaseView:
    return CaseView.of(
        await act(request, principal, case_id, CaseWorkflow.assign, body.command, key)
    )


# ---- verify -----------------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/verification",
    response_model=CaseView,
    responses=ERRORS,
    summary="Decide the initial verification",
    description="Law 53/2024 Art. 27(2): initial verification within 3 days. `confirmed` moves the case "
    "to identification; `unfounded` ends it.",
)
async def decide_verification(
    case_id: CaseId,
    body: VerificationRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> CaseView:
    return CaseView.of(
        await act(request, principal, case_id, CaseWorkflow.decide, body.command, key)
    )


# ---- identify ---------------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/identification",
    response_model=IdentificationResult,
    responses=ERRORS,
    status_code=status.HTTP_200_OK,
    summary="Decide identification, with the evidence relied on",
    description="Records the evidence items' metadata (Art. 32 kinds; encrypted) and sends the "
    "identification decision (HTCDS vic_TraffickingStatus + deciding organisation) to the "
    "workflow. The evidence rows are kept only if the workflow accepts the decision.",
)
async def decide_identification(
    case_id: CaseId,
    body: IdentificationRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> IdentificationResult:
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    items = [(new_id("ev", case_id, key, f"evidence:{i}"), e) for i, e in enumerate(body.evidence)]
    cmd = Decide(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        justification=body.justification,
        override_reason=body.override_reason,
        decision=IdentifyDecision(
            status=body.status,
            deciding_org=body.deciding_org,
            referred_elsewhere=body.referred_elsewhere,
            evidence=[EvidenceRef(evidence_id=eid, kind=e.kind) for eid, e in items],
        ),
    )
    _, state = await write_with_update(  # rejected -> the evidence rows are rolled back
        runtime,
        case_id,
        lambda conn: repo.insert_evidence(
            conn, runtime.ring, case_id, items, principal.user_id, principal.agency.value
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.decide, cmd, key),
    )
    return IdentificationResult(case=CaseView.of(state), evidence_ids=[eid for eid, _ in items])


@router.get(
    "/cases/{case_id}/evidence",
    response_model=EvidencePage,
    responses=ERRORS,
    summary="List the evidence items of a case",
    description="Readable by the verifying bodies only (Section.evidence). Sorted by evidence date. "
    "Access-logged; sources, references and descriptions are masked for oversight roles "
    "unless `break_glass_reason` is given.",
)
async def list_evidence(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    kind: EvidenceKind | None = None,
    sort: Literal["date", "-date"] = "date",
    break_glass_reason: BreakGlass = None,
) -> EvidencePage:
    _, masked = await _log_read.read(
        request, principal, case_id, Section.evidence, "read_evidence", break_glass_reason
    )
    runtime = runtime_of(request)
    items, total = await repo.list_evidence(
        runtime.pool,
        runtime.ring,
        case_id,
        limit,
        offset,
        kind.value if kind else None,
        sort.startswith("-"),
    )
    return EvidencePage.of(items, total=total, limit=limit, offset=offset, masked=masked)


# ---- rescue -----------------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/rescue-operations",
    response_model=RescueOperationOut,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Plan a rescue operation",
    description="Police, border guard or coast guard plan an operation (location encrypted). The case "
    "must not have passed the rescue stage. The workflow records the operation id as an "
    "evidence-section note.",
)
async def plan_rescue(
    case_id: CaseId,
    body: RescuePlanRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> RescueOperationOut:
    _require_agency(principal, POLICE_WRITERS, "plan a rescue operation")
    await check_may_act(
        request, principal, case_id, (Stage.receive, Stage.verify, Stage.identify, Stage.rescue)
    )
    runtime = runtime_of(request)
    operation_id = new_id("op", case_id, key, "rescue-plan")
    cmd = AddNote(
        actor=actor_of(principal, request), section=Section.evidence, note_id=operation_id
    )
    await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_rescue_operation(
            conn, runtime.ring, operation_id, case_id, body, principal.user_id
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    op = await repo.get_rescue_operation(runtime.pool, runtime.ring, case_id, operation_id)
    assert op is not None
    return op


@router.get(
    "/cases/{case_id}/rescue-operations",
    response_model=RescuePage,
    responses=ERRORS,
    summary="List a case's rescue operations",
    description="Readable by the verifying bodies (Section.evidence); sorted by planned time. "
    "Access-logged; locations and plan notes are masked for oversight roles unless "
    "`break_glass_reason` is given.",
)
async def list_rescues(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    status_: Annotated[RescueStatus | None, Query(alias="status")] = None,
    break_glass_reason: BreakGlass = None,
) -> RescuePage:
    _, masked = await _log_read.read(
        request, principal, case_id, Section.evidence, "read_rescue_operations", break_glass_reason
    )
    runtime = runtime_of(request)
    items, total = await repo.list_rescue_operations(
        runtime.pool, runtime.ring, case_id, limit, offset, status_.value if status_ else None
    )
    return RescuePage.of(items, total=total, limit=limit, offset=offset, masked=masked)


@router.post(
    "/cases/{case_id}/rescue-operations/{operation_id}/complete",
    response_model=RescueResult,
    responses=ERRORS,
    summary="Record a rescue operation's outcome when it happens, at any stage from receipt",
    description="planned → done. `rescued` lists everyone found, linked to existing cases or to cases "
    "intake opened for them. In the rescue stage the outcome is the stage's decision. At any other "
    "open stage it is recorded in the case's history (`rescue_recorded`) and the stage does not "
    "change, so identification is not skipped; a `rescued` outcome then decides the rescue stage "
    "when identification leads there, without asking again. The operation is marked done only if "
    "the workflow accepts it. Police, border guard or coast guard only (403).",
)
async def complete_rescue(
    case_id: CaseId,
    operation_id: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")],
    body: RescueCompleteRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> RescueResult:
    _require_agency(principal, POLICE_WRITERS, "record a rescue outcome")
    current = await actionable_case(request, principal, case_id)
    if any(p.case_id == case_id for p in body.persons):
        raise HTTPException(
            422, "persons: list the other persons found; this case's person is implied"
        )
    runtime = runtime_of(request)
    early = current.stage != Stage.rescue  # issue 15 item 4: recorded when it happens
    update: UpdateRef = CaseWorkflow.record_rescue if early else CaseWorkflow.decide
    cmd: Decide | RecordRescue = Decide(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        justification=body.justification,
        override_reason=body.override_reason,
        decision=RescueDecision(
            needed=True, operation_ref=operation_id, outcome=body.outcome.value
        ),
    )
    if early:  # the stage does not change
        cmd = RecordRescue(
            actor=actor_of(principal, request),
            expected_version=body.expected_version,
            justification=body.justification,
            operation_ref=operation_id,
            outcome=body.outcome.value,
        )

    async def complete(conn: PoolConnectionProxy) -> None:
        row = await repo.lock_rescue_operation(conn, case_id, operation_id)
        if row is None:
            raise HTTPException(404, f"rescue operation {operation_id} not found on this case")
        if row["status"] == RescueStatus.done.value and not key:
            raise HTTPException(409, f"rescue operation {operation_id} is already done")
        await repo.complete_rescue_operation(conn, operation_id, body.outcome.value, body.persons)

    _, state = await write_with_update(
        runtime,
        case_id,
        complete,
        lambda _: update_case(request, case_id, update, cmd, key),
    )
    # the answer carries the operation's location, possibly written by someone else: a logged read
    masked = await _log_read(
        request, principal, state, "read_rescue_operations", Section.evidence, None
    )
    op = await repo.get_rescue_operation(runtime.pool, runtime.ring, case_id, operation_id)
    assert op is not None
    recorded = (r for r in reversed(state.rescues) if r.operation_ref == operation_id)
    return RescueResult(
        operation=op.masked() if masked else op,
        case=CaseView.of(state),
        rescue_recorded=next(recorded, None) if early else None,
    )


@router.post(
    "/cases/{case_id}/rescue-operations/not-needed",
    response_model=CaseView,
    responses=ERRORS,
    summary="Decide that no rescue is needed",
    description="The person is already safe: the rescue stage ends without an operation.",
)
async def rescue_not_needed(
    case_id: CaseId,
    body: RescueNotNeededRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> CaseView:
    return CaseView.of(
        await act(request, principal, case_id, CaseWorkflow.decide, body.command, key)
    )


# ---- protect ----------------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/protection",
    response_model=ProtectionResult,
    responses=ERRORS,
    summary="Decide protection measures, or record a written refusal",
    description="Law 53/2024 Art. 34, Decree 162/2025: measures such as safe shelter and protection of "
    "personal information; a refusal needs the person's written commitment, whose metadata "
    "is stored here (encrypted) and referenced in the decision.",
)
async def decide_protection(
    case_id: CaseId,
    body: ProtectionRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ProtectionResult:
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    doc_id = new_id("refusal", case_id, key, "refusal") if body.declined else None
    cmd = Decide(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        justification=body.justification,
        override_reason=body.override_reason,
        decision=ProtectDecision(
            measures=[m.value for m in body.measures],
            declined=body.declined,
            refusal_document_ref=doc_id,
        ),
    )

    async def refusal(conn: PoolConnectionProxy) -> None:
        if doc_id is not None and body.refusal_document is not None:
            await repo.insert_refusal(
                conn, runtime.ring, doc_id, case_id, body.refusal_document, principal.user_id
            )

    _, state = await write_with_update(
        runtime,
        case_id,
        refusal,
        lambda _: update_case(request, case_id, CaseWorkflow.decide, cmd, key),
    )
    return ProtectionResult(case=CaseView.of(state), refusal_document_id=doc_id)


@router.post(
    "/cases/{case_id}/protection-measures",
    response_model=ProtectionMeasuresResult,
    responses=ERRORS,
    summary="Decide protection measures now, at any stage from receipt (police)",
    description="Law 53/2024 Art. 34 protects victims, suspected victims, accompanying children, "
    "relatives and helpers; the police lead on their safety and confidentiality from first "
    "contact (police, border guard or coast guard: 403 for any other agency). The measures are "
    "recorded in the case's history (`protection_recorded`) at whatever stage the case is in, "
    "which does not change; the protect stage after identification still takes its own "
    "decision. Who: a police supervisor of the case's province at any time; police caseworkers "
    "once police take part in the case (the case's owner hands it to them with a referral, "
    "which they accept: need-to-know, police caseworkers do not see every case of the "
    "province).",
)
async def record_protection_measures(
    case_id: CaseId,
    body: ProtectionMeasuresRequest,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ProtectionMeasuresResult:
    _require_agency(principal, POLICE_WRITERS, "decide protection measures")
    state = await act(
        request, principal, case_id, CaseWorkflow.record_protection, body.command, key
    )
    return ProtectionMeasuresResult(case=CaseView.of(state), protections=list(state.protections))


# ---- suspected perpetrators -------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/perpetrators",
    response_model=PerpetratorOut,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Record a suspected perpetrator (police data)",
    description="HTCDS per_RoleInProcess + per_RoleDetails. Name, aliases, phones and recruitment channel "
    "are encrypted, with keyed blind indexes on the normalised name, phone and channel so "
    "that cases sharing a perpetrator can be linked. Police, border guard, coast guard only.",
)
async def add_perpetrator(
    case_id: CaseId,
    body: PerpetratorIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> PerpetratorOut:
    _require_agency(principal, POLICE_WRITERS, "record suspected perpetrators")
    state = await actionable_case(request, principal, case_id)
    runtime = runtime_of(request)
    pid = new_id("per", case_id, key, "perpetrator")
    cmd = AddNote(actor=actor_of(principal, request), section=Section.perpetrators, note_id=pid)
    await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_perpetrator(
            conn,
            runtime.ring,
            pid,
            case_id,
            state.province,
            body,
            principal.user_id,
            principal.agency.value,
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    out = await repo.get_perpetrator(runtime.pool, runtime.ring, pid)
    assert out is not None
    return out


@router.get(
    "/cases/{case_id}/perpetrators",
    response_model=PerpetratorPage,
    responses=ERRORS,
    summary="List a case's suspected perpetrators",
    description="Police and prosecution roles only (Section.perpetrators), and oversight roles. "
    "Access-logged; names, aliases, phones, role details and recruitment channels are masked "
    "for oversight roles unless `break_glass_reason` is given.",
)
async def list_perpetrators(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    role: PerpetratorRole | None = None,
    sort: Literal["recorded_at", "-recorded_at"] = "recorded_at",
    break_glass_reason: BreakGlass = None,
) -> PerpetratorPage:
    _, masked = await _log_read.read(
        request, principal, case_id, Section.perpetrators, "read_perpetrators", break_glass_reason
    )
    runtime = runtime_of(request)
    items, total = await repo.list_perpetrators(
        runtime.pool,
        runtime.ring,
        case_id,
        limit,
        offset,
        role.value if role else None,
        sort.startswith("-"),
    )
    return PerpetratorPage.of(items, total=total, limit=limit, offset=offset, masked=masked)


@router.get(
    "/cases/{case_id}/linked-cases",
    response_model=LinkedCasesOut,
    responses=ERRORS,
    summary="Other cases sharing a perpetrator, phone number or recruitment channel",
    description="Matches on keyed blind indexes (never plain text) so that rings show up across cases "
    "and provinces. Police and prosecution roles only. Filter with `on=name&on=phone`. A "
    "linked case outside the caller's jurisdiction is listed with its province, without "
    "its perpetrator record ids.",
)
async def linked_cases(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    on: Annotated[list[LinkKind] | None, Query(description="identifier kinds to match on")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> LinkedCasesOut:
    await readable_case(request, principal, case_id, Section.perpetrators)
    kinds = [k.value for k in (on or list(LinkKind))]
    # a ring crosses provinces, so every link is listed; another province's perpetrator records are not
    items = [
        item
        if principal.covers_province(item.province)
        else item.model_copy(update={"perpetrator_ids": [], "within_your_jurisdiction": False})
        for item in await repo.linked_cases(runtime_of(request).pool, case_id, kinds)
    ]
    return LinkedCasesOut(case_id=case_id, items=items[offset : offset + limit], total=len(items))


# ---- criminal proceedings (issue 15 item 1) ---------------------------------------------------
@router.post(
    "/cases/{case_id}/proceedings",
    response_model=ProceedingOut,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Record a crime report on a case (criminal proceedings, police data)",
    description="The crime report (tố giác, tin báo về tội phạm): its number (encrypted) and the date it "
    "was received, linked to suspected perpetrators recorded on this case. Police, border guard, coast "
    "guard only. The steps that follow are recorded with POST .../proceedings/{proceeding_id}/steps. "
    "The workflow records the proceeding's id (no content) as a perpetrators-section note; the "
    "non-personal facts (dates, outcomes) feed the criminal-justice KPIs.",
)
async def add_proceeding(
    case_id: CaseId,
    body: ProceedingIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ProceedingOut:
    _require_agency(principal, proceedings.REPORT_WRITERS, "record a crime report")
    state = await actionable_case(request, principal, case_id)
    runtime = runtime_of(request)
    proceedings.check_report(
        body.report_received_on,
        body.perpetrator_ids,
        await repo.case_perpetrator_ids(runtime.pool, case_id),
        proceedings.today(),
    )
    pid = new_id("proc", case_id, key, "proceeding")
    cmd = AddNote(actor=actor_of(principal, request), section=Section.perpetrators, note_id=pid)

    async def write(conn: PoolConnectionProxy) -> None:
        await repo.insert_proceeding(
            conn,
            runtime.ring,
            pid,
            case_id,
            state.province,
            body,
            principal.user_id,
            principal.agency.value,
        )
        await criminal_proceedings.record_report(
            conn, pid, case_id, state.province, body.report_received_on
        )

    await write_with_update(
        runtime,
        case_id,
        write,
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    items, _ = await repo.list_proceedings(runtime.pool, runtime.ring, case_id, 1, 0, pid)
    return items[0]


@router.post(
    "/cases/{case_id}/proceedings/{proceeding_id}/steps",
    response_model=ProceedingOut,
    responses=action_errors(
        e409="step already recorded, or the step before it is missing or has another outcome"
    ),
    summary="Record a step of the criminal proceedings",
    description="One step, once, in order: `decision` (khởi tố / không khởi tố vụ án: police, border "
    "guard, coast guard), `investigation` (điều tra, khám phá; after a decision to open: the same "
    "bodies), `prosecution` (truy tố; after an investigation concluded as solved: the procuracy), "
    "`trial` (xét xử; after an indictment: the procuracy, which takes part in the trial; no court role "
    "yet). `on` may not be before the previous step or the report, nor in the future (422). "
    "Reference numbers and notes are encrypted.",
)
async def add_proceeding_step(
    case_id: CaseId,
    proceeding_id: IdPath,
    body: Annotated[ProceedingStepIn, Body()],
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ProceedingOut:
    step = Step(body.step)
    _require_agency(principal, proceedings.STEP_WRITERS[step], f"record {step.value}")
    state = await actionable_case(request, principal, case_id)
    runtime = runtime_of(request)
    cmd = AddNote(
        actor=actor_of(principal, request),
        section=Section.perpetrators,
        note_id=f"{proceeding_id}.{step.value}"[:64],
    )

    async def write(conn: PoolConnectionProxy) -> None:
        row, recorded = await repo.lock_proceeding(conn, case_id, proceeding_id)
        if row is None:
            raise HTTPException(404, f"proceeding {proceeding_id} not found on this case")
        mine = recorded.get(step.value)
        if mine is not None and key and mine["outcome"] == body.outcome.value:
            return  # a retry with the same Idempotency-Key: already written
        proceedings.check_step(
            step, body.on, row["report_received_on"], recorded, proceedings.today()
        )
        await repo.insert_proceeding_step(
            conn,
            runtime.ring,
            proceeding_id,
            step.value,
            body.outcome.value,
            body,
            principal.user_id,
            principal.agency.value,
        )
        await criminal_proceedings.record_step(
            conn, proceeding_id, step, body.outcome.value, body.on
        )

    await write_with_update(
        runtime,
        case_id,
        write,
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    # the answer carries numbers and notes possibly written by others: a logged read
    masked = await _log_read(
        request, principal, state, "read_criminal_proceedings", Section.perpetrators, None
    )
    items, _ = await repo.list_proceedings(runtime.pool, runtime.ring, case_id, 1, 0, proceeding_id)
    return items[0].masked() if masked else items[0]


@router.post(
    "/cases/{case_id}/proceedings/{proceeding_id}/perpetrators",
    response_model=ProceedingOut,
    responses=ERRORS,
    summary="Link more suspected perpetrators to a crime report",
    description="Suspects identified after the report (during the investigation): perpetrators recorded "
    "on this case are added to the proceeding's links (already linked ones stay; none is removed). "
    "Police, border guard, coast guard only. The workflow records the proceeding's id (no content).",
)
async def link_proceeding_perpetrators(
    case_id: CaseId,
    proceeding_id: IdPath,
    body: PerpetratorLinks,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ProceedingOut:
    _require_agency(principal, proceedings.REPORT_WRITERS, "link suspected perpetrators")
    state = await actionable_case(request, principal, case_id)
    runtime = runtime_of(request)
    proceedings.check_perpetrators(
        body.perpetrator_ids, await repo.case_perpetrator_ids(runtime.pool, case_id)
    )
    cmd = AddNote(
        actor=actor_of(principal, request),
        section=Section.perpetrators,
        note_id=f"{proceeding_id}.perpetrators"[:64],
    )

    async def write(conn: PoolConnectionProxy) -> None:
        row, _ = await repo.lock_proceeding(conn, case_id, proceeding_id)
        if row is None:
            raise HTTPException(404, f"proceeding {proceeding_id} not found on this case")
        await repo.link_perpetrators(conn, proceeding_id, body.perpetrator_ids)

    await write_with_update(
        runtime,
        case_id,
        write,
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    masked = await _log_read(
        request, principal, state, "read_criminal_proceedings", Section.perpetrators, None
    )
    items, _ = await repo.list_proceedings(runtime.pool, runtime.ring, case_id, 1, 0, proceeding_id)
    return items[0].masked() if masked else items[0]


@router.get(
    "/cases/{case_id}/proceedings",
    response_model=ProceedingPage,
    responses=ERRORS,
    summary="List a case's criminal proceedings",
    description="Police and prosecution roles only (Section.perpetrators), and oversight roles. Sorted "
    "by the date the report was received. Access-logged; report numbers, references and notes are "
    "masked for oversight roles unless `break_glass_reason` is given.",
)
async def list_proceedings(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    break_glass_reason: BreakGlass = None,
) -> ProceedingPage:
    _, masked = await _log_read.read(
        request,
        principal,
        case_id,
        Section.perpetrators,
        "read_criminal_proceedings",
        break_glass_reason,
    )
    runtime = runtime_of(request)
    items, total = await repo.list_proceedings(runtime.pool, runtime.ring, case_id, limit, offset)
    return ProceedingPage.of(items, total=total, limit=limit, offset=offset, masked=masked)


# ---- inbox ------------------------------------------------------------------------------------
@router.get(
    "/inbox",
    response_model=InboxPage,
    responses={401: ERRORS[401], 422: ERRORS[422]},
    summary="The caller's agency's cases in its jurisdiction",
    description="Views: `waiting_acceptance` (handoffs to your agency not yet accepted), `in_progress` "
    "(stages your agency owns), `due_soon` (deadline within `due_within_hours`), `overdue`. "
    "No personal data. Sorted by deadline, earliest first, cases without a deadline last "
    "(`sort=-deadline` reverses the order); `total` counts every matching case and "
    "`complete` is always true.\n\n" + case_index.STALENESS,
)
async def list_inbox(
    request: Request,
    principal: CurrentPrincipal,
    view: InboxView = InboxView.in_progress,
    stage: Stage | None = None,
    category: Annotated[
        Literal["child", "adult", "abroad", "domestic", "under_16", "foreign"] | None,
        Query(description="CaseCategory"),
    ] = None,
    assigned_to_me: bool = False,
    due_within_hours: Annotated[int, Query(ge=1, le=24 * 30)] = 48,
    sort: Literal["deadline", "-deadline"] = "deadline",
    limit: Limit = 50,
    offset: Offset = 0,
) -> InboxPage:
    q = inbox.query(
        principal,
        view,
        datetime.now(UTC),
        timedelta(hours=due_within_hours),
        stage,
        category,
        assigned_to_me,
        sort.startswith("-"),
        limit,
        offset,
    )
    items, total = await inbox.read(runtime_of(request).pool, q)
    return InboxPage(view=view, items=items, total=total, limit=limit, offset=offset, complete=True)


def _require_agency(principal: Principal, agencies: frozenset[AgencyRole], what: str) -> None:
    if principal.agency not in agencies and not principal.has(Role.admin):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"only {', '.join(sorted(a.value for a in agencies))} may {what}",
        )
