"""The case's state machine as plain data and plain functions: no Temporal, no I/O, no clock.

- `CaseData`: the mutable state CaseWorkflow keeps, declared once. Its fields are CaseState's own
  (the contract) minus what the workflow holds elsewhere (case_id and facts, policy_version), so the
  carried state is read and the snapshot written by one loop over the fields.
- `check_*`: which action is valid now. Each returns a `Refusal` (the error type the Update answers
  with: forbidden 403, conflict / stale 409, invalid 422, not_found 404) or None. Who may act at all
  (access, supervisor, stage owner, version) is checked by the workflow before these.
- `check_handoff_request`, `check_consent`, `has_consent`: handoffs and the person's consent to them.
- `check_protection`, `check_rescue_record`, `rescued_earlier`: protection measures and rescue outcomes
  recorded when they happen, at any stage from receipt, without moving the case (issue 15 items 3, 4).
- `decide`: what a stage decision does (a `Transition`: the stage record it completes, the stages it
  enters, the closure it makes, the facts it records), one small function per stage in `_DECISIONS`.

Everything the workflow needs as a time comes in as an argument (`now`), so the same inputs always give
the same answer, inside the workflow or in a unit test."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any, Literal

from shared.contract import (
    PROTECTION_AGENCIES,
    RESCUE_AGENCIES,
    VN_PROVINCE_CODES,
    CaseFacts,
    CaseState,
    Classification,
    ConsentPurpose,
    Deadline,
    EndCase,
    FollowUp,
    Handoff,
    HandoffKind,
    HandoffState,
    IdentifyDecision,
    JurisdictionSpell,
    ProtectDecision,
    ProtectionRecord,
    ReceiveDecision,
    RecordConsent,
    RecordProtection,
    RecordRescue,
    ReintegrateDecision,
    RequestHandoff,
    RescueDecision,
    RescueRecord,
    StageDecision,
    StageRecord,
    VerifyDecision,
    VerifyResult,
    consent_key,
)
from shared.domain import AgencyRole, CaseStatus, Outcome, Role, Stage, TraffickingStatus
from shared.policy import ReflectionPolicy

CLOSED_STATUSES = (CaseStatus.Closed, CaseStatus.ClosedReferred)


# ---- the state -----------------------------------------------------------------------------------
@dataclass
class CaseData:
    """Everything about a case that changes, with CaseState's field names and types."""

    version: int
    stage: Stage
    status: CaseStatus
    outcome: Outcome | None
    owner_agency: AgencyRole
    province: str
    participants: list[AgencyRole]
    assignee: str | None
    deadline: Deadline | None
    escalation_level: int
    trafficking_status: TraffickingStatus
    handoffs: list[Handoff]
    consents: dict[str, bool]
    stages: list[StageRecord]
    follow_ups: list[FollowUp]
    services_delivered: int
    reflection_until: datetime | None
    jurisdictions: list[JurisdictionSpell]
    protections: list[ProtectionRecord]
    rescues: list[RescueRecord]
    last_event_seq: int
    opened_at: datetime
    closed_at: datetime | None
    updated_at: datetime

    @classmethod
    def opening(cls, facts: CaseFacts, now: datetime) -> CaseData:
        """A new case: in receive, owned by the opener's agency, in the opener's province; every other
        field has the contract's default (CaseState)."""
        return cls.carried(
            CaseState(
                case_id=facts.case_id,
                version=0,
                stage=Stage.receive,
                status=CaseStatus.Active,
                facts=facts,
                owner_agency=facts.opened_by.agency,
                province=facts.province,
                jurisdictions=[JurisdictionSpell(province=facts.province, since=facts.opened_at)],
                policy_version="pending",
                opened_at=facts.opened_at,
                updated_at=now,
            ),
            now,
        )

    @classmethod
    def carried(cls, state: CaseState, now: datetime) -> CaseData:
        """The state carried over by continue-as-new. A state recorded by earlier code may lack
        opened_at (then: now) and the provinces that held the case (issue 18: the list starts here)."""
        values = {f.name: _copied(getattr(state, f.name)) for f in fields(cls)}
        values["opened_at"] = state.opened_at or now
        if not state.jurisdictions:
            values["jurisdictions"] = [
                JurisdictionSpell(province=state.province, since=values["opened_at"])
            ]
        return cls(**values)

    def snapshot(self, facts: CaseFacts, policy_version: str) -> CaseState:
        """The CaseState the query, every Update and every audit event carry (lists copied)."""
        return CaseState(
            case_id=facts.case_id,
            facts=facts,
            policy_version=policy_version,
            **{f.name: _copied(getattr(self, f.name)) for f in fields(self)},
        )

    @property
    def closed(self) -> bool:
        return self.status in CLOSED_STATUSES


def _copied(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


# ---- refusals ------------------------------------------------------------------------------------
RefusalKind = Literal["forbidden", "conflict", "invalid", "not_found"]


@dataclass(frozen=True)
class Refusal:
    """Why an action is not valid now; the Update fails with an error of this type and message."""

    kind: RefusalKind
    message: str


def _conflict(message: str) -> Refusal:
    return Refusal("conflict", message)


def _invalid(message: str) -> Refusal:
    return Refusal("invalid", message)


# ---- stage decisions -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Closure:
    outcome: Outcome
    status: CaseStatus


@dataclass(frozen=True)
class Transition:
    """What one stage decision does, in the order the workflow applies it:
    1. `trafficking_status` and `reflection_until`, when given, are set;
    2. `finish`: the current stage's record is decided by the actor with the decision (`skipped`: a
       rescue found not needed);
    3. `enter`: the stages entered in order; each but the last is passed through at once and recorded
       as skipped by the system (a rescue when the person is already safe), or, for the rescue stage
       with `rescue_done`, as decided by that recorded rescue (issue 15 item 4);
    4. `close`: the case closes with this outcome and status.
    No `finish`, `enter` or `close`: an interim decision, the stage goes on.
    `data` is what the `stage_decided` event records besides the decision itself."""

    finish: bool = False
    skipped: bool = False
    enter: tuple[Stage, ...] = ()
    close: Closure | None = None
    trafficking_status: TraffickingStatus | None = None
    reflection_until: datetime | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    rescue_done: RescueRecord | None = None

    @property
    def next_stage(self) -> Stage | None:
        """The stage the case is in afterwards; None when it stays where it is."""
        if self.close is not None:
            return Stage.closed
        return self.enter[-1] if self.enter else None


@dataclass(frozen=True)
class DecisionContext:
    """What a decision's consequences depend on besides the decision itself."""

    already_safe: bool  # CaseFacts.already_safe: no rescue needed
    reflection: ReflectionPolicy  # the reflection and recovery period that verification starts
    now: datetime
    # a rescue that found the person, recorded before identification (issue 15 item 4): the rescue
    # stage's decision, so identification passes the rescue stage without asking for it again
    rescued: RescueRecord | None = None


def _receive(d: ReceiveDecision, ctx: DecisionContext) -> Transition:
    if d.classification == Classification.trafficking_suspected:
        return Transition(finish=True, enter=(Stage.verify,))
    referred = d.classification == Classification.other_crime
    status = CaseStatus.ClosedReferred if referred else CaseStatus.Closed
    return Transition(finish=True, close=Closure(Outcome.not_relevant, status))


def _verify(d: VerifyDecision, ctx: DecisionContext) -> Transition:
    if d.result == VerifyResult.unfounded:
        return Transition(finish=True, close=Closure(Outcome.unfounded, CaseStatus.Closed))
    if not ctx.reflection.enabled:
        return Transition(finish=True, enter=(Stage.identify,))
    until = ctx.now + timedelta(days=ctx.reflection.days)
    return Transition(
        finish=True,
        enter=(Stage.identify,),
        reflection_until=until,
        data={"reflection_until": until.isoformat()},
    )


def _identify(d: IdentifyDecision, ctx: DecisionContext) -> Transition:
    if d.status == TraffickingStatus.PossibleVictimOfTrafficking:
        # identification goes on; the suspected victim keeps their rights
        return Transition(trafficking_status=d.status, data={"interim": True})
    if d.status == TraffickingStatus.NotAVictimOfTrafficking:
        status = CaseStatus.ClosedReferred if d.referred_elsewhere else CaseStatus.Closed
        return Transition(
            trafficking_status=d.status, finish=True, close=Closure(Outcome.not_a_victim, status)
        )
    if (
        ctx.rescued is not None
    ):  # rescued before identification: the rescue stage is already decided
        return Transition(
            trafficking_status=d.status,
            finish=True,
            enter=(Stage.rescue, Stage.protect),
            rescue_done=ctx.rescued,
            data={"rescue_recorded": ctx.rescued.operation_ref},
        )
    if ctx.already_safe:
        return Transition(
            trafficking_status=d.status,
            finish=True,
            enter=(Stage.rescue, Stage.protect),
            data={"rescue_skipped": True},
        )
    return Transition(trafficking_status=d.status, finish=True, enter=(Stage.rescue,))


def _rescue(d: RescueDecision, ctx: DecisionContext) -> Transition:
    if d.needed and d.outcome != "rescued":
        return Transition(data={"interim": True})  # the operation goes on
    return Transition(finish=True, skipped=not d.needed, enter=(Stage.protect,))


def _protect(d: ProtectDecision, ctx: DecisionContext) -> Transition:
    return Transition(finish=True, enter=(Stage.reintegrate,))


def _reintegrate(d: ReintegrateDecision, ctx: DecisionContext) -> Transition:
    return Transition(finish=True, close=Closure(Outcome.reintegrated, d.cas_status))


# one entry per stage that takes a decision (the decision's `stage` discriminates its type)
_DECISIONS: Mapping[Stage, Callable[[Any, DecisionContext], Transition]] = {
    Stage.receive: _receive,
    Stage.verify: _verify,
    Stage.identify: _identify,
    Stage.rescue: _rescue,
    Stage.protect: _protect,
    Stage.reintegrate: _reintegrate,
}


def decide(decision: StageDecision, ctx: DecisionContext) -> Transition:
    """What `decision` does to a case in its stage (check_decision first: the stages must match)."""
    return _DECISIONS[decision.stage](decision, ctx)


def finish_stage(
    case: CaseData,
    actor_id: str,
    decision: StageDecision | None,
    now: datetime,
    skipped: bool = False,
) -> None:
    """The current stage's open record is decided (by `actor_id`, with `decision`)."""
    for i in range(len(case.stages) - 1, -1, -1):
        if case.stages[i].stage == case.stage and case.stages[i].decided_at is None:
            case.stages[i] = case.stages[i].model_copy(
                update={
                    "decided_at": now,
                    "decided_by": actor_id,
                    "decision": decision,
                    "skipped": skipped,
                }
            )
            return


def close(case: CaseData, closure: Closure, now: datetime) -> None:
    """The case closes: accepted handoffs are done, waiting ones revoked, no deadline runs any more."""
    case.outcome = closure.outcome
    case.status = closure.status
    case.closed_at = now
    for i, h in enumerate(case.handoffs):
        if h.state == HandoffState.accepted:
            case.handoffs[i] = h.model_copy(update={"state": HandoffState.done})
        elif h.state == HandoffState.requested:
            case.handoffs[i] = h.model_copy(
                update={"state": HandoffState.revoked, "responded_at": now, "reason": "case closed"}
            )
    case.stage, case.assignee, case.escalation_level, case.deadline = Stage.closed, None, 0, None


def check_decision(case: CaseData, d: StageDecision, now: datetime) -> Refusal | None:
    """Whether a decision may be taken in the case's current stage (after the stage-owner check)."""
    if d.stage != case.stage:
        return _conflict(f"the case is in stage {case.stage.value}, not {d.stage.value}")
    if (
        isinstance(d, IdentifyDecision)
        and d.status != TraffickingStatus.PossibleVictimOfTrafficking
        and not d.evidence
    ):
        return _invalid(
            "an identification decision needs at least one evidence item (Law 53/2024 Art. 32)"
        )
    if isinstance(d, RescueDecision) and d.needed and d.outcome is None:
        return _invalid("a needed rescue records the operation outcome")
    if isinstance(d, ProtectDecision):
        if d.declined and not d.refusal_document_ref:
            return _invalid(
                "declined protection needs the person's written refusal (refusal_document_ref)"
            )
        if not d.declined and not d.measures:
            return _invalid(
                "protection needs at least one measure, or declined with a written refusal"
            )
    if isinstance(d, ReintegrateDecision):
        pending = [f.follow_up_id for f in case.follow_ups if f.outcome is None]
        if pending:
            return _conflict(f"follow-ups still pending: {', '.join(pending)}")
        if case.reflection_until and now < case.reflection_until:
            return _conflict(
                f"reflection and recovery period runs until {case.reflection_until.isoformat()}"
            )
    return None


# ---- the other actions ---------------------------------------------------------------------------
def end_case_closure(outcome: Outcome) -> Closure:
    """An early end: a case leaving the country's system is closed as referred."""
    referred = outcome == Outcome.transferred_jurisdiction
    return Closure(outcome, CaseStatus.ClosedReferred if referred else CaseStatus.Closed)


def check_end_case(
    case: CaseData, cmd: EndCase, now: datetime, *, leaving_rules: bool
) -> Refusal | None:
    """Whether the case may end early with cmd.outcome. `leaving_rules`: issue 18 (transferred_jurisdiction
    is for a case leaving Viet Nam's system; a move to another province is a transfer handoff); False only
    for histories recorded before it, which replay under the earlier rule (another province)."""
    if (
        cmd.outcome == Outcome.lost_contact
        and case.reflection_until
        and now < case.reflection_until
    ):
        return _conflict(
            "no closure for non-cooperation during the reflection and recovery period "
            f"(until {case.reflection_until.isoformat()})"
        )
    if cmd.outcome != Outcome.transferred_jurisdiction:
        return None
    if not leaving_rules:
        if not cmd.to_province or cmd.to_province == case.province:
            return _invalid("transferred_jurisdiction needs to_province, another province")
    elif cmd.to_country is None or cmd.to_country == "VN":
        return _invalid(
            "to_country: transferred_jurisdiction is for a case leaving Viet Nam's system (the "
            "destination country, ISO 3166-1 alpha-2, not VN); to move the case to another "
            "province, request a transfer handoff with to_province"
        )
    elif cmd.to_province is not None and cmd.to_province in VN_PROVINCE_CODES:
        return _invalid(
            f"to_province: {cmd.to_province} is a Vietnamese province code; a case moving to "
            "another province is a transfer handoff with to_province, not an end of the case"
        )
    if not cmd.actor.has(Role.supervisor):
        return Refusal("forbidden", "a transfer to another jurisdiction needs a supervisor")
    return None


def check_reopen(case: CaseData, to_stage: Stage) -> Refusal | None:
    if not case.closed:
        return _conflict("only a closed case can be reopened")
    if to_stage == Stage.closed:
        return _invalid("reopen to an open stage")
    return None


def check_escalate(case: CaseData, top_level: int) -> Refusal | None:
    if case.escalation_level >= top_level:
        return _conflict(
            f"the case is already escalated to the steering committee (level {top_level})"
        )
    return None


def check_follow_up(case: CaseData, follow_up_id: str) -> Refusal | None:
    if case.stage != Stage.reintegrate:
        return _conflict(f"follow-ups belong to reintegration; the case is in {case.stage.value}")
    match = [f for f in case.follow_ups if f.follow_up_id == follow_up_id]
    if not match:
        return Refusal("not_found", f"no follow-up {follow_up_id}")
    if match[0].outcome is not None:
        return _conflict(f"follow-up {follow_up_id} is already recorded")
    return None


def check_service(case: CaseData) -> Refusal | None:
    if case.trafficking_status == TraffickingStatus.NotAVictimOfTrafficking:
        return _conflict("the person was found not to be a victim; support services end")
    return None


def check_consent(cmd: RecordConsent) -> Refusal | None:
    if cmd.purpose == ConsentPurpose.data_sharing and cmd.agency is None and cmd.granted:
        return _invalid("data-sharing consent names the agency it covers")
    if cmd.province is not None and (
        cmd.purpose != ConsentPurpose.data_sharing or cmd.agency is None
    ):
        return _invalid("province: only a data-sharing consent naming an agency names its province")
    if cmd.province is not None and cmd.province not in VN_PROVINCE_CODES:
        return _invalid(f"province: {cmd.province} is not one of the 34 province codes")
    return None


def check_protection(case: CaseData, cmd: RecordProtection) -> Refusal | None:
    """Protection measures at any open stage (the workflow refuses a closed case first), by the police:
    police, border guard or coast guard (Law 53/2024 Art. 34; docs/reference/DOMAIN.md §1)."""
    if cmd.actor.agency not in PROTECTION_AGENCIES and not cmd.actor.has(Role.admin):
        return Refusal(
            "forbidden",
            f"agency {cmd.actor.agency.value}: protection measures are decided by the police "
            "(police, border guard, coast guard; Law 53/2024 Art. 34)",
        )
    if len(set(cmd.measures)) != len(cmd.measures):
        return _invalid("measures: a measure appears twice")
    return None


def check_rescue_record(case: CaseData, cmd: RecordRescue) -> Refusal | None:
    """A rescue outcome recorded when it happens: by a rescuing force, at any open stage but rescue
    (there the outcome is the stage's decision), once per operation unless it was postponed."""
    if cmd.actor.agency not in RESCUE_AGENCIES and not cmd.actor.has(Role.admin):
        return Refusal(
            "forbidden",
            f"agency {cmd.actor.agency.value}: rescue outcomes are recorded by the rescuing force "
            "(police, border guard, coast guard)",
        )
    if case.stage == Stage.rescue:
        return _conflict(
            "the case is in the rescue stage: the operation's outcome is the stage's decision"
        )
    if any(r.operation_ref == cmd.operation_ref and r.outcome != "postponed" for r in case.rescues):
        return _conflict(f"rescue operation {cmd.operation_ref}: its outcome is already recorded")
    return None


def rescued_earlier(case: CaseData) -> RescueRecord | None:
    """The first recorded rescue that found the person, if any."""
    return next((r for r in case.rescues if r.outcome == "rescued"), None)


def has_consent(case: CaseData, agency: AgencyRole, province: str | None = None) -> bool:
    """Data-sharing consent for the agency; for an agency of another province (a transfer there), the
    consent must name that province: the person agreed to their local agency, not to every province's."""
    specific = case.consents.get(
        consent_key(
            ConsentPurpose.data_sharing.value,
            agency,
            province if province not in (None, case.province) else None,
        )
    )
    return bool(specific) if specific is not None else False


def check_handoff_request(case: CaseData, cmd: RequestHandoff) -> Refusal | None:
    """Whether the case may be handed to cmd.to_agency (a transfer: ownership moves, possibly to another
    province; a referral: an agency of the case's province joins), after the stage-owner check."""
    elsewhere = cmd.to_province is not None and cmd.to_province != case.province
    if cmd.to_province is not None:
        if cmd.to_province not in VN_PROVINCE_CODES:
            return _invalid(f"to_province: {cmd.to_province} is not one of the 34 province codes")
        if not elsewhere:
            return _invalid(
                f"to_province: the case is already in province {case.province}; leave it out for "
                "a handoff within the province"
            )
        if cmd.kind != HandoffKind.transfer:
            return _invalid(
                "to_province: only a transfer goes to another province (a referral adds an agency "
                "of the case's own province)"
            )
    if cmd.to_agency == case.owner_agency and not elsewhere:
        return _invalid(f"the case is already owned by {cmd.to_agency.value}")
    if any(
        h.to_agency == cmd.to_agency
        and (h.to_province or case.province) == (cmd.to_province or case.province)
        and h.state == HandoffState.requested
        for h in case.handoffs
    ):
        return _conflict(f"a handoff to {cmd.to_agency.value} is already waiting for acceptance")
    if cmd.kind == HandoffKind.transfer and any(
        h.kind == HandoffKind.transfer and h.state == HandoffState.requested for h in case.handoffs
    ):
        return _conflict("a transfer is already waiting for acceptance")
    if cmd.kind == HandoffKind.referral and cmd.to_agency in case.participants:
        return _conflict(f"{cmd.to_agency.value} already takes part in this case")
    if not has_consent(case, cmd.to_agency, cmd.to_province):
        if cmd.consent_override_reason is None:
            where = f" of province {cmd.to_province}" if elsewhere else ""
            return Refusal(
                "forbidden",
                f"no data-sharing consent for {cmd.to_agency.value}{where}; record consent, or a "
                "supervisor overrides with a reason",
            )
        if not cmd.actor.has(Role.supervisor):
            return Refusal("forbidden", "only a supervisor may override missing consent")
    return None
