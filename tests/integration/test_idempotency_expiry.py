"""Applied Idempotency-Keys are forgotten after `NRM_IDEMPOTENCY_KEEP_DAYS` (30 by default); a key whose
outcome is unknown (pending) stays until the client retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from shared import idempotency


async def test_applied_keys_expire_pending_ones_stay(db_pool: Any) -> None:
    rows = [
        ("old-applied", "applied", timedelta(days=31)),
        ("old-pending", "pending", timedelta(days=31)),
        ("new-applied", "applied", timedelta(days=1)),
    ]
    for scope, state, age in rows:
        await db_pool.execute(
            "INSERT INTO common.idempotency_keys (scope, request_hash, operation, case_id, state, "
            "created_at) VALUES ($1, 'h', 'POST /cases/c1/claim claim', 'c1', $2, now() - $3::interval)",
            scope,
            state,
            age,
        )
    assert await idempotency.expire(db_pool, timedelta(days=30)) == 1
    left = {r["scope"] for r in await db_pool.fetch("SELECT scope FROM common.idempotency_keys")}
    assert left == {"old-pending", "new-applied"}
    assert await idempotency.expire(db_pool, timedelta(days=30)) == 0
