"""shared/tracing.py without servers: the request span records no URL, query, header or exception message;
the export filter keeps an error's type and drops its message; the log processor adds the active span's ids."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from shared.tracing import _redacting_exporter, add_trace_context, install_tracing, traces_url

PII = "Nguyễn Thị Đào 0912345678"


def traced_app() -> tuple[FastAPI, InMemorySpanExporter, TracerProvider]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_redacting_exporter(memory)))
    app = FastAPI()
    seen: dict[str, Any] = {}

    @app.get("/cases/{case_id}/person")
    async def person(case_id: str, break_glass_reason: str | None = None) -> dict[str, Any]:
        seen["log"] = add_trace_context(None, "info", {})
        return {"case_id": case_id}

    @app.post("/cases/{case_id}/fail")
    async def fail(case_id: str) -> None:
        raise ValueError(PII)

    app.state.seen = seen
    assert install_tracing(app, provider)
    return app, memory, provider


async def test_request_span_has_template_name_and_no_url_query_or_message() -> None:
    app, memory, _ = traced_app()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://t"
    ) as http:
        r = await http.get(
            "/cases/c-1/person",
            params={"break_glass_reason": PII},
            headers={
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "X-Person": "Dao 0912345678",
            },
        )
        assert r.status_code == 200
        assert (await http.post("/cases/c-2/fail")).status_code == 500
    ok, failed = memory.get_finished_spans()
    assert ok.name == "GET /cases/{case_id}/person" and failed.name == "POST /cases/{case_id}/fail"
    assert (
        format(ok.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    )  # the caller's trace goes on
    assert ok.parent is not None and format(ok.parent.span_id, "016x") == "b7ad6b7169203331"
    assert dict(ok.attributes or {}) == {
        "http.request.method": "GET",
        "url.scheme": "http",
        "http.route": "/cases/{case_id}/person",
        "http.response.status_code": 200,
    }
    assert (
        failed.status.status_code == StatusCode.ERROR
        and dict(failed.attributes or {})["error.type"] == "ValueError"
    )
    for span in (ok, failed):
        text = repr(span.to_json())
        assert (
            "Nguy" not in text
            and "0912345678" not in text
            and "c-1" not in text
            and not span.events
        )
    log = app.state.seen["log"]
    assert log == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": format(ok.context.span_id, "016x"),
    }


def test_export_filter_keeps_the_error_type_only() -> None:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_redacting_exporter(memory)))
    with provider.get_tracer("t").start_as_current_span(
        "RunActivity:x", record_exception=False, set_status_on_exception=False
    ) as span:
        span.set_attribute("note", PII)
        span.set_attribute("temporalWorkflowID", "c-06d8230951ab")
        span.record_exception(ValueError(PII))
        span.set_status(Status(StatusCode.ERROR, f"ApplicationError: {PII}"))
    [out] = memory.get_finished_spans()
    assert out.status.description == "ApplicationError"
    assert dict(out.attributes or {}) == {
        "note": "[redacted]",
        "temporalWorkflowID": "c-06d8230951ab",
    }
    [event] = out.events
    assert dict(event.attributes or {}) == {
        "exception.type": "ValueError",
        "exception.escaped": "False",
    }
    assert "Nguy" not in repr(out.to_json())


def test_no_span_no_ids_and_endpoint_urls() -> None:
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    assert traces_url("http://collector:4318") == "http://collector:4318/v1/traces"
    assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
    assert traces_url("https://otel.example/v1/traces") == "https://otel.example/v1/traces"
