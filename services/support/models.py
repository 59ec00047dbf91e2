"""Request and response models of the support service (pydantic v2)."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.support.entitlements import Beneficiary, Entitled, Regime, StatusColumn, SupportType
from shared.access import mask
from shared.api_models import (
    CaseView,
    In,
    LongText,
    MaskedPage,
    Reason,
    Ref,
    ShortText,
    StageOwnerAction,
    Versioned,
)
from shared.contract import (
    Actor,
    ConsentPurpose,
    Handoff,
    HandoffKind,
    HandoffState,
    ProvinceRef,
    RequestHandoff,
)
from shared.domain import AgencyRole, CaseStatus, TraffickingStatus


def _masked_flag() -> bool:
    return Field(
        default=False,
        description="true: personal data and free text are masked (oversight role without "
        "break_glass_reason); every read is in the access log",
    )


def _not_future(d: date | None, field: str) -> None:
    if d is not None and d > date.today():
        raise ValueError(f"{field}: date is in the future")


# ---- entitlements -----------------------------------------------------------------------------
class EntitlementItem(BaseModel):
    service_type: SupportType
    letter: str = Field(description="the item's letter in Law 53/2024 Art. 37")
    label: str
    entitled: Entitled


class EntitlementsOut(BaseModel):
    case_id: str
    beneficiary: Beneficiary
    trafficking_status: TraffickingStatus
    status_column: StatusColumn | None
    regime: Regime = Field(
        default=Regime.law_53_2024,
        description="law_66_2011 when the person was identified before 01/07/2025 (Art. 63): each item "
        "is then confirmed by a supervisor against the 2011 regime",
    )
    explanation: str
    legal_basis: str
    items: list[EntitlementItem]


# ---- services delivered -----------------------------------------------------------------------
class ServiceIn(Versioned):
    service_type: SupportType
    beneficiary: Beneficiary = Beneficiary.person
    provider_agency: AgencyRole = Field(description="the agency role that delivered it")
    provider_name: ShortText | None = Field(
        default=None, description="facility / organisation (no personal data)"
    )
    delivered_on: date
    amount_vnd: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000_000,
        description="amount in VND where money is involved; required for travel_home "
        "and hardship_allowance",
    )
    supervisor_approval_reason: Reason | None = Field(
        default=None,
        description="required for a 'case by case' entitlement (foreign victims); only a supervisor "
        "may give it",
    )
    note: LongText | None = Field(default=None, description="free text; encrypted at rest")

    @model_validator(mode="after")
    def _dates(self) -> ServiceIn:
        _not_future(self.delivered_on, "delivered_on")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service_type": "essential_needs",
                    "provider_agency": "social_protection",
                    "provider_name": "Provincial social protection centre",
                    "delivered_on": "2026-03-03",
                },
                {
                    "service_type": "hardship_allowance",
                    "provider_agency": "commune",
                    "delivered_on": "2026-05-10",
                    "amount_vnd": 1500000,
                },
            ]
        }
    )


class ServiceOut(BaseModel):
    service_id: str
    case_id: str
    service_type: SupportType
    letter: str
    beneficiary: Beneficiary
    provider_agency: AgencyRole
    provider_name: str | None
    delivered_on: date
    amount_vnd: int | None
    entitled: Entitled
    supervisor_approval_reason: str | None
    approved_by: str | None
    note: str | None
    recorded_by: str
    recorded_at: datetime

    def masked(self) -> ServiceOut:
        """As an oversight role sees it without break glass: free text masked, figures and kinds kept."""
        return self.model_copy(
            update={
                "provider_name": mask(self.provider_name),
                "note": mask(self.note),
                "supervisor_approval_reason": mask(self.supervisor_approval_reason),
            }
        )


class ServicePage(MaskedPage[ServiceOut]):
    total_amount_vnd: int


# ---- support plan (HTCDS spl_*) ---------------------------------------------------------------
class PlanType(StrEnum):
    """HTCDS spl_Type."""

    Education = "Education"
    Financial = "Financial"
    Health = "Health"
    LabourExploitationRehabilitation = "LabourExploitationRehabilitation"
    Legal = "Legal"
    Livelihood = "Livelihood"
    RightsBasedTraining = "RightsBasedTraining"
    SexualExploitationRehabilitation = "SexualExploitationRehabilitation"
    SocialCare = "SocialCare"


class SupportPlanIn(Versioned):
    spl_Objectives: LongText = Field(description="HTCDS spl_Objectives; encrypted at rest")
    spl_ActionPlan: LongText | None = Field(
        default=None, description="HTCDS spl_ActionPlan; encrypted at rest"
    )
    spl_Type: list[PlanType] = Field(
        min_length=1, max_length=9, description="HTCDS spl_Type (one or more)"
    )
    spl_PlannedEndDate: date
    spl_ActualEndDate: date | None = None

    @model_validator(mode="after")
    def _check(self) -> SupportPlanIn:
        if len(set(self.spl_Type)) != len(self.spl_Type):
            raise ValueError("spl_Type: a type appears twice")
        _not_future(self.spl_ActualEndDate, "spl_ActualEndDate")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "spl_Objectives": "safe housing, return to school, counselling",
                    "spl_Type": ["SocialCare", "Education"],
                    "spl_PlannedEndDate": "2026-12-31",
                }
            ]
        }
    )


class SupportPlanOut(BaseModel):
    plan_id: str
    case_id: str
    spl_Objectives: str
    spl_ActionPlan: str | None
    spl_Type: list[PlanType]
    spl_PlannedEndDate: date
    spl_ActualEndDate: date | None
    current: bool = Field(description="the latest plan; earlier ones are kept as history")
    created_by: str
    created_at: datetime

    def masked(self) -> SupportPlanOut:
        return self.model_copy(
            update={
                "spl_Objectives": mask(self.spl_Objectives) or "",
                "spl_ActionPlan": mask(self.spl_ActionPlan),
            }
        )


class SupportPlanPage(MaskedPage[SupportPlanOut]):
    pass


# ---- legal aid referral and handoffs ----------------------------------------------------------
class LegalAidReferralIn(StageOwnerAction):
    reason: Reason
    consent_override_reason: Reason | None = Field(
        default=None, description="supervisor only: refer without the person's data-sharing consent"
    )
    financial_hardship: bool | None = Field(
        default=None,
        description="whether the person is in financial difficulty, the condition of free legal aid "
        "(Law on Legal Aid; seed:003); null = not assessed yet. Recorded for legal aid to see",
    )
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"reason": "victim wants to claim unpaid wages"}]}
    )

    def command(self, actor: Actor) -> RequestHandoff:
        return RequestHandoff(
            actor=actor,
            kind=HandoffKind.referral,
            to_agency=AgencyRole.legal_aid,
            reason=self.reason,
            consent_override_reason=self.consent_override_reason,
            **self.command_fields(),
        )


class TransferIn(StageOwnerAction):
    """A transfer: ownership of the case moves to `to_agency`, of the case's province or (with `to_province`)
    of another province, where the case then continues (issue 18)."""

    to_agency: AgencyRole
    to_province: ProvinceRef | None = Field(
        default=None,
        description="the receiving agency's province when it is not the case's: on acceptance the "
        "jurisdiction, the stage owner and the deadlines follow that province",
    )
    reason: Reason
    consent_override_reason: Reason | None = Field(
        default=None,
        description="supervisor only: transfer without the person's data-sharing consent for the "
        "receiving agency (of that province); the legal basis, audited",
    )
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "to_agency": "social_protection",
                    "to_province": "40",
                    "reason": "the person lives in Nghe An; support and reintegration at home",
                }
            ]
        }
    )

    def command(self, actor: Actor) -> RequestHandoff:
        return RequestHandoff(
            actor=actor,
            kind=HandoffKind.transfer,
            to_agency=self.to_agency,
            to_province=self.to_province,
            reason=self.reason,
            consent_override_reason=self.consent_override_reason,
            **self.command_fields(),
        )


class HandoffView(BaseModel):
    handoff_id: str
    kind: HandoffKind
    from_agency: AgencyRole
    to_agency: AgencyRole
    state: HandoffState
    requested_at: datetime
    accept_by: datetime
    responded_at: datetime | None
    reason: str | None
    escalation_level: int
    consent_overridden: bool
    from_province: str | None = Field(
        default=None, description="a transfer to another province: the sending one"
    )
    to_province: str | None = Field(
        default=None, description="a transfer to another province: the receiving one"
    )

    @classmethod
    def of(cls, h: Handoff) -> HandoffView:
        return cls(**{k: getattr(h, k) for k in cls.model_fields})

    def masked(self) -> HandoffView:
        return self.model_copy(update={"reason": mask(self.reason)})


class HandoffResult(BaseModel):
    case: CaseView
    handoff: HandoffView
    financial_hardship: bool | None = Field(
        default=None, description="legal-aid referrals: the hardship condition as recorded"
    )


class LegacyIdentificationIn(Versioned):
    """The person was identified as a victim under Law 66/2011, before Law 53/2024 came into force."""

    identified_on: date = Field(description="date of the identification (before 01/07/2025)")
    document_reference: ShortText | None = Field(
        default=None, description="the confirming document's number (encrypted at rest)"
    )

    @field_validator("identified_on")
    @classmethod
    def _before_law_53(cls, v: date) -> date:
        if v >= date(2025, 7, 1):
            raise ValueError(
                "must be before 01/07/2025: identifications from that day on fall under Law 53/2024"
            )
        return v


class LegacyIdentificationOut(BaseModel):
    case_id: str
    identified_on: date
    document_reference: str | None
    regime: Regime
    masked: bool = False


class HandoffPage(BaseModel):
    items: list[HandoffView]
    total: int
    masked: bool = _masked_flag()


class RespondIn(Versioned):
    accept: bool
    reason: Reason | None = Field(default=None, description="required when rejecting")

    @model_validator(mode="after")
    def _reason(self) -> RespondIn:
        if not self.accept and not self.reason:
            raise ValueError("reason: required when rejecting a handoff")
        return self


# ---- follow-ups and closure -------------------------------------------------------------------
class FollowUpIn(StageOwnerAction):
    outcome: Literal["done", "missed", "not_reachable"]
    note: LongText | None = Field(default=None, description="encrypted at rest")


class FollowUpView(BaseModel):
    follow_up_id: str
    due_at: datetime
    outcome: str | None
    recorded_at: datetime | None
    note_id: str | None = None


class FollowUpPage(BaseModel):
    items: list[FollowUpView]
    total: int


class ClosureIn(StageOwnerAction):
    cas_Status: Literal[CaseStatus.Closed, CaseStatus.ClosedReferred] = Field(
        default=CaseStatus.Closed, description="HTCDS cas_Status at closure"
    )
    reason: Reason
    plan_id: Ref | None = Field(
        default=None, description="the support plan closed; default: the current plan"
    )


class ClosureOut(BaseModel):
    case: CaseView
    plan_id: str


# ---- consent ----------------------------------------------------------------------------------
class ConsentDocument(In):
    kind: Literal["signed_form", "recorded_oral", "guardian_signed", "electronic"]
    signed_on: date
    reference: ShortText | None = Field(
        default=None, description="document / file reference; encrypted at rest"
    )
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}$")] = Field(
        default="vie", description="ISO 639"
    )

    @model_validator(mode="after")
    def _dates(self) -> ConsentDocument:
        _not_future(self.signed_on, "document.signed_on")
        return self


class ConsentIn(Versioned):
    purpose: ConsentPurpose
    granted: bool = Field(description="false withdraws an earlier consent")
    agency: AgencyRole | None = Field(
        default=None, description="data_sharing only: the agency it covers"
    )
    province: ProvinceRef | None = Field(
        default=None,
        description="data_sharing only: the province of that agency, when the case is to be "
        "transferred there (a consent to the local agency does not cover another "
        "province's)",
    )
    document: ConsentDocument | None = None

    @model_validator(mode="after")
    def _agency(self) -> ConsentIn:
        if self.purpose == ConsentPurpose.data_sharing and self.agency is None:
            raise ValueError("agency: data_sharing consent names the agency it covers")
        if self.purpose != ConsentPurpose.data_sharing and self.agency is not None:
            raise ValueError("agency: only data_sharing consent names an agency")
        if self.province is not None and self.agency is None:
            raise ValueError(
                "province: only a data_sharing consent naming an agency names its province"
            )
        if self.granted and self.document is None:
            raise ValueError("document: a granted consent needs its document metadata")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "purpose": "data_sharing",
                    "agency": "legal_aid",
                    "granted": True,
                    "document": {
                        "kind": "signed_form",
                        "signed_on": "2026-03-03",
                        "reference": "DY-07/2026",
                    },
                },
                {"purpose": "data_sharing", "agency": "legal_aid", "granted": False},
            ]
        }
    )


class ConsentRecord(BaseModel):
    consent_id: str
    purpose: ConsentPurpose
    agency: AgencyRole | None
    province: str | None = None
    granted: bool
    document_kind: str | None
    document_signed_on: date | None
    document_reference: str | None
    document_language: str | None
    recorded_by: str
    recorded_at: datetime

    def masked(self) -> ConsentRecord:
        return self.model_copy(update={"document_reference": mask(self.document_reference)})


class ConsentsOut(BaseModel):
    case_id: str
    current: dict[str, bool] = Field(
        description="purpose[:agency] -> granted, as the workflow holds it"
    )
    history: list[ConsentRecord]
    total: int
    masked: bool = _masked_flag()


class ConsentResult(BaseModel):
    case: CaseView
    consent_id: str
    current: dict[str, bool]
