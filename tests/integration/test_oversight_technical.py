"""Technically stuck cases as the supervisor's list reports them (services.oversight.diagnostics.technical_problems),
on the real dev server: a workflow task that keeps failing (the situation after a bad deploy: the worker
cannot run the case's code) and a case with no workflow at all."""

from __future__ import annotations

import asyncio
import uuid

from temporalio import workflow
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from services.oversight.diagnostics import technical_problems


@workflow.defn(name="BrokenOnPurpose")
class BrokenOnPurpose:
    """Fails its workflow task every time, as code that cannot replay a case's history would."""

    @workflow.run
    async def run(self) -> None:
        raise RuntimeError(
            "cannot run this case's code"
        )  # not an ApplicationError: the task fails and retries


async def test_a_failing_workflow_task_is_reported(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    case_id = f"c-{uuid.uuid4().hex}"
    # unsandboxed: this test module imports the oversight API, which the sandbox would re-import
    async with Worker(
        dev_env.client,
        task_queue=task_queue,
        workflows=[BrokenOnPurpose],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await dev_env.client.start_workflow(
            BrokenOnPurpose.run, id=case_id, task_queue=task_queue
        )
        try:
            problems = []
            for _ in range(
                150
            ):  # bounded wait for the server's second attempt, not a timing assertion
                problems = await technical_problems(dev_env.client, case_id)
                if problems:
                    break
                await asyncio.sleep(0.1)
            assert [p.kind for p in problems] == ["workflow_task_failing"]
            assert problems[0].attempt is not None and problems[0].attempt > 1
        finally:
            await handle.terminate("test over")
    # a terminated workflow of an open case, and an open case with no workflow, are both reported
    problems = await technical_problems(dev_env.client, case_id)
    assert [(p.kind, p.detail) for p in problems] == [
        ("workflow_not_running", "workflow status TERMINATED")
    ]
    problems = await technical_problems(dev_env.client, f"c-{uuid.uuid4().hex}")
    assert [p.kind for p in problems] == ["workflow_not_running"]
