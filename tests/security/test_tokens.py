"""Token verification: the production path (an OIDC provider's JWKS, here served by a local HTTP server)
and the development issuer (the key ring's Ed25519 key)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from nrm.service import build_app
from shared.auth import AuthError, TokenVerifier, mint_token
from shared.config import Settings
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role

ISSUER = "https://login.example.gov.vn/realms/nrm"
AUDIENCE = "nrm-api"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PROVIDER_KEY = _rsa()
ROGUE_KEY = _rsa()


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "sub": "officer-17",
        "name": "Officer",
        "roles": ["caseworker"],
        "agency": "police",
        "province": "01",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def sign(key: rsa.RSAPrivateKey, kid: str = "provider-1", **over: Any) -> str:
    return jwt.encode(_claims(**over), key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(PROVIDER_KEY.public_key()))
    document = json.dumps(
        {"keys": [{**jwk, "kid": "provider-1", "use": "sig", "alg": "RS256"}]}
    ).encode()
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            if self.path != "/certs":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/certs"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert hits, "the JWKS document was never fetched"


def test_jwks_accepts_the_providers_token(jwks_url: str) -> None:
    verifier = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url)
    p = verifier.verify(sign(PROVIDER_KEY))
    assert (
        p.user_id == "officer-17" and p.agency == AgencyRole.police and p.roles == {Role.caseworker}
    )
    assert p.province == "01"


@pytest.mark.parametrize(
    ("label", "token", "message"),
    [
        ("another key, same kid", lambda: sign(ROGUE_KEY), "invalid token"),
        ("another key, unknown kid", lambda: sign(ROGUE_KEY, kid="rogue"), "invalid token"),
        ("wrong audience", lambda: sign(PROVIDER_KEY, aud="another-app"), "invalid token"),
        (
            "wrong issuer",
            lambda: sign(PROVIDER_KEY, iss="https://evil.example.com"),
            "invalid token",
        ),
        (
            "expired",
            lambda: sign(PROVIDER_KEY, iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
            "token expired",
        ),
        ("no expiry", lambda: sign(PROVIDER_KEY, exp=None), "invalid token"),
        (
            "HS256 (symmetric) token",
            lambda: jwt.encode(
                _claims(), "secret-guess", algorithm="HS256", headers={"kid": "provider-1"}
            ),
            "invalid token",
        ),
        (
            "dev Ed25519 token",
            lambda: mint_token(
                KeyRing.generate(),
                user_id="x",
                roles=[Role.admin],
                agency=AgencyRole.police,
                province="*",
                issuer=ISSUER,
                audience=AUDIENCE,
            ),
            "invalid token",
        ),
        (
            "unknown role claim",
            lambda: sign(PROVIDER_KEY, roles=["superuser"]),
            "token claims invalid: roles",
        ),
        ("no roles", lambda: sign(PROVIDER_KEY, roles=[]), "token claims invalid: roles"),
    ],
)
def test_jwks_rejects(jwks_url: str, label: str, token: Any, message: str) -> None:
    verifier = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url)
    with pytest.raises(AuthError) as err:
        verifier.verify(token())
    assert str(err.value).startswith(message), (label, str(err.value))


async def test_jwks_over_http_through_a_service(jwks_url: str) -> None:
    """A service configured with NRM_OIDC_JWKS_URL: the provider's token is let in (then 403/200 by role),
    a token signed with another key or for another audience is a 401."""
    settings = Settings(oidc_jwks_url=jwks_url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    app = build_app("intake", settings)
    app.state.token_verifier = TokenVerifier(
        None, settings.jwt_issuer, settings.jwt_audience, settings.oidc_jwks_url
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as http:
        # authenticated, then refused by role (supervisors and auditors only)
        good = sign(PROVIDER_KEY, roles=["caseworker"])
        r = await http.get("/access-log", headers={"Authorization": f"Bearer {good}"})
        assert r.status_code == 403 and "requires role" in r.json()["detail"]
        for bad in (
            sign(ROGUE_KEY),
            sign(PROVIDER_KEY, aud="other"),
            sign(PROVIDER_KEY, iss="other"),
        ):
            r = await http.get("/access-log", headers={"Authorization": f"Bearer {bad}"})
            assert r.status_code == 401 and r.json()["detail"].startswith("invalid token")


def test_dev_issuer() -> None:
    ring = KeyRing.generate()
    verifier = TokenVerifier(ring, "nrm-dev", "nrm")
    kw: dict[str, Any] = dict(
        user_id="u1", roles=[Role.supervisor], agency=AgencyRole.social_protection, province="01"
    )
    assert verifier.verify(mint_token(ring, **kw)).user_id == "u1"
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(
            mint_token(
                ring, **kw, now=datetime.now(UTC) - timedelta(days=1), ttl=timedelta(hours=1)
            )
        )
    for bad in (
        mint_token(ring, **kw, audience="x"),
        mint_token(ring, **kw, issuer="x"),
        mint_token(KeyRing.generate(), **kw),
        "a.b.c",
        "",
    ):
        with pytest.raises(AuthError, match="invalid token"):
            verifier.verify(bad)


def test_a_remembered_token_still_expires_and_a_failure_is_not_remembered() -> None:
    ring = KeyRing.generate()
    verifier = TokenVerifier(
        ring, "nrm-dev", "nrm", leeway_seconds=0
    )  # no clock-skew allowance: expiry is exact
    kw: dict[str, Any] = dict(
        user_id="u1", roles=[Role.caseworker], agency=AgencyRole.police, province="01"
    )
    # exp is whole seconds: this token expires 1-2 s from now
    short = mint_token(
        ring, **kw, ttl=timedelta(seconds=2), now=datetime.now(UTC) - timedelta(seconds=0.5)
    )
    first = verifier.verify(short)
    assert verifier.verify(short) is first  # the second request does not verify the signature again
    time.sleep(2.6)
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(short)
    # a forged token stays refused however often it is sent, and never poisons the good one's entry
    forged = mint_token(KeyRing.generate(), **kw)
    for _ in range(2):
        with pytest.raises(AuthError, match="invalid token"):
            verifier.verify(forged)
    # the cache is bounded
    verifier.CACHE_SIZE = 3
    tokens = [mint_token(ring, **{**kw, "user_id": f"u{i}"}) for i in range(5)]
    assert [verifier.verify(t).user_id for t in tokens] == [f"u{i}" for i in range(5)]
    assert len(verifier._verified) == 3


# ---- issue 10: no clock skew was allowed ---------------------------------------------------------
def test_token_from_a_provider_whose_clock_runs_30s_ahead_is_accepted(jwks_url: str) -> None:
    verifier = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url)
    ahead = int(time.time()) + 30
    p = verifier.verify(sign(PROVIDER_KEY, iat=ahead, nbf=ahead, exp=ahead + 600))
    assert p.user_id == "officer-17"
    # and on the development issuer too
    ring = KeyRing.generate()
    dev = TokenVerifier(ring, "nrm-dev", "nrm")
    token = mint_token(
        ring,
        user_id="u1",
        roles=[Role.caseworker],
        agency=AgencyRole.police,
        province="01",
        now=datetime.now(UTC) + timedelta(seconds=30),
    )
    assert dev.verify(token).user_id == "u1"


def test_token_issued_10_minutes_in_the_future_is_rejected(jwks_url: str) -> None:
    verifier = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url)
    ahead = int(time.time()) + 600
    with pytest.raises(AuthError, match="not yet valid"):
        verifier.verify(sign(PROVIDER_KEY, iat=ahead, exp=ahead + 600))
    with pytest.raises(AuthError, match="not yet valid"):
        verifier.verify(sign(PROVIDER_KEY, nbf=ahead, exp=ahead + 600))


def test_token_expired_within_the_leeway_is_accepted_beyond_it_rejected(jwks_url: str) -> None:
    verifier = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url)
    now = int(time.time())
    assert verifier.verify(sign(PROVIDER_KEY, iat=now - 600, exp=now - 20)).user_id == "officer-17"
    with pytest.raises(AuthError, match="token expired"):
        verifier.verify(sign(PROVIDER_KEY, iat=now - 900, exp=now - 300))
    strict = TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url, leeway_seconds=0)
    with pytest.raises(AuthError, match="token expired"):
        strict.verify(sign(PROVIDER_KEY, iat=now - 600, exp=now - 20))
    with pytest.raises(ValueError, match="leeway_seconds"):
        TokenVerifier(None, ISSUER, AUDIENCE, jwks_url=jwks_url, leeway_seconds=3600)
