"""Pydantic request/response models of the intake service.

Person and victim fields carry their HTCDS names (`prs_*`, `vic_*`, `hte_*`, `cas_*`, `con_*`) and
picklist values are checked against the standard's fields.csv (services/intake/htcds.py): a wrong value is a
422 naming the field and the allowed values. Unknowns are allowed everywhere: no papers, an
estimated age, a birth year only."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from vietnam_provinces import ProvinceCode, Ward, WardCode

from services.intake import htcds
from shared.api_models import StorableText, Version
from shared.contract import Classification
from shared.domain import AgeBand, AgencyRole, CaseStatus, Channel, Stage, TraffickingStatus

MAX_BULK_ROWS = 1000
_PROVINCES = {int(p) for p in ProvinceCode}


# ---- picklists -----------------------------------------------------------------------------
def _pick(name: str) -> Any:
    spec = htcds.field(name)

    def check(value: Any) -> Any:
        return htcds.check(name, value)

    extra: dict[str, Any] = {"enum": list(spec.values)} if spec.values else {}
    return [
        AfterValidator(check),
        Field(
            json_schema_extra=extra or None,
            description=f"HTCDS {name}"
            + (f" ({spec.code_standard})" if spec.code_standard else ""),
        ),
    ]


def Pick(name: str) -> Any:
    return Annotated[str, *_pick(name)]


def MultiPick(name: str) -> Any:
    spec = htcds.field(name)
    extra: dict[str, Any] = {"items": {"enum": list(spec.values)}} if spec.values else {}

    def check(value: list[str]) -> list[str]:
        out = htcds.check(name, value)
        assert isinstance(out, list)
        return sorted(set(out), key=out.index)

    return Annotated[
        list[str],
        AfterValidator(check),
        Field(max_length=30, json_schema_extra=extra or None, description=f"HTCDS {name}"),
    ]


Name = Annotated[str, Field(min_length=1, max_length=100)]
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=5000)]
Reason = Annotated[
    str, Field(min_length=3, max_length=500, description="why; recorded. No personal data.")
]


def normalise_province(value: str) -> str:
    """Official province code (after the 1 July 2025 reform), as two digits: '1' and '01' -> '01'."""
    v = value.strip()
    if not v.isdigit() or int(v) not in _PROVINCES:
        raise ValueError(
            f"{value!r} is not one of the 34 province codes (e.g. 01 Ha Noi, 79 Ho Chi Minh City)"
        )
    return f"{int(v):02d}"


def normalise_commune(value: str) -> str:
    v = value.strip()
    try:
        Ward.from_code(WardCode(int(v)))
    except ValueError:
        raise ValueError(f"{value!r} is not one of the 3,321 commune/ward codes") from None
    return f"{int(v):05d}"


ProvinceCodeStr = Annotated[
    str,
    AfterValidator(normalise_province),
    Field(description="province code (2025 reform), e.g. 01, 79", examples=["01"]),
]
CommuneCodeStr = Annotated[
    str,
    AfterValidator(normalise_commune),
    Field(description="commune/ward code (2025 reform), e.g. 00070"),
]


class Strict(StorableText):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- person (HTCDS Person) -----------------------------------------------------------------
class PersonHtcds(Strict):
    """HTCDS Person fields intake keeps. Every field may be unknown."""

    prs_Salutation: Annotated[str, Field(max_length=40)] | None = None
    prs_FirstName: Name | None = Field(default=None, description="given name (Vietnamese: tên)")
    prs_MiddleName: Name | None = None
    prs_SecondName: Name | None = Field(default=None, description="family name (Vietnamese: họ)")
    prs_Birthdate: date | None = Field(default=None, description="exact birth date when known")
    prs_Gender: Pick("prs_Gender") | None = None  # type: ignore[valid-type]
    prs_Deceased: bool | None = None
    prs_MaritalStatus: Pick("prs_MaritalStatus") | None = None  # type: ignore[valid-type]
    prs_NumberOfChildren: Annotated[int, Field(ge=0, le=30)] | None = None
    prs_PrimaryLanguage: Pick("prs_PrimaryLanguage") | None = None  # type: ignore[valid-type]
    prs_SecondaryLanguage: Pick("prs_SecondaryLanguage") | None = None  # type: ignore[valid-type]
    prs_HighestLevelOfEducation: Pick("prs_HighestLevelOfEducation") | None = None  # type: ignore[valid-type]
    prs_Citizenship: MultiPick("prs_Citizenship") = Field(default_factory=list)  # type: ignore[valid-type]
    prs_IdentityNumber: Annotated[str, Field(min_length=3, max_length=40)] | None = Field(
        default=None, description="citizen id (CCCD), passport or other document number"
    )
    prs_Email: Annotated[str, Field(max_length=200, pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    prs_HomePhone: Annotated[str, Field(max_length=30, pattern=r"^[0-9+() .\-]{3,30}$")] | None = (
        None
    )
    prs_MobilePhone: (
        Annotated[str, Field(max_length=30, pattern=r"^[0-9+() .\-]{3,30}$")] | None
    ) = None
    prs_MailingStreet: ShortText | None = None
    prs_MailingCity: ShortText | None = None
    prs_MailingState: ShortText | None = None
    prs_MailingPostalCode: Annotated[str, Field(max_length=20)] | None = None
    prs_MailingCountry: Pick("prs_Citizenship") | None = Field(  # type: ignore[valid-type]
        default=None, description="ISO 3166 country code"
    )
    vic_AgreementToManagePersonalData: bool | None = None

    @field_validator("prs_Birthdate")
    @classmethod
    def _not_future(cls, v: date | None) -> date | None:
        if v is not None and v > datetime.now(UTC).date():
            raise ValueError("birth date is in the future")
        if v is not None and v.year < 1900:
            raise ValueError("birth date before 1900")
        return v


class PersonIn(PersonHtcds):
    """A person as intake receives them, HTCDS names plus the unknowns intake must express."""

    birth_year: Annotated[int, Field(ge=1900, le=2100)] | None = Field(
        default=None, description="when only the year of birth is known"
    )
    estimated_age: Annotated[int, Field(ge=0, le=120)] | None = Field(
        default=None, description="estimated age in years when no birth date or year is known"
    )
    no_documents: bool = Field(default=False, description="the person has no identity papers")

    @model_validator(mode="after")
    def _consistent(self) -> PersonIn:
        if self.birth_year is not None and self.birth_year > datetime.now(UTC).year:
            raise ValueError("birth_year is in the future")
        if (
            self.prs_Birthdate is not None
            and self.birth_year is not None
            and self.prs_Birthdate.year != self.birth_year
        ):
            raise ValueError("birth_year disagrees with prs_Birthdate")
        return self


class VictimContextIn(Strict):
    """HTCDS Person - Victim Context. The trafficking status itself is decided by the workflow."""

    vic_RelationshipToTrafficker: Pick("vic_RelationshipToTrafficker") | None = None  # type: ignore[valid-type]
    vic_AgeWhenTrafficked: Annotated[int, Field(ge=0, le=120)] | None = None
    vic_RecruitmentWebsitesAndApps: MultiPick("vic_RecruitmentWebsitesAndApps") = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    vic_MethodOfRecruitment: MultiPick("vic_MethodOfRecruitment") = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    vic_LocationOfRecruitment: ShortText | None = None
    vic_MethodsOfControl: MultiPick("vic_MethodsOfControl") = Field(default_factory=list)  # type: ignore[valid-type]
    vic_TypeOfExploitation: MultiPick("vic_TypeOfExploitation") = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    vic_ForcedLabourIndustry: Pick("vic_ForcedLabourIndustry") | None = None  # type: ignore[valid-type]
    vic_TypeOfSexExploitation: MultiPick("vic_TypeOfSexExploitation") = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    vic_LocationOfExploitation: ShortText | None = None
    vic_ExploitationWebsitesAndApps: MultiPick("vic_ExploitationWebsitesAndApps") = Field(  # type: ignore[valid-type]
        default_factory=list
    )
    vic_Vulnerabilities: MultiPick("vic_Vulnerabilities") = Field(default_factory=list)  # type: ignore[valid-type]
    vic_DetailsOfVulnerabilities: LongText | None = None
    nrm_ExploitationDetail: list[Literal[tuple(htcds.DETAIL_LABELS)]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=3,
        description="national extension (services/intake/htcds.py NATIONAL): what a "
        "vic_TypeOfExploitation ForcedCriminality "
        "was, e.g. online_scam_compound (scam compounds in Cambodia, Myanmar, Laos). An HTCDS export "
        "carries it in x_nrm",
    )

    @model_validator(mode="after")
    def _detail_needs_forced_criminality(self) -> VictimContextIn:
        if self.nrm_ExploitationDetail and "ForcedCriminality" not in self.vic_TypeOfExploitation:
            raise ValueError(
                "nrm_ExploitationDetail: a detail of forced criminality needs vic_TypeOfExploitation "
                "ForcedCriminality"
            )
        return self


class TraffickingEventIn(Strict):
    """HTCDS Historic Trafficking Event (recruitment, transit, exploitation)."""

    hte_Type: Pick("hte_Type")  # type: ignore[valid-type]
    hte_Date: date | None = None
    hte_Country: Pick("prs_Citizenship") | None = Field(  # type: ignore[valid-type]
        default=None,
        description="ISO 3166 country code",
    )
    hte_State: ShortText | None = None
    hte_City: ShortText | None = None
    hte_Street: ShortText | None = None
    hte_PostalCode: Annotated[str, Field(max_length=20)] | None = None
    hte_Latitude: Annotated[float, Field(ge=-90, le=90)] | None = None
    hte_Longitude: Annotated[float, Field(ge=-180, le=180)] | None = None
    hte_Description: LongText | None = None


class ReportIn(Strict):
    """How the report arrived. The narrative is personal data: stored encrypted."""

    received_at: AwareDatetime | None = Field(
        default=None, description="when the channel received it"
    )
    summary: LongText | None = Field(
        default=None, description="what was reported (stored encrypted)"
    )
    cas_ReferringOrganisation: ShortText | None = Field(
        default=None, description="referring organisation name"
    )
    cas_IncomingReferralDate: date | None = None
    cas_ReasonForIncomingReferral: Pick("cas_ReasonForIncomingReferral") | None = None  # type: ignore[valid-type]
    cas_IncomingReferralDetails: LongText | None = Field(
        default=None, description="stored encrypted"
    )


PERSON_EXAMPLE: dict[str, Any] = {
    "prs_FirstName": "Lan",
    "prs_MiddleName": "Thị",
    "prs_SecondName": "Nguyễn",
    "birth_year": 2008,
    "prs_Gender": "Feminine",
    "prs_Citizenship": ["VN"],
    "prs_PrimaryLanguage": "vie",
    "prs_IdentityNumber": "001308012345",
    "prs_MobilePhone": "0912345678",
}
OPEN_EXAMPLE: dict[str, Any] = {
    "channel": "border_guard_handover",
    "province": "20",
    "abroad": False,
    "already_safe": True,
    "person": PERSON_EXAMPLE,
    "victim": {
        "vic_TypeOfExploitation": ["ForcedMarriage"],
        "vic_MethodOfRecruitment": ["ThroughFriendsOrSocialEvents"],
    },
    "events": [{"hte_Type": "Exploitation", "hte_Country": "CN"}],
    "report": {
        "summary": "Handed over at the border gate by the Chinese police.",
        "cas_ReferringOrganisation": "Border guard post",
    },
    "con_Consent": True,
}


class OpenCaseRequest(Strict):
    """Open a case for a person received through any channel."""

    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_extra={"examples": [OPEN_EXAMPLE]}
    )

    channel: Channel
    province: ProvinceCodeStr = Field(description="province of the case (jurisdiction)")
    commune: CommuneCodeStr | None = None
    abroad: bool = Field(
        default=False, description="the person is still abroad / returning through an embassy"
    )
    foreign_national: bool | None = Field(
        default=None, description="default: citizenship given and not VN"
    )
    already_safe: bool = Field(default=True, description="False when a rescue is needed")
    person: PersonIn
    victim: VictimContextIn | None = None
    events: list[TraffickingEventIn] = Field(default_factory=list, max_length=50)
    report: ReportIn | None = None
    con_Consent: bool | None = Field(
        default=None, description="HTCDS con_Consent: consent to the case"
    )

    @model_validator(mode="after")
    def _commune_in_province(self) -> OpenCaseRequest:
        if self.commune is not None:
            ward = Ward.from_code(WardCode(int(self.commune)))
            if f"{int(ward.province_code):02d}" != self.province:
                raise ValueError(f"commune {self.commune} is not in province {self.province}")
        return self

    @property
    def is_foreign(self) -> bool:
        if self.foreign_national is not None:
            return self.foreign_national
        return bool(self.person.prs_Citizenship) and "VN" not in self.person.prs_Citizenship


# ---- responses ---------------------------------------------------------------------------
OUTSIDE_JURISDICTION = (
    "a possible duplicate exists outside your jurisdiction; a national user or a supervisor "
    "of either province decides it"
)


MatchKind = Literal["identity_number", "evidence", "name_birth_year_province"]
MATCH_KIND_DESCRIPTION = (
    "identity_number: the same identity number; evidence: the shared facts score at least the threshold "
    "(see score and reasons); name_birth_year_province: the same name, birth year and province of a person "
    "registered before scoring"
)


def _score_field() -> Any:
    return Field(
        default=None,
        description="how strongly the shared facts say one person (flagged from 2.8); null for persons "
        "registered before scoring",
    )


def _reasons_field() -> Any:
    return Field(
        default_factory=list,
        description="the facts behind the score, strongest first: same_identity_number, same_full_name, "
        "same_given_and_family_name, same_birth_date, same_birth_year, same_phone, same_commune, "
        "same_province, or the different_* conflicts that count against",
    )


class DuplicateFlag(BaseModel):
    candidate_id: str
    match_kind: MatchKind = Field(description=MATCH_KIND_DESCRIPTION)
    score: float | None = _score_field()
    reasons: list[str] = _reasons_field()
    other_case_id: str | None = Field(
        description="null when the other case is outside your jurisdiction"
    )
    within_your_jurisdiction: bool = True
    note: str | None = None


class OpenCaseResponse(BaseModel):
    case_id: str = Field(description="opaque random id; the workflow id")
    person_ref: str = Field(description="opaque id of the person in the registry")
    created: bool = Field(
        description="False when an earlier request with the same Idempotency-Key opened it"
    )
    workflow_started: bool
    age_band: AgeBand
    categories: list[str]
    opened_at: AwareDatetime
    duplicates: list[DuplicateFlag] = Field(
        default_factory=list, description="possible duplicates flagged for a caseworker"
    )


class PersonIdentity(BaseModel):
    """Section person_identity. Strings are masked (first letter + dots) for auditors without break-glass."""

    prs_Salutation: str | None = None
    prs_FirstName: str | None = None
    prs_MiddleName: str | None = None
    prs_SecondName: str | None = None
    prs_Birthdate: str | None = None
    birth_year: str | None = None
    estimated_age: int | None = None
    age_band: AgeBand
    prs_Gender: str | None = None
    prs_Deceased: bool | None = None
    prs_MaritalStatus: str | None = None
    prs_NumberOfChildren: int | None = None
    prs_PrimaryLanguage: str | None = None
    prs_SecondaryLanguage: str | None = None
    prs_HighestLevelOfEducation: str | None = None
    prs_Citizenship: list[str] = Field(default_factory=list)
    prs_IdentityNumber: str | None = None
    no_documents: bool = False
    prs_Email: str | None = None
    prs_HomePhone: str | None = None
    prs_MobilePhone: str | None = None
    prs_MailingStreet: str | None = None
    prs_MailingCity: str | None = None
    prs_MailingState: str | None = None
    prs_MailingPostalCode: str | None = None
    prs_MailingCountry: str | None = None
    vic_AgreementToManagePersonalData: bool | None = None


class PersonReport(BaseModel):
    """Section report: the victim context and the trafficking events."""

    victim: dict[str, Any] = Field(default_factory=dict, description="vic_* fields")
    events: list[dict[str, Any]] = Field(default_factory=list, description="hte_* records")
    summary: str | None = None
    cas_IncomingReferralDetails: str | None = None


class PersonOut(BaseModel):
    person_id: str
    case_id: str
    masked: bool = Field(description="True when PII is masked (auditor without break-glass)")
    erased: bool = Field(
        description="True when personal data was erased after the retention period"
    )
    person_identity: PersonIdentity | None = None
    report: PersonReport | None = None
    withheld_sections: list[str] = Field(default_factory=list)
    access_id: int = Field(description="the access-log entry recorded for this read")


class PersonSummary(BaseModel):
    person_ref: str
    display_name: str | None = Field(
        description="family, middle and given name; masked for auditors"
    )
    age_band: AgeBand
    prs_Gender: str | None = None


class WorkflowView(BaseModel):
    stage: Stage
    status: CaseStatus
    owner_agency: AgencyRole
    version: int
    trafficking_status: TraffickingStatus
    participants: list[AgencyRole] = Field(default_factory=list)
    assignee: str | None = Field(
        default=None, description="the staff user id who took the current stage (null: nobody yet)"
    )
    deadline_at: AwareDatetime | None = Field(
        default=None,
        description="when the current stage's legal deadline falls due (null: none runs)",
    )
    escalation_level: int = Field(
        default=0, description="0 = not escalated; 1 and up the ladder to the steering committee"
    )
    allowed_actions: list[str] = Field(
        default_factory=list,
        description="what you may do on this case now, by the same rules the action endpoints apply: "
        "claim, classify, verify, identify, rescue_plan, rescue_complete (the rescue stage's "
        "decision, or at any other open stage a rescue recorded when it happens), "
        "rescue_not_needed, protect, protection_measures (police, any open stage), closure, "
        "perpetrator, consent, legal_aid, transfer, support_plan, service, follow_up, "
        "respond_handoff, reassign, extend_deadline, escalate, reopen. A listed action can still be "
        "refused for what you send (stale version, missing consent, invalid field)",
        examples=[["claim", "verify", "consent", "transfer"]],
    )


class IntakeFacts(BaseModel):
    channel: Channel
    province: str
    commune: str | None
    age_band: AgeBand
    abroad: bool
    foreign_national: bool
    already_safe: bool
    opened_at: AwareDatetime
    opened_by_agency: AgencyRole
    source: str
    referring_organisation: str | None = None


class CaseRecord(BaseModel):
    """The intake record of a case: its facts, the person (masked for auditors), the workflow's state."""

    case_id: str
    facts: IntakeFacts
    workflow_started: bool
    workflow: WorkflowView | None = Field(
        default=None, description="from the workflow's state query"
    )
    person: PersonSummary | None = None
    open_duplicates: int = 0
    masked: bool = False


class CaseListItem(BaseModel):
    case_id: str
    channel: Channel
    province: str
    commune: str | None
    age_band: AgeBand
    opened_at: AwareDatetime
    source: str
    workflow_started: bool


class CaseList(BaseModel):
    items: list[CaseListItem]
    total: int
    limit: int
    offset: int
    next_offset: int | None


class DuplicateOut(BaseModel):
    candidate_id: str
    case_id: str | None = Field(description="the newer case; null when outside your jurisdiction")
    other_case_id: str | None = Field(
        description="the earlier case; null when outside your jurisdiction"
    )
    within_your_jurisdiction: bool = Field(
        default=True,
        description="false: one of the two cases is in a "
        "province you do not cover (its id is withheld)",
    )
    note: str | None = None
    match_kind: MatchKind = Field(description=MATCH_KIND_DESCRIPTION)
    score: float | None = _score_field()
    reasons: list[str] = _reasons_field()
    status: Literal["open", "linked", "kept_apart"]
    flagged_at: AwareDatetime
    decided_by: str | None = None
    decided_at: AwareDatetime | None = None
    reason: str | None = None


class ResolveDuplicate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "decision": "keep_apart",
                    "reason": "different people: birth dates differ on papers",
                }
            ]
        },
    )

    decision: Literal["link", "keep_apart"]
    reason: Reason


class ClassifyRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "classification": "trafficking_suspected",
                    "justification": "signs of forced marriage abroad",
                    "expected_version": 1,
                }
            ]
        },
    )

    classification: Classification
    justification: Reason
    expected_version: Version | None = Field(default=None)
    override_reason: Reason | None = Field(
        default=None,
        description="supervisors of another agency than the receiving one: why you classify its "
        "case (required then, 403 without it; recorded in the audit log as an override). "
        "No personal data.",
    )


class AccessLogEntry(BaseModel):
    access_id: int
    accessed_at: AwareDatetime
    service: str = Field(
        description="the service that served the read (intake, verification, support, ...)"
    )
    user_id: str
    agency: str
    roles: list[str]
    case_id: str
    case_province: str
    person_id: str | None = Field(description="the person read, when the read was of the registry")
    action: str
    purpose: str | None
    break_glass: bool
    break_glass_reason: str | None
    masked: bool
    sections: list[str]
    request_id: str | None


class AccessLogPage(BaseModel):
    items: list[AccessLogEntry]
    next_cursor: int | None = Field(description="pass as cursor for the next (older) page")


BatchRowStatus = Literal["pending", "opened", "duplicate_flagged", "replayed", "invalid", "failed"]
BulkRows = Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BULK_ROWS)]


class BulkRowResult(BaseModel):
    index: int = Field(
        description="0-based position of the row in the request (CSV: data row number - 1)"
    )
    status: BatchRowStatus = Field(
        description="`pending` only in a background batch, until the row is done"
    )
    case_id: str | None = None
    duplicates: list[DuplicateFlag] = Field(default_factory=list)
    workflow_started: bool | None = None
    errors: list[dict[str, Any]] = Field(
        default_factory=list, description="for invalid rows: field and reason"
    )


class BulkResponse(BaseModel):
    received: int
    opened: int
    duplicate_flagged: int
    replayed: int
    invalid: int
    failed: int
    results: list[BulkRowResult]


MAX_BATCH_ROWS = 20_000  # one background batch (sent in chunks of at most MAX_BULK_ROWS)


class EntryDecision(Strict):
    """The receive-stage decision the receiving agency takes at handover, applied to every valid row of a
    batch: each case opens straight into its next stage (trafficking_suspected: verification, with its
    deadline). The same rules as POST /cases/{case_id}/classify: the caller must be allowed to classify
    the case (the receive stage's owner, in its jurisdiction); recorded as the caller's `stage_decided`."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "classification": "trafficking_suspected",
                    "justification": "group handover by the Chinese police: signs of forced labour",
                }
            ]
        },
    )

    classification: Classification
    justification: Reason


class BulkOpenRequest(Strict):
    """Rows with an entry decision (a plain JSON list of rows is accepted too, without one)."""

    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BULK_ROWS)
    entry_decision: EntryDecision | None = None


class BatchCreate(Strict):
    """A background batch: its size, its entry decision and its first rows (more with POST .../rows)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "total": 2,
                    "entry_decision": {
                        "classification": "trafficking_suspected",
                        "justification": "group handover: forced labour at a scam compound",
                    },
                    "rows": [OPEN_EXAMPLE, OPEN_EXAMPLE],
                }
            ]
        },
    )

    total: int = Field(
        ge=1,
        le=MAX_BATCH_ROWS,
        description="rows the batch will have; processing ends when all are received and opened",
    )
    entry_decision: EntryDecision | None = None
    rows: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_BULK_ROWS,
        description="rows 0.. (a body is limited in size: send the rest in chunks)",
    )


class BatchRowsIn(Strict):
    offset: int = Field(
        ge=0,
        lt=MAX_BATCH_ROWS,
        description="position of the first row of this chunk; chunks "
        "may be re-sent (identical rows are kept once)",
    )
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BULK_ROWS)


class BatchView(BaseModel):
    batch_id: str
    created_at: AwareDatetime
    finished_at: AwareDatetime | None = Field(description="set when every row has its result")
    total: int
    received: int = Field(description="rows stored so far")
    done: int = Field(description="rows with their result (progress: done / total)")
    opened: int
    duplicate_flagged: int
    replayed: int
    invalid: int
    failed: int
    entry_decision: EntryDecision | None = None
    results: list[BulkRowResult] = Field(
        description="the requested page of row results, in row order"
    )
    next_offset: int | None = Field(description="row index to pass as offset for the next page")


# ---- HTCDS exchange --------------------------------------------------------------------------
class NrmExtension(Strict):
    """Facts NRM needs that HTCDS has no field for (kept under `x_nrm`)."""

    channel: Channel
    province: ProvinceCodeStr
    commune: CommuneCodeStr | None = None
    abroad: bool = False
    foreign_national: bool | None = None
    already_safe: bool = True
    birth_year: Annotated[int, Field(ge=1900, le=2100)] | None = None
    estimated_age: Annotated[int, Field(ge=0, le=120)] | None = None
    no_documents: bool = False
    report_received_at: AwareDatetime | None = None
    report_summary: LongText | None = None
    case_id: str | None = Field(default=None, description="export only: the NRM case id")
    age_band: AgeBand | None = Field(default=None, description="export only")
    vic_TypeOfExploitation: list[str] = Field(
        default_factory=list,
        max_length=30,
        description="the types of exploitation as NRM has them when a national value (ForcedCriminality) was exported "
        "as its nearest HTCDS value; restored on import",
    )
    exploitation_detail: list[str] = Field(
        default_factory=list,
        max_length=3,
        description="nrm_ExploitationDetail (national extension)",
    )


class HtcdsRecord(PersonHtcds, VictimContextIn):
    """One person's case as an HTCDS record: keys are HTCDS field names (picklists checked).

    `historic_trafficking_events` holds the hte_* records; `x_nrm` the facts HTCDS has no field for.
    On import, vic_TraffickingStatus, vic_TraffickingStatusDecisionMakingOrg and cas_Status are
    checked but not taken over: the new case starts as a possible victim and its workflow decides."""

    nrm_ExploitationDetail: list[Literal[tuple(htcds.DETAIL_LABELS)]] = Field(  # type: ignore[valid-type]
        default_factory=list,
        max_length=3,
        exclude=True,
        description="not part of an HTCDS record: carried in x_nrm.exploitation_detail",
    )
    vic_TraffickingStatus: Pick("vic_TraffickingStatus") | None = None  # type: ignore[valid-type]
    vic_TraffickingStatusDecisionMakingOrg: (
        Pick("vic_TraffickingStatusDecisionMakingOrg") | None  # type: ignore[valid-type]
    ) = None
    cas_Status: Pick("cas_Status") | None = None  # type: ignore[valid-type]
    cas_ReferringOrganisation: ShortText | None = None
    cas_IncomingReferralDate: date | None = None
    cas_ReasonForIncomingReferral: Pick("cas_ReasonForIncomingReferral") | None = None  # type: ignore[valid-type]
    cas_IncomingReferralDetails: LongText | None = None
    con_Consent: bool | None = None
    historic_trafficking_events: list[TraffickingEventIn] = Field(
        default_factory=list, max_length=50
    )
    x_nrm: NrmExtension

    def to_open_request(self) -> OpenCaseRequest:
        person_fields = set(PersonHtcds.model_fields)
        victim_fields = set(VictimContextIn.model_fields)
        data = self.model_dump(exclude_none=True)
        person = {k: v for k, v in data.items() if k in person_fields}
        person.update(
            {
                "birth_year": self.x_nrm.birth_year,
                "estimated_age": self.x_nrm.estimated_age,
                "no_documents": self.x_nrm.no_documents,
            }
        )
        victim = {k: v for k, v in data.items() if k in victim_fields}
        if (
            self.x_nrm.vic_TypeOfExploitation or self.x_nrm.exploitation_detail
        ):  # national values (services/intake/htcds.py)
            victim["vic_TypeOfExploitation"] = htcds.from_standard(
                "vic_TypeOfExploitation",
                self.vic_TypeOfExploitation,
                self.x_nrm.vic_TypeOfExploitation,
            )
            victim["nrm_ExploitationDetail"] = self.x_nrm.exploitation_detail
        report: dict[str, Any] = {
            k: getattr(self, k)
            for k in (
                "cas_ReferringOrganisation",
                "cas_IncomingReferralDate",
                "cas_ReasonForIncomingReferral",
                "cas_IncomingReferralDetails",
            )
            if getattr(self, k) is not None
        }
        if self.x_nrm.report_summary:
            report["summary"] = self.x_nrm.report_summary
        if self.x_nrm.report_received_at:
            report["received_at"] = self.x_nrm.report_received_at
        x = self.x_nrm
        return OpenCaseRequest.model_validate(
            {
                "channel": x.channel,
                "province": x.province,
                "commune": x.commune,
                "abroad": x.abroad,
                "foreign_national": x.foreign_national,
                "already_safe": x.already_safe,
                "person": {k: v for k, v in person.items() if v is not None},
                "victim": victim or None,
                "events": [
                    e.model_dump(exclude_none=True) for e in self.historic_trafficking_events
                ],
                "report": report or None,
                "con_Consent": self.con_Consent,
            }
        )
