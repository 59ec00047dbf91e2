"""Shared pieces for workflow tests: a running workflow worker + oversight activity worker, case
facts, actors, and helpers to open a case and wait for its audit events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from google.protobuf.empty_pb2 import Empty
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
    Interceptor,
    OutboundInterceptor,
    StartWorkflowInput,
    WorkflowHandle,
)
from temporalio.service import RPCError
from temporalio.worker import Worker

from services.oversight.activities import build_activities as build_oversight_activities
from shared.config import Settings
from shared.contract import Actor, CaseFacts, CaseInput, CaseState
from shared.crypto import KeyRing
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.runtime import Runtime
from workflows.case_workflow import CaseWorkflow
from workflows.worker import build_worker

PROVINCE = "01"


class StartedWorkflows(Interceptor):
    """Client interceptor (installed on the test environments' clients) that remembers every workflow
    a test starts, through the harness or through a service API, so the harness can settle them all."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _RecordStarts(next, self)


class _RecordStarts(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, registry: StartedWorkflows) -> None:
        super().__init__(next)
        self._registry = registry

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        handle = await super().start_workflow(input)
        self._registry.ids.append(input.id)
        return handle


STARTED = StartedWorkflows()


def actor(
    agency: AgencyRole, *roles: Role, user: str | None = None, province: str = PROVINCE
) -> Actor:
    return Actor(
        user_id=user or f"{agency.value}-officer",
        agency=agency,
        roles=frozenset(roles or (Role.caseworker,)),
        province=province,
    )


def facts(
    case_id: str,
    *,
    channel: Channel = Channel.hotline_111,
    age_band: AgeBand = AgeBand.adult,
    abroad: bool = False,
    already_safe: bool = True,
    opener: AgencyRole = AgencyRole.hotline,
    now: Any = None,
) -> CaseFacts:
    from datetime import UTC, datetime

    return CaseFacts(
        case_id=case_id,
        person_ref=f"p-{uuid.uuid4().hex[:12]}",
        province=PROVINCE,
        channel=channel,
        age_band=age_band,
        abroad=abroad,
        already_safe=already_safe,
        opened_by=actor(opener),
        opened_at=now or datetime.now(UTC),
    )


@dataclass
class Harness:
    client: Client
    task_queue: str
    pool: asyncpg.Pool

    oversight_task_queue: str
    opened: list[str] = field(default_factory=list)

    async def server_now(self) -> datetime:
        """The server's clock: on the time-skipping server it runs ahead of the wall clock."""
        try:
            resp = await self.client.test_service.get_current_time(Empty())
            return resp.time.ToDatetime(tzinfo=UTC)
        except (RPCError, NotImplementedError):
            return datetime.now(UTC)

    async def open(self, f: CaseFacts) -> WorkflowHandle[Any, Any]:
        if abs((f.opened_at - datetime.now(UTC)).total_seconds()) < 60:
            # the facts were made with the wall clock: report time must be the server's, or deadlines
            # computed from it are already years past on the time-skipping server
            f = f.model_copy(update={"opened_at": await self.server_now()})
        handle = await self.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(facts=f, oversight_task_queue=self.oversight_task_queue),
            id=f.case_id,
            task_queue=self.task_queue,
        )
        self.opened.append(f.case_id)
        return handle

    def adopt(self, case_id: str) -> None:
        """Terminate this case too when the harness ends (a case opened by another harness or an API)."""
        self.opened.append(case_id)

    async def state(self, handle: WorkflowHandle[Any, Any]) -> CaseState:
        return await handle.query(CaseWorkflow.state)

    async def events(
        self, case_id: str, at_least: int = 1, wait_s: float = 10.0
    ) -> list[asyncpg.Record]:
        """The audit events of a case once at least `at_least` have landed."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            rows = await self.pool.fetch(
                "SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id
            )
            if len(rows) >= at_least or asyncio.get_running_loop().time() > deadline:
                return list(rows)
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_workers(
    client: Client, pool: asyncpg.Pool, ring: KeyRing, task_queue: str, keep_cases: bool = False
) -> AsyncIterator[Harness]:
    """Workers for one test. On exit the test's cases are terminated (unless keep_cases): on the
    time-skipping server an orphaned case's timers would otherwise block the shared clock."""
    runtime = Runtime(Settings(), ring, pool, client)
    oversight_queue = (
        f"{task_queue}-oversight"  # per test: cases of other tests never reach this database
    )
    oversight = Worker(
        client, task_queue=oversight_queue, activities=build_oversight_activities(runtime)
    )
    harness = Harness(client, task_queue, pool, oversight_queue)
    first_started = len(STARTED.ids)
    # a worker whose cases outlive it runs without a sticky cache: the test server would otherwise hold
    # the next workflow task on the dead worker's sticky queue, waiting for a timeout on a clock it stops
    async with (
        build_worker(client, task_queue, max_cached_workflows=0 if keep_cases else 1000),
        oversight,
    ):
        try:
            yield harness
        finally:
            # while the workers still run: let in-flight activities finish, then end the test's cases
            for case_id in dict.fromkeys([*harness.opened, *STARTED.ids[first_started:]]):
                await _settle(client, case_id, terminate=not keep_cases)


async def _settle(client: Client, case_id: str, terminate: bool) -> None:
    """Wait until no workflow task and no started activity is pending, then cancel the case unless kept.
    The time-skipping test server does not advance its shared clock past work that no worker will
    finish, so a case left mid-task would stall every later test's env.sleep."""
    handle = client.get_workflow_handle(case_id)
    request = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=case_id)
    )
    running = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
    try:
        for _ in range(500):
            # the raw RPC: the typed describe() cannot decode the test server's datetime search attributes
            desc = await client.workflow_service.describe_workflow_execution(request)
            if desc.workflow_execution_info.status != running:
                return
            # any pending activity, even one only scheduled: cancelling the case then leaks the server's clock lock
            busy = desc.HasField("pending_workflow_task") or bool(desc.pending_activities)
            if not busy and desc.workflow_execution_info.history_length > 4:
                break
            await asyncio.sleep(0.02)
        if terminate:
            # cancel, handled by the still-running worker, so the run and its timers end cleanly
            await handle.cancel()
            for _ in range(250):
                desc = await client.workflow_service.describe_workflow_execution(request)
                if desc.workflow_execution_info.status != running:
                    return
                await asyncio.sleep(0.02)
    except RPCError:
        pass  # completed meanwhile


UPDATE_TIMEOUT = timedelta(seconds=10)
