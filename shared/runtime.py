"""What a running process holds: settings, key ring, database pool, Temporal client.

One instance per process, shared by its API and its activity worker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

import asyncpg
import structlog
from temporalio.client import Client

from shared.config import Settings
from shared.crypto import KeyRing, load_keyring
from shared.db import create_pool, resolve_database_url
from shared.temporal import connect

log = structlog.get_logger("runtime")


class RuntimeExtras(TypedDict, total=False):
    """Every key a process may put on its runtime, typed (mypy checks names and types of every use).

    Overrides (tests run several services and workers on per-test task queues and clocks; a production
    process sets none of them):"""

    workflow_task_queue: str  # intake starts case workflows here (default nrm-workflows)
    oversight_task_queue: str  # case workflows send audit activities here (default nrm-oversight)
    notifications_task_queue: (
        str  # oversight hands notifications over here (default nrm-notifications)
    )
    update_rpc_timeout: timedelta  # how long update_case waits for a workflow's answer
    clock: Callable[
        [], datetime
    ]  # oversight's "now" (periods, stuck ages) on a time-skipping server
    reconcile_interval: (
        float | None
    )  # intake: seconds between workflow-start reconciliations (None = off)
    reconcile_older_than: float  # intake: a committed case unstarted for this long is started
    bulk_resume_interval: float | None  # intake: seconds between resumptions of interrupted batches
    bulk_lease_seconds: float  # intake: how long a batch worker's lease lasts
    # state a service keeps for the life of its process (the floor cannot name service types: `object`,
    # narrowed by the one module that owns each entry)
    notification_settings: object  # services.notifications.settings.NotificationSettings
    started_marks: object  # services.intake.opening.StartedMarks
    bulk_tasks: dict[str, asyncio.Task[None]]  # intake: the running batch per batch id
    bulk_wakeups: dict[str, asyncio.Event]  # intake: a batch's wake-up signal


@dataclass
class Runtime:
    settings: Settings
    ring: KeyRing
    pool: asyncpg.Pool
    temporal: Client
    extras: RuntimeExtras = field(default_factory=lambda: RuntimeExtras())

    @classmethod
    async def open(
        cls,
        settings: Settings,
        *,
        ring: KeyRing | None = None,
        database_url: str | None = None,
        temporal: Client | None = None,
    ) -> Runtime:
        ring = ring or load_keyring(settings.resolved_keyring_file)
        pool = await create_pool(
            database_url or resolve_database_url(settings),
            settings.db_pool_min,
            settings.db_pool_max,
        )
        try:
            client = temporal or await connect(
                settings.resolved_temporal_address, settings.temporal_namespace, ring
            )
        except Exception:
            await pool.close()
            raise
        return cls(settings, ring, pool, client)

    async def close(self) -> None:
        await self.pool.close()


async def open_when_reachable(
    settings: Settings, *, wait: float = 60.0, ring: KeyRing | None = None
) -> Runtime:
    """Runtime.open, tried again while PostgreSQL or Temporal is away: a process (re)started while a
    dependency restarts waits for it instead of exiting at once and being counted as a crash. After `wait`
    seconds the last error is raised (the process exits and its supervisor decides)."""
    ring = ring or load_keyring(settings.resolved_keyring_file)
    deadline = time.monotonic() + wait
    delay = 0.25
    while True:
        try:
            return await Runtime.open(settings, ring=ring)
        except (
            Exception
        ) as exc:  # asyncpg and the Temporal client raise many kinds for "not reachable"
            if time.monotonic() + delay > deadline:
                raise
            log.warning("dependency_unavailable", error=type(exc).__name__, retry_in_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
