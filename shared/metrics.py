"""Prometheus metrics of every NRM process.

- Services: `GET /metrics` (no token; bind the services to a private interface) with
  `nrm_http_requests_total{service,route,method,status}`, `nrm_http_request_duration_seconds{service,route,method}`
  (route = the path template, e.g. `/cases/{case_id}/claim`, never the concrete path: no case ids in labels),
  `nrm_http_requests_in_progress`, and the database pool (`nrm_db_pool_connections{state=in_use|idle}`,
  `nrm_db_pool_max_connections`).
- Oversight's `/metrics` adds the domain's figures, read from its case_summary projection on every scrape:
  `nrm_cases_open{stage}`, `nrm_cases_overdue`, `nrm_cases_escalated{level}`, `nrm_handoffs_waiting`,
  `nrm_escalations_raised_total` (escalation events in the audit log).
- The Temporal SDK's own metrics (workflow task and activity latency, schedule-to-start, sticky cache, poller
  and failure counters) come from the SDK's Rust core through its runtime telemetry, on a port of their own
  per process: NRM_METRICS_PORT (default 9100) for the workflow worker, +1..+4 for intake, verification,
  support and oversight (their activity workers). `init_sdk_telemetry` must run before any Temporal client."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import SERVICE_NAMES, Settings

log = structlog.get_logger("metrics")
METRICS_PATH = "/metrics"
SDK_PROCESSES: tuple[str, ...] = ("workflow-worker", *SERVICE_NAMES)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ESCALATION_KINDS = ("deadline_escalated", "escalated_by_supervisor", "handoff_escalated")
OPEN_STATUSES = ("Active", "FollowUp")


# ---- Temporal SDK runtime telemetry ------------------------------------------------------------------
def sdk_metrics_port(process: str, settings: Settings) -> int:
    return settings.metrics_port + SDK_PROCESSES.index(process)


def init_sdk_telemetry(process: str, settings: Settings) -> str | None:
    """Make the process's default Temporal Runtime export the SDK's metrics in Prometheus format on
    host:NRM_METRICS_PORT+offset. Call before any Temporal client exists. Returns the address, or None when
    the port is taken (logged; the process runs on without SDK metrics rather than not at all)."""
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    address = f"{settings.host}:{sdk_metrics_port(process, settings)}"
    try:
        runtime = Runtime(
            telemetry=TelemetryConfig(
                metrics=PrometheusConfig(
                    bind_address=address,
                    counters_total_suffix=True,
                    unit_suffix=True,
                    durations_as_seconds=True,
                ),
                global_tags={"nrm_process": process},
            )
        )
    except ValueError as exc:
        log.warning("sdk_metrics_unavailable", process=process, address=address, error=str(exc))
        return None
    Runtime.set_default(runtime, error_if_already_set=False)
    log.info("sdk_metrics_listening", process=process, address=address)
    return address


# ---- HTTP ------------------------------------------------------------------------------------------
class HttpMetrics:
    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.requests = Counter(
            "nrm_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["service", "route", "method", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "nrm_http_request_duration_seconds",
            "HTTP request latency, by route template",
            ["service", "route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_progress = Gauge(
            "nrm_http_requests_in_progress",
            "HTTP requests being answered now",
            ["service"],
            registry=registry,
        )


class MetricsMiddleware:
    """Plain ASGI, outermost: counts every answer, including the request guard's 401 and 413."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == METRICS_PATH:
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        m = self.metrics
        m.in_progress.labels(m.service).inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            m.in_progress.labels(m.service).dec()
            route = _route_template(scope)
            m.requests.labels(m.service, route, scope["method"], str(status)).inc()
            m.duration.labels(m.service, route, scope["method"]).observe(
                time.perf_counter() - started
            )


def _route_template(scope: Scope) -> str:
    """The matched route's path template. A request refused before routing (401, 413) has none yet: its path
    is matched against the templates of the app's OpenAPI document instead (never the concrete path, which
    would put case ids in labels)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    templates = getattr(getattr(app, "state", None), "metrics_templates", None)
    if templates is None and app is not None:
        paths = app.openapi().get("paths", {})
        templates = [
            (compile_path(p)[0], p) for p in sorted(paths, key=lambda p: (p.count("{"), p))
        ]
        app.state.metrics_templates = templates
    for regex, template in templates or ():
        if regex.match(scope["path"]):
            return str(template)
    return "unmatched"


# ---- database pool and domain (collected on scrape) ------------------------------------------------------
class PoolCollector(Collector):
    def __init__(self, app: FastAPI, service: str) -> None:
        self.app = app
        self.service = service

    def collect(self) -> Iterable[Metric]:
        runtime = getattr(self.app.state, "runtime", None)
        pool = getattr(runtime, "pool", None)
        if pool is None:
            return
        conns = GaugeMetricFamily(
            "nrm_db_pool_connections",
            "Database pool connections open, by state",
            labels=["service", "state"],
        )
        size, idle = pool.get_size(), pool.get_idle_size()
        conns.add_metric([self.service, "in_use"], size - idle)
        conns.add_metric([self.service, "idle"], idle)
        yield conns
        yield _one(
            "nrm_db_pool_max_connections",
            "Database pool size limit",
            self.service,
            pool.get_max_size(),
        )


def _one(name: str, doc: str, service: str, value: float) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=["service"])
    g.add_metric([service], value)
    return g


class DomainCollector(Collector):
    """The case figures, refreshed from oversight.case_summary by `refresh` before each scrape."""

    def __init__(self) -> None:
        self.values: dict[str, Any] | None = None

    async def refresh(self, pool: Any) -> None:
        async with pool.acquire() as conn:
            by_stage = await conn.fetch(
                "SELECT stage, count(*) AS n FROM oversight.case_summary WHERE status = ANY($1::text[]) GROUP BY stage",
                list(OPEN_STATUSES),
            )
            row = await conn.fetchrow(
                """SELECT count(*) FILTER (WHERE deadline_at < now()) AS overdue,
                          coalesce(sum(open_handoffs), 0) AS handoffs
                     FROM oversight.case_summary WHERE status = ANY($1::text[])""",
                list(OPEN_STATUSES),
            )
            by_level = await conn.fetch(
                """SELECT escalation_level AS level, count(*) AS n FROM oversight.case_summary
                    WHERE status = ANY($1::text[]) AND escalation_level > 0 GROUP BY escalation_level""",
                list(OPEN_STATUSES),
            )
            raised = await conn.fetchval(
                "SELECT count(*) FROM oversight.case_events WHERE kind = ANY($1::text[])",
                list(ESCALATION_KINDS),
            )
        self.values = {
            "by_stage": {r["stage"]: r["n"] for r in by_stage},
            "overdue": row["overdue"],
            "handoffs": row["handoffs"],
            "by_level": {r["level"]: r["n"] for r in by_level},
            "raised": raised,
        }

    def collect(self) -> Iterable[Metric]:
        from shared.domain import Stage

        v = self.values
        if v is None:
            return
        open_ = GaugeMetricFamily("nrm_cases_open", "Open cases, by stage", labels=["stage"])
        for stage in Stage:
            open_.add_metric([stage.value], v["by_stage"].get(stage.value, 0))
        yield open_
        yield GaugeMetricFamily(
            "nrm_cases_overdue", "Open cases past their stage deadline", value=v["overdue"]
        )
        escalated = GaugeMetricFamily(
            "nrm_cases_escalated", "Open cases escalated, by escalation level", labels=["level"]
        )
        for level in (1, 2, 3):
            escalated.add_metric([str(level)], v["by_level"].get(level, 0))
        yield escalated
        yield GaugeMetricFamily(
            "nrm_handoffs_waiting", "Handoffs requested and not yet answered", value=v["handoffs"]
        )
        yield CounterMetricFamily(
            "nrm_escalations_raised",
            "Escalations recorded in the audit log (deadline, supervisor and handoff)",
            value=v["raised"],
        )


def install_metrics(app: FastAPI, service: str) -> None:
    """HTTP and pool metrics for a service app, and GET /metrics; oversight's adds the domain's figures."""
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    app.add_middleware(MetricsMiddleware, metrics=HttpMetrics(service, registry))
    registry.register(PoolCollector(app, service))
    domain = DomainCollector() if service == "oversight" else None
    if domain is not None:
        registry.register(domain)

    async def metrics(request: Request) -> Response:
        if domain is not None:
            runtime = getattr(request.app.state, "runtime", None)
            if runtime is not None:
                try:
                    await domain.refresh(runtime.pool)
                except Exception as exc:  # a scrape must answer even when the database does not
                    log.warning("domain_metrics_failed", error=type(exc).__name__)
                    domain.values = None
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.add_route(METRICS_PATH, metrics, methods=["GET"], include_in_schema=False)
