"""Issue 15 item 8: the body that held each agency role, before and after the 2025 reorganisation."""

from __future__ import annotations

from datetime import date

import pytest

from shared.agencies import BODIES, bodies_during, body_on, label_during
from shared.domain import AgencyRole as A


def test_every_role_has_a_body_on_every_day_and_never_two() -> None:
    for role in A:
        for day in (
            date(2017, 1, 1),
            date(2025, 2, 28),
            date(2025, 3, 1),
            date(2025, 6, 30),
            date(2025, 7, 1),
            date(2030, 1, 1),
        ):
            assert sum(b.holds_on(day) for b in BODIES[role]) == 1, (role, day)


@pytest.mark.parametrize(
    ("role", "day", "vi"),
    [
        (A.social_protection, date(2025, 2, 28), "Sở Lao động – Thương binh và Xã hội"),
        (A.social_protection, date(2025, 3, 1), "Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh)"),
        (A.police, date(2024, 12, 31), "Công an (tỉnh, huyện, xã)"),
        (A.police, date(2025, 3, 1), "Công an (tỉnh, xã)"),
        (A.legal_aid, date(2025, 6, 30), "Phòng Tư pháp cấp huyện"),
        (A.legal_aid, date(2025, 7, 1), "Trung tâm Trợ giúp pháp lý nhà nước"),
    ],
)
def test_the_body_of_a_date(role: A, day: date, vi: str) -> None:
    assert body_on(role, day).vi == vi


def test_a_period_spanning_the_change_names_both_bodies_with_their_dates() -> None:
    # the first half of 2025 (the period is [1/1/2025, 1/7/2025))
    label = label_during(A.social_protection, date(2025, 1, 1), date(2025, 7, 1))
    assert label == (
        "Sở Lao động – Thương binh và Xã hội (đến 28/02/2025); "
        "Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh) (từ 01/03/2025)"
    )
    en = label_during(A.social_protection, date(2025, 1, 1), date(2025, 7, 1), "en")
    assert en.startswith("Department of Labour, Invalids and Social Affairs (until 28/02/2025); ")
    # a period after the change, or before it, names one body
    assert label_during(A.social_protection, date(2026, 1, 1), date(2027, 1, 1)) == (
        "Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh)"
    )
    assert [b.vi for b in bodies_during(A.legal_aid, date(2024, 1, 1), date(2025, 1, 1))] == [
        "Phòng Tư pháp cấp huyện"
    ]
    # districts ended on 1/7/2025: a period ending that day does not include the new centre
    assert len(bodies_during(A.legal_aid, date(2025, 1, 1), date(2025, 7, 1))) == 1


def test_the_directory_names_the_provinces_own_body_by_date_else_the_roles() -> None:
    from services.notifications.directory import Directory

    directory = Directory(
        {
            "provinces": {
                "20": {
                    "agencies": {
                        "social_protection": {
                            "names": [
                                {"vi": "Sở LĐ-TB&XH tỉnh Lạng Sơn", "to": "2025-03-01"},
                                {
                                    "vi": "Sở Y tế tỉnh Lạng Sơn",
                                    "en": "Lang Son Department of Health",
                                    "from": "2025-03-01",
                                },
                            ]
                        }
                    }
                }
            }
        }
    )
    assert directory.agency_name("20", "social_protection", date(2025, 2, 1)) == (
        "Sở LĐ-TB&XH tỉnh Lạng Sơn"
    )
    assert directory.agency_name("20", "social_protection", date(2026, 1, 1), "en") == (
        "Lang Son Department of Health"
    )
    # no name in the directory: the role's body on that day
    assert directory.agency_name("01", "legal_aid", date(2026, 1, 1)) == (
        "Trung tâm Trợ giúp pháp lý nhà nước"
    )


def test_a_report_over_the_first_half_of_2025_names_both_bodies_of_social_protection() -> None:
    from services.oversight.reports import agency_during

    # the half-year as the reports hold it: [01/01/2025, 01/07/2025) in Vietnam time
    period = {"period_from": "2024-12-31T17:00:00+00:00", "period_to": "2025-06-30T17:00:00+00:00"}
    assert agency_during("social_protection", period, "vi") == (
        "Cơ quan bảo trợ xã hội (Sở Lao động – Thương binh và Xã hội (đến 28/02/2025); "
        "Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh) (từ 01/03/2025))"
    )
    assert agency_during("border_guard", period, "vi") == "Bộ đội Biên phòng"
