"""Who may reach a case, and which sections of it they may read: one declarative table, one mechanism.

Pure functions over the caller (Principal) and non-PII case facts; no I/O, so the workflow's Update
validators apply the very same rules as the HTTP layer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain import AgencyRole, Role, Section, Stage

A = AgencyRole
# the criminal-justice bodies: investigating bodies, procuracy and courts
LAW_ENFORCEMENT = frozenset({A.police, A.border_guard, A.coast_guard, A.prosecution, A.court})
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


class FormerJurisdiction(BaseModel):
    """A province that held the case before a transfer to another province (issue 18)."""

    model_config = ConfigDict(frozen=True)

    province: str
    # the owner and participants while the case was there: their caseworkers keep reading it
    agencies: frozenset[AgencyRole] = Field(default_factory=frozenset)
    until: datetime  # when the receiving province accepted: what they may read ends here


class CaseAccessFacts(BaseModel):
    """What access decisions need to know about a case; carried by the workflow, no PII."""

    model_config = ConfigDict(frozen=True)

    province: str
    commune: str | None = None
    owner_agency: AgencyRole
    # agencies with an accepted handoff / referral (they keep read access after the case moves on)
    participants: frozenset[AgencyRole] = Field(default_factory=frozenset)
    # agencies (of the case's province) asked to accept a handoff: they may read enough to decide
    pending_invitees: frozenset[AgencyRole] = Field(default_factory=frozenset)
    # (province, agency) asked to accept a transfer into another province: read enough to decide, answer it
    invited_elsewhere: frozenset[tuple[str, AgencyRole]] = Field(default_factory=frozenset)
    # provinces that held the case before (oldest first): they read it up to the transfer, never act
    former: tuple[FormerJurisdiction, ...] = ()


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


def _invited_elsewhere(p: Any, facts: CaseAccessFacts) -> bool:
    """A caseworker or supervisor of the agency of another province asked to accept a transfer there."""
    return bool(
        (p.has(Role.caseworker) or p.has(Role.supervisor))
        and any(
            p.agency == agency and p.covers_province(province)
            for province, agency in facts.invited_elsewhere
        )
    )


def _former_holding(p: Any, facts: CaseAccessFacts) -> FormerJurisdiction | None:
    """The latest earlier holding of the case by the caller's province that lets the caller read it: its
    supervisors and auditors, and caseworkers of an agency that took part there. National users (`*`) read
    the case as it is now, so they never come through here."""
    for f in reversed(facts.former):
        if p.province != f.province:
            continue
        if (
            p.has(Role.supervisor)
            or p.has(Role.auditor)
            or (p.has(Role.caseworker) and p.agency in f.agencies)
        ):
            return f
    return None


def can_read_case(p: Any, facts: CaseAccessFacts) -> bool:
    """Caseworkers: their agency owns, joined, or is invited to the case, in their province.
    Supervisors: any case in their province. Auditors: any case (PII masked unless break-glass).

    A case transferred to another province (issue 18): the receiving agency reads it while the transfer
    waits for its answer; after acceptance, the province that sent it keeps reading it (its supervisors
    and auditors, the caseworkers of its agencies that took part) up to the transfer (`read_until`)."""
    if p.has(Role.admin) or (p.has(Role.auditor) and p.province == "*"):
        return True
    if not _in_jurisdiction(p, facts):
        return _invited_elsewhere(p, facts) or _former_holding(p, facts) is not None
    if p.has(Role.supervisor) or p.has(Role.auditor):
        return True
    return bool(
        p.agency == facts.owner_agency
        or p.agency in facts.participants
        or p.agency in facts.pending_invitees
    )


def read_until(p: Any, facts: CaseAccessFacts) -> datetime | None:
    """Up to when the caller may read the case's history: None (all of it) for the case's current
    jurisdiction, national users and a receiving agency deciding on a transfer; for a province that
    held the case before, the moment it left. Call after `can_read_case` admitted the caller."""
    if (
        p.has(Role.admin)
        or (p.has(Role.auditor) and p.province == "*")
        or _in_jurisdiction(p, facts)
    ):
        return None
    if _invited_elsewhere(p, facts):
        return None
    f = _former_holding(p, facts)
    return f.until if f is not None else None


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
    return p.has(Role.caseworker) and bool(
        p.agency == facts.owner_agency or p.agency in facts.participants
    )


def can_respond_to_handoff(
    p: Any, facts: CaseAccessFacts, to_agency: AgencyRole, to_province: str | None = None
) -> bool:
    """Accepting or rejecting a handoff: a caseworker or supervisor of the invited agency, in the case's
    province (the invitee is not a participant yet, so `can_act_on_case` does not admit it), or, for a
    transfer to another province, in that province (`to_province`). Without `to_province` (a caller that
    does not know which handoff) an agency invited to a transfer elsewhere is admitted too: the workflow
    then checks the handoff's own province."""
    if p.has(Role.admin):
        return True
    if not (p.has(Role.caseworker) or p.has(Role.supervisor)) or p.agency != to_agency:
        return False
    if to_province is not None and to_province != facts.province:
        return bool(p.covers_province(to_province))
    if to_province is None and (p.province, to_agency) in facts.invited_elsewhere:
        return True
    return _in_jurisdiction(p, facts)


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
    return PrincipalLike(
        user_id=p.user_id,
        roles=frozenset(r for r in p.roles if r != Role.auditor),
        agency=p.agency,
        province=p.province,
        commune=p.commune,
    )


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


# ---- which actions a caller may take on a case now (issue 14) ---------------------------------------
POLICE_WRITERS = frozenset({A.police, A.border_guard, A.coast_guard})
# the decision each open stage takes, by the console's action names
STAGE_DECISIONS: Mapping[Stage, tuple[str, ...]] = {
    Stage.receive: ("classify",),
    Stage.verify: ("verify",),
    Stage.identify: ("identify",),
    Stage.rescue: ("rescue_complete", "rescue_not_needed"),
    Stage.protect: ("protect",),
    Stage.reintegrate: ("closure",),
}
RESCUE_PLAN_STAGES = frozenset({Stage.receive, Stage.verify, Stage.identify, Stage.rescue})


class CaseProgress(BaseModel):
    """What `allowed_actions` needs beside CaseAccessFacts: where the case stands (no PII)."""

    model_config = ConfigDict(frozen=True)

    stage: Stage
    closed: bool
    assignee: str | None = None
    escalation_level: int = 0
    top_escalation_level: int = 3
    # handoffs waiting for an answer: (to_agency, to_province; None = the case's own province, kind)
    waiting: tuple[tuple[AgencyRole, str | None, str], ...] = ()
    pending_follow_ups: bool = False
    has_deadline: bool = False
    # the person was found not to be a victim: support services end
    support_ended: bool = False
    # data-sharing consent granted to legal aid of the case's province
    legal_aid_consent: bool = False


def allowed_actions(p: Any, facts: CaseAccessFacts, progress: CaseProgress) -> list[str]:
    """The actions the caller may take on the case now, by the rules the endpoints and the workflow's
    validators apply (`can_act_on_case`, `can_respond_to_handoff`, the stage owner with a supervisor's
    override, section rules, the police-only writes, the supervisor-only actions, the stage each action
    needs). A listed action may still be refused for what the form carries (a stale version, a missing
    consent for the chosen agency, an invalid field); an action not listed is refused (403/409).

    Names: claim, the stage's decision (classify, verify, identify, rescue_complete, rescue_not_needed,
    protect, closure), rescue_plan, perpetrator, consent, legal_aid, transfer, support_plan, service,
    follow_up, respond_handoff, reassign, extend_deadline, escalate, reopen; and the police's records at
    any open stage (issue 15): protection_measures, rescue_complete (outside the rescue stage an outcome is
    recorded without deciding the stage)."""
    out: list[str] = []
    if any(
        can_respond_to_handoff(p, facts, agency, province)
        for agency, province, _ in progress.waiting
    ):
        out.append("respond_handoff")
    if not can_act_on_case(p, facts):
        return out
    supervisor = p.has(Role.supervisor)
    owner = acts_as_stage_owner(p, facts.owner_agency) or supervisor  # a supervisor: as an override
    police = p.agency in POLICE_WRITERS or p.has(Role.admin)
    support = can_read_section(p, Section.support_plan)
    if progress.closed:
        out += ["perpetrator"] if police else []
        out += ["support_plan"] if support else []
        out += ["reopen"] if supervisor else []
        return out
    stage = progress.stage
    if owner and (progress.assignee is None or progress.assignee == p.user_id):
        out.append("claim")
    if owner:
        for action in STAGE_DECISIONS.get(stage, ()):
            if action == "rescue_complete" and not police:
                continue
            if action == "closure" and not support:
                continue
            out.append(action)
    # a rescue outcome is recorded when it happens (in the rescue stage it is the stage's decision, above)
    if police and stage != Stage.rescue:
        out.append("rescue_complete")
    if police and stage in RESCUE_PLAN_STAGES:
        out.append("rescue_plan")
    if police:
        out += ["protection_measures", "perpetrator"]
    out.append("consent")
    waiting_here = {a for a, province, _ in progress.waiting if province in (None, facts.province)}
    if (
        owner
        and A.legal_aid not in facts.participants
        and A.legal_aid != facts.owner_agency
        and A.legal_aid not in waiting_here
        and (progress.legal_aid_consent or supervisor)
    ):
        out.append("legal_aid")
    if owner and not any(kind == "transfer" for _, _, kind in progress.waiting):
        out.append("transfer")
    if support:
        out += ["support_plan"] + ([] if progress.support_ended else ["service"])
        if owner and stage == Stage.reintegrate and progress.pending_follow_ups:
            out.append("follow_up")
    if supervisor:
        out.append("reassign")
        if progress.has_deadline or progress.waiting:
            out.append("extend_deadline")
        if progress.escalation_level < progress.top_escalation_level:
            out.append("escalate")
    return out
