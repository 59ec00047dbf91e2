"""Replay a case's recorded Temporal history against the current workflow code.

Where the history comes from: live from Temporal (`handle.fetch_history()`), or, after retention
removed it, the copy exported at closure into oversight.workflow_histories (gzip JSON encrypted with
the key ring, context `history:{case_id}:{run_id}`).

Two questions are answered:
1. Deterministic? `Replayer(workflows=[CaseWorkflow]).replay_workflow(...)` fails with a
   NondeterminismError when the current code would issue other commands than the history recorded.
2. Does the state it reaches match the audit log? The Replayer cannot run queries, so the final state
   is read from the history itself: the workflow's completion result (a CaseState) when the run
   completed, otherwise the `state` of the last event in the last `record_case_events` activity input
   (what the workflow sent to the audit log). It is compared, field by field, with the `state` of the
   audit log's last event for the case (oversight.case_events). The copy exported at closure is taken by
   the workflow's last activity, so it ends before the completion event: for it the last
   record_case_events input is what is compared (it is the same state: nothing changes after the last
   event). Only the last run's history can reach
   the end state; earlier runs (continue-as-new) are replayed for determinism only."""

from __future__ import annotations

import gzip
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from services.oversight import repository as repo
from services.oversight.audit_log import readable_event, split_free_text
from shared.contract import CaseState, RecordBatch
from shared.crypto import KeyRing
from shared.db import Conn
from shared.logging import get_logger
from shared.temporal import make_data_converter
from workflows.case_workflow import CaseWorkflow


@dataclass
class ReplayReport:
    case_id: str
    run_id: str
    source: str
    deterministic: bool
    error: str | None = None
    final_state_from: str | None = None
    matches_audit_log: bool | None = None
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "run_id": self.run_id,
            "source": self.source,
            "deterministic": self.deterministic,
            "error": self.error,
            "final_state_from": self.final_state_from,
            "matches_audit_log": self.matches_audit_log,
            "differences": self.differences,
        }


def decrypt_export(
    ring: KeyRing, case_id: str, run_id: str, key_id: str, blob: bytes
) -> WorkflowHistory:
    raw = gzip.decompress(ring.decrypt_bytes(key_id, blob, f"history:{case_id}:{run_id}".encode()))
    return WorkflowHistory.from_json(case_id, raw.decode())


async def load_histories(
    client: Client | None, conn: Conn, ring: KeyRing, case_id: str, source: str = "auto"
) -> list[tuple[str, WorkflowHistory]]:
    """[(source, history)] for the case: the live last run when Temporal still has it (source auto|live),
    else every run exported at closure (source auto|export)."""
    if source in ("auto", "live") and client is not None:
        try:
            history = await client.get_workflow_handle(case_id).fetch_history()
            return [("live", history)]
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND or source == "live":
                raise
    if source in ("auto", "export"):
        rows = await repo.exported_histories(conn, case_id)
        return [
            ("export", decrypt_export(ring, case_id, r["run_id"], r["key_id"], r["history"]))
            for r in rows
        ]
    return []


async def final_state(
    history: WorkflowHistory, converter: DataConverter
) -> tuple[str | None, dict[str, Any] | None]:
    """(where it came from, CaseState as JSON) read from the history, without running the workflow."""
    last_batch = None
    for ev in history.events:
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            payloads = ev.workflow_execution_completed_event_attributes.result.payloads
            if payloads:
                [state] = await converter.decode(payloads, [CaseState])
                return "completion_result", state.model_dump(mode="json")
        if ev.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            attrs = ev.activity_task_scheduled_event_attributes
            if attrs.activity_type.name == "record_case_events" and attrs.input.payloads:
                last_batch = attrs.input.payloads
    if last_batch is not None:
        [batch] = await converter.decode(last_batch, [RecordBatch])
        if batch.events:
            return "last_record_case_events_input", batch.events[-1].state.model_dump(mode="json")
    return None, None


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


async def replay_history(
    history: WorkflowHistory, ring: KeyRing, workflows: list[type] | None = None
) -> tuple[bool, str | None]:
    replayer = Replayer(
        workflows=workflows or [CaseWorkflow], data_converter=make_data_converter(ring)
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    if result.replay_failure is None:
        return True, None
    return False, f"{type(result.replay_failure).__name__}: {result.replay_failure}"


async def replay_case(
    client: Client | None,
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    source: str = "auto",
    workflows: list[type] | None = None,
) -> list[ReplayReport]:
    histories = await load_histories(client, conn, ring, case_id, source)
    last = await repo.last_event(conn, case_id)
    audit_view = readable_event(ring, last) if last is not None else None
    audit_state = audit_view["state"] if audit_view else None
    converter = make_data_converter(ring)
    reports: list[ReplayReport] = []
    for i, (src, history) in enumerate(histories):
        run_id = _run_id(history)
        ok, error = await replay_history(history, ring, workflows)
        report = ReplayReport(case_id, run_id, src, ok, error)
        if i == len(histories) - 1:
            origin, state = await final_state(history, converter)
            report.final_state_from = origin
            if state is not None and audit_state is not None and audit_view is not None:
                if audit_view[
                    "free_text_erased"
                ]:  # retention erased the texts: compare everything else
                    state, audit_state = (
                        split_free_text(None, {}, state)[2],
                        split_free_text(None, {}, audit_state)[2],
                    )
                report.differences = _diff(state, audit_state)
                report.matches_audit_log = not report.differences
            else:
                report.matches_audit_log = False
                report.differences = [
                    "no final state in the history" if state is None else "no audit events"
                ]
        reports.append(report)
    return reports


def _run_id(history: WorkflowHistory) -> str:
    for ev in history.events:
        if ev.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            return ev.workflow_execution_started_event_attributes.original_execution_run_id or "?"
    return "?"


QUERY_TIMEOUT = timedelta(seconds=5)
log = get_logger("oversight.audit")


async def independent_counts(
    client: Client | None, conn: Conn, ring: KeyRing, case_id: str
) -> dict[str, int]:
    """How many audit events the workflow emitted, from sources a database administrator cannot rewrite:
    the history exported at closure (encrypted with the key ring) and, with a client, Temporal itself (the
    live workflow's counter from its `state` query, or a completed run's result). A live count is left
    out while a record_case_events activity is pending (those events are on their way), and when
    Temporal cannot answer (no worker, unreachable); the projection's count still applies then."""
    counts: dict[str, int] = {}
    export = await repo.last_export(conn, case_id)
    if export is not None:
        history = decrypt_export(
            ring, case_id, export["run_id"], export["key_id"], export["history"]
        )
        _, st = await final_state(history, make_data_converter(ring))
        if st is not None:
            counts["exported history"] = int(st["last_event_seq"])
    if client is None:
        return counts
    handle = client.get_workflow_handle(case_id, result_type=CaseState)
    try:
        desc = await handle.describe(rpc_timeout=QUERY_TIMEOUT)
        if desc.status == WorkflowExecutionStatus.RUNNING:
            if any(
                pa.activity_type.name == "record_case_events"
                for pa in desc.raw_description.pending_activities
            ):
                return counts
            st = await handle.query("state", result_type=CaseState, rpc_timeout=QUERY_TIMEOUT)
            counts["workflow"] = st.last_event_seq
        elif desc.status == WorkflowExecutionStatus.COMPLETED:
            result = await handle.result(rpc_timeout=QUERY_TIMEOUT)
            counts["workflow result"] = result.last_event_seq
    except Exception as exc:  # not found, no worker, timeout: the database sources still apply
        if not (isinstance(exc, RPCError) and exc.status == RPCStatusCode.NOT_FOUND):
            log.info("audit_live_count_unavailable", case_id=case_id, error=type(exc).__name__)
    return counts
