"""Sign-in, the session cookie and CSRF.

The session is one cookie (HttpOnly, SameSite=Lax, Secure unless the console is served over plain http
for development) sealed with the key ring's active data key (AES-256-GCM, bound to its purpose): the
browser can neither read the bearer token inside nor change it. Every session, signed in or not, holds a
random CSRF token that every form posts back.

Two ways in:
- development (no NRM_OIDC_JWKS_URL: the APIs accept the dev issuer): a persona (role, agency, province)
  for which a token is minted with `shared.auth.mint_token` and the key ring, as `nrm token` does;
- production: the OpenID Connect authorization-code flow with PKCE (S256) and state + nonce against the
  `NRM_OIDC_*` provider; the provider's access token is the bearer token the APIs verify."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
from fastapi import Request, Response
from pydantic import BaseModel, Field

from services.console.settings import ConsoleConfig
from shared.auth import AuthError, Principal, TokenVerifier, mint_token
from shared.crypto import CryptoError, KeyRing
from shared.domain import AgencyRole, Role

SESSION_COOKIE = "nrm_session"
LANG_COOKIE = "nrm_lang"
OIDC_COOKIE = "nrm_oidc"
SESSION_CONTEXT = b"nrm-console-session"
OIDC_CONTEXT = b"nrm-console-oidc"
OIDC_FLOW_SECONDS = 600


class Session(BaseModel):
    csrf: str = Field(default_factory=lambda: secrets.token_urlsafe(24))
    token: str | None = None
    expires_at: float = 0.0
    user_id: str | None = None
    display_name: str = ""
    roles: list[str] = Field(default_factory=list)
    agency: str | None = None
    province: str | None = None
    via: str | None = None  # "dev" or "oidc"
    id_token: str | None = None

    @property
    def signed_in(self) -> bool:
        return bool(self.token) and self.expires_at > time.time()

    def has(self, role: str) -> bool:
        return role in self.roles or "admin" in self.roles

    @property
    def home(self) -> str:
        if self.has("caseworker"):
            return "/inbox"
        if self.has("supervisor"):
            return "/board"
        return "/audit"


def seal(ring: KeyRing, payload: dict[str, Any], context: bytes) -> str:
    kid, blob = ring.encrypt_bytes(json.dumps(payload, separators=(",", ":")).encode(), context)
    return f"{kid}.{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"


def unseal(ring: KeyRing, value: str | None, context: bytes) -> dict[str, Any] | None:
    if not value or "." not in value:
        return None
    kid, _, data = value.partition(".")
    try:
        blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        out = json.loads(ring.decrypt_bytes(kid, blob, context))
    except (CryptoError, ValueError):
        return None
    return out if isinstance(out, dict) else None


@dataclass
class Sessions:
    config: ConsoleConfig
    ring: KeyRing
    verifier: TokenVerifier

    def load(self, request: Request) -> Session:
        raw = unseal(self.ring, request.cookies.get(SESSION_COOKIE), SESSION_CONTEXT)
        if raw is None:
            return Session()
        try:
            session = Session.model_validate(raw)
        except ValueError:
            return Session()
        if session.token and not session.signed_in:  # expired: keep only the CSRF token
            return Session(csrf=session.csrf)
        return session

    def save(self, response: Response, session: Session) -> None:
        response.set_cookie(
            SESSION_COOKIE,
            seal(self.ring, session.model_dump(), SESSION_CONTEXT),
            max_age=self.config.own.console_session_hours * 3600,
            httponly=True,
            secure=self.config.cookie_secure,
            samesite="lax",
            path="/",
        )

    def clear(self, response: Response) -> None:
        response.delete_cookie(
            SESSION_COOKIE,
            path="/",
            httponly=True,
            secure=self.config.cookie_secure,
            samesite="lax",
        )

    @staticmethod
    def csrf_ok(session: Session, sent: str | None) -> bool:
        return bool(sent) and hmac.compare_digest(session.csrf, str(sent))

    async def signed_in_as(
        self, session: Session, token: str, via: str, id_token: str | None = None
    ) -> Session:
        """A fresh session (new CSRF token: no fixation) for a bearer token verified as the APIs verify it."""
        principal = await self.verifier.verify_async(token)
        claims = jwt.decode(token, options={"verify_signature": False})  # verified just above
        return Session(
            token=token,
            expires_at=float(claims["exp"]),
            user_id=principal.user_id,
            display_name=principal.display_name,
            roles=sorted(r.value for r in principal.roles),
            agency=principal.agency.value,
            province=principal.province,
            via=via,
            id_token=id_token,
        )

    # ---- development personas -------------------------------------------------------------------
    def dev_token(
        self, role: Role, agency: AgencyRole, province: str, user_id: str, name: str
    ) -> str:
        return mint_token(
            self.ring,
            user_id=user_id,
            display_name=name,
            roles=[role],
            agency=agency,
            province=province,
            issuer=self.config.shared.jwt_issuer,
            audience=self.config.shared.jwt_audience,
            ttl=timedelta(hours=self.config.own.console_session_hours),
        )

    # ---- OpenID Connect, authorization code + PKCE -----------------------------------------------
    @property
    def redirect_uri(self) -> str:
        return f"{self.config.public_url}/signin/callback"

    def oidc_start(self, response_factory: Any) -> Response:
        """Redirect to the provider with a fresh state, nonce and PKCE verifier kept in a sealed cookie."""
        o = self.config.own
        verifier = secrets.token_urlsafe(48)
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
            .decode()
            .rstrip("=")
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": o.oidc_client_id,
                "redirect_uri": self.redirect_uri,
                "scope": o.oidc_scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        response: Response = response_factory(f"{o.oidc_authorization_url}?{query}")
        response.set_cookie(
            OIDC_COOKIE,
            seal(
                self.ring,
                {"state": state, "nonce": nonce, "verifier": verifier, "at": time.time()},
                OIDC_CONTEXT,
            ),
            max_age=OIDC_FLOW_SECONDS,
            httponly=True,
            secure=self.config.cookie_secure,
            samesite="lax",
            path="/signin",
        )
        return response

    async def oidc_finish(
        self, request: Request, http: httpx.AsyncClient
    ) -> tuple[str, str | None]:
        """Check the callback's state against the sealed cookie, exchange the code with the PKCE verifier,
        check the ID token's nonce. Returns (access token, id token). Raises AuthError with the reason."""
        flow = unseal(self.ring, request.cookies.get(OIDC_COOKIE), OIDC_CONTEXT)
        if flow is None or time.time() - float(flow.get("at", 0)) > OIDC_FLOW_SECONDS:
            raise AuthError("sign-in expired or started in another browser")
        if request.query_params.get("error"):
            raise AuthError(f"the identity provider refused: {request.query_params.get('error')}")
        state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
        if not code or not hmac.compare_digest(str(flow["state"]), state):
            raise AuthError("state mismatch")
        o = self.config.own
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": o.oidc_client_id or "",
            "code_verifier": str(flow["verifier"]),
        }
        if o.oidc_client_secret:
            form["client_secret"] = o.oidc_client_secret
        try:
            r = await http.post(
                str(o.oidc_token_url), data=form, headers={"Accept": "application/json"}, timeout=15
            )
        except httpx.HTTPError as exc:
            raise AuthError(f"token endpoint unreachable: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise AuthError(f"token endpoint answered {r.status_code}")
        body = r.json()
        access, id_token = body.get("access_token"), body.get("id_token")
        if not access:
            raise AuthError("no access token in the token response")
        if id_token:
            claims = await asyncio.to_thread(self._id_token_claims, str(id_token))
            if not hmac.compare_digest(str(claims.get("nonce", "")), str(flow["nonce"])):
                raise AuthError("nonce mismatch")
        return str(access), id_token

    def _id_token_claims(self, id_token: str) -> dict[str, Any]:
        """The ID token verified against the provider's JWKS (a blocking fetch: run in a thread)."""
        try:
            key = (
                jwt.PyJWKClient(str(self.config.shared.oidc_jwks_url))
                .get_signing_key_from_jwt(id_token)
                .key
            )
            return dict(
                jwt.decode(
                    id_token,
                    key,
                    algorithms=["RS256", "ES256", "EdDSA"],
                    audience=self.config.own.oidc_client_id,
                    leeway=60,
                )
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"ID token invalid: {exc}") from None


def principal_of(session: Session) -> Principal | None:
    if not session.signed_in or not session.user_id or not session.agency or not session.province:
        return None
    return Principal(
        user_id=session.user_id,
        display_name=session.display_name,
        roles=frozenset(Role(r) for r in session.roles),
        agency=AgencyRole(session.agency),
        province=session.province,
    )
