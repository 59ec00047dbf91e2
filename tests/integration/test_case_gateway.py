"""shared.case_gateway.write_with_update on a real PostgreSQL: a rejected Update rolls the rows back, and a
commit that fails after the Update was accepted writes the rows again instead of losing them.

The commit failure is real: a DEFERRABLE INITIALLY DEFERRED unique constraint is only checked at COMMIT,
so a write that inserts a clashing row passes every statement and fails exactly where a lost connection
or a server restart would hurt most (after the workflow accepted the Update)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import pytest
from asyncpg.pool import PoolConnectionProxy
from fastapi import HTTPException

from shared import case_gateway
from shared.case_gateway import write_with_update
from shared.config import Settings
from shared.contract import CaseState
from shared.crypto import KeyRing
from shared.runtime import Runtime


@pytest.fixture
async def probe(db_pool: asyncpg.Pool, ring: KeyRing, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(case_gateway, "REWRITE_DELAYS", (0.01, 0.01, 0.01))
    await db_pool.execute("CREATE TABLE probe_rows (row_id text PRIMARY KEY)")
    await db_pool.execute(
        "CREATE TABLE commit_breaker (k int, "
        "CONSTRAINT breaks_at_commit UNIQUE (k) DEFERRABLE INITIALLY DEFERRED)"
    )
    return Runtime(Settings(), ring, db_pool, None)  # type: ignore[arg-type]  # no Temporal needed here


async def rows(pool: asyncpg.Pool) -> list[str]:
    return [r["row_id"] for r in await pool.fetch("SELECT row_id FROM probe_rows ORDER BY row_id")]


async def test_a_rejected_update_rolls_the_rows_back(probe: Runtime, db_pool: asyncpg.Pool) -> None:
    async def write(conn: PoolConnectionProxy) -> str:
        await conn.execute("INSERT INTO probe_rows VALUES ('r-1')")
        return "r-1"

    async def reject(_: str) -> CaseState:
        raise HTTPException(409, "stale: expected_version 3, case is at 4")

    with pytest.raises(HTTPException) as err:
        await write_with_update(probe, "c-probe", write, reject)
    assert err.value.status_code == 409
    assert await rows(db_pool) == []


async def test_rows_are_written_again_when_the_commit_fails_after_the_update(
    probe: Runtime, db_pool: asyncpg.Pool
) -> None:
    attempts: list[int] = []
    updates: list[str] = []
    marker = object()

    async def write(conn: PoolConnectionProxy) -> str:
        attempts.append(1)
        await conn.execute("INSERT INTO probe_rows VALUES ('r-1') ON CONFLICT DO NOTHING")
        if len(attempts) == 1:  # only checked at COMMIT: the first commit fails
            await conn.execute("INSERT INTO commit_breaker VALUES (1), (1)")
        return "r-1"

    async def accept(written: str) -> Any:
        updates.append(written)
        return marker

    written, state = await write_with_update(probe, "c-probe", write, accept)
    assert (written, state) == ("r-1", marker)
    assert updates == ["r-1"]  # the Update was sent once, never again
    assert len(attempts) == 2
    assert await rows(db_pool) == ["r-1"]


async def test_503_names_the_retry_when_the_rows_cannot_be_written(
    probe: Runtime, db_pool: asyncpg.Pool
) -> None:
    async def write(conn: PoolConnectionProxy) -> None:
        await conn.execute("INSERT INTO probe_rows VALUES ($1)", uuid.uuid4().hex)
        await conn.execute("INSERT INTO commit_breaker VALUES (1), (1)")  # every commit fails

    async def accept(_: None) -> Any:
        return object()

    with pytest.raises(HTTPException) as err:
        await write_with_update(probe, "c-probe", write, accept)
    assert err.value.status_code == 503 and "same Idempotency-Key" in str(err.value.detail)
    assert await rows(db_pool) == []  # nothing half-written


def test_row_ids_from_the_same_key_are_the_callers_own() -> None:
    """Idempotency keys are scoped to the caller: another user's same key must not reuse (and so silently
    drop, ON CONFLICT DO NOTHING) the first user's rows."""
    from shared.case_gateway import new_id

    mine = new_id("svc", "c-1", "k-1", "service", caller="sp-anh")
    assert (
        new_id("svc", "c-1", "k-1", "service", caller="sp-anh") == mine
    )  # a retry writes the same row
    assert new_id("svc", "c-1", "k-1", "service", caller="sp-binh") != mine
    assert new_id("svc", "c-1", "k-1", "consent", caller="sp-anh") != mine
    assert new_id("svc", "c-2", "k-1", "service", caller="sp-anh") != mine
    assert new_id("svc", "c-1", None, "service") != new_id("svc", "c-1", None, "service")
