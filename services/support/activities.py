"""Temporal activities that touch the support schema; run by the support process's worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from pydantic import BaseModel
from temporalio import activity

from services.support import repository as repo
from shared.runtime import Runtime
from shared.temporal import SUPPORT_TASK_QUEUE

TASK_QUEUE = SUPPORT_TASK_QUEUE
log = structlog.get_logger("support.activities")


class SupportErasure(BaseModel):
    """What retention erased in the support schema: rows touched per table (counts only)."""

    case_id: str
    rows: dict[str, int]


class SupportActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name="erase_support_pii")
    async def erase_support_pii(self, case_id: str) -> SupportErasure:
        """Retention: erase the case's support plan objectives and actions, service notes, provider names and
        approval reasons, follow-up notes and consent document references. Plan types, dates, service
        kinds, amounts and outcomes stay. Idempotent."""
        rows = await repo.erase_case(self.runtime.pool, case_id)
        activity.logger.info("support personal data erased for %s: %s", case_id, rows)
        return SupportErasure(case_id=case_id, rows=rows)


async def _encrypt_legacy_text(runtime: Runtime) -> None:
    try:
        done = await repo.encrypt_legacy_text(runtime.pool, runtime.ring)
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        OSError,
    ) as exc:  # the next start tries again
        log.warning("legacy_text_not_encrypted", error=type(exc).__name__)
        return
    if done:
        log.info("legacy_text_encrypted", rows=done)


_BACKGROUND: set[asyncio.Task[None]] = set()


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    # rows written before migration 002 hold plain text: encrypt them once the worker starts (idempotent)
    try:
        task = asyncio.get_running_loop().create_task(
            _encrypt_legacy_text(runtime), name="support-legacy-encrypt"
        )
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)
    except RuntimeError:
        pass  # built outside an event loop (a replayer or a script): nothing to start
    acts = SupportActivities(runtime)
    return [acts.erase_support_pii]
