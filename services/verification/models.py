"""Request and response models of the verification service (pydantic v2; every boundary validated)."""

from __future__ import annotations

import datetime as dt
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from shared.access import mask
from shared.api_models import (
    CaseView,
    In,
    LongText,
    MaskedPage,
    Page,
    Reason,
    Ref,
    ShortText,
    StageOwnerAction,
    Versioned,
)
from shared.contract import (
    Actor,
    Assign,
    Claim,
    Decide,
    EvidenceKind,
    ProtectionRecord,
    RecordProtection,
    RescueDecision,
    RescueRecord,
    VerifyDecision,
    VerifyResult,
)
from shared.criminal_proceedings import (
    DecisionOutcome,
    InvestigationOutcome,
    ProsecutionOutcome,
    Step,
    TrialOutcome,
)
from shared.domain import AgencyRole, DecisionMakingOrg, TraffickingStatus


# ---- claim / assign ---------------------------------------------------------------------------
class ClaimRequest(StageOwnerAction):
    model_config = ConfigDict(json_schema_extra={"examples": [{"expected_version": 3}]})

    def command(self, actor: Actor) -> Claim:
        return Claim(actor=actor, **self.command_fields())


class AssignRequest(StageOwnerAction):
    assignee_user_id: str = Field(
        min_length=1, max_length=128, description="staff user id (not a person)"
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"assignee_user_id": "police-hn-042", "expected_version": 3}]
        }
    )

    def command(self, actor: Actor) -> Assign:
        return Assign(actor=actor, assignee_user_id=self.assignee_user_id, **self.command_fields())


# ---- verification -----------------------------------------------------------------------------
class VerificationRequest(StageOwnerAction):
    result: VerifyResult = Field(
        description="confirmed: grounds to continue; unfounded: the report ends here"
    )
    justification: Reason
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "result": "confirmed",
                    "justification": "joint check with provincial police on day 2",
                    "expected_version": 4,
                }
            ]
        }
    )

    def command(self, actor: Actor) -> Decide:
        return Decide(
            actor=actor,
            decision=VerifyDecision(result=self.result),
            justification=self.justification,
            **self.command_fields(),
        )


# ---- identification -------------------------------------------------------------------------
class EvidenceIn(In):
    """Metadata of one evidence item (Law 53/2024 Art. 32). Files are stored elsewhere."""

    kind: EvidenceKind
    source: ShortText = Field(description="who produced it (body, witness role); encrypted at rest")
    date: dt.date = Field(description="date of the item")
    reference: ShortText | None = Field(
        default=None, description="document number or file reference; encrypted"
    )
    description: LongText | None = Field(default=None, description="free text; encrypted at rest")

    @model_validator(mode="after")
    def _not_future(self) -> EvidenceIn:
        if self.date > dt.date.today():
            raise ValueError("evidence date is in the future")
        return self


class IdentificationRequest(StageOwnerAction):
    status: TraffickingStatus = Field(description="HTCDS vic_TraffickingStatus")
    deciding_org: DecisionMakingOrg = Field(
        description="HTCDS vic_TraffickingStatusDecisionMakingOrg"
    )
    evidence: list[EvidenceIn] = Field(default_factory=list, max_length=50)
    referred_elsewhere: ShortText | None = Field(
        default=None,
        description="for NotAVictimOfTrafficking: where the person was referred (no personal data)",
    )
    justification: Reason

    @model_validator(mode="after")
    def _evidence_for_victim(self) -> IdentificationRequest:
        if self.status == TraffickingStatus.ActualVictimOfTrafficking and not self.evidence:
            raise ValueError(
                "evidence: at least one evidence item is required to identify a victim (Art. 32)"
            )
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ActualVictimOfTrafficking",
                    "deciding_org": "Police",
                    "evidence": [
                        {
                            "kind": "statement_of_person",
                            "source": "provincial police interview",
                            "date": "2026-03-02",
                            "reference": "BB-12/2026",
                        }
                    ],
                    "justification": "statements and border-guard record consistent",
                    "expected_version": 6,
                }
            ]
        }
    )


class EvidenceOut(BaseModel):
    evidence_id: str
    case_id: str
    kind: EvidenceKind
    source: str
    date: dt.date
    reference: str | None
    description: str | None
    recorded_by: str
    recorded_at: datetime

    def masked(self) -> EvidenceOut:
        """As an oversight role sees it without break glass: every free-text value masked."""
        return self.model_copy(
            update={
                "source": mask(self.source) or "",
                "reference": mask(self.reference),
                "description": mask(self.description),
            }
        )


class IdentificationResult(BaseModel):
    case: CaseView
    evidence_ids: list[str]


# ---- rescue -----------------------------------------------------------------------------------
class RescueStatus(StrEnum):
    planned = "planned"
    done = "done"


class RescueOutcome(StrEnum):
    rescued = "rescued"
    not_found = "not_found"
    postponed = "postponed"


class RescuePlanRequest(In):
    planned_for: AwareDatetime = Field(description="when the operation is planned")
    lead_agency: Literal[AgencyRole.police, AgencyRole.border_guard, AgencyRole.coast_guard] = (
        AgencyRole.police
    )
    location: ShortText = Field(description="where; encrypted at rest (it can locate the victim)")
    plan_notes: LongText | None = Field(default=None, description="encrypted at rest")
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "planned_for": "2026-03-05T22:00:00+07:00",
                    "lead_agency": "police",
                    "location": "karaoke bar, ward X",
                    "plan_notes": "two teams",
                }
            ]
        }
    )


class RescuedPerson(In):
    case_id: Ref = Field(description="the case of a person found in the operation")
    relation: Literal["existing", "new"] = Field(
        description="existing: a case that already existed; new: opened by intake for this operation"
    )


class RescueCompleteRequest(StageOwnerAction):
    outcome: RescueOutcome
    persons: list[RescuedPerson] = Field(
        default_factory=list, max_length=200, description="everyone found, linked to their case ids"
    )
    justification: Reason

    @model_validator(mode="after")
    def _persons_when_rescued(self) -> RescueCompleteRequest:
        if self.outcome != RescueOutcome.rescued and self.persons:
            raise ValueError("persons: only a 'rescued' outcome lists rescued persons")
        if len({p.case_id for p in self.persons}) != len(self.persons):
            raise ValueError("persons: a case id appears twice")
        return self


class RescueNotNeededRequest(StageOwnerAction):
    justification: Reason

    def command(self, actor: Actor) -> Decide:
        return Decide(
            actor=actor,
            decision=RescueDecision(needed=False),
            justification=self.justification,
            **self.command_fields(),
        )


class RescueOperationOut(BaseModel):
    operation_id: str
    case_id: str
    status: RescueStatus
    planned_for: datetime
    lead_agency: AgencyRole
    location: str
    plan_notes: str | None
    outcome: RescueOutcome | None
    completed_at: datetime | None
    persons: list[RescuedPerson]
    created_by: str
    created_at: datetime

    def masked(self) -> RescueOperationOut:
        return self.model_copy(
            update={"location": mask(self.location) or "", "plan_notes": mask(self.plan_notes)}
        )


class RescueResult(BaseModel):
    operation: RescueOperationOut
    case: CaseView
    rescue_recorded: RescueRecord | None = Field(
        default=None,
        description="outside the rescue stage: the outcome as the case records it (the stage is "
        "unchanged; a `rescued` outcome decides the rescue stage once identification leads there)",
    )


# ---- protection -------------------------------------------------------------------------------
class ProtectionMeasure(StrEnum):
    """Protection measures (Law 53/2024 Art. 34; Decree 162/2025; Decree 62/2012 Art. 7 listed 8)."""

    safe_shelter = "safe_shelter"
    confidential_location = "confidential_location"
    personal_information_protection = "personal_information_protection"
    guard = "guard"
    relocation = "relocation"
    identity_change_of_documents = "identity_change_of_documents"
    closed_hearing = "closed_hearing"
    protection_of_relatives = "protection_of_relatives"
    other = "other"


class RefusalDocument(In):
    """The person's written refusal (commitment) of protection: metadata only."""

    signed_on: date
    reference: ShortText = Field(description="document number / file reference; encrypted at rest")
    signed_by: Literal["person", "representative"] = "person"
    description: LongText | None = Field(default=None, description="encrypted at rest")


class ProtectionRequest(StageOwnerAction):
    measures: list[ProtectionMeasure] = Field(default_factory=list, max_length=9)
    declined: bool = False
    refusal_document: RefusalDocument | None = None
    justification: Reason

    @model_validator(mode="after")
    def _consistent(self) -> ProtectionRequest:
        if self.declined:
            if self.refusal_document is None:
                raise ValueError(
                    "refusal_document: a declined protection needs the person's written refusal"
                )
            if self.measures:
                raise ValueError("measures: must be empty when protection is declined")
        else:
            if not self.measures:
                raise ValueError(
                    "measures: at least one measure, or declined=true with a refusal document"
                )
            if self.refusal_document is not None:
                raise ValueError("refusal_document: only for declined=true")
        if len(set(self.measures)) != len(self.measures):
            raise ValueError("measures: a measure appears twice")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "measures": ["safe_shelter", "personal_information_protection"],
                    "justification": "risk assessment: recruiter knows the family address",
                    "expected_version": 9,
                },
                {
                    "declined": True,
                    "refusal_document": {"signed_on": "2026-03-08", "reference": "CK-03/2026"},
                    "justification": "person declined in writing",
                    "expected_version": 9,
                },
            ]
        }
    )


class ProtectionResult(BaseModel):
    case: CaseView
    refusal_document_id: str | None


class ProtectionMeasuresRequest(Versioned):
    """Protection measures decided by the police at any stage from receipt (issue 15 item 3)."""

    measures: list[ProtectionMeasure] = Field(min_length=1, max_length=9)
    justification: Reason

    @model_validator(mode="after")
    def _distinct(self) -> ProtectionMeasuresRequest:
        if len(set(self.measures)) != len(self.measures):
            raise ValueError("measures: a measure appears twice")
        return self

    def command(self, actor: Actor) -> RecordProtection:
        return RecordProtection(
            actor=actor,
            expected_version=self.expected_version,
            measures=[m.value for m in self.measures],
            justification=self.justification,
        )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "measures": ["confidential_location", "protection_of_relatives"],
                    "justification": "recruiter called the family after the report",
                    "expected_version": 2,
                }
            ]
        }
    )


class ProtectionMeasuresResult(BaseModel):
    case: CaseView
    protections: list[ProtectionRecord] = Field(
        description="every protection measure recorded on the case, oldest first"
    )


# ---- perpetrators -----------------------------------------------------------------------------
class PerpetratorRole(StrEnum):
    """HTCDS per_RoleInProcess."""

    TravellingPartner = "TravellingPartner"
    Transporter = "Transporter"
    RecruiterOrIntermediary = "RecruiterOrIntermediary"
    BrokerTravelAgent = "BrokerTravelAgent"
    TransferredIndividual = "TransferredIndividual"
    HarbouredIndividual = "HarbouredIndividual"
    SoldIndividual = "SoldIndividual"
    BoughtIndividual = "BoughtIndividual"
    ReceivedIndividual = "ReceivedIndividual"
    ControlledIndividual = "ControlledIndividual"
    Smuggler = "Smuggler"
    Abuser = "Abuser"
    Kidnapper = "Kidnapper"
    Exploiter = "Exploiter"
    Other = "Other"


Phone = Annotated[str, Field(min_length=6, max_length=32, pattern=r"^\+?[0-9 ().\-]{6,32}$")]


class PerpetratorIn(In):
    roles: list[PerpetratorRole] = Field(
        min_length=1, max_length=15, description="HTCDS per_RoleInProcess"
    )
    role_details: LongText | None = Field(
        default=None, description="HTCDS per_RoleDetails; encrypted"
    )
    name: ShortText | None = Field(
        default=None, description="encrypted; blind index on the normalised name"
    )
    aliases: list[ShortText] = Field(
        default_factory=list, max_length=10, description="encrypted; indexed like names"
    )
    phones: list[Phone] = Field(
        default_factory=list,
        max_length=10,
        description="encrypted; blind index on the normalised number",
    )
    recruitment_channel: ShortText | None = Field(
        default=None, description="e.g. a Facebook page or Zalo group name; encrypted; blind index"
    )
    nationality: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] | None = Field(
        default=None, description="ISO 3166-1"
    )

    @model_validator(mode="after")
    def _something_to_link(self) -> PerpetratorIn:
        if len(set(self.roles)) != len(self.roles):
            raise ValueError("roles: a role appears twice")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "roles": ["RecruiterOrIntermediary"],
                    "role_details": "offered factory job in Lạng Sơn",
                    "name": "Nguyễn Văn A",
                    "aliases": ["Anh Tư"],
                    "phones": ["+84 912 345 678"],
                    "recruitment_channel": "Facebook: Việc làm lương cao",
                    "nationality": "VN",
                }
            ]
        }
    )


class PerpetratorOut(BaseModel):
    perpetrator_id: str
    case_id: str
    roles: list[PerpetratorRole]
    role_details: str | None
    name: str | None
    aliases: list[str]
    phones: list[str]
    recruitment_channel: str | None
    nationality: str | None
    recorded_by: str
    recorded_agency: AgencyRole
    recorded_at: datetime

    def masked(self) -> PerpetratorOut:
        return self.model_copy(
            update={
                "role_details": mask(self.role_details),
                "name": mask(self.name),
                "aliases": [mask(a) or "" for a in self.aliases],
                "phones": [mask(p) or "" for p in self.phones],
                "recruitment_channel": mask(self.recruitment_channel),
            }
        )


class PerpetratorPage(MaskedPage[PerpetratorOut]):
    pass


class LinkKind(StrEnum):
    name = "name"
    phone = "phone"
    recruitment_channel = "recruitment_channel"


class LinkedCase(BaseModel):
    case_id: str
    province: str
    matched_on: list[LinkKind] = Field(description="which identifiers are shared")
    perpetrator_ids: list[str] = Field(
        description="the perpetrator records in the other case that match; empty "
        "when that case is outside your jurisdiction"
    )
    within_your_jurisdiction: bool = Field(
        default=True,
        description="false: the link is shown so that the ring shows up, but the other case belongs "
        "to another province; ask that province's police (its records stay theirs)",
    )


class LinkedCasesOut(BaseModel):
    case_id: str
    items: list[LinkedCase]
    total: int


# ---- inbox ------------------------------------------------------------------------------------
class InboxView(StrEnum):
    waiting_acceptance = "waiting_acceptance"
    in_progress = "in_progress"
    due_soon = "due_soon"
    overdue = "overdue"


class InboxItem(BaseModel):
    case_id: str
    stage: str | None
    owner_agency: str | None
    jurisdiction: str | None
    status: str | None
    deadline_at: datetime | None
    assignee: str | None
    categories: list[str]
    pending_handoff_to: list[str]
    escalation_level: int | None


class InboxPage(Page[InboxItem]):
    view: InboxView
    total: int = Field(description="every matching case (exact: counted in the case index)")
    complete: bool = Field(
        default=True,
        description=(
            "always true since the inbox reads the case index in PostgreSQL, which sorts and counts every "
            "matching case (kept for clients written when the inbox read Temporal visibility and could cut)"
        ),
    )


class EvidencePage(MaskedPage[EvidenceOut]):
    pass


class RescuePage(MaskedPage[RescueOperationOut]):
    pass


# ---- criminal proceedings ---------------------------------------------------------------------
class ProceedingIn(In):
    """A crime report (tố giác, tin báo về tội phạm) on this case, linked to its suspected perpetrators."""

    report_number: ShortText = Field(
        description="the crime report's number (số tin báo); encrypted"
    )
    report_received_on: date = Field(description="when the report was received (Vietnam date)")
    perpetrator_ids: list[Ref] = Field(
        default_factory=list,
        max_length=50,
        description="suspected perpetrators recorded on this case (POST /cases/{case_id}/perpetrators)",
    )
    notes: LongText | None = Field(default=None, description="encrypted")

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "report_number": "TB-112/2026",
                    "report_received_on": "2026-03-02",
                    "perpetrator_ids": ["per-3f1c2a9b0d4e5f6a7b8c"],
                }
            ]
        }
    )


class PerpetratorLinks(In):
    perpetrator_ids: list[Ref] = Field(
        min_length=1,
        max_length=50,
        description="suspected perpetrators recorded on this case (POST /cases/{case_id}/perpetrators)",
    )

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"perpetrator_ids": ["per-3f1c2a9b0d4e5f6a7b8c"]}]}
    )


class StepIn(In):
    on: date = Field(description="the date of the decision, indictment or judgment (Vietnam date)")
    reference: ShortText | None = Field(
        default=None, description="the decision's, indictment's or judgment's number; encrypted"
    )
    notes: LongText | None = Field(default=None, description="encrypted")


class DecisionStepIn(StepIn):
    """Police (investigating body): open a criminal case or not (khởi tố / không khởi tố vụ án)."""

    step: Literal["decision"]
    outcome: DecisionOutcome


class InvestigationStepIn(StepIn):
    """Police: the investigation's result (điều tra, khám phá); needs a decision to open."""

    step: Literal["investigation"]
    outcome: InvestigationOutcome


class ProsecutionStepIn(StepIn):
    """Procuracy: indictment or not (truy tố); needs an investigation concluded as solved."""

    step: Literal["prosecution"]
    outcome: ProsecutionOutcome


class TrialStepIn(StepIn):
    """The first-instance trial's verdict (xét xử); needs an indictment."""

    step: Literal["trial"]
    outcome: TrialOutcome


ProceedingStepIn = Annotated[
    DecisionStepIn | InvestigationStepIn | ProsecutionStepIn | TrialStepIn,
    Field(discriminator="step"),
]


class ProceedingStepOut(BaseModel):
    step: Step
    outcome: str
    on: date
    reference: str | None
    notes: str | None
    recorded_by: str
    recorded_agency: AgencyRole
    recorded_at: datetime

    def masked(self) -> ProceedingStepOut:
        return self.model_copy(
            update={"reference": mask(self.reference), "notes": mask(self.notes)}
        )


class ProceedingOut(BaseModel):
    proceeding_id: str
    case_id: str
    report_number: str | None
    report_received_on: date
    perpetrator_ids: list[str]
    notes: str | None
    steps: list[ProceedingStepOut] = Field(description="in the order of the proceedings")
    recorded_by: str
    recorded_agency: AgencyRole
    recorded_at: datetime

    def masked(self) -> ProceedingOut:
        return self.model_copy(
            update={
                "report_number": mask(self.report_number),
                "notes": mask(self.notes),
                "steps": [s.masked() for s in self.steps],
            }
        )


class ProceedingPage(MaskedPage[ProceedingOut]):
    pass
