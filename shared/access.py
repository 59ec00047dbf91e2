"""Who may reach a case, and which sections of it they may read: one declarative table, one mechanism.

Pure functions over the caller (Principal) and non-PII case facts; no I/O, so the workflow's Update
validators apply the very same rules as the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain import AgencyRole, Role, Section

A = AgencyRole
LAW_ENFORCEMENT = frozenset({A.police, A.border_guard, A.coast_guard, A.prosecution})
EVERY_AGENCY = frozenset(AgencyRole)

# Which agency roles read which sections of a case they can reach. Everything not listed is denied.
SECTION_READERS: Mapping[Section, frozenset[AgencyRole]] = {
    Section.person_identity: EVERY_AGENCY,
    Section.report: EVERY_AGENCY,
    Section.case_notes: EVERY_AGENCY,
    # evidence for identification: the verifying bodies, not legal aid / women's union / commune
    Section.evidence: LAW_ENFORCEMENT | {A.social_protection, A.embassy},
    # suspected perpetrators are police data
    Section.perpetrators: LAW_ENFORCEMENT,
    # counselling and health are sensitive data (Law 91/2025): the caring agencies only
    Section.counselling_notes: frozenset({A.social_protection}),
    Section.health: frozenset({A.social_protection, A.commune}),
    Section.support_plan: frozenset({A.social_protection, A.legal_aid, A.womens_union, A.commune}),
    Section.legal_aid: frozenset({A.legal_aid, A.social_protection}),
}


class Access(StrEnum):
    allow = "allow"
    deny = "deny"


class CaseAccessFacts(BaseModel):
    """What access decisions need to know about a case; carried by the workflow, no PII."""

    model_config = ConfigDict(frozen=True)

    province: str
    commune: str | None = None
    owner_agency: AgencyRole
    # agencies with an accepted handoff / referral (they keep read access after the case moves on)
    participants: frozenset[AgencyRole] = Field(default_factory=frozenset)
    # agencies asked to accept a handoff: they may read enough to decide
    pending_invitees: frozenset[AgencyRole] = Field(default_factory=frozenset)


class PrincipalLike(BaseModel):
    """The fields of shared.auth.Principal that access rules use (kept here so the workflow sandbox
    does not import FastAPI)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    roles: frozenset[Role]
    agency: AgencyRole
    province: str
    commune: str | None = None

    def has(self, role: Role) -> bool:
        return role in self.roles or Role.admin in self.roles

    def covers_province(self, province: str) -> bool:
        return self.province == "*" or self.province == province


def _in_jurisdiction(p: Any, facts: CaseAccessFacts) -> bool:
    return bool(p.covers_province(facts.province))


def can_read_case(p: Any, facts: CaseAccessFacts) -> bool:
    """Caseworkers: their agency owns, joined, or is invited to the case, in their province.
    Supervisors: any case in their province. Auditors: any case (PII masked unless break-glass)."""
    if p.has(Role.admin) or (p.has(Role.auditor) and p.province == "*"):
        return True
    if not _in_jurisdiction(p, facts):
        return False
    if p.has(Role.supervisor) or p.has(Role.auditor):
        return True
    return bool(p.agency == facts.owner_agency or p.agency in facts.participants
                or p.agency in facts.pending_invitees)


def can_act_on_case(p: Any, facts: CaseAccessFacts) -> bool:
    """Changing a case: auditors never; supervisors in their province; caseworkers of an agency that
    owns or joined the case (an accepted handoff or referral), in their province.

    An agency that was only asked (a pending handoff invitee) may read enough to decide and may answer
    the handoff (`can_respond_to_handoff`), nothing else, until it accepts."""
    if p.has(Role.admin):
        return True
    if p.has(Role.auditor) and not (p.has(Role.caseworker) or p.has(Role.supervisor)):
        return False
    if not _in_jurisdiction(p, facts):
        return False
    if p.has(Role.supervisor):
        return True
    return p.has(Role.caseworker) and bool(p.agency == facts.owner_agency or p.agency in facts.participants)


def can_respond_to_handoff(p: Any, facts: CaseAccessFacts, to_agency: AgencyRole) -> bool:
    """Accepting or rejecting a handoff: a caseworker or supervisor of the invited agency, in the case's
    province (the invitee is not a participant yet, so `can_act_on_case` does not admit it)."""
    if p.has(Role.admin):
        return True
    if not (p.has(Role.caseworker) or p.has(Role.supervisor)):
        return False
    return _in_jurisdiction(p, facts) and p.agency == to_agency


def acts_as_stage_owner(p: Any, owner_agency: AgencyRole) -> bool:
    """Who decides for a stage without an override: the owning agency's caseworkers and supervisors (and
    admins). A supervisor of another agency needs an explicit, reasoned override."""
    return bool(p.has(Role.admin) or p.agency == owner_agency)


def readable_sections(p: Any) -> frozenset[Section]:
    if p.has(Role.admin) or p.has(Role.auditor):
        return frozenset(Section)
    return frozenset(s for s, readers in SECTION_READERS.items() if p.agency in readers)


def can_read_section(p: Any, section: Section) -> bool:
    return section in readable_sections(p)


def filter_sections(p: Any, sections: Mapping[Section, Any]) -> dict[str, Any]:
    """Drop the sections the caller may not read; say which were withheld, never silently."""
    allowed = readable_sections(p)
    out: dict[str, Any] = {s.value: v for s, v in sections.items() if s in allowed}
    withheld = sorted(s.value for s in sections if s not in allowed)
    if withheld:
        out["withheld_sections"] = withheld
    return out


def operational_view(p: Any) -> PrincipalLike:
    """The caller without the auditor role: what they could do as a caseworker or supervisor alone."""
    return PrincipalLike(user_id=p.user_id, roles=frozenset(r for r in p.roles if r != Role.auditor),
                         agency=p.agency, province=p.province, commune=p.commune)


def pii_masked_for(p: Any, break_glass: bool, facts: CaseAccessFacts | None = None) -> bool:
    """Oversight roles (auditors) see personal data masked unless they broke glass with a reason.

    A user who holds an operational role (caseworker, supervisor) beside the auditor role reads
    unmasked only the cases that role alone would let them read; without `facts` (a list across
    cases) the auditor mask applies. Holding both roles never unmasks everything."""
    if p.has(Role.admin) or break_glass or Role.auditor not in p.roles:
        return False
    operational = operational_view(p)
    if not operational.roles or facts is None:
        return True
    return not can_read_case(operational, facts)


def mask(value: str | None) -> str | None:
    if value is None:
        return None
    return value[:1] + "•" * max(len(value) - 1, 2) if value else value


def agencies(values: Iterable[str]) -> frozenset[AgencyRole]:
    return frozenset(AgencyRole(v) for v in values)
