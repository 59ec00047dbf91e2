"""Load benchmark: N concurrent users acting on cases and reading their inbox against `nrm up`, beside a
raw-Temporal baseline (`execute_update` on an empty workflow) measured on the same server in the same run.

    .venv/bin/python bench/load/run.py [--users 50] [--seconds 30] [--think 1.0] [--cases-per-user 2]

Starts the whole system as `nrm up` does (tests/helpers/process_stack.running_stack), opens `users x cases-per-user`
border-guard handovers through intake and classifies them into verification (border guard owns verify),
then runs, each for `--seconds`:

  (1) closed loop, no think time: each user, in turn, sends a supervisor `assign` on one of its cases over
      HTTP (POST verification /cases/{id}/assign) and reads `GET /inbox` (in_progress, 50 a page);
  (2) the same with think time: each user waits an exponential time of mean `--think` s between actions;
  (3) baseline, closed loop: N users each sending `execute_update` to its own empty workflow (the worker
      runs in this process, on the same Temporal dev server).

Prints actions/s and p50/p95/p99 for the Updates and for the inbox reads of (1) and (2), and for the
baseline Updates, plus the machine and its load, and the CPU one action cost in each process of the
stack (closed loop and baseline: the profile behind the ratio). Not a test: it asserts only that every
request succeeded.
Figures go to docs/benchmarks.md by hand (with the machine and how busy it was)."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio import workflow


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


# Module level runs again inside the workflow sandbox (for the baseline workflow): no file system there.
if not workflow.unsafe.in_sandbox() and str(repo_root()) not in sys.path:
    sys.path.insert(0, str(repo_root()))


@workflow.defn(name="BenchLoadEmptyWorkflow")
class BenchLoadEmptyWorkflow:
    """Does nothing but wait; one Update that changes a counter and returns it."""

    def __init__(self) -> None:
        self.count = 0

    @workflow.run
    async def run(self) -> int:
        await workflow.wait_condition(lambda: self.count < 0)  # runs until terminated
        return self.count

    @workflow.update
    async def bump(self, by: int) -> int:
        self.count += by
        return self.count

    @bump.validator
    def _check_bump(self, by: int) -> None:
        if by <= 0:
            raise ValueError("bump by a positive number")


PROVINCE = "01"
BASELINE_QUEUE = "bench-load-baseline"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


@dataclass
class Series:
    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)  # "503: {first reply}" -> count

    def failed(self, kind: str) -> None:
        """Counts a failed request under its status (or exception) and the start of its first reply."""
        self.errors += 1
        self.error_kinds[kind[:160]] = self.error_kinds.get(kind[:160], 0) + 1

    def error_lines(self) -> list[str]:
        return [f"  {self.name} error x{n}: {kind}" for kind, n in self.error_kinds.items()]

    def line(self) -> str:
        n = len(self.latencies)
        rate = n / self.seconds if self.seconds else 0.0
        ms = [v * 1000 for v in self.latencies]
        return (
            f"{self.name:<44} {n:>6} ok {self.errors:>4} err  {rate:7.1f}/s  p50 {pct(ms, 50):7.1f} ms  "
            f"p95 {pct(ms, 95):7.1f} ms  p99 {pct(ms, 99):7.1f} ms"
        )


def person_payload(i: int) -> dict[str, Any]:
    """A border-guard handover (no real person: made-up values)."""
    rnd = random.Random(i)
    return {
        "channel": "border_guard_handover",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": rnd.choice(["Lan", "Mai", "Hoa", "Tuấn", "Minh"]),
            "prs_MiddleName": "Thị",
            "prs_SecondName": rnd.choice(["Nguyễn", "Trần", "Lê", "Phạm"]),
            "birth_year": rnd.randint(1985, 2005),
            "prs_Gender": rnd.choice(["Feminine", "Masculine"]),
            "prs_Citizenship": ["VN"],
            "prs_PrimaryLanguage": "vie",
            "prs_IdentityNumber": f"020{rnd.randint(10**8, 10**9 - 1)}",
        },
        "victim": {"vic_TypeOfExploitation": ["ForcedLabour"]},
        "report": {
            "summary": "Handed over at the border gate (load bench).",
            "cas_ReferringOrganisation": "Border guard post (bench)",
        },
        "con_Consent": True,
    }


async def prepare_cases(stack: Any, users: int, per_user: int) -> list[str]:
    guard = stack.auth(_agency("border_guard"), user="bench-guard")
    ids: list[str] = []
    sem = asyncio.Semaphore(10)
    async with stack.async_client("intake") as intake:

        async def one(i: int) -> None:
            async with sem:
                body = person_payload(i)
                r = await intake.post(
                    "/cases", json=body, headers={**guard, "Idempotency-Key": f"load-{i}"}
                )
                if r.status_code not in (200, 201):
                    raise RuntimeError(f"open {i}: {r.status_code} {r.text[:200]}")
                cid = r.json()["case_id"]
                for _ in range(
                    10
                ):  # 503 = outcome unknown (busy machine): retry with the same key, as the API says
                    r = await intake.post(
                        f"/cases/{cid}/classify",
                        headers={**guard, "Idempotency-Key": f"cls-{cid}"},
                        json={
                            "classification": "trafficking_suspected",
                            "justification": "group handover: load bench",
                        },
                    )
                    if r.status_code != 503:
                        break
                    await asyncio.sleep(1)
                if r.status_code != 200:
                    raise RuntimeError(f"classify {cid}: {r.status_code} {r.text[:200]}")
                ids.append(cid)

        await asyncio.gather(*(one(i) for i in range(users * per_user)))
    return ids


def _agency(name: str) -> Any:
    from shared.domain import AgencyRole

    return AgencyRole(name)


async def nrm_phase(
    stack: Any, cases: list[str], users: int, seconds: float, think: float, label: str
) -> tuple[Series, Series]:
    import httpx

    from shared.domain import Role

    sup = stack.auth(
        _agency("border_guard"), Role.caseworker, Role.supervisor, user="bench-supervisor"
    )
    worker = stack.auth(_agency("border_guard"), user="bench-officer")
    updates, reads = Series(f"{label}: assign (HTTP Update)"), Series(f"{label}: GET /inbox")
    limits = httpx.Limits(max_connections=users * 2, max_keepalive_connections=users * 2)
    per_user = max(1, len(cases) // users)
    async with httpx.AsyncClient(
        base_url=stack.url("verification"), timeout=120, limits=limits
    ) as ver:
        stop = time.monotonic() + seconds
        start = time.monotonic()

        async def user(u: int) -> None:
            rnd = random.Random(u)
            mine = (
                cases[u * per_user : (u + 1) * per_user]
                or cases[u % len(cases) : u % len(cases) + 1]
            )
            k = 0
            while time.monotonic() < stop:
                cid = mine[k % len(mine)]
                t0 = time.perf_counter()
                r = await ver.post(
                    f"/cases/{cid}/assign",
                    headers=sup,
                    json={"assignee_user_id": f"officer-{u}-{k % 3}"},
                )
                if r.status_code == 200:
                    updates.latencies.append(time.perf_counter() - t0)
                else:
                    updates.failed(f"{r.status_code}: {r.text}")
                if think:
                    await asyncio.sleep(rnd.expovariate(1 / think))
                t0 = time.perf_counter()
                r = await ver.get(
                    "/inbox", headers=worker, params={"view": "in_progress", "limit": 50}
                )
                if r.status_code == 200 and r.json()["complete"]:
                    reads.latencies.append(time.perf_counter() - t0)
                else:
                    reads.failed(f"{r.status_code}: {r.text}")
                if think:
                    await asyncio.sleep(rnd.expovariate(1 / think))
                k += 1

        await asyncio.gather(*(user(u) for u in range(users)))
        elapsed = time.monotonic() - start
    updates.seconds = reads.seconds = elapsed
    return updates, reads


async def baseline_phase(stack: Any, users: int, seconds: float) -> Series:
    from temporalio.client import Client
    from temporalio.worker import PollerBehaviorAutoscaling, Worker

    client = await Client.connect(stack.temporal_address)
    series = Series("baseline: execute_update on an empty workflow")
    run = uuid.uuid4().hex[:6]
    async with Worker(
        client,
        task_queue=BASELINE_QUEUE,
        workflows=[BenchLoadEmptyWorkflow],
        workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
    ):
        handles = [
            await client.start_workflow(
                BenchLoadEmptyWorkflow.run, id=f"bench-load-{run}-{u}", task_queue=BASELINE_QUEUE
            )
            for u in range(users)
        ]
        for h in handles:  # warm: the first task of each
            await h.execute_update(BenchLoadEmptyWorkflow.bump, 1)
        stop = time.monotonic() + seconds
        start = time.monotonic()

        async def user(u: int) -> None:
            while time.monotonic() < stop:
                t0 = time.perf_counter()
                try:
                    await handles[u].execute_update(BenchLoadEmptyWorkflow.bump, 1)
                    series.latencies.append(time.perf_counter() - t0)
                except Exception as e:  # counted and printed, not hidden
                    series.failed(f"{type(e).__name__}: {e}")

        await asyncio.gather(*(user(u) for u in range(users)))
        series.seconds = time.monotonic() - start
        for h in handles:
            await h.terminate("bench done")
    return series


def cpu_now(stack: Any) -> dict[str, float]:
    """CPU seconds so far of each stack process (bench/intake), plus this process (load generator, and
    in the baseline phase also the baseline's worker)."""
    from bench.intake.run import stack_cpu_seconds

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {**stack_cpu_seconds(stack), "bench process": usage.ru_utime + usage.ru_stime}


def cpu_line(label: str, before: dict[str, float], after: dict[str, float], actions: int) -> str:
    """Where the CPU of one action went, by process, in ms (the profile behind the ratio)."""
    used = {k: v - before.get(k, 0.0) for k, v in after.items()}
    parts = ", ".join(
        f"{k} {v / actions * 1000:.1f}"
        for k, v in sorted(used.items(), key=lambda kv: -kv[1])
        if v / actions >= 0.00005
    )
    total = sum(used.values()) / max(actions, 1) * 1000
    return f"{label}: CPU {total:.1f} ms per action ({parts})"


async def bench(stack: Any, users: int, seconds: float, think: float, per_user: int) -> None:
    from bench.intake.run import settle

    print(f"preparing {users * per_user} cases (open + classify through intake) ...", flush=True)
    cases = await prepare_cases(stack, users, per_user)
    await nrm_phase(stack, cases, users, min(5.0, seconds), 0.0, "warm-up")
    await settle(stack)
    lines: list[str] = []
    cpu: list[str] = []
    for label, t in (("closed loop", 0.0), (f"think {think:g} s", think)):
        print(f"phase: {label}, {users} users, {seconds:g} s ...", flush=True)
        before = cpu_now(stack)
        up, rd = await nrm_phase(stack, cases, users, seconds, t, label)
        await settle(stack)  # the audit writes of the last actions belong to this phase
        lines += [up.line(), *up.error_lines(), rd.line(), *rd.error_lines()]
        if not t:
            cpu.append(
                cpu_line(
                    f"{label} (assign + inbox read)", before, cpu_now(stack), len(up.latencies)
                )
            )
    print(f"phase: baseline, {users} users, {seconds:g} s ...", flush=True)
    before = cpu_now(stack)
    base = await baseline_phase(stack, users, seconds)
    lines += [base.line(), *base.error_lines()]
    cpu.append(cpu_line("baseline (execute_update)", before, cpu_now(stack), len(base.latencies)))
    lines += cpu
    print(
        f"\n{users} users, {seconds:g} s per phase, {len(cases)} cases; {os.cpu_count()} CPUs, "
        f"{platform.machine()}, {platform.processor() or platform.system()}, load {os.getloadavg()[0]:.2f}"
    )
    for line in lines:
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument(
        "--think", type=float, default=1.0, help="mean think time between actions, seconds"
    )
    ap.add_argument("--cases-per-user", type=int, default=2)
    args = ap.parse_args()
    from tests.helpers.process_stack import running_stack

    with running_stack() as stack:
        print(f"nrm up ready in {stack.data_dir}", flush=True)
        asyncio.run(bench(stack, args.users, args.seconds, args.think, args.cases_per_user))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
