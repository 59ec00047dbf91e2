"""Idempotency keys scoped to (caller, operation, case), in one store for every service (common.idempotency_keys).

A key is the caller's: the same key sent by another user, to another endpoint or for another case is a
different request and acts on its own. The same caller reusing a key with a different request gets a 422
(the convention of payment APIs); with the same request, the first outcome is returned and nothing is
applied twice. No raw user id leaves the process: the scope is a keyed blind index, and the Temporal
Update id is derived from it.

The store also makes a timed-out Update's outcome knowable: a scope is 'pending' from just before its
Update is sent until the workflow accepts it ('applied'); a rejection deletes the pending row."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from shared.crypto import KeyRing

SCOPE_PURPOSE = "idempotency.scope"
REQUEST_PURPOSE = "idempotency.request"
# fields of a command that differ between two sends of the same request: left out of the request hash
PER_REQUEST_FIELDS = frozenset(
    {"actor"}
)  # the actor is the scope's caller; its request_id changes per send


class KeyState(StrEnum):
    pending = "pending"
    applied = "applied"


class KeyReusedError(Exception):
    """The caller used this Idempotency-Key before, for this operation and case, with a different request."""


@dataclass(frozen=True)
class Scope:
    scope: str
    request_hash: str
    operation: str
    case_id: str

    @property
    def update_id(self) -> str:
        """The Temporal Update id of this request: derived from the scope, so a retry re-sends the same id."""
        return f"idem-{self.scope}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def request_hash(ring: KeyRing, command: dict[str, Any], body: bytes = b"") -> str:
    """A keyed hash of what the caller asked: the command without per-request fields, and the raw body
    (canonical JSON when it is JSON), which carries the details the command does not (amounts, notes)."""
    cmd = {k: v for k, v in command.items() if k not in PER_REQUEST_FIELDS}
    try:
        body_text = _canonical(json.loads(body)) if body else ""
    except ValueError:
        body_text = body.hex()
    return ring.blind_index(_canonical({"command": cmd, "body": body_text}), REQUEST_PURPOSE)


def scope_of(
    ring: KeyRing,
    *,
    user_id: str,
    operation: str,
    case_id: str,
    key: str,
    command: dict[str, Any],
    body: bytes = b"",
) -> Scope:
    scope = ring.blind_index(_canonical([user_id, operation, case_id, key]), SCOPE_PURPOSE)
    return Scope(
        scope=scope,
        request_hash=request_hash(ring, command, body),
        operation=operation,
        case_id=case_id,
    )


async def begin(pool: asyncpg.Pool, s: Scope) -> KeyState | None:
    """Record the scope as pending before its Update is sent. None: a new request; otherwise the state a
    previous send of the same request left (pending: outcome unknown; applied). Raises KeyReusedError
    when the caller used this key for this operation and case with a different request."""
    row = await pool.fetchrow(
        """INSERT INTO common.idempotency_keys (scope, request_hash, operation, case_id)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (scope) DO UPDATE SET scope = EXCLUDED.scope
           RETURNING request_hash, state, (xmax = 0) AS inserted""",
        s.scope,
        s.request_hash,
        s.operation,
        s.case_id,
    )
    assert row is not None
    if row["request_hash"] != s.request_hash:
        raise KeyReusedError(s.operation)
    return None if row["inserted"] else KeyState(row["state"])


async def applied(pool: asyncpg.Pool, s: Scope) -> None:
    """The workflow accepted the Update."""
    await pool.execute(
        "UPDATE common.idempotency_keys SET state = 'applied', completed_at = now() "
        "WHERE scope = $1 AND state = 'pending'",
        s.scope,
    )


async def rejected(pool: asyncpg.Pool, s: Scope) -> None:
    """The workflow refused the Update: nothing was applied, so the key may be used again (a corrected
    request is not a reuse). A scope already applied stays."""
    await pool.execute(
        "DELETE FROM common.idempotency_keys WHERE scope = $1 AND state = 'pending'", s.scope
    )


async def state_of(pool: asyncpg.Pool, s: Scope) -> KeyState | None:
    value = await pool.fetchval(
        "SELECT state FROM common.idempotency_keys WHERE scope = $1", s.scope
    )
    return KeyState(value) if value else None


async def expire(pool: asyncpg.Pool, keep: timedelta) -> int:
    """Forget the keys of requests applied longer than `keep` ago (a client retries within minutes, not
    weeks; Temporal and the workflow's carried Update ids still refuse a late duplicate of a recent one).
    Pending keys stay: their outcome is unknown until the client retries (see `pending`)."""
    status = await pool.execute(
        "DELETE FROM common.idempotency_keys WHERE state = 'applied' AND created_at < now() - $1::interval",
        keep,
    )
    return int(status.rsplit(" ", 1)[-1])


async def pending(
    pool: asyncpg.Pool, case_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Requests whose Update outcome is still unknown (sent, never confirmed), oldest first."""
    rows = await pool.fetch(
        """SELECT operation, case_id, created_at FROM common.idempotency_keys
           WHERE state = 'pending' AND ($1::text IS NULL OR case_id = $1) ORDER BY created_at LIMIT $2""",
        case_id,
        limit,
    )
    return [dict(r) for r in rows]
