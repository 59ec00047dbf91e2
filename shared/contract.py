"""The CaseWorkflow's contract: its input, the commands (Updates) and the state it returns.

Nothing here is personal data. The workflow carries ids and non-identifying facts only (age band,
channel, category); names, narratives and notes live in the services' encrypted tables and the
workflow sees only their ids. Pure pydantic, no I/O: imported inside the workflow sandbox."""

from __future__ import annotations

from datetime import date, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from vietnam_provinces import ProvinceCode

from shared.access import CaseAccessFacts, FormerJurisdiction
from shared.domain import (
    AgeBand,
    AgencyRole,
    CaseStatus,
    Channel,
    DecisionMakingOrg,
    Outcome,
    Role,
    Section,
    Stage,
    TraffickingStatus,
)
from shared.policy import CasePolicy

Reason = Annotated[
    str,
    Field(
        min_length=3,
        max_length=500,
        description="why; recorded in the audit log. No personal data.",
    ),
]
Ref = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$")]
# the 34 official province codes after the 1 July 2025 reform (the `vietnam-provinces` package), two digits
VN_PROVINCE_CODES: frozenset[str] = frozenset(f"{int(c.value):02d}" for c in ProvinceCode)
ProvinceRef = Annotated[
    str,
    Field(
        min_length=2,
        max_length=2,
        pattern=r"^[0-9]{2}$",
        description="a Vietnamese province code (2025 reform), e.g. 40 Nghệ An",
    ),
]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Actor(Frozen):
    """Who acts: from the verified token, never from the request body. Non-PII."""

    user_id: str = Field(min_length=1, max_length=128)
    agency: AgencyRole
    roles: frozenset[Role]
    province: str = Field(min_length=1, max_length=8)
    commune: str | None = None
    request_id: str | None = Field(default=None, max_length=128)

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.admin in self.roles

    def covers_province(self, province: str) -> bool:
        return self.province == "*" or self.province == province


class CaseFacts(Frozen):
    """Non-identifying facts fixed at opening (intake decides them)."""

    case_id: Ref
    person_ref: Ref = Field(description="opaque id of the person in intake's registry")
    province: str = Field(min_length=1, max_length=8)
    commune: str | None = Field(default=None, max_length=8)
    channel: Channel
    age_band: AgeBand = AgeBand.unknown
    sex: str | None = Field(
        default=None,
        max_length=40,
        description="HTCDS prs_Gender, a statistical fact for the committee's figures (null: not known, "
        "or a case opened before it was carried)",
    )
    abroad: bool = Field(
        default=False, description="the person is still abroad / returning through an embassy"
    )
    foreign_national: bool = False
    already_safe: bool = Field(default=True, description="False when a rescue is needed")
    opened_by: Actor
    opened_at: AwareDatetime

    @property
    def child(self) -> bool:
        return self.age_band in (AgeBand.under_16, AgeBand.age_16_17)

    @property
    def categories(self) -> list[str]:
        cats = ["child" if self.child else "adult", "abroad" if self.abroad else "domestic"]
        if self.age_band == AgeBand.under_16:
            cats.append("under_16")
        if self.foreign_national:
            cats.append("foreign")
        return cats


# ---- decisions, one per stage ----------------------------------------------------------------
class Classification(StrEnum):
    trafficking_suspected = "trafficking_suspected"
    other_crime = "other_crime"
    not_relevant = "not_relevant"


class ReceiveDecision(Frozen):
    stage: Literal[Stage.receive] = Stage.receive
    classification: Classification
    channel: Channel


class VerifyResult(StrEnum):
    confirmed = "confirmed"
    unfounded = "unfounded"


class VerifyDecision(Frozen):
    stage: Literal[Stage.verify] = Stage.verify
    result: VerifyResult


class EvidenceKind(StrEnum):
    """Law 53/2024 Art. 32 kinds of evidence for identification."""

    criminal_justice_material = "criminal_justice_material"
    rescuer_information = "rescuer_information"
    embassy_material = "embassy_material"
    domestic_or_foreign_body = "domestic_or_foreign_body"
    statement_of_person = "statement_of_person"
    statement_of_relative = "statement_of_relative"
    statement_of_trafficker = "statement_of_trafficker"
    statement_of_other_victim = "statement_of_other_victim"
    statement_of_witness = "statement_of_witness"
    other_lawful = "other_lawful"


class EvidenceRef(Frozen):
    """Metadata of an evidence item (the item itself is stored by verification)."""

    evidence_id: Ref
    kind: EvidenceKind


class IdentifyDecision(Frozen):
    stage: Literal[Stage.identify] = Stage.identify
    status: TraffickingStatus
    deciding_org: DecisionMakingOrg
    evidence: list[EvidenceRef] = Field(default_factory=list, max_length=200)
    referred_elsewhere: str | None = Field(
        default=None, max_length=200, description="for not-a-victim: where the person was referred"
    )


class RescueDecision(Frozen):
    stage: Literal[Stage.rescue] = Stage.rescue
    needed: bool
    operation_ref: Ref | None = None
    outcome: Literal["rescued", "not_found", "postponed"] | None = None


class ProtectDecision(Frozen):
    stage: Literal[Stage.protect] = Stage.protect
    measures: list[str] = Field(default_factory=list, max_length=20)
    declined: bool = False
    refusal_document_ref: Ref | None = Field(
        default=None, description="the person's written refusal"
    )


class ReintegrateDecision(Frozen):
    stage: Literal[Stage.reintegrate] = Stage.reintegrate
    support_plan_ref: Ref
    cas_status: Literal[CaseStatus.Closed, CaseStatus.ClosedReferred] = CaseStatus.Closed
    reason: Reason


StageDecision = Annotated[
    ReceiveDecision
    | VerifyDecision
    | IdentifyDecision
    | RescueDecision
    | ProtectDecision
    | ReintegrateDecision,
    Field(discriminator="stage"),
]


# ---- commands (Updates) --------------------------------------------------------------------
class Command(Frozen):
    actor: Actor
    expected_version: int | None = Field(
        default=None, ge=0, description="reject with 409 if the case moved on since this version"
    )


class StageOwnerCommand(Command):
    """A command only the agency owning the current stage gives. A supervisor of another agency may give
    it as an explicit override with a reason, recorded as such in the audit log."""

    override_reason: Reason | None = Field(
        default=None,
        description="supervisor of another agency only: why you act on a stage your agency "
        "does not own (recorded in the audit log). No personal data.",
    )


class Claim(StageOwnerCommand):
    """The actor takes the current stage."""


class Assign(StageOwnerCommand):
    assignee_user_id: str = Field(min_length=1, max_length=128)


class Decide(StageOwnerCommand):
    decision: StageDecision
    justification: Reason


class AddNote(Command):
    section: Section
    note_id: Ref


class ConsentPurpose(StrEnum):
    support = "support"
    data_sharing = "data_sharing"
    research = "research"


class RecordConsent(Command):
    purpose: ConsentPurpose
    granted: bool
    agency: AgencyRole | None = Field(
        default=None, description="for data_sharing: with which agency"
    )
    province: ProvinceRef | None = Field(
        default=None,
        description="for data_sharing with an agency of another province (a transfer there): "
        "which province; the consent then covers that province's agency only",
    )
    document_ref: Ref | None = None


def consent_key(
    purpose: ConsentPurpose | str, agency: AgencyRole | None, province: str | None = None
) -> str:
    """The key of a consent in CaseState.consents: purpose[:agency[@province]]."""
    key = str(purpose) + (f":{agency.value}" if agency else "")
    return key + (f"@{province}" if agency and province else "")


class HandoffKind(StrEnum):
    transfer = "transfer"  # ownership moves
    referral = "referral"  # an agency joins, ownership stays


class HandoffState(StrEnum):
    requested = "requested"
    accepted = "accepted"
    rejected = "rejected"
    revoked = "revoked"
    done = "done"


class RequestHandoff(StageOwnerCommand):
    kind: HandoffKind
    to_agency: AgencyRole
    to_province: ProvinceRef | None = Field(
        default=None,
        description="transfer only: the province of the receiving agency when it is not the case's "
        "(the case travels with the person); on acceptance the jurisdiction, the "
        "owner and the deadlines follow that province",
    )
    reason: Reason
    consent_override_reason: Reason | None = Field(
        default=None, description="supervisor only: share without the person's data-sharing consent"
    )


class RespondHandoff(Command):
    handoff_id: Ref
    accept: bool
    reason: Reason | None = Field(default=None, description="required when rejecting")


class RevokeHandoff(Command):
    handoff_id: Ref
    reason: Reason


class ExtendDeadline(Command):
    """Supervisor only. Moves the current stage's deadline (or a handoff's) durably."""

    extend_by: timedelta = Field(gt=timedelta(0), le=timedelta(days=365))
    reason: Reason
    handoff_id: Ref | None = None


class Escalate(Command):
    """Supervisor: raise the escalation level by hand."""

    reason: Reason


class Reopen(Command):
    """Supervisor: bring a closed (or early-ended) case back to a stage."""

    to_stage: Stage
    reason: Reason


class EndCase(StageOwnerCommand):
    """End the case early with one of the early outcomes."""

    outcome: Literal[
        Outcome.consent_withdrawn,
        Outcome.transferred_jurisdiction,
        Outcome.lost_contact,
        Outcome.deceased,
    ]
    reason: Reason
    to_country: str | None = Field(
        default=None,
        min_length=2,
        max_length=2,
        pattern=r"^[A-Z]{2}$",
        description="transferred_jurisdiction: the country (ISO 3166-1 alpha-2, not VN) whose system takes the "
        "case over; a case moving to another Vietnamese province is a transfer handoff instead",
    )
    to_province: str | None = Field(
        default=None,
        max_length=8,
        description="transferred_jurisdiction: the destination's region in that "
        "country, if any (never a Vietnamese province code)",
    )


class RecordFollowUp(StageOwnerCommand):
    follow_up_id: Ref
    outcome: Literal["done", "missed", "not_reachable"]
    note_id: Ref | None = None


class RecordService(Command):
    """A support service delivered (the details live in support's tables)."""

    service_id: Ref
    service_type: str = Field(min_length=1, max_length=64)


# issue 15 items 3 and 4: protection and rescue recorded when they happen, the stage unchanged
PROTECTION_AGENCIES: frozenset[AgencyRole] = frozenset(
    {AgencyRole.police, AgencyRole.border_guard, AgencyRole.coast_guard}
)  # the police lead on protection (DOMAIN.md §1 Bảo vệ: Police [S:003]); border and coast guard are
# the police-side forces that meet the person first at a border or at sea (policy stage_owners)
RESCUE_AGENCIES: frozenset[AgencyRole] = PROTECTION_AGENCIES  # the rescuing forces (Art. 28)


class RecordProtection(Command):
    """Protection measures decided for the person and their relatives at any stage from receipt, by the
    police (PROTECTION_AGENCIES): Law 53/2024 Art. 34 protects victims, suspected victims, accompanying
    children, relatives and helpers, so protection does not wait for identification. The case stays in its
    stage; the protect stage after identification still takes its own decision."""

    measures: list[str] = Field(min_length=1, max_length=20)
    justification: Reason


class RecordRescue(Command):
    """A rescue operation's outcome, recorded when it happens, at any open stage but the rescue stage
    (there the outcome is the stage's decision). The case stays in its stage (identification is not
    skipped); a recorded `rescued` outcome is the rescue stage's decision when identification leads there."""

    operation_ref: Ref
    outcome: Literal["rescued", "not_found", "postponed"]
    justification: Reason


# ---- state ---------------------------------------------------------------------------------
class Deadline(Frozen):
    due_at: AwareDatetime
    source: str = Field(description="the policy entry id and its legal citation")
    reminder_at: AwareDatetime | None = None
    reminder_sent: bool = False
    extended_by: timedelta = timedelta(0)
    stage: Stage | None = None


class Handoff(Frozen):
    handoff_id: str
    kind: HandoffKind
    from_agency: AgencyRole
    to_agency: AgencyRole
    state: HandoffState
    requested_at: AwareDatetime
    requested_by: str
    accept_by: AwareDatetime
    responded_at: AwareDatetime | None = None
    reason: str | None = None
    escalation_level: int = 0
    consent_overridden: bool = False
    from_province: str | None = Field(
        default=None, description="the case's province when requested"
    )
    to_province: str | None = Field(
        default=None,
        description="a transfer to another province: the receiving "
        "agency's province (None: the case's own)",
    )
    responded_by: str | None = None

    @property
    def crosses_province(self) -> bool:
        return self.to_province is not None and self.to_province != self.from_province


class JurisdictionSpell(Frozen):
    """A province that held the case, from when until when (None: it holds it now)."""

    province: str
    since: AwareDatetime
    until: AwareDatetime | None = None
    arrived_by: str | None = Field(
        default=None, description="the transfer handoff that brought the case here"
    )
    agencies: list[AgencyRole] = Field(
        default_factory=list,
        description="on leaving: the owner and participants while the case was here "
        "(they keep reading what they did up to `until`)",
    )


class StageRecord(Frozen):
    stage: Stage
    entered_at: AwareDatetime
    owner_agency: AgencyRole
    decided_at: AwareDatetime | None = None
    decided_by: str | None = None
    decision: StageDecision | None = None
    skipped: bool = False


class ProtectionRecord(Frozen):
    """Protection measures recorded by RecordProtection (issue 15 item 3)."""

    measures: list[str]
    decided_at: AwareDatetime
    decided_by: str
    agency: AgencyRole
    stage: Stage = Field(description="the case's stage when the measures were decided")


class RescueRecord(Frozen):
    """A rescue operation's outcome recorded by RecordRescue (issue 15 item 4)."""

    operation_ref: str
    outcome: Literal["rescued", "not_found", "postponed"]
    recorded_at: AwareDatetime
    recorded_by: str
    agency: AgencyRole
    stage: Stage = Field(description="the case's stage when the outcome was recorded")


class FollowUp(Frozen):
    follow_up_id: str
    due_at: AwareDatetime
    outcome: str | None = None
    recorded_at: AwareDatetime | None = None
    notified: bool = False


class CaseState(Frozen):
    """The full current state of a case, without PII (the `state` query and every Update's result)."""

    case_id: str
    version: int
    stage: Stage
    status: CaseStatus
    outcome: Outcome | None = None
    facts: CaseFacts
    owner_agency: AgencyRole
    province: str
    participants: list[AgencyRole] = Field(default_factory=list)
    assignee: str | None = None
    deadline: Deadline | None = None
    escalation_level: int = 0
    trafficking_status: TraffickingStatus = TraffickingStatus.PossibleVictimOfTrafficking
    handoffs: list[Handoff] = Field(default_factory=list)
    consents: dict[str, bool] = Field(
        default_factory=dict, description="purpose[:agency] -> granted"
    )
    stages: list[StageRecord] = Field(default_factory=list)
    follow_ups: list[FollowUp] = Field(default_factory=list)
    services_delivered: int = 0
    reflection_until: AwareDatetime | None = None
    jurisdictions: list[JurisdictionSpell] = Field(
        default_factory=list,
        description="the provinces that held the case, in order (the last holds it now); "
        "empty in states recorded before transfers between provinces",
    )
    protections: list[ProtectionRecord] = Field(
        default_factory=list,
        description="protection measures decided at any stage (issue 15 item 3), oldest first",
    )
    rescues: list[RescueRecord] = Field(
        default_factory=list,
        description="rescue outcomes recorded outside the rescue stage (issue 15 item 4), oldest first",
    )
    policy_version: str
    last_event_seq: int = 0
    opened_at: AwareDatetime | None = None
    closed_at: AwareDatetime | None = None
    updated_at: AwareDatetime

    def access_facts(self) -> CaseAccessFacts:
        pending = [h for h in self.handoffs if h.state == HandoffState.requested]
        here = [h for h in pending if h.to_province is None or h.to_province == self.province]
        return CaseAccessFacts(
            province=self.province,
            commune=self.facts.commune,
            owner_agency=self.owner_agency,
            participants=frozenset(self.participants),
            pending_invitees=frozenset(h.to_agency for h in here),
            invited_elsewhere=frozenset(
                (h.to_province, h.to_agency)
                for h in pending
                if h.to_province is not None and h.to_province != self.province
            ),
            former=tuple(
                FormerJurisdiction(
                    province=j.province, agencies=frozenset(j.agencies), until=j.until
                )
                for j in self.jurisdictions
                if j.until is not None
            ),
        )

    def pending_transfer(self) -> Handoff | None:
        """The transfer to another province waiting for an answer, if any (at most one transfer waits)."""
        return next(
            (
                h
                for h in self.handoffs
                if h.state == HandoffState.requested
                and h.kind == HandoffKind.transfer
                and h.to_province is not None
                and h.to_province != self.province
            ),
            None,
        )


APPLIED_UPDATE_IDS_KEPT = 256


class CaseInput(Frozen):
    facts: CaseFacts
    carried: CaseState | None = Field(
        default=None, description="state carried over by continue-as-new"
    )
    policy: CasePolicy | None = Field(
        default=None, description="policy resolved at opening, carried over"
    )
    history_limit: int = Field(
        default=8000,
        ge=50,
        le=40000,
        description="continue-as-new after this many history events (server hard limit 51,200)",
    )
    max_updates_per_run: int = Field(
        default=1000,
        ge=10,
        le=1900,
        description="continue-as-new after this many Updates (server cap: 2000 per run)",
    )
    oversight_task_queue: str = Field(
        default="nrm-oversight",
        description="where the audit activity runs; "
        "only tests change it, to isolate one test's cases from another's",
    )
    initial_decision: Decide | None = Field(
        default=None,
        description="the receive-stage decision taken at handover (bulk intake's entry decision, "
        "by the opener): applied in the first workflow task exactly as the `decide` "
        "Update would be (same checks; `stage_decided` recorded after `case_opened`); "
        "never carried over by continue-as-new",
    )
    applied_update_ids: list[str] = Field(
        default_factory=list,
        max_length=APPLIED_UPDATE_IDS_KEPT,
        description="ids of the latest Updates applied by earlier runs: Temporal deduplicates an Update id "
        "within one run only, so a retry that reaches the run after a continue-as-new is "
        "answered from here instead of being applied twice",
    )


# ---- what activities receive -----------------------------------------------------------------
class CaseEvent(Frozen):
    """One audit-log event. Idempotent on event_id (retries never duplicate)."""

    event_id: str
    case_id: str
    seq: int = Field(ge=1, description="per-case order")
    occurred_at: AwareDatetime
    kind: str = Field(
        description="e.g. case_opened, stage_decided, handoff_requested, deadline_escalated"
    )
    actor_user_id: str
    actor_agency: AgencyRole | None = None
    stage: Stage
    reason: str | None = None
    request_id: str | None = None
    policy_version: str
    data: dict[str, object] = Field(default_factory=dict, description="non-PII details")
    state: CaseState = Field(
        description="state after the event; kept as the case_summary projection"
    )


class Notification(Frozen):
    notification_id: str
    case_id: str
    kind: Literal[
        "reminder",
        "escalation",
        "handoff_requested",
        "handoff_escalation",
        "follow_up_due",
        "handoff_accepted",
        "handoff_rejected",
    ]
    level: int = 0
    recipients: list[str] = Field(
        description="agency roles / 'supervisor' / 'agency_head' / 'steering_committee'; "
        "'<recipient>@<province>' when a handoff crosses provinces (both "
        "the sending and the receiving province are addressed)"
    )
    stage: Stage
    due_at: AwareDatetime | None = None
    created_at: AwareDatetime


class RecordBatch(Frozen):
    """What the workflow hands the oversight activity in one call: events in order, notifications."""

    events: list[CaseEvent] = Field(default_factory=list)
    notifications: list[Notification] = Field(default_factory=list)


class SupportPlanRef(Frozen):
    plan_id: Ref
    planned_end: date | None = None
