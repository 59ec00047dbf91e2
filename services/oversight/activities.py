"""Activities on the oversight task queue: the workflow's audit events, the case_summary projection,
the notification outbox and the history export at closure."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

from services.oversight.audit_log import append_event, append_system_event, enqueue_notification
from services.oversight.retention import build_retention_activities, due_for_erasure, start_erasures
from shared.contract import RecordBatch
from shared.notification_handover import hand_over, handover_queue
from shared.runtime import Runtime
from shared.temporal import OVERSIGHT_TASK_QUEUE
from workflows.retention_workflow import RetentionSweepInput

TASK_QUEUE = OVERSIGHT_TASK_QUEUE


class OversightActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn(name="record_case_events")
    async def record_case_events(self, batch: RecordBatch) -> int:
        """Append the events in order and queue the notifications, all in one transaction per call, so a
        retry after a crash re-sends the batch and inserts only what is missing."""
        inserted = 0
        async with self.runtime.pool.acquire() as conn, conn.transaction():
            for event in batch.events:
                inserted += await append_event(conn, self.runtime.ring, event)
            for note in batch.notifications:
                await enqueue_notification(conn, note)
        queue = handover_queue(
            self.runtime.extras
        )  # after the commit: delivery by services/notifications
        if queue and batch.notifications:
            await hand_over(self.runtime.temporal, batch.notifications, queue)
        return inserted

    @activity.defn(name="export_case_history")
    async def export_case_history(self, case_id: str, run_id: str) -> int:
        """Keep the workflow history (payloads already encrypted by the codec, then the whole document
        encrypted again with the key ring) so replay works after Temporal's retention removed it."""
        handle = self.runtime.temporal.get_workflow_handle(case_id, run_id=run_id)
        history = await handle.fetch_history()
        raw = gzip.compress(history.to_json().encode())
        kid, blob = self.runtime.ring.encrypt_bytes(raw, f"history:{case_id}:{run_id}".encode())
        async with self.runtime.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO oversight.workflow_histories (case_id, run_id, key_id, history)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (case_id, run_id) DO UPDATE SET history = EXCLUDED.history,
                       key_id = EXCLUDED.key_id, exported_at = now()""",
                case_id,
                run_id,
                kid,
                blob,
            )
        return len(raw)

    @activity.defn(name="record_personal_data_erased")
    async def record_personal_data_erased(self, case_id: str, retention_days: int) -> bool:
        """Close the case's audit chain with the erasure (idempotent: recorded once per case)."""
        async with self.runtime.pool.acquire() as conn:
            if await conn.fetchval(
                "SELECT 1 FROM oversight.case_events WHERE case_id = $1 "
                "AND kind = 'personal_data_erased'",
                case_id,
            ):
                return False
            return await append_system_event(
                conn,
                self.runtime.ring,
                case_id,
                "personal_data_erased",
                f"retention period of {retention_days} days after closure elapsed",
                {"retention_days": retention_days},
                datetime.now(UTC),
            )

    @activity.defn(name="start_due_erasures")
    async def start_due_erasures(self, sweep: RetentionSweepInput) -> int:
        """The retention sweep's work: start a RetentionWorkflow for each closed case past the period."""
        days = self.runtime.settings.retention_days_after_closure
        async with self.runtime.pool.acquire() as conn:
            due = await due_for_erasure(conn, datetime.now(UTC), days, sweep.limit)
        started = await start_erasures(
            self.runtime.temporal,
            due,
            days,
            workflow_task_queue=sweep.workflow_task_queue,
            intake_task_queue=sweep.intake_task_queue,
            oversight_task_queue=sweep.oversight_task_queue,
        )
        activity.logger.info("retention sweep: %d due, %d erasures started", len(due), len(started))
        return len(started)


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    acts = OversightActivities(runtime)
    return [
        acts.record_case_events,
        acts.export_case_history,
        acts.record_personal_data_erased,
        acts.start_due_erasures,
        *build_retention_activities(runtime),
    ]
