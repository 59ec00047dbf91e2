"""OpenTelemetry traces: from the HTTP request through the Temporal Update to the activities it causes.

Off unless NRM_OTLP_ENDPOINT is set: then `init_tracing` (once per process, before the app and the Temporal
client exist) installs a tracer provider that sends spans over OTLP/HTTP (protobuf) to
`<NRM_OTLP_ENDPOINT>/v1/traces`. Unset: no provider, no middleware, no interceptor; the log processor finds no
span and adds nothing. What is traced:

- every service request (but /metrics, /healthz, /readyz): one SERVER span named `<METHOD> <route template>`
  (`POST /cases/{case_id}/classify`) with the method, route template, scheme and status only. No URL (its
  query can carry `break_glass_reason` or `purpose` free text), no header, no body. An incoming W3C
  `traceparent` is continued.
- the Temporal client and workers (`tracing_interceptors()`, given to `Client.connect` in shared/temporal.py;
  workers take them from their client): the SDK's TracingInterceptor (`StartWorkflow`, `StartWorkflowUpdate`,
  `HandleUpdate`, `StartActivity`, `RunActivity` …; workflow spans have zero duration), with one change in the
  workflow: an Update's `ValidateUpdate`/`HandleUpdate` spans are children of the caller's
  `StartWorkflowUpdate` (the SDK's put them in the trace of whoever started the workflow, months earlier for a
  case, and only link the caller), and the first activity the workflow starts after the Update's handler
  finished (the audit batch it queued, sent by CaseWorkflow's main loop) is a child of that `HandleUpdate`. So one
  request is one trace: HTTP span, StartWorkflowUpdate, HandleUpdate, StartActivity, RunActivity in the
  oversight worker. Span attributes there are Temporal ids (workflow id = case id, run, activity, update id).
- log lines: `add_trace_context` (a structlog processor, shared/logging.py) adds `trace_id` and `span_id` to
  every line written while a span is active.

No personal data leaves in a span: besides choosing what is recorded, the exporter is wrapped so that error
descriptions and exception events keep the exception's type only (a message may quote data) and string
attributes pass through the log redactor's patterns."""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import fastapi
import opentelemetry.context
import opentelemetry.trace
import temporalio.api.common.v1
import temporalio.worker
import temporalio.workflow
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor

from shared.config import Settings
from shared.metrics import _route_template

if TYPE_CHECKING:
    from fastapi import FastAPI
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

UNTRACED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
TRACES_PATH = "/v1/traces"

_provider: TracerProvider | None = None


# ---- the provider ------------------------------------------------------------------------------------
def traces_url(endpoint: str) -> str:
    """`http://collector:4318` -> `http://collector:4318/v1/traces`; a URL already ending in it is kept."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith(TRACES_PATH) else endpoint + TRACES_PATH


def init_tracing(
    service_name: str, settings: Settings, *, set_global: bool = True
) -> TracerProvider | None:
    """Once per process, before the app and any Temporal client: with NRM_OTLP_ENDPOINT set, a tracer provider
    (resource `service.name` = `nrm-<service>`) exporting in batches over OTLP/HTTP, installed as the global
    one; unset, nothing at all (returns None). `set_global=False` keeps it to NRM's own spans (tests)."""
    global _provider
    if not settings.otlp_endpoint:
        return None
    if _provider is not None:
        return _provider
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(
        resource=Resource.create(
            {"service.name": f"nrm-{service_name}", "service.namespace": "nrm"}
        ),
        shutdown_on_exit=set_global,
    )
    exporter = OTLPSpanExporter(endpoint=traces_url(settings.otlp_endpoint), timeout=10)
    provider.add_span_processor(BatchSpanProcessor(_redacting_exporter(exporter)))
    if set_global:
        opentelemetry.trace.set_tracer_provider(provider)
    _provider = provider
    return provider


def tracer_provider() -> TracerProvider | None:
    """The provider init_tracing made, or None (tracing off)."""
    return _provider


def shutdown_tracing() -> None:
    """Send what is still buffered and stop (end of the process; a forked part exits without atexit)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


# ---- log lines ---------------------------------------------------------------------------------------
def add_trace_context(_: Any, __: str, event_dict: Any) -> Any:
    """structlog processor: `trace_id` / `span_id` (hex, as a trace backend shows them) of the active span."""
    ctx = opentelemetry.trace.get_current_span().get_span_context()
    if ctx.is_valid:
        event_dict["trace_id"] = format(ctx.trace_id, "032x")
        event_dict["span_id"] = format(ctx.span_id, "016x")
    return event_dict


# ---- HTTP ----------------------------------------------------------------------------------------------
class TracingMiddleware:
    """Plain ASGI, outermost: one SERVER span per request, current while the request is answered (so the
    Temporal client's spans and the log lines belong to it). Records the method, the route template, the
    scheme and the status; never the URL, its query, a header or the body."""

    def __init__(self, app: ASGIApp, tracer: opentelemetry.trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        parent = extract({k: headers[k] for k in ("traceparent", "tracestate") if k in headers})
        method = str(scope["method"])
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with self.tracer.start_as_current_span(
            f"HTTP {method}",
            context=parent,
            kind=SpanKind.SERVER,
            record_exception=False,
            set_status_on_exception=False,
            attributes={
                "http.request.method": method,
                "url.scheme": str(scope.get("scheme", "http")),
            },
        ) as span:
            try:
                await self.app(scope, receive, send_status)
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__qualname__)
                raise
            finally:
                route = _route_template(scope)
                span.update_name(f"{method} {route}")
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))


def fastapi_options() -> dict[str, Any]:
    """FastAPI's own telemetry off (`FastAPI(**fastapi_options(), ...)`): since 0.16x FastAPI traces every
    request by itself as soon as a global tracer provider exists, with the concrete path (`url.path`, case ids)
    and the query string (`url.query`: a break-glass reason, a purpose) and exception messages in logs.
    TracingMiddleware records what NRM decides instead. Older FastAPI has no such option: nothing to pass."""
    if "telemetry" not in inspect.signature(fastapi.FastAPI.__init__).parameters:
        return {}
    return {
        "telemetry": {
            "tracing": False,
            "metrics": False,
            "logs": False,
            "operation_spans": False,
            "auto_configure": False,
        }
    }


def install_tracing(app: FastAPI, provider: TracerProvider | None = None) -> bool:
    """Add the request spans to a service app when tracing is on (call after the other middleware, so it is
    outermost). Returns whether it did."""
    provider = provider or _provider
    if provider is None:
        return False
    app.add_middleware(TracingMiddleware, tracer=provider.get_tracer("nrm.http"))
    return True


# ---- Temporal ------------------------------------------------------------------------------------------
def tracing_interceptors(provider: TracerProvider | None = None) -> list[Any]:
    """The interceptors for `Client.connect` (workers made from that client take them too): empty when
    tracing is off."""
    provider = provider or _provider
    if provider is None:
        return []
    return [NrmTracingInterceptor(provider.get_tracer("nrm.temporal"))]


class NrmTracingInterceptor(TracingInterceptor):
    """The SDK's tracing interceptor with Update spans in the caller's trace (see _CausalWorkflowInterceptor)."""

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[TracingWorkflowInboundInterceptor]:
        super().workflow_interceptor_class(input)  # registers the extern that emits workflow spans
        return _CausalWorkflowInterceptor


_IN_UPDATE = opentelemetry.context.create_key("nrm-in-update-handler")
CAUSE_WINDOW_NS = (
    60 * 10**9
)  # an Update's audit batch starts within this much workflow time of its handler


@dataclass
class _HeaderHolder:
    headers: Mapping[str, temporalio.api.common.v1.Payload] = field(default_factory=dict)


class _CausalWorkflowInterceptor(TracingWorkflowInboundInterceptor):
    """Runs in the workflow sandbox (replay-safe: it only adds spans and activity headers, no command).

    - ValidateUpdate/HandleUpdate: children of the caller's span carried in the Update's header; the handler
      runs with its HandleUpdate span current, so an activity it starts itself is its child.
    - CaseWorkflow's handlers queue audit events that its main loop sends with `record_case_events`; the
      first activity started after a handler finished (in the same workflow task, or once the batch then in
      flight is done) is made a child of that handler's HandleUpdate span, its cause. The cause is used once
      and only within CAUSE_WINDOW_NS of workflow time, so a timer's escalation days later is not pinned to
      the last Update. Two Updates whose events leave in one batch: the batch goes with the last one."""

    def __init__(self, next: temporalio.worker.WorkflowInboundInterceptor) -> None:
        super().__init__(next)
        self._cause: tuple[dict[str, Any], int] | None = (
            None  # (span carrier, workflow time it was set, ns)
        )

    def _carrier(
        self, headers: Mapping[str, temporalio.api.common.v1.Payload]
    ) -> dict[str, Any] | None:
        payload = headers.get(self.header_key)
        if not payload:
            return None
        carrier = self.payload_converter.from_payloads([payload])[0]
        return dict(carrier) if carrier else None

    def _context(
        self, carrier: dict[str, Any], in_update: bool = False
    ) -> opentelemetry.context.Context:
        ctx = self._set_on_context(self.text_map_propagator.extract(carrier))
        return opentelemetry.context.set_value(_IN_UPDATE, True, ctx) if in_update else ctx

    def handle_update_validator(self, input: temporalio.worker.HandleUpdateInput) -> None:
        caller = self._carrier(input.headers)
        if caller is None:
            super().handle_update_validator(input)
            return
        token = opentelemetry.context.attach(self._context(caller))
        try:
            self._completed_span(f"ValidateUpdate:{input.update}", kind=SpanKind.SERVER)
        finally:
            opentelemetry.context.detach(token)
        temporalio.worker.WorkflowInboundInterceptor.handle_update_validator(self, input)

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        caller = self._carrier(input.headers)
        if caller is None:
            return await super().handle_update_handler(input)
        holder = _HeaderHolder()
        token = opentelemetry.context.attach(self._context(caller))
        try:  # on replay no span is made and the holder stays empty: the caller's context stands in
            self._completed_span(
                f"HandleUpdate:{input.update}", add_to_outbound=holder, kind=SpanKind.SERVER
            )
        finally:
            opentelemetry.context.detach(token)
        span = self._carrier(holder.headers) or caller
        token = opentelemetry.context.attach(self._context(span, in_update=True))
        try:
            return await temporalio.worker.WorkflowInboundInterceptor.handle_update_handler(
                self, input
            )
        finally:
            opentelemetry.context.detach(token)
            self._cause = (span, temporalio.workflow.time_ns())

    def _completed_span(self, span_name: str, **kwargs: Any) -> None:
        cause = self._cause
        if (
            cause is not None
            and span_name.startswith("StartActivity:")
            and not opentelemetry.context.get_value(_IN_UPDATE)
        ):
            self._cause = None
            if temporalio.workflow.time_ns() - cause[1] <= CAUSE_WINDOW_NS:
                token = opentelemetry.context.attach(self._context(cause[0]))
                try:
                    super()._completed_span(span_name, **kwargs)
                finally:
                    opentelemetry.context.detach(token)
                return
        super()._completed_span(span_name, **kwargs)


# ---- the export filter ---------------------------------------------------------------------------------
def _redacting_exporter(inner: SpanExporter) -> SpanExporter:
    from opentelemetry.sdk.trace.export import SpanExporter

    class RedactingExporter(SpanExporter):
        """Exports copies of the spans with error messages reduced to their exception type and string
        attributes passed through the log redactor (shared/logging.py)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return inner.export([_redacted(s) for s in spans])

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return RedactingExporter()


def _redacted(span: ReadableSpan) -> ReadableSpan:
    from opentelemetry.sdk.trace import Event, ReadableSpan

    from shared.logging import redact_pii

    def clean(attrs: Mapping[str, Any] | None) -> dict[str, Any]:
        out = dict(redact_pii(None, "", dict(attrs or {})))
        out.pop("exception.message", None)
        out.pop("exception.stacktrace", None)
        return out

    status = span.status
    if status.description:  # "ApplicationError: <message>" -> "ApplicationError"
        status = Status(status.status_code, status.description.split(":", 1)[0][:100])
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=clean(span.attributes),
        kind=span.kind,
        status=status,
        start_time=span.start_time,
        end_time=span.end_time,
        links=span.links,
        instrumentation_scope=span.instrumentation_scope,
        events=[Event(e.name, clean(e.attributes), e.timestamp) for e in span.events],
    )
