"""Every route of the notifications service refuses a request without a valid token (401), as part (a) of
tests/security/test_authz_matrix.py does for the four case services; who sees which dead letter and inbox
item is tested with real deliveries in test_delivery.py."""

from __future__ import annotations

import httpx
import pytest
from fastapi.routing import APIRoute

from services.notifications.__main__ import build_app
from services.notifications.settings import NotificationSettings
from shared.auth import TokenVerifier
from shared.config import Settings
from tests.security.test_authz_matrix import BAD_TOKENS, RING, SKIP_PATHS, _flatten


def _app() -> tuple[object, list[tuple[str, str]]]:
    settings = Settings()
    app = build_app(settings, NotificationSettings())
    app.state.token_verifier = TokenVerifier(
        RING, settings.jwt_issuer, settings.jwt_audience
    )  # no lifespan
    routes = [
        (m, path)
        for path, route, _ in _flatten(list(app.routes))
        if isinstance(route, APIRoute) and path not in SKIP_PATHS
        for m in sorted(route.methods - {"HEAD", "OPTIONS"})
    ]
    return app, routes


APP, ROUTES = _app()


def test_the_notifications_routes_are_all_here() -> None:
    assert {p for _, p in ROUTES} >= {
        "/inbox",
        "/inbox/{item_id}/read",
        "/preferences/me",
        "/dead-letters",
        "/dead-letters/{delivery_id}/resend",
    }


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m}:{p}" for m, p in ROUTES])
async def test_every_notifications_route_refuses_bad_tokens(method: str, path: str) -> None:
    url = path.replace("{item_id}", "i-1").replace("{delivery_id}", "d-1")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=APP), base_url="http://t"
    ) as http:  # type: ignore[arg-type]
        for label, headers in BAD_TOKENS.items():
            r = await http.request(method, url, json={}, headers=headers)
            assert r.status_code == 401, (label, r.status_code, r.text)
