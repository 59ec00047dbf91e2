"""The four service apps in-process over one test database and the time-skipping Temporal server, with
the workflow worker (tests/helpers/workflow_harness.py) running inside them, plus principals and tokens.

Cases opened through intake send their audit events to the test's own oversight queue (the harness's
worker writes them to this test's database). Ordering matters: the apps' lifespans (their activity
workers) are entered first and left last, so that `running_workers` settles every case the test
started while those workers still run."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager, redirect_stderr
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import structlog
from fastapi import FastAPI

from nrm.service import build_app
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool
from shared.domain import AgencyRole, Role
from shared.logging import configure_logging
from shared.runtime import Runtime
from tests.helpers import tokens
from tests.helpers.workflow_harness import Harness, running_workers

SERVICES = ("intake", "verification", "support", "oversight")
PROVINCE = "01"
OTHER_PROVINCE = "79"
A = AgencyRole


def bearer(
    ring: KeyRing,
    agency: AgencyRole,
    *roles: Role,
    province: str = PROVINCE,
    user: str | None = None,
) -> dict[str, str]:
    # one user per (agency, province, roles): a supervisor and a caseworker of the same agency are two people
    return tokens.bearer(
        ring,
        agency,
        *roles,
        province=province,
        user=user or f"{agency.value}-{province}-{'-'.join(r.value for r in roles)}",
    )


@dataclass
class Stack:
    ring: KeyRing
    client: Any
    workers: Harness
    apps: dict[str, FastAPI]
    http: dict[str, httpx.AsyncClient]
    runtimes: dict[str, Runtime] = field(default_factory=dict)

    def __getitem__(self, service: str) -> httpx.AsyncClient:
        return self.http[service]

    async def wait_event(
        self, pool: asyncpg.Pool, case_id: str, kind: str, wait_s: float = 15.0
    ) -> None:
        """Until the oversight audit log holds an event of this kind for the case."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while loop.time() < deadline:
            if await pool.fetchval(
                "SELECT count(*) FROM oversight.case_events WHERE case_id = $1 AND kind = $2",
                case_id,
                kind,
            ):
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind} event recorded for {case_id}")


@asynccontextmanager
async def service_stack(
    env: Any,
    db_pool: asyncpg.Pool,
    db_url: str,
    ring: KeyRing,
    task_queue: str,
    *,
    settings: Settings | None = None,
    client: Any = None,
    services: tuple[str, ...] = SERVICES,
    keep_cases: bool = False,
) -> AsyncIterator[Stack]:
    """`client` defaults to the environment's (whose codec uses the session ring); pass one built with
    another ring's data converter to run everything under that ring."""
    settings = settings or Settings()
    client = client or env.client
    runtimes: dict[str, Runtime] = {}
    apps: dict[str, FastAPI] = {}
    for name in services:

        def factory(name: str = name) -> Any:
            async def make() -> Runtime:
                rt = Runtime(
                    settings,
                    ring,
                    await create_pool(db_url, 1, 4),
                    client,
                    extras={
                        "workflow_task_queue": task_queue,
                        "oversight_task_queue": f"{task_queue}-oversight",
                        "reconcile_interval": None,
                    },
                )
                runtimes[name] = rt
                return rt

            return make

        apps[name] = build_app(name, settings, runtime_factory=factory())
    async with AsyncExitStack() as stack:
        for app in apps.values():
            await stack.enter_async_context(app.router.lifespan_context(app))
        http = {
            n: await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url=f"http://{n}")
            )
            for n, a in apps.items()
        }
        async with running_workers(
            client, db_pool, ring, task_queue, keep_cases=keep_cases
        ) as workers:
            yield Stack(ring, client, workers, apps, http, runtimes)


@contextmanager
def json_logs(service: str) -> Iterator[io.StringIO]:
    """The process's real logging set-up (shared.logging: structlog JSON + PII redaction), written to a buffer
    for the test to read; the previous set-up is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    buffer = io.StringIO()
    with redirect_stderr(buffer):
        configure_logging(
            service, "DEBUG"
        )  # the handler binds to sys.stderr as it is now: the buffer
    try:
        yield buffer
    finally:
        root.handlers = saved[0]
        root.setLevel(saved[1])
        structlog.reset_defaults()
        structlog.contextvars.clear_contextvars()
