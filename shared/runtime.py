"""What a running process holds: settings, key ring, database pool, Temporal client.

One instance per process, shared by its API and its activity worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
from temporalio.client import Client

from shared.config import Settings
from shared.crypto import KeyRing, load_keyring
from shared.db import create_pool, resolve_database_url
from shared.temporal import connect


@dataclass
class Runtime:
    settings: Settings
    ring: KeyRing
    pool: asyncpg.Pool
    temporal: Client
    extras: dict[str, Any] = field(default_factory=dict)

    @classmethod
    async def open(cls, settings: Settings, *, ring: KeyRing | None = None, database_url: str | None = None,
                   temporal: Client | None = None) -> Runtime:
        ring = ring or load_keyring(settings.resolved_keyring_file)
        pool = await create_pool(database_url or resolve_database_url(settings),
                                 settings.db_pool_min, settings.db_pool_max)
        try:
            client = temporal or await connect(settings.resolved_temporal_address, settings.temporal_namespace, ring)
        except Exception:
            await pool.close()
            raise
        return cls(settings, ring, pool, client)

    async def close(self) -> None:
        await self.pool.close()
