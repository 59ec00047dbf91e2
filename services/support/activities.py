"""Temporal activities that touch the support schema; run by the support process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from services.support import repository as repo
from shared.runtime import Runtime
from shared.temporal import SUPPORT_TASK_QUEUE

TASK_QUEUE = SUPPORT_TASK_QUEUE


class SupportSummary(BaseModel):
    """Non-PII summary of the support given on a case (e.g. for a closure check or a KPI report)."""

    case_id: str
    services: int
    amount_vnd: int
    service_types: list[str]
    current_plan_id: str | None
    follow_ups_recorded: int


class SupportActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name="support_summary")
    async def support_summary(self, case_id: str) -> SupportSummary:
        return SupportSummary(case_id=case_id, **(await repo.support_summary(self.runtime.pool, case_id)))


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    return [SupportActivities(runtime).support_summary]
