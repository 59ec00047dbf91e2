"""Idempotency keys are the caller's, scoped to (caller, operation, case) (docs/reference/DESIGN.md "Data flow").

- No key: a new request, every time. Nothing is deduplicated by content.
- Opening a case keeps its key on the case row (repository.open_case): per caller and opening endpoint.
- Workflow Updates (classify) go through shared.case_gateway.update_case and its one store,
  common.idempotency_keys (the Update id is derived from the keyed scope: no raw user id in Temporal).
- Writes of intake's own rows (duplicate resolution) record their key here, in intake.request_keys, in
  the transaction of the write it guards (a refused write leaves no key behind), with a keyed hash of
  the request: the same key with the same request replays, with another request it is a 422."""

from __future__ import annotations

import json

from fastapi import HTTPException, status
from pydantic import BaseModel

from shared.auth import Principal
from shared.crypto import KeyRing
from shared.db import Conn

from . import repository

REQUEST_PURPOSE = "intake.request"


def request_hash(ring: KeyRing, operation: str, request: BaseModel) -> str:
    """Keyed hash of the canonical request (a plain hash of free text could be brute-forced)."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return ring.blind_index(f"{operation}\x00{canonical}", REQUEST_PURPOSE)


async def claim(
    conn: Conn,
    ring: KeyRing,
    principal: Principal,
    *,
    operation: str,
    target_id: str,
    key: str,
    request: BaseModel,
) -> bool:
    """True: first use of the key (act); False: a retry of the same request (replay). 422 when the
    caller used this key for this operation on this target with another request."""
    try:
        return await repository.claim_request_key(
            conn,
            user_id=principal.user_id,
            operation=operation,
            target_id=target_id,
            key=key,
            request_hash=request_hash(ring, operation, request),
        )
    except repository.IdempotencyConflict:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"Idempotency-Key was already used by you for {operation} on {target_id} with a "
            "different request body; use a new key for a new request",
        ) from None
