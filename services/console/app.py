"""The console process: a FastAPI app serving server-rendered pages (Jinja2), its static CSS, and nothing
else. No database, no Temporal client: it reads the key ring (to seal sessions and, in development, to
mint persona tokens) and calls the four services over HTTP.

`python -m services.console` (what `nrm up` starts), on NRM_CONSOLE_PORT."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import structlog
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from services.console import api
from services.console.i18n import LANGS, translations
from services.console.session import Sessions
from services.console.settings import ConsoleConfig, ConsoleSettings
from shared.auth import TokenVerifier
from shared.config import ConfigError, Settings, get_settings
from shared.crypto import KeyRing, load_keyring
from shared.logging import configure_logging

HERE = Path(__file__).parent
# the console's connections to the APIs: an idle connection is dropped well before the services' uvicorn
# closes it (its keep-alive is 5 s); at the same 5 s, a request sent just as uvicorn closes the
# connection fails with "server disconnected" under load (seen with 50 users in bench/console)
API_SERVICES = ("intake", "verification", "support", "oversight", "notifications")
API_LIMITS = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0)
log = structlog.get_logger("console")
# Nothing but this console's own files: no script, no CDN, no inline style or script.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self' {idp}; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders(BaseHTTPMiddleware):
    def __init__(self, app: object, idp: str) -> None:
        super().__init__(app)  # type: ignore[arg-type]
        self.csp = CSP.format(idp=idp).replace("  ", " ")

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Cache-Control"] = "no-store"  # pages carry personal data
        return response


def templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def create_app(settings: Settings | None = None, ring: KeyRing | None = None) -> FastAPI:
    shared = settings or get_settings()
    config = ConsoleConfig(shared, ConsoleSettings())
    keyring = ring or load_keyring(shared.resolved_keyring_file, create=False)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # one connection pool per service: httpcore looks through a pool's connections for each request,
        # so one pool for all five services costs CPU on every call under load
        async with contextlib.AsyncExitStack() as stack:
            app.state.http = await stack.enter_async_context(httpx.AsyncClient(limits=API_LIMITS))
            app.state.api_http = {
                service: await stack.enter_async_context(httpx.AsyncClient(limits=API_LIMITS))
                for service in API_SERVICES
            }
            yield

    app = FastAPI(
        title="NRM console", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.config = config
    app.state.templates = templates()
    app.state.sessions = Sessions(
        config,
        keyring,
        TokenVerifier(
            keyring if config.dev_issuer else None,
            shared.jwt_issuer,
            shared.jwt_audience,
            shared.oidc_jwks_url,
        ),
    )
    for lang in LANGS:  # read the catalogs now: a broken catalog stops the start, not a page
        translations(lang)
    idp = config.own.oidc_authorization_url or ""
    app.add_middleware(SecurityHeaders, idp=idp.split("?")[0])
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.include_router(api.router)

    @app.exception_handler(api.SignInNeeded)
    async def sign_in(request: Request, _: Exception) -> Response:
        return RedirectResponse(f"/signin?next={request.url.path}", status_code=303)

    @app.exception_handler(api.WrongRole)
    async def wrong_role(request: Request, _: Exception) -> Response:
        c = api.Ctx(request)
        return c.render(
            "error.html", status=403, message=c.t._("This page is not for your role"), detail=None
        )

    @app.exception_handler(api.CsrfFailed)
    async def csrf_failed(request: Request, _: Exception) -> Response:
        c = api.Ctx(request)
        return c.render(
            "error.html",
            status=403,
            message=c.t._("The form had expired; go back, reload the page and send it again"),
            detail=None,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if request.url.path.startswith("/static"):
            return HTMLResponse("", status_code=exc.status_code)
        c = api.Ctx(request)
        return c.render(
            "error.html",
            status=exc.status_code,
            message=c.t._("Page not found")
            if exc.status_code == 404
            else c.t._("The request was not accepted"),
            detail=None,
        )

    return app


def main(argv: list[str] | None = None) -> int:
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("console", settings.log_level)
    logging.getLogger("httpx").setLevel(
        logging.WARNING
    )  # one line per API call is noise; errors still show
    app = create_app(settings)
    uvicorn.run(
        app, host=settings.host, port=settings.console_port, log_config=None, access_log=False
    )
    return 0
