"""Deciding a duplicate candidate: who may (the newer case's actors; across provinces a national user or a
supervisor of either province) and the decision itself (link or keep apart, once, with the caller's key)."""

from __future__ import annotations

import structlog
from fastapi import HTTPException, status

from shared.access import can_act_on_case
from shared.auth import Principal
from shared.domain import Role
from shared.runtime import Runtime

from . import idempotency, reads, repository
from .dedupe import candidate_view
from .models import DuplicateOut, ResolveDuplicate

log = structlog.get_logger("intake.duplicates")
RESOLVE_DUPLICATE = "resolve_duplicate"


async def authorize_resolution(
    runtime: Runtime, principal: Principal, cand: repository.DuplicateRow
) -> None:
    """Within one province, whoever may act on the newer case decides. Across provinces (an identity
    number matched elsewhere) neither side's caseworkers can see the other person: a national user or a
    supervisor of either province decides, acting on a case of the pair they may act on."""
    sides = [
        (cand["case_id"], cand["case_province"]),
        (cand["other_case_id"], cand["other_province"]),
    ]
    if cand["case_province"] == cand["other_province"]:
        sides = sides[:1]
    elif not (principal.national or principal.has(Role.supervisor)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"duplicate candidate {cand['candidate_id']} spans two provinces: a national user or a "
            "supervisor of either province decides it",
        )
    for case_id, province in sides:
        if principal.covers_province(province):
            facts, _ = await reads.access_of(runtime, await reads.case_or_404(runtime, case_id))
            if can_act_on_case(principal, facts):
                return
    raise HTTPException(
        status.HTTP_403_FORBIDDEN,
        f"you may not act on the cases of duplicate candidate {cand['candidate_id']}",
    )


async def resolve(
    runtime: Runtime,
    principal: Principal,
    candidate_id: str,
    body: ResolveDuplicate,
    idem_key: str | None,
) -> tuple[DuplicateOut, bool]:
    """The decision as the caller sees it, and whether it is a replay of the caller's earlier request."""
    cand = await repository.get_duplicate(runtime.pool, candidate_id)
    if cand is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"duplicate candidate {candidate_id} not found"
        )
    await authorize_resolution(runtime, principal, cand)
    # the key and the decision commit together: a refused decision (409) leaves no key behind
    async with runtime.pool.acquire() as conn, conn.transaction():
        if idem_key is not None and not await idempotency.claim(
            conn,
            runtime.ring,
            principal,
            operation=RESOLVE_DUPLICATE,
            target_id=candidate_id,
            key=idem_key,
            request=body,
        ):
            again = await repository.get_duplicate(conn, candidate_id)
            assert again is not None
            return candidate_view(principal, again), True
        decided = await repository.resolve_duplicate(
            conn,
            candidate_id,
            "linked" if body.decision == "link" else "kept_apart",
            principal.user_id,
            body.reason,
        )
        if decided is None:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"duplicate candidate {candidate_id} was already decided ({cand['status']})",
            )
    log.info(
        "duplicate_resolved",
        case_id=cand["case_id"],
        other_case_id=cand["other_case_id"],
        decision=body.decision,
    )
    return candidate_view(principal, decided), False
