"""RetentionWorkflow: after the retention period that follows closure, erase a person's personal data
in intake's registry and record the erasure in the case's audit chain. The statistics (age band,
province, channel, stage history) and the chain itself stay valid. Started by `nrm retention run`;
workflow id `retention-<case id>`, so running the job twice erases once."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10))


class RetentionInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str = Field(min_length=1, max_length=64)
    person_ref: str = Field(min_length=1, max_length=64)
    retention_days: int = Field(ge=1)
    intake_task_queue: str = "nrm-intake"
    oversight_task_queue: str = "nrm-oversight"


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> bool:
        await workflow.execute_activity(
            "erase_person_pii", inp.person_ref, task_queue=inp.intake_task_queue,
            start_to_close_timeout=timedelta(minutes=1), retry_policy=RETRY)
        recorded: bool = await workflow.execute_activity(
            "record_personal_data_erased", args=[inp.case_id, inp.retention_days],
            task_queue=inp.oversight_task_queue, result_type=bool,
            start_to_close_timeout=timedelta(minutes=1), retry_policy=RETRY)
        return recorded
