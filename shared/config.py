"""All configuration in one place: `NRM_*` environment variables, validated at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICE_NAMES: tuple[str, ...] = ("intake", "verification", "support", "oversight")


class ConfigError(Exception):
    """Raised with one readable line per bad setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default=Path(".nrm"), description="embedded PostgreSQL, Temporal SQLite, keys"
    )
    database_url: str | None = Field(
        default=None, description="external PostgreSQL; unset = embedded"
    )
    db_pool_min: int = Field(default=1, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=500)

    temporal_address: str | None = Field(default=None, description="external Temporal host:port")
    temporal_namespace: str = Field(default="default", min_length=1)
    temporal_port: int = Field(default=7233, ge=1024, le=65535)
    temporal_ui_port: int = Field(default=8233, ge=1024, le=65535)

    host: str = "127.0.0.1"
    intake_port: int = Field(default=8101, ge=1024, le=65535)
    verification_port: int = Field(default=8102, ge=1024, le=65535)
    support_port: int = Field(default=8103, ge=1024, le=65535)
    oversight_port: int = Field(default=8104, ge=1024, le=65535)
    codec_port: int = Field(default=8105, ge=1024, le=65535)
    console_port: int = Field(
        default=8100, ge=1024, le=65535, description="the web console (services/console)"
    )
    metrics_port: int = Field(
        default=9100,
        ge=1024,
        le=65530,
        description="Temporal SDK metrics: workflow worker here, the four services +1..+4",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="OTLP/HTTP collector for traces (<it>/v1/traces); unset = no tracing",
    )
    notifications_handover: bool = Field(
        default=True,
        description="oversight hands every queued notification to the notifications service (a "
        "delivery workflow per notification); off only in tests that run no notifications worker",
    )

    keyring_file: Path | None = Field(
        default=None, description="JSON key ring; default <data_dir>/keyring.json"
    )
    jwt_issuer: str = "nrm-dev"
    jwt_audience: str = "nrm"
    oidc_jwks_url: str | None = Field(
        default=None, description="production: verify tokens via this JWKS"
    )
    token_ttl_minutes: int = Field(default=480, ge=1, le=7 * 24 * 60)

    policy_file: Path = Field(default=REPO_ROOT / "shared" / "policy.yaml")
    retention_days_after_closure: int = Field(default=5 * 365, ge=30)
    idempotency_keep_days: int = Field(
        default=30, ge=1, le=3650, description="applied Idempotency-Keys are forgotten after this"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_body_bytes: int = Field(default=2_000_000, ge=1024)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("postgresql://", "postgres://")):
            raise ValueError(
                "must start with postgresql:// (for example postgresql://user:pw@host:5432/nrm)"
            )
        return v

    @field_validator("temporal_address")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        host, sep, port = v.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port, for example temporal.example.org:7233")
        return v

    @model_validator(mode="after")
    def _distinct_ports(self) -> Settings:
        # Name the NRM_ variables involved: a model-level error has no field location of its own.
        names = [
            "temporal_port",
            "temporal_ui_port",
            *(f"{n}_port" for n in SERVICE_NAMES),
            "codec_port",
            "console_port",
        ]
        by_port: dict[int, list[str]] = {}
        for name in names:
            by_port.setdefault(getattr(self, name), []).append(f"NRM_{name.upper()}")
        problems = [
            f"{' and '.join(clash)} share port {port}; each port must be distinct"
            for port, clash in by_port.items()
            if len(clash) > 1
        ]
        if self.db_pool_min > self.db_pool_max:
            problems.append(
                f"NRM_DB_POOL_MIN ({self.db_pool_min}) must not exceed NRM_DB_POOL_MAX ({self.db_pool_max})"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def service_ports(self) -> dict[str, int]:
        return {name: getattr(self, f"{name}_port") for name in SERVICE_NAMES}

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def embedded_temporal(self) -> bool:
        return self.temporal_address is None

    @property
    def resolved_temporal_address(self) -> str:
        return self.temporal_address or f"127.0.0.1:{self.temporal_port}"

    @property
    def resolved_keyring_file(self) -> Path:
        return self.keyring_file or (self.data_dir / "keyring.json")

    @property
    def state_file(self) -> Path:
        """Where `nrm up` writes the resolved URLs so every child process and `nrm status` agree."""
        return self.data_dir / "state.json"


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "settings"
        env = f"NRM_{field.upper()}" if err["loc"] else "settings"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{env}: {msg}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
