"""Workflow inputs/outputs and API request/response models of the notifications service."""

from __future__ import annotations

from datetime import datetime, time
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


# ---- workflow contract ------------------------------------------------------------------------
class RetryConfig(_Frozen):
    max_attempts: int = 8
    initial_seconds: float = 5.0
    max_seconds: float = 900.0


class DeliveryRef(_Frozen):
    delivery_id: str
    not_before: AwareDatetime | None = None


class Plan(_Frozen):
    deliveries: list[DeliveryRef] = Field(default_factory=list)
    retry: RetryConfig = RetryConfig()
    digested: int = 0
    inbox: int = 0


class DigestInput(_Frozen):
    recipient_id: str
    channel: str
    window_seconds: float


class FlushResult(_Frozen):
    delivery: DeliveryRef | None = None
    retry: RetryConfig = RetryConfig()


class ResendInput(_Frozen):
    delivery_id: str
    retry: RetryConfig


# ---- API --------------------------------------------------------------------------------------
class InboxItem(BaseModel):
    item_id: str
    case_id: str
    kind: str
    level: int
    stage: str
    stage_label: str = Field(description="the stage's Vietnamese label, as on the console")
    due_at: datetime | None
    created_at: datetime
    read: bool
    link: str


class InboxPage(BaseModel):
    items: list[InboxItem]
    unread: int = Field(description="unread items of the caller (for the console's bell)")
    limit: int
    offset: int


class LogEntry(BaseModel):
    at: datetime
    outcome: Literal["sent", "failed", "dead", "resend"]
    attempt: int | None
    detail: str | None


class DeadLetter(BaseModel):
    delivery_id: str
    case_ids: list[str]
    digest: bool
    recipient_group: str
    province: str | None
    channel: Literal["email", "sms"]
    max_level: int
    attempts: int
    resent: int
    last_error: str | None
    dead_at: datetime | None
    log: list[LogEntry]


class DeadLetterPage(BaseModel):
    items: list[DeadLetter]
    limit: int
    offset: int


class Resent(BaseModel):
    delivery_id: str
    workflow_id: str
    resent: int


class Preferences(BaseModel):
    channel: Literal["email", "sms", "inapp"] = Field(description="inapp: the console's bell only")
    language: Literal["vi", "en"] | None = None
    quiet_start: time | None = Field(
        default=None, description="local time (Asia/Ho_Chi_Minh), e.g. 22:00"
    )
    quiet_end: time | None = Field(
        default=None, description="e.g. 06:30; level-3 escalations ignore quiet hours"
    )

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"channel": "sms", "language": "vi", "quiet_start": "22:00", "quiet_end": "06:30"}
            ]
        }
    )

    @model_validator(mode="after")
    def _both_or_neither(self) -> Preferences:
        if (self.quiet_start is None) != (self.quiet_end is None):
            raise ValueError("quiet_start and quiet_end go together")
        return self
