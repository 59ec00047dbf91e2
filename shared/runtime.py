"""What a running process holds: settings, key ring, database pool, Temporal client.

One instance per process, shared by its API and its activity worker."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from temporalio.client import Client

from shared.config import Settings
from shared.crypto import KeyRing, load_keyring
from shared.db import create_pool, resolve_database_url
from shared.temporal import connect

log = structlog.get_logger("runtime")


@dataclass
class Runtime:
    settings: Settings
    ring: KeyRing
    pool: asyncpg.Pool
    temporal: Client
    extras: dict[str, Any] = field(default_factory=dict)

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
