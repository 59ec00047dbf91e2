"""What `nrm up` starts for notifications (nrm/cli.py adds these parts): the notifications process and,
when no SMTP server is configured (NRM_SMTP_HOST unset), the development mail sink it then sends to."""

from __future__ import annotations

import functools
import sys
import urllib.request
from pathlib import Path

from nrm.embedded import port_open
from nrm.supervisor import ProcessPart
from services.notifications.settings import NotificationSettings
from shared.config import Settings


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (our own http://127.0.0.1 URL)
            return bool(r.status == 200)
    except OSError:
        return False


def notification_parts(settings: Settings, env: dict[str, str], logs: Path) -> list[ProcessPart]:
    own = NotificationSettings()
    env = dict(env)
    parts = []
    if not own.smtp_host:
        env |= {
            "NRM_SMTP_HOST": "127.0.0.1",
            "NRM_SMTP_PORT": str(own.mail_sink_port),
            "NRM_SMTP_STARTTLS": "false",
        }
        parts.append(
            ProcessPart(
                "mail-sink",
                command=[sys.executable, "-m", "services.notifications.sink"],
                env=env,
                log_file=logs / "mail-sink.log",
                probe=functools.partial(port_open, "127.0.0.1", own.mail_sink_port),
            )
        )
    ready = f"http://{settings.host}:{own.notifications_port}/readyz"
    parts.append(
        ProcessPart(
            "notifications",
            command=[sys.executable, "-m", "services.notifications"],
            env=env,
            log_file=logs / "notifications.log",
            probe=functools.partial(_ok, ready),
        )
    )
    return parts
