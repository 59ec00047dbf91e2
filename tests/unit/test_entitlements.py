"""The Art. 37 entitlements table (docs/reference/DOMAIN.md §3) and the status derivation."""

from __future__ import annotations

import pytest

from services.support.entitlements import (
    LETTER,
    TABLE,
    Beneficiary,
    Entitled,
    StatusColumn,
    SupportType,
    entitlement,
    entitlements,
    refusal_reason,
    status_column,
)
from shared.domain import TraffickingStatus as TS


def letters(column: StatusColumn, value: Entitled) -> str:
    return "".join(LETTER[t] for t, e in entitlements(column).items() if e == value)


def test_table_is_complete_and_lettered() -> None:
    assert set(TABLE) == set(SupportType)
    assert all(len(row) == len(StatusColumn) for row in TABLE.values())
    assert "".join(LETTER[t] for t in SupportType) == "abcdđeghik"


@pytest.mark.parametrize(
    ("column", "yes", "case_by_case"),
    [
        (StatusColumn.victim, "abcdđeghik", ""),
        (StatusColumn.child_with_victim, "abcdđegh", ""),
        (StatusColumn.suspected_in_vietnam, "abcdđeg", ""),  # DOMAIN §4: a–g in Vietnam
        (StatusColumn.suspected_abroad, "abcd", ""),  # a–d abroad
        (StatusColumn.foreign_victim, "", "abcdđg"),
    ],
)
def test_columns_match_domain_table(column: StatusColumn, yes: str, case_by_case: str) -> None:
    assert letters(column, Entitled.yes) == yes
    assert letters(column, Entitled.case_by_case) == case_by_case


@pytest.mark.parametrize(
    ("status", "abroad", "foreign", "beneficiary", "column"),
    [
        (TS.ActualVictimOfTrafficking, False, False, Beneficiary.person, StatusColumn.victim),
        (TS.ActualVictimOfTrafficking, True, False, Beneficiary.person, StatusColumn.victim),
        (
            TS.PossibleVictimOfTrafficking,
            False,
            False,
            Beneficiary.person,
            StatusColumn.suspected_in_vietnam,
        ),
        (
            TS.PossibleVictimOfTrafficking,
            True,
            False,
            Beneficiary.person,
            StatusColumn.suspected_abroad,
        ),
        (
            TS.ActualVictimOfTrafficking,
            False,
            True,
            Beneficiary.person,
            StatusColumn.foreign_victim,
        ),
        (
            TS.PossibleVictimOfTrafficking,
            False,
            True,
            Beneficiary.person,
            StatusColumn.foreign_victim,
        ),
        (
            TS.ActualVictimOfTrafficking,
            False,
            False,
            Beneficiary.accompanying_child,
            StatusColumn.child_with_victim,
        ),
        (TS.PossibleVictimOfTrafficking, False, False, Beneficiary.accompanying_child, None),
        (TS.NotAVictimOfTrafficking, False, False, Beneficiary.person, None),
    ],
)
def test_status_column(
    status: TS, abroad: bool, foreign: bool, beneficiary: Beneficiary, column: StatusColumn | None
) -> None:
    assert (
        status_column(
            status, abroad=abroad, foreign_national=foreign, beneficiary=beneficiary
        ).column
        == column
    )


def test_not_a_victim_gets_nothing_and_reason_names_the_field() -> None:
    s = status_column(TS.NotAVictimOfTrafficking, abroad=False, foreign_national=False)
    assert all(e == Entitled.no for e in entitlements(s.column).values())
    assert entitlement(SupportType.essential_needs, None) == Entitled.no
    reason = refusal_reason(
        SupportType.vocational_training,
        status_column(TS.PossibleVictimOfTrafficking, abroad=False, foreign_national=False),
    )
    assert reason.startswith("service_type: vocational_training (i,")
    assert "suspected_in_vietnam" in reason and "Art. 37" in reason


def test_picklists_match_htcds() -> None:
    """The support plan and perpetrator picklists are exactly HTCDS's (services/intake/htcds.py reads fields.csv)."""
    from services.intake.htcds import fields
    from services.support.models import PlanType
    from services.verification.models import PerpetratorRole

    spec = fields()
    assert [p.value for p in PlanType] == list(spec["spl_Type"].values)
    assert [r.value for r in PerpetratorRole] == list(spec["per_RoleInProcess"].values)
