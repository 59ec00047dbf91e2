"""Oversight commands of the `nrm` CLI (registered by nrm/cli.py):

nrm stuck [--province P] [--limit N] [--offset N] [--reason R ...]   stuck cases as a table (database only)
nrm audit verify CASE | --all [--province P] [--no-temporal]          keyed hash chain and event count check;
                                                                      exit 1 if broken or a tail is missing
nrm audit replay CASE [--source auto|live|export]                     replay the history on current code
nrm retention run [--dry-run] [--limit N]                              erase personal data past retention
nrm retention schedule                                                 create the daily sweep schedule if missing"""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.config import Settings


def register(subparsers: Any) -> None:
    st = subparsers.add_parser(
        "stuck", help="stuck cases in a province (overdue, due soon, handoffs, idle, escalated)"
    )
    st.add_argument("--province", default=None, help="province code; default all provinces")
    st.add_argument("--limit", type=int, default=50)
    st.add_argument("--offset", type=int, default=0)
    st.add_argument(
        "--reason",
        action="append",
        default=[],
        choices=["overdue", "due_soon", "handoff_waiting", "idle", "escalated"],
    )
    st.add_argument("--due-within-hours", type=int, default=24)
    st.add_argument("--idle-days", type=int, default=7)
    st.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    st.set_defaults(func=cmd_stuck)

    audit = subparsers.add_parser("audit", help="auditor tools: chain check, replay")
    asub = audit.add_subparsers(dest="audit_command", required=True)
    ver = asub.add_parser("verify", help="check the keyed hash chain of a case, or of all cases")
    ver.add_argument("case_id", nargs="?")
    ver.add_argument("--all", action="store_true", help="every case (or every case of --province)")
    ver.add_argument("--province", default=None)
    ver.add_argument(
        "--no-temporal",
        action="store_true",
        help="database only: do not cross-check the event counts with the live workflows",
    )
    ver.set_defaults(func=cmd_audit_verify)
    rep = asub.add_parser(
        "replay", help="replay the case's Temporal history on the current workflow code"
    )
    rep.add_argument("case_id")
    rep.add_argument("--source", choices=["auto", "live", "export"], default="auto")
    rep.set_defaults(func=cmd_audit_replay)

    ret = subparsers.add_parser("retention", help="personal-data retention after closure")
    rsub = ret.add_subparsers(dest="retention_command", required=True)
    run = rsub.add_parser(
        "run",
        help="erase personal data of cases closed longer than NRM_RETENTION_DAYS_AFTER_CLOSURE",
    )
    run.add_argument("--dry-run", action="store_true", help="list the cases, erase nothing")
    run.add_argument("--limit", type=int, default=500)
    run.set_defaults(func=cmd_retention_run)
    sch = rsub.add_parser(
        "schedule",
        help="create the daily Temporal schedule that runs the retention sweep "
        "(nrm up does this; run it once against an external Temporal)",
    )
    sch.set_defaults(func=cmd_retention_schedule)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(out)


async def _stuck(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    from services.oversight import repository as repo
    from shared.db import create_pool

    now = datetime.now(UTC)
    f = repo.StuckFilter(
        now=now,
        province=args.province,
        reasons=set(args.reason),
        due_within=timedelta(hours=args.due_within_hours),
        idle_for=timedelta(days=args.idle_days),
        limit=args.limit,
        offset=args.offset,
    )
    pool = await create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn:
            rows = await repo.stuck(conn, f)
    finally:
        await pool.close()
    out = []
    for r in rows:
        reasons = []
        if r["deadline_at"] is not None and r["deadline_at"] < now:
            reasons.append("overdue")
        elif r["deadline_at"] is not None and r["deadline_at"] < now + f.due_within:
            reasons.append("due_soon")
        if r["open_handoffs"]:
            reasons.append("handoff_waiting")
        if r["last_event_at"] < now - f.idle_for:
            reasons.append("idle")
        if r["escalation_level"]:
            reasons.append(f"escalated:{r['escalation_level']}")
        late = (now - r["due"]).total_seconds() / 3600 if r["due"] else None
        out.append(
            {
                "case_id": r["case_id"],
                "province": r["province"],
                "stage": r["stage"],
                "agency": r["owner_agency"],
                "assignee": r["assignee"],
                "late_h": None if late is None else round(late, 1),
                "level": r["escalation_level"],
                "handoffs": r["open_handoffs"],
                "idle_d": round((now - r["last_event_at"]).total_seconds() / 86400, 1),
                "reasons": ",".join(reasons),
            }
        )
    return out


def cmd_stuck(settings: Settings, args: argparse.Namespace) -> int:
    from shared.db import MigrationError, resolve_database_url

    if not 1 <= args.limit <= 1000:
        print("--limit: between 1 and 1000")
        return 2
    try:
        url = resolve_database_url(settings)
    except MigrationError as exc:
        print(exc)
        return 2
    items = asyncio.run(_stuck(url, args))
    if args.json:
        for it in items:
            print(json.dumps(it))
        return 0
    if not items:
        print("no stuck cases")
        return 0
    headers = list(items[0])
    print(table(headers, [[it[h] for h in headers] for it in items]))
    if len(items) == args.limit:
        print(f"\n(more: --offset {args.offset + args.limit})")
    return 0


async def _temporal_case_ids(client: Any) -> list[str]:
    """CaseWorkflow ids Temporal's visibility knows (open and closed within its retention)."""
    ids = []
    try:
        async for wf in client.list_workflows("WorkflowType = 'CaseWorkflow'"):
            ids.append(wf.id)
    except (
        Exception
    ) as exc:  # no visibility (or Temporal away): the database's cases still get checked
        print(
            f"(Temporal visibility not available: {type(exc).__name__}; cases listed from the database only)"
        )
    return ids


async def _verify(
    url: str, settings: Settings, args: argparse.Namespace, client: Any = None
) -> int:
    """Each case's chain, and its count against what the workflow emitted (projection, exported history,
    and with `client` the live workflow). `--all` checks every case known to the projection, the audit
    log, the exported histories and (with `client`, no --province) Temporal's visibility, so a case
    whose events were all deleted is checked too."""
    from services.oversight import repository as repo
    from services.oversight.audit_log import verify_case
    from shared.crypto import load_keyring
    from shared.db import create_pool

    ring = load_keyring(settings.resolved_keyring_file)
    pool = await create_pool(url, 1, 2)
    broken = checked = 0
    try:
        async with pool.acquire() as conn:
            if args.case_id:
                ids = [args.case_id]
            else:
                ids, offset = [], 0
                while batch := await repo.case_ids(conn, args.province, 1000, offset):
                    ids += batch
                    offset += len(batch)
                if client is not None and args.province is None:
                    ids = sorted(set(ids) | set(await _temporal_case_ids(client)))
            for cid in ids:
                rep = await verify_case(conn, ring, cid, client)
                checked += 1
                if not rep.ok:
                    broken += 1
                    print(
                        f"{cid}: BROKEN at seq {rep.first_broken_seq}: {rep.problem} ({rep.events} events)"
                    )
                elif args.case_id:
                    print(f"{cid}: ok ({rep.events} events)")
    finally:
        await pool.close()
    print(f"{checked} case(s) checked, {broken} broken")
    return 1 if broken else 0


def cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    from shared.db import MigrationError, resolve_database_url

    if bool(args.case_id) == bool(args.all):
        print("give a CASE id or --all")
        return 2
    try:
        url = resolve_database_url(settings)
    except MigrationError as exc:
        print(exc)
        return 2

    async def go() -> int:
        client = None
        if not args.no_temporal:
            from shared.crypto import load_keyring
            from shared.temporal import connect

            try:
                client = await connect(
                    settings.resolved_temporal_address,
                    settings.temporal_namespace,
                    load_keyring(settings.resolved_keyring_file),
                )
            except (
                Exception
            ) as exc:  # verify what the database holds; say the live counts were not checked
                print(
                    f"(Temporal not reachable: {type(exc).__name__}; live workflow counts not cross-checked)"
                )
        return await _verify(url, settings, args, client)

    return asyncio.run(go())


async def _replay(url: str, settings: Settings, args: argparse.Namespace) -> int:
    from services.oversight.replay import replay_case
    from shared.crypto import load_keyring
    from shared.db import create_pool
    from shared.temporal import connect

    ring = load_keyring(settings.resolved_keyring_file)
    client = None
    if args.source != "export":
        client = await connect(
            settings.resolved_temporal_address, settings.temporal_namespace, ring
        )
    pool = await create_pool(url, 1, 2)
    try:
        async with pool.acquire() as conn:
            reports = await replay_case(client, conn, ring, args.case_id, args.source)
    finally:
        await pool.close()
    if not reports:
        print(f"{args.case_id}: no history (neither in Temporal nor exported)")
        return 1
    ok = True
    for r in reports:
        verdict = "deterministic" if r.deterministic else f"NOT deterministic: {r.error}"
        print(f"{r.case_id} run {r.run_id} ({r.source}): {verdict}")
        if r.matches_audit_log is not None:
            match = "matches" if r.matches_audit_log else f"DIFFERS ({', '.join(r.differences)})"
            print(f"  final state ({r.final_state_from}) {match} the audit log's last state")
        ok = ok and r.deterministic and r.matches_audit_log is not False
    return 0 if ok else 1


def cmd_audit_replay(settings: Settings, args: argparse.Namespace) -> int:
    from shared.db import MigrationError, resolve_database_url

    try:
        url = resolve_database_url(settings)
    except MigrationError as exc:
        print(exc)
        return 2
    return asyncio.run(_replay(url, settings, args))


def cmd_retention_run(settings: Settings, args: argparse.Namespace) -> int:
    from services.oversight.retention import due_for_erasure, start_erasures
    from shared.crypto import load_keyring
    from shared.db import create_pool, resolve_database_url
    from shared.temporal import connect

    async def go() -> int:
        pool = await create_pool(resolve_database_url(settings), 1, 2)
        try:
            async with pool.acquire() as conn:
                due = await due_for_erasure(
                    conn, datetime.now(UTC), settings.retention_days_after_closure, args.limit
                )
        finally:
            await pool.close()
        for case in due:
            print(f"{case.case_id}  closed {case.closed_at.isoformat()}")
        if args.dry_run or not due:
            print(f"{len(due)} case(s) due for erasure" + (" (dry run)" if args.dry_run else ""))
            return 0
        client = await connect(
            settings.resolved_temporal_address,
            settings.temporal_namespace,
            load_keyring(settings.resolved_keyring_file),
        )
        started = await start_erasures(client, due, settings.retention_days_after_closure)
        print(
            f"started erasure for {len(started)} case(s); {len(due) - len(started)} already under way"
        )
        return 0

    return asyncio.run(go())


def cmd_retention_schedule(settings: Settings, _: argparse.Namespace) -> int:
    from services.oversight.retention import (
        RETENTION_CRON,
        RETENTION_SCHEDULE_ID,
        ensure_retention_schedule,
    )
    from shared.crypto import load_keyring
    from shared.temporal import connect

    async def go() -> int:
        client = await connect(
            settings.resolved_temporal_address,
            settings.temporal_namespace,
            load_keyring(settings.resolved_keyring_file),
        )
        created = await ensure_retention_schedule(client)
        print(
            f"schedule {RETENTION_SCHEDULE_ID} ({RETENTION_CRON}, Asia/Ho_Chi_Minh) "
            + ("created" if created else "already exists: left as it is")
        )
        return 0

    return asyncio.run(go())
