"""Harness for the verification and support HTTP tests (real PostgreSQL, real Temporal), plus the
authentication matrix of both services: every endpoint answers 401 without a valid token."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from fastapi import FastAPI
from temporalio.client import Client, WorkflowHandle

from nrm.service import build_app
from shared.config import Settings
from shared.contract import (
    Actor,
    CaseFacts,
    CaseState,
    Classification,
    Decide,
    EvidenceKind,
    EvidenceRef,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    VerifyDecision,
    VerifyResult,
)
from shared.crypto import KeyRing
from shared.db import create_pool
from shared.domain import AgeBand, AgencyRole, Channel, DecisionMakingOrg, TraffickingStatus
from shared.runtime import Runtime
from tests.conftest import new_case_id
from tests.helpers.tokens import PROVINCE, bearer, wf_actor
from tests.helpers.workflow_harness import Harness, running_workers

A = AgencyRole


auth = bearer  # the verification and support tests' name for it
__all__ = ["PROVINCE", "A", "Stack", "auth", "stack", "wf_actor"]


@dataclass
class Stack:
    client: Client
    task_queue: str
    ring: KeyRing
    http: dict[str, httpx.AsyncClient]
    workers: Harness
    opened: list[str] = field(default_factory=list)

    @property
    def ver(self) -> httpx.AsyncClient:
        return self.http["verification"]

    @property
    def sup(self) -> httpx.AsyncClient:
        return self.http["support"]

    async def open_case(
        self,
        *,
        channel: Channel = Channel.hotline_111,
        already_safe: bool = True,
        abroad: bool = False,
        foreign: bool = False,
        age_band: AgeBand | str = AgeBand.adult,
        case_id: str | None = None,
    ) -> str:
        cid = case_id or new_case_id()
        facts = CaseFacts(
            case_id=cid,
            person_ref=f"p-{uuid.uuid4().hex[:12]}",
            province=PROVINCE,
            channel=channel,
            age_band=AgeBand(age_band),
            abroad=abroad,
            foreign_national=foreign,
            already_safe=already_safe,
            opened_by=wf_actor(A.hotline),
            opened_at=datetime.now(UTC),
        )
        await self.workers.open(facts)  # the workflow harness knows the per-test oversight queue
        self.opened.append(cid)
        await self.state(cid)
        return cid

    def handle(self, case_id: str) -> WorkflowHandle[Any, Any]:
        return self.client.get_workflow_handle(case_id)

    async def state(self, case_id: str) -> CaseState:
        s: CaseState = await self.handle(case_id).query("state", result_type=CaseState)
        return s

    async def decide(self, case_id: str, actor: Actor, decision: Any) -> CaseState:
        s: CaseState = await self.handle(case_id).execute_update(
            "decide",
            Decide(actor=actor, decision=decision, justification="test setup"),
            result_type=CaseState,
        )
        return s

    async def to_verify(self, case_id: str) -> CaseState:
        return await self.decide(
            case_id,
            wf_actor(A.hotline),
            ReceiveDecision(
                classification=Classification.trafficking_suspected, channel=Channel.hotline_111
            ),
        )

    async def to_identify(self, case_id: str) -> CaseState:
        await self.to_verify(case_id)
        return await self.decide(
            case_id, wf_actor(A.social_protection), VerifyDecision(result=VerifyResult.confirmed)
        )

    async def to_protect(
        self, case_id: str, status: TraffickingStatus = TraffickingStatus.ActualVictimOfTrafficking
    ) -> CaseState:
        await self.to_identify(case_id)
        return await self.decide(
            case_id,
            wf_actor(A.police),
            IdentifyDecision(
                status=status,
                deciding_org=DecisionMakingOrg.Police,
                evidence=[
                    EvidenceRef(evidence_id="ev-setup", kind=EvidenceKind.statement_of_person)
                ],
            ),
        )

    async def to_reintegrate(self, case_id: str) -> CaseState:
        await self.to_protect(case_id)
        return await self.decide(
            case_id, wf_actor(A.social_protection), ProtectDecision(measures=["safe_shelter"])
        )


@asynccontextmanager
async def stack(
    env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> AsyncIterator[Stack]:
    """Workflow worker + oversight activities (tests/helpers/workflow_harness.py), and both service apps in-process."""
    settings = Settings()
    async with running_workers(env.client, db_pool, ring, task_queue) as workers:
        apps: dict[str, FastAPI] = {}
        for name in ("verification", "support"):

            async def factory() -> Runtime:
                return Runtime(settings, ring, await create_pool(db_url, 1, 4), env.client)

            apps[name] = build_app(name, settings, runtime_factory=factory)
        async with (
            apps["verification"].router.lifespan_context(apps["verification"]),
            apps["support"].router.lifespan_context(apps["support"]),
        ):
            http = {
                n: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=f"http://{n}")
                for n, a in apps.items()
            }
            s = Stack(env.client, task_queue, ring, http, workers)
            try:
                yield s
            finally:
                for c in http.values():
                    await c.aclose()
                # the cases are settled and cancelled by running_workers on exit, while its workers still run
