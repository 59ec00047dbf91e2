"""The one access log (common.access_log): appended by every service, read in one place, never altered."""

from __future__ import annotations

import asyncpg
import pytest

from shared.access_log import AccessRead, list_reads, record_read
from shared.crypto import KeyRing


def _read(case_id: str, **kw: object) -> AccessRead:
    base: dict[str, object] = dict(
        service="verification",
        user_id="aud-1",
        agency="police",
        roles=["auditor"],
        case_id=case_id,
        case_province="01",
        action="read_perpetrators",
        sections=["perpetrators"],
        masked=False,
    )
    base.update(kw)
    return AccessRead(**base)  # type: ignore[arg-type]


async def test_a_break_glass_read_is_listed_with_its_reason_and_stored_encrypted(
    db_pool: asyncpg.Pool, ring: KeyRing
) -> None:
    canary = "CANARY-Nguyen-Thi-Hoa asked by the court"
    first = await record_read(
        db_pool, ring, _read("case-a", break_glass_reason=canary, purpose="court order")
    )
    await record_read(db_pool, ring, _read("case-b", service="support", case_province="79"))

    rows = await list_reads(db_pool, ring, case_id="case-a")
    assert [
        (r["access_id"], r["service"], r["break_glass"], r["break_glass_reason"], r["purpose"])
        for r in rows
    ] == [(first, "verification", True, canary, "court order")]
    assert [r["case_id"] for r in await list_reads(db_pool, ring, province="79")] == ["case-b"]
    assert [r["case_id"] for r in await list_reads(db_pool, ring)] == ["case-b", "case-a"]
    raw = await db_pool.fetchval(
        "SELECT break_glass_reason FROM common.access_log WHERE access_id = $1", first
    )
    assert b"CANARY" not in raw


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE common.access_log SET masked = true",
        "DELETE FROM common.access_log",
        "TRUNCATE common.access_log",
    ],
)
async def test_the_access_log_cannot_be_altered(
    db_pool: asyncpg.Pool, ring: KeyRing, statement: str
) -> None:
    await record_read(db_pool, ring, _read("case-c"))
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await db_pool.execute(statement)
    assert len(await list_reads(db_pool, ring, case_id="case-c")) == 1
