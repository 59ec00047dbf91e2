"""Bearer JWTs: who the caller is (user, roles, agency role, jurisdiction).

Development: `nrm token` signs with the key ring's Ed25519 key (issuer `NRM_JWT_ISSUER`).
Production: set `NRM_OIDC_JWKS_URL` and tokens are verified against the provider's JWKS instead;
no code changes."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role

DEV_ALGORITHM = "EdDSA"
NATIONAL = "*"  # jurisdiction of national-level users (auditors, national admins)


class Principal(BaseModel):
    """The authenticated caller. Never logged with its display name."""

    model_config = ConfigDict(frozen=True)

    user_id: str = Field(min_length=1, max_length=128)
    display_name: str = Field(default="", max_length=200)
    roles: frozenset[Role]
    agency: AgencyRole
    province: str = Field(
        min_length=1, max_length=8, description="province code, or * for national"
    )
    commune: str | None = Field(default=None, max_length=8)

    @field_validator("roles")
    @classmethod
    def _some_role(cls, v: frozenset[Role]) -> frozenset[Role]:
        if not v:
            raise ValueError("at least one role is required")
        return v

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.admin in self.roles

    @property
    def national(self) -> bool:
        return self.province == NATIONAL

    def covers_province(self, province: str) -> bool:
        return self.national or self.province == province

    def actor(self) -> dict[str, Any]:
        """Non-PII actor facts for the workflow and the audit log."""
        return {
            "user_id": self.user_id,
            "agency": self.agency.value,
            "roles": sorted(r.value for r in self.roles),
            "province": self.province,
        }


def mint_token(
    ring: KeyRing,
    *,
    user_id: str,
    roles: list[Role],
    agency: AgencyRole,
    province: str,
    commune: str | None = None,
    display_name: str = "",
    issuer: str = "nrm-dev",
    audience: str = "nrm",
    ttl: timedelta = timedelta(hours=8),
    now: datetime | None = None,
) -> str:
    issued = now or datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": user_id,
        "name": display_name,
        "roles": [r.value for r in roles],
        "agency": agency.value,
        "province": province,
        "iss": issuer,
        "aud": audience,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": str(uuid.uuid4()),
    }
    if commune:
        claims["commune"] = commune
    return jwt.encode(claims, ring.signing_private_key(), algorithm=DEV_ALGORITHM)


class TokenVerifier:
    """Verifies bearer JWTs. A caller sends the same token with every request until it expires, so a
    verified token is remembered (up to CACHE_SIZE tokens, each until its `exp` and at most CACHE_SECONDS,
    so a key withdrawn from the JWKS stops being honoured within that time); a failure is never cached."""

    CACHE_SIZE = 4096
    CACHE_SECONDS = 300.0
    # Clock skew allowed on exp, nbf and iat: an identity provider whose clock runs a little ahead issues
    # tokens "from the future" (iat/nbf a few seconds past our now), which without a leeway were 401s.
    # One minute is the usual allowance (Keycloak, Spring, Microsoft.IdentityModel default to 1-5 min).
    LEEWAY_SECONDS = 60.0

    def __init__(
        self,
        ring: KeyRing | None,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        *,
        leeway_seconds: float | None = None,
    ) -> None:
        self._issuer, self._audience = issuer, audience
        self._leeway = self.LEEWAY_SECONDS if leeway_seconds is None else leeway_seconds
        if not 0 <= self._leeway <= 300:
            raise ValueError("leeway_seconds: between 0 and 300")
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True) if jwks_url else None
        self._dev_key = ring.signing_private_key().public_key() if ring and not jwks_url else None
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    def verify(self, token: str) -> Principal:
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None:
            if now < hit[1]:
                self._verified.move_to_end(token)
                return hit[0]
            del self._verified[token]
        principal, exp = self._verify_signed(token)
        self._verified[token] = (principal, min(exp, now + self.CACHE_SECONDS))
        if len(self._verified) > self.CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def verify_async(self, token: str) -> Principal:
        """`verify` for the event loop: a JWKS miss fetches the provider's keys over HTTP (blocking), so an
        unremembered token is checked in a worker thread when a JWKS is configured."""
        hit = self._verified.get(token)
        if self._jwks is None or (hit is not None and time.time() < hit[1]):
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)

    def _verify_signed(self, token: str) -> tuple[Principal, float]:
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
                algorithms = ["RS256", "ES256", "EdDSA"]
            else:
                key, algorithms = self._dev_key, [DEV_ALGORITHM]
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        try:
            principal = Principal(
                user_id=claims["sub"],
                display_name=claims.get("name", ""),
                roles=frozenset(claims.get("roles", [])),
                agency=claims.get("agency"),
                province=claims.get("province"),
                commune=claims.get("commune"),
            )
            return principal, float(claims["exp"])
        except ValidationError as exc:
            fields = ", ".join(str(e["loc"][0]) for e in exc.errors())
            raise AuthError(f"token claims invalid: {fields}") from None


class AuthError(Exception):
    pass


_bearer = HTTPBearer(
    auto_error=False, description="JWT from `nrm token` (dev) or the OIDC provider"
)


# Dependencies are coroutines on purpose: FastAPI runs a plain `def` dependency in a worker thread,
# a thread hop per dependency per request for work that never blocks.
async def current_principal(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    already = getattr(request.state, "principal", None)  # verified by RequestGuardMiddleware
    if isinstance(already, Principal):
        return already
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    verifier: TokenVerifier = request.app.state.token_verifier
    try:
        principal = await verifier.verify_async(credentials.credentials)
    except AuthError as exc:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"}
        ) from None
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: Role) -> Any:
    """Dependency: the caller holds at least one of these roles (admin holds all)."""

    async def check(principal: CurrentPrincipal) -> Principal:
        if not any(principal.has(r) for r in roles):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"requires role {' or '.join(r.value for r in roles)}"
            )
        return principal

    check.required_roles = roles  # type: ignore[attr-defined]  # read by the authorization matrix test
    return Depends(check)
