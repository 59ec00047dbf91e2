"""The deadline policy: loading and validating the YAML file, resolving it for one case, and the
deterministic date arithmetic (calendar or working days) the workflow uses.

`load_policy` does file I/O and runs outside the workflow (in a local activity); everything else
is pure and safe inside the workflow sandbox."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.domain import AgencyRole, Channel, Stage

DayKind = Literal["calendar", "working"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeadlineRule(_Model):
    id: str
    stage: Stage
    duration: timedelta
    days: DayKind
    source: str = Field(min_length=3)
    jurisdiction: str = "*"
    category: str = "*"
    channel: Channel | Literal["*"] = "*"

    def specificity(self) -> int:
        return (
            (4 if self.jurisdiction != "*" else 0)
            + (2 if self.category != "*" else 0)
            + (1 if self.channel != "*" else 0)
        )


class EscalationPolicy(_Model):
    level_1_after: timedelta
    level_2_after: timedelta
    level_3_after: timedelta
    reminder_before_fraction: float = Field(gt=0, lt=1)
    source: str

    def level_offsets(self) -> tuple[timedelta, timedelta, timedelta]:
        return (self.level_1_after, self.level_2_after, self.level_3_after)

    @property
    def top_level(self) -> int:
        """The highest escalation level (the steering committee): the ladder's length, 3."""
        return len(self.level_offsets())


class HandoffPolicy(_Model):
    accept_within: timedelta
    days: DayKind
    source: str


class ReintegrationPolicy(_Model):
    follow_up_months: list[int] = Field(min_length=1)
    close_after_last_follow_up: timedelta
    source: str


class ReflectionPolicy(_Model):
    enabled: bool
    days: int = Field(ge=0, le=365)
    starts_at: Literal["verify_confirmed"]
    source: str


class Policy(_Model):
    version: str = Field(min_length=1)
    timezone_offset_hours: int = Field(ge=-12, le=14)
    holidays: list[date] = Field(default_factory=list)
    escalation: EscalationPolicy
    handoff: HandoffPolicy
    reintegration: ReintegrationPolicy
    reflection_period: ReflectionPolicy
    reopen_window: timedelta
    stage_owners: dict[Stage, dict[str, str]]
    deadlines: list[DeadlineRule]

    @model_validator(mode="after")
    def _complete(self) -> Policy:
        for stage in Stage:
            if stage == Stage.closed:
                continue
            if stage not in self.stage_owners or "default" not in self.stage_owners[stage]:
                raise ValueError(f"stage_owners.{stage.value}.default is missing")
            for channel, owner in self.stage_owners[stage].items():
                if channel != "default":
                    Channel(channel)
                if owner != "opener":
                    AgencyRole(owner)
            if not any(
                r.stage == stage
                and r.jurisdiction == "*"
                and r.category == "*"
                and r.channel == "*"
                for r in self.deadlines
            ):
                raise ValueError(f"no catch-all deadline for stage {stage.value}")
        ids = [r.id for r in self.deadlines]
        if len(ids) != len(set(ids)):
            raise ValueError("deadline ids must be unique")
        return self


class CasePolicy(_Model):
    """The policy resolved for one case at opening; recorded on the case (version in force)."""

    version: str
    timezone_offset_hours: int
    holidays: list[date]
    deadlines: dict[Stage, DeadlineRule]
    owners: dict[Stage, AgencyRole]
    escalation: EscalationPolicy
    handoff: HandoffPolicy
    reintegration: ReintegrationPolicy
    reflection_period: ReflectionPolicy
    reopen_window: timedelta


class PolicyRequest(_Model):
    province: str
    categories: list[str]
    channel: Channel
    opener: AgencyRole


def load_policy(path: Path) -> Policy:
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"policy file {path}: {exc}") from None
    return Policy.model_validate(raw)


def resolve_policy(policy: Policy, req: PolicyRequest) -> CasePolicy:
    deadlines: dict[Stage, DeadlineRule] = {}
    owners: dict[Stage, AgencyRole] = {}
    for stage in Stage:
        if stage == Stage.closed:
            continue
        candidates = [
            r
            for r in policy.deadlines
            if r.stage == stage
            and r.jurisdiction in ("*", req.province)
            and r.category in ("*", *req.categories)
            and r.channel in ("*", req.channel)
        ]
        deadlines[stage] = max(candidates, key=lambda r: r.specificity())
        table = policy.stage_owners[stage]
        owner = table.get(req.channel.value, table["default"])
        owners[stage] = req.opener if owner == "opener" else AgencyRole(owner)
    return CasePolicy(
        version=policy.version,
        timezone_offset_hours=policy.timezone_offset_hours,
        holidays=policy.holidays,
        deadlines=deadlines,
        owners=owners,
        escalation=policy.escalation,
        handoff=policy.handoff,
        reintegration=policy.reintegration,
        reflection_period=policy.reflection_period,
        reopen_window=policy.reopen_window,
    )


def add_period(
    start: datetime, duration: timedelta, days: DayKind, holidays: list[date], tz_hours: int
) -> datetime:
    """`start + duration`; for working days each whole day of the duration counts only Mon-Fri
    outside holidays (in local time), and the remainder (hours) is added on a working day."""
    if days == "calendar":
        return start + duration
    tz = timezone(timedelta(hours=tz_hours))
    local = start.astimezone(tz)
    holiday_set = set(holidays)
    whole_days, remainder = duration.days, duration - timedelta(days=duration.days)

    def working(d: date) -> bool:
        return d.weekday() < 5 and d not in holiday_set

    while not working(
        local.date()
    ):  # a period that starts on a day off starts on the next working day
        local = (local + timedelta(days=1)).replace(hour=8, minute=0, second=0, microsecond=0)
    counted = 0
    while counted < whole_days:
        local += timedelta(days=1)
        if working(local.date()):
            counted += 1
    local += remainder
    return local.astimezone(start.tzinfo or UTC_TZ)


UTC_TZ = UTC


def add_months(start: datetime, months: int) -> datetime:
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    days_in_month = [
        31,
        29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28,
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ][month - 1]
    return start.replace(year=year, month=month, day=min(start.day, days_in_month))
