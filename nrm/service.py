"""One service process: its FastAPI app and its activity worker, in one event loop.

`python -m nrm.service intake` (what `nrm up` starts for each service)."""

from __future__ import annotations

import asyncio
import importlib
import signal
import sys
from collections.abc import Callable
from typing import Any

import structlog
import uvicorn
from fastapi import APIRouter, FastAPI
from temporalio.worker import Worker

from shared.api import create_app
from shared.config import SERVICE_NAMES, ConfigError, Settings, get_settings
from shared.logging import configure_logging
from shared.metrics import init_sdk_telemetry
from shared.runtime import Runtime, open_when_reachable
from shared.tracing import init_tracing, shutdown_tracing

log = structlog.get_logger("service")


def build_app(
    service: str, settings: Settings, runtime_factory: Callable[[], Any] | None = None
) -> FastAPI:
    """The service's app with its activity worker running inside the app's lifespan."""
    api = importlib.import_module(f"services.{service}.api")
    activities = importlib.import_module(f"services.{service}.activities")
    router: APIRouter = api.router

    async def start_worker(app: FastAPI) -> None:
        runtime: Runtime = app.state.runtime
        worker = Worker(
            runtime.temporal,
            task_queue=activities.TASK_QUEUE,
            activities=activities.build_activities(runtime),
            max_concurrent_activities=50,
        )
        task = asyncio.create_task(worker.run(), name=f"{service}-activity-worker")
        app.state.worker_task = task
        app.state.worker = worker
        task.add_done_callback(lambda t: _worker_ended(app, t))

    async def stop_worker(app: FastAPI) -> None:
        app.state.stopping = True
        worker: Worker | None = getattr(app.state, "worker", None)
        if worker is not None:
            await worker.shutdown()

    async def default_runtime() -> Runtime:
        return await open_when_reachable(settings)

    return create_app(
        service,
        [router],
        description=api.DESCRIPTION,
        runtime_factory=runtime_factory or default_runtime,
        on_start=start_worker,
        on_stop=stop_worker,
        max_body_bytes=settings.max_body_bytes,
    )


def _worker_ended(app: FastAPI, task: asyncio.Task[None]) -> None:
    """The activity worker stopped while the API serves (a fatal worker error, not a shutdown): without it
    this service's activities never run, so the process exits non-zero and its supervisor restarts it."""
    if task.cancelled() or getattr(app.state, "stopping", False):
        return
    app.state.fatal = task.exception() or RuntimeError("activity worker returned")
    log.error("activity_worker_failed", error=type(app.state.fatal).__name__)
    stop = getattr(app.state, "stop_server", None)
    if stop is not None:
        stop()


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1 or args[0] not in SERVICE_NAMES:
        print(f"usage: python -m nrm.service {{{','.join(SERVICE_NAMES)}}}", file=sys.stderr)
        return 2
    service = args[0]
    try:
        settings = get_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(service, settings.log_level)
    init_sdk_telemetry(
        service, settings
    )  # before any Temporal client: the SDK's metrics on their own port
    init_tracing(
        service, settings
    )  # before the app and the client: spans over OTLP if NRM_OTLP_ENDPOINT is set
    app = build_app(service, settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.service_ports[service],
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    app.state.stop_server = lambda: setattr(server, "should_exit", True)
    loop = asyncio.new_event_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, app.state.stop_server)
    try:
        loop.run_until_complete(server.serve())
    finally:
        shutdown_tracing()  # the last spans (a forked part exits without atexit)
    if not server.started:  # the lifespan failed (a dependency stayed away) or the port was taken
        log.error("service_start_failed", service=service)
        return 3
    return 1 if getattr(app.state, "fatal", None) is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
