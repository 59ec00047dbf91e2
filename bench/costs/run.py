"""What one CaseWorkflow action costs Temporal, counted from real histories on the dev server, beside the
raw baseline (an empty workflow with one Update) in the same run.

    .venv/bin/python bench/costs/run.py

Starts its own `temporal server start-dev` (SQLite WAL + synchronous=full, as `nrm up`) and an embedded
PostgreSQL (for the oversight audit activity), runs the workflow worker, the oversight activity worker and
the baseline worker in this process, and counts, per action, the history events the server wrote:

  open       a case started as intake starts it, until it is idle (audit written, waiting for a deadline)
  claim      one `claim` Update on an idle case in `receive`, until the case is idle again
  assign     one `assign` Update (supervisor, to another officer) on the same case, until idle again
  lifecycle  start + the 9 Updates of bench/lifecycle (claim, 5 decisions, 3 follow-ups) until closed and idle
  baseline   the same for BenchEmptyWorkflow: its start, one Update, start + 9 Updates

Each action waits for the case to be idle (no workflow task, no activity pending) before and after, so
what is counted is the action's whole cost, including the work that runs after the Update returned.
Not a test: it prints counts (they do not depend on the machine's speed)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

WORKFLOW_QUEUE = "bench-costs-workflows"
BASELINE_QUEUE = "bench-costs-baseline"
PROVINCE = "01"
COLUMNS = (
    "events",
    "workflow tasks",
    "activities",
    "local activities",
    "other markers",
    "timers started",
    "timers fired",
    "timers cancelled",
    "SA upserts",
    "Updates",
)


@dataclass
class Cost:
    """History events of one action (or the average of several), by kind."""

    events: float = 0
    by_type: Counter[str] = field(default_factory=Counter)
    markers: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, events: Iterable[Any]) -> Cost:
        from temporalio.api.enums.v1 import EventType

        cost = cls()
        for ev in events:
            name = EventType.Name(ev.event_type).removeprefix("EVENT_TYPE_")
            cost.events += 1
            cost.by_type[name] += 1
            if ev.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
                cost.markers[ev.marker_recorded_event_attributes.marker_name] += 1
        return cost

    @staticmethod
    def mean(costs: list[Cost]) -> Cost:
        out = Cost()
        for c in costs:
            out.events += c.events / len(costs)
            for k, v in c.by_type.items():
                out.by_type[k] += v / len(costs)  # type: ignore[assignment]
            for k, v in c.markers.items():
                out.markers[k] += v / len(costs)  # type: ignore[assignment]
        return out

    def row(self) -> dict[str, float]:
        t, m = self.by_type, self.markers
        local = m.get("core_local_activity", 0)
        return {
            "events": self.events,
            "workflow tasks": t.get("WORKFLOW_TASK_COMPLETED", 0),
            "activities": t.get("ACTIVITY_TASK_SCHEDULED", 0),
            "local activities": local,
            "other markers": sum(m.values()) - local,
            "timers started": t.get("TIMER_STARTED", 0),
            "timers fired": t.get("TIMER_FIRED", 0),
            "timers cancelled": t.get("TIMER_CANCELED", 0),
            "SA upserts": t.get("UPSERT_WORKFLOW_SEARCH_ATTRIBUTES", 0),
            "Updates": t.get("WORKFLOW_EXECUTION_UPDATE_COMPLETED", 0),
        }


def fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 0.05 else f"{v:.1f}"


def table(rows: list[tuple[str, Cost]]) -> str:
    lines = ["| action | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, cost in rows:
        r = cost.row()
        lines.append(f"| {name} | " + " | ".join(fmt(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


async def idle(client: Any, workflow_id: str) -> int:
    """Wait until the workflow has no pending workflow task or activity and its history stopped growing;
    returns its history length."""
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

    req = DescribeWorkflowExecutionRequest(
        namespace=client.namespace, execution=WorkflowExecution(workflow_id=workflow_id)
    )
    last, stable = -1, 0
    for _ in range(2000):
        desc = await client.workflow_service.describe_workflow_execution(req)
        length = desc.workflow_execution_info.history_length
        busy = desc.HasField("pending_workflow_task") or bool(desc.pending_activities)
        stable = stable + 1 if (not busy and length == last) else 0
        if stable >= 3:
            return int(length)
        last = length
        await asyncio.sleep(0.03)
    raise RuntimeError(f"{workflow_id} never became idle")


async def measured(
    client: Any, workflow_id: str, action: Callable[[], Awaitable[Any]], fresh: bool = False
) -> Cost:
    """The history events that `action` adds to the workflow (from idle to idle)."""
    before = 0 if fresh else await idle(client, workflow_id)
    await action()
    await idle(client, workflow_id)
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    return Cost.of(history.events[before:])


async def history_cost(client: Any, workflow_id: str) -> Cost:
    return Cost.of((await client.get_workflow_handle(workflow_id).fetch_history()).events)


# ---- what a caseworker does, shared with bench/lifecycle ------------------------------------------------
def case_input(case_id: str, *, oversight_task_queue: str | None = None) -> Any:
    """The CaseInput that intake builds for a new case (services/intake/opening.py), hotline channel."""
    from shared.contract import CaseFacts, CaseInput
    from shared.domain import AgencyRole, Channel

    facts = CaseFacts(
        case_id=case_id,
        person_ref=f"p-{uuid.uuid4().hex[:12]}",
        province=PROVINCE,
        channel=Channel.hotline_111,
        opened_by=actor(AgencyRole.hotline),
        opened_at=datetime.now(UTC),
    )
    extra = {"oversight_task_queue": oversight_task_queue} if oversight_task_queue else {}
    return CaseInput(facts=facts, **extra)


def actor(agency: Any, *roles: Any, user: str | None = None) -> Any:
    from shared.contract import Actor
    from shared.domain import Role

    return Actor(
        user_id=user or f"{agency.value}-officer",
        agency=agency,
        roles=frozenset(roles or (Role.caseworker,)),
        province=PROVINCE,
    )


async def start_case(client: Any, case_id: str, task_queue: str) -> Any:
    """Start as intake does: the input from the committed row with the policy resolved (services/intake/
    opening.py), the search attributes known at opening."""
    from services.intake.opening import search_attributes
    from workflows.case_workflow import CaseWorkflow
    from workflows.policy_activity import case_policy_for

    inp = case_input(case_id)
    inp = inp.model_copy(update={"policy": case_policy_for(inp.facts)})
    return await client.start_workflow(
        CaseWorkflow.run,
        inp,
        id=case_id,
        task_queue=task_queue,
        search_attributes=search_attributes(inp.facts),
    )


async def lifecycle_updates(handle: Any, rpc_timeout: timedelta) -> tuple[int, Any]:
    """claim, receive -> verify -> identify (actual victim, already safe: rescue skipped) -> protect ->
    the follow-ups -> reintegrate -> closed. Returns (Updates sent, final state)."""
    from shared.contract import (
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
    from shared.domain import AgencyRole, Channel, DecisionMakingOrg, TraffickingStatus
    from workflows.case_workflow import CaseWorkflow

    updates = 0

    async def send(method: Any, cmd: Any) -> Any:
        nonlocal updates
        updates += 1
        return await handle.execute_update(method, cmd, rpc_timeout=rpc_timeout)

    async def decide(state: Any, decision: Any) -> Any:
        return await send(
            CaseWorkflow.decide,
            Decide(
                actor=actor(state.owner_agency),
                decision=decision,
                justification="recorded by the owning agency",
            ),
        )

    state = await send(CaseWorkflow.claim, Claim(actor=actor(AgencyRole.hotline)))
    state = await decide(
        state,
        ReceiveDecision(
            classification=Classification.trafficking_suspected, channel=Channel.hotline_111
        ),
    )
    state = await decide(state, VerifyDecision(result=VerifyResult.confirmed))
    state = await decide(
        state,
        IdentifyDecision(
            status=TraffickingStatus.ActualVictimOfTrafficking,
            deciding_org=DecisionMakingOrg.Police,
            evidence=[EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)],
        ),
    )
    state = await decide(state, ProtectDecision(measures=["safe_shelter"]))
    for f in state.follow_ups:
        state = await send(
            CaseWorkflow.record_follow_up,
            RecordFollowUp(
                actor=actor(state.owner_agency), follow_up_id=f.follow_up_id, outcome="done"
            ),
        )
    state = await decide(
        state, ReintegrateDecision(support_plan_ref="plan-1", reason="reintegrated at home")
    )
    return updates, state


def policy_without_reflection(work: Path) -> Path:
    """A copy of policy.yaml without the 30-day reflection period (it would hold every case in identify)."""
    policy = (ROOT / "shared" / "policy.yaml").read_text()
    policy = re.sub(r"(reflection_period:\n\s+enabled:) true", r"\1 false", policy)
    assert "enabled: false" in policy, (
        "policy.yaml changed shape: reflection_period.enabled not found"
    )
    (work / "policy.yaml").write_text(policy)
    return work / "policy.yaml"


# ---- the run ---------------------------------------------------------------------------------------------
async def bench(work: Path) -> list[tuple[str, Cost]]:
    import importlib

    from temporalio.client import Client
    from temporalio.worker import PollerBehaviorAutoscaling, Worker

    from bench.lifecycle.run import free_port
    from nrm.embedded import start_postgres, start_temporal, stop_postgres, terminate
    from services.oversight.activities import build_activities as oversight_activities
    from shared.config import Settings
    from shared.contract import Assign, Claim
    from shared.crypto import KeyRing
    from shared.db import create_pool, migrate
    from shared.domain import AgencyRole, Role, Stage
    from shared.runtime import Runtime
    from shared.temporal import OVERSIGHT_TASK_QUEUE, ensure_search_attributes, make_data_converter
    from workflows.case_workflow import CaseWorkflow
    from workflows.worker import build_worker

    baseline: Any = importlib.import_module("bench.lifecycle.run").BenchEmptyWorkflow
    rpc_timeout = timedelta(seconds=30)
    print("starting PostgreSQL and the Temporal dev server ...", flush=True)
    db_url = await asyncio.to_thread(start_postgres, work)
    await migrate(db_url)
    port = free_port()
    temporal = start_temporal(work, port, free_port(), None, work / "temporal.log")
    pool = await create_pool(db_url, 2, 10)
    rows: list[tuple[str, Cost]] = []
    try:
        ring = KeyRing.generate()
        client = await Client.connect(f"127.0.0.1:{port}", data_converter=make_data_converter(ring))
        await ensure_search_attributes(client)
        runtime = Runtime(Settings(), ring, pool, client)
        async with (
            build_worker(client, WORKFLOW_QUEUE),
            Worker(
                client, task_queue=OVERSIGHT_TASK_QUEUE, activities=oversight_activities(runtime)
            ),
            Worker(
                client,
                task_queue=BASELINE_QUEUE,
                workflows=[baseline],
                workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            ),
        ):
            tag = uuid.uuid4().hex[:6]
            cid = f"costs-{tag}-1"
            handle: Any = None

            async def open_case() -> None:
                nonlocal handle
                handle = await start_case(client, cid, WORKFLOW_QUEUE)

            rows.append(("open", await measured(client, cid, open_case, fresh=True)))
            rows.append(
                (
                    "claim",
                    await measured(
                        client,
                        cid,
                        lambda: handle.execute_update(
                            CaseWorkflow.claim,
                            Claim(actor=actor(AgencyRole.hotline)),
                            rpc_timeout=rpc_timeout,
                        ),
                    ),
                )
            )
            rows.append(
                (
                    "assign",
                    await measured(
                        client,
                        cid,
                        lambda: handle.execute_update(
                            CaseWorkflow.assign,
                            Assign(
                                actor=actor(
                                    AgencyRole.hotline, Role.supervisor, user="hl-supervisor"
                                ),
                                assignee_user_id="hl-officer-2",
                            ),
                            rpc_timeout=rpc_timeout,
                        ),
                    ),
                )
            )

            lid = f"costs-{tag}-2"
            life = await start_case(client, lid, WORKFLOW_QUEUE)
            n, state = await lifecycle_updates(life, rpc_timeout)
            assert state.stage == Stage.closed, state.stage
            await idle(client, lid)
            rows.append((f"lifecycle (start + {n} Updates)", await history_cost(client, lid)))

            bid = f"costs-{tag}-b1"
            bhandle: Any = None

            async def start_empty() -> None:
                nonlocal bhandle
                bhandle = await client.start_workflow(
                    baseline.run, id=bid, task_queue=BASELINE_QUEUE
                )

            rows.append(("baseline: start", await measured(client, bid, start_empty, fresh=True)))
            rows.append(
                (
                    "baseline: Update",
                    await measured(
                        client,
                        bid,
                        lambda: bhandle.execute_update(baseline.bump, 1, rpc_timeout=rpc_timeout),
                    ),
                )
            )
            b2 = await client.start_workflow(
                baseline.run, id=f"costs-{tag}-b2", task_queue=BASELINE_QUEUE
            )
            for _ in range(n):
                await b2.execute_update(baseline.bump, 1, rpc_timeout=rpc_timeout)
            await idle(client, b2.id)
            rows.append((f"baseline: start + {n} Updates", await history_cost(client, b2.id)))
            for wid in (cid, lid, bid, b2.id):
                await client.get_workflow_handle(wid).terminate()
    finally:
        await pool.close()
        terminate(temporal.pid)
        stop_postgres(work)
    return rows


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="nrm-bench-costs-"))
    for key in [k for k in os.environ if k.startswith("NRM_")]:
        del os.environ[key]
    os.environ["NRM_POLICY_FILE"] = str(policy_without_reflection(work))
    os.environ["NRM_DATA_DIR"] = str(work)
    import logging

    logging.basicConfig(level=logging.WARNING)
    try:
        rows = asyncio.run(bench(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
