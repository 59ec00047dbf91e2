"""Traces across the real processes of `nrm up` with NRM_OTLP_ENDPOINT pointing at a local OTLP/HTTP receiver
(tests/integration/test_tracing.py's): a classify request to intake is one trace whose spans come from three
processes: intake (the HTTP span, StartWorkflowUpdate), the workflow worker (ValidateUpdate, HandleUpdate,
StartActivity) and oversight (RunActivity of the audit batch); intake's log lines of that request carry the
trace id; no span carries the canary name, break-glass reason, purpose or justification the requests held."""

from __future__ import annotations

import json
import random
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from shared.config import SERVICE_NAMES
from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, new_stack
from tests.integration.test_tracing import (
    CANARIES,
    CANARY_BREAK_GLASS,
    CANARY_JUSTIFICATION,
    CANARY_NAME,
    CANARY_PURPOSE,
    OtlpReceiver,
    Span,
    otlp_receiver,
)

pytestmark = pytest.mark.e2e

A = AgencyRole
WAIT = 120.0


def _free_block(n: int, taken: set[int]) -> int:
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 31900)
        if any(abs(base + i - t) <= 11 for i in range(n) for t in taken):
            continue
        ok = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    ok = False
                    break
        if ok:
            return base


@pytest.fixture(scope="module")
def traced() -> Iterator[tuple[RunningStack, OtlpReceiver]]:
    with otlp_receiver() as rx:
        s = new_stack()
        s.env["NRM_OTLP_ENDPOINT"] = rx.url
        s.env["OTEL_BSP_SCHEDULE_DELAY"] = (
            "200"  # the batch processor's own knob: send every 0.2 s, not 5 s
        )
        s.env["NRM_METRICS_PORT"] = str(_free_block(1 + len(SERVICE_NAMES), set(s.ports.values())))
        stopped = False
        try:
            s.up()
            s.wait_ready()
            yield s, rx
            s.stop()
            stopped = True
        finally:
            if not stopped:
                s.force_down()
            shutil.rmtree(s.data_dir, ignore_errors=True)


def _named(spans: list[Span], name: str) -> list[Span]:
    return [s for s in spans if s.name == name]


def test_a_classify_request_is_one_trace_across_the_processes(
    traced: tuple[RunningStack, OtlpReceiver],
) -> None:
    stack, rx = traced
    hotline = stack.auth(A.hotline, user="hotline-op-1")
    auditor = stack.auth(A.police, Role.auditor, user="auditor-1")
    body = {
        "channel": "hotline_111",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": CANARY_NAME,
            "prs_SecondName": "Lê",
            "birth_year": 1995,
            "prs_Gender": "Feminine",
            "vic_AgreementToManagePersonalData": True,
        },
        "report": {
            "summary": "caller describes withheld wages",
            "received_at": datetime.now(UTC).isoformat(),
        },
        "con_Consent": True,
    }
    request_id = "e2e-classify-traced-1"
    with stack.client("intake") as intake:
        r = intake.post("/cases", json=body, headers={**hotline, "Idempotency-Key": "tr-1"})
        assert r.status_code == 201, r.text
        cid = r.json()["case_id"]
        r = intake.get(f"/cases/{cid}", headers=hotline)
        assert r.status_code == 200, r.text
        version = r.json()["workflow"]["version"]
        r = intake.get(
            f"/cases/{cid}/person",
            headers=auditor,
            params={"purpose": CANARY_PURPOSE, "break_glass_reason": CANARY_BREAK_GLASS},
        )
        assert r.status_code == 200, r.text
        r = intake.post(
            f"/cases/{cid}/classify",
            params={"break_glass_reason": CANARY_BREAK_GLASS},
            headers={**hotline, "X-Request-ID": request_id},
            json={
                "classification": "trafficking_suspected",
                "justification": CANARY_JUSTIFICATION,
                "expected_version": version,
            },
        )
        assert r.status_code == 200, r.text

    # wait for the three processes' batches to arrive
    deadline = time.monotonic() + WAIT
    while True:
        http = _named(rx.spans, "POST /cases/{case_id}/classify")
        spans = rx.trace(http[0].trace_id) if http else []
        if _named(spans, "RunActivity:record_case_events") and _named(spans, "HandleUpdate:decide"):
            break
        assert time.monotonic() < deadline, (
            f"no complete trace: {[(s.service, s.name) for s in rx.spans]}\n{stack.diagnostics()}"
        )
        time.sleep(0.3)

    [root] = http
    assert root.service == "nrm-intake" and root.parent_id == ""
    assert root.attributes["http.route"] == "/cases/{case_id}/classify"
    [start_update] = _named(spans, "StartWorkflowUpdate:decide")
    [handle] = _named(spans, "HandleUpdate:decide")
    [validate] = _named(spans, "ValidateUpdate:decide")
    [start_audit] = _named(spans, "StartActivity:record_case_events")
    [run_audit] = _named(spans, "RunActivity:record_case_events")
    assert start_update.service == "nrm-intake" and start_update.parent_id == root.span_id
    assert handle.service == validate.service == start_audit.service == "nrm-workflow-worker"
    assert handle.parent_id == validate.parent_id == start_update.span_id
    assert start_audit.parent_id == handle.span_id
    assert run_audit.service == "nrm-oversight" and run_audit.parent_id == start_audit.span_id
    assert run_audit.attributes["temporalWorkflowID"] == cid

    # no canary in anything exported, by any process
    assert {s.service for s in rx.spans} >= {"nrm-intake", "nrm-workflow-worker", "nrm-oversight"}
    for s in rx.spans:
        for canary in CANARIES:
            assert canary not in s.raw.lower(), f"{canary!r} in {s.service} span {s.name}: {s.raw}"
        assert "?" not in s.name and cid not in s.name

    # intake's log lines of the request carry its trace id
    lines = [
        json.loads(line)
        for line in (stack.data_dir / "logs" / "intake.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert any(line["event"] == "case_classified" for line in mine), mine
    assert all(line.get("trace_id") == root.trace_id for line in mine)
