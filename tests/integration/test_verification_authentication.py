"""Every verification and support endpoint refuses a missing or forged token."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from nrm.service import build_app
from shared.auth import mint_token
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool
from shared.domain import Role
from shared.runtime import Runtime
from tests.helpers.verification_stack import PROVINCE, A


# ---- authentication matrix --------------------------------------------------------------------
def _routes(app: FastAPI) -> list[tuple[str, str]]:
    out = []
    for path, ops in app.openapi()["paths"].items():
        if path in ("/healthz", "/readyz"):
            continue
        for method in ops:
            out.append(
                (
                    method.upper(),
                    path.replace("{case_id}", "case-x")
                    .replace("{operation_id}", "op-x")
                    .replace("{handoff_id}", "h1")
                    .replace("{follow_up_id}", "fu-3m"),
                )
            )
    return out


@pytest.mark.parametrize("service", ["verification", "support"])
async def test_every_endpoint_needs_a_token(service: str, db_url: str, ring: KeyRing) -> None:
    settings = Settings()

    async def factory() -> Runtime:
        # no Temporal call is made before authentication; a closed client would fail loudly if one were
        return Runtime(settings, ring, await create_pool(db_url, 1, 2), None)  # type: ignore[arg-type]

    app = build_app(service, settings, runtime_factory=factory)
    routes = _routes(app)
    assert len(routes) >= 10
    # lifespan would start an activity worker on a real client: not needed for auth checks
    app.state.runtime = await factory()
    from shared.auth import TokenVerifier

    app.state.token_verifier = TokenVerifier(ring, settings.jwt_issuer, settings.jwt_audience)
    bad = mint_token(
        KeyRing.generate(), user_id="x", roles=[Role.caseworker], agency=A.police, province=PROVINCE
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        for method, path in routes:
            r = await c.request(method, path, json={})
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            r = await c.request(method, path, json={}, headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401, (method, path, r.status_code)
            assert "invalid token" in r.json()["detail"]
    await app.state.runtime.pool.close()
