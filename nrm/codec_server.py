"""Codec server: decrypts Temporal payloads for the Web UI / CLI, for authorised operators only.

`temporal workflow show -w CASE_ID --codec-endpoint http://127.0.0.1:8105 \
   --codec-auth "Bearer $(nrm token --role admin --agency steering_committee --jurisdiction '*')"`
Every decode is logged (who, how many payloads; never the content)."""

from __future__ import annotations

import asyncio
import signal

import structlog
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads

from shared.auth import AuthError, TokenVerifier
from shared.config import Settings, get_settings
from shared.crypto import CryptoError, KeyRing, load_keyring
from shared.domain import Role
from shared.logging import configure_logging
from shared.temporal import KeyRingCodec

log = structlog.get_logger("codec")


def build_codec_app(settings: Settings, ring: KeyRing) -> FastAPI:
    app = FastAPI(
        title="NRM codec server", description="Decrypts Temporal payloads for admins only"
    )
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[
            f"http://127.0.0.1:{settings.temporal_ui_port}",
            f"http://localhost:{settings.temporal_ui_port}",
        ],
        allow_credentials=True,
        allow_methods=["POST"],
        allow_headers=["Authorization", "Content-Type", "X-Namespace"],
    )
    codec = KeyRingCodec(
        ring, strict=False
    )  # display only: shows a stranger's plain payloads as they are
    verifier = TokenVerifier(
        ring, settings.jwt_issuer, settings.jwt_audience, settings.oidc_jwks_url
    )

    async def authorise(request: Request) -> str:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise HTTPException(401, "missing bearer token")
        try:
            principal = await verifier.verify_async(header[7:])
        except AuthError as exc:
            raise HTTPException(401, str(exc)) from None
        if Role.admin not in principal.roles:
            raise HTTPException(403, "decoding payloads requires the admin role")
        return principal.user_id

    async def _payloads(request: Request) -> Payloads:
        try:
            return json_format.Parse(await request.body(), Payloads())
        except json_format.ParseError as exc:
            raise HTTPException(400, f"body is not a Payloads JSON document: {exc}") from None

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/decode")
    async def decode(request: Request) -> dict[str, object]:
        user = await authorise(request)
        payloads = await _payloads(request)
        try:
            decoded = await codec.decode(payloads.payloads)
        except CryptoError as exc:
            raise HTTPException(422, str(exc)) from None
        log.info("payloads_decoded", user_id=user, count=len(decoded))
        return json_format.MessageToDict(Payloads(payloads=decoded))

    @app.post("/encode")
    async def encode(request: Request) -> dict[str, object]:
        await authorise(request)
        payloads = await _payloads(request)
        return json_format.MessageToDict(Payloads(payloads=await codec.encode(payloads.payloads)))

    return app


def main() -> int:
    settings = get_settings()
    configure_logging("codec-server", settings.log_level)
    app = build_codec_app(settings, load_keyring(settings.resolved_keyring_file))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=settings.codec_port, log_config=None, access_log=False
        )
    )
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    loop.run_until_complete(server.serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
