"""Temporal activities that touch the verification schema; run by the verification process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from services.verification import repository as repo
from shared.runtime import Runtime
from shared.temporal import VERIFICATION_TASK_QUEUE

TASK_QUEUE = VERIFICATION_TASK_QUEUE


class VerificationErasure(BaseModel):
    """What retention erased in the verification schema: rows touched per table (counts only)."""

    case_id: str
    rows: dict[str, int]


class VerificationActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name="erase_verification_pii")
    async def erase_verification_pii(self, case_id: str) -> VerificationErasure:
        """Retention: erase the case's evidence sources, references and descriptions, rescue locations and
        notes, refusal documents, perpetrators' names, aliases, phones, details and their blind indexes.
        Kinds, dates, counts and roles stay. Idempotent (a retry erases nothing twice)."""
        rows = await repo.erase_case(self.runtime.pool, case_id)
        activity.logger.info("verification personal data erased for %s: %s", case_id, rows)
        return VerificationErasure(case_id=case_id, rows=rows)


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    acts = VerificationActivities(runtime)
    return [acts.erase_verification_pii]
