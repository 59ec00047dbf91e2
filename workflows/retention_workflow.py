"""RetentionWorkflow: after the retention period that follows closure, erase the case's personal data
in every schema (intake's registry, verification's and support's records, oversight's free text) and
record the erasure in the case's audit chain. The statistics (age band, province, channel, stage
history, kinds, dates, counts) and the chain itself stay valid. Started by RetentionSweepWorkflow
(daily, from the Temporal schedule `nrm-retention-sweep`) or by hand with `nrm retention run`; workflow
id `retention-<case id>`, so a case is erased once however often the sweep runs."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel, ConfigDict, Field

RETRY = RetryPolicy(initial_interval=timedelta(seconds=5), maximum_interval=timedelta(minutes=10))
# Runs started before this change erased intake only; replaying them must not issue the new activities.
ERASE_EVERY_SCHEMA = "retention-erases-every-schema"


class RetentionInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    case_id: str = Field(min_length=1, max_length=64)
    person_ref: str = Field(min_length=1, max_length=64)
    retention_days: int = Field(ge=1)
    intake_task_queue: str = "nrm-intake"
    oversight_task_queue: str = "nrm-oversight"
    verification_task_queue: str = "nrm-verification"
    support_task_queue: str = "nrm-support"


@workflow.defn(name="RetentionWorkflow")
class RetentionWorkflow:
    @workflow.run
    async def run(self, inp: RetentionInput) -> bool:
        await workflow.execute_activity(
            "erase_person_pii",
            inp.person_ref,
            task_queue=inp.intake_task_queue,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        every_schema = workflow.patched(ERASE_EVERY_SCHEMA)
        if every_schema:
            for activity, queue in (
                ("erase_verification_pii", inp.verification_task_queue),
                ("erase_support_pii", inp.support_task_queue),
            ):
                await workflow.execute_activity(
                    activity,
                    inp.case_id,
                    task_queue=queue,
                    start_to_close_timeout=timedelta(minutes=1),
                    retry_policy=RETRY,
                )
        recorded: bool = await workflow.execute_activity(
            "record_personal_data_erased",
            args=[inp.case_id, inp.retention_days],
            task_queue=inp.oversight_task_queue,
            result_type=bool,
            start_to_close_timeout=timedelta(minutes=1),
            retry_policy=RETRY,
        )
        if every_schema:
            # after the erasure event, so that the event and the projection it refreshed are covered too
            await workflow.execute_activity(
                "erase_oversight_free_text",
                inp.case_id,
                task_queue=inp.oversight_task_queue,
                start_to_close_timeout=timedelta(minutes=1),
                retry_policy=RETRY,
            )
        return recorded


class RetentionSweepInput(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(
        default=500,
        ge=1,
        le=5000,
        description="cases started per sweep; the next sweep takes the rest",
    )
    workflow_task_queue: str = "nrm-workflows"
    intake_task_queue: str = "nrm-intake"
    oversight_task_queue: str = "nrm-oversight"


@workflow.defn(name="RetentionSweepWorkflow")
class RetentionSweepWorkflow:
    """One sweep: the oversight activity lists the closed cases past the retention period and starts a
    RetentionWorkflow for each. Returns how many it started."""

    @workflow.run
    async def run(self, inp: RetentionSweepInput) -> int:
        started: int = await workflow.execute_activity(
            "start_due_erasures",
            inp,
            task_queue=inp.oversight_task_queue,
            result_type=int,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RETRY,
        )
        return started
