"""HTTP API of the support service: entitlements, services delivered, support plan, legal-aid
referral, consents, reintegration follow-ups and closure.

Case state changes only through the case's workflow (Updates); support's own records (plans,
services, notes, consent documents) are written in the same transaction and rolled back when the
workflow rejects the Update."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Literal

from asyncpg.pool import PoolConnectionProxy
from fastapi import APIRouter, HTTPException, Request, status

from services.support import repository as repo
from services.support.entitlements import (
    LABEL,
    LEGAL_BASIS,
    LETTER,
    Beneficiary,
    Entitled,
    Regime,
    ServiceRefused,
    Status,
    SupportType,
    check_service,
    entitlement,
    status_column,
)
from services.support.models import (
    ClosureIn,
    ClosureOut,
    ConsentIn,
    ConsentResult,
    ConsentsOut,
    EntitlementItem,
    EntitlementsOut,
    FollowUpIn,
    FollowUpPage,
    FollowUpView,
    HandoffPage,
    HandoffResult,
    HandoffView,
    LegacyIdentificationIn,
    LegacyIdentificationOut,
    LegalAidReferralIn,
    RespondIn,
    ServiceIn,
    ServiceOut,
    ServicePage,
    SupportPlanIn,
    SupportPlanOut,
    SupportPlanPage,
    TransferIn,
)
from shared.access import can_read_section, read_until
from shared.api import runtime_of
from shared.api_models import CaseView, IdPath, Limit, Offset, action_errors
from shared.auth import CurrentPrincipal, Principal, require_roles
from shared.case_gateway import (
    BreakGlass,
    CaseId,
    CaseReadLog,
    IdempotencyKey,
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
    CaseState,
    ConsentPurpose,
    Decide,
    HandoffKind,
    HandoffState,
    RecordConsent,
    RecordFollowUp,
    RecordService,
    ReintegrateDecision,
    RespondHandoff,
)
from shared.domain import AgencyRole, Role, Section, Stage
from workflows.case_workflow import CaseWorkflow

DESCRIPTION = """\
NRM support service: social protection, legal aid, the Women's Union and commune People's Committees.

* `GET /cases/{id}/entitlements`: what the person may receive under Law 53/2024 Art. 37, from their
  status (victim, suspected victim in Vietnam or abroad, foreign victim, accompanying child).
* Services delivered are refused with **422** when the person is not entitled; "case by case"
  entitlements (foreign victims) need a supervisor's approval reason.
* Support plan (HTCDS `spl_*`), legal-aid referral and its acceptance, consent per purpose
  (withdrawing data-sharing consent stops handoffs that need it), reintegration follow-ups, closure.
* Transfers (`POST /cases/{id}/transfers`): ownership moves to another agency once it accepts; with
  `to_province`, to an agency of another province, where the same case continues (a case travels with the
  person); the sending province then reads what it did up to the transfer and no longer acts.
* Reading personal data or free text (services, support plans, consents, handoff reasons) writes a line to
  the one access log first. Oversight roles (auditors) see it masked unless they pass `break_glass_reason`
  (10-500 characters, recorded).
* A rejected workflow Update is **409** (stale / wrong stage), **403** (agency, jurisdiction, consent)
  or **422** (invalid); nothing is written here then. Send `Idempotency-Key` to retry safely.
"""

router = APIRouter(tags=["support"])
Actor_ = require_roles(Role.caseworker, Role.supervisor)
RefPath = IdPath
ERRORS = action_errors(
    e403="wrong role, agency, jurisdiction or missing consent",
    e404="case (or handoff / follow-up) not found",
    e422="invalid input, or not entitled (the detail names the field and why)",
)


_log_read = CaseReadLog("support")


def _require_support_agency(principal: Principal) -> None:
    if not can_read_section(principal, Section.support_plan):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"agency {principal.agency.value} does not work on support (support_plan section)",
        )


# ---- entitlements -----------------------------------------------------------------------------
async def _status(request: Request, state: CaseState, beneficiary: Beneficiary) -> Status:
    """The entitlement column and the law that applies (the 2011 law's when the support service holds an
    identification from before 01/07/2025)."""
    runtime = runtime_of(request)
    legacy = await repo.legacy_identification(runtime.pool, runtime.ring, state.case_id)
    return status_column(
        state.trafficking_status,
        abroad=state.facts.abroad,
        foreign_national=state.facts.foreign_national,
        beneficiary=beneficiary,
        identified_on=legacy[0] if legacy else None,
    )


@router.put(
    "/cases/{case_id}/legacy-identification",
    response_model=LegacyIdentificationOut,
    responses=ERRORS,
    summary="Record an identification made under the 2011 law (Art. 63)",
    description="The person was identified as a victim under Law 66/2011, before 01/07/2025: Law 53/2024 "
    "Art. 63 keeps that law's support, so the entitlements become a supervisor's confirmation "
    "against the 2011 regime. The document reference is encrypted. Recorded in the case's "
    "history (a support-plan note with this record's id).",
)
async def put_legacy_identification(
    case_id: CaseId,
    body: LegacyIdentificationIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> LegacyIdentificationOut:
    _require_support_agency(principal)
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    cmd = AddNote(
        actor=actor_of(principal, request),
        section=Section.support_plan,
        note_id=new_id("legacy", case_id, key, "legacy-identification"),
        expected_version=body.expected_version,
    )
    await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.upsert_legacy_identification(
            conn,
            runtime.ring,
            case_id,
            body.identified_on,
            body.document_reference,
            principal.user_id,
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    return LegacyIdentificationOut(
        case_id=case_id,
        identified_on=body.identified_on,
        document_reference=body.document_reference,
        regime=Regime.law_66_2011,
    )


@router.get(
    "/cases/{case_id}/entitlements",
    response_model=EntitlementsOut,
    responses=ERRORS,
    summary="What the person may receive (Law 53/2024 Art. 37)",
    description="Derived from the case's trafficking status (HTCDS vic_TraffickingStatus) and its facts "
    "(abroad, foreign national). `beneficiary=accompanying_child` gives the entitlements of an "
    "under-18 accompanying the person (as the person's until the person is identified), "
    "`beneficiary=relative` those of a relative (thân nhân: each item a supervisor's decision, "
    "local practice). A person identified under the 2011 law (`PUT .../legacy-identification`) "
    "has `regime=law_66_2011` (Art. 63). Filter with `only=yes|case_by_case|no`.",
)
async def get_entitlements(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    beneficiary: Beneficiary = Beneficiary.person,
    only: Entitled | None = None,
) -> EntitlementsOut:
    state = await readable_case(request, principal, case_id)
    st = await _status(request, state, beneficiary)
    items = [
        EntitlementItem(
            service_type=t,
            letter=LETTER[t],
            label=LABEL[t],
            entitled=entitlement(t, st.column, st.regime),
        )
        for t in SupportType
    ]
    if only is not None:
        items = [i for i in items if i.entitled == only]
    return EntitlementsOut(
        case_id=case_id,
        beneficiary=beneficiary,
        trafficking_status=state.trafficking_status,
        status_column=st.column,
        regime=st.regime,
        explanation=st.explanation,
        legal_basis=LEGAL_BASIS,
        items=items,
    )


# ---- services delivered -----------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/services",
    response_model=ServiceOut,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Record a support service delivered",
    description="Checks the entitlement table first: a service the person is not entitled to is refused "
    "with 422 and the legal reason; a 'case by case' service needs `supervisor_approval_reason` "
    "given by a supervisor. Money: `amount_vnd` (required for travel_home and "
    "hardship_allowance). The workflow counts the service (RecordService).",
)
async def record_service(
    case_id: CaseId,
    body: ServiceIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ServiceOut:
    _require_support_agency(principal)
    state = await actionable_case(request, principal, case_id)
    st = await _status(request, state, body.beneficiary)
    try:
        entitled = check_service(
            body.service_type,
            st,
            approval_reason=body.supervisor_approval_reason,
            amount_vnd=body.amount_vnd,
            approver_is_supervisor=principal.has(Role.supervisor),
        )
    except ServiceRefused as refused:
        raise HTTPException(refused.status, refused.message) from None
    approved_by = principal.user_id if entitled == Entitled.case_by_case else None
    runtime = runtime_of(request)
    service_id = new_id("svc", case_id, key, "service")
    cmd = RecordService(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        service_id=service_id,
        service_type=body.service_type.value,
    )
    await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_service(
            conn, runtime.ring, service_id, case_id, body, entitled, approved_by, principal.user_id
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.record_service, cmd, key),
    )
    items, _, _ = await repo.list_services(
        runtime.pool, runtime.ring, case_id, 1, 0, None, "delivered_on", service_id=service_id
    )
    return items[0]


@router.get(
    "/cases/{case_id}/services",
    response_model=ServicePage,
    responses=ERRORS,
    summary="List the services delivered",
    description="Support agencies only (support_plan section). Filter by `service_type`; sort by "
    "`delivered_on` or `amount_vnd` (prefix `-` for descending). `total_amount_vnd` sums all pages. "
    "Access-logged; notes, provider names and approval reasons are masked for oversight roles "
    "unless `break_glass_reason` is given.",
)
async def list_services(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    service_type: SupportType | None = None,
    sort: Literal["delivered_on", "-delivered_on", "amount_vnd", "-amount_vnd"] = "delivered_on",
    limit: Limit = 50,
    offset: Offset = 0,
    break_glass_reason: BreakGlass = None,
) -> ServicePage:
    _, masked = await _log_read.read(
        request, principal, case_id, Section.support_plan, "read_services", break_glass_reason
    )
    runtime = runtime_of(request)
    items, total, amount = await repo.list_services(
        runtime.pool,
        runtime.ring,
        case_id,
        limit,
        offset,
        service_type.value if service_type else None,
        sort,
    )
    return ServicePage.of(
        items, total=total, limit=limit, offset=offset, masked=masked, total_amount_vnd=amount
    )


# ---- support plan -----------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/support-plan",
    response_model=SupportPlanOut,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Write the support plan (HTCDS spl_*)",
    description="A new plan supersedes the previous one (kept as history). Objectives and action plan are "
    "encrypted; the workflow records the plan id as a support_plan note.",
)
async def create_plan(
    case_id: CaseId,
    body: SupportPlanIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> SupportPlanOut:
    _require_support_agency(principal)
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    plan_id = new_id("plan", case_id, key, "support-plan")
    cmd = AddNote(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        section=Section.support_plan,
        note_id=plan_id,
    )
    await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_plan(
            conn, runtime.ring, plan_id, case_id, body, principal.user_id, principal.agency.value
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.add_note, cmd, key),
    )
    plans, _ = await repo.list_plans(runtime.pool, runtime.ring, case_id, 200, 0)
    return next(p for p in plans if p.plan_id == plan_id)


@router.get(
    "/cases/{case_id}/support-plan",
    response_model=SupportPlanPage,
    responses=ERRORS,
    summary="The support plan and its earlier versions",
    description="Newest first; `current` marks the plan in force. Support agencies only, and oversight "
    "roles. Access-logged; objectives and action plan are masked for oversight roles unless "
    "`break_glass_reason` is given.",
)
async def get_plans(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
    break_glass_reason: BreakGlass = None,
) -> SupportPlanPage:
    _, masked = await _log_read.read(
        request, principal, case_id, Section.support_plan, "read_support_plan", break_glass_reason
    )
    runtime = runtime_of(request)
    items, total = await repo.list_plans(runtime.pool, runtime.ring, case_id, limit, offset)
    return SupportPlanPage.of(items, total=total, limit=limit, offset=offset, masked=masked)


# ---- legal aid referral and handoffs ------------------------------------------------------------
@router.post(
    "/cases/{case_id}/legal-aid-referral",
    response_model=HandoffResult,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Refer the case to legal aid",
    description="A referral (legal aid joins; ownership stays). Needs the person's data-sharing consent for "
    "legal_aid, or a supervisor's `consent_override_reason` (audited). Legal aid answers with "
    "`POST /handoffs/{case_id}/{handoff_id}/respond`.",
)
async def refer_legal_aid(
    case_id: CaseId,
    body: LegalAidReferralIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> HandoffResult:
    state = await act(request, principal, case_id, CaseWorkflow.request_handoff, body.command, key)
    handoff = [
        h
        for h in state.handoffs
        if h.to_agency == AgencyRole.legal_aid and h.kind == HandoffKind.referral
    ][-1]
    # after the workflow accepted the referral (its id is the workflow's); idempotent, so a retry with the
    # same Idempotency-Key completes it if this write was lost
    await repo.record_legal_aid_referral(
        runtime_of(request).pool,
        case_id,
        handoff.handoff_id,
        body.financial_hardship,
        principal.user_id,
    )
    return HandoffResult(
        case=CaseView.of(state),
        handoff=HandoffView.of(handoff),
        financial_hardship=body.financial_hardship,
    )


@router.post(
    "/cases/{case_id}/transfers",
    response_model=HandoffResult,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Transfer the case to another agency, here or in another province",
    description="A transfer: ownership moves to `to_agency` once it accepts. With `to_province` the agency is "
    "another province's and the case travels with the person: on acceptance the same case "
    "(same id, history and audit chain) continues there, its deadline recomputed under that "
    "province's policy, and this province keeps reading what it did but no longer acts. Needs "
    "the person's data-sharing consent for that agency (naming `province` for another "
    "province), or a supervisor's `consent_override_reason` (audited). Only the stage owner "
    "(or a supervisor with `override_reason`) transfers. The receiving agency answers with "
    "`POST /handoffs/{case_id}/{handoff_id}/respond` within the policy's acceptance deadline; "
    "unanswered, it escalates in both provinces.",
)
async def request_transfer(
    case_id: CaseId,
    body: TransferIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> HandoffResult:
    state = await act(request, principal, case_id, CaseWorkflow.request_handoff, body.command, key)
    handoff = [
        h
        for h in state.handoffs
        if h.kind == HandoffKind.transfer and h.to_agency == body.to_agency
    ][-1]
    return HandoffResult(case=CaseView.of(state), handoff=HandoffView.of(handoff))


@router.get(
    "/cases/{case_id}/handoffs",
    response_model=HandoffPage,
    responses=ERRORS,
    summary="The case's handoffs and referrals, and their state",
    description="requested → accepted / rejected / revoked → done. Filter by `to_agency` or `state`. "
    "Reasons are free text: access-logged, masked for oversight roles unless "
    "`break_glass_reason` is given.",
)
async def list_handoffs(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    to_agency: AgencyRole | None = None,
    state: HandoffState | None = None,
    break_glass_reason: BreakGlass = None,
) -> HandoffPage:
    case = await readable_case(request, principal, case_id)
    masked = await _log_read(
        request, principal, case, "read_handoffs", Section.case_notes, break_glass_reason
    )
    until = read_until(
        principal, case.access_facts()
    )  # a province the case left reads up to its transfer
    items = [
        HandoffView.of(h)
        for h in case.handoffs
        if (to_agency is None or h.to_agency == to_agency)
        and (state is None or h.state == state)
        and (until is None or h.requested_at < until)
    ]
    return HandoffPage(
        items=[i.masked() for i in items] if masked else items, total=len(items), masked=masked
    )


@router.post(
    "/handoffs/{case_id}/{handoff_id}/respond",
    response_model=HandoffResult,
    responses=ERRORS,
    summary="Accept or reject a handoff addressed to your agency",
    description="Only the invited agency answers; rejecting needs a reason.",
)
async def respond_handoff(
    case_id: CaseId,
    handoff_id: RefPath,
    body: RespondIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> HandoffResult:
    await actionable_case(request, principal, case_id, handoff_id=handoff_id)
    cmd = RespondHandoff(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        handoff_id=handoff_id,
        accept=body.accept,
        reason=body.reason,
    )
    state = await update_case(request, case_id, CaseWorkflow.respond_handoff, cmd, key)
    handoff = next(h for h in state.handoffs if h.handoff_id == handoff_id)
    return HandoffResult(case=CaseView.of(state), handoff=HandoffView.of(handoff))


# ---- follow-ups and closure -------------------------------------------------------------------
@router.get(
    "/cases/{case_id}/follow-ups",
    response_model=FollowUpPage,
    responses=ERRORS,
    summary="Reintegration follow-ups (scheduled by the workflow: 3, 6, 12 months by default)",
    description="Filter `pending=true` for those without an outcome.",
)
async def list_follow_ups(
    case_id: CaseId, request: Request, principal: CurrentPrincipal, pending: bool | None = None
) -> FollowUpPage:
    state = await readable_case(request, principal, case_id)
    items = [
        FollowUpView(
            follow_up_id=f.follow_up_id,
            due_at=f.due_at,
            outcome=f.outcome,
            recorded_at=f.recorded_at,
        )
        for f in state.follow_ups
        if pending is None or (f.outcome is None) == pending
    ]
    return FollowUpPage(items=items, total=len(items))


@router.post(
    "/cases/{case_id}/follow-ups/{follow_up_id}",
    response_model=FollowUpView,
    responses=ERRORS,
    summary="Record a follow-up's outcome",
    description="done / missed / not_reachable, with an optional note (encrypted here; the workflow gets "
    "its id).",
)
async def record_follow_up(
    case_id: CaseId,
    follow_up_id: RefPath,
    body: FollowUpIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> FollowUpView:
    _require_support_agency(principal)
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    note_id = new_id("fun", case_id, key, f"follow-up:{follow_up_id}")
    cmd = RecordFollowUp(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        follow_up_id=follow_up_id,
        outcome=body.outcome,
        note_id=note_id if body.note else None,
        override_reason=body.override_reason,
    )
    _, state = await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_follow_up_note(
            conn,
            runtime.ring,
            note_id,
            case_id,
            follow_up_id,
            body.outcome,
            body.note,
            principal.user_id,
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.record_follow_up, cmd, key),
    )
    f = next(f for f in state.follow_ups if f.follow_up_id == follow_up_id)
    return FollowUpView(
        follow_up_id=f.follow_up_id,
        due_at=f.due_at,
        outcome=f.outcome,
        recorded_at=f.recorded_at,
        note_id=note_id if body.note else None,
    )


@router.post(
    "/cases/{case_id}/closure",
    response_model=ClosureOut,
    responses=ERRORS,
    summary="Close the case at the end of reintegration",
    description="The reintegration decision (HTCDS cas_Status Closed / ClosedReferred, with a reason). Needs "
    "a support plan; the plan's spl_ActualEndDate is set to today if empty.",
)
async def close_case(
    case_id: CaseId,
    body: ClosureIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ClosureOut:
    _require_support_agency(principal)
    await check_may_act(request, principal, case_id, (Stage.reintegrate,))
    runtime = runtime_of(request)

    async def end_plan(conn: PoolConnectionProxy) -> str:
        plan_id = body.plan_id or await repo.current_plan_id(conn, case_id)
        if plan_id is None:
            raise HTTPException(
                422, "plan_id: the case has no support plan; write one first (POST support-plan)"
            )
        if not await repo.plan_exists(conn, case_id, plan_id):
            raise HTTPException(422, f"plan_id: no support plan {plan_id} on this case")
        await repo.set_actual_end(conn, plan_id)
        return plan_id

    def close(plan_id: str) -> Awaitable[CaseState]:
        cmd = Decide(
            actor=actor_of(principal, request),
            expected_version=body.expected_version,
            justification=body.reason,
            override_reason=body.override_reason,
            decision=ReintegrateDecision(
                support_plan_ref=plan_id, cas_status=body.cas_Status, reason=body.reason
            ),
        )
        return update_case(request, case_id, CaseWorkflow.decide, cmd, key)

    plan_id, state = await write_with_update(runtime, case_id, end_plan, close)
    return ClosureOut(case=CaseView.of(state), plan_id=plan_id)


# ---- consent ----------------------------------------------------------------------------------
@router.post(
    "/cases/{case_id}/consents",
    response_model=ConsentResult,
    responses=ERRORS,
    status_code=status.HTTP_201_CREATED,
    summary="Record or withdraw consent for a purpose",
    description="Purposes: support, data_sharing (per agency), research (separate, IOM guidance). "
    "`granted=false` withdraws; withdrawing data-sharing consent stops waiting handoffs to "
    "that agency and refuses new ones (the workflow enforces it). The document's metadata is "
    "kept here; its reference is encrypted.",
)
async def record_consent(
    case_id: CaseId,
    body: ConsentIn,
    request: Request,
    key: IdempotencyKey = None,
    principal: Principal = Actor_,
) -> ConsentResult:
    await check_may_act(request, principal, case_id)
    runtime = runtime_of(request)
    consent_id = new_id("con", case_id, key, "consent")
    cmd = RecordConsent(
        actor=actor_of(principal, request),
        expected_version=body.expected_version,
        purpose=body.purpose,
        granted=body.granted,
        agency=body.agency,
        province=body.province,
        document_ref=consent_id if body.document else None,
    )
    _, state = await write_with_update(
        runtime,
        case_id,
        lambda conn: repo.insert_consent(
            conn, runtime.ring, consent_id, case_id, body, principal.user_id
        ),
        lambda _: update_case(request, case_id, CaseWorkflow.record_consent, cmd, key),
    )
    return ConsentResult(
        case=CaseView.of(state), consent_id=consent_id, current=dict(state.consents)
    )


@router.get(
    "/cases/{case_id}/consents",
    response_model=ConsentsOut,
    responses=ERRORS,
    summary="Current consents and their history",
    description="`current` is what the workflow enforces; `history` lists every grant and withdrawal, newest "
    "first, filterable by `purpose`. Access-logged; document references are masked for "
    "oversight roles unless `break_glass_reason` is given.",
)
async def list_consents(
    case_id: CaseId,
    request: Request,
    principal: CurrentPrincipal,
    purpose: ConsentPurpose | None = None,
    limit: Limit = 50,
    offset: Offset = 0,
    break_glass_reason: BreakGlass = None,
) -> ConsentsOut:
    state = await readable_case(request, principal, case_id)
    # consent documents are read by every agency on the case (a handoff depends on them): case_notes
    masked = await _log_read(
        request, principal, state, "read_consents", Section.case_notes, break_glass_reason
    )
    runtime = runtime_of(request)
    history, total = await repo.list_consents(
        runtime.pool, runtime.ring, case_id, limit, offset, purpose.value if purpose else None
    )
    return ConsentsOut(
        case_id=case_id,
        current=dict(state.consents),
        history=[h.masked() for h in history] if masked else history,
        total=total,
        masked=masked,
    )
