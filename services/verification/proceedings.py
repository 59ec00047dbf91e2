"""Criminal proceedings on a case (issue 15 item 1): the crime report and what police, procuracy and court
decided on it, linked to the case's suspected perpetrators.

Who records what (Criminal Procedure Code 2015: the investigating bodies decide to open a case and
investigate, the procuracy indicts, the court tries):

* the crime report, the decision to open a criminal case or not, the investigation's result: police,
  border guard, coast guard (the bodies that record suspected perpetrators);
* prosecution (indictment or not): the procuracy (AgencyRole.prosecution);
* the trial's verdict: the court (AgencyRole.court), or the procuracy, which takes part in every trial of
  the cases it indicted.

The rules here are pure: they raise HTTPException (409 wrong order or step already recorded, 422 a date
that does not fit, naming the field), and the router writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

from fastapi import HTTPException, status

from shared.criminal_proceedings import REQUIRES, Step
from shared.domain import AgencyRole

VN = timezone(timedelta(hours=7))
A = AgencyRole
POLICE_BODIES = frozenset({A.police, A.border_guard, A.coast_guard})
PROCURACY = frozenset({A.prosecution})
COURT = frozenset({A.court})
REPORT_WRITERS = POLICE_BODIES
STEP_WRITERS: Mapping[Step, frozenset[AgencyRole]] = {
    Step.decision: POLICE_BODIES,
    Step.investigation: POLICE_BODIES,
    Step.prosecution: PROCURACY,
    Step.trial: PROCURACY | COURT,
}
STEP_LABEL = {
    Step.decision: "the decision to open a criminal case",
    Step.investigation: "the investigation's result",
    Step.prosecution: "the prosecution decision",
    Step.trial: "the trial's verdict",
}


def today() -> date:
    """Today in Vietnam: the dates of reports and decisions are Vietnamese calendar dates."""
    return datetime.now(UTC).astimezone(VN).date()


def _unprocessable(detail: str) -> HTTPException:
    return HTTPException(422, detail)


def check_report(
    received_on: date, perpetrator_ids: list[str], on_case: set[str], now: date
) -> None:
    if received_on > now:
        raise _unprocessable(f"report_received_on: {received_on} is in the future")
    check_perpetrators(perpetrator_ids, on_case)


def check_perpetrators(perpetrator_ids: list[str], on_case: set[str]) -> None:
    """A proceeding links only suspected perpetrators recorded on its own case."""
    unknown = sorted(set(perpetrator_ids) - on_case)
    if unknown:
        raise _unprocessable(
            f"perpetrator_ids: {', '.join(unknown)} not recorded as suspected perpetrators of this case"
        )


def check_step(
    step: Step,
    on: date,
    received_on: date,
    recorded: Mapping[str, Any],
    now: date,
) -> None:
    """`recorded`: the steps recorded so far, by step name, each with `outcome` and `occurred_on`."""
    if step.value in recorded:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"step: {STEP_LABEL[step]} is already recorded"
        )
    needed = REQUIRES[step]
    if needed is not None:
        before, outcome = needed
        prev = recorded.get(before.value)
        if prev is None or prev["outcome"] != outcome:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"step: {STEP_LABEL[step]} needs {STEP_LABEL[before]} with outcome {outcome} first"
                + (f" (recorded: {prev['outcome']})" if prev is not None else ""),
            )
        if on < prev["occurred_on"]:
            raise _unprocessable(f"on: {on} is before {STEP_LABEL[before]} ({prev['occurred_on']})")
    if on < received_on:
        raise _unprocessable(f"on: {on} is before the crime report was received ({received_on})")
    if on > now:
        raise _unprocessable(f"on: {on} is in the future")
