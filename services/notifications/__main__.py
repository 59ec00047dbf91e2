"""The notifications process: its API (inbox, preferences, dead letters) and one worker on the
`nrm-notifications` task queue running the delivery workflows and their activities.

`python -m services.notifications` (what `nrm up` starts; port NRM_NOTIFICATIONS_PORT, default 8106)."""

from __future__ import annotations

import asyncio
import signal
import sys

import structlog
import uvicorn
from fastapi import FastAPI
from temporalio.worker import Worker

from services.notifications import api
from services.notifications.activities import build_activities
from services.notifications.delivery_workflow import (
    DeliveryWorkflow,
    DigestWorkflow,
    NotificationWorkflow,
)
from services.notifications.settings import TASK_QUEUE, NotificationSettings
from shared.api import create_app
from shared.config import ConfigError, Settings, get_settings
from shared.logging import configure_logging
from shared.runtime import Runtime, open_when_reachable

log = structlog.get_logger("notifications")
WORKFLOWS = [NotificationWorkflow, DigestWorkflow, DeliveryWorkflow]


def build_worker(
    runtime: Runtime, settings: NotificationSettings, task_queue: str = TASK_QUEUE
) -> Worker:
    return Worker(
        runtime.temporal,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=build_activities(runtime, settings),
        max_concurrent_activities=20,
    )


def build_app(settings: Settings, own: NotificationSettings) -> FastAPI:
    async def runtime_factory() -> Runtime:
        runtime = await open_when_reachable(settings)
        runtime.extras["notification_settings"] = own
        return runtime

    async def start(app: FastAPI) -> None:
        worker = build_worker(app.state.runtime, own)
        app.state.worker = worker
        task = asyncio.create_task(worker.run(), name="notifications-worker")

        def ended(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and not getattr(app.state, "stopping", False):
                app.state.fatal = True
                log.error("notifications_worker_failed")
                stop = getattr(app.state, "stop_server", None)
                if stop is not None:
                    stop()

        task.add_done_callback(ended)

    async def stop(app: FastAPI) -> None:
        app.state.stopping = True
        await app.state.worker.shutdown()

    return create_app(
        "notifications",
        [api.router],
        description=api.DESCRIPTION,
        runtime_factory=runtime_factory,
        on_start=start,
        on_stop=stop,
        max_body_bytes=settings.max_body_bytes,
    )


def main() -> int:
    try:
        settings = get_settings()
        own = NotificationSettings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging("notifications", settings.log_level)
    app = build_app(settings, own)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=own.notifications_port,
            log_config=None,
            access_log=False,
            lifespan="on",
        )
    )
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.state.stop_server)
    loop.run_until_complete(server.serve())
    if not server.started:
        return 3
    return 1 if getattr(app.state, "fatal", False) else 0


if __name__ == "__main__":
    raise SystemExit(main())
