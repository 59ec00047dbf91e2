"""The order and date rules of criminal proceedings (services/verification/proceedings.py), without I/O:
each step once, after the step before it with the outcome it needs, dated on or after it and the report,
never in the future; the right body for each step."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from fastapi import HTTPException

from services.verification.proceedings import STEP_WRITERS, check_report, check_step
from shared.criminal_proceedings import Step
from shared.domain import AgencyRole

REPORT = date(2026, 3, 2)
NOW = date(2026, 6, 1)


def rec(**steps: tuple[str, date]) -> dict[str, dict[str, object]]:
    return {k: {"outcome": o, "occurred_on": d} for k, (o, d) in steps.items()}


def refused(call, code: int, starts: str) -> None:
    with pytest.raises(HTTPException) as e:
        call()
    assert (e.value.status_code, str(e.value.detail)[: len(starts)]) == (code, starts)


def test_each_step_needs_the_one_before_with_its_outcome() -> None:
    d = REPORT + timedelta(days=5)
    check_step(Step.decision, d, REPORT, {}, NOW)
    refused(lambda: check_step(Step.investigation, d, REPORT, {}, NOW), 409, "step:")
    not_opened = rec(decision=("not_opened", d))
    refused(lambda: check_step(Step.investigation, d, REPORT, not_opened, NOW), 409, "step:")
    opened = rec(decision=("opened", d))
    check_step(Step.investigation, d, REPORT, opened, NOW)
    suspended = rec(decision=("opened", d), investigation=("suspended", d))
    refused(lambda: check_step(Step.prosecution, d, REPORT, suspended, NOW), 409, "step:")
    solved = rec(decision=("opened", d), investigation=("solved", d))
    check_step(Step.prosecution, d, REPORT, solved, NOW)
    not_indicted = {**solved, **rec(prosecution=("not_indicted", d))}
    refused(lambda: check_step(Step.trial, d, REPORT, not_indicted, NOW), 409, "step:")
    indicted = {**solved, **rec(prosecution=("indicted", d))}
    check_step(Step.trial, d, REPORT, indicted, NOW)
    # once
    refused(lambda: check_step(Step.decision, d, REPORT, opened, NOW), 409, "step:")


def test_dates_follow_the_report_and_the_step_before_and_are_not_in_the_future() -> None:
    refused(
        lambda: check_step(Step.decision, REPORT - timedelta(days=1), REPORT, {}, NOW), 422, "on:"
    )
    refused(lambda: check_step(Step.decision, NOW + timedelta(days=1), REPORT, {}, NOW), 422, "on:")
    opened = rec(decision=("opened", REPORT + timedelta(days=10)))
    refused(
        lambda: check_step(Step.investigation, REPORT + timedelta(days=9), REPORT, opened, NOW),
        422,
        "on:",
    )
    check_step(Step.investigation, REPORT + timedelta(days=10), REPORT, opened, NOW)  # same day


def test_the_report_links_only_this_cases_perpetrators_and_is_not_in_the_future() -> None:
    check_report(REPORT, ["per-1"], {"per-1", "per-2"}, NOW)
    refused(lambda: check_report(REPORT, ["per-9"], {"per-1"}, NOW), 422, "perpetrator_ids:")
    refused(
        lambda: check_report(NOW + timedelta(days=1), [], set(), NOW), 422, "report_received_on:"
    )


def test_who_records_which_step() -> None:
    police = {AgencyRole.police, AgencyRole.border_guard, AgencyRole.coast_guard}
    assert STEP_WRITERS[Step.decision] == STEP_WRITERS[Step.investigation] == police
    assert STEP_WRITERS[Step.prosecution] == {AgencyRole.prosecution}
    # the court records its verdict; the procuracy, which takes part in the trial, may too
    assert STEP_WRITERS[Step.trial] == {AgencyRole.prosecution, AgencyRole.court}
