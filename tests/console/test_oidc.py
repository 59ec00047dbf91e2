"""Production sign-in: the OpenID Connect authorization-code flow with PKCE, against a small identity
provider started by this test on a free local port (authorize, token and JWKS endpoints, an RSA key of its
own). The console is the real app (in process); the provider checks the PKCE verifier against the challenge
as a real one does. Checked: no development sign-in while NRM_OIDC_JWKS_URL is set; S256 challenge, state
and nonce sent; the session holds the provider's token after a good callback; a forged state, a callback
from another browser's flow, a wrong nonce and a refused code exchange all end on the sign-in page."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from services.console.app import create_app
from shared.config import Settings
from shared.crypto import KeyRing

ISSUER = "https://idp.example.vn/realms/lang-son"
CLIENT_ID = "nrm-console"


@dataclass
class Provider:
    url: str = ""
    key: Any = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    wrong_nonce: bool = False
    exchanges: list[dict[str, str]] = field(default_factory=list)

    def token(self, claims: dict[str, Any]) -> str:
        now = int(time.time())
        return jwt.encode(
            {"iat": now, "exp": now + 600, **claims},
            self.key,
            algorithm="RS256",
            headers={"kid": "k1"},
        )

    def jwks(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}


@pytest.fixture
def provider() -> Iterator[Provider]:
    idp = Provider()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _send(
            self, status: int, body: Any = None, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if url.path == "/jwks":
                return self._send(200, idp.jwks())
            if (
                url.path == "/authorize"
            ):  # the user signs in at the provider; it sends the browser back
                code = secrets.token_urlsafe(16)
                idp.codes[code] = q
                back = f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}"
                return self._send(302, headers={"Location": back})
            return self._send(404)

        def do_POST(self) -> None:
            form = {
                k: v[0]
                for k, v in parse_qs(
                    self.rfile.read(int(self.headers["Content-Length"])).decode()
                ).items()
            }
            idp.exchanges.append(form)
            asked = idp.codes.pop(form.get("code", ""), None)
            challenge = (
                base64.urlsafe_b64encode(
                    hashlib.sha256(form.get("code_verifier", "").encode()).digest()
                )
                .decode()
                .rstrip("=")
            )
            if (
                asked is None
                or form.get("grant_type") != "authorization_code"
                or form.get("client_id") != CLIENT_ID
                or form.get("redirect_uri") != asked["redirect_uri"]
                or challenge != asked["code_challenge"]
                or asked["code_challenge_method"] != "S256"
            ):
                return self._send(400, {"error": "invalid_grant"})
            access = idp.token(
                {
                    "iss": ISSUER,
                    "aud": "nrm",
                    "sub": "ca-ls-gs-07",
                    "name": "Vi Đức Thắng",
                    "roles": ["supervisor"],
                    "agency": "police",
                    "province": "20",
                }
            )
            id_token = idp.token(
                {
                    "iss": ISSUER,
                    "aud": CLIENT_ID,
                    "sub": "ca-ls-gs-07",
                    "nonce": "forged" if idp.wrong_nonce else asked["nonce"],
                }
            )
            return self._send(
                200, {"access_token": access, "id_token": id_token, "token_type": "Bearer"}
            )

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    idp.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield idp
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def console(provider: Provider, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("NRM_OIDC_AUTHORIZATION_URL", f"{provider.url}/authorize")
    monkeypatch.setenv("NRM_OIDC_TOKEN_URL", f"{provider.url}/token")
    monkeypatch.setenv("NRM_OIDC_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("NRM_CONSOLE_PUBLIC_URL", "http://testserver")
    settings = Settings(oidc_jwks_url=f"{provider.url}/jwks", jwt_issuer=ISSUER, jwt_audience="nrm")
    with TestClient(create_app(settings, KeyRing.generate()), follow_redirects=False) as client:
        yield client


def start(console: TestClient) -> dict[str, str]:
    r = console.get("/signin/oidc")
    assert r.status_code == 303
    target = urlsplit(r.headers["location"])
    return {k: v[0] for k, v in parse_qs(target.query).items()} | {"_url": r.headers["location"]}


def provider_answer(asked: dict[str, str]) -> dict[str, str]:
    r = httpx.get(asked["_url"], follow_redirects=False)
    assert r.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(r.headers["location"]).query).items()}


def test_no_development_sign_in_with_a_provider(console: TestClient) -> None:
    page = console.get("/signin")
    assert "/signin/oidc" in page.text and "persona" not in page.text
    assert console.post("/signin/dev", data={"persona": "bg"}).status_code == 404


def test_code_flow_with_pkce_signs_in(console: TestClient, provider: Provider) -> None:
    asked = start(console)
    assert asked["response_type"] == "code" and asked["client_id"] == CLIENT_ID
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert (
        asked["redirect_uri"] == "http://testserver/signin/callback"
        and asked["state"]
        and asked["nonce"]
    )
    back = provider_answer(asked)
    r = console.get("/signin/callback", params=back)
    assert r.status_code == 303 and r.headers["location"] == "/board"
    assert provider.exchanges[-1][
        "code_verifier"
    ]  # the verifier went to the token endpoint, not the browser
    assert provider.exchanges[-1]["code_verifier"] not in asked["_url"]
    page = console.get("/reports")
    assert page.status_code == 200 and "Vi Đức Thắng" in page.text and "Công an" in page.text


def test_forged_state_is_refused(console: TestClient, provider: Provider) -> None:
    back = provider_answer(start(console))
    r = console.get("/signin/callback", params={"code": back["code"], "state": "forged"})
    assert r.headers["location"] == "/signin?error=oidc"
    assert console.get("/reports").status_code == 303  # not signed in
    assert provider.exchanges == []  # the code was never exchanged


def test_callback_of_another_flow_is_refused(console: TestClient, provider: Provider) -> None:
    first = start(console)
    start(
        console
    )  # a second sign-in started: the browser now holds the second flow's state and verifier
    back = provider_answer(first)
    r = console.get("/signin/callback", params=back)
    assert r.headers["location"] == "/signin?error=oidc"


def test_wrong_nonce_is_refused(console: TestClient, provider: Provider) -> None:
    provider.wrong_nonce = True
    back = provider_answer(start(console))
    assert console.get("/signin/callback", params=back).headers["location"] == "/signin?error=oidc"
    assert console.get("/reports").status_code == 303


def test_refused_code_exchange_is_refused(console: TestClient, provider: Provider) -> None:
    asked = start(console)
    back = provider_answer(asked)
    provider.codes.clear()  # the provider no longer knows the code (used, or expired)
    assert console.get("/signin/callback", params=back).headers["location"] == "/signin?error=oidc"
