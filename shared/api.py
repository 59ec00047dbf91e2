"""The FastAPI app factory every service uses: request ids, body limits, health and readiness,
one error format, and the mapping of workflow Update outcomes to HTTP status codes."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import asyncpg
import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from shared.api_models import UNSTORABLE_TYPE, safe_text, unstorable_reason
from shared.auth import AuthError, TokenVerifier
from shared.db import ping
from shared.metrics import METRICS_PATH, install_metrics
from shared.offline_docs import STATIC_URL, install_offline_docs
from shared.runtime import Runtime
from shared.temporal import temporal_reachable
from shared.tracing import fastapi_options, install_tracing

log = structlog.get_logger("api")
T = TypeVar("T")

# ApplicationError types raised by workflow validators/handlers, and the HTTP status each becomes.
ERROR_STATUS = {"forbidden": 403, "conflict": 409, "stale": 409, "invalid": 422, "not_found": 404}
UPDATE_RPC_TIMEOUT = timedelta(seconds=15)


class BodyTooLarge(HTTPException):
    """Raised from the body stream once a request without (or with a lying) Content-Length has sent more
    than the limit; FastAPI lets HTTPException through its body parsing, so the handler below answers."""

    def __init__(self, limit: int) -> None:
        super().__init__(status_code=413, detail=f"body larger than {limit} bytes")
        self.limit = limit


def _too_large(limit: int, request_id: str) -> JSONResponse:
    return JSONResponse(
        {
            "detail": [
                {
                    "loc": ["body"],
                    "msg": f"body larger than {limit} bytes",
                    "type": "payload_too_large",
                }
            ]
        },
        status_code=413,
        headers={"X-Request-ID": request_id},
    )


PUBLIC_PATHS = frozenset(
    {
        "/healthz",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/openapi.json",
        "/redoc",
        METRICS_PATH,
    }
)
PUBLIC_PREFIXES = (f"{STATIC_URL}/",)  # the docs pages' own scripts and styles
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
_REQUEST_ID = re.compile(
    r"[\x21-\x7e]{1,128}"
)  # visible ASCII: it is logged, stored and echoed in a header
READ_HEADERS = ("idempotency-key", "content-type")  # the request headers an endpoint reads as text


def _unstorable_input(scope: Scope, headers: Headers) -> JSONResponse | None:
    """422 naming every query parameter, path parameter and read header holding a character PostgreSQL
    cannot store (NUL; a lone surrogate), in FastAPI's validation-error shape. Bodies are checked by the
    request models (shared.api_models.StorableText), which know the field's full `loc`."""
    errors: list[dict[str, Any]] = []
    query: bytes = scope.get("query_string", b"")
    if (
        b"%00" in query or b"\x00" in query
    ):  # the only way a NUL reaches a query (surrogates decode to U+FFFD)
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            for where, text in (("name", name), ("value", value)):
                if (reason := unstorable_reason(text)) is not None:
                    errors.append(
                        {
                            "loc": ["query", safe_text(name)],
                            "msg": f"{where} {reason}",
                            "type": UNSTORABLE_TYPE,
                        }
                    )
    if (reason := unstorable_reason(scope["path"])) is not None:
        errors.extend(
            {"loc": loc, "msg": reason, "type": UNSTORABLE_TYPE} for loc in _path_locs(scope)
        )
    for header in READ_HEADERS:
        if (reason := unstorable_reason(headers.get(header, ""))) is not None:
            errors.append({"loc": ["header", header], "msg": reason, "type": UNSTORABLE_TYPE})
    return JSONResponse({"detail": errors}, status_code=422) if errors else None


def _path_locs(scope: Scope) -> list[list[str]]:
    """The path parameters holding an unstorable character, by the documented path templates (["path"] if
    no template matches). Only on that refusal: the OpenAPI document is built once and cached by FastAPI."""
    path = scope["path"]
    for template in scope["app"].openapi().get("paths", {}):
        pattern = "^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template)) + "$"
        found = re.match(pattern, path)
        if found is not None:
            names = [n for n, v in found.groupdict().items() if unstorable_reason(v) is not None]
            if names:
                return [["path", n] for n in names]
    return [["path"]]


class RequestGuardMiddleware:
    """What every request goes through before routing, as plain ASGI (Starlette's BaseHTTPMiddleware
    runs each request in an extra task and was a third of the intake service's CPU per case):

    1. a request id (X-Request-ID or new) bound to every log line and echoed on the response;
    2. the body limit: an oversized Content-Length is refused at once, and the body stream is counted
       as it is read, so a chunked body or one longer than its header is cut off too (413 either way);
    3. bearer authentication (but health and docs), before the body is parsed, so an unauthenticated
       caller gets 401 whatever its body; the principal reaches the endpoint through request.state."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = headers.get("x-request-id") or ""
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = str(uuid.uuid4())
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            limit = self.max_body_bytes
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > limit):
                await _too_large(limit, request_id)(scope, receive, send)
                return
            if (
                scope["path"] not in PUBLIC_PATHS
                and not scope["path"].startswith(PUBLIC_PREFIXES)
                and scope["method"] != "OPTIONS"
            ):
                refusal = await self._authenticate(scope, headers, state)
                if refusal is None:
                    refusal = _unstorable_input(scope, headers)
                if refusal is not None:
                    refusal.headers["X-Request-ID"] = request_id
                    await refusal(scope, receive, send)
                    return
            received = 0
            started = False

            async def counted_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > limit:
                        raise BodyTooLarge(limit)
                return message

            async def send_with_id(message: Message) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    started = True
                    MutableHeaders(scope=message).append("X-Request-ID", request_id)
                await send(message)

            try:
                await self.app(scope, counted_receive, send_with_id)
            except BodyTooLarge:
                if started:
                    raise
                await _too_large(limit, request_id)(scope, receive, send)
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "case_id")

    @staticmethod
    async def _authenticate(
        scope: Scope, headers: Headers, state: dict[str, Any]
    ) -> JSONResponse | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse(
                {"detail": "missing bearer token"}, status_code=401, headers=dict(_CHALLENGE)
            )
        verifier: TokenVerifier = scope["app"].state.token_verifier
        try:
            state["principal"] = await verifier.verify_async(token.strip())
        except AuthError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401, headers=dict(_CHALLENGE))
        return None


def _body_too_large_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BodyTooLarge)
    return _too_large(exc.limit, str(getattr(request.state, "request_id", "")))


def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [
        {
            "loc": [safe_text(p) if isinstance(p, str) else p for p in e.get("loc", ())],
            "msg": safe_text(str(e.get("msg", ""))),
            "type": e.get("type", ""),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"detail": detail}, status_code=422)


# A dependency that is away or overloaded (Temporal, PostgreSQL) is a 503 the client may retry, never a 500.
_DB_UNAVAILABLE: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    OSError,
)  # refused, reset, timed out, or the embedded server's unix socket gone (FileNotFoundError)


def _temporal_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RPCError)
    log.warning("temporal_unavailable", status=exc.status.name if exc.status else None)
    return JSONResponse(
        {
            "detail": f"Temporal did not answer ({exc.status.name if exc.status else 'unknown'}); "
            "retry in a moment"
        },
        status_code=503,
        headers={"Retry-After": "2"},
    )


def _database_error_handler(_: Request, exc: Exception) -> JSONResponse:
    log.warning("dependency_unavailable", error=type(exc).__name__)
    return JSONResponse(
        {"detail": "the database or Temporal did not answer in time; retry in a moment"},
        status_code=503,
        headers={"Retry-After": "2"},
    )


def create_app(
    service: str,
    routers: list[APIRouter],
    *,
    description: str,
    runtime_factory: Callable[[], Awaitable[Runtime]],
    on_start: Callable[[FastAPI], Awaitable[None]] | None = None,
    on_stop: Callable[[FastAPI], Awaitable[None]] | None = None,
    max_body_bytes: int = 2_000_000,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await runtime_factory()
        app.state.runtime = runtime
        app.state.token_verifier = TokenVerifier(
            runtime.ring,
            runtime.settings.jwt_issuer,
            runtime.settings.jwt_audience,
            runtime.settings.oidc_jwks_url,
        )
        if on_start:
            await on_start(app)
        log.info("service_started", service=service)
        try:
            yield
        finally:
            if on_stop:
                await on_stop(app)
            await runtime.close()

    app = FastAPI(
        title=f"NRM {service}",
        description=description,
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        **fastapi_options(),
    )  # FastAPI's own tracing off
    install_offline_docs(
        app
    )  # /docs and /redoc with their assets served from the installed package
    app.add_middleware(RequestGuardMiddleware, max_body_bytes=max_body_bytes)
    install_metrics(app, service)  # outermost: counts the guard's refusals too
    install_tracing(
        app
    )  # around that, when NRM_OTLP_ENDPOINT is set: one span per request (shared/tracing.py)
    app.add_exception_handler(RequestValidationError, _validation_error_handler)
    app.add_exception_handler(BodyTooLarge, _body_too_large_handler)
    app.add_exception_handler(RPCError, _temporal_error_handler)
    for unavailable in _DB_UNAVAILABLE:
        app.add_exception_handler(unavailable, _database_error_handler)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: database and Temporal reachable",
        responses={503: {"description": "a dependency is down"}},
    )
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        # No reconnect here: the pool replaces a dead connection on its next acquire and the Temporal
        # client redials by itself, so readiness turns 503 while a dependency is away and 200 once it is back.
        database, temporal = await asyncio.gather(
            ping(runtime.pool), _within(temporal_reachable(runtime.temporal))
        )
        if not database:
            # after a database restart every pooled connection is dead: have them all replaced on their next
            # acquire, rather than each found out by one more failed request
            await runtime.pool.expire_connections()
        checks = {"database": database, "temporal": temporal}
        ok = all(checks.values())
        return JSONResponse(
            {"status": "ready" if ok else "not_ready", "service": service, "checks": checks},
            status_code=200 if ok else 503,
        )

    for router in routers:
        app.include_router(router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _document_error_detail(FastAPI.openapi(app))  # FastAPI caches it in app.openapi_schema
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _document_error_detail(schema: dict[str, Any]) -> None:
    """A 422's `detail` is FastAPI's list of field errors, or one message naming the field and why (an
    HTTPException raised by an endpoint's own check, e.g. "province: '99' is not one of the 34 province
    codes"): say so in every service's OpenAPI document, so that clients and the fuzz test expect both."""
    error = schema.get("components", {}).get("schemas", {}).get("HTTPValidationError")
    if error is not None and "detail" in error.get("properties", {}):
        listed = error["properties"]["detail"]
        error["properties"]["detail"] = {
            "anyOf": [
                listed,
                {"type": "string", "description": "one message naming the field and why"},
            ],
            "title": "Detail",
        }


async def _within(check: Awaitable[bool], seconds: float = 3.0) -> bool:
    """A readiness check that hangs (a half-open connection) counts as down instead of hanging the probe."""
    try:
        return await asyncio.wait_for(check, seconds)
    except TimeoutError:
        return False


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def call_workflow(action: Callable[[], Awaitable[T]]) -> T:
    """Run a workflow Update/query and turn its failure into the right HTTP error."""
    try:
        return await action()
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            code = ERROR_STATUS.get(cause.type or "", 409)
            raise HTTPException(code, cause.message) from None
        raise HTTPException(409, str(cause or exc)) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the case workflow did not answer in time (is the workflow worker running?)",
        ) from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, "case not found") from None
        if exc.status == RPCStatusCode.FAILED_PRECONDITION and "closed" in exc.message.lower():
            raise HTTPException(409, "case workflow is closed") from None
        raise HTTPException(
            503, f"workflow service error: {exc.status.name if exc.status else 'unknown'}"
        ) from None
