"""The Art. 37 entitlements table (docs/reference/DOMAIN.md §3) and the status derivation."""

from __future__ import annotations

from datetime import date

import pytest

from services.support.entitlements import (
    LETTER,
    TABLE,
    Beneficiary,
    Entitled,
    Regime,
    ServiceRefused,
    StatusColumn,
    SupportType,
    check_service,
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
        (StatusColumn.relative, "", "abcdđg"),  # local_practice: a supervisor decides each item
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
        # the child of a suspected victim has what the person has until the person is identified
        (
            TS.PossibleVictimOfTrafficking,
            False,
            False,
            Beneficiary.accompanying_child,
            StatusColumn.suspected_in_vietnam,
        ),
        (
            TS.PossibleVictimOfTrafficking,
            True,
            False,
            Beneficiary.accompanying_child,
            StatusColumn.suspected_abroad,
        ),
        (TS.ActualVictimOfTrafficking, False, False, Beneficiary.relative, StatusColumn.relative),
        (TS.PossibleVictimOfTrafficking, False, False, Beneficiary.relative, StatusColumn.relative),
        (TS.NotAVictimOfTrafficking, False, False, Beneficiary.relative, None),
        (TS.NotAVictimOfTrafficking, False, False, Beneficiary.accompanying_child, None),
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


def test_identified_under_the_2011_law_makes_every_yes_a_supervisors_confirmation() -> None:
    """Law 53/2024 Art. 63: identified before 01/07/2025, the 2011 law's support applies."""
    old = status_column(
        TS.ActualVictimOfTrafficking,
        abroad=False,
        foreign_national=False,
        identified_on=date(2024, 3, 9),
    )
    assert old.regime == Regime.law_66_2011 and old.column == StatusColumn.victim
    assert "Art. 63" in old.explanation and "09/03/2024" in old.explanation
    assert {entitlement(t, old.column, old.regime) for t in SupportType} == {Entitled.case_by_case}
    new = status_column(
        TS.ActualVictimOfTrafficking,
        abroad=False,
        foreign_national=False,
        identified_on=date(2025, 7, 1),
    )
    assert new.regime == Regime.law_53_2024
    assert entitlement(SupportType.hardship_allowance, new.column, new.regime) == Entitled.yes
    with pytest.raises(ServiceRefused) as refused:
        check_service(
            SupportType.essential_needs,
            old,
            approval_reason=None,
            amount_vnd=None,
            approver_is_supervisor=False,
        )
    assert refused.value.status == 422 and "Law 66/2011" in refused.value.message
