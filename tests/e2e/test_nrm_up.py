"""The real thing: `nrm up` as a subprocess (embedded PostgreSQL, Temporal dev server, four services,
the workflow worker, the codec server), a case opened through Temporal, the supervisor SIGKILLed and
cleaned up with `nrm down`, then `nrm up` again on the same data directory: the case and its audit
trail are still there and the workflow carries on. Finally `nrm down` stops everything."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from shared.config import REPO_ROOT, SERVICE_NAMES
from shared.crypto import load_keyring
from shared.domain import AgencyRole, Channel, Stage
from shared.embedded import pid_alive, port_open, postgres_pid
from shared.temporal import WORKFLOW_TASK_QUEUE, make_data_converter
from tests.e2e.stack import free_ports
from tests.workflow.harness import actor, facts
from workflows.case_workflow import CaseWorkflow
from workflows.models import CaseInput, Classification, Decide, ReceiveDecision

pytestmark = pytest.mark.e2e

READY_TIMEOUT = 120.0
PORT_VARS = ("NRM_TEMPORAL_PORT", "NRM_TEMPORAL_UI_PORT", "NRM_INTAKE_PORT", "NRM_VERIFICATION_PORT",
             "NRM_SUPPORT_PORT", "NRM_OVERSIGHT_PORT", "NRM_CODEC_PORT")


@dataclass
class Stack:
    data_dir: Path
    env: dict[str, str]
    ports: dict[str, int]

    @property
    def service_ports(self) -> dict[str, int]:
        return {name: self.ports[f"NRM_{name.upper()}_PORT"] for name in SERVICE_NAMES}

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports['NRM_TEMPORAL_PORT']}"

    def state(self) -> dict[str, Any]:
        return dict(json.loads((self.data_dir / "state.json").read_text()))

    def diagnostics(self) -> str:
        """The supervisor's output and the tail of every log, for a failing assertion's message."""
        parts = []
        for path in [self.data_dir / "up.out", *sorted((self.data_dir / "logs").glob("*.log"))]:
            if path.exists():
                parts.append(f"--- {path.name} ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(parts)

    def up(self) -> subprocess.Popen[bytes]:
        out = open(self.data_dir / "up.out", "ab")
        return subprocess.Popen([sys.executable, "-m", "shared.cli", "up"], cwd=REPO_ROOT, env=self.env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    async def down(self) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "shared.cli", "down"], cwd=REPO_ROOT, env=self.env,
            capture_output=True, text=True, timeout=180, check=False)

    async def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Every service's /readyz answers 200 (database and Temporal reachable from each)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        pending = dict(self.service_ports)
        async with httpx.AsyncClient(timeout=2.0) as http:
            while pending:
                assert proc.poll() is None, f"nrm up exited with {proc.returncode}\n{self.diagnostics()}"
                assert loop.time() < deadline, f"not ready within {READY_TIMEOUT}s: {pending}\n{self.diagnostics()}"
                for name, port in list(pending.items()):
                    try:
                        if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200:
                            del pending[name]
                    except httpx.HTTPError:
                        pass
                await asyncio.sleep(0.5)
        # the supervisor prints this after its own checks (services, codec server, children still alive)
        while b"[6/6] ready" not in (self.data_dir / "up.out").read_bytes():
            assert proc.poll() is None, f"nrm up exited with {proc.returncode}\n{self.diagnostics()}"
            assert loop.time() < deadline, f"supervisor never reported ready\n{self.diagnostics()}"
            await asyncio.sleep(0.2)

    def assert_all_stopped(self, state: dict[str, Any]) -> None:
        """Nothing of the stack is left running: no orphan holding the data dir or a port."""
        diag = self.diagnostics()
        assert postgres_pid(self.data_dir) is None, f"PostgreSQL still running\n{diag}"
        assert not (self.data_dir / "postgres" / "postmaster.pid").exists()
        for var, port in self.ports.items():
            assert not port_open("127.0.0.1", port), f"{var}={port} still listening\n{diag}"
        for name, pid in state["children"].items():
            assert not pid_alive(int(pid)), f"{name} (pid {pid}) still running\n{diag}"
        assert not pid_alive(int(state["temporal_pid"])), f"Temporal still running\n{diag}"
        assert not (self.data_dir / "state.json").exists()


@pytest.fixture
def stack() -> Iterator[Stack]:
    # Not pytest's tmp_path: as root the embedded PostgreSQL runs as `pgserver`, and each new pytest
    # session (anyone's) resets /tmp/pytest-of-root to 0700, which would lock it out of its data dir.
    data_dir = Path(tempfile.mkdtemp(prefix="nrm-e2e-"))
    ports = dict(zip(PORT_VARS, free_ports(len(PORT_VARS)), strict=True))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NRM_")}  # a developer's settings stay out
    env.update({"NRM_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in ports.items()})
    s = Stack(data_dir, env, ports)
    with ExitStack() as cleanup:
        # whatever happens in the test, leave no server behind
        cleanup.callback(shutil.rmtree, data_dir, ignore_errors=True)
        cleanup.callback(lambda: subprocess.run([sys.executable, "-m", "shared.cli", "down"], cwd=REPO_ROOT,
                                                env=env, capture_output=True, timeout=180, check=False))
        yield s


@asynccontextmanager
async def temporal_client(s: Stack) -> AsyncIterator[Client]:
    ring = load_keyring(s.data_dir / "keyring.json")
    yield await Client.connect(s.temporal_address, data_converter=make_data_converter(ring))


async def audit_events(s: Stack, case_id: str, at_least: int) -> list[asyncpg.Record]:
    """The case's rows in oversight.case_events, once at least `at_least` have landed."""
    conn = await asyncpg.connect(s.state()["database_url"])
    try:
        for _ in range(600):
            rows = await conn.fetch("SELECT seq, kind, hash FROM oversight.case_events WHERE case_id = $1 ORDER BY seq",
                                    case_id)
            if len(rows) >= at_least:
                return list(rows)
            await asyncio.sleep(0.1)
        raise AssertionError(f"{case_id}: {len(rows)} audit events, expected {at_least}\n{s.diagnostics()}")
    finally:
        await conn.close()


async def test_nrm_up_survives_kill_and_restart(stack: Stack) -> None:
    # ---- first run: everything starts, a case opens and is audited -----------------------------
    supervisor = stack.up()
    await stack.wait_ready(supervisor)
    first_state = stack.state()
    assert first_state["supervisor_pid"] == supervisor.pid
    assert set(first_state["children"]) == {*SERVICE_NAMES, "workflow-worker", "codec-server"}

    case_id = f"case-e2e-{uuid.uuid4().hex[:12]}"
    async with temporal_client(stack) as client:
        handle = await client.start_workflow(CaseWorkflow.run, CaseInput(facts=facts(case_id)), id=case_id,
                                             task_queue=WORKFLOW_TASK_QUEUE)
        [first_event] = await audit_events(stack, case_id, 1)
        assert first_event["kind"] == "case_opened" and first_event["seq"] == 1
        opened = await handle.query(CaseWorkflow.state)  # after the opening was recorded: a settled state
        assert opened.case_id == case_id and opened.stage == Stage.receive and opened.last_event_seq == 1

    # ---- kill -9 the supervisor: its children live on until `nrm down` cleans up -----------------
    supervisor.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(supervisor.wait, 30) == -signal.SIGKILL
    assert (stack.data_dir / "state.json").exists(), "a killed supervisor cannot remove its state file"
    down = await stack.down()
    assert down.returncode == 0, down.stdout + down.stderr
    assert "supervisor is gone" in down.stdout
    stack.assert_all_stopped(first_state)

    # ---- second run on the same data directory: the case and its audit trail are still there --------
    supervisor = stack.up()
    await stack.wait_ready(supervisor)
    async with temporal_client(stack) as client:
        handle = client.get_workflow_handle(case_id)
        description = await handle.describe()
        assert description.status == WorkflowExecutionStatus.RUNNING
        assert description.workflow_type == "CaseWorkflow"
        again = await handle.query(CaseWorkflow.state)
        assert again.case_id == case_id and again.stage == Stage.receive
        assert again == opened, "the restarted worker rebuilt exactly the same state from history"

        events = await audit_events(stack, case_id, 1)
        assert (events[0]["seq"], events[0]["kind"], events[0]["hash"]) == (1, "case_opened", first_event["hash"])

        # and it carries on: the restarted workers process an Update and audit it
        decided = await handle.execute_update(CaseWorkflow.decide, Decide(
            actor=actor(AgencyRole.hotline), justification="caller describes recruitment abroad",
            decision=ReceiveDecision(classification=Classification.trafficking_suspected,
                                     channel=Channel.hotline_111)))
        assert decided.stage == Stage.verify
    events = await audit_events(stack, case_id, 2)
    assert [e["kind"] for e in events][:2] == ["case_opened", "stage_decided"]

    # ---- `nrm down` (SIGTERM to a live supervisor): a clean stop, nothing left running ---------------
    second_state = stack.state()
    down = await stack.down()
    assert down.returncode == 0, down.stdout + down.stderr + stack.diagnostics()
    assert await asyncio.to_thread(supervisor.wait, 60) == 0, stack.diagnostics()
    assert "stopping ..." in (stack.data_dir / "up.out").read_text()
    stack.assert_all_stopped(second_state)
