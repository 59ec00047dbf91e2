"""Temporal activities that touch the intake schema; run by the intake process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from pydantic import BaseModel
from temporalio import activity

from shared.runtime import Runtime
from shared.temporal import INTAKE_TASK_QUEUE

from . import repository

TASK_QUEUE = INTAKE_TASK_QUEUE
log = structlog.get_logger("intake.activities")


class ErasureResult(BaseModel):
    person_ref: str
    result: str  # erased | already_erased | not_found


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    @activity.defn(name="erase_person_pii")
    async def erase_person_pii(person_ref: str) -> ErasureResult:
        """Retention: erase the person's personal data (names, birth date, id number, contacts, address,
        victim narrative, events, blind indexes) and keep statistics (age band, province, commune,
        gender, citizenship, channel). Idempotent."""
        result = await repository.erase_person(runtime.pool, person_ref)
        log.info("person_pii_erased", person_ref=person_ref, result=result)
        return ErasureResult(person_ref=person_ref, result=result)

    # the intake API re-starts missing workflows itself (opening.reconcile_workflow_starts, at start-up and
    # periodically in its lifespan): no activity for it
    return [erase_person_pii]
