"""Every process of a real `nrm up` exposes Prometheus metrics, and after a case is opened, classified and
escalated they say so: the services' /metrics count the requests by route template, method and status (the
guard's 401 included) with their latency and the database pool; oversight's adds the open cases by stage,
overdue cases, escalations and waiting handoffs from its projection; the Temporal SDK's own metrics (workflow
tasks of the workflow worker, activities of the services' workers) are served on NRM_METRICS_PORT + n."""

from __future__ import annotations

import random
import shutil
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.config import SERVICE_NAMES
from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, new_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
WAIT = 120.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_block(n: int, taken: set[int]) -> int:
    """A base port with base..base+n-1 all free (and away from the stack's own ports)."""
    rng = random.Random()
    while True:
        base = rng.randrange(20000, 31900)
        if any(abs(base + i - t) <= 11 for i in range(n) for t in taken):
            continue
        free = True
        for port in range(base, base + n):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return base


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    s = new_stack()
    s.env["NRM_METRICS_PORT"] = str(_free_block(1 + len(SERVICE_NAMES), set(s.ports.values())))
    stopped = False
    try:
        s.up()
        s.wait_ready()
        yield s
        s.stop()
        stopped = True
    finally:
        if not stopped:
            s.force_down()
        shutil.rmtree(s.data_dir, ignore_errors=True)


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=30).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels` (absent: 0)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


def ok(r: httpx.Response, status: int = 200) -> dict[str, object]:
    assert r.status_code == status, (
        f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    )
    return dict(r.json())


def test_every_process_exposes_its_metrics(stack: RunningStack) -> None:
    hotline = stack.auth(A.hotline, user="hotline-op-1")
    supervisor = stack.auth(A.social_protection, Role.supervisor, user="sp-supervisor-1")
    body = {
        "channel": "hotline_111",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": "Hoa",
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
    with stack.client("intake") as intake, stack.client("oversight") as ovs:
        cid = str(
            ok(
                intake.post("/cases", json=body, headers={**hotline, "Idempotency-Key": "m-1"}), 201
            )["case_id"]
        )
        assert (
            intake.get(f"/cases/{cid}").status_code == 401
        )  # no token: refused by the guard, still counted
        view = ok(intake.get(f"/cases/{cid}", headers=hotline))
        workflow = view["workflow"]
        assert isinstance(workflow, dict)
        state = ok(
            intake.post(
                f"/cases/{cid}/classify",
                headers=hotline,
                json={
                    "classification": "trafficking_suspected",
                    "justification": "online recruitment",
                    "expected_version": workflow["version"],
                },
            )
        )
        assert state["stage"] == "verify" and state["owner_agency"] == "social_protection"
        escalated = ok(
            ovs.post(
                f"/cases/{cid}/escalate",
                headers=supervisor,
                json={
                    "reason": "family says the recruiter calls again",
                    "expected_version": state["version"],
                },
            )
        )
        # the answer is the case view (no escalation level): the level is in the metrics below
        assert escalated["version"] > state["version"] and escalated["stage"] == "verify"

    # ---- oversight: the domain's figures, once its projection has the escalation -------------------
    deadline = time.monotonic() + WAIT
    while (
        value(ovs_m := scrape(f"{stack.url('oversight')}/metrics"), "nrm_escalations_raised_total")
        < 1
    ):
        assert time.monotonic() < deadline, (
            f"no escalation in oversight's metrics\n{stack.diagnostics()}"
        )
        time.sleep(0.5)
    assert value(ovs_m, "nrm_cases_open", stage="verify") == 1
    assert value(ovs_m, "nrm_cases_open", stage="receive") == 0
    assert value(ovs_m, "nrm_cases_open") == 1
    assert value(ovs_m, "nrm_cases_overdue") == 0
    assert value(ovs_m, "nrm_cases_escalated", level="1") == 1
    assert value(ovs_m, "nrm_handoffs_waiting") == 0
    assert value(ovs_m, "nrm_escalations_raised_total") == 1
    assert (
        value(
            ovs_m,
            "nrm_http_requests_total",
            service="oversight",
            route="/cases/{case_id}/escalate",
            method="POST",
            status="200",
        )
        == 1
    )

    # ---- intake: requests by route template, method and status; latency; the pool --------------------
    m = scrape(f"{stack.url('intake')}/metrics")
    assert (
        value(
            m,
            "nrm_http_requests_total",
            service="intake",
            route="/cases",
            method="POST",
            status="201",
        )
        == 1
    )
    assert (
        value(m, "nrm_http_requests_total", route="/cases/{case_id}", method="GET", status="401")
        == 1
    )
    assert (
        value(m, "nrm_http_requests_total", route="/cases/{case_id}", method="GET", status="200")
        == 1
    )
    assert (
        value(
            m,
            "nrm_http_requests_total",
            route="/cases/{case_id}/classify",
            method="POST",
            status="200",
        )
        == 1
    )
    assert value(m, "nrm_http_request_duration_seconds_count", route="/cases", method="POST") == 1
    assert value(m, "nrm_http_request_duration_seconds_sum", route="/cases", method="POST") > 0
    assert not any(cid in str(ls) for _, ls in m), "a case id in a label"
    assert (
        value(m, "nrm_db_pool_max_connections", service="intake") == 10
    )  # NRM_DB_POOL_MAX's default
    assert ("nrm_db_pool_connections", frozenset({("service", "intake"), ("state", "in_use")})) in m
    for service in SERVICE_NAMES:
        sm = scrape(f"{stack.url(service)}/metrics")
        assert (
            value(sm, "nrm_http_requests_total", service=service, route="/readyz", status="200")
            >= 1
        )
        assert value(sm, "nrm_db_pool_connections", service=service) >= 1

    # ---- the Temporal SDK's own metrics: the workflow worker and each service's activity worker -------------
    base = int(stack.env["NRM_METRICS_PORT"])
    worker = scrape(f"http://127.0.0.1:{base}/metrics")
    assert (
        value(
            worker,
            "temporal_workflow_task_execution_latency_seconds_count",
            task_queue="nrm-workflows",
        )
        >= 3
    )
    assert (
        value(
            worker,
            "temporal_workflow_task_schedule_to_start_latency_seconds_count",
            task_queue="nrm-workflows",
        )
        >= 3
    )
    assert "temporal_sticky_cache_size" in names(worker)
    assert value(worker, "temporal_num_pollers", task_queue="nrm-workflows") >= 1
    audit = scrape(f"http://127.0.0.1:{base + 1 + SERVICE_NAMES.index('oversight')}/metrics")
    assert (
        value(
            audit, "temporal_activity_execution_latency_seconds_count", task_queue="nrm-oversight"
        )
        >= 1
    )
    assert (
        value(
            audit,
            "temporal_activity_schedule_to_start_latency_seconds_count",
            task_queue="nrm-oversight",
        )
        >= 1
    )
    for i, service in enumerate(SERVICE_NAMES, start=1):
        sdk = scrape(f"http://127.0.0.1:{base + i}/metrics")
        assert value(sdk, "temporal_num_pollers", task_queue=f"nrm-{service}") >= 1, sorted(
            names(sdk)
        )
