"""Shared pieces for workflow tests: a running workflow worker + oversight activity worker, case
facts, actors, and helpers to open a case and wait for its audit events."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from services.oversight.activities import OversightActivities
from shared.config import Settings
from shared.crypto import KeyRing
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.runtime import Runtime
from shared.temporal import OVERSIGHT_TASK_QUEUE
from workflows.case_workflow import CaseWorkflow
from workflows.models import Actor, CaseFacts, CaseInput, CaseState
from workflows.worker import build_worker

PROVINCE = "01"


def actor(agency: AgencyRole, *roles: Role, user: str | None = None, province: str = PROVINCE) -> Actor:
    return Actor(user_id=user or f"{agency.value}-officer", agency=agency,
                 roles=frozenset(roles or (Role.caseworker,)), province=province)


def facts(case_id: str, *, channel: Channel = Channel.hotline_111, age_band: AgeBand = AgeBand.adult,
          abroad: bool = False, already_safe: bool = True, opener: AgencyRole = AgencyRole.hotline,
          now: Any = None) -> CaseFacts:
    from datetime import UTC, datetime

    return CaseFacts(case_id=case_id, person_ref=f"p-{uuid.uuid4().hex[:12]}", province=PROVINCE,
                     channel=channel, age_band=age_band, abroad=abroad, already_safe=already_safe,
                     opened_by=actor(opener), opened_at=now or datetime.now(UTC))


@dataclass
class Harness:
    client: Client
    task_queue: str
    pool: asyncpg.Pool

    async def open(self, f: CaseFacts) -> WorkflowHandle[Any, Any]:
        return await self.client.start_workflow(CaseWorkflow.run, CaseInput(facts=f), id=f.case_id,
                                                task_queue=self.task_queue)

    async def state(self, handle: WorkflowHandle[Any, Any]) -> CaseState:
        return await handle.query(CaseWorkflow.state)

    async def events(self, case_id: str, at_least: int = 1, wait_s: float = 10.0) -> list[asyncpg.Record]:
        """The audit events of a case once at least `at_least` have landed."""
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            rows = await self.pool.fetch("SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq",
                                         case_id)
            if len(rows) >= at_least or asyncio.get_running_loop().time() > deadline:
                return list(rows)
            await asyncio.sleep(0.05)


@asynccontextmanager
async def running_workers(client: Client, pool: asyncpg.Pool, ring: KeyRing, task_queue: str
                          ) -> AsyncIterator[Harness]:
    runtime = Runtime(Settings(), ring, pool, client)
    oversight = Worker(client, task_queue=OVERSIGHT_TASK_QUEUE,
                       activities=[OversightActivities(runtime).record_case_events,
                                   OversightActivities(runtime).export_case_history])
    async with build_worker(client, task_queue), oversight:
        yield Harness(client, task_queue, pool)


UPDATE_TIMEOUT = timedelta(seconds=10)
