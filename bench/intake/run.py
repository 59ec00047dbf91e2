"""Intake benchmark: cases opened per second over HTTP, beside raw Temporal workflow starts per second
on the same server in the same run.

    .venv/bin/python bench/intake/run.py [--n 300] [--concurrency 20]

Starts its own embedded PostgreSQL and `temporal server start-dev` (SQLite WAL, as `nrm up` does) in a
temporary folder, unless NRM_DATABASE_URL / NRM_TEMPORAL_ADDRESS point at running ones. The intake
app is served by uvicorn on a free port; the workflow worker and oversight activities run in the same
process (as the tests do). Each HTTP case: a realistic person (Vietnamese name, birth year, id number,
phone, address, victim context, one trafficking event, report narrative): validation, encryption,
blind indexes, duplicate check, one transaction, then the workflow start. Prints figures; asserts
nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import httpx
import uvicorn
from temporalio.worker import Worker

from services.oversight.activities import build_activities as oversight_activities
from shared.auth import mint_token
from shared.config import Settings
from shared.crypto import KeyRing
from shared.db import create_pool, migrate
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.embedded import start_postgres, start_temporal, stop_postgres, terminate
from shared.logging import configure_logging
from shared.runtime import Runtime
from shared.service import build_app
from shared.temporal import OVERSIGHT_TASK_QUEUE, connect, ensure_search_attributes
from workflows.models import Actor, CaseFacts, CaseInput
from workflows.worker import build_worker

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ"]
MIDDLE = ["Thị", "Văn", "Ngọc", "Minh", "Thu", "Đức"]
GIVEN = ["Lan", "Hoa", "Mai", "Tuấn", "Hùng", "Linh", "Trang", "Dũng", "Hương", "Nam"]
PROVINCE = "20"  # Lạng Sơn (border province)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def person_payload(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    return {
        "channel": rnd.choice(["border_guard_handover", "rescue_operation", "hotline_111", "embassy_repatriation"]),
        "province": PROVINCE, "abroad": False, "already_safe": True,
        "person": {
            "prs_FirstName": rnd.choice(GIVEN), "prs_MiddleName": rnd.choice(MIDDLE),
            "prs_SecondName": rnd.choice(FAMILY), "birth_year": rnd.randint(1985, 2012),
            "prs_Gender": rnd.choice(["Feminine", "Masculine"]), "prs_Citizenship": ["VN"],
            "prs_PrimaryLanguage": "vie", "prs_IdentityNumber": f"020{rnd.randint(10**8, 10**9 - 1)}",
            "prs_MobilePhone": f"09{rnd.randint(10**7, 10**8 - 1)}", "prs_MailingStreet": "Thôn 3",
            "prs_MailingCity": "Lạng Sơn", "prs_MailingCountry": "VN",
        },
        "victim": {"vic_TypeOfExploitation": [rnd.choice(["ForcedMarriage", "ForcedLabour", "SexualExploitation"])],
                   "vic_MethodOfRecruitment": ["ThroughFriendsOrSocialEvents"],
                   "vic_MethodsOfControl": ["WithholdsDocuments", "DebtBondage"],
                   "vic_DetailsOfVulnerabilities": "Left school early; family debt."},
        "events": [{"hte_Type": "Exploitation", "hte_Country": "CN", "hte_City": "Bằng Tường",
                    "hte_Description": "Kept in a house and made to work without pay."}],
        "report": {"summary": "Handed over by the Chinese police at the Hữu Nghị border gate.",
                   "cas_ReferringOrganisation": "Border guard post Hữu Nghị"},
        "con_Consent": True,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_bounded(n: int, concurrency: int, op: Any) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = list(range(n))

    async def runner() -> None:
        nonlocal errors
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            try:
                await op(i)
                latencies.append(time.perf_counter() - t0)
            except Exception:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors


async def bench(database_url: str, temporal_address: str, n: int, concurrency: int) -> None:
    ring = KeyRing.generate()
    await migrate(database_url)
    client = await connect(temporal_address, "default", ring)
    await ensure_search_attributes(client)
    settings = Settings()
    pool = await create_pool(database_url, 2, 30)
    task_queue = f"bench-{uuid.uuid4().hex[:8]}"
    worker_runtime = Runtime(settings, ring, pool, client)

    async def factory() -> Runtime:
        return Runtime(settings, ring, await create_pool(database_url, 2, 30), client,
                       extras={"workflow_task_queue": task_queue, "reconcile_interval": None})

    app = build_app("intake", settings, runtime_factory=factory)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    token = mint_token(ring, user_id="bench-officer", roles=[Role.caseworker], agency=AgencyRole.border_guard,
                       province=PROVINCE)
    headers = {"Authorization": f"Bearer {token}"}
    oversight = Worker(client, task_queue=OVERSIGHT_TASK_QUEUE, activities=oversight_activities(worker_runtime))
    async with build_worker(client, task_queue), oversight:
        serve = asyncio.create_task(server.serve())
        while not server.started:  # noqa: ASYNC110  (uvicorn exposes a flag, not an event)
            await asyncio.sleep(0.05)
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=60) as http:
            for i in range(5):  # warm-up
                await http.post("/cases", json=person_payload(10_000_000 + i), headers=headers)

            async def open_one(i: int) -> None:
                r = await http.post("/cases", json=person_payload(i),
                                    headers={**headers, "Idempotency-Key": f"bench-{i}"})
                if r.status_code != 201:
                    raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

            http_s, http_lat, http_err = await run_bounded(n, concurrency, open_one)

        actor = Actor(user_id="bench-officer", agency=AgencyRole.border_guard, roles=frozenset({Role.caseworker}),
                      province=PROVINCE)

        async def start_one(i: int) -> None:
            cid = f"bench-raw-{uuid.uuid4().hex}"
            facts = CaseFacts(case_id=cid, person_ref=f"p-{uuid.uuid4().hex}", province=PROVINCE,
                              channel=Channel.border_guard_handover, age_band=AgeBand.adult, opened_by=actor,
                              opened_at=datetime.now(UTC))
            await client.start_workflow("CaseWorkflow", CaseInput(facts=facts), id=cid, task_queue=task_queue)

        raw_s, raw_lat, raw_err = await run_bounded(n, concurrency, start_one)
        server.should_exit = True
        await serve
    await pool.close()

    def line(name: str, secs: float, lat: list[float], err: int) -> float:
        rate = len(lat) / secs if secs else 0.0
        print(f"{name:<34} {rate:8.1f}/s   p50 {pct(lat, 50) * 1000:7.1f} ms   p99 {pct(lat, 99) * 1000:7.1f} ms"
              f"   mean {statistics.fmean(lat) * 1000:7.1f} ms   ok {len(lat)}  errors {err}")
        return rate

    print(f"\nN={n} concurrency={concurrency} (same Temporal server, same process, {os.cpu_count()} CPUs)")
    http_rate = line("intake POST /cases (HTTP)", http_s, http_lat, http_err)
    raw_rate = line("raw Temporal start_workflow", raw_s, raw_lat, raw_err)
    if raw_rate:
        print(f"ratio: intake opens at {http_rate / raw_rate:.2f}x the raw workflow-start rate")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=20)
    args = ap.parse_args()
    configure_logging("bench-intake", "WARNING")
    work = Path(tempfile.mkdtemp(prefix="nrm-bench-intake-"))
    database_url = os.environ.get("NRM_DATABASE_URL")
    temporal_address = os.environ.get("NRM_TEMPORAL_ADDRESS")
    temporal_proc = None
    try:
        if not database_url:
            database_url = start_postgres(work)
        if not temporal_address:
            port = free_port()
            temporal_proc = start_temporal(work / "temporal", port, free_port(), None, work / "temporal.log")
            temporal_address = f"127.0.0.1:{port}"
        asyncio.run(bench(database_url, temporal_address, args.n, args.concurrency))
    finally:
        if temporal_proc is not None:
            terminate(temporal_proc.pid)
        if not os.environ.get("NRM_DATABASE_URL"):
            stop_postgres(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
