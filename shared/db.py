"""PostgreSQL pool and the migration runner (plain SQL per service schema)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from shared.config import REPO_ROOT, SERVICE_NAMES, Settings

Conn = (
    asyncpg.Connection | PoolConnectionProxy
)  # what `pool.acquire()` hands out, or a plain connection
MIGRATION_LOCK_ID = 7_310_053  # arbitrary, constant: serialises concurrent `nrm migrate` runs
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    schema: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def resolve_database_url(settings: Settings) -> str:
    """The external URL, or the one `nrm up` recorded for the embedded server."""
    if settings.database_url:
        return settings.database_url
    state = settings.state_file
    if state.exists():
        url = json.loads(state.read_text()).get("database_url")
        if url:
            return str(url)
    raise MigrationError(
        "no database: set NRM_DATABASE_URL, or start the embedded one with `nrm up` "
        f"(looked for {state})"
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, command_timeout=30
    )
    assert pool is not None
    return pool


# The floor's own tables (one access log and one idempotency-key store for every service) live in
# schema `common`, migrated before any service's schema from shared/migrations/.
COMMON_SCHEMA = "common"


def discover_migrations(
    services_dir: Path | None = None, schemas: tuple[str, ...] = (*SERVICE_NAMES, "notifications")
) -> list[Migration]:
    """`shared/migrations/` (schema common, when discovering the real tree) then each service's
    `migrations/NNN_name.sql`, ordered by schema then version."""
    base = services_dir or (REPO_ROOT / "services")
    folders = [(schema, base / schema / "migrations") for schema in schemas]
    if services_dir is None:
        folders.insert(0, (COMMON_SCHEMA, REPO_ROOT / "shared" / "migrations"))
    found: list[Migration] = []
    for schema, folder in folders:
        seen: set[int] = set()
        for path in sorted(folder.glob("*.sql")):
            m = _MIGRATION_NAME.match(path.name)
            if not m:
                raise MigrationError(f"{path}: migration files are named NNN_lower_snake.sql")
            version = int(m.group(1))
            if version in seen:
                raise MigrationError(f"{path}: version {version} appears twice in {schema}")
            seen.add(version)
            found.append(Migration(schema, version, path.stem, path.read_text()))
    return found


async def apply_migrations(
    conn: asyncpg.Connection, migrations: list[Migration]
) -> list[Migration]:
    """Apply what is missing, in order, each in its own transaction, under an advisory lock.

    Re-running is a no-op; an edited migration that was already applied is refused (checksum)."""
    applied: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS public.schema_migrations (
                   schema_name text NOT NULL, version int NOT NULL, name text NOT NULL,
                   checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (schema_name, version))"""
        )
        rows = await conn.fetch(
            "SELECT schema_name, version, checksum FROM public.schema_migrations"
        )
        done = {(r["schema_name"], r["version"]): r["checksum"] for r in rows}
        for mig in migrations:
            key = (mig.schema, mig.version)
            if key in done:
                if done[key] != mig.checksum:
                    raise MigrationError(
                        f"{mig.schema}/{mig.name} was changed after it was applied; add a new migration instead"
                    )
                continue
            try:
                async with conn.transaction():
                    await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{mig.schema}"')
                    await conn.execute(f'SET LOCAL search_path TO "{mig.schema}", public')
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (schema_name, version, name, checksum)"
                        " VALUES ($1, $2, $3, $4)",
                        mig.schema,
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )
            except asyncpg.PostgresError as exc:
                raise MigrationError(
                    f"{mig.schema}/{mig.name} failed and was rolled back: {exc}"
                ) from exc
            applied.append(mig)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied


async def migrate(dsn: str, migrations: list[Migration] | None = None) -> list[Migration]:
    conn = await asyncpg.connect(dsn)
    try:
        return await apply_migrations(
            conn, migrations if migrations is not None else discover_migrations()
        )
    finally:
        await conn.close()


async def ping(pool: asyncpg.Pool) -> bool:
    try:
        async with pool.acquire(timeout=2) as conn:
            return bool(await conn.fetchval("SELECT 1", timeout=2) == 1)
    except (
        Exception
    ):  # readiness: any failure to answer means not ready (asyncpg raises many kinds)
        return False


def record_to_dict(record: asyncpg.Record | None) -> dict[str, Any] | None:
    return dict(record) if record is not None else None
