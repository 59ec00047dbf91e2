"""How a service API reaches a case: read its state from the workflow, check object-level
access, and send commands (Updates) built with an Actor taken from the verified token."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from fastapi import Header, HTTPException, Path, Request, status
from pydantic import BaseModel

from shared.access import can_act_on_case, can_read_case, can_read_section
from shared.api import UPDATE_RPC_TIMEOUT, call_workflow, runtime_of
from shared.auth import Principal
from shared.domain import Section, Stage
from shared.runtime import Runtime
from workflows.models import Actor, CaseState

log = structlog.get_logger("case-gateway")
W = TypeVar("W")
REWRITE_DELAYS = (0.1, 0.5, 2.0)  # seconds before each new attempt at rows whose Update was already accepted
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

CaseId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$",
                             description="the case id (= the CaseWorkflow id)", examples=["case-3f9a0c1d2e4b5a69"])]
IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:\-]+$",
    description="retry-safe key: the same key returns the first result and writes nothing twice")]
_ID_NAMESPACE = uuid.UUID("6f1c2d8e-4b1a-4c7e-9a55-3d0f1e2a7b90")


def actor_of(principal: Principal, request: Request) -> Actor:
    """The acting user, from the verified token only (never from the body)."""
    return Actor(user_id=principal.user_id, agency=principal.agency, roles=principal.roles,
                 province=principal.province, commune=principal.commune,
                 request_id=getattr(request.state, "request_id", None))


def new_id(prefix: str, case_id: str, key: str | None, purpose: str) -> str:
    """A row id; derived from the Idempotency-Key when there is one so that a retry writes nothing twice."""
    if key:
        return f"{prefix}-{uuid.uuid5(_ID_NAMESPACE, f'{case_id}|{purpose}|{key}').hex[:20]}"
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


async def case_state(request: Request, case_id: str) -> CaseState:
    handle = runtime_of(request).temporal.get_workflow_handle(case_id)
    return await call_workflow(lambda: handle.query("state", result_type=CaseState))


async def readable_case(request: Request, principal: Principal, case_id: str,
                        section: Section | None = None) -> CaseState:
    state = await case_state(request, case_id)
    if not can_read_case(principal, state.access_facts()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "no access to this case (agency or jurisdiction)")
    if section is not None and not can_read_section(principal, section):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"agency {principal.agency.value} may not read the {section.value} section")
    return state


async def actionable_case(request: Request, principal: Principal, case_id: str,
                          stages: tuple[Stage, ...] | None = None) -> CaseState:
    state = await case_state(request, case_id)
    if not can_act_on_case(principal, state.access_facts()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "you may not act on this case (agency or jurisdiction)")
    if stages is not None and state.stage not in stages:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"case is in stage {state.stage.value}; this needs stage "
                            f"{' or '.join(s.value for s in stages)}")
    return state


async def update_case(request: Request, case_id: str, name: str, command: BaseModel,
                      idempotency_key: str | None) -> CaseState:
    """Send an Update to the case's workflow; a rejection becomes 403/409/422 (shared.api.call_workflow)."""
    handle = runtime_of(request).temporal.get_workflow_handle(case_id)
    update_id = idempotency_key or str(uuid.uuid4())

    async def run() -> Any:
        return await handle.execute_update(name, command, id=f"{name}:{update_id}",
                                           rpc_timeout=UPDATE_RPC_TIMEOUT, result_type=CaseState)

    result: CaseState = await call_workflow(run)
    return result


async def write_with_update(runtime: Runtime, case_id: str, write: Callable[[PoolConnectionProxy], Awaitable[W]],
                            update: Callable[[W], Awaitable[CaseState]]) -> tuple[W, CaseState]:
    """A service's rows and the workflow Update that refers to them, as one unit for the caller.

    The rows are written in a transaction that stays open while the Update runs, so a rejected Update
    (403/409/422) rolls them back. If the commit then fails (connection lost, server restarting), the
    workflow already holds the Update: the same writes, which must be idempotent (ids fixed before the
    call, ON CONFLICT DO NOTHING), are made again in new transactions. Only if those fail too does the
    caller get a 503 asking to retry with the same Idempotency-Key, which re-sends the same Update id
    (Temporal answers it from the first time) and writes the rows."""
    accepted: CaseState | None = None
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            written = await write(conn)
            accepted = await update(written)
        return written, accepted
    except _DB_ERRORS as exc:
        if accepted is None:
            raise
        error: BaseException = exc
    for delay in REWRITE_DELAYS:
        await asyncio.sleep(delay)
        try:
            async with runtime.pool.acquire() as conn, conn.transaction():
                written = await write(conn)
            log.warning("rows_rewritten_after_update", case_id=case_id, first_error=type(error).__name__)
            return written, accepted
        except _DB_ERRORS as exc:
            error = exc
    log.error("rows_lost_after_update", case_id=case_id, error=type(error).__name__)
    raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                        "the case workflow accepted this action but its details could not be saved; retry with the "
                        "same Idempotency-Key to save them (the workflow will not record the action twice)")
