"""Every recorded CaseWorkflow history replays on the current code (tests/replay/record.py records them
with the fixed TEST key ring in keyring.json), and a changed workflow is caught as non-deterministic."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from services.oversight.replay import final_state, replay_history
from shared.contract import CaseInput, CaseState
from shared.crypto import KeyRing
from shared.temporal import OVERSIGHT_TASK_QUEUE, make_data_converter
from workflows.case_workflow import CaseWorkflow

HERE = Path(__file__).parent
RING = KeyRing.from_json((HERE / "keyring.json").read_text())  # test-only keys
HISTORIES = sorted(HERE.glob("*.json"))
HISTORIES = [p for p in HISTORIES if p.name != "keyring.json"]


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(path.stem, path.read_text())


def test_histories_were_recorded():
    assert {p.stem for p in HISTORIES} >= {
        "not_relevant_closed",
        "full_path",
        "overdue_running",
        "reopened",
        "handoffs",
        "child_abroad_not_a_victim",
        "rescue_then_transferred",
        "continued_as_new",
        "trust_rules",
        "continued_as_new_retry",
        "continued_as_new_carrying_ids",
        "transfer_accepted",
        "transfer_rejected",
        "transfer_revoked",
        "transfer_unanswered",
        "transfer_while_overdue",
        "left_the_country",
        "kept_wake_timer",
        "opened_with_policy",
        "protection_and_rescue_early",
    }


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path):
    await Replayer(
        workflows=[CaseWorkflow], data_converter=make_data_converter(RING)
    ).replay_workflow(_load(path))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_final_state_is_readable_from_history(path: Path):
    origin, state = await final_state(_load(path), make_data_converter(RING))
    assert state is not None
    s = CaseState.model_validate(state)
    if path.stem in (
        "overdue_running",
        "handoffs",
        "continued_as_new",
        "trust_rules",
        "continued_as_new_retry",
        "continued_as_new_carrying_ids",
        "kept_wake_timer",
        "opened_with_policy",
        "protection_and_rescue_early",
    ) or path.stem.startswith("transfer_"):  # still running
        assert origin == "last_record_case_events_input"
        if path.stem == "overdue_running":
            assert (
                s.assignee == "sp-officer-2"
                and s.escalation_level == 1
                and s.stage.value == "verify"
            )
        elif path.stem == "handoffs":
            assert [h.state.value for h in s.handoffs] == [
                "rejected",
                "revoked",
                "requested",
                "accepted",
            ]
            assert s.handoffs[2].escalation_level == 3 and s.owner_agency.value == "border_guard"
        elif path.stem == "trust_rules":
            assert s.stage.value == "protect" and "legal_aid" in s.participants and s.version == 8
            assert s.trafficking_status.value == "ActualVictimOfTrafficking"
        elif path.stem.startswith(
            "transfer_"
        ):  # issue 18: a transfer to social protection of Nghe An (40)
            moved = path.stem in ("transfer_accepted", "transfer_while_overdue")
            assert s.province == ("40" if moved else "01") and len(s.jurisdictions) == (
                2 if moved else 1
            )
            assert (
                s.handoffs[0].to_province == "40"
                and s.handoffs[0].state.value
                == {
                    "transfer_accepted": "accepted",
                    "transfer_while_overdue": "accepted",
                    "transfer_rejected": "rejected",
                    "transfer_revoked": "revoked",
                    "transfer_unanswered": "requested",
                }[path.stem]
            )
            if path.stem == "transfer_unanswered":
                assert s.handoffs[0].escalation_level == 3
            if path.stem == "transfer_while_overdue":
                assert (
                    s.escalation_level >= 1
                    and s.deadline is not None
                    and s.jurisdictions[1].since < s.deadline.due_at
                )
        elif path.stem == "protection_and_rescue_early":  # issue 15 items 3 and 4
            assert s.stage.value == "reintegrate"
            assert [(p.stage.value, p.measures) for p in s.protections] == [
                ("receive", ["confidential_location", "protection_of_relatives"]),
                ("protect", ["guard"]),
            ]
            assert [(r.outcome, r.stage.value) for r in s.rescues] == [
                ("postponed", "identify"),
                ("rescued", "identify"),
            ]
            rescue = next(r for r in s.stages if r.stage.value == "rescue")
            assert not rescue.skipped and rescue.decided_by == "police-officer"
        elif path.stem == "opened_with_policy":
            assert s.stage.value == "verify" and s.policy_version != "pending" and s.version == 2
        elif path.stem == "kept_wake_timer":
            assert (
                s.stage.value == "verify"
                and s.assignee == "sp-officer-2"
                and s.escalation_level >= 1
            )
        elif (
            path.stem == "continued_as_new_retry"
        ):  # 1 classify + 12 notes, the retry of u-note-0 not applied
            assert s.stage.value == "verify" and s.version == 14
        else:
            assert s.stage.value == "verify" and s.version > 0
    else:
        assert origin == "completion_result" and s.status.value in ("Closed", "ClosedReferred")
    if path.stem == "left_the_country":
        assert (
            s.outcome is not None
            and s.outcome.value == "transferred_jurisdiction"
            and s.province == "01"
        )
    if path.stem == "full_path":
        assert (
            s.outcome is not None
            and s.outcome.value == "reintegrated"
            and s.services_delivered == 1
        )


def test_kept_wake_timer_history_keeps_one_timer_per_instant():
    """Recorded under patch keep-wake-timer-issue-13: claim and assign (same wake instant) neither cancel nor
    start a timer; the receive decision (a new deadline) replaces it once; timers that fire are followed by
    the next instant's timer only."""
    from temporalio.api.enums.v1 import EventType

    events = _load(HERE / "kept_wake_timer.json").events
    kinds = [e.event_type for e in events]
    assert kinds.count(EventType.EVENT_TYPE_TIMER_CANCELED) == 1
    fired = kinds.count(EventType.EVENT_TYPE_TIMER_FIRED)
    assert fired >= 2 and kinds.count(EventType.EVENT_TYPE_TIMER_STARTED) == 1 + 1 + fired
    assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) == 5


def test_early_protection_and_rescue_history_carries_its_patches():
    """Recorded under patches protection-from-receipt-issue-15 and rescue-when-it-happens-issue-15; the
    histories recorded before them carry neither (they replay by the code paths they took)."""
    from temporalio.api.enums.v1 import EventType

    def patches(name: str) -> set[str]:
        found = set()
        for e in _load(HERE / f"{name}.json").events:
            if (
                e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                and e.marker_recorded_event_attributes.marker_name == "core_patch"
            ):
                for payload in e.marker_recorded_event_attributes.details["patch-data"].payloads:
                    found.add(json.loads(payload.data)["id"])
        return found

    early = patches("protection_and_rescue_early")
    assert {"protection-from-receipt-issue-15", "rescue-when-it-happens-issue-15"} <= early
    for name in (p.stem for p in HISTORIES if p.stem != "protection_and_rescue_early"):
        assert not any(p.endswith("issue-15") for p in patches(name)), name


def test_a_case_opened_with_its_policy_runs_no_local_activity():
    """Intake passes the resolved policy in CaseInput.policy (issue 13 item 2): no policy marker at all."""
    from temporalio.api.enums.v1 import EventType

    events = _load(HERE / "opened_with_policy.json").events
    assert not [
        e
        for e in events
        if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
        and e.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]


@workflow.defn(
    name="CaseWorkflow", sandboxed=False
)  # defined in a test module: no sandbox re-import
class ChangedCaseWorkflow(CaseWorkflow):
    """The current workflow with one change an unwary developer might make: an extra activity before
    everything else, not guarded by workflow.patched()."""

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseState:
        await workflow.execute_activity(
            "check_watchlist",
            inp.facts.case_id,
            task_queue=OVERSIGHT_TASK_QUEUE,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return await super().run(inp)


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_changed_code_is_nondeterministic(path: Path):
    with pytest.raises(NondeterminismError):
        await Replayer(
            workflows=[ChangedCaseWorkflow], data_converter=make_data_converter(RING)
        ).replay_workflow(_load(path))
    ok, error = await replay_history(_load(path), RING, [ChangedCaseWorkflow])
    assert not ok and error is not None and "NondeterminismError" in error
