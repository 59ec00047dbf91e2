"""Shared pieces for the oversight tests: the oversight API in-process over the test runtime (real
PostgreSQL, real time-skipping Temporal), tokens, and the time-skipping server's clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment

from services.oversight.api import DESCRIPTION, router
from shared.api import create_app
from shared.config import Settings
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role
from shared.runtime import Runtime
from tests.helpers.tokens import bearer


class _TestRuntime(Runtime):
    async def close(self) -> None:  # the db_pool fixture owns the pool
        return None


class Clock:
    """The API's clock, pinned to the time-skipping server's time (tests move it with `sync`)."""

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.at: datetime | None = None

    async def sync(self) -> datetime:
        self.at = await self.env.get_current_time()
        return self.at

    def __call__(self) -> datetime:
        assert self.at is not None, "call await clock.sync() first"
        return self.at


@asynccontextmanager
async def oversight_api(
    env: WorkflowEnvironment, pool: Any, ring: KeyRing, clock: Clock | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    runtime = _TestRuntime(Settings(), ring, pool, env.client)
    if clock is not None:
        runtime.extras["clock"] = clock

    async def factory() -> Runtime:
        return runtime

    app = create_app("oversight", [router], description=DESCRIPTION, runtime_factory=factory)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://oversight"
        ) as client,
    ):
        yield client


def auth(
    ring: KeyRing,
    *roles: Role,
    agency: AgencyRole = AgencyRole.social_protection,
    province: str = "01",
    user: str = "sup-1",
) -> dict[str, str]:
    return bearer(ring, agency, *roles, user=user, province=province)
