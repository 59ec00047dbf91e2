"""Temporal diagnostics for the supervisor's stuck list: what Temporal says is technically wrong with a
case's workflow (a pending activity retrying or failing, a failing workflow task, no running workflow, or
Temporal itself unreachable). Asked only for the cases of one page, a few at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from services.oversight.models import TechnicalProblem

TEMPORAL_CHECK_TIMEOUT = 3.0  # seconds per describe call
CONCURRENT_CHECKS = 10


async def technical_problems(client: Client, case_id: str) -> list[TechnicalProblem]:
    """What is technically wrong with the case's workflow, from its description (empty: nothing)."""
    try:
        desc = await asyncio.wait_for(
            client.get_workflow_handle(case_id).describe(), TEMPORAL_CHECK_TIMEOUT
        )
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return [
                TechnicalProblem(
                    kind="workflow_not_running", detail="no workflow for this open case"
                )
            ]
        return [
            TechnicalProblem(
                kind="temporal_unreachable", detail=exc.status.name if exc.status else "error"
            )
        ]
    except TimeoutError:
        return [TechnicalProblem(kind="temporal_unreachable", detail="describe timed out")]
    out: list[TechnicalProblem] = []
    raw = desc.raw_description
    if desc.status is not None and desc.status.name != "RUNNING":
        out.append(
            TechnicalProblem(
                kind="workflow_not_running", detail=f"workflow status {desc.status.name}"
            )
        )
    for pa in raw.pending_activities:
        if pa.attempt > 1 or pa.HasField("last_failure"):
            msg = (
                await _failure_message(client, pa.last_failure)
                if pa.HasField("last_failure")
                else ""
            )
            out.append(
                TechnicalProblem(
                    kind="activity_failing",
                    attempt=pa.attempt,
                    detail=f"{pa.activity_type.name}: {msg}".strip(),
                )
            )
    if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt > 1:
        out.append(
            TechnicalProblem(
                kind="workflow_task_failing",
                attempt=raw.pending_workflow_task.attempt,
                detail="workflow task is failing and being retried (see worker logs)",
            )
        )
    return out


async def technical_problems_of(
    client: Client, case_ids: Iterable[str]
) -> list[list[TechnicalProblem]]:
    """`technical_problems` of each case, in order, at most CONCURRENT_CHECKS at a time."""
    sem = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def check(case_id: str) -> list[TechnicalProblem]:
        async with sem:
            return await technical_problems(client, case_id)

    return list(await asyncio.gather(*(check(cid) for cid in case_ids)))


async def _failure_message(client: Client, failure: Any) -> str:
    """The failure's message; the codec encrypted it (encoded attributes), so decode with the client's converter."""
    try:
        exc = await client.data_converter.decode_failure(failure)
        return str(exc)[:300]
    except Exception:  # a failure we cannot decode: say so rather than fail the list
        return "(failure message could not be decoded)"
