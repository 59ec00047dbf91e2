"""How a service API reaches a case: read its state from the workflow, check object-level
access, and send commands (Updates) built with an Actor taken from the verified token."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy
from fastapi import Header, HTTPException, Path, Query, Request, status
from pydantic import BaseModel
from temporalio.workflow import UpdateMethodMultiParam

from shared import case_index, idempotency
from shared.access import (
    CaseAccessFacts,
    can_act_on_case,
    can_read_case,
    can_read_section,
    can_respond_to_handoff,
    pii_masked_for,
)
from shared.access_log import AccessRead, record_read
from shared.api import UPDATE_RPC_TIMEOUT, call_workflow, runtime_of
from shared.api_models import ID_PATTERN
from shared.auth import Principal
from shared.contract import Actor, CaseState, HandoffState
from shared.domain import AgencyRole, Section, Stage
from shared.runtime import Runtime

log = structlog.get_logger("case-gateway")
W = TypeVar("W")
REWRITE_DELAYS = (
    0.1,
    0.5,
    2.0,
)  # seconds before each new attempt at rows whose Update was already accepted
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

CaseId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=ID_PATTERN,
        description="the case id (= the CaseWorkflow id)",
        examples=["case-3f9a0c1d2e4b5a69"],
    ),
]
IDEMPOTENCY_KEY_MAX = 200
IDEMPOTENCY_KEY_PATTERN = (
    r"^[\x21-\x7e]+$"  # visible ASCII, no spaces (the key is only ever hashed)
)
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="yours, per operation and case: your retries with the same key and the same request return "
        "the first result and apply nothing twice; reusing it with a different request is a 422; "
        "another user's key, or yours on another endpoint or case, is another request. Without a key "
        "every request is new. After a 503 whose outcome is unknown, retry with the same key.",
    ),
]
_ID_NAMESPACE = uuid.UUID("6f1c2d8e-4b1a-4c7e-9a55-3d0f1e2a7b90")
# the caller of the request being served, once the gateway has seen its principal (row ids are scoped to it)
_caller: ContextVar[str | None] = ContextVar("nrm_case_gateway_caller", default=None)
OUTCOME_UNKNOWN = (
    "the case workflow did not confirm this action in time, so its outcome is unknown (it may "
    "still be applied). Retry with the same Idempotency-Key: the action is applied at most once "
    "and the retry completes it and returns its result"
)
OUTCOME_UNKNOWN_NO_KEY = (
    "the case workflow did not confirm this action in time, so its outcome is unknown (it "
    "may still be applied). Read the case before sending it again; send an Idempotency-Key "
    "to make retries safe"
)


def actor_of(principal: Principal, request: Request) -> Actor:
    """The acting user, from the verified token only (never from the body)."""
    _caller.set(principal.user_id)
    return Actor(
        user_id=principal.user_id,
        agency=principal.agency,
        roles=principal.roles,
        province=principal.province,
        commune=principal.commune,
        request_id=getattr(request.state, "request_id", None),
    )


def new_id(
    prefix: str, case_id: str, key: str | None, purpose: str, caller: str | None = None
) -> str:
    """A row id; derived from the Idempotency-Key when there is one so that a retry writes nothing twice.

    Keys are the caller's: the id is scoped to the caller too (`caller`, else the user whose principal the
    gateway saw for this request: actionable_case / readable_case / actor_of), so another user's same key
    writes its own rows."""
    if key:
        who = caller or _caller.get() or ""
        return f"{prefix}-{uuid.uuid5(_ID_NAMESPACE, f'{case_id}|{purpose}|{who}|{key}').hex[:20]}"
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


async def case_state(request: Request, case_id: str) -> CaseState:
    handle = runtime_of(request).temporal.get_workflow_handle(case_id)
    return await call_workflow(lambda: handle.query("state", result_type=CaseState))


async def readable_case(
    request: Request, principal: Principal, case_id: str, section: Section | None = None
) -> CaseState:
    _caller.set(principal.user_id)
    state = await case_state(request, case_id)
    if not can_read_case(principal, state.access_facts()):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "no access to this case (agency or jurisdiction)"
        )
    if section is not None and not can_read_section(principal, section):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"agency {principal.agency.value} may not read the {section.value} section",
        )
    return state


async def actionable_case(
    request: Request,
    principal: Principal,
    case_id: str,
    stages: tuple[Stage, ...] | None = None,
    *,
    handoff_id: str | None = None,
) -> CaseState:
    """The case, if the caller may change it (403 otherwise). With `handoff_id`: if the caller may answer that
    handoff (the invited agency, before it accepts: a pending invitee may do that and nothing else)."""
    _caller.set(principal.user_id)
    state = await case_state(request, case_id)
    facts = state.access_facts()
    if handoff_id is not None:
        handoff = next((h for h in state.handoffs if h.handoff_id == handoff_id), None)
        if handoff is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no handoff {handoff_id} on this case")
        if not (
            can_respond_to_handoff(principal, facts, handoff.to_agency)
            or (handoff.state != HandoffState.requested and can_act_on_case(principal, facts))
        ):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"only {handoff.to_agency.value} in the case's province answers this handoff",
            )
    elif not can_act_on_case(principal, facts):
        if principal.agency in facts.pending_invitees and can_read_case(principal, facts):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"agency {principal.agency.value} was asked to take part in this case but has not "
                "accepted the handoff yet; it may only accept or reject it",
            )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "you may not act on this case (agency or jurisdiction)"
        )
    if stages is not None and state.stage not in stages:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"case is in stage {state.stage.value}; this needs stage "
            f"{' or '.join(s.value for s in stages)}",
        )
    return state


async def check_may_act(
    request: Request, principal: Principal, case_id: str, stages: tuple[Stage, ...] | None = None
) -> None:
    """403/404/409 unless the caller may act on the case (in one of `stages`), for an endpoint that sends
    an Update next and needs nothing of the case's state.

    Reads the case index (one PostgreSQL row), not the workflow (a Query: a round trip through Temporal
    and a task on the workflow worker, issue 13). Only a "yes" is taken from the index: the workflow's
    validator checks every rule again against the live state, so a stale row can at worst let through a
    request that the validator then refuses (the same 403/409). A "no", a missing row or an unreachable
    index asks the workflow (`actionable_case`), so each refusal carries the workflow's exact reason as
    before. A stage rule the workflow does not check itself is as fresh as the index (every accepted
    action is in it when its HTTP call returns; a Query had the same race with a concurrent action)."""
    if not await _may_act_by_index(request, principal, case_id, stages):
        await actionable_case(request, principal, case_id, stages)


async def _may_act_by_index(
    request: Request, principal: Principal, case_id: str, stages: tuple[Stage, ...] | None
) -> bool:
    """Whether the case index says the caller may act on the case (in one of `stages`). False when it
    does not know (no row, PostgreSQL away, a closed case) as well as when it says no."""
    _caller.set(principal.user_id)
    try:
        row = await case_index.get(runtime_of(request).pool, case_id)
    except _DB_ERRORS:
        return False
    if row is None or row["status"] not in case_index.OPEN_STATUSES:
        return False
    if stages is not None and row["stage"] not in {s.value for s in stages}:
        return False
    facts = CaseAccessFacts(
        province=row["province"],
        commune=row["commune"],
        owner_agency=AgencyRole(row["owner_agency"]),
        participants=frozenset(AgencyRole(a) for a in row["participants"]),
        pending_invitees=frozenset(AgencyRole(a) for a in row["pending_to"]),
    )
    return can_act_on_case(principal, facts)


async def _request_body(request: Request) -> bytes:
    try:
        return await request.body()  # FastAPI already read (and cached) a JSON body
    except (
        RuntimeError
    ):  # a streamed body (CSV upload) was consumed: the command alone identifies it
        return b""


# An Update, named by the workflow's own handler (`CaseWorkflow.decide`, so a typo is a type error in the
# service) or, for callers that cannot import the workflow, by its name. Temporal's default Update name is
# the handler's name, so both send the same Update.
UpdateRef = str | UpdateMethodMultiParam[Any, Any]


def update_name(update: UpdateRef) -> str:
    return update if isinstance(update, str) else str(getattr(update, "__name__"))  # noqa: B009


async def act(
    request: Request,
    principal: Principal,
    case_id: str,
    update: UpdateRef,
    command: Callable[[Actor], BaseModel],
    idempotency_key: str | None,
    *,
    stages: tuple[Stage, ...] | None = None,
) -> CaseState:
    """The common shape of an action endpoint: the case if the caller may act on it (403/404/409), the
    command built around the caller's Actor (from the token, never the body), the Update sent through
    `update_case`. Returns the state the workflow answered with.

    The check before the Update is `check_may_act` (the case index, not a Query to the workflow)."""
    await check_may_act(request, principal, case_id, stages)
    return await update_case(
        request, case_id, update, command(actor_of(principal, request)), idempotency_key
    )


async def update_case(
    request: Request,
    case_id: str,
    update: UpdateRef,
    command: BaseModel,
    idempotency_key: str | None,
) -> CaseState:
    """Send an Update to the case's workflow; a rejection becomes 403/409/422 (shared.api.call_workflow).

    With an Idempotency-Key the request is scoped to (caller = command.actor.user_id, operation = method +
    path + Update name, case) in common.idempotency_keys, and the Update id is derived from that scope (no
    raw user id reaches Temporal). The same caller reusing the key with a different request gets 422; the
    same request re-sends the same Update id, which Temporal answers with the first outcome (and which the
    workflow answers from its carried ids after a continue-as-new), so nothing is applied twice.

    Outcome of each send, in the store: accepted -> 'applied'; rejected -> the pending scope is deleted (a
    corrected request may use the key); no answer (RPC timeout, lost connection) -> it stays 'pending' and
    the caller gets 503 saying the outcome is unknown and to retry with the same key.

    An accepted Update's resulting state is written to common.case_index (shared.case_index.record_update)
    before this returns, so the screens that read the index show the caller's action at once."""
    name = update_name(update)
    runtime = runtime_of(request)
    handle = runtime.temporal.get_workflow_handle(case_id)
    timeout: timedelta = runtime.extras.get("update_rpc_timeout") or UPDATE_RPC_TIMEOUT
    scope: idempotency.Scope | None = None
    if idempotency_key:
        actor = getattr(command, "actor", None)
        if not isinstance(actor, Actor):
            raise TypeError(
                f"{type(command).__name__} has no actor: cannot scope its Idempotency-Key"
            )
        scope = idempotency.scope_of(
            runtime.ring,
            user_id=actor.user_id,
            operation=f"{request.method} {request.url.path} {name}",
            case_id=case_id,
            key=idempotency_key,
            command=command.model_dump(mode="json"),
            body=await _request_body(request),
        )
        try:
            previous = await idempotency.begin(runtime.pool, scope)
        except idempotency.KeyReusedError:
            raise HTTPException(
                422,
                "Idempotency-Key: you already used this key for this action on this case with a "
                "different request; send a new key for a new request",
            ) from None
        if previous is not None:
            log.info("idempotent_retry", case_id=case_id, update=name, previous=previous.value)
    update_id = scope.update_id if scope else str(uuid.uuid4())

    async def run() -> Any:
        return await handle.execute_update(
            name, command, id=update_id, rpc_timeout=timeout, result_type=CaseState
        )

    try:
        result: CaseState = await call_workflow(run)
    except HTTPException as exc:
        if exc.status_code >= 500:  # sent, but no answer: the workflow may still apply it
            log.warning(
                "update_outcome_unknown", case_id=case_id, update=name, keyed=scope is not None
            )
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                OUTCOME_UNKNOWN if scope else OUTCOME_UNKNOWN_NO_KEY,
                headers={"Retry-After": "5"},
            ) from None
        if scope is not None:
            await _settle(runtime, scope, accepted=False)
        raise
    # read-your-writes: the accepted state is in common.case_index before the caller gets its answer (the
    # audit activity writes it too, in its event's transaction; only the newer version wins)
    await case_index.record_update(runtime.pool, result)
    if scope is not None:
        await _settle(runtime, scope, accepted=True)
    return result


async def _settle(runtime: Runtime, scope: idempotency.Scope, *, accepted: bool) -> None:
    """Record the Update's outcome; if the store is away, the scope stays pending and a retry settles it."""
    try:
        await (idempotency.applied if accepted else idempotency.rejected)(runtime.pool, scope)
    except _DB_ERRORS as exc:
        log.warning("idempotency_state_not_saved", case_id=scope.case_id, error=type(exc).__name__)


async def write_with_update(
    runtime: Runtime,
    case_id: str,
    write: Callable[[PoolConnectionProxy], Awaitable[W]],
    update: Callable[[W], Awaitable[CaseState]],
) -> tuple[W, CaseState]:
    """A service's rows and the workflow Update that refers to them, as one unit for the caller.

    The rows are written in a transaction that stays open while the Update runs, so readers never see rows
    of an Update that was not accepted, and a rejected Update (403/409/422) rolls them back. If the commit
    then fails (connection lost, server restarting), the workflow already holds the Update: the same
    writes, which must be idempotent (ids fixed before the call, ON CONFLICT DO NOTHING), are made again in
    new transactions. Only if those fail too does the caller get a 503 asking to retry with the same
    Idempotency-Key, which re-sends the same Update id (Temporal answers it from the first time) and writes
    the rows.

    An Update that gets no answer in time (update_case: 503, outcome unknown) rolls the rows back too, but
    its outcome stays knowable: its scope is 'pending' in common.idempotency_keys until the client retries
    with the same key. The retry writes the same rows (same ids) and re-sends the same Update id: Temporal
    answers with the outcome if the workflow applied it meanwhile, or applies it now; either way the rows
    are committed once, with exactly one event. Until that retry, a workflow that applied the Update late
    refers to rows not written yet (listed by shared.idempotency.pending); nothing half-done is shown."""
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
            log.warning(
                "rows_rewritten_after_update", case_id=case_id, first_error=type(error).__name__
            )
            return written, accepted
        except _DB_ERRORS as exc:
            error = exc
    log.error("rows_lost_after_update", case_id=case_id, error=type(error).__name__)
    raise HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the case workflow accepted this action but its details could not be saved; retry with the "
        "same Idempotency-Key to save them (the workflow will not record the action twice)",
    )


BreakGlass = Annotated[
    str | None,
    Query(
        min_length=10,
        max_length=500,
        description="oversight roles: why personal data must be seen unmasked (stored, encrypted, in the access log)",
    ),
]


class CaseReadLog:
    """A service's access-logged read: `await read_log(request, principal, state, action, section,
    break_glass_reason)` writes the line (service named once) and returns whether to mask."""

    def __init__(self, service: str) -> None:
        self.service = service

    async def read(
        self,
        request: Request,
        principal: Principal,
        case_id: str,
        section: Section,
        action: str,
        break_glass_reason: str | None,
    ) -> tuple[CaseState, bool]:
        """The common shape of a read of a case's section: the case if the caller may read the section
        (403 otherwise), the access-log line written, and whether to mask."""
        state = await readable_case(request, principal, case_id, section)
        return state, await self(request, principal, state, action, section, break_glass_reason)

    async def __call__(
        self,
        request: Request,
        principal: Principal,
        state: CaseState,
        action: str,
        section: Section,
        break_glass_reason: str | None,
    ) -> bool:
        return await log_case_read(
            request,
            principal,
            state,
            service=self.service,
            action=action,
            section=section,
            break_glass_reason=break_glass_reason,
        )


async def log_case_read(
    request: Request,
    principal: Principal,
    state: CaseState,
    *,
    service: str,
    action: str,
    section: Section,
    break_glass_reason: str | None,
) -> bool:
    """Decide masking and write the access-log line before any personal data leaves (a read whose line
    cannot be written fails). Returns whether the values must be masked."""
    masked = pii_masked_for(principal, bool(break_glass_reason), facts=state.access_facts())
    runtime = runtime_of(request)
    await record_read(
        runtime.pool,
        runtime.ring,
        AccessRead(
            service=service,
            user_id=principal.user_id,
            agency=principal.agency.value,
            roles=[r.value for r in principal.roles],
            case_id=state.case_id,
            case_province=state.province,
            action=action,
            sections=[section.value],
            masked=masked,
            break_glass_reason=break_glass_reason,
            request_id=getattr(request.state, "request_id", None),
        ),
    )
    return masked
