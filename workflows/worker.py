"""The workflow worker process: runs CaseWorkflow on the workflow task queue."""

from __future__ import annotations

import asyncio
import compileall
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import structlog
from temporalio.worker import PollerBehaviorAutoscaling, Worker

from shared.config import get_settings
from shared.crypto import load_keyring
from shared.logging import configure_logging
from shared.metrics import init_sdk_telemetry
from shared.temporal import WORKFLOW_TASK_QUEUE, connect
from shared.tracing import init_tracing, shutdown_tracing
from workflows.case_workflow import CaseWorkflow
from workflows.policy_activity import resolve_case_policy
from workflows.retention_workflow import RetentionSweepWorkflow, RetentionWorkflow

log = structlog.get_logger("workflow-worker")
WORKFLOWS = [CaseWorkflow, RetentionWorkflow, RetentionSweepWorkflow]
_executor = ThreadPoolExecutor(
    max_workers=4
)  # the policy local activity is a sync (file-reading) function


def compile_workflow_sources() -> bool:
    """Write the bytecode cache of the workflow modules. The sandbox imports a workflow's module again
    for every new run in this worker; with PYTHONDONTWRITEBYTECODE set (as on these machines) and no
    cache that is a full compile of case_workflow.py per case, a fifth of the worker's CPU. compileall
    writes the cache whatever that flag says; on a read-only tree it fails quietly and only speed is lost."""
    return bool(compileall.compile_dir(Path(__file__).parent, maxlevels=0, quiet=2))


def build_worker(
    client: object, task_queue: str = WORKFLOW_TASK_QUEUE, max_cached_workflows: int = 1000
) -> Worker:
    compile_workflow_sources()
    return Worker(
        client,  # type: ignore[arg-type]
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=[resolve_case_policy],
        activity_executor=_executor,
        max_cached_workflows=max_cached_workflows,
        # autoscaling pollers cut e2e p95 from 3.2 s to 0.6 s at concurrency 50 (docs/reference/TEMPORAL.md §8)
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
    )


async def run() -> None:
    settings = get_settings()
    configure_logging("workflow-worker", settings.log_level)
    init_sdk_telemetry(
        "workflow-worker", settings
    )  # before the client: SDK metrics on NRM_METRICS_PORT
    init_tracing(
        "workflow-worker", settings
    )  # before the client: its interceptors trace the workflows
    ring = load_keyring(settings.resolved_keyring_file)
    client = await connect(settings.resolved_temporal_address, settings.temporal_namespace, ring)
    worker = build_worker(client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with worker:
            log.info("workflow_worker_started", task_queue=WORKFLOW_TASK_QUEUE)
            await stop.wait()
    finally:
        shutdown_tracing()


if __name__ == "__main__":
    asyncio.run(run())
