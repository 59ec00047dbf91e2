"""Development SMTP sink (what `nrm up` runs when no NRM_SMTP_HOST is configured): accepts every message on
127.0.0.1:NRM_MAIL_SINK_PORT (default 8025) and writes it to <NRM_DATA_DIR>/mail/<time>-<id>.eml, so a new
user sees what NRM would have e-mailed. Never for production: no TLS, no auth, nothing is forwarded.

`python -m services.notifications.sink`"""

from __future__ import annotations

import signal
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from services.notifications.settings import NotificationSettings
from shared.config import get_settings


class EmlWriter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        name = f"{datetime.now(UTC):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.folder / f".{name}"
        tmp.write_bytes(bytes(envelope.original_content or envelope.content))
        tmp.rename(self.folder / name)  # a reader never sees half a message
        return "250 2.0.0 kept in the development mail folder"


def main() -> int:
    folder = get_settings().data_dir / "mail"
    port = NotificationSettings().mail_sink_port
    controller = Controller(EmlWriter(folder), hostname="127.0.0.1", port=port)
    controller.start()
    print(f"mail sink on 127.0.0.1:{port}, messages in {folder}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    controller.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
