"""The real thing: `nrm up` as a subprocess (embedded PostgreSQL, Temporal dev server, four services,
the workflow worker, the codec server), a case opened through Temporal, the supervisor SIGKILLed and
cleaned up with `nrm down`, then `nrm up` again on the same data directory: the case and its audit
trail are still there and the workflow carries on. Finally `nrm down` stops everything."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from shared.config import SERVICE_NAMES
from shared.contract import CaseInput, Classification, Decide, ReceiveDecision
from shared.crypto import load_keyring
from shared.domain import AgencyRole, Channel, Stage
from shared.temporal import WORKFLOW_TASK_QUEUE, make_data_converter
from tests.helpers.process_stack import RunningStack, new_stack
from tests.helpers.workflow_harness import actor, facts
from workflows.case_workflow import CaseWorkflow

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack() -> Iterator[RunningStack]:
    s = new_stack()
    try:
        yield s
    finally:  # whatever happens in the test, leave no server behind
        s.down()
        shutil.rmtree(s.data_dir, ignore_errors=True)


@asynccontextmanager
async def temporal_client(s: RunningStack) -> AsyncIterator[Client]:
    ring = load_keyring(s.data_dir / "keyring.json")
    yield await Client.connect(s.temporal_address, data_converter=make_data_converter(ring))


async def audit_events(s: RunningStack, case_id: str, at_least: int) -> list[asyncpg.Record]:
    """The case's rows in oversight.case_events, once at least `at_least` have landed."""
    conn = await asyncpg.connect(s.state()["database_url"])
    try:
        for _ in range(600):
            rows = await conn.fetch(
                "SELECT seq, kind, hash FROM oversight.case_events WHERE case_id = $1 ORDER BY seq",
                case_id,
            )
            if len(rows) >= at_least:
                return list(rows)
            await asyncio.sleep(0.1)
        raise AssertionError(
            f"{case_id}: {len(rows)} audit events, expected {at_least}\n{s.diagnostics()}"
        )
    finally:
        await conn.close()


async def start(stack: RunningStack) -> subprocess.Popen[bytes]:
    """`nrm up`, ready: every service's /readyz answers 200 and the supervisor reported ready."""
    stack.up()
    await asyncio.to_thread(stack.wait_ready)
    assert stack.proc is not None
    return stack.proc


async def test_nrm_up_survives_kill_and_restart(stack: RunningStack) -> None:
    # ---- first run: everything starts, a case opens and is audited -----------------------------
    supervisor = await start(stack)
    first_state = stack.state()
    assert first_state["supervisor_pid"] == supervisor.pid
    assert set(first_state["children"]) == {
        *SERVICE_NAMES,
        "workflow-worker",
        "codec-server",
        "console",
        "notifications",
        "mail-sink",
    }

    case_id = f"case-e2e-{uuid.uuid4().hex[:12]}"
    async with temporal_client(stack) as client:
        handle = await client.start_workflow(
            CaseWorkflow.run,
            CaseInput(facts=facts(case_id)),
            id=case_id,
            task_queue=WORKFLOW_TASK_QUEUE,
        )
        [first_event] = await audit_events(stack, case_id, 1)
        assert first_event["kind"] == "case_opened" and first_event["seq"] == 1
        opened = await handle.query(
            CaseWorkflow.state
        )  # after the opening was recorded: a settled state
        assert (
            opened.case_id == case_id
            and opened.stage == Stage.receive
            and opened.last_event_seq == 1
        )

    # ---- kill -9 the supervisor: its children live on until `nrm down` cleans up -----------------
    supervisor.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(supervisor.wait, 30) == -signal.SIGKILL
    assert (stack.data_dir / "state.json").exists(), (
        "a killed supervisor cannot remove its state file"
    )
    down = await asyncio.to_thread(stack.down)
    assert down.returncode == 0, down.stdout + down.stderr
    assert "supervisor is gone" in down.stdout
    stack.assert_all_stopped(first_state)

    # ---- second run on the same data directory: the case and its audit trail are still there --------
    supervisor = await start(stack)
    async with temporal_client(stack) as client:
        handle = client.get_workflow_handle(case_id)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.workflow_type == "CaseWorkflow"
        again = await handle.query(CaseWorkflow.state)
        assert again.case_id == case_id and again.stage == Stage.receive
        assert again == opened, "the restarted worker rebuilt exactly the same state from history"

        events = await audit_events(stack, case_id, 1)
        assert (events[0]["seq"], events[0]["kind"], events[0]["hash"]) == (
            1,
            "case_opened",
            first_event["hash"],
        )

        # and it carries on: the restarted workers process an Update and audit it
        decided = await handle.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(AgencyRole.hotline),
                justification="caller describes recruitment abroad",
                decision=ReceiveDecision(
                    classification=Classification.trafficking_suspected, channel=Channel.hotline_111
                ),
            ),
        )
        assert decided.stage == Stage.verify
    events = await audit_events(stack, case_id, 2)
    assert [e["kind"] for e in events][:2] == ["case_opened", "stage_decided"]

    # ---- `nrm down` (SIGTERM to a live supervisor): a clean stop, nothing left running ---------------
    second_state = stack.state()
    down = await asyncio.to_thread(stack.down)
    assert down.returncode == 0, down.stdout + down.stderr + stack.diagnostics()
    assert await asyncio.to_thread(supervisor.wait, 60) == 0, stack.diagnostics()
    assert "stopping ..." in (stack.data_dir / "up.out").read_text()
    stack.assert_all_stopped(second_state)
