"""Property-based API fuzzing from each service's own OpenAPI document (schemathesis), against a real
`nrm up` (embedded PostgreSQL, Temporal dev server, the four services, the workflow worker): every operation
of intake, verification, support, oversight and notifications is called with generated requests, each under the bearer
token of a caseworker, a supervisor or an auditor, about half of them on a real case (opened and classified
first) so that the calls get past the 404 into the endpoint. The checks on every answer: no 5xx
(`not_a_server_error`) and the response matches the schema documented for its status code
(`response_schema_conformance`). Undocumented status codes are not failed (`status_code_conformance` is not
run: the 401/403/404/409 of every endpoint are not all listed).

Then the inputs that once answered 500 (issue 11), each a 422 whose `detail` names the field as FastAPI's
validation errors do."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
SERVICES = ("intake", "verification", "support", "oversight", "notifications")
MAX_EXAMPLES = int(
    os.environ.get("NRM_FUZZ_EXAMPLES", "10")
)  # per operation; the whole module stays < 3 min
CHECKS = [not_a_server_error, response_schema_conformance]

RESCUE_REPORT: dict[str, Any] = {
    "channel": "rescue_operation",
    "province": PROVINCE,
    "abroad": False,
    "already_safe": True,
    "person": {
        "prs_FirstName": "Hoa",
        "prs_SecondName": "Lê",
        "birth_year": 2001,
        "prs_Gender": "Feminine",
        "prs_Citizenship": ["VN"],
    },
    "report": {"summary": "Found during a raid on a karaoke bar."},
}


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack() as s:
        yield s


@pytest.fixture(scope="module")
def tokens(stack: RunningStack) -> dict[str, dict[str, str]]:
    """Police of the case's province own its verify stage; the auditor is national."""
    return {
        "caseworker": stack.auth(A.police, Role.caseworker, user="fuzz-caseworker"),
        "supervisor": stack.auth(A.police, Role.supervisor, user="fuzz-supervisor"),
        "auditor": stack.auth(
            A.steering_committee, Role.auditor, user="fuzz-auditor", province="*"
        ),
    }


@pytest.fixture(scope="module")
def real_case(stack: RunningStack, tokens: dict[str, dict[str, str]]) -> dict[str, str]:
    """A case in verify (opened from a rescue operation and classified), and its person."""
    with stack.client("intake") as intake:
        opened = intake.post("/cases", json=RESCUE_REPORT, headers=tokens["caseworker"])
        assert opened.status_code == 201, opened.text
        case_id = opened.json()["case_id"]
        classified = intake.post(
            f"/cases/{case_id}/classify",
            headers=tokens["caseworker"],
            json={
                "classification": "trafficking_suspected",
                "justification": "signs of sexual exploitation",
            },
        )
        assert classified.status_code == 200, classified.text
    return {"case_id": case_id, "person_id": opened.json()["person_ref"]}


@pytest.mark.parametrize("service", SERVICES)
def test_every_operation_answers_without_5xx_and_as_documented(
    stack: RunningStack, tokens: dict[str, dict[str, str]], real_case: dict[str, str], service: str
) -> None:
    base_url = stack.url(service)
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: dict[str, str] = {}
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @settings(
                max_examples=MAX_EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(
                case=operation.as_strategy(),
                who=st.sampled_from(sorted(tokens)),
                on_real_case=st.booleans(),
            )
            def call(case: Any, who: str, on_real_case: bool) -> None:
                params = case.path_parameters or {}
                if on_real_case:
                    for name in ("case_id", "person_id"):
                        if name in params:
                            params[name] = real_case[name]
                response = case.call(
                    base_url=base_url, session=session, headers=tokens[who], timeout=60
                )
                case.validate_response(response, checks=CHECKS)

            try:
                call()
            except (
                Exception,
                BaseExceptionGroup,
            ) as exc:  # every operation's failures, then fail once with all
                failures[operation.label] = f"{type(exc).__name__}: {exc}"[:4000]
    assert operations > 5, f"{service}: the OpenAPI document lists only {operations} operations"
    assert not failures, (
        f"{service}: {len(failures)} operations failed:\n\n"
        + "\n\n".join(f"== {label}\n{text}" for label, text in failures.items())
        + f"\n\n{stack.diagnostics()}"
    )


# ---- the inputs that answered 500 (issue 11), now 422 naming the field -----------------------------------
def _loc(response: httpx.Response) -> list[list[Any]]:
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    detail = response.json()["detail"]
    assert isinstance(detail, list) and all({"loc", "msg", "type"} <= set(e) for e in detail), (
        detail
    )
    return [e["loc"] for e in detail]


def test_nul_in_break_glass_reason_is_422_naming_the_field(
    stack: RunningStack, tokens: dict[str, dict[str, str]], real_case: dict[str, str]
) -> None:
    with stack.client("intake") as intake:
        r = intake.get(
            f"/persons/{real_case['person_id']}",
            headers=tokens["auditor"],
            params={"break_glass_reason": "court order 12/2026\x00 for the trial"},
        )
    assert _loc(r) == [["query", "break_glass_reason"]]
    assert "NUL" in r.json()["detail"][0]["msg"]


def test_empty_handoff_id_in_extend_deadline_is_422_naming_the_field(
    stack: RunningStack, tokens: dict[str, dict[str, str]], real_case: dict[str, str]
) -> None:
    with stack.client("oversight") as oversight:
        r = oversight.post(
            f"/cases/{real_case['case_id']}/extend-deadline",
            headers=tokens["supervisor"],
            json={
                "extend_by": "P2D",
                "reason": "waiting for the embassy's papers",
                "handoff_id": "",
            },
        )
    assert _loc(r) == [["body", "handoff_id"]]


def test_offset_out_of_range_in_stuck_is_422_naming_the_field(
    stack: RunningStack, tokens: dict[str, dict[str, str]]
) -> None:
    with stack.client("oversight") as oversight:
        r = oversight.get(
            "/stuck", headers=tokens["supervisor"], params={"offset": "28264365264648368128"}
        )
    assert _loc(r) == [["query", "offset"]]


def test_offset_out_of_range_in_notifications_lists_is_422_naming_the_field(
    stack: RunningStack, tokens: dict[str, dict[str, str]]
) -> None:
    """Found by this module's fuzzer: the notifications service's offsets were unbounded (a 500 from
    PostgreSQL's bigint); they take the floor's `Offset` now, like every other list."""
    with stack.client("notifications") as notifications:
        for path in ("/dead-letters", "/inbox"):
            r = notifications.get(
                path, headers=tokens["supervisor"], params={"offset": "2600906034319641343426560"}
            )
            assert _loc(r) == [["query", "offset"]], path


def test_nul_and_lone_surrogate_deep_in_a_body_are_422_naming_each_field(
    stack: RunningStack, tokens: dict[str, dict[str, str]], real_case: dict[str, str]
) -> None:
    body = dict(
        RESCUE_REPORT,
        person=dict(RESCUE_REPORT["person"], prs_FirstName="Ho\x00a"),
        events=[
            {"hte_Type": "Exploitation", "hte_City": "Lào Cai"},
            {"hte_Type": "Transit", "hte_City": "x\ud800"},
        ],
    )
    raw = json.dumps(body).encode()  # ASCII with JSON escapes: "\u0000", "\ud800"
    with stack.client("intake") as intake:
        before = intake.get("/cases", headers=tokens["caseworker"]).json()["total"]
        r = intake.post(
            "/cases",
            content=raw,
            headers={**tokens["caseworker"], "Content-Type": "application/json"},
        )
        assert sorted(_loc(r)) == [
            ["body", "events", 1, "hte_City"],
            ["body", "person", "prs_FirstName"],
        ]
        assert (
            intake.get("/cases", headers=tokens["caseworker"]).json()["total"] == before
        )  # nothing opened
    with stack.client("verification") as verification:
        r = verification.post(
            f"/cases/{real_case['case_id']}/perpetrators",
            headers=tokens["caseworker"],
            json={"roles": ["Exploiter"], "aliases": ["Anh Tư", "Chị\x00Ba"]},
        )
        assert _loc(r) == [["body", "aliases", 1]]


def test_nul_in_a_path_or_query_parameter_is_422_naming_it(
    stack: RunningStack, tokens: dict[str, dict[str, str]], real_case: dict[str, str]
) -> None:
    with stack.client("support") as support:
        r = support.get(
            f"/cases/{real_case['case_id']}%00x/entitlements", headers=tokens["caseworker"]
        )
        assert _loc(r) == [["path", "case_id"]]
    with stack.client("oversight") as oversight:
        r = oversight.get(
            "/audit/verify", headers=tokens["auditor"], params={"case_id": "case\x00"}
        )
        assert _loc(r) == [["query", "case_id"]]


def test_a_province_that_is_no_code_is_422_naming_the_field_not_a_broken_csv_report(
    stack: RunningStack, tokens: dict[str, dict[str, str]]
) -> None:
    """Found by the fuzzer: the province went into the CSV's Content-Disposition header (latin-1 only)."""
    with stack.client("oversight") as oversight:
        r = oversight.get(
            "/reports/six_monthly",
            headers=tokens["auditor"],
            params={"province": "?ñ\U000789ad", "format": "csv", "external": "true"},
        )
    assert _loc(r) == [["query", "province"]]
