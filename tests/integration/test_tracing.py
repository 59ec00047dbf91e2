"""Traces (shared/tracing.py), in one process against real PostgreSQL and the real Temporal test server, exported
by the real OTLP/HTTP exporter to a real local receiver (an HTTP server decoding the protobuf it is sent):

- one classify request (an Update) is one trace: its HTTP span, StartWorkflowUpdate, ValidateUpdate and
  HandleUpdate in the workflow, StartActivity and RunActivity of the audit activity (record_case_events);
- no span name, attribute, event, link or status carries a person's name from a body, a break-glass reason or
  a purpose from a query string, or a justification;
- a log line written inside the request carries its trace id and span id;
- with NRM_OTLP_ENDPOINT unset (even with the standard OTEL_EXPORTER_OTLP_* variables pointing at the
  receiver) nothing is exported, no provider exists, the app has no tracing middleware, the client no
  interceptor, and log lines carry no trace id.

tests/e2e/test_tracing.py checks the same trace across the real processes of `nrm up`."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest
import structlog
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from shared import tracing
from shared.config import Settings
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role
from shared.logging import configure_logging
from shared.temporal import connect
from shared.tracing import TracingMiddleware, init_tracing, shutdown_tracing, tracing_interceptors
from tests.helpers.intake_stack import Intake, intake_app, open_body

A = AgencyRole
CANARY_NAME = "Quyendinhcanary"
CANARY_BREAK_GLASS = "breakglasscanary because the auditor must see it"
CANARY_PURPOSE = "purposecanary family tracing"
CANARY_JUSTIFICATION = "justificationcanary recruited online"
CANARIES = ("canary",)  # every canary above contains this word


# ---- a real OTLP/HTTP receiver ---------------------------------------------------------------------------------
def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


@dataclass
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    raw: str  # everything the span carried, as text (names, attributes, events, links, status)


@dataclass
class OtlpReceiver:
    url: str
    spans: list[Span] = field(default_factory=list)
    posts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        with self.lock:
            self.posts += 1
            for rs in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(
                            Span(
                                service=str(resource.get("service.name")),
                                name=s.name,
                                trace_id=s.trace_id.hex(),
                                span_id=s.span_id.hex(),
                                parent_id=s.parent_span_id.hex(),
                                kind=s.kind,
                                attributes={kv.key: _value(kv.value) for kv in s.attributes},
                                raw=str(s) + str(rs.resource),
                            )
                        )

    def trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]


@contextmanager
def otlp_receiver() -> Iterator[OtlpReceiver]:
    """An OTLP/HTTP receiver on a free loopback port: POST /v1/traces, protobuf, gzip or not."""
    holder: dict[str, OtlpReceiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            encoding = self.headers.get("Content-Encoding", "")
            if encoding == "gzip":
                body = gzip.decompress(body)
            elif encoding == "deflate":
                body = zlib.decompress(body)
            if (
                self.path != "/v1/traces"
                or self.headers.get("Content-Type") != "application/x-protobuf"
            ):
                self.send_error(404)
                return
            holder["r"].take(body)
            out = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = OtlpReceiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with otlp_receiver() as r:
        yield r


# ---- logs onto captured stderr --------------------------------------------------------------------------------
@pytest.fixture
def logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level

    def start() -> Any:
        configure_logging("intake", "INFO")
        capsys.readouterr()

        def lines() -> list[dict[str, Any]]:
            err = capsys.readouterr().err
            return [json.loads(line) for line in err.splitlines() if line.startswith("{")]

        return lines

    yield start
    root.handlers, root.level = saved_handlers, saved_level
    structlog.contextvars.clear_contextvars()


@pytest.fixture
def global_provider() -> Iterator[None]:
    """Lets the test install the global tracer provider as a real process does (FastAPI and any library
    writing to the global provider then trace too, and must not leak), and puts the unset one back after:
    OpenTelemetry allows setting it once per process, and the later tests of this session expect none."""
    import opentelemetry.trace as api
    from opentelemetry.util._once import Once

    saved = api._TRACER_PROVIDER, api._TRACER_PROVIDER_SET_ONCE
    yield
    api._TRACER_PROVIDER, api._TRACER_PROVIDER_SET_ONCE = saved
    api._TRACER_PROVIDER_SET_ONCE = Once() if saved[0] is None else saved[1]


@asynccontextmanager
async def traced_intake(
    ts_env: Any, db_pool: asyncpg.Pool, db_url: str, ring: KeyRing, task_queue: str
) -> AsyncIterator[Intake]:
    """The intake app with the workflow worker and oversight's audit activities, all on a client made by
    shared.temporal.connect (the hook under test) to the test server."""
    client = await connect(
        ts_env.client.service_client.config.target_host, ts_env.client.namespace, ring
    )
    async with intake_app(SimpleNamespace(client=client), db_pool, db_url, ring, task_queue) as it:
        yield it


async def classify_with_canaries(it: Intake) -> tuple[str, str]:
    """Open a case (a canary name in the body), read its person as an auditor with a break-glass reason and a
    purpose in the query, classify it (an Update; a canary justification, a break-glass reason in the query).
    Returns (case id, request id of the classify request)."""
    hotline = it.auth(A.police)
    r = await it.open(open_body(person={"prs_FirstName": CANARY_NAME}), headers=hotline)
    assert r.status_code == 201, r.text
    case_id = r.json()["case_id"]
    version = (await it.http.get(f"/cases/{case_id}", headers=hotline)).json()["workflow"][
        "version"
    ]
    auditor = it.auth(A.police, Role.auditor, user="auditor-1")
    r = await it.http.get(
        f"/cases/{case_id}/person",
        headers=auditor,
        params={"purpose": CANARY_PURPOSE, "break_glass_reason": CANARY_BREAK_GLASS},
    )
    assert r.status_code == 200, r.text
    request_id = "req-classify-traced-1"
    r = await it.http.post(
        f"/cases/{case_id}/classify",
        params={"break_glass_reason": CANARY_BREAK_GLASS},
        headers={**hotline, "X-Request-ID": request_id},
        json={
            "classification": "trafficking_suspected",
            "justification": CANARY_JUSTIFICATION,
            "expected_version": version,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["stage"] == "verify"
    return case_id, request_id


async def audit_landed(pool: asyncpg.Pool, case_id: str, kind: str) -> None:
    for _ in range(1200):  # up to a minute on a loaded machine
        if await pool.fetchval(
            "SELECT count(*) FROM oversight.case_events WHERE case_id = $1 AND kind = $2",
            case_id,
            kind,
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} event of {case_id} in the audit log")


def one(spans: list[Span], name: str) -> Span:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, f"{name}: {[s.name for s in spans]}"
    return found[0]


async def test_one_update_request_is_one_trace_without_personal_data(
    ts_env: Any,
    db_pool: asyncpg.Pool,
    db_url: str,
    ring: KeyRing,
    task_queue: str,
    receiver: OtlpReceiver,
    logs: Any,
    global_provider: None,
) -> None:
    lines = logs()
    provider = init_tracing("intake", Settings(otlp_endpoint=receiver.url))
    assert provider is not None and trace.get_tracer_provider() is provider
    try:
        async with traced_intake(ts_env, db_pool, db_url, ring, task_queue) as it:
            assert any(m.cls is TracingMiddleware for m in it.app.user_middleware)
            case_id, request_id = await classify_with_canaries(it)
            await audit_landed(
                db_pool, case_id, "stage_decided"
            )  # the classification's audit activity ran
    finally:
        shutdown_tracing()  # flushes every buffered span to the receiver

    # (1) the classify request: one trace from the HTTP span to the audit activity
    [http] = [s for s in receiver.spans if s.name == "POST /cases/{case_id}/classify"]
    assert http.kind == 2 and http.parent_id == ""  # SERVER, a root
    assert http.attributes == {
        "http.request.method": "POST",
        "url.scheme": "http",
        "http.route": "/cases/{case_id}/classify",
        "http.response.status_code": 200,
    }
    spans = receiver.trace(http.trace_id)
    start_update = one(spans, "StartWorkflowUpdate:decide")
    validate = one(spans, "ValidateUpdate:decide")
    handle = one(spans, "HandleUpdate:decide")
    start_audit = [s for s in spans if s.name == "StartActivity:record_case_events"]
    run_audit = [s for s in spans if s.name == "RunActivity:record_case_events"]
    assert start_audit and run_audit, [s.name for s in spans]
    assert start_update.parent_id == http.span_id
    assert validate.parent_id == start_update.span_id and handle.parent_id == start_update.span_id
    assert start_audit[0].parent_id == handle.span_id
    assert run_audit[0].parent_id == start_audit[0].span_id
    assert start_update.attributes["temporalWorkflowID"] == case_id
    assert run_audit[0].attributes["temporalWorkflowID"] == case_id
    assert {
        s.trace_id for s in [http, start_update, validate, handle, *start_audit, *run_audit]
    } == {http.trace_id}
    # the case's opening (another request) is another trace
    [open_http] = [s for s in receiver.spans if s.name == "POST /cases"]
    assert open_http.trace_id != http.trace_id

    # (2) no canary anywhere in what was exported; names are route templates, never concrete paths
    assert receiver.spans
    for s in receiver.spans:
        for canary in CANARIES:
            assert canary not in s.raw.lower(), f"{canary!r} in span {s.name}: {s.raw}"
        assert "?" not in s.name and case_id not in s.name
        assert not any(
            k.startswith(
                ("url.query", "url.full", "http.target", "http.url", "http.request.header")
            )
            for k in s.attributes
        )
    reads = [s for s in receiver.spans if s.name == "GET /cases/{case_id}/person"]
    assert len(reads) == 1 and reads[0].attributes["http.response.status_code"] == 200

    # (3) the log lines of the classify request carry its trace id (and the span of the request)
    written = [line for line in lines() if line.get("request_id") == request_id]
    classified = [line for line in written if line["event"] == "case_classified"]
    assert classified, written
    assert all(line.get("trace_id") == http.trace_id for line in written)
    assert classified[0]["span_id"] == http.span_id
    assert not any("canary" in json.dumps(line).lower() for line in written)


async def test_off_without_an_endpoint(
    ts_env: Any,
    db_pool: asyncpg.Pool,
    db_url: str,
    ring: KeyRing,
    task_queue: str,
    receiver: OtlpReceiver,
    logs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the standard OpenTelemetry variables alone turn nothing on: only NRM_OTLP_ENDPOINT does
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", receiver.url + "/v1/traces")
    monkeypatch.delenv("NRM_OTLP_ENDPOINT", raising=False)
    lines = logs()
    settings = Settings()
    assert settings.otlp_endpoint is None
    assert init_tracing("intake", settings) is None
    assert tracing.tracer_provider() is None and tracing_interceptors() == []
    async with traced_intake(ts_env, db_pool, db_url, ring, task_queue) as it:
        assert not any(m.cls is TracingMiddleware for m in it.app.user_middleware)
        assert it.runtime.temporal.config()["interceptors"] == []
        _, request_id = await classify_with_canaries(it)
    shutdown_tracing()
    assert trace.get_tracer_provider().__class__.__name__ == "ProxyTracerProvider"  # none installed
    assert receiver.posts == 0 and receiver.spans == []
    written = [line for line in lines() if line.get("request_id") == request_id]
    assert written and not any("trace_id" in line or "span_id" in line for line in written)
