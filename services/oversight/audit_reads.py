"""What auditors read from the audit log: a case's history (free text decrypted for the authorised reader,
or "[erased]" after retention), its state as of a past time, and the hash-chain check of a set of cases.
Access is checked by the caller (api.py) on oversight's projection before any of these is asked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from services.oversight import repository as repo
from services.oversight.audit_log import readable_event, verify_case
from services.oversight.models import (
    AsOfState,
    ChainCheck,
    ChainVerification,
    HistoryEvent,
    HistoryPage,
)
from shared.crypto import KeyRing
from shared.runtime import Runtime


def history_event(ring: KeyRing, r: Any) -> HistoryEvent:
    view = readable_event(ring, r)  # free text decrypted for this authorised reader, or "[erased]"
    return HistoryEvent(
        seq=r["seq"],
        event_id=r["event_id"],
        kind=r["kind"],
        occurred_at=r["occurred_at"],
        recorded_at=r["recorded_at"],
        actor_user_id=r["actor_user_id"],
        actor_agency=r["actor_agency"],
        stage=r["stage"],
        reason=view["reason"],
        request_id=r["request_id"],
        policy_version=r["policy_version"],
        data=view["data"],
        hash=r["hash"],
        free_text_erased=view["free_text_erased"],
    )


async def history_page(
    runtime: Runtime, case_id: str, limit: int, offset: int, until: datetime | None
) -> HistoryPage:
    """One page of the case's events in order; `until`: only those up to that moment (a province the
    case was transferred away from)."""
    async with runtime.pool.acquire() as conn:
        rows, total = await repo.history(conn, case_id, limit, offset, until)
    return HistoryPage(
        case_id=case_id,
        items=[history_event(runtime.ring, r) for r in rows],
        limit=limit,
        offset=offset,
        total=total,
        next_offset=offset + limit if offset + limit < total else None,
        access_log=f"/access-log?case_id={case_id}",
    )


async def state_as_of(
    runtime: Runtime, case_id: str, at: datetime, until: datetime | None
) -> AsOfState | None:
    """The state recorded with the last event at or before `at` (and before `until`: a province the case
    left sees it as it was when it left, at most); None when the case had no events yet."""
    async with runtime.pool.acquire() as conn:
        row = await repo.state_as_of(conn, case_id, min(at, until) if until is not None else at)
    if row is None:
        return None
    return AsOfState(
        case_id=case_id,
        at=at,
        event_seq=row["seq"],
        event_kind=row["kind"],
        event_at=row["occurred_at"],
        state=dict(readable_event(runtime.ring, row)["state"]),
    )


async def chain_verification(
    runtime: Runtime, case_ids: list[str], limit: int, offset: int, *, more: bool
) -> ChainVerification:
    """The hash-chain check of each case; `more`: whether a next page of cases may follow."""
    results = []
    async with runtime.pool.acquire() as conn:
        for cid in case_ids:
            report = await verify_case(conn, runtime.ring, cid, runtime.temporal)
            results.append(ChainCheck(**report.as_dict()))
    broken = [r for r in results if not r.ok]
    return ChainVerification(
        checked=len(results),
        ok=not broken,
        broken=broken,
        results=results,
        limit=limit,
        offset=offset,
        next_offset=offset + limit if more else None,
    )
