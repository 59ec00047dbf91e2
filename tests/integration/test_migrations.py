"""The migration runner against a real PostgreSQL: order, idempotence, atomicity, checksums, names,
and two concurrent runners (advisory lock)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from nrm.embedded import with_database
from shared.db import MigrationError, discover_migrations, migrate


@pytest_asyncio.fixture(loop_scope="session")
async def scratch_url(pg_admin_url: str) -> AsyncIterator[str]:
    """An empty database of this test's own (no migrations applied)."""
    name = f"mig_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield with_database(pg_admin_url, name)
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def write(base: Path, schema: str, filename: str, sql: str) -> Path:
    folder = base / schema / "migrations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(sql)
    return path


async def fetch(url: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


async def recorded(url: str) -> list[tuple[str, int]]:
    rows = await fetch(
        url,
        "SELECT schema_name, version FROM public.schema_migrations ORDER BY schema_name, version",
    )
    return [(r["schema_name"], r["version"]) for r in rows]


async def table_exists(url: str, qualified: str) -> bool:
    rows = await fetch(url, "SELECT to_regclass($1) IS NOT NULL AS present", qualified)
    return bool(rows[0]["present"])


async def test_service_migrations_apply_in_order_then_rerun_is_noop(scratch_url: str) -> None:
    migrations = discover_migrations()
    assert migrations, "the services ship migrations"
    # ordered per schema (in SERVICE_NAMES order), by version within a schema
    keys = [(m.schema, m.version) for m in migrations]
    schemas_in_order = list(dict.fromkeys(m.schema for m in migrations))
    assert keys == sorted(keys, key=lambda k: (schemas_in_order.index(k[0]), k[1]))

    applied = await migrate(scratch_url, migrations)
    assert [(m.schema, m.version) for m in applied] == keys
    assert sorted(await recorded(scratch_url)) == sorted(keys)
    assert await table_exists(scratch_url, "oversight.case_events")

    assert await migrate(scratch_url, migrations) == []
    assert sorted(await recorded(scratch_url)) == sorted(keys)


async def test_versions_apply_in_numeric_order_inside_their_schema(
    scratch_url: str, tmp_path: Path
) -> None:
    # 010 depends on 002 which depends on 001: any other order fails.
    write(tmp_path, "beta", "010_add_index.sql", "CREATE INDEX things_label ON things (label);")
    write(tmp_path, "beta", "002_add_label.sql", "ALTER TABLE things ADD COLUMN label text;")
    write(tmp_path, "beta", "001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);")
    write(tmp_path, "alpha", "001_items.sql", "CREATE TABLE items (id int PRIMARY KEY);")
    migrations = discover_migrations(services_dir=tmp_path, schemas=("alpha", "beta"))
    assert [(m.schema, m.version, m.name) for m in migrations] == [
        ("alpha", 1, "001_items"),
        ("beta", 1, "001_things"),
        ("beta", 2, "002_add_label"),
        ("beta", 10, "010_add_index"),
    ]
    applied = await migrate(scratch_url, migrations)
    assert [m.name for m in applied] == [
        "001_items",
        "001_things",
        "002_add_label",
        "010_add_index",
    ]
    # each ran with search_path = its own schema
    assert await table_exists(scratch_url, "alpha.items")
    assert await table_exists(scratch_url, "beta.things")
    assert await table_exists(scratch_url, "beta.things_label")
    assert not await table_exists(scratch_url, "public.things")
    assert await migrate(scratch_url, migrations) == []


async def test_new_migration_is_applied_alone(scratch_url: str, tmp_path: Path) -> None:
    write(tmp_path, "alpha", "001_items.sql", "CREATE TABLE items (id int PRIMARY KEY);")
    await migrate(scratch_url, discover_migrations(services_dir=tmp_path, schemas=("alpha",)))
    write(tmp_path, "alpha", "002_more.sql", "CREATE TABLE more_items (id int PRIMARY KEY);")
    applied = await migrate(
        scratch_url, discover_migrations(services_dir=tmp_path, schemas=("alpha",))
    )
    assert [m.name for m in applied] == ["002_more"]
    assert await recorded(scratch_url) == [("alpha", 1), ("alpha", 2)]


async def test_failing_migration_leaves_nothing_half_applied(
    scratch_url: str, tmp_path: Path
) -> None:
    write(tmp_path, "alpha", "001_items.sql", "CREATE TABLE items (id int PRIMARY KEY);")
    # creates a table, inserts, then fails: all of it must roll back
    write(
        tmp_path,
        "alpha",
        "002_broken.sql",
        "CREATE TABLE broken (id int PRIMARY KEY);\nINSERT INTO items VALUES (1);\nSELECT 1 / 0;",
    )
    write(tmp_path, "alpha", "003_after.sql", "CREATE TABLE after_broken (id int);")
    migrations = discover_migrations(services_dir=tmp_path, schemas=("alpha",))

    with pytest.raises(
        MigrationError, match=r"alpha/002_broken failed and was rolled back: division by zero"
    ):
        await migrate(scratch_url, migrations)

    assert await recorded(scratch_url) == [("alpha", 1)]
    assert await table_exists(scratch_url, "alpha.items")
    assert not await table_exists(scratch_url, "alpha.broken")
    assert await fetch(scratch_url, "SELECT * FROM alpha.items") == []
    assert not await table_exists(scratch_url, "alpha.after_broken"), (
        "nothing after the failure runs"
    )

    # fixing the file and re-running applies the rest
    write(tmp_path, "alpha", "002_broken.sql", "CREATE TABLE broken (id int PRIMARY KEY);")
    applied = await migrate(
        scratch_url, discover_migrations(services_dir=tmp_path, schemas=("alpha",))
    )
    assert [m.name for m in applied] == ["002_broken", "003_after"]
    assert await recorded(scratch_url) == [("alpha", 1), ("alpha", 2), ("alpha", 3)]


async def test_edited_applied_migration_is_refused(scratch_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, "alpha", "001_items.sql", "CREATE TABLE items (id int PRIMARY KEY);")
    await migrate(scratch_url, discover_migrations(services_dir=tmp_path, schemas=("alpha",)))
    path.write_text("CREATE TABLE items (id int PRIMARY KEY, extra text);")
    write(tmp_path, "alpha", "002_next.sql", "CREATE TABLE next_items (id int);")

    with pytest.raises(
        MigrationError,
        match=r"alpha/001_items was changed after it was applied; add a new migration",
    ):
        await migrate(scratch_url, discover_migrations(services_dir=tmp_path, schemas=("alpha",)))
    assert await recorded(scratch_url) == [("alpha", 1)]
    assert not await table_exists(scratch_url, "alpha.next_items")
    columns = await fetch(
        scratch_url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'alpha' AND table_name = 'items'",
    )
    assert [c["column_name"] for c in columns] == ["id"]


@pytest.mark.parametrize(
    "filename",
    [
        "1_init.sql",
        "0001_init.sql",
        "001-init.sql",
        "001_Init.sql",
        "001_.sql",
        "init.sql",
        "001_init.SQL.sql",
    ],
)
def test_bad_file_names_are_refused(tmp_path: Path, filename: str) -> None:
    write(tmp_path, "alpha", filename, "SELECT 1;")
    with pytest.raises(
        MigrationError, match=r"migration files are named NNN_lower_snake\.sql"
    ) as info:
        discover_migrations(services_dir=tmp_path, schemas=("alpha",))
    assert filename in str(info.value)


def test_duplicate_version_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "alpha", "001_one.sql", "SELECT 1;")
    write(tmp_path, "alpha", "001_other.sql", "SELECT 2;")
    with pytest.raises(MigrationError, match=r"version 1 appears twice in alpha"):
        discover_migrations(services_dir=tmp_path, schemas=("alpha",))


def test_same_version_in_different_schemas_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "alpha", "001_one.sql", "SELECT 1;")
    write(tmp_path, "beta", "001_one.sql", "SELECT 1;")
    assert [
        (m.schema, m.version)
        for m in discover_migrations(services_dir=tmp_path, schemas=("alpha", "beta"))
    ] == [("alpha", 1), ("beta", 1)]


async def test_concurrent_runners_apply_each_migration_once(
    scratch_url: str, tmp_path: Path
) -> None:
    # the slow first migration keeps the lock held while the other runner starts
    write(tmp_path, "alpha", "001_slow.sql", "SELECT pg_sleep(0.3);\nCREATE TABLE log (n int);")
    write(tmp_path, "alpha", "002_insert.sql", "INSERT INTO log VALUES (2);")
    write(
        tmp_path, "beta", "001_insert.sql", "CREATE TABLE log (n int);\nINSERT INTO log VALUES (1);"
    )
    migrations = discover_migrations(services_dir=tmp_path, schemas=("alpha", "beta"))

    first, second = await asyncio.gather(
        migrate(scratch_url, migrations), migrate(scratch_url, migrations)
    )

    names = sorted(f"{m.schema}/{m.name}" for m in [*first, *second])
    assert names == ["alpha/001_slow", "alpha/002_insert", "beta/001_insert"]
    assert [] in (first, second), "one runner did everything; the other found nothing left"
    assert await recorded(scratch_url) == [("alpha", 1), ("alpha", 2), ("beta", 1)]
    assert [r["n"] for r in await fetch(scratch_url, "SELECT n FROM alpha.log")] == [2]
    assert [r["n"] for r in await fetch(scratch_url, "SELECT n FROM beta.log")] == [1]
    # the lock is released afterwards: a third run gets it and finds nothing to do
    assert await migrate(scratch_url, migrations) == []
