"""The retention job: find closed cases whose retention period has elapsed and start a
RetentionWorkflow for each: daily through the Temporal schedule `nrm-retention-sweep` (created by
`nrm up` and `nrm retention schedule`), or by hand with `nrm retention run`."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.oversight.audit_log import erase_case_free_text
from shared.crypto import KeyRing
from shared.db import Conn
from shared.runtime import Runtime
from shared.temporal import SUPPORT_TASK_QUEUE, VERIFICATION_TASK_QUEUE, WORKFLOW_TASK_QUEUE
from workflows.retention_workflow import RetentionInput, RetentionSweepInput

RETENTION_SCHEDULE_ID = "nrm-retention-sweep"
RETENTION_CRON = "0 2 * * *"  # 02:00 every day, province time: outside office hours
RETENTION_TIME_ZONE = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class DueCase:
    case_id: str
    person_ref: str
    closed_at: datetime
    # erased before retention covered every schema (intake only): erased again, under another workflow id
    completing: bool = False

    @property
    def workflow_id(self) -> str:
        return f"retention-{self.case_id}" + ("-every-schema" if self.completing else "")


async def due_for_erasure(
    conn: Conn, now: datetime, retention_days: int, limit: int = 500
) -> list[DueCase]:
    """Closed cases past the retention period that are not erased yet; then cases that an erasure from
    before every schema was covered left half-done. Those are told apart by their exported workflow
    history: a complete erasure deletes it, the intake-only one kept it."""
    rows = await conn.fetch(
        """SELECT s.case_id, s.state->'facts'->>'person_ref' AS person_ref, s.closed_at,
                  EXISTS (SELECT 1 FROM oversight.case_events e
                           WHERE e.case_id = s.case_id AND e.kind = 'personal_data_erased') AS completing
             FROM oversight.case_summary s
            WHERE s.status IN ('Closed', 'ClosedReferred') AND s.closed_at < $1
              AND s.state->'facts'->>'person_ref' IS NOT NULL  -- no person, nothing to erase (and no retry loop)
              AND (NOT EXISTS (SELECT 1 FROM oversight.case_events e
                                WHERE e.case_id = s.case_id AND e.kind = 'personal_data_erased')
                   OR EXISTS (SELECT 1 FROM oversight.workflow_histories h WHERE h.case_id = s.case_id))
            ORDER BY 4, s.closed_at LIMIT $2""",
        now - timedelta(days=retention_days),
        limit,
    )
    return [DueCase(r["case_id"], r["person_ref"], r["closed_at"], r["completing"]) for r in rows]


async def start_erasures(
    client: Client,
    due: list[DueCase],
    retention_days: int,
    *,
    workflow_task_queue: str = WORKFLOW_TASK_QUEUE,
    intake_task_queue: str = "nrm-intake",
    oversight_task_queue: str = "nrm-oversight",
    verification_task_queue: str = VERIFICATION_TASK_QUEUE,
    support_task_queue: str = SUPPORT_TASK_QUEUE,
) -> list[str]:
    started = []
    for case in due:
        try:
            await client.start_workflow(
                "RetentionWorkflow",
                RetentionInput(
                    case_id=case.case_id,
                    person_ref=case.person_ref,
                    retention_days=retention_days,
                    intake_task_queue=intake_task_queue,
                    oversight_task_queue=oversight_task_queue,
                    verification_task_queue=verification_task_queue,
                    support_task_queue=support_task_queue,
                ),
                id=case.workflow_id,
                task_queue=workflow_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
            started.append(case.case_id)
        except WorkflowAlreadyStartedError:
            continue  # already erasing or erased
    return started


async def ensure_retention_schedule(
    client: Client,
    sweep: RetentionSweepInput | None = None,
    *,
    schedule_id: str = RETENTION_SCHEDULE_ID,
    cron: str = RETENTION_CRON,
) -> bool:
    """Create the daily retention sweep schedule unless it exists (an operator may have paused or changed
    it: an existing schedule is left alone). True when created. A sweep still running when the next one is
    due is not doubled (overlap SKIP); a missed one (server down at 02:00) runs when the server is back,
    within a day."""
    sweep = sweep or RetentionSweepInput()
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow(
                    "RetentionSweepWorkflow",
                    sweep,
                    id=f"{schedule_id}-run",
                    task_queue=sweep.workflow_task_queue,
                ),
                spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=RETENTION_TIME_ZONE),
                policy=SchedulePolicy(
                    overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)
                ),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True


# ---- oversight's part of an erasure -------------------------------------------------------------
# Free-text keys of the case state (CaseState: handoff reasons, a referral's destination, the closure
# reason). The projection keeps the state's shape, so the value becomes a marker rather than null.
FREE_TEXT_KEYS = frozenset(
    {"reason", "justification", "referred_elsewhere", "consent_override_reason"}
)
ERASED = "[erased]"


def scrub_free_text(value: Any) -> Any:
    """A copy of a JSON value with every free-text key's string replaced by the erased marker."""
    if isinstance(value, dict):
        return {
            k: (ERASED if k in FREE_TEXT_KEYS and isinstance(v, str) else scrub_free_text(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub_free_text(v) for v in value]
    return value


@dataclass(frozen=True)
class OversightErasure:
    case_id: str
    summary_scrubbed: bool
    histories_deleted: int
    audit_events_erased: int


async def erase_oversight_free_text(conn: Conn, ring: KeyRing, case_id: str) -> OversightErasure:
    """Oversight's share of a retention erasure, idempotent, in one transaction:
    - the audit log's free text (reasons, decision data) through audit_log.erase_case_free_text, which
      keeps the chain verifiable;
    - the case_summary projection's free text (handoff reasons, closure reason), kinds and dates kept
      (erase_case_free_text does it too; kept here for projections written before it existed);
    - the exported workflow history: its payloads hold every justification and reason typed on the case,
      under the data key, and no field can be erased inside it. Replay of an erased case is given up, and
      chain verification of it counts on the projection's last sequence (no longer on the export)."""
    async with conn.transaction():
        audit = await erase_case_free_text(conn, case_id, ring=ring)
        state = await conn.fetchval(
            "SELECT state FROM oversight.case_summary WHERE case_id = $1 FOR UPDATE", case_id
        )
        scrubbed = False
        if state is not None:
            current = json.loads(state) if isinstance(state, str) else state
            clean = scrub_free_text(current)
            if clean != current:
                await conn.execute(
                    "UPDATE oversight.case_summary SET state = $2 WHERE case_id = $1",
                    case_id,
                    clean,
                )
                scrubbed = True
        deleted = await conn.execute(
            "DELETE FROM oversight.workflow_histories WHERE case_id = $1", case_id
        )
        return OversightErasure(case_id, scrubbed, int(deleted.rsplit(" ", 1)[-1]), audit)


def build_retention_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    @activity.defn(name="erase_oversight_free_text")
    async def erase_oversight_free_text_activity(case_id: str) -> dict[str, Any]:
        """Retention, after the erasure event is recorded (so that it is covered too)."""
        async with runtime.pool.acquire() as conn:
            result = await erase_oversight_free_text(conn, runtime.ring, case_id)
        return {
            "case_id": result.case_id,
            "summary_scrubbed": result.summary_scrubbed,
            "histories_deleted": result.histories_deleted,
            "audit_events_erased": result.audit_events_erased,
        }

    return [erase_oversight_free_text_activity]
