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
import contextlib
import functools
import importlib
import json
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.config import SERVICE_NAMES, ConfigError, Settings, load_settings
from shared.crypto import load_keyring
from shared.domain import AgencyRole, Role

EXTENSION_MODULES = ("services.oversight.cli", "nrm.backup")


def _print(msg: str) -> None:
    print(msg, flush=True)


# ---- up / down / status ---------------------------------------------------------------------
def _child_env(settings: Settings, database_url: str, temporal_address: str) -> dict[str, str]:
    env = {
        **os.environ,
        "NRM_DATABASE_URL": database_url,
        "NRM_TEMPORAL_ADDRESS": temporal_address,
        "NRM_KEYRING_FILE": str(settings.resolved_keyring_file.resolve()),
        "NRM_DATA_DIR": str(settings.data_dir.resolve()),
        "PYTHONUNBUFFERED": "1",
    }
    return env


def _http_ok(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


READY_TIMEOUT = 90.0  # first start: every part ready within this


def cmd_up(settings: Settings, _args: argparse.Namespace) -> int:
    """Start every part, then supervise them until Ctrl-C / SIGTERM (`nrm down`). See nrm/supervisor.py
    for what happens when a part dies."""
    from nrm import embedded
    from nrm.supervisor import PostgresPart, ProcessPart, Supervisor, Zygote
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
    codec_url = f"http://127.0.0.1:{settings.codec_port}"
    state: dict[str, Any] = {
        "supervisor_pid": os.getpid(),
        "database_url": None,
        "temporal_address": settings.resolved_temporal_address,
        "started_at": time.time(),
        "children": {},
        "temporal_pid": None,
    }
    sup = Supervisor([], state, settings.state_file, logs / "supervisor.log", _print)
    servers: list[str] = []  # the embedded servers, stopped last
    zygote: Zygote | None = None

    def shutdown(*_: Any) -> None:
        signal.signal(
            signal.SIGTERM, signal.SIG_IGN
        )  # a second SIGTERM must not cut the cleanup short
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, shutdown)
    try:
        if settings.embedded_database:
            _print(f"[1/6] PostgreSQL (embedded, data in {data_dir / 'postgres'}) ...")
            pg = sup.add(PostgresPart("postgres", data_dir=data_dir))
            assert isinstance(pg, PostgresPart)
            sup.start(pg)
            sup.wait_ready(["postgres"], READY_TIMEOUT)
            assert pg.database_url is not None
            database_url = pg.database_url
            servers.append("postgres")
        else:
            _print("[1/6] PostgreSQL: external (NRM_DATABASE_URL)")
            database_url = str(settings.database_url)
        state["database_url"] = database_url
        if settings.embedded_temporal:
            _print(f"[2/6] Temporal dev server (SQLite WAL in {data_dir / 'temporal.sqlite'}) ...")
            port = settings.temporal_port
            sup.add(
                ProcessPart(
                    "temporal",
                    log_file=logs / "temporal.log",
                    spawner=lambda: embedded.spawn_temporal(
                        data_dir, port, settings.temporal_ui_port, codec_url, logs / "temporal.log"
                    ),
                    probe=lambda: embedded.port_open("127.0.0.1", port),
                )
            )
            sup.start_all(["temporal"])
            sup.wait_ready(["temporal"], READY_TIMEOUT)
            servers.append("temporal")
        else:
            _print(f"[2/6] Temporal: external at {settings.temporal_address}")
        temporal_address = settings.resolved_temporal_address
        sup.write_state()
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
        # a warm parent to fork the Python parts from, so a restart skips their imports; only as a child
        # subreaper, since only then are the forked parts adopted by (and their exit statuses seen by) nrm up
        try:
            zygote = Zygote(env, logs / "zygote.log", READY_TIMEOUT) if sup.subreaper else None
        except (RuntimeError, OSError) as exc:
            _print(f"      (no zygote: {exc}; parts start as plain processes)")
        if zygote is not None:
            state["zygote_pid"] = zygote.pid
        for name in SERVICE_NAMES:
            ready_url = f"http://{settings.host}:{settings.service_ports[name]}/readyz"
            sup.add(
                ProcessPart(
                    name,
                    depends_on=tuple(servers),
                    command=[sys.executable, "-m", "nrm.service", name],
                    env=env,
                    log_file=logs / f"{name}.log",
                    zygote=zygote,
                    probe=functools.partial(_http_ok, ready_url),
                )
            )
        sup.add(
            ProcessPart(
                "workflow-worker",
                depends_on=tuple(s for s in servers if s == "temporal"),
                command=[sys.executable, "-m", "workflows.worker"],
                env=env,
                zygote=zygote,
                log_file=logs / "workflow-worker.log",
                ready_marker=b"workflow_worker_started",
            )
        )
        sup.add(
            ProcessPart(
                "codec-server",
                command=[sys.executable, "-m", "nrm.codec_server"],
                env=env,
                log_file=logs / "codec-server.log",
                zygote=zygote,
                probe=functools.partial(_http_ok, f"{codec_url}/healthz"),
            )
        )
        console_url = f"http://{settings.host}:{settings.console_port}"  # the web console: API calls only, no schema
        sup.add(
            ProcessPart(
                "console",
                command=[sys.executable, "-m", "services.console"],
                env=env,
                log_file=logs / "console.log",
                probe=functools.partial(_http_ok, f"{console_url}/healthz"),
            )
        )
        workers = [*SERVICE_NAMES, "workflow-worker", "codec-server", "console"]
        from nrm.notification_parts import (
            notification_parts,
        )  # delivery, and the dev mail sink (.nrm/mail)

        workers += [sup.add(part).name for part in notification_parts(settings, env, logs)]
        sup.start_all(workers)
        sup.wait_ready(workers, READY_TIMEOUT)
        _print("[6/6] ready\n")
        _print(_summary(settings, database_url, temporal_address))
        _print("\nA part that dies is restarted (logs/supervisor.log). Ctrl-C stops everything.")
        sup.run()
    except KeyboardInterrupt:
        _print("\nstopping ...")
        return_code = 0
    except (RuntimeError, TimeoutError, OSError) as exc:
        _print(f"nrm up failed: {exc}")
        return_code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        # services and workers drain together; then Temporal; then PostgreSQL
        stuck = sup.stop_group([n for n in sup.parts if n not in servers])
        if zygote is not None:
            zygote.close()
        stuck += sup.stop([n for n in ("temporal",) if n in servers])
        if settings.embedded_database and not embedded.stop_postgres(data_dir):
            stuck.append("postgres")
        if stuck:
            _print(f"did not stop: {', '.join(stuck)}")
        if settings.state_file.exists():
            settings.state_file.unlink()
        _print("stopped")
    return return_code


def _summary(settings: Settings, database_url: str, temporal_address: str) -> str:
    rows = [
        ("service", "url"),
        ("console", f"http://{settings.host}:{settings.console_port}  <- open this"),
    ]
    for name, port in settings.service_ports.items():
        rows.append((name, f"http://{settings.host}:{port}/docs"))
    from services.notifications.settings import NotificationSettings

    own = NotificationSettings()
    rows.append(("notifications", f"http://{settings.host}:{own.notifications_port}/docs"))
    if not own.smtp_host:
        rows.append(("mail (dev)", f"{settings.data_dir / 'mail'}  (messages the sink received)"))
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
    from nrm.embedded import pid_alive

    return pid_alive(pid)


def _ours(pid: int) -> bool:
    """A pid from the state file still names one of our processes (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return any(
        marker in cmdline
        for marker in (b"nrm.", b"shared.", b"workflows.", b"services.", b"temporal")
    )


def _cleanup_stale(settings: Settings, state: dict[str, Any]) -> None:
    """Stop what a killed supervisor left running: services, workers, Temporal, then PostgreSQL."""
    from nrm.embedded import stop_postgres, terminate

    pids = [int(p) for p in state.get("children", {}).values()]
    if state.get("zygote_pid"):
        pids.append(int(state["zygote_pid"]))
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


def status_report(settings: Settings, notifications: Any = None) -> dict[str, Any]:
    """Each part as the supervisor last recorded it (state, pid, restarts, last exit) and as probed now.
    A part is up only if the supervisor runs, has it up, and the live probe agrees."""
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    from nrm.embedded import port_open, postgres_pid
    from shared.temporal import WORKFLOW_TASK_QUEUE

    state: dict[str, Any] = {}
    if settings.state_file.exists():
        with contextlib.suppress(OSError, ValueError):
            state = json.loads(settings.state_file.read_text())
    supervisor_pid = int(state.get("supervisor_pid") or 0)
    supervisor_up = supervisor_pid > 0 and _pid_alive(supervisor_pid)
    recorded: dict[str, Any] = state.get("parts", {}) if supervisor_up else {}
    parts: dict[str, dict[str, Any]] = {}

    def add(name: str, live: bool, detail: str, *, supervised: bool = True, **extra: Any) -> None:
        rec = recorded.get(name, {})
        sup_state = rec.get("state") if supervised else None
        up = live and (sup_state == "up" or not supervised)
        if up:
            state_word = "up"
        elif sup_state in ("failed", "backoff", "starting", "stopping"):
            state_word = sup_state
        elif (
            sup_state == "up"
        ):  # its process runs but it does not answer ready (a dependency is away)
            state_word = "not ready"
        else:
            state_word = "down"
        parts[name] = {
            "up": up,
            "state": state_word,
            "detail": detail,
            "pid": rec.get("pid"),
            "restarts": rec.get("restarts", 0),
            "last_exit": rec.get("last_exit"),
            "last_exit_at": rec.get("last_exit_at"),
            **extra,
        }

    if settings.embedded_database:
        add("postgres", postgres_pid(settings.data_dir.resolve()) is not None, "unix socket")
    else:
        add("postgres", _external_postgres_up(settings), "NRM_DATABASE_URL", supervised=False)
    host, _, port = settings.resolved_temporal_address.rpartition(":")
    add(
        "temporal",
        port_open(host, int(port)),
        f"gRPC {host}:{port}",
        supervised=settings.embedded_temporal,
    )
    if settings.embedded_temporal:  # the Web UI is the same process as the dev server
        ui_up = port_open("127.0.0.1", settings.temporal_ui_port)
        rec = recorded.get("temporal", {})
        parts["temporal-ui"] = {
            "up": ui_up and rec.get("state") == "up",
            "state": "up" if ui_up else "down",
            "detail": f"http://127.0.0.1:{settings.temporal_ui_port}",
            "pid": rec.get("pid"),
        }

    def readyz(svc_port: int) -> tuple[bool, dict[str, Any] | None]:
        try:
            r = httpx.get(f"http://{settings.host}:{svc_port}/readyz", timeout=3)
            return r.status_code == 200, r.json().get("checks")
        except (httpx.HTTPError, ValueError):
            return False, None

    # the HTTP probes at once: on a busy machine one after the other they made `nrm status` take seconds
    with ThreadPoolExecutor(max_workers=len(settings.service_ports) + 1) as pool:
        answers = dict(
            zip(
                settings.service_ports,
                pool.map(readyz, settings.service_ports.values()),
                strict=True,
            )
        )
        console_up = pool.submit(
            _http_ok, f"http://{settings.host}:{settings.console_port}/healthz"
        )
    for name, svc_port in settings.service_ports.items():
        live, checks = answers[name]
        add(name, live, f"http://{settings.host}:{svc_port}", checks=checks)
    worker = recorded.get("workflow-worker", {})
    add(
        "workflow-worker",
        bool(worker.get("pid")) and _pid_alive(int(worker["pid"])),
        f"task queue {WORKFLOW_TASK_QUEUE}",
    )
    add(
        "codec-server",
        port_open("127.0.0.1", settings.codec_port),
        f"http://127.0.0.1:{settings.codec_port}",
    )
    add("console", console_up.result(), f"http://{settings.host}:{settings.console_port}")
    # the notifications process, and the development mail sink `nrm up` runs when no SMTP server is set
    from services.notifications.settings import NotificationSettings

    own = notifications or NotificationSettings()
    notify_url = f"http://{settings.host}:{own.notifications_port}"
    add("notifications", _http_ok(f"{notify_url}/readyz"), notify_url)
    if not own.smtp_host:
        add(
            "mail-sink",
            port_open("127.0.0.1", own.mail_sink_port),
            f"smtp 127.0.0.1:{own.mail_sink_port} -> {settings.data_dir / 'mail'}",
        )
    return {
        "ok": supervisor_up and all(p["up"] for p in parts.values()),
        "supervisor": {
            "running": supervisor_up,
            "pid": supervisor_pid if supervisor_up else None,
            "data_dir": str(settings.data_dir.resolve()),
        },
        "parts": parts,
    }


def _external_postgres_up(settings: Settings) -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(str(settings.database_url), timeout=3)
        except Exception:  # any failure to connect means down (asyncpg raises many kinds)
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """Exit 0 only when the supervisor runs and every part is up; 1 otherwise (naming what is not)."""
    report = status_report(settings)
    if getattr(args, "json", False):
        _print(json.dumps(report, indent=2))
        return 0 if report["ok"] else 1
    sup = report["supervisor"]
    _print(
        f"  {'supervisor':<18} {('up (pid ' + str(sup['pid']) + ')') if sup['running'] else 'not running':<14}"
        f" {sup['data_dir']}"
    )
    for name, part in report["parts"].items():
        extra = ""
        if part.get("restarts"):
            extra = f"  restarts {part['restarts']}, last exit: {part['last_exit']} at {part['last_exit_at']}"
        if not part["up"] and part.get("checks"):
            extra += f"  checks {part['checks']}"
        _print(f"  {name:<18} {part['state']:<14} {part['detail']}{extra}")
    if report["ok"]:
        return 0
    down = [n for n, p in report["parts"].items() if not p["up"]]
    if not sup["running"]:
        _print("\nnot running: `nrm up` starts it")
    else:
        _print(f"\nnot up: {', '.join(down)} (see {settings.data_dir / 'logs'})")
    return 1


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
    token = mint_token(
        ring,
        user_id=args.user,
        display_name=args.name or args.user,
        roles=[Role(r) for r in args.role],
        agency=AgencyRole(args.agency),
        province=args.jurisdiction,
        commune=args.commune,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl=timedelta(minutes=args.ttl_minutes),
    )
    _print(token)
    return 0


def cmd_keys_rotate(settings: Settings, _: argparse.Namespace) -> int:
    path = settings.resolved_keyring_file
    ring = load_keyring(path)
    new = ring.rotated()
    new.save(path)
    _print(
        f"active data key is now {new.active_key_id}; readable keys: {', '.join(sorted(new.data_keys))}."
        " Restart the services (nrm down && nrm up) so they write with the new key."
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nrm", description="National referral mechanism")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start everything in the foreground").set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `nrm up` started").set_defaults(func=cmd_down)
    st = sub.add_parser("status", help="which parts are up (exit 1 unless all are)")
    st.add_argument("--json", action="store_true", help="one JSON document: ok, supervisor, parts")
    st.set_defaults(func=cmd_status)
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
    keys_sub.add_parser("rotate", help="add a data key and make it active").set_defaults(
        func=cmd_keys_rotate
    )
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
