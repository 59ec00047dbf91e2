"""The intake app in-process against real PostgreSQL and real Temporal (time-skipping server), with the
workflow worker and the oversight activities running (tests/helpers/workflow_harness.py)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from nrm.service import build_app
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool
from shared.domain import AgencyRole, Role
from shared.runtime import Runtime
from tests.helpers.tokens import PROVINCE, bearer
from tests.helpers.workflow_harness import running_workers

A = AgencyRole


token = bearer  # the intake tests' name for it


PERSON: dict[str, Any] = {
    "prs_FirstName": "Lan",
    "prs_MiddleName": "Thị",
    "prs_SecondName": "Nguyễn",
    "birth_year": 2000,
    "prs_Gender": "Feminine",
    "prs_Citizenship": ["VN"],
    "prs_PrimaryLanguage": "vie",
    "prs_IdentityNumber": "001300012345",
    "prs_MobilePhone": "0912345678",
    "prs_MailingStreet": "12 Phố Huế",
    "prs_MailingCity": "Hà Nội",
    "prs_MailingCountry": "VN",
}


def open_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "border_guard_handover",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": copy.deepcopy(PERSON),
        "victim": {
            "vic_TypeOfExploitation": ["ForcedMarriage"],
            "vic_MethodOfRecruitment": ["ThroughFriendsOrSocialEvents"],
            "vic_DetailsOfVulnerabilities": "Lost her job in the city",
        },
        "events": [{"hte_Type": "Exploitation", "hte_Country": "CN", "hte_City": "Nam Ninh"}],
        "report": {
            "summary": "Handed over at the border gate.",
            "cas_ReferringOrganisation": "Border post 3",
        },
        "con_Consent": True,
    }
    person_over = over.pop("person", None)
    body.update(over)
    if person_over is not None:
        body["person"] = {**body["person"], **person_over}
    return body


@dataclass
class Intake:
    http: httpx.AsyncClient
    ring: KeyRing
    pool: asyncpg.Pool
    app: FastAPI
    runtime: Runtime

    def auth(
        self,
        agency: AgencyRole = A.police,
        *roles: Role,
        user: str | None = None,
        province: str = PROVINCE,
    ) -> dict[str, str]:
        return token(self.ring, agency, *roles, user=user, province=province)

    async def open(
        self,
        body: dict[str, Any] | None = None,
        *,
        key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        h = {**(headers or self.auth()), **({"Idempotency-Key": key} if key else {})}
        return await self.http.post("/cases", json=body or open_body(), headers=h)


@asynccontextmanager
async def intake_app(
    env: Any,
    db_pool: asyncpg.Pool,
    db_url: str,
    ring: KeyRing,
    task_queue: str,
    *,
    workers: bool = True,
    extras: dict[str, Any] | None = None,
) -> AsyncIterator[Intake]:
    settings = Settings()
    holder: dict[str, Runtime] = {}

    async def factory() -> Runtime:
        rt = Runtime(
            settings,
            ring,
            await create_pool(db_url, 1, 8),
            env.client,
            extras={
                "workflow_task_queue": task_queue,
                "oversight_task_queue": f"{task_queue}-oversight",
                "reconcile_interval": None,
                **(extras or {}),
            },
        )
        holder["rt"] = rt
        return rt

    app = build_app("intake", settings, runtime_factory=factory)

    @asynccontextmanager
    async def maybe_workers() -> AsyncIterator[None]:
        if workers:
            async with running_workers(env.client, db_pool, ring, task_queue):
                yield
        else:
            yield

    async with maybe_workers(), app.router.lifespan_context(app):
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")
        try:
            yield Intake(http, ring, db_pool, app, holder["rt"])
        finally:
            await http.aclose()
