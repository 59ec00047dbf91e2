"""Issue 10: ad hoc reports could be differenced to reveal single arrivals. A report leaving its
jurisdiction covers whole calendar months only, and every count publishes as a function of itself alone
(0, "<5", or rounded to 5), so two overlapping reports cannot be subtracted to isolate a count below 5."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from services.oversight.reports import _count, _rate
from shared.domain import Role
from tests.helpers.oversight_stack import auth, oversight_api

VN = timezone(timedelta(hours=7))


async def _arrival(pool: Any, case_id: str, at: datetime) -> None:
    await pool.execute(
        """INSERT INTO oversight.case_summary (case_id, province, stage, status, owner_agency, channel, age_band,
               is_child, is_abroad, trafficking_status, version, last_event_seq, last_event_at, stage_entered_at,
               opened_at, policy_version, state)
           VALUES ($1, '01', 'receive', 'Active', 'hotline', 'hotline_111', 'adult', false, false,
                   'PossibleVictimOfTrafficking', 1, 1, $2, $2, $2, 'test', '{}'::jsonb)""",
        case_id,
        at,
    )


def test_published_counts_depend_on_the_true_count_alone() -> None:
    assert [_count(n, True) for n in (0, 1, 4, 5, 7, 8, 12, 13, 16)] == [
        0,
        "<5",
        "<5",
        5,
        5,
        10,
        10,
        15,
        15,
    ]
    assert [_count(n, False) for n in (0, 1, 13)] == [0, 1, 13]  # inside the jurisdiction: exact
    assert _rate(7 / 23, 7, 23, True) == round(
        5 / 25, 2
    )  # from the rounded counts, never 7/23 exactly
    assert _rate(3 / 23, 3, 23, True) == "<5"


async def test_two_overlapping_periods_cannot_be_subtracted_to_reveal_an_arrival(
    ts_env, db_pool, ring
):
    jan1 = datetime(2026, 1, 1, 10, 0, tzinfo=VN)  # the single arrival an attacker wants to isolate
    await _arrival(db_pool, "c-jan1", jan1)
    for i in range(12):
        await _arrival(db_pool, f"c-jan-{i}", datetime(2026, 1, 5 + i, 9, 0, tzinfo=VN))
    for i in range(3):
        await _arrival(db_pool, f"c-feb-{i}", datetime(2026, 2, 3 + i, 9, 0, tzinfo=VN))

    def window(a: datetime, b: datetime) -> dict[str, str]:
        return {"province": "01", "from": a.isoformat(), "to": b.isoformat()}

    jan, feb, mar = (datetime(2026, m, 1, tzinfo=VN) for m in (1, 2, 3))
    outsider = auth(ring, Role.supervisor, province="79")
    async with oversight_api(ts_env, db_pool, ring) as api:
        # the attack: 1 Jan-1 Mar minus 2 Jan-1 Mar; the second period (and any part-month period) is refused
        for a, b in (
            (jan + timedelta(days=1), mar),
            (jan, mar - timedelta(days=1)),
            (jan, jan + timedelta(days=20)),
            (jan + timedelta(hours=7), mar),
        ):
            r = await api.get("/reports/ad_hoc", params=window(a, b), headers=outsider)
            assert r.status_code == 422 and "whole calendar months" in r.json()["detail"], (
                a,
                b,
                r.text,
            )

        async def received(a: datetime, b: datetime) -> Any:
            r = await api.get("/reports/ad_hoc", params=window(a, b), headers=outsider)
            assert r.status_code == 200, r.text
            assert r.json()["suppressed"] is True
            return r.json()["received"]

        both, january, february = (
            await received(jan, mar),
            await received(jan, feb),
            await received(feb, mar),
        )
        assert (both, january, february) == (15, 15, "<5")  # true counts 16, 13, 3
        assert both - january != 3  # subtracting the months does not give February's 3 arrivals
        # the same cell publishes the same value in every report that contains it
        assert await received(feb, mar) == "<5"

        # inside the jurisdiction the province's own staff get exact counts, any period
        inside = auth(ring, Role.supervisor, province="01")
        r = await api.get("/reports/ad_hoc", params=window(jan, mar), headers=inside)
        assert r.json()["suppressed"] is False and r.json()["received"] == 16
        r = await api.get(
            "/reports/ad_hoc", params=window(jan + timedelta(days=1), mar), headers=inside
        )
        assert r.status_code == 200 and r.json()["received"] == 15


@pytest.mark.parametrize("months", [1, 6, 12])
def test_whole_month_periods_are_accepted(months: int) -> None:
    from services.oversight.reports import check_disclosure_window

    start = datetime(2026, 1, 1, tzinfo=VN)
    m = start.month - 1 + months
    check_disclosure_window(start, start.replace(year=start.year + m // 12, month=m % 12 + 1))
