"""Reading a person: the object-level check, the section rules, masking and the access log, in one
place (the door every service goes through to read a victim's personal data)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from fastapi import HTTPException, status
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError, RPCStatusCode

from services.intake import htcds
from shared.access import (
    CaseAccessFacts,
    CaseProgress,
    allowed_actions,
    can_read_case,
    pii_masked_for,
    readable_sections,
)
from shared.access_log import AccessRead, record_read
from shared.auth import Principal
from shared.contract import CaseState, ConsentPurpose, HandoffState, consent_key
from shared.domain import AgencyRole, CaseStatus, Section, TraffickingStatus
from shared.runtime import Runtime

from . import repository
from .dedupe import full_name
from .models import HtcdsRecord, NrmExtension, PersonOut, PersonSummary, TraffickingEventIn
from .person import decrypt_person, identity_view, report_view

QUERY_TIMEOUT = timedelta(seconds=10)


def fallback_facts(case: asyncpg.Record) -> CaseAccessFacts:
    """Before the workflow exists (start pending) the opener's agency owns the case."""
    return CaseAccessFacts(
        province=case["province"],
        commune=case["commune"],
        owner_agency=AgencyRole(case["opened_by_agency"]),
    )


def progress_of(state: CaseState) -> CaseProgress:
    """Where the case stands, as `shared.access.allowed_actions` needs it (no PII)."""
    return CaseProgress(
        stage=state.stage,
        closed=state.status in (CaseStatus.Closed, CaseStatus.ClosedReferred),
        assignee=state.assignee,
        escalation_level=state.escalation_level,
        waiting=tuple(
            (h.to_agency, h.to_province, h.kind.value)
            for h in state.handoffs
            if h.state == HandoffState.requested
        ),
        pending_follow_ups=any(f.outcome is None for f in state.follow_ups),
        has_deadline=state.deadline is not None,
        support_ended=state.trafficking_status == TraffickingStatus.NotAVictimOfTrafficking,
        legal_aid_consent=bool(
            state.consents.get(consent_key(ConsentPurpose.data_sharing, AgencyRole.legal_aid))
        ),
    )


def actions_for(principal: Principal, state: CaseState) -> list[str]:
    """What the caller may do on the case now (the action endpoints' own rules)."""
    return allowed_actions(principal, state.access_facts(), progress_of(state))


async def case_state(runtime: Runtime, case: asyncpg.Record) -> CaseState | None:
    """The workflow's state query; None when the workflow was never started. 503 when unreachable.
    Asked even when the row has no started mark yet: marks are written a moment after the start."""
    handle = runtime.temporal.get_workflow_handle(case["case_id"])
    try:
        state: CaseState = await handle.query(
            "state", result_type=CaseState, rpc_timeout=QUERY_TIMEOUT
        )
        return state
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return None
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the case workflow did not answer (is the workflow worker running?)",
        ) from None
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError) as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"case state query failed: {exc}"
        ) from None


async def access_of(
    runtime: Runtime, case: asyncpg.Record
) -> tuple[CaseAccessFacts, CaseState | None]:
    state = await case_state(runtime, case)
    return (state.access_facts() if state else fallback_facts(case)), state


async def case_or_404(runtime: Runtime, case_id: str) -> asyncpg.Record:
    case = await repository.get_case(runtime.pool, case_id)
    if case is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"case {case_id} not found")
    return case


async def readable_case(
    runtime: Runtime, principal: Principal, case_id: str
) -> tuple[asyncpg.Record, CaseAccessFacts, CaseState | None]:
    case = await case_or_404(runtime, case_id)
    facts, state = await access_of(runtime, case)
    if not can_read_case(principal, facts):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"case {case_id} is not open to your agency ({principal.agency.value}) "
            f"in jurisdiction {principal.province}",
        )
    return case, facts, state


SERVICE = "intake"


async def log_read(
    runtime: Runtime,
    principal: Principal,
    case: asyncpg.Record,
    *,
    action: str,
    purpose: str | None,
    break_glass_reason: str | None,
    masked: bool,
    sections: list[str],
    request_id: str | None,
) -> int:
    """One line in the one access log (common.access_log), before any personal data leaves."""
    return await record_read(
        runtime.pool,
        runtime.ring,
        AccessRead(
            service=SERVICE,
            user_id=principal.user_id,
            agency=principal.agency.value,
            roles=[r.value for r in principal.roles],
            case_id=case["case_id"],
            case_province=case["province"],
            action=action,
            sections=sections,
            masked=masked,
            person_id=case["person_id"],
            purpose=purpose,
            break_glass_reason=break_glass_reason,
            request_id=request_id,
        ),
    )


def _decrypt_case_text(runtime: Runtime, case: asyncpg.Record) -> tuple[str | None, str | None]:
    ring = runtime.ring
    return (
        ring.decrypt_field(
            case["report_summary"], "intake_cases.report_summary", row=case["case_id"]
        ),
        ring.decrypt_field(
            case["incoming_referral_details"],
            "intake_cases.incoming_referral_details",
            row=case["case_id"],
        ),
    )


async def read_person(
    runtime: Runtime,
    principal: Principal,
    case: asyncpg.Record,
    facts: CaseAccessFacts,
    *,
    purpose: str | None,
    break_glass_reason: str | None,
    request_id: str | None,
) -> PersonOut:
    person = await repository.get_person(runtime.pool, case["person_id"])
    if person is None:  # pragma: no cover (foreign key)
        raise HTTPException(status.HTTP_404_NOT_FOUND, "person not found")
    masked = pii_masked_for(principal, break_glass=bool(break_glass_reason), facts=facts)
    allowed = readable_sections(principal)
    shown = [s for s in (Section.person_identity, Section.report) if s in allowed]
    withheld = [s.value for s in (Section.person_identity, Section.report) if s not in allowed]
    # the log entry is written before any personal data leaves
    access_id = await log_read(
        runtime,
        principal,
        case,
        action="read_person",
        purpose=purpose,
        break_glass_reason=break_glass_reason,
        masked=masked,
        sections=[s.value for s in shown],
        request_id=request_id,
    )
    clear = decrypt_person(runtime.ring, person)
    summary, details = _decrypt_case_text(runtime, case)
    return PersonOut(
        person_id=person["person_id"],
        case_id=case["case_id"],
        masked=masked,
        erased=person["erased_at"] is not None,
        person_identity=identity_view(clear, person, masked)
        if Section.person_identity in shown
        else None,
        report=report_view(clear, summary, details, masked) if Section.report in shown else None,
        withheld_sections=withheld,
        access_id=access_id,
    )


async def person_summary(
    runtime: Runtime,
    principal: Principal,
    case: asyncpg.Record,
    facts: CaseAccessFacts,
    *,
    break_glass_reason: str | None,
    request_id: str | None,
) -> tuple[PersonSummary | None, bool]:
    if Section.person_identity not in readable_sections(principal):
        return None, False
    person = await repository.get_person(runtime.pool, case["person_id"])
    if person is None:  # pragma: no cover
        return None, False
    masked = pii_masked_for(principal, break_glass=bool(break_glass_reason), facts=facts)
    await log_read(
        runtime,
        principal,
        case,
        action="read_case",
        purpose=None,
        break_glass_reason=break_glass_reason,
        masked=masked,
        sections=[Section.person_identity.value],
        request_id=request_id,
    )
    ring = runtime.ring
    name = full_name(
        *(
            ring.decrypt_field(person[c], f"persons.{c}", row=person["person_id"])
            for c in ("first_name", "middle_name", "second_name")
        )
    )
    if masked and name:
        name = " ".join(p[:1] + "•" * max(len(p) - 1, 2) for p in name.split())
    return PersonSummary(
        person_ref=person["person_id"],
        display_name=name,
        age_band=person["age_band"],
        prs_Gender=person["gender"],
    ), masked


async def export_htcds(
    runtime: Runtime,
    principal: Principal,
    case: asyncpg.Record,
    facts: CaseAccessFacts,
    state: CaseState | None,
    *,
    purpose: str | None,
    break_glass_reason: str | None,
    request_id: str | None,
) -> HtcdsRecord:
    if pii_masked_for(principal, break_glass=bool(break_glass_reason), facts=facts):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "an HTCDS export carries personal data: auditors need break_glass_reason",
        )
    allowed = readable_sections(principal)
    if Section.person_identity not in allowed or Section.report not in allowed:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "an HTCDS export needs the person_identity and report "
            "sections, which your agency may not read",
        )
    person = await repository.get_person(runtime.pool, case["person_id"])
    assert person is not None
    await log_read(
        runtime,
        principal,
        case,
        action="export_htcds",
        purpose=purpose,
        break_glass_reason=break_glass_reason,
        masked=False,
        sections=[Section.person_identity.value, Section.report.value],
        request_id=request_id,
    )
    clear = decrypt_person(runtime.ring, person)
    summary, details = _decrypt_case_text(runtime, case)
    ident = identity_view(clear, person, masked=False).model_dump(exclude_none=True)
    birth_year = ident.pop("birth_year", None)
    for k in ("estimated_age", "age_band", "no_documents"):
        ident.pop(k, None)
    if not ident.get("prs_Citizenship"):
        ident.pop("prs_Citizenship", None)
    victim = dict(
        clear["victim"]
    )  # national extension values export as their nearest HTCDS value (services/intake/htcds.py)
    exploitation, kept = htcds.to_standard(
        "vic_TypeOfExploitation", list(victim.get("vic_TypeOfExploitation") or [])
    )
    if "vic_TypeOfExploitation" in victim:
        victim["vic_TypeOfExploitation"] = exploitation
    detail = victim.pop("nrm_ExploitationDetail", None) or []
    record: dict[str, Any] = {
        **ident,
        **victim,
        "historic_trafficking_events": [
            TraffickingEventIn.model_validate(e) for e in clear["events"]
        ],
        "cas_ReferringOrganisation": case["referring_organisation"],
        "cas_IncomingReferralDate": case["incoming_referral_date"],
        "cas_ReasonForIncomingReferral": case["incoming_referral_reason"],
        "cas_IncomingReferralDetails": details,
        "con_Consent": person["consent"],
        "x_nrm": NrmExtension(
            channel=case["channel"],
            province=case["province"],
            commune=case["commune"],
            abroad=case["abroad"],
            foreign_national=case["foreign_national"],
            already_safe=case["already_safe"],
            birth_year=int(birth_year) if birth_year and not ident.get("prs_Birthdate") else None,
            estimated_age=person["estimated_age"],
            no_documents=person["no_documents"],
            report_received_at=case["received_at"],
            report_summary=summary,
            case_id=case["case_id"],
            age_band=person["age_band"],
            vic_TypeOfExploitation=kept,
            exploitation_detail=detail,
        ),
    }
    if state is not None:
        record["vic_TraffickingStatus"] = state.trafficking_status.value
        record["cas_Status"] = state.status.value
        decided = [
            s for s in state.stages if s.stage.value == "identify" and s.decision is not None
        ]
        if decided:
            record["vic_TraffickingStatusDecisionMakingOrg"] = getattr(
                decided[-1].decision, "deciding_org", None
            )
    return HtcdsRecord.model_validate({k: v for k, v in record.items() if v is not None})
