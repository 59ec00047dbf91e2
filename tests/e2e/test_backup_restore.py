"""Backup and restore of a running NRM, end to end: cases are opened and advanced through the services,
`nrm backup` runs while more cases are being opened and classified, the stack is stopped and its data
directory destroyed, `nrm restore` brings the backup back into the empty directory, and `nrm up` on it finds
every case where it was: same stage, version and deadline; a deadline timer set before the backup fires after
the restore; the cases go on taking decisions; every audit chain verifies and the audit projection catches up
with every workflow (no event lost, none duplicated)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client

from shared.config import REPO_ROOT
from shared.contract import CaseState
from shared.domain import AgencyRole, Role
from shared.temporal import make_data_converter
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack
from workflows.case_workflow import CaseWorkflow

pytestmark = pytest.mark.e2e

A = AgencyRole
PASSPHRASE = "correct horse battery staple"
DEADLINE = "PT120S"  # the hotline receive deadline in this stack's policy: escalates two minutes after opening
WAIT = 300.0  # upper bound for things that happen by themselves (timer, projection)


def _short_receive_deadline(policy: dict[str, Any]) -> None:
    for entry in policy["deadlines"]:
        if entry["id"] == "receive-hotline":
            entry["duration"] = DEADLINE


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack(_short_receive_deadline) as s:
        yield s


def ok(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    )
    return r.json()


def report(n: int) -> dict[str, Any]:
    return {
        "channel": "hotline_111",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": f"Lan{n}",
            "prs_SecondName": "Nguyễn",
            "birth_year": 1990 + n % 10,
            "prs_Gender": "Feminine",
            "prs_Citizenship": ["VN"],
            "prs_IdentityNumber": f"0011990{n:05d}",
            "vic_AgreementToManagePersonalData": True,
        },
        "victim": {"vic_TypeOfExploitation": ["ForcedLabour"]},
        "report": {
            "summary": f"caller {n} describes withheld wages",
            "received_at": datetime.now(UTC).isoformat(),
        },
        "con_Consent": True,
    }


def nrm(
    stack: RunningStack, *args: str, passphrase: str | None = PASSPHRASE
) -> subprocess.CompletedProcess[str]:
    env = dict(stack.env)
    if passphrase:
        env["NRM_BACKUP_PASSPHRASE"] = passphrase
    return subprocess.run(  # noqa: S603 (our own command line)
        [sys.executable, "-m", "nrm.cli", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


class Mover(threading.Thread):
    """Opens and classifies cases, one after the other, until told to stop: the cases "moving" while the
    backup runs."""

    def __init__(self, stack: RunningStack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.stop = threading.Event()
        self.opened: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        hotline = self.stack.auth(A.hotline, user="hotline-op-2")
        try:
            with self.stack.client("intake") as intake:
                n = 100
                while not self.stop.is_set():
                    n += 1
                    cid = ok(
                        intake.post(
                            "/cases",
                            json=report(n),
                            headers={**hotline, "Idempotency-Key": f"mv-{n}"},
                        ),
                        201,
                    )["case_id"]
                    self.opened.append(cid)
                    view = ok(intake.get(f"/cases/{cid}", headers=hotline))
                    ok(
                        intake.post(
                            f"/cases/{cid}/classify",
                            headers=hotline,
                            json={
                                "classification": "trafficking_suspected",
                                "justification": "moving during the backup",
                                "expected_version": view["workflow"]["version"],
                            },
                        )
                    )
        except BaseException as exc:  # reported by the test
            self.error = exc


def states(stack: RunningStack, *cids: str) -> dict[str, CaseState]:
    """Each case's state, from its workflow's query (deadline, escalation level, last event seq included)."""

    async def query() -> dict[str, CaseState]:
        client = await Client.connect(
            stack.temporal_address, data_converter=make_data_converter(stack.ring)
        )
        return {
            cid: await client.get_workflow_handle(cid).query(CaseWorkflow.state) for cid in cids
        }

    return asyncio.run(query())


def case_state(stack: RunningStack, cid: str) -> dict[str, Any]:
    return dict(states(stack, cid)[cid].model_dump(mode="json"))


def settled(stack: RunningStack, cids: list[str]) -> dict[str, tuple[int, int]]:
    """Waits until oversight's projection has every event each workflow sent (last_event_seq equal on both
    sides); returns {case_id: (last_event_seq, events in the audit log)}."""
    auditor = stack.auth(A.steering_committee, Role.auditor, user="auditor-1", province="*")
    deadline = time.monotonic() + WAIT
    out: dict[str, tuple[int, int]] = {}
    with stack.client("oversight") as ovs:
        for cid in cids:
            while True:
                seq = case_state(stack, cid)["last_event_seq"]
                events = ok(
                    ovs.get(f"/cases/{cid}/history", headers=auditor, params={"limit": 200})
                )["items"]
                if events and events[-1]["seq"] == seq:
                    assert [e["seq"] for e in events] == list(range(1, seq + 1)), (
                        f"{cid}: gaps in {events}"
                    )
                    out[cid] = (seq, len(events))
                    break
                assert time.monotonic() < deadline, (
                    f"{cid}: projection at {events and events[-1]['seq']}, "
                    f"workflow at {seq}\n{stack.diagnostics()}"
                )
                time.sleep(0.3)
    return out


def test_backup_while_moving_then_restore_on_an_empty_data_dir(stack: RunningStack) -> None:
    hotline = stack.auth(A.hotline, user="hotline-op-7")
    sp = stack.auth(A.social_protection, user="sp-worker-3")
    police = stack.auth(A.police, user="police-inv-12")
    auditor = stack.auth(A.steering_committee, Role.auditor, user="auditor-1", province="*")
    backup_dir = Path(tempfile.mkdtemp(prefix="nrm-backup-")) / "b1"
    try:
        # ---- cases at different stages: identify (a), verify (b), receive with its deadline running (t) --------
        with stack.client("intake") as intake, stack.client("verification") as ver:
            cids = {}
            for i, name in enumerate(("a", "b")):
                cid = ok(
                    intake.post(
                        "/cases",
                        json=report(i),
                        headers={**hotline, "Idempotency-Key": f"k-{name}"},
                    ),
                    201,
                )["case_id"]
                ok(
                    intake.post(
                        f"/cases/{cid}/classify",
                        headers=hotline,
                        json={
                            "classification": "trafficking_suspected",
                            "justification": "recruited online",
                            "expected_version": case_state(stack, cid)["version"],
                        },
                    )
                )
                cids[name] = cid
            case = ok(ver.post(f"/cases/{cids['a']}/claim", headers=sp, json={}))
            case = ok(
                ver.post(
                    f"/cases/{cids['a']}/verification",
                    headers=sp,
                    json={
                        "result": "confirmed",
                        "justification": "commune check",
                        "expected_version": case["version"],
                    },
                )
            )
            assert case["stage"] == "identify"
            cids["t"] = ok(
                intake.post(
                    "/cases", json=report(9), headers={**hotline, "Idempotency-Key": "k-t"}
                ),
                201,
            )["case_id"]
            before = {name: case_state(stack, cid) for name, cid in cids.items()}
        assert [before[n]["stage"] for n in "abt"] == ["identify", "verify", "receive"]
        assert ":receive-hotline " in before["t"]["deadline"]["source"]
        settled(stack, list(cids.values()))

        # ---- back up while other cases are being opened and classified --------------------------------------
        mover = Mover(stack)
        mover.start()
        while len(mover.opened) < 2 and mover.is_alive():
            time.sleep(0.1)
        done = nrm(stack, "backup", str(backup_dir))
        mover.stop.set()
        mover.join(120)
        assert mover.error is None, repr(mover.error)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "key ring encrypted" in done.stdout and "WARNING" not in done.stderr
        assert {p.name for p in backup_dir.iterdir()} == {
            "manifest.json",
            "postgres.dump",
            "temporal.sqlite",
            "keyring.enc",
            "policy.yaml",
            "settings.json",
        }
        assert (
            b"keys" not in (backup_dir / "keyring.enc").read_bytes()
        )  # sealed, not a JSON key ring
        with stack.client("intake") as intake:
            t_after_backup = case_state(stack, cids["t"])
        assert t_after_backup["escalation_level"] == 0, (
            "the deadline fired before the backup was done"
        )
        moving = list(mover.opened)

        # ---- stop, destroy the data directory, restore into the empty one --------------------------------
        stack.stop()
        shutil.rmtree(stack.data_dir)
        wrong = nrm(stack, "restore", str(backup_dir), passphrase="not the passphrase")
        assert wrong.returncode == 1 and "wrong NRM_BACKUP_PASSPHRASE" in wrong.stderr, wrong.stderr
        shutil.rmtree(stack.data_dir, ignore_errors=True)  # what the failed attempt left
        restored = nrm(stack, "restore", str(backup_dir))
        assert restored.returncode == 0, restored.stdout + restored.stderr
        again = nrm(stack, "restore", str(backup_dir))
        assert again.returncode == 1 and "not empty" in again.stderr, again.stderr
        stack._ring = None
        stack.up()
        stack.wait_ready()

        # ---- every case where it was ------------------------------------------------------------------
        with stack.client("intake") as intake, stack.client("verification") as ver:
            for name, cid in cids.items():
                now = case_state(stack, cid)
                for key in ("stage", "owner_agency", "assignee", "version", "last_event_seq"):
                    if name == "t" and key in ("version", "last_event_seq"):
                        # t's own timers (the reminder at 75% of the deadline) may have moved it before the backup
                        assert before[name][key] <= now[key] <= t_after_backup[key], f"{name}.{key}"
                        continue
                    assert now[key] == before[name][key], (
                        f"{name}.{key}: {now[key]} != {before[name][key]}"
                    )
                assert now["deadline"]["due_at"] == before[name]["deadline"]["due_at"]
            # the deadline timer of t, set before the backup, fires on the restored system
            deadline = time.monotonic() + WAIT
            while (t := case_state(stack, cids["t"]))["escalation_level"] < 1:
                assert time.monotonic() < deadline, f"t never escalated: {t}\n{stack.diagnostics()}"
                time.sleep(1)
            assert t["stage"] == "receive"
            # the cases go on: b is verified, a is claimed by the police
            b = ok(ver.post(f"/cases/{cids['b']}/claim", headers=sp, json={}))
            b = ok(
                ver.post(
                    f"/cases/{cids['b']}/verification",
                    headers=sp,
                    json={
                        "result": "confirmed",
                        "justification": "after the restore",
                        "expected_version": b["version"],
                    },
                )
            )
            assert b["stage"] == "identify"
            a = ok(ver.post(f"/cases/{cids['a']}/claim", headers=police, json={}))
            assert a["assignee"] == "police-inv-12"
            # cases that were moving: each is either in the backup (and carries on) or was opened after it
            present = []
            for cid in moving:
                r = intake.get(f"/cases/{cid}", headers=hotline)
                if r.status_code == 404:
                    continue
                wf = ok(r)["workflow"]
                present.append(cid)
                if wf["stage"] == "receive":
                    wf = ok(
                        intake.post(
                            f"/cases/{cid}/classify",
                            headers=hotline,
                            json={
                                "classification": "trafficking_suspected",
                                "justification": "after the restore",
                                "expected_version": wf["version"],
                            },
                        )
                    )
                assert wf["stage"] == "verify"
            assert present, "no case opened during the backup made it into the backup"

        # ---- the audit log: nothing lost, nothing twice, every chain intact -------------------------------
        seqs = settled(stack, [*cids.values(), *present])
        assert seqs[cids["t"]][0] > before["t"]["last_event_seq"]  # the escalation was recorded
        with stack.client("oversight") as ovs:
            check = ok(
                ovs.get(
                    "/audit/verify", headers=auditor, params={"province": PROVINCE, "limit": 1000}
                )
            )
        assert check["ok"] and check["checked"] >= len(cids) + len(present), check
    finally:
        shutil.rmtree(backup_dir.parent, ignore_errors=True)
