"""RetentionWorkflow runs started before it erased every schema replay on the current code: the new
activities are behind workflow.patched, so a run recorded by the old code (intake erase, then the audit
event; tests/integration/histories/retention_v1.json, payloads under the test key ring of tests/replay)
issues the same commands again."""

from __future__ import annotations

from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from shared.crypto import KeyRing
from shared.temporal import make_data_converter
from workflows.retention_workflow import RetentionWorkflow

HERE = Path(__file__).parent
RING = KeyRing.from_json((HERE.parent / "replay" / "keyring.json").read_text())  # test-only keys


async def test_retention_run_recorded_before_every_schema_erasure_replays() -> None:
    history = WorkflowHistory.from_json(
        "retention-case-replay-retention", (HERE / "histories" / "retention_v1.json").read_text()
    )
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["erase_person_pii", "record_personal_data_erased"]  # the old commands
    result = await Replayer(
        workflows=[RetentionWorkflow], data_converter=make_data_converter(RING)
    ).replay_workflow(history)
    assert result.replay_failure is None
