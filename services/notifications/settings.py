"""The notifications service's own settings (`NRM_NOTIFY_*`, `NRM_SMTP_*`, `NRM_SMS_*`, `NRM_TWILIO_*`),
beside the shared ones in shared/config.py. See docs/operations.md § Notifications."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.config import REPO_ROOT
from shared.notification_handover import TASK_QUEUE
from shared.runtime import Runtime

__all__ = ["TASK_QUEUE", "NotificationSettings"]


class NotificationSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="NRM_", extra="ignore", frozen=True)

    notifications_port: int = Field(
        default=8106, ge=1024, le=65535, description="dead letters, inbox API"
    )
    console_url: str = Field(
        default="http://127.0.0.1:8100", description="links in messages: <it>/cases/<id>"
    )
    notify_directory_file: Path | None = Field(
        default=None,
        description="agency directory (YAML); unset = the generated development sample",
    )
    notify_digest_minutes: float = Field(
        default=10,
        ge=0,
        le=24 * 60,
        description="a group contact's messages within this window form one digest",
    )
    notify_max_attempts: int = Field(default=8, ge=1, le=100)
    notify_retry_initial_seconds: float = Field(default=5, gt=0)
    notify_retry_max_seconds: float = Field(default=900, gt=0)

    smtp_host: str | None = Field(
        default=None, description="unset: no e-mail (nrm up points it at its mail sink)"
    )
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = True
    smtp_ca_file: Path | None = Field(
        default=None, description="PEM bundle trusted for STARTTLS; unset = system CAs"
    )
    smtp_from: str = "NRM <no-reply@nrm.example>"
    smtp_timeout_seconds: float = Field(default=30, gt=0)
    mail_sink_port: int = Field(
        default=8025, ge=1024, le=65535, description="nrm up's development SMTP sink"
    )

    sms_provider: Literal["none", "twilio"] = "none"
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_from: str | None = Field(
        default=None, description="sender number (E.164) or alphanumeric id"
    )
    twilio_messaging_service_sid: str | None = None
    sms_timeout_seconds: float = Field(default=15, gt=0)

    @property
    def directory_file(self) -> Path | None:
        return self.notify_directory_file


DEFAULT_POLICY_DIR = REPO_ROOT / "services" / "notifications"


def settings_of(runtime: Runtime) -> NotificationSettings:
    """The settings this process put on its runtime (`extras["notification_settings"]`), else the
    environment's."""
    own = runtime.extras.get("notification_settings")
    return own if isinstance(own, NotificationSettings) else NotificationSettings()
