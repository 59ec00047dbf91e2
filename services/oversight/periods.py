"""The time and the period an oversight figure covers: the service's clock, and the `from`/`to` of KPIs and
reports (six-monthly and annual reports default to the current half-year / year, or end one period after
`from`; ad hoc ones need both ends)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from services.oversight import reports
from services.oversight.models import ReportKind
from shared.runtime import Runtime


class PeriodError(ValueError):
    """A period that cannot be used; the message names the field and why (an HTTP 422)."""


def now_of(runtime: Runtime) -> datetime:
    """Wall clock, or the runtime's `clock` (tests set it to the time-skipping server's time)."""
    clock: Callable[[], datetime] | None = runtime.extras.get("clock")
    return clock() if clock else datetime.now(UTC)


def period(
    start: datetime | None, end: datetime | None, kind: ReportKind | None, now: datetime
) -> tuple[datetime, datetime]:
    """The period asked for, completed by the report kind's defaults. `kind=None`: KPIs (both ends needed)."""
    for name, v in (("from", start), ("to", end)):
        if v is not None and v.tzinfo is None:
            raise PeriodError(f"{name}: needs a time zone (e.g. 2026-01-01T00:00:00+07:00)")
    periodic = kind in (ReportKind.six_monthly, ReportKind.annual)
    if start is None and end is None:
        if not periodic:
            raise PeriodError("from, to: both required")
        assert kind is not None
        start, end = reports.default_period(kind, now)
    elif start is None:
        raise PeriodError("from: required")
    elif end is None:
        if not periodic:
            raise PeriodError("to: required")
        assert kind is not None
        end = reports.period_end(kind, start)
    if end <= start:
        raise PeriodError("to: must be after from")
    return start, end
