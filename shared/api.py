"""The FastAPI app factory every service uses: request ids, body limits, health and readiness,
one error format, and the mapping of workflow Update outcomes to HTTP status codes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any, TypeVar

import structlog
from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response
from temporalio.client import WorkflowUpdateFailedError, WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from shared.auth import AuthError, TokenVerifier
from shared.db import ping
from shared.runtime import Runtime
from shared.temporal import temporal_reachable

log = structlog.get_logger("api")
T = TypeVar("T")

# ApplicationError types raised by workflow validators/handlers, and the HTTP status each becomes.
ERROR_STATUS = {"forbidden": 403, "conflict": 409, "stale": 409, "invalid": 422, "not_found": 404}
UPDATE_RPC_TIMEOUT = timedelta(seconds=15)


class RequestContextMiddleware(BaseHTTPMiddleware):
    """Binds a request id (from X-Request-ID or new) to every log line; refuses oversized bodies."""

    def __init__(self, app: Any, max_body_bytes: int) -> None:
        super().__init__(app)
        self.max_body_bytes = max_body_bytes

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        if len(request_id) > 128:
            request_id = str(uuid.uuid4())
        request.state.request_id = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            length = request.headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
                return JSONResponse(
                    {"detail": [{"loc": ["body"], "msg": f"body larger than {self.max_body_bytes} bytes",
                                 "type": "payload_too_large"}]},
                    status_code=413, headers={"X-Request-ID": request_id})
            response = await call_next(request)
            response.headers["X-Request-ID"] = request_id
            return response
        finally:
            structlog.contextvars.unbind_contextvars("request_id", "case_id")


PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc"})


class BearerAuthMiddleware(BaseHTTPMiddleware):
    """Authenticates every request (but health and docs) before routing and body parsing, so an
    unauthenticated caller gets 401 whatever its body; the principal is handed to the endpoint's
    dependency through request.state."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path in PUBLIC_PATHS or request.method == "OPTIONS":
            return await call_next(request)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        challenge = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            return JSONResponse({"detail": "missing bearer token"}, status_code=401, headers=challenge)
        verifier: TokenVerifier = request.app.state.token_verifier
        try:
            request.state.principal = verifier.verify(token.strip())
        except AuthError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=401, headers=challenge)
        return await call_next(request)


def _validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
              for e in exc.errors()]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(service: str, routers: list[APIRouter], *, description: str,
               runtime_factory: Callable[[], Awaitable[Runtime]],
               on_start: Callable[[FastAPI], Awaitable[None]] | None = None,
               on_stop: Callable[[FastAPI], Awaitable[None]] | None = None,
               max_body_bytes: int = 2_000_000) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await runtime_factory()
        app.state.runtime = runtime
        app.state.token_verifier = TokenVerifier(runtime.ring, runtime.settings.jwt_issuer,
                                                 runtime.settings.jwt_audience, runtime.settings.oidc_jwks_url)
        if on_start:
            await on_start(app)
        log.info("service_started", service=service)
        try:
            yield
        finally:
            if on_stop:
                await on_stop(app)
            await runtime.close()

    app = FastAPI(title=f"NRM {service}", description=description, version="0.1.0", lifespan=lifespan)
    app.add_middleware(BearerAuthMiddleware)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=max_body_bytes)  # outermost: request id first
    app.add_exception_handler(RequestValidationError, _validation_error_handler)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", tags=["health"], summary="Readiness: database and Temporal reachable",
             responses={503: {"description": "a dependency is down"}})
    async def readyz(request: Request) -> JSONResponse:
        runtime: Runtime = request.app.state.runtime
        checks = {"database": await ping(runtime.pool), "temporal": await temporal_reachable(runtime.temporal)}
        ok = all(checks.values())
        return JSONResponse({"status": "ready" if ok else "not_ready", "service": service, "checks": checks},
                            status_code=200 if ok else 503)

    for router in routers:
        app.include_router(router)
    return app


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
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the case workflow did not answer in time (is the workflow worker running?)") from None
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise HTTPException(404, "case not found") from None
        if exc.status == RPCStatusCode.FAILED_PRECONDITION and "closed" in exc.message.lower():
            raise HTTPException(409, "case workflow is closed") from None
        raise HTTPException(503, f"workflow service error: {exc.status.name if exc.status else 'unknown'}"
                            ) from None
