"""Request and response models of the oversight service (supervisors and auditors). No PII: the
oversight service sees case ids and non-identifying facts only."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from shared.api_models import Id, Page, StorableText, Version
from shared.contract import Actor, Assign, Escalate, ExtendDeadline, Reason, Reopen
from shared.domain import AgencyRole, Stage


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class _In(StorableText):
    model_config = ConfigDict(frozen=True, extra="forbid")


# ---- stuck cases and board ------------------------------------------------------------------
class StuckReason(StrEnum):
    overdue = "overdue"  # the stage deadline has passed
    due_soon = "due_soon"  # the stage deadline falls within `due_within_hours`
    handoff_waiting = "handoff_waiting"  # a handoff waits for the receiving agency to accept
    idle = "idle"  # no audit event for `idle_days`
    escalated = "escalated"  # escalation level >= 1 (or exactly `level` when given)
    technical = "technical"  # Temporal reports a failing activity or workflow task (page only)


class Category(StrEnum):
    child = "child"
    adult = "adult"
    abroad = "abroad"
    domestic = "domestic"


class TechnicalProblem(_Out):
    kind: str = Field(
        description="activity_failing | workflow_task_failing | workflow_not_running | temporal_unreachable"
    )
    detail: str = Field(
        description="activity type and attempt, or the failure message (no PII: ids only)"
    )
    attempt: int | None = None


class StuckCase(_Out):
    case_id: str
    province: str
    stage: Stage
    owner_agency: AgencyRole
    assignee: str | None
    categories: list[Category]
    deadline_at: datetime | None
    late_by_hours: float | None = Field(
        description="hours past the earliest due instant (stage deadline or "
        "handoff acceptance); negative = still due in that many hours"
    )
    escalation_level: int
    open_handoffs: int
    oldest_handoff_accept_by: datetime | None
    last_event_at: datetime
    idle_days: float
    reasons: list[StuckReason]
    technical: list[TechnicalProblem] = Field(default_factory=list)


class StuckPage(_Out):
    items: list[StuckCase]
    limit: int
    offset: int
    next_offset: int | None = Field(description="offset of the next page, or null on the last page")
    as_of: datetime
    temporal_checked: bool = Field(
        description="whether the page's cases were checked in Temporal for technical problems"
    )


class BoardCell(_Out):
    stage: Stage
    owner_agency: AgencyRole
    open: int
    overdue: int


class Board(_Out):
    province: str
    as_of: datetime
    cells: list[BoardCell]
    total_open: int
    total_overdue: int


# ---- supervisor actions ---------------------------------------------------------------------
class ReassignRequest(_In):
    assignee_user_id: str = Field(min_length=1, max_length=128, examples=["police-officer-7"])
    expected_version: Version | None = Field(default=None)
    override_reason: Reason | None = Field(
        default=None,
        description="supervisors of another agency than the stage's owner: why (required then; "
        "recorded in the audit log as an override). No personal data.",
    )

    def command(self, actor: Actor) -> Assign:
        return Assign(
            actor=actor,
            assignee_user_id=self.assignee_user_id,
            expected_version=self.expected_version,
            override_reason=self.override_reason,
        )


class ExtendDeadlineRequest(_In):
    extend_by: timedelta = Field(
        gt=timedelta(0),
        le=timedelta(days=365),
        description="ISO 8601 duration, e.g. P2D",
        examples=["P2D"],
    )
    reason: Reason
    handoff_id: Id | None = Field(default=None, description="extend a waiting handoff instead")
    expected_version: Version | None = Field(default=None)

    def command(self, actor: Actor) -> ExtendDeadline:
        return ExtendDeadline(
            actor=actor,
            extend_by=self.extend_by,
            reason=self.reason,
            handoff_id=self.handoff_id,
            expected_version=self.expected_version,
        )


class EscalateRequest(_In):
    reason: Reason
    expected_version: Version | None = Field(default=None)

    def command(self, actor: Actor) -> Escalate:
        return Escalate(actor=actor, reason=self.reason, expected_version=self.expected_version)


class ReopenRequest(_In):
    to_stage: Stage
    reason: Reason
    expected_version: Version | None = Field(default=None)

    def command(self, actor: Actor) -> Reopen:
        return Reopen(
            actor=actor,
            to_stage=self.to_stage,
            reason=self.reason,
            expected_version=self.expected_version,
        )


# ---- auditors -------------------------------------------------------------------------------
class HistoryEvent(_Out):
    seq: int
    event_id: str
    kind: str
    occurred_at: datetime
    recorded_at: datetime
    actor_user_id: str
    actor_agency: str | None
    stage: str
    reason: str | None = Field(
        description='why, as typed (decrypted for you); "[erased]" after retention'
    )
    request_id: str | None
    policy_version: str
    data: dict[str, Any] = Field(
        description='non-PII details; typed parts decrypted, "[erased]" after retention'
    )
    hash: str
    free_text_erased: bool = Field(
        default=False,
        description="retention removed this event's free text; its digest stays in the chain",
    )


class HistoryPage(Page[HistoryEvent]):
    model_config = ConfigDict(frozen=True)

    case_id: str
    next_offset: int | None
    access_log: str = Field(
        description="who read this case's personal data is logged by intake: GET this path there"
    )


class AsOfState(_Out):
    case_id: str
    at: datetime
    event_seq: int
    event_kind: str
    event_at: datetime
    state: dict[str, Any] = Field(description="the non-PII CaseState after that event")


class ChainCheck(_Out):
    case_id: str
    events: int
    ok: bool
    first_broken_seq: int | None
    problem: str | None
    expected_events: int | None = Field(
        default=None, description="how many events the workflow emitted"
    )
    expected_from: str | None = Field(
        default=None,
        description="which source said so: projection, workflow, workflow result, exported history",
    )


# The hash-chain check of one case or of a page of the jurisdiction's cases. Named apart from the
# contract's `VerifyResult` (the verification decision) so both keep plain schema names in OpenAPI.
class ChainVerification(_Out):
    checked: int
    ok: bool
    broken: list[ChainCheck]
    results: list[ChainCheck]
    limit: int
    offset: int
    next_offset: int | None


# ---- KPIs and reports -----------------------------------------------------------------------
class Ratio(_Out):
    id: str
    title: str
    numerator: int
    denominator: int
    value: float | None = Field(
        description="numerator / denominator, or null when the denominator is 0"
    )
    target: float
    comparison: str = Field(description=">= or >")
    met: bool | None
    formula: str
    detail: dict[str, Any] = Field(default_factory=dict)


class StageTiming(_Out):
    stage: str
    completed: int
    p50_hours: float | None
    p90_hours: float | None


class Compliance(_Out):
    stage: str
    agency: str
    completed: int
    on_time: int
    rate: float | None


class Kpis(_Out):
    province: str
    period_from: AwareDatetime
    period_to: AwareDatetime
    kpis_version: str
    ratios: list[Ratio]
    time_in_stage: list[StageTiming]
    deadline_compliance: list[Compliance]


class ReportKind(StrEnum):
    six_monthly = "six_monthly"
    annual = "annual"
    ad_hoc = "ad_hoc"


class ReportFormat(StrEnum):
    json = "json"
    csv = "csv"
    html = "html"
    pdf = "pdf"


class Lang(StrEnum):
    vi = "vi"
    en = "en"


class ReplayOutcome(_Out):
    case_id: str
    run_id: str
    source: str = Field(description="live (Temporal) or export (oversight.workflow_histories)")
    deterministic: bool
    error: str | None
    final_state_from: str | None = Field(
        description="completion_result or last_record_case_events_input"
    )
    matches_audit_log: bool | None
    differences: list[str] = Field(default_factory=list)
