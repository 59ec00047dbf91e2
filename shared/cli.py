"""`nrm`: run the whole system, and the operator commands.

  nrm up        start PostgreSQL, Temporal, the four services, the workflow worker, the codec server
  nrm down      stop what `nrm up` started
  nrm status    which parts are up, with their ports
  nrm migrate   apply database migrations
  nrm token     mint a development token
  nrm keys rotate   add a data key and make it the active one
Service-specific commands (nrm stuck, nrm audit ...) are registered by services/oversight/cli.py."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.config import SERVICE_NAMES, ConfigError, Settings, load_settings
from shared.crypto import load_keyring
from shared.domain import AgencyRole, Role

EXTENSION_MODULES = ("services.oversight.cli", "shared.backup")


def _print(msg: str) -> None:
    print(msg, flush=True)


# ---- up / down / status ---------------------------------------------------------------------
def _child_env(settings: Settings, database_url: str, temporal_address: str) -> dict[str, str]:
    env = {**os.environ, "NRM_DATABASE_URL": database_url, "NRM_TEMPORAL_ADDRESS": temporal_address,
           "NRM_KEYRING_FILE": str(settings.resolved_keyring_file.resolve()),
           "NRM_DATA_DIR": str(settings.data_dir.resolve()), "PYTHONUNBUFFERED": "1"}
    return env


def _wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes], what: str) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}; see its log in .nrm/logs/")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} was not ready at {url} within {timeout:.0f}s")


def cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    from shared import embedded
    from shared.db import migrate
    from shared.temporal import connect, ensure_search_attributes

    data_dir = settings.data_dir.resolve()
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if settings.state_file.exists():
        old = json.loads(settings.state_file.read_text())
        if old.get("supervisor_pid") and _pid_alive(int(old["supervisor_pid"])):
            _print(f"nrm is already running (pid {old['supervisor_pid']}); `nrm down` stops it")
            return 1
        _print("a previous `nrm up` was killed; stopping what it left running ...")
        _cleanup_stale(settings, old)
    ring = load_keyring(settings.resolved_keyring_file, create=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    temporal_proc: subprocess.Popen[bytes] | None = None

    def shutdown(*_: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    try:
        if settings.embedded_database:
            _print(f"[1/6] PostgreSQL (embedded, data in {data_dir / 'postgres'}) ...")
            database_url = embedded.start_postgres(data_dir)
        else:
            _print("[1/6] PostgreSQL: external (NRM_DATABASE_URL)")
            database_url = str(settings.database_url)
        codec_url = f"http://127.0.0.1:{settings.codec_port}"
        if settings.embedded_temporal:
            _print(f"[2/6] Temporal dev server (SQLite WAL in {data_dir / 'temporal.sqlite'}) ...")
            temporal_proc = embedded.start_temporal(data_dir, settings.temporal_port, settings.temporal_ui_port,
                                                    codec_url, logs / "temporal.log")
        else:
            _print(f"[2/6] Temporal: external at {settings.temporal_address}")
        temporal_address = settings.resolved_temporal_address
        state: dict[str, Any] = {"supervisor_pid": os.getpid(), "database_url": database_url,
                                 "temporal_address": temporal_address, "started_at": time.time(), "children": {},
                                 "temporal_pid": temporal_proc.pid if temporal_proc is not None else None}
        settings.state_file.write_text(json.dumps(state, indent=2))
        _print("[3/6] migrations ...")
        applied = asyncio.run(migrate(database_url))
        _print(f"      {len(applied)} applied")

        async def register() -> list[str]:
            from services.oversight.retention import ensure_retention_schedule

            client = await connect(temporal_address, settings.temporal_namespace, ring)
            added = await ensure_search_attributes(client)
            await ensure_retention_schedule(client)
            return added

        _print("[4/6] search attributes and the daily retention schedule ...")
        asyncio.run(register())
        env = _child_env(settings, database_url, temporal_address)
        _print("[5/6] services and workers ...")
        launch = [(f"{name}", [sys.executable, "-m", "shared.service", name]) for name in SERVICE_NAMES]
        launch += [("workflow-worker", [sys.executable, "-m", "workflows.worker"]),
                   ("codec-server", [sys.executable, "-m", "shared.codec_server"])]
        for name, cmd in launch:
            log = open(logs / f"{name}.log", "ab")
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,  # noqa: S603
                                    start_new_session=True)
            children.append((name, proc))
            state["children"][name] = proc.pid
        settings.state_file.write_text(json.dumps(state, indent=2))
        for name, proc in children:
            if name in SERVICE_NAMES:
                _wait_http(f"http://{settings.host}:{settings.service_ports[name]}/readyz", 90, proc, name)
            elif name == "codec-server":
                _wait_http(f"{codec_url}/healthz", 60, proc, name)
        time.sleep(0.5)
        for name, proc in children:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}")
        _print("[6/6] ready\n")
        _print(_summary(settings, database_url, temporal_address))
        _print("\nCtrl-C stops everything.")
        while True:
            for name, proc in children:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {logs / (name + '.log')}")
            time.sleep(1)
    except KeyboardInterrupt:
        _print("\nstopping ...")
        return_code = 0
    except (RuntimeError, TimeoutError, OSError) as exc:
        _print(f"nrm up failed: {exc}")
        return_code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for _, proc in reversed(children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in children:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        if temporal_proc is not None and temporal_proc.poll() is None:
            temporal_proc.send_signal(signal.SIGTERM)
            try:
                temporal_proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                temporal_proc.kill()
        if settings.embedded_database and not embedded.stop_postgres(data_dir):
            _print(f"PostgreSQL in {data_dir / 'postgres'} did not stop")
        if settings.state_file.exists():
            settings.state_file.unlink()
        _print("stopped")
    return return_code


def _summary(settings: Settings, database_url: str, temporal_address: str) -> str:
    rows = [("service", "url")]
    for name, port in settings.service_ports.items():
        rows.append((name, f"http://{settings.host}:{port}/docs"))
    rows.append(("codec server", f"http://127.0.0.1:{settings.codec_port}"))
    if settings.embedded_temporal:
        rows.append(("Temporal UI", f"http://127.0.0.1:{settings.temporal_ui_port}"))
    rows.append(("Temporal gRPC", temporal_address))
    rows.append(("PostgreSQL", _redact_url(database_url)))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"  {a.ljust(width)}  {b}" for a, b in rows)


def _redact_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    p = urlsplit(url)
    if p.password:
        netloc = p.netloc.replace(f":{p.password}@", ":***@")
        return urlunsplit((p.scheme, netloc, p.path, p.query, p.fragment))
    return url


def _pid_alive(pid: int) -> bool:
    from shared.embedded import pid_alive

    return pid_alive(pid)


def _ours(pid: int) -> bool:
    """A pid from the state file still names one of our processes (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(marker in cmdline for marker in (b"shared.", b"workflows.", b"temporal"))


def _cleanup_stale(settings: Settings, state: dict[str, Any]) -> None:
    """Stop what a killed supervisor left running: services, workers, Temporal, then PostgreSQL."""
    from shared.embedded import stop_postgres, terminate

    pids = [int(p) for p in state.get("children", {}).values()]
    if state.get("temporal_pid"):
        pids.append(int(state["temporal_pid"]))  # last: the workers drain first
    for pid in pids[:-1] if state.get("temporal_pid") else pids:
        if _pid_alive(pid) and _ours(pid):
            os.kill(pid, signal.SIGTERM)
    for pid in pids:
        if _pid_alive(pid) and _ours(pid):
            terminate(pid)
    if settings.embedded_database and not stop_postgres(settings.data_dir.resolve()):
        _print("PostgreSQL did not stop")
    settings.state_file.unlink(missing_ok=True)


def cmd_down(settings: Settings, _: argparse.Namespace) -> int:
    if not settings.state_file.exists():
        _print("nrm is not running (no state file)")
        return 0
    state = json.loads(settings.state_file.read_text())
    pid = int(state["supervisor_pid"])
    if not _pid_alive(pid):
        _print("nrm supervisor is gone; stopping what it left running")
        _cleanup_stale(settings, state)
        _print("stopped")
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.2)
    _print("stopped" if not _pid_alive(pid) else f"supervisor {pid} still running")
    return 0 if not _pid_alive(pid) else 1


def cmd_status(settings: Settings, _args: argparse.Namespace) -> int:
    import httpx

    from shared.embedded import port_open, postgres_pid

    running = settings.state_file.exists()
    state = json.loads(settings.state_file.read_text()) if running else {}
    rows = []
    if settings.embedded_database:
        up = postgres_pid(settings.data_dir.resolve()) is not None  # not just a pid file left by a kill
        rows.append(("postgres (embedded)", "up" if up else "down", "unix socket"))
    else:
        rows.append(("postgres (external)", "configured", "NRM_DATABASE_URL"))
    host, _, port = settings.resolved_temporal_address.rpartition(":")
    rows.append(("temporal", "up" if port_open(host, int(port)) else "down", port))
    if settings.embedded_temporal:
        rows.append(("temporal ui", "up" if port_open("127.0.0.1", settings.temporal_ui_port) else "down",
                     str(settings.temporal_ui_port)))
    for name, svc_port in settings.service_ports.items():
        try:
            r = httpx.get(f"http://{settings.host}:{svc_port}/readyz", timeout=2)
            status = "ready" if r.status_code == 200 else f"not ready {r.json().get('checks')}"
        except httpx.HTTPError:
            status = "down"
        rows.append((name, status, str(svc_port)))
    worker_pid = state.get("children", {}).get("workflow-worker")
    rows.append(("workflow worker", "up" if worker_pid and _pid_alive(int(worker_pid)) else "down", "-"))
    rows.append(("codec server", "up" if port_open("127.0.0.1", settings.codec_port) else "down",
                 str(settings.codec_port)))
    for row in rows:
        _print(f"  {row[0]:<22} {row[1]:<12} {row[2]}")
    return 0


def cmd_migrate(settings: Settings, _: argparse.Namespace) -> int:
    from shared.db import MigrationError, migrate, resolve_database_url

    try:
        applied = asyncio.run(migrate(resolve_database_url(settings)))
    except MigrationError as exc:
        _print(f"migration failed: {exc}")
        return 1
    for m in applied:
        _print(f"applied {m.schema}/{m.name}")
    _print(f"{len(applied)} migration(s) applied; database is up to date")
    return 0


def cmd_token(settings: Settings, args: argparse.Namespace) -> int:
    from shared.auth import mint_token

    ring = load_keyring(settings.resolved_keyring_file, create=True)
    token = mint_token(ring, user_id=args.user, display_name=args.name or args.user,
                       roles=[Role(r) for r in args.role], agency=AgencyRole(args.agency),
                       province=args.jurisdiction, commune=args.commune, issuer=settings.jwt_issuer,
                       audience=settings.jwt_audience, ttl=timedelta(minutes=args.ttl_minutes))
    _print(token)
    return 0


def cmd_keys_rotate(settings: Settings, _: argparse.Namespace) -> int:
    path = settings.resolved_keyring_file
    ring = load_keyring(path)
    new = ring.rotated()
    new.save(path)
    _print(f"active data key is now {new.active_key_id}; readable keys: {', '.join(sorted(new.data_keys))}."
           " Restart the services (nrm down && nrm up) so they write with the new key.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrm", description="National referral mechanism")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start everything in the foreground").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `nrm up` started").set_defaults(func=cmd_down)
    sub.add_parser("status", help="which parts are up").set_defaults(func=cmd_status)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    tok = sub.add_parser("token", help="mint a development token")
    tok.add_argument("--user", default="dev-user")
    tok.add_argument("--name", default=None, help="display name (kept out of logs)")
    tok.add_argument("--role", action="append", choices=[r.value for r in Role], required=True)
    tok.add_argument("--agency", choices=[a.value for a in AgencyRole], required=True)
    tok.add_argument("--jurisdiction", required=True, help="province code, or * for national")
    tok.add_argument("--commune", default=None)
    tok.add_argument("--ttl-minutes", type=int, default=480)
    tok.set_defaults(func=cmd_token)
    keys = sub.add_parser("keys", help="key ring operations")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    keys_sub.add_parser("rotate", help="add a data key and make it active").set_defaults(func=cmd_keys_rotate)
    for module in EXTENSION_MODULES:
        try:
            ext = importlib.import_module(module)
        except ModuleNotFoundError:
            continue
        ext.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.chdir(Path.cwd())
    result: int = args.func(settings, args)
    return result


def entry() -> None:
    """The `nrm` command. Ends the process without interpreter teardown: the Temporal client's Rust threads
    can outlive the event loop, and CPython's finalization then aborts now and then with "PyGILState_Release:
    thread state must be current" (temporalio/sdk-python#300), which turned a finished command's exit code
    into 134. Everything a command starts it also stops itself; nothing relies on atexit."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
