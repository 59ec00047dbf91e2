"""Support entitlements by status: Law 53/2024 Art. 37 (Ch. V, Arts. 37–47), docs/reference/DOMAIN.md §3.

ONE declarative table (`TABLE`): rows are support types a–k, columns are the person's status.
Everything else here derives from it. Amounts are set by decree (Art. 37(5)) and are not encoded."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from types import MappingProxyType

from shared.domain import TraffickingStatus


class SupportType(StrEnum):
    """Art. 37 support types; the legal letter is in `LETTER`."""

    essential_needs = "essential_needs"  # a
    medical_care = "medical_care"  # b
    interpretation = "interpretation"  # c
    legal_advice = "legal_advice"  # d
    legal_aid = "legal_aid"  # đ
    travel_home = "travel_home"  # e
    psychological_support = "psychological_support"  # g
    general_education = "general_education"  # h
    vocational_training = "vocational_training"  # i
    hardship_allowance = "hardship_allowance"  # k


class Beneficiary(StrEnum):
    person = "person"  # the person the case is about
    accompanying_child = "accompanying_child"  # an under-18 accompanying the victim (Art. 37)
    relative = "relative"  # thân nhân: a family member (not a person in the victim registry)


class StatusColumn(StrEnum):
    """The columns of the Art. 37 table."""

    victim = "victim"
    child_with_victim = "child_with_victim"
    suspected_in_vietnam = "suspected_in_vietnam"
    suspected_abroad = "suspected_abroad"
    foreign_victim = "foreign_victim"
    # Not a column of Art. 37: the plans support victims "and their relatives" (seed:003, "100% nạn nhân bị
    # mua bán trở về và thân nhân được hỗ trợ kịp thời"); the law protects relatives (Art. 34) but lists no
    # support for them. local_practice: the items a relative may need are a supervisor's decision.
    relative = "relative"


class Regime(StrEnum):
    """Which law's support applies (Law 53/2024 Art. 63: victims identified before 1/7/2025 keep their
    support under Law 66/2011 and its Decree 09/2013)."""

    law_53_2024 = "law_53_2024"
    law_66_2011 = "law_66_2011"


LAW_53_IN_FORCE = date(2025, 7, 1)


class Entitled(StrEnum):
    yes = "yes"
    no = "no"
    case_by_case = "case_by_case"  # needs a supervisor's approval with a reason


Y, N, C = Entitled.yes, Entitled.no, Entitled.case_by_case
T = SupportType

LETTER: MappingProxyType[SupportType, str] = MappingProxyType(
    {
        T.essential_needs: "a",
        T.medical_care: "b",
        T.interpretation: "c",
        T.legal_advice: "d",
        T.legal_aid: "đ",
        T.travel_home: "e",
        T.psychological_support: "g",
        T.general_education: "h",
        T.vocational_training: "i",
        T.hardship_allowance: "k",
    }
)

LABEL: MappingProxyType[SupportType, str] = MappingProxyType(
    {
        T.essential_needs: "essential needs (shelter, food, clothes)",
        T.medical_care: "medical care (intake health check; first-year health insurance if uninsured)",
        T.interpretation: "interpretation",
        T.legal_advice: "legal advice",
        T.legal_aid: "legal aid",
        T.travel_home: "travel home",
        T.psychological_support: "psychological support",
        T.general_education: "general education",
        T.vocational_training: "vocational training, jobs",
        T.hardship_allowance: "initial hardship allowance, loans",
    }
)

#                victim child_with suspected_VN suspected_abroad foreign relative (local_practice)
TABLE: MappingProxyType[SupportType, tuple[Entitled, ...]] = MappingProxyType(
    {
        T.essential_needs: (Y, Y, Y, Y, C, C),
        T.medical_care: (Y, Y, Y, Y, C, C),
        T.interpretation: (Y, Y, Y, Y, C, C),
        T.legal_advice: (Y, Y, Y, Y, C, C),
        T.legal_aid: (Y, Y, Y, N, C, C),
        T.travel_home: (Y, Y, Y, N, N, N),
        T.psychological_support: (Y, Y, Y, N, C, C),
        T.general_education: (Y, Y, N, N, N, N),
        T.vocational_training: (Y, N, N, N, N, N),
        T.hardship_allowance: (Y, N, N, N, N, N),
    }
)
COLUMNS: tuple[StatusColumn, ...] = tuple(StatusColumn)
LEGAL_BASIS = "Law 53/2024/QH15 Art. 37 (Ch. V, Arts. 37–47); amounts by decree (Art. 37(5))"
# Support types that pay money: the amount in VND is required when delivered.
MONETARY: frozenset[SupportType] = frozenset({T.hardship_allowance, T.travel_home})


@dataclass(frozen=True)
class Status:
    column: StatusColumn | None  # None: not entitled to anything (found not to be a victim)
    explanation: str
    regime: Regime = Regime.law_53_2024


def status_column(
    trafficking_status: TraffickingStatus,
    *,
    abroad: bool,
    foreign_national: bool,
    beneficiary: Beneficiary = Beneficiary.person,
    identified_on: date | None = None,
) -> Status:
    """Which column of the table applies (HTCDS vic_TraffickingStatus + the case's non-PII facts), and
    under which law (`identified_on`: the date the person was identified as a victim under the 2011 law,
    when the support service recorded one)."""
    status = _column(trafficking_status, abroad, foreign_national, beneficiary)
    if (
        identified_on is not None
        and identified_on < LAW_53_IN_FORCE
        and status.column is not None
        and beneficiary != Beneficiary.relative
    ):
        return Status(
            status.column,
            f"{status.explanation}; identified on {identified_on:%d/%m/%Y}, before Law 53/2024 came "
            "into force: Art. 63 keeps the support of Law 66/2011 (Decree 09/2013), so each item is "
            "confirmed by a supervisor against that regime (its table is not held here)",
            Regime.law_66_2011,
        )
    return status


def _column(
    trafficking_status: TraffickingStatus,
    abroad: bool,
    foreign_national: bool,
    beneficiary: Beneficiary,
) -> Status:
    if trafficking_status == TraffickingStatus.NotAVictimOfTrafficking:
        return Status(
            None,
            "the person was found not to be a victim of trafficking: no Art. 37 support "
            "(they may still be referred to other help)",
        )
    if beneficiary == Beneficiary.relative:
        return Status(
            StatusColumn.relative,
            "a relative of the person (thân nhân): the plans support victims and their relatives "
            "(seed:003); Art. 37 lists no item for relatives, so each is a supervisor's decision "
            "(local_practice)",
        )
    if beneficiary == Beneficiary.accompanying_child:
        if (
            trafficking_status == TraffickingStatus.ActualVictimOfTrafficking
            and not foreign_national
        ):
            return Status(
                StatusColumn.child_with_victim, "an under-18 accompanying an identified victim"
            )
        # Art. 34 protects the under-18s accompanying a suspected victim too: until the victim is
        # identified, the child has what the victim has (the suspected or foreign column)
        parent = _column(trafficking_status, abroad, foreign_national, Beneficiary.person)
        return Status(
            parent.column,
            f"an under-18 accompanying the person, who is not yet identified: as the person "
            f"({parent.explanation})",
        )
    if foreign_national:
        # The law lists foreign victims in Vietnam; a foreign suspected victim is treated the same way,
        # case by case, rather than given the Vietnamese suspected-victim rights.
        return Status(
            StatusColumn.foreign_victim, "a foreign national in Vietnam: support case by case"
        )
    if trafficking_status == TraffickingStatus.ActualVictimOfTrafficking:
        return Status(StatusColumn.victim, "identified victim of trafficking")
    if abroad:
        return Status(
            StatusColumn.suspected_abroad, "suspected victim, still abroad: items a–d (Art. 37)"
        )
    return Status(
        StatusColumn.suspected_in_vietnam, "suspected victim in Vietnam: items a–g (Art. 37)"
    )


def entitlement(
    support: SupportType, column: StatusColumn | None, regime: Regime = Regime.law_53_2024
) -> Entitled:
    if column is None:
        return Entitled.no
    found = TABLE[support][COLUMNS.index(column)]
    if regime == Regime.law_66_2011 and found == Entitled.yes:
        return Entitled.case_by_case  # confirmed against the 2011 regime by a supervisor
    return found


def entitlements(column: StatusColumn | None) -> dict[SupportType, Entitled]:
    return {t: entitlement(t, column) for t in SupportType}


def refusal_reason(support: SupportType, status: Status) -> str:
    who = status.column.value if status.column else "this person"
    return (
        f"service_type: {support.value} ({LETTER[support]}, {LABEL[support]}) is not available to "
        f"{who}: {status.explanation} ({LEGAL_BASIS})"
    )


# ---- the checks the support API applies (the router only translates them to HTTP) ---------------------
class ServiceRefused(Exception):
    """A service that may not be recorded: `status` 422 (not entitled, missing field) or 403 (only a
    supervisor approves it); the message names the field and the legal reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def check_service(
    support: SupportType,
    status: Status,
    *,
    approval_reason: str | None,
    amount_vnd: int | None,
    approver_is_supervisor: bool,
) -> Entitled:
    """Law 53/2024 Art. 37 as the table says: `no` is refused with the legal reason; `case_by_case` needs
    a supervisor's approval reason; money items need their amount. Returns the entitlement applied."""
    entitled = entitlement(support, status.column, status.regime)
    if entitled == Entitled.no:
        raise ServiceRefused(422, refusal_reason(support, status))
    if entitled == Entitled.case_by_case:
        if not approval_reason:
            raise ServiceRefused(
                422,
                f"supervisor_approval_reason: {support.value} is granted case by case "
                f"for {status.column.value if status.column else 'this person'}"
                + (" under Law 66/2011 (Art. 63)" if status.regime == Regime.law_66_2011 else "")
                + "; a supervisor must approve it with a reason",
            )
        if not approver_is_supervisor:
            raise ServiceRefused(
                403, "supervisor_approval_reason: only a supervisor approves a case-by-case service"
            )
    elif approval_reason:
        raise ServiceRefused(422, "supervisor_approval_reason: only for case-by-case entitlements")
    if support in MONETARY and amount_vnd is None:
        raise ServiceRefused(422, f"amount_vnd: required for {support.value}")
    return entitled
