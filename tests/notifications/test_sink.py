"""nrm up's development mail sink keeps what NRM sends as .eml files (plain SMTP, no TLS, no auth)."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

from aiosmtpd.controller import Controller

from services.notifications.channels import EmailChannel, Outgoing
from services.notifications.settings import NotificationSettings
from services.notifications.sink import EmlWriter
from tests.helpers.mail_sms_servers import free_port


async def test_sink_writes_each_message_as_eml(tmp_path: Path) -> None:
    port = free_port()
    controller = Controller(EmlWriter(tmp_path / "mail"), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        channel = EmailChannel(
            NotificationSettings(smtp_host="127.0.0.1", smtp_port=port, smtp_starttls=False)
        )
        ref = await channel.send(
            Outgoing(
                delivery_id="d-1",
                address="supervisor.police.20@nrm.example",
                subject="[NRM] Chuyển cấp trên (do quá hạn) — cấp 1",
                body="Vụ việc: c-1",
                sms="",
                language="vi",
            )
        )
    finally:
        controller.stop()
    assert ref.startswith("smtp:")
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    msg = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"] == "supervisor.police.20@nrm.example" and msg["X-NRM-Delivery-Id"] == "d-1"
    assert "cấp 1" in str(msg["Subject"])
