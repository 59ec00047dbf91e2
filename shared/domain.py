"""Domain vocabulary shared by every service and the workflow. No I/O here (the workflow sandbox
imports it)."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    caseworker = "caseworker"
    supervisor = "supervisor"
    auditor = "auditor"
    admin = "admin"


class AgencyRole(StrEnum):
    """Roles, not agencies: which real agency holds a role depends on jurisdiction and date
    (the 2025 reorganisation moved social protection from labour to health)."""

    police = "police"
    border_guard = "border_guard"
    coast_guard = "coast_guard"
    social_protection = "social_protection"
    legal_aid = "legal_aid"
    womens_union = "womens_union"
    commune = "commune"
    embassy = "embassy"
    hotline = "hotline"
    prosecution = "prosecution"
    court = "court"  # Tòa án nhân dân: tries the criminal cases (issue 15 item 1)
    steering_committee = "steering_committee"


class Stage(StrEnum):
    receive = "receive"
    verify = "verify"
    identify = "identify"
    rescue = "rescue"
    protect = "protect"
    reintegrate = "reintegrate"
    closed = "closed"


STAGE_ORDER: tuple[Stage, ...] = (
    Stage.receive,
    Stage.verify,
    Stage.identify,
    Stage.rescue,
    Stage.protect,
    Stage.reintegrate,
    Stage.closed,
)


class Channel(StrEnum):
    """How the first report arrived (the plans' channels: hotline, border handover, repatriation, ...)."""

    # docs/reference/DOMAIN.md §1 and the seeds list these channels

    hotline_111 = "hotline_111"
    hotline_113 = "hotline_113"
    walk_in = "walk_in"
    border_guard_handover = "border_guard_handover"
    coast_guard_handover = "coast_guard_handover"
    embassy_repatriation = "embassy_repatriation"
    rescue_operation = "rescue_operation"
    ngo_referral = "ngo_referral"
    online_report = "online_report"
    missing_person = "missing_person"


class Outcome(StrEnum):
    """How a case ended: the normal close or one of the early outcomes."""

    reintegrated = "reintegrated"
    unfounded = "unfounded"
    not_a_victim = "not_a_victim"
    consent_withdrawn = "consent_withdrawn"
    transferred_jurisdiction = "transferred_jurisdiction"
    lost_contact = "lost_contact"
    deceased = "deceased"
    not_relevant = "not_relevant"


class CaseStatus(StrEnum):
    """HTCDS cas_Status."""

    Active = "Active"
    FollowUp = "FollowUp"
    Closed = "Closed"
    ClosedReferred = "ClosedReferred"


class TraffickingStatus(StrEnum):
    """HTCDS vic_TraffickingStatus."""

    PossibleVictimOfTrafficking = "PossibleVictimOfTrafficking"
    ActualVictimOfTrafficking = "ActualVictimOfTrafficking"
    NotAVictimOfTrafficking = "NotAVictimOfTrafficking"


class DecisionMakingOrg(StrEnum):
    """HTCDS vic_TraffickingStatusDecisionMakingOrg."""

    Police = "Police"
    NGO = "NGO"
    CourtOrProsecution = "CourtOrProsecution"
    NonPoliceGovernmentalOrganization = "NonPoliceGovernmentalOrganization"
    Other = "Other"


class AgeBand(StrEnum):
    """Non-identifying age fact the workflow may carry. Both legal thresholds are kept (16 and 18)."""

    under_16 = "under_16"
    age_16_17 = "16_17"
    adult = "adult"
    unknown = "unknown"


class Section(StrEnum):
    """Sections of a case file; field-level access rules are declared per section (shared/access.py)."""

    person_identity = "person_identity"  # names, birth date, id numbers, contacts, address
    report = "report"  # the report narrative
    evidence = "evidence"  # evidence items for identification
    perpetrators = "perpetrators"  # suspected perpetrators (police data)
    counselling_notes = "counselling_notes"  # psychological support notes
    health = "health"  # medical details (sensitive under Law 91/2025)
    support_plan = "support_plan"
    legal_aid = "legal_aid"
    case_notes = "case_notes"  # general caseworker notes
