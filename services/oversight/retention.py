"""The retention job: find closed cases whose retention period has elapsed and start a
RetentionWorkflow for each: daily through the Temporal schedule `nrm-retention-sweep` (created by
`nrm up` and `nrm retention schedule`), or by hand with `nrm retention run`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

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

from shared.db import Conn
from shared.temporal import WORKFLOW_TASK_QUEUE
from workflows.retention_workflow import RetentionInput, RetentionSweepInput

RETENTION_SCHEDULE_ID = "nrm-retention-sweep"
RETENTION_CRON = "0 2 * * *"  # 02:00 every day, province time: outside office hours
RETENTION_TIME_ZONE = "Asia/Ho_Chi_Minh"


@dataclass(frozen=True)
class DueCase:
    case_id: str
    person_ref: str
    closed_at: datetime


async def due_for_erasure(conn: Conn, now: datetime, retention_days: int, limit: int = 500
                          ) -> list[DueCase]:
    rows = await conn.fetch(
        """SELECT s.case_id, s.state->'facts'->>'person_ref' AS person_ref, s.closed_at
             FROM oversight.case_summary s
            WHERE s.status IN ('Closed', 'ClosedReferred') AND s.closed_at < $1
              AND s.state->'facts'->>'person_ref' IS NOT NULL  -- no person, nothing to erase (and no retry loop)
              AND NOT EXISTS (SELECT 1 FROM oversight.case_events e
                               WHERE e.case_id = s.case_id AND e.kind = 'personal_data_erased')
            ORDER BY s.closed_at LIMIT $2""",
        now - timedelta(days=retention_days), limit)
    return [DueCase(r["case_id"], r["person_ref"], r["closed_at"]) for r in rows]


async def start_erasures(client: Client, due: list[DueCase], retention_days: int, *,
                         workflow_task_queue: str = WORKFLOW_TASK_QUEUE, intake_task_queue: str = "nrm-intake",
                         oversight_task_queue: str = "nrm-oversight") -> list[str]:
    started = []
    for case in due:
        try:
            await client.start_workflow(
                "RetentionWorkflow", RetentionInput(case_id=case.case_id, person_ref=case.person_ref,
                                                    retention_days=retention_days,
                                                    intake_task_queue=intake_task_queue,
                                                    oversight_task_queue=oversight_task_queue),
                id=f"retention-{case.case_id}", task_queue=workflow_task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY)
            started.append(case.case_id)
        except WorkflowAlreadyStartedError:
            continue  # already erasing or erased
    return started


async def ensure_retention_schedule(client: Client, sweep: RetentionSweepInput | None = None, *,
                                    schedule_id: str = RETENTION_SCHEDULE_ID, cron: str = RETENTION_CRON) -> bool:
    """Create the daily retention sweep schedule unless it exists (an operator may have paused or changed
    it: an existing schedule is left alone). True when created. A sweep still running when the next one is
    due is not doubled (overlap SKIP); a missed one (server down at 02:00) runs when the server is back,
    within a day."""
    sweep = sweep or RetentionSweepInput()
    try:
        await client.create_schedule(
            schedule_id,
            Schedule(
                action=ScheduleActionStartWorkflow("RetentionSweepWorkflow", sweep, id=f"{schedule_id}-run",
                                                   task_queue=sweep.workflow_task_queue),
                spec=ScheduleSpec(cron_expressions=[cron], time_zone_name=RETENTION_TIME_ZONE),
                policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, catchup_window=timedelta(days=1)),
            ),
        )
    except ScheduleAlreadyRunningError:
        return False
    return True
