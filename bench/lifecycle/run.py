"""Lifecycle benchmark: the CaseWorkflow's Update latency and full-lifecycle throughput, beside a raw
Temporal baseline (an empty workflow with one Update) measured on the same server in the same run.

    .venv/bin/python bench/lifecycle/run.py [--updates 300] [--cases 100] [--concurrency 20] [--no-write]

Starts its own `temporal server start-dev` (SQLite WAL + synchronous=full, as `nrm up` does) and an
embedded PostgreSQL (for the oversight audit activity) in a temporary folder; runs the workflow worker
and the oversight activity worker in this process.

  (a) Update round trip of `claim` / `assign` on open cases: sequential, round robin over 50 cases.
  (b) Cases per second through the whole lifecycle at a given concurrency: open -> receive -> verify ->
      identify (ActualVictim, one evidence; already safe so rescue is skipped) -> protect -> reintegrate
      (the 3 follow-ups recorded) -> closed. 1 start + 8 Updates per case, each audited in PostgreSQL.
  (c) Baseline: an empty workflow with one Update: starts/s, sequential Update round trip, and
      "start + 8 Updates" per workflow at the same concurrency as (b).

The reflection period (30 days after verification in policy.yaml) is switched off in a copy of the policy
file: on a real clock it would hold every case in `identify` for a month.

Writes the figures under "## Lifecycle" in docs/benchmarks.md (with the machine). Not a test: asserts only
that every case reached `closed`."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from temporalio import workflow


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


# Module level runs again inside the workflow sandbox (for the baseline workflow): no file system there.
if not workflow.unsafe.in_sandbox() and str(repo_root()) not in sys.path:
    sys.path.insert(0, str(repo_root()))

WORKFLOW_QUEUE = "bench-lifecycle-workflows"
BASELINE_QUEUE = "bench-lifecycle-baseline"
PROVINCE = "01"


# ---- the raw-Temporal baseline (sandboxed like CaseWorkflow; this module imports only temporalio at top) --
@workflow.defn(name="BenchEmptyWorkflow")
class BenchEmptyWorkflow:
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


# ---- helpers -----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    return {
        "cpus": str(os.cpu_count()),
        "model": model,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


async def bounded(
    n: int, concurrency: int, job: Callable[[int], Awaitable[Any]]
) -> tuple[float, list[Any]]:
    """Run job(0..n-1) with at most `concurrency` in flight; returns (wall seconds, results)."""
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> Any:
        async with sem:
            return await job(i)

    t0 = time.perf_counter()
    results = await asyncio.gather(*(one(i) for i in range(n)))
    return time.perf_counter() - t0, list(results)


async def sequential(n: int, op: Callable[[int], Awaitable[Any]]) -> list[float]:
    """Latencies in ms of n sequential calls."""
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        await op(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cpu_seconds(temporal_pid: int, work: Path) -> dict[str, float]:
    """CPU seconds so far of this process (client, workflow worker, oversight activities, baseline worker),
    the Temporal dev server and the embedded PostgreSQL (postmaster and its backends)."""
    import psutil

    from nrm.embedded import postgres_pid

    def total(p: Any) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    out = {
        "bench process (client + workers)": time.process_time(),
        "Temporal dev server": total(psutil.Process(temporal_pid)),
    }
    pg = postgres_pid(work)
    if pg:
        root = psutil.Process(pg)
        procs = [root, *root.children(recursive=True)]
        out["PostgreSQL"] = sum(total(p) for p in procs if p.is_running())
    return out


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


# ---- the benchmark ----------------------------------------------------------------------------------
async def bench(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    # Heavy imports here, not at module top: the workflow sandbox re-imports this module for the baseline.
    import importlib
    from datetime import timedelta

    from temporalio.client import Client, WorkflowUpdateFailedError
    from temporalio.exceptions import ApplicationError
    from temporalio.service import RPCError
    from temporalio.worker import PollerBehaviorAutoscaling, Worker

    from bench.costs.run import Cost
    from nrm.embedded import start_postgres, start_temporal, stop_postgres, terminate
    from services.intake.opening import search_attributes
    from services.oversight.activities import build_activities as oversight_activities
    from shared.config import Settings
    from shared.contract import (
        Actor,
        Assign,
        CaseFacts,
        CaseInput,
        CaseState,
        Claim,
        Classification,
        Decide,
        EvidenceKind,
        EvidenceRef,
        IdentifyDecision,
        ProtectDecision,
        ReceiveDecision,
        RecordFollowUp,
        ReintegrateDecision,
        VerifyDecision,
        VerifyResult,
    )
    from shared.crypto import KeyRing
    from shared.db import create_pool, migrate
    from shared.domain import AgencyRole, Channel, DecisionMakingOrg, Role, Stage, TraffickingStatus
    from shared.runtime import Runtime
    from shared.temporal import OVERSIGHT_TASK_QUEUE, ensure_search_attributes, make_data_converter
    from workflows.case_workflow import CaseWorkflow
    from workflows.policy_activity import case_policy_for
    from workflows.worker import build_worker

    # this file under its importable name (not __main__), so the sandbox can load the baseline workflow
    baseline: Any = importlib.import_module("bench.lifecycle.run").BenchEmptyWorkflow
    rpc_timeout = timedelta(seconds=30)

    def actor(agency: AgencyRole, *roles: Role, user: str | None = None) -> Actor:
        return Actor(
            user_id=user or f"{agency.value}-officer",
            agency=agency,
            roles=frozenset(roles or (Role.caseworker,)),
            province=PROVINCE,
        )

    def case_input(case_id: str) -> CaseInput:
        """As intake builds it (services/intake/opening.py): facts from the committed row, policy resolved."""
        facts = CaseFacts(
            case_id=case_id,
            person_ref=f"p-{uuid.uuid4().hex[:12]}",
            province=PROVINCE,
            channel=Channel.hotline_111,
            opened_by=actor(AgencyRole.hotline),
            opened_at=datetime.now(UTC),
        )
        return CaseInput(facts=facts, policy=case_policy_for(facts))

    async def start_case(cid: str) -> Any:
        inp = case_input(cid)
        return await client.start_workflow(
            CaseWorkflow.run,
            inp,
            id=cid,
            task_queue=WORKFLOW_QUEUE,
            search_attributes=search_attributes(inp.facts),
        )

    async def settled(handle: Any) -> CaseState:
        """The case has resolved its policy and recorded its opening (Updates are accepted)."""
        for _ in range(600):
            try:
                state: CaseState = await handle.query(CaseWorkflow.state)
                if state.last_event_seq >= 1:
                    return state
            except RPCError:
                pass
            await asyncio.sleep(0.05)
        raise RuntimeError(f"{handle.id} never settled")

    async def update(handle: Any, method: Any, cmd: Any) -> CaseState:
        """execute_update, retrying only the "still opening" conflict of a case started a moment ago."""
        while True:
            try:
                result: CaseState = await handle.execute_update(
                    method, cmd, rpc_timeout=rpc_timeout
                )
                return result
            except WorkflowUpdateFailedError as exc:
                if isinstance(exc.cause, ApplicationError) and "still opening" in exc.cause.message:
                    await asyncio.sleep(0.02)
                    continue
                raise

    print("starting PostgreSQL and the Temporal dev server ...", flush=True)
    db_url = await asyncio.to_thread(start_postgres, work)  # sync: it runs its own event loop
    await migrate(db_url)
    temporal_port = free_port()
    temporal = start_temporal(work, temporal_port, free_port(), None, work / "temporal.log")
    pool = await create_pool(db_url, 2, 10)
    results: dict[str, Any] = {}
    try:
        ring = KeyRing.generate()
        client = await Client.connect(
            f"127.0.0.1:{temporal_port}", data_converter=make_data_converter(ring)
        )
        await ensure_search_attributes(client)
        runtime = Runtime(Settings(), ring, pool, client)
        async with (
            build_worker(client, WORKFLOW_QUEUE),
            Worker(
                client,
                task_queue=OVERSIGHT_TASK_QUEUE,
                activities=oversight_activities(runtime),
                max_concurrent_activities=50,
            ),
            Worker(
                client,
                task_queue=BASELINE_QUEUE,
                workflows=[baseline],
                workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            ),
        ):
            run_id = uuid.uuid4().hex[:6]

            # ---- CaseWorkflow starts (opening the cases used by (a)) ------------------------------
            n_open = 100
            print(f"(a) opening {n_open} cases at concurrency {args.concurrency} ...", flush=True)

            async def open_case(i: int) -> Any:
                return await start_case(f"bench-a-{run_id}-{i}")

            wall, handles = await bounded(n_open, args.concurrency, open_case)
            results["case_starts_per_s"] = n_open / wall
            for h in handles:
                await settled(h)

            # ---- (a) claim / assign round trips, sequential -------------------------------------------
            officer = actor(AgencyRole.hotline, user="hl-officer")
            supervisor = actor(AgencyRole.hotline, Role.supervisor, user="hl-supervisor")
            targets = handles[:50]

            async def claim(i: int) -> Any:
                return await update(
                    targets[i % len(targets)], CaseWorkflow.claim, Claim(actor=officer)
                )

            async def assign(i: int) -> Any:
                return await update(
                    targets[i % len(targets)],
                    CaseWorkflow.assign,
                    Assign(actor=supervisor, assignee_user_id="hl-officer"),
                )

            await sequential(
                len(targets), claim
            )  # warm-up; every target is now claimed by hl-officer
            half = args.updates // 2
            print(
                f"(a) {half} claim + {args.updates - half} assign Updates, sequential ...",
                flush=True,
            )
            claims = await sequential(half, claim)
            assigns = await sequential(args.updates - half, assign)
            both = claims + assigns
            results["claim"] = (pct(claims, 50), pct(claims, 99))
            results["assign"] = (pct(assigns, 50), pct(assigns, 99))
            results["case_update"] = (pct(both, 50), pct(both, 99), len(both))

            # ---- (b) full lifecycle ----------------------------------------------------------------------
            print(
                f"(b) {args.cases} cases through the whole lifecycle at concurrency {args.concurrency} ...",
                flush=True,
            )

            async def lifecycle(i: int) -> tuple[float, int, CaseState]:
                t0 = time.perf_counter()
                handle = await start_case(f"bench-b-{run_id}-{i}")
                updates = 0

                async def decide(state: CaseState, decision: Any) -> CaseState:
                    nonlocal updates
                    updates += 1
                    return await update(
                        handle,
                        CaseWorkflow.decide,
                        Decide(
                            actor=actor(state.owner_agency),
                            decision=decision,
                            justification="recorded by the owning agency",
                        ),
                    )

                state = await update(
                    handle, CaseWorkflow.claim, Claim(actor=actor(AgencyRole.hotline))
                )
                updates += 1
                state = await decide(
                    state,
                    ReceiveDecision(
                        classification=Classification.trafficking_suspected,
                        channel=Channel.hotline_111,
                    ),
                )
                state = await decide(state, VerifyDecision(result=VerifyResult.confirmed))
                state = await decide(
                    state,
                    IdentifyDecision(
                        status=TraffickingStatus.ActualVictimOfTrafficking,
                        deciding_org=DecisionMakingOrg.Police,
                        evidence=[
                            EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)
                        ],
                    ),
                )
                assert state.stage == Stage.protect, state.stage
                state = await decide(state, ProtectDecision(measures=["safe_shelter"]))
                assert state.stage == Stage.reintegrate and state.follow_ups, (
                    state.stage,
                    state.follow_ups,
                )
                for f in state.follow_ups:
                    state = await update(
                        handle,
                        CaseWorkflow.record_follow_up,
                        RecordFollowUp(
                            actor=actor(state.owner_agency),
                            follow_up_id=f.follow_up_id,
                            outcome="done",
                        ),
                    )
                    updates += 1
                state = await decide(
                    state,
                    ReintegrateDecision(support_plan_ref="plan-1", reason="reintegrated at home"),
                )
                return (time.perf_counter() - t0) * 1000, updates, state

            cpu0 = cpu_seconds(temporal.pid, work)
            wall, done = await bounded(args.cases, args.concurrency, lifecycle)
            closed = [s for _, _, s in done if s.stage == Stage.closed]
            assert len(closed) == args.cases, f"{len(closed)} of {args.cases} cases closed"
            per_case = [ms for ms, _, _ in done]
            n_updates = sum(u for _, u, _ in done)
            life: dict[str, Any] = {
                "cases_per_s": args.cases / wall,
                "wall_s": wall,
                "p50_ms": pct(per_case, 50),
                "p99_ms": pct(per_case, 99),
                "updates_per_case": n_updates / args.cases,
                "updates_per_s": n_updates / wall,
            }
            results["lifecycle"] = life

            # the audit rows land after the Updates return (the workflow flushes them to PostgreSQL)
            expected = args.cases + n_updates  # case_opened + one event per Update
            landed = 0
            for _ in range(600):
                landed = await pool.fetchval(
                    "SELECT count(*) FROM oversight.case_events WHERE case_id LIKE $1",
                    f"bench-b-{run_id}-%",
                )
                if landed >= expected:
                    break
                await asyncio.sleep(0.1)
            life["audit_events"], life["audit_expected"] = landed, expected
            life["cpu_ms"] = {
                k: v * 1000 / args.cases
                for k, v in cpu_delta(cpu0, cpu_seconds(temporal.pid, work)).items()
            }
            life["cost"] = Cost.mean(
                [
                    Cost.of(
                        (
                            await client.get_workflow_handle(
                                f"bench-b-{run_id}-{i}"
                            ).fetch_history()
                        ).events
                    )
                    for i in range(args.cases)
                ]
            )

            # ---- (c) raw Temporal baseline ------------------------------------------------------------------
            n_base = 100
            print(
                f"(c) baseline: {n_base} empty-workflow starts at concurrency {args.concurrency} ...",
                flush=True,
            )

            async def start_empty(i: int) -> Any:
                return await client.start_workflow(
                    baseline.run, id=f"bench-c-{run_id}-{i}", task_queue=BASELINE_QUEUE
                )

            wall, empties = await bounded(n_base, args.concurrency, start_empty)
            results["base_starts_per_s"] = n_base / wall
            base_targets = empties[:50]

            async def bump(i: int) -> Any:
                return await base_targets[i % len(base_targets)].execute_update(
                    baseline.bump, 1, rpc_timeout=rpc_timeout
                )

            await sequential(len(base_targets), bump)  # warm-up
            print(f"(c) baseline: {args.updates} sequential Updates ...", flush=True)
            base_lat = await sequential(args.updates, bump)
            results["base_update"] = (pct(base_lat, 50), pct(base_lat, 99), len(base_lat))

            per_wf = round(life["updates_per_case"])
            print(
                f"(c) baseline: {args.cases} x (start + {per_wf} Updates) at concurrency {args.concurrency} ...",
                flush=True,
            )

            async def base_life(i: int) -> float:
                t0 = time.perf_counter()
                h = await client.start_workflow(
                    baseline.run, id=f"bench-c2-{run_id}-{i}", task_queue=BASELINE_QUEUE
                )
                for _ in range(per_wf):
                    await h.execute_update(baseline.bump, 1, rpc_timeout=rpc_timeout)
                return (time.perf_counter() - t0) * 1000

            cpu0 = cpu_seconds(temporal.pid, work)
            wall, base_per = await bounded(args.cases, args.concurrency, base_life)
            results["base_life"] = {
                "per_s": args.cases / wall,
                "p50_ms": pct(base_per, 50),
                "p99_ms": pct(base_per, 99),
                "updates": per_wf,
            }
            results["base_life"]["cpu_ms"] = {
                k: v * 1000 / args.cases
                for k, v in cpu_delta(cpu0, cpu_seconds(temporal.pid, work)).items()
            }
            results["base_life"]["cost"] = Cost.mean(
                [
                    Cost.of(
                        (
                            await client.get_workflow_handle(
                                f"bench-c2-{run_id}-{i}"
                            ).fetch_history()
                        ).events
                    )
                    for i in range(args.cases)
                ]
            )
    finally:
        await pool.close()
        terminate(temporal.pid)
        stop_postgres(work)
    return results


def report(args: argparse.Namespace, r: dict[str, Any], mach: dict[str, str]) -> str:
    life, base_life = r["lifecycle"], r["base_life"]
    cu, bu = r["case_update"], r["base_update"]
    rows = [
        (
            "Update round trip, sequential (ms)",
            f"claim {r['claim'][0]:.1f} / {r['claim'][1]:.1f}; "
            f"assign {r['assign'][0]:.1f} / {r['assign'][1]:.1f}; all {cu[0]:.1f} / {cu[1]:.1f} (n={cu[2]})",
            f"{bu[0]:.1f} / {bu[1]:.1f} (n={bu[2]})",
            f"{cu[0] / bu[0]:.2f}x / {cu[1] / bu[1]:.2f}x",
        ),
        (
            f"Starts/s (concurrency {args.concurrency})",
            f"{r['case_starts_per_s']:.0f}",
            f"{r['base_starts_per_s']:.0f}",
            f"{r['case_starts_per_s'] / r['base_starts_per_s']:.2f}x",
        ),
        (
            f"Full lifecycle: cases/s (concurrency {args.concurrency}, {args.cases} cases)",
            f"{life['cases_per_s']:.1f} ({life['updates_per_s']:.0f} Updates/s)",
            f"{base_life['per_s']:.1f} (start + {base_life['updates']} Updates)",
            f"{life['cases_per_s'] / base_life['per_s']:.2f}x",
        ),
        (
            "Lifecycle per case, p50 / p99 (ms)",
            f"{life['p50_ms']:.0f} / {life['p99_ms']:.0f}",
            f"{base_life['p50_ms']:.0f} / {base_life['p99_ms']:.0f}",
            f"{life['p50_ms'] / base_life['p50_ms']:.2f}x",
        ),
    ]
    lines = ["| measure | CaseWorkflow | raw Temporal baseline | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    from bench.costs.run import table

    counts = table(
        [("CaseWorkflow, per case", life["cost"]), ("baseline, per workflow", base_life["cost"])]
    )
    cpu_rows = ["| process | CaseWorkflow lifecycle | baseline lifecycle |", "|---|---|---|"]
    for proc in life["cpu_ms"]:
        cpu_rows.append(
            f"| {proc} | {life['cpu_ms'][proc]:.1f} | {base_life['cpu_ms'].get(proc, 0.0):.1f} |"
        )
    cpu_rows.append(
        f"| total | {sum(life['cpu_ms'].values()):.1f} | {sum(base_life['cpu_ms'].values()):.1f} |"
    )
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "\n".join(
        [
            "## Lifecycle",
            "",
            f"Measured {when} with `.venv/bin/python bench/lifecycle/run.py --updates {args.updates} "
            f"--cases {args.cases} "
            f"--concurrency {args.concurrency}` (see Machine; load average at start {mach['load']}, other people's "
            "work was running on the same 2 cores, so treat the figures as a floor).",
            "",
            "Setup: `temporal server start-dev` 1.9.1 with SQLite WAL + `synchronous=full` (as `nrm up`), embedded "
            "PostgreSQL 18 for the audit activity; client, workflow worker (sandboxed, autoscaling pollers), oversight "
            "activity worker and the baseline worker all in the benchmark's one Python process; payloads encrypted by "
            "the key-ring codec in both columns. The reflection period is switched off in a policy copy (it holds a "
            "case 30 days).",
            "",
            *lines,
            "",
            f"History of one full lifecycle (mean over the {args.cases} cases of the run, from their histories on the "
            "dev server; at concurrency an Update that arrives while the audit activity runs shares its batch):",
            "",
            counts,
            "",
            "CPU per lifecycle (ms per case, from the phase's start until its audit rows had landed):",
            "",
            *cpu_rows,
            "",
            "- Update round trip: sequential, round robin over 50 open cases (`claim` by the owner, `assign` by a "
            "supervisor; both validated, state changed, one audit event queued). Baseline: an empty sandboxed workflow "
            "whose one Update (with a validator) bumps a counter. p50 / p99.",
            f"- Full lifecycle: start, claim, receive -> verify -> identify (ActualVictimOfTrafficking, one evidence, "
            f"rescue skipped as already safe) -> protect -> {life['updates_per_case'] - 6:.0f} follow-ups recorded -> "
            f"reintegrate -> closed; {life['updates_per_case']:.0f} Updates per case, every one audited: "
            f"{life['audit_events']} of {life['audit_expected']} expected `oversight.case_events` rows had landed "
            "when measured. Baseline: start + the same number of Updates on the empty workflow.",
            "- What the ratio costs: each CaseWorkflow Update runs the pydantic validators of the command model, the "
            "access rules, the state snapshot (returned and encrypted), a search-attribute upsert, and afterwards the "
            "audit activity (a PostgreSQL transaction with the hash chain) which adds workflow tasks of its own.",
            "",
        ]
    )


def write_doc(section: str, mach: dict[str, str]) -> Path:
    """Replace (or add) the Lifecycle section and refresh the Machine section; other sections are kept."""
    path = repo_root() / "docs" / "benchmarks.md"
    text = (
        path.read_text()
        if path.exists()
        else (
            "# Benchmarks\n\nEach section names its command; run them on a quiet machine. Figures from one run.\n\n"
        )
    )
    machine_md = "\n".join(
        [
            "## Machine",
            "",
            f"- CPU: {mach['cpus']} x {mach['model']}",
            f"- Memory: {mach['memory']}",
            f"- OS: {mach['os']}; Python {mach['python']}; temporalio 1.35.0; Temporal CLI 1.9.1 (dev server)",
            "- Shared: the machine has 2 cores used by several people at once; absolute figures vary between runs, "
            "ratios measured in one run are steadier.",
            "",
        ]
    )
    for heading, body in (("## Machine", machine_md), ("## Lifecycle", section)):
        pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _m, b=body: b + "\n", text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + body + "\n"
    path.write_text(text.rstrip("\n") + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--updates", type=int, default=300, help="sequential Updates for (a) and (c)"
    )
    parser.add_argument(
        "--cases", type=int, default=100, help="cases through the lifecycle for (b)"
    )
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument(
        "--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nrm-bench-lifecycle-"))
    policy = (repo_root() / "shared" / "policy.yaml").read_text()
    policy = re.sub(r"(reflection_period:\n\s+enabled:) true", r"\1 false", policy)
    assert "enabled: false" in policy, (
        "policy.yaml changed shape: reflection_period.enabled not found"
    )
    (work / "policy.yaml").write_text(policy)
    for key in [k for k in os.environ if k.startswith("NRM_")]:
        del os.environ[key]
    os.environ["NRM_POLICY_FILE"] = str(work / "policy.yaml")
    os.environ["NRM_DATA_DIR"] = str(work)

    import logging
    import shutil

    logging.basicConfig(level=logging.WARNING)
    mach = machine()
    try:
        r = asyncio.run(bench(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    section = report(args, r, mach)
    print()
    print(section)
    if not args.no_write:
        print(f"written to {write_doc(section, mach)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
