"""Opening a case: person + intake row in one transaction, then the CaseWorkflow start.

The start happens after the commit and is idempotent (workflow id = case id, a second start raises
WorkflowAlreadyStartedError which counts as started). If the process dies between the commit and
the start, `workflow_started_at` stays NULL: a retry with the same Idempotency-Key starts it, and
`reconcile_workflow_starts` (run at start-up and periodically, also an activity) starts any case
left behind. The workflow input is rebuilt from the committed row, so every path starts the same
workflow."""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError

from shared import case_index
from shared.access import CaseAccessFacts, acts_as_stage_owner, can_act_on_case
from shared.auth import Principal
from shared.contract import Actor, CaseFacts, CaseInput, Classification, Decide, ReceiveDecision
from shared.crypto import CryptoError, KeyRing
from shared.domain import AgeBand, AgencyRole, CaseStatus, Channel, Stage
from shared.runtime import Runtime
from shared.temporal import (
    CASE_CATEGORY,
    CASE_STAGE,
    CASE_STATUS,
    JURISDICTION,
    OVERSIGHT_TASK_QUEUE,
    OWNER_AGENCY,
    WORKFLOW_TASK_QUEUE,
)
from workflows.policy_activity import case_policy_for, current_policy

from . import dedupe, repository
from .dedupe import full_name, identity_key, name_year_key
from .models import EntryDecision, OpenCaseRequest
from .person import age_band, birth_year_of, encrypt_person

log = structlog.get_logger("intake")
REQUEST_HASH_PURPOSE = "intake.open_request"


def oversight_task_queue(runtime: Runtime) -> str:
    """Where the case's audit activity runs: the oversight service's queue (tests route it to their own)."""
    return str(runtime.extras.get("oversight_task_queue", OVERSIGHT_TASK_QUEUE))


def workflow_task_queue(runtime: Runtime) -> str:
    return str(runtime.extras.get("workflow_task_queue", WORKFLOW_TASK_QUEUE))


def request_hash(runtime: Runtime, req: OpenCaseRequest) -> str:
    """Keyed hash of the canonical request (a plain hash of personal data could be brute-forced)."""
    canonical = json.dumps(req.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return runtime.ring.blind_index(canonical, REQUEST_HASH_PURPOSE)


def build_new_case(
    runtime: Runtime,
    req: OpenCaseRequest,
    principal: Principal,
    *,
    idem_key: str | None,
    request_id: str | None,
    source: str,
    now: datetime | None = None,
    entry: EntryDecision | None = None,
) -> repository.NewCase:
    ring = runtime.ring
    p = req.person
    today = (now or datetime.now(UTC)).date()
    band = age_band(
        birthdate=p.prs_Birthdate, birth_year=p.birth_year, estimated_age=p.estimated_age, on=today
    )
    person_id, case_id = (
        repository.new_id("p"),
        repository.new_id("c"),
    )  # ciphertexts are bound to their rows
    person: dict[str, Any] = {
        **encrypt_person(ring, req, person_id),
        "created_by": principal.user_id,
        "age_band": band.value,
        "age_estimated": p.prs_Birthdate is None
        and p.birth_year is None
        and p.estimated_age is not None,
        "estimated_age": p.estimated_age,
        "gender": p.prs_Gender,
        "citizenship": list(p.prs_Citizenship),
        "primary_language": p.prs_PrimaryLanguage,
        "secondary_language": p.prs_SecondaryLanguage,
        "marital_status": p.prs_MaritalStatus,
        "education": p.prs_HighestLevelOfEducation,
        "number_of_children": p.prs_NumberOfChildren,
        "deceased": p.prs_Deceased,
        "mailing_country": p.prs_MailingCountry,
        "no_documents": p.no_documents,
        "province": req.province,
        "commune": req.commune,
        "agreement_to_manage_data": p.vic_AgreementToManagePersonalData,
        "consent": req.con_Consent,
    }
    report = req.report
    case: dict[str, Any] = {
        "channel": req.channel.value,
        "province": req.province,
        "commune": req.commune,
        "age_band": band.value,
        "sex": p.prs_Gender,
        "abroad": req.abroad,
        "foreign_national": req.is_foreign,
        "already_safe": req.already_safe,
        "opened_by": principal.user_id,
        "opened_by_agency": principal.agency.value,
        "opened_by_roles": sorted(r.value for r in principal.roles),
        "opened_by_province": principal.province,
        "opened_by_commune": principal.commune,
        "request_id": request_id,
        "source": source,
        "received_at": report.received_at if report else None,
        "report_summary": ring.encrypt_field(
            report.summary if report else None, "intake_cases.report_summary", row=case_id
        ),
        "referring_organisation": report.cas_ReferringOrganisation if report else None,
        "incoming_referral_reason": report.cas_ReasonForIncomingReferral if report else None,
        "incoming_referral_date": report.cas_IncomingReferralDate if report else None,
        "incoming_referral_details": ring.encrypt_field(
            report.cas_IncomingReferralDetails if report else None,
            "intake_cases.incoming_referral_details",
            row=case_id,
        ),
        # Without a key every request is a new case: two persons with the same facts (unnamed, same
        # birth year, rescued together) are two people, flagged as possible duplicates, never merged.
        "idem_user": principal.user_id,
        "idem_key": idem_key or None,
        "request_hash": request_hash(runtime, req) if idem_key else None,
        # the receive decision taken at handover: the workflow applies it when it starts
        "entry_classification": entry.classification.value if entry else None,
    }
    case["entry_justification"] = seal_justification(
        ring, entry.justification if entry else None, "intake_cases", case_id
    )
    name = full_name(p.prs_FirstName, p.prs_MiddleName, p.prs_SecondName)
    comparable, evidence_columns = dedupe.stored(
        ring,
        dedupe.evidence(
            ring,
            identity_number=p.prs_IdentityNumber,
            first=p.prs_FirstName,
            middle=p.prs_MiddleName,
            second=p.prs_SecondName,
            birth_date=p.prs_Birthdate.isoformat() if p.prs_Birthdate else None,
            birth_year=birth_year_of(req),
            phone=p.prs_MobilePhone,
            commune=req.commune,
            province=req.province,
        ),
    )
    return repository.NewCase(
        case_id=case_id,
        person_id=person_id,
        person={**person, **evidence_columns},
        case=case,
        identity_bidx=identity_key(ring, p.prs_IdentityNumber),
        name_year_bidx=name_year_key(ring, name, birth_year_of(req), req.province),
        evidence=comparable,
    )


def facts_from_row(row: asyncpg.Record) -> CaseFacts:
    actor = Actor(
        user_id=row["opened_by"],
        agency=row["opened_by_agency"],
        roles=frozenset(row["opened_by_roles"]),
        province=row["opened_by_province"],
        commune=row["opened_by_commune"],
        request_id=row["request_id"],
    )
    return CaseFacts(
        case_id=row["case_id"],
        person_ref=row["person_id"],
        province=row["province"],
        commune=row["commune"],
        channel=Channel(row["channel"]),
        age_band=AgeBand(row["age_band"]),
        sex=row["sex"],
        abroad=row["abroad"],
        foreign_national=row["foreign_national"],
        already_safe=row["already_safe"],
        opened_by=actor,
        opened_at=row["opened_at"],
    )


def search_attributes(facts: CaseFacts) -> TypedSearchAttributes:
    """Non-PII only: search attributes are never encrypted."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(CASE_STAGE, Stage.receive.value),
            SearchAttributePair(JURISDICTION, facts.province),
            SearchAttributePair(OWNER_AGENCY, facts.opened_by.agency.value),
            SearchAttributePair(CASE_STATUS, CaseStatus.Active.value),
            SearchAttributePair(CASE_CATEGORY, facts.categories),
        ]
    )


def seal_justification(ring: KeyRing, text: str | None, table: str, row: str) -> bytes | None:
    """An entry decision's justification at rest: encrypted and bound to its row, like every reason."""
    return ring.encrypt_field(text, f"{table}.entry_justification", row=row)


def open_justification(ring: KeyRing, blob: bytes | None, table: str, row: str) -> str | None:
    if blob is None:
        return None
    try:
        return ring.decrypt_field(blob, f"{table}.entry_justification", row=row)
    except CryptoError:  # written before migration 005: plain UTF-8
        return bytes(blob).decode()


def initial_decision(ring: KeyRing, row: asyncpg.Record, facts: CaseFacts) -> Decide | None:
    """The entry decision stored with the case, as the opener's `decide` (same actor, same request id)."""
    if row["entry_classification"] is None:
        return None
    justification = open_justification(
        ring, row["entry_justification"], "intake_cases", row["case_id"]
    )
    assert justification is not None
    return Decide(
        actor=facts.opened_by,
        justification=justification,
        decision=ReceiveDecision(
            classification=Classification(row["entry_classification"]), channel=facts.channel
        ),
    )


def may_take_entry_decision(principal: Principal, req: OpenCaseRequest) -> str | None:
    """Why the opener may not classify this case at handover (None: they may). The checks classify makes:
    the caller may act on the case (an unstarted case belongs to its opener's agency, in its province),
    and acts as the receive stage's owner (policy file: the opener, unless the channel names another)."""
    facts = CaseAccessFacts(
        province=req.province, commune=req.commune, owner_agency=principal.agency
    )
    if not can_act_on_case(principal, facts):
        return f"agency {principal.agency.value} in province {principal.province} may not act on this case"
    table = current_policy().stage_owners[Stage.receive]
    owner = table.get(req.channel.value, table["default"])
    if owner != "opener" and not acts_as_stage_owner(principal, AgencyRole(owner)):
        return (
            f"the receive stage of a {req.channel.value} case is owned by {owner}, not "
            f"{principal.agency.value}: open it without an entry decision and let {owner} classify it"
        )
    return None


async def start_case_workflow(runtime: Runtime, row: asyncpg.Record) -> bool:
    """Start (or find already started) the case's workflow and record it. False when Temporal failed."""
    facts = facts_from_row(row)
    try:
        await runtime.temporal.start_workflow(
            "CaseWorkflow",
            CaseInput(
                facts=facts,
                oversight_task_queue=oversight_task_queue(runtime),
                initial_decision=initial_decision(runtime.ring, row, facts),
                # resolved here: the case's first workflow task needs no local activity
                policy=case_policy_for(facts),
            ),
            id=facts.case_id,
            task_queue=workflow_task_queue(runtime),
            search_attributes=search_attributes(facts),
            # a case id never runs twice, even after its workflow closed
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        )
        log.info("case_workflow_started", case_id=facts.case_id)
    except WorkflowAlreadyStartedError:
        log.info("case_workflow_already_started", case_id=facts.case_id)
    except (RPCError, RuntimeError, OSError) as exc:
        log.warning("case_workflow_start_failed", case_id=facts.case_id, error=type(exc).__name__)
        return False
    started_marks(runtime).add(facts.case_id)
    return True


class StartedMarks:
    """The workflow-started hints, written in one UPDATE per short window instead of a transaction per
    case (the hint only spares the reconcile loop a start that Temporal would answer "already started",
    so losing a window of them in a crash costs nothing but that). `flush` runs at shutdown too."""

    WINDOW_SECONDS = 0.05

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._pending: set[str] = set()
        self._flusher: asyncio.Task[None] | None = None
        # a flush returns once every mark added before it is written, also those a concurrent flush took
        self._writing = asyncio.Lock()

    def add(self, case_id: str) -> None:
        self._pending.add(case_id)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="intake-started-marks")

    async def _flush_soon(self) -> None:
        await asyncio.sleep(self.WINDOW_SECONDS)
        await self.flush()

    async def flush(self) -> None:
        async with self._writing:
            ids, self._pending = sorted(self._pending), set()
            if not ids:
                return
            try:
                await repository.mark_workflows_started(self._pool, ids)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning(
                    "started_marks_lost", count=len(ids), error=type(exc).__name__
                )  # reconcile redoes them

    async def close(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.flush()


def started_marks(runtime: Runtime) -> StartedMarks:
    marks = runtime.extras.get("started_marks")
    if marks is None:
        marks = runtime.extras["started_marks"] = StartedMarks(runtime.pool)
    assert isinstance(marks, StartedMarks)
    return marks


async def open_case(
    runtime: Runtime,
    req: OpenCaseRequest,
    principal: Principal,
    *,
    idem_key: str | None,
    request_id: str | None,
    source: str,
    entry: EntryDecision | None = None,
    also: repository.AlsoWrite | None = None,
) -> tuple[repository.OpenOutcome, bool]:
    """Returns the outcome and whether the workflow is started. Raises IdempotencyConflict. `also` writes
    in the opening transaction (only when this call creates the case)."""
    new = build_new_case(
        runtime,
        req,
        principal,
        idem_key=idem_key,
        request_id=request_id,
        source=source,
        entry=entry,
    )
    return await open_new_case(runtime, new, source=source, also=also)


async def open_new_case(
    runtime: Runtime,
    new: repository.NewCase,
    *,
    source: str,
    also: repository.AlsoWrite | None = None,
) -> tuple[repository.OpenOutcome, bool]:
    """`open_case` for a case already built (bulk intake builds rows ahead, to order their duplicates)."""
    outcome = await repository.open_case_once(runtime.pool, new, also)
    case_id = outcome.case["case_id"]
    if outcome.created:
        log.info("case_opened", case_id=case_id, duplicates=len(outcome.duplicates), source=source)
    else:
        log.info("case_open_replayed", case_id=case_id)
    started = outcome.case["workflow_started_at"] is not None or await start_case_workflow(
        runtime, outcome.case
    )
    if started:  # listed on the screens at once (shared/case_index.py; version 0 never overwrites a newer state)
        await case_index.record_opened(runtime.pool, facts_from_row(outcome.case))
    return outcome, started


async def reconcile_workflow_starts(
    runtime: Runtime, older_than: timedelta = timedelta(seconds=30), limit: int = 200
) -> list[str]:
    """Start the workflows of committed cases whose start never happened. Returns the case ids started."""
    started = []
    await started_marks(runtime).flush()  # starts this process already made are not "unstarted"
    for row in await repository.unstarted_cases(runtime.pool, older_than, limit):
        if await start_case_workflow(runtime, row):
            started.append(row["case_id"])
    await started_marks(runtime).flush()  # a batch job leaves its marks written when it returns
    if started:
        log.info("case_workflows_reconciled", count=len(started))
    return started
