"""The daily retention sweep as a Temporal schedule, on the real dev server (the time-skipping server has
no schedules): created once and left alone afterwards, and a triggered run starts the erasure of a case
closed longer than the retention period."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import ScheduleOverlapPolicy, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from services.oversight.retention import ensure_retention_schedule
from shared.crypto import KeyRing
from tests.helpers.workflow_harness import running_workers
from workflows.retention_workflow import RetentionSweepInput


async def _closed_long_ago(pool: Any, case_id: str, person_ref: str, years: int) -> None:
    closed = datetime.now(UTC) - timedelta(days=365 * years)
    await pool.execute(
        """INSERT INTO oversight.case_summary (case_id, province, stage, status, owner_agency, channel, age_band,
               is_child, is_abroad, trafficking_status, version, last_event_seq, last_event_at, stage_entered_at,
               opened_at, closed_at, policy_version, state)
           VALUES ($1, '01', 'reintegrate', 'Closed', 'social_protection', 'hotline_111', 'adult', false, false,
                   'ActualVictimOfTrafficking', 9, 9, $2, $2, $2, $2, 'test', $3::jsonb)""",
        case_id,
        closed,
        {"facts": {"person_ref": person_ref}},
    )


async def test_the_sweep_schedule_starts_erasures_of_cases_past_retention(
    dev_env: WorkflowEnvironment, db_pool: Any, ring: KeyRing, task_queue: str
) -> None:
    client = dev_env.client
    due_case, recent_case = f"c-due-{task_queue}", f"c-recent-{task_queue}"
    await _closed_long_ago(
        db_pool, due_case, "p-due", years=6
    )  # default retention: 5 years after closure
    await _closed_long_ago(db_pool, recent_case, "p-recent", years=1)
    sweep = RetentionSweepInput(
        workflow_task_queue=task_queue,
        intake_task_queue=f"{task_queue}-intake",
        oversight_task_queue=f"{task_queue}-oversight",
    )
    schedule_id = f"retention-sweep-{task_queue}"
    async with running_workers(client, db_pool, ring, task_queue):
        assert await ensure_retention_schedule(client, sweep, schedule_id=schedule_id)
        handle = client.get_schedule_handle(schedule_id)
        try:
            # a second start-up leaves the (possibly operator-changed) schedule alone
            await handle.pause(note="paused by an operator")
            assert not await ensure_retention_schedule(client, sweep, schedule_id=schedule_id)
            desc = await handle.describe()
            assert (
                desc.schedule.state.paused and desc.schedule.state.note == "paused by an operator"
            )
            assert desc.schedule.policy.overlap == ScheduleOverlapPolicy.SKIP
            assert (
                desc.schedule.spec.cron_expressions == ["0 2 * * *"] or desc.schedule.spec.calendars
            )
            assert desc.schedule.spec.time_zone_name == "Asia/Ho_Chi_Minh"

            await handle.trigger()  # what 02:00 does (a trigger runs even while paused)
            for _ in range(
                200
            ):  # bounded wait for the scheduled run to appear, not a timing assertion
                desc = await handle.describe()
                if desc.info.recent_actions:
                    break
                await asyncio.sleep(0.05)
            action = desc.info.recent_actions[0].action
            run = client.get_workflow_handle(
                action.workflow_id, run_id=action.first_execution_run_id
            )
            assert (
                await asyncio.wait_for(run.result(), 60) == 1
            )  # one case due, the recent one is not

            erasure = client.get_workflow_handle(f"retention-{due_case}")
            assert (
                await erasure.describe()
            ).status == WorkflowExecutionStatus.RUNNING  # waits for intake
            await erasure.terminate("test over: no intake worker here")
        finally:
            await handle.delete()
