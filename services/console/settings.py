"""The console's own settings (`NRM_CONSOLE_*`, and the OpenID Connect client's `NRM_OIDC_*`), beside the
shared ones (ports, key ring, `NRM_OIDC_JWKS_URL`, `NRM_JWT_ISSUER`/`NRM_JWT_AUDIENCE`) in shared/config.py."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import Settings


class ConsoleSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_", extra="ignore", frozen=True)

    console_public_url: str | None = Field(
        default=None,
        description="the console's address as users reach it (OIDC redirect URI base); default "
        "http://<NRM_HOST>:<NRM_CONSOLE_PORT>",
    )
    console_cookie_secure: bool | None = Field(
        default=None,
        description="Secure flag on the session cookie; default: on unless the public URL is "
        "plain http (development on 127.0.0.1)",
    )
    console_session_hours: int = Field(default=8, ge=1, le=24)
    notifications_port: int = Field(
        default=8106,
        ge=1024,
        le=65535,
        description="the notifications service (the bell's inbox), the same NRM_NOTIFICATIONS_PORT it "
        "listens on",
    )
    # OpenID Connect authorization-code flow with PKCE (production: NRM_OIDC_JWKS_URL set)
    oidc_authorization_url: str | None = None
    oidc_token_url: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(
        default=None, description="confidential clients only; PKCE always"
    )
    oidc_scope: str = "openid profile"
    oidc_end_session_url: str | None = None


class ConsoleConfig:
    """Both settings objects, and what follows from them."""

    def __init__(self, shared: Settings, own: ConsoleSettings) -> None:
        self.shared = shared
        self.own = own
        self.public_url = (
            own.console_public_url or f"http://{shared.host}:{shared.console_port}"
        ).rstrip("/")
        self.cookie_secure = (
            own.console_cookie_secure
            if own.console_cookie_secure is not None
            else self.public_url.startswith("https://")
        )

    @property
    def dev_issuer(self) -> bool:
        """The development sign-in (persona picker, tokens minted with the key ring) exists only while the
        APIs accept dev-issued tokens: no NRM_OIDC_JWKS_URL."""
        return self.shared.oidc_jwks_url is None

    @property
    def oidc_ready(self) -> bool:
        o = self.own
        return bool(
            self.shared.oidc_jwks_url
            and o.oidc_authorization_url
            and o.oidc_token_url
            and o.oidc_client_id
        )

    def api_url(self, service: str) -> str:
        if service == "notifications":
            return f"http://{self.shared.host}:{self.own.notifications_port}"
        return f"http://{self.shared.host}:{self.shared.service_ports[service]}"
