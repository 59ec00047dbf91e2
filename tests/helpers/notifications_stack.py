"""Workers for the notification tests: the case workflow, oversight's audit activity with the hand-over on
(runtime.extras["notifications_task_queue"]) and the notifications worker, all on per-test task queues."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from temporalio.client import Client
from temporalio.worker import Worker

from services.notifications.activities import build_activities
from services.notifications.delivery_workflow import (
    DeliveryWorkflow,
    DigestWorkflow,
    NotificationWorkflow,
)
from services.notifications.directory import Directory, sample_directory
from services.notifications.settings import NotificationSettings
from services.oversight.activities import build_activities as build_oversight_activities
from shared.config import Settings
from shared.crypto import KeyRing
from shared.runtime import Runtime
from tests.helpers.mail_sms_servers import (
    SMTP_PASSWORD,
    SMTP_USER,
    TWILIO_SID,
    TWILIO_TOKEN,
    SmtpServer,
    TwilioServer,
)
from tests.helpers.workflow_harness import STARTED, Harness, _settle
from workflows.worker import build_worker


def notification_settings(
    smtp: SmtpServer | None = None, sms: TwilioServer | None = None, **over: object
) -> NotificationSettings:
    values: dict[str, object] = {
        "notify_digest_minutes": 10,
        "notify_max_attempts": 3,
        "notify_retry_initial_seconds": 1,
        "notify_retry_max_seconds": 4,
        "console_url": "https://nrm.test",
        "smtp_host": None,
    }
    if smtp is not None:
        values |= {
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "smtp_username": SMTP_USER,
            "smtp_password": SMTP_PASSWORD,
            "smtp_starttls": True,
            "smtp_ca_file": Path(smtp.cert),
        }
    if sms is not None:
        values |= {
            "sms_provider": "twilio",
            "twilio_base_url": sms.url,
            "twilio_account_sid": TWILIO_SID,
            "twilio_auth_token": TWILIO_TOKEN,
            "twilio_from": "+15005550006",
        }
    return NotificationSettings(**(values | over))  # type: ignore[arg-type]


def directory_with_users(users: dict[str, dict[str, str]]) -> Directory:
    data = sample_directory()
    data["users"] = users
    return Directory(data)


@asynccontextmanager
async def notification_workers(
    client: Client,
    pool: asyncpg.Pool,
    ring: KeyRing,
    task_queue: str,
    settings: NotificationSettings,
    directory: Directory | None = None,
) -> AsyncIterator[Harness]:
    nq = f"{task_queue}-notifications"
    oq = f"{task_queue}-oversight"
    oversight_rt = Runtime(Settings(), ring, pool, client, extras={"notifications_task_queue": nq})
    notif_rt = Runtime(
        Settings(),
        ring,
        pool,
        client,
        extras={"notification_settings": settings, "notifications_task_queue": nq},
    )
    oversight = Worker(client, task_queue=oq, activities=build_oversight_activities(oversight_rt))
    notifications = Worker(
        client,
        task_queue=nq,
        workflows=[NotificationWorkflow, DigestWorkflow, DeliveryWorkflow],
        activities=build_activities(notif_rt, settings, directory),
        max_concurrent_activities=20,
    )
    harness = Harness(client, task_queue, pool, oq)
    harness_extras = {"runtime": notif_rt, "queue": nq}
    harness.__dict__["notif"] = harness_extras
    first = len(STARTED.ids)
    async with build_worker(client, task_queue), oversight, notifications:
        try:
            yield harness
        finally:
            for wid in dict.fromkeys([*harness.opened, *STARTED.ids[first:]]):
                await _settle(client, wid, terminate=True)
