"""The case's state machine (workflows/transitions.py) without Temporal: which decision is valid in which
stage, what follows it, and the state container CaseWorkflow keeps."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.contract import (
    Actor,
    CaseFacts,
    Classification,
    ConsentPurpose,
    EndCase,
    EvidenceKind,
    EvidenceRef,
    FollowUp,
    Handoff,
    HandoffKind,
    HandoffState,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordConsent,
    RecordProtection,
    RecordRescue,
    ReintegrateDecision,
    RequestHandoff,
    RescueDecision,
    RescueRecord,
    StageDecision,
    StageRecord,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import (
    AgeBand,
    AgencyRole,
    CaseStatus,
    Channel,
    DecisionMakingOrg,
    Outcome,
    Role,
    Stage,
    TraffickingStatus,
)
from shared.policy import CasePolicy, PolicyRequest, ReflectionPolicy, load_policy, resolve_policy
from workflows import deadlines, transitions
from workflows.transitions import CaseData, Closure, DecisionContext, Refusal, Transition

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday, no holiday
OPENER = Actor(
    user_id="bg-1",
    agency=AgencyRole.border_guard,
    roles=frozenset({Role.caseworker}),
    province="20",
)
SUPERVISOR = OPENER.model_copy(update={"roles": frozenset({Role.supervisor})})
REFLECTION = ReflectionPolicy(enabled=True, days=30, starts_at="verify_confirmed", source="test")
EVIDENCE = [EvidenceRef(evidence_id="e1", kind=EvidenceKind.statement_of_person)]


def _facts(**over: Any) -> CaseFacts:
    values: dict[str, Any] = {
        "case_id": "case-1",
        "person_ref": "person-1",
        "province": "20",
        "channel": Channel.border_guard_handover,
        "opened_by": OPENER,
        "opened_at": NOW,
        **over,
    }
    return CaseFacts(**values)


def _policy(facts: CaseFacts) -> CasePolicy:
    return resolve_policy(
        load_policy(ROOT / "shared" / "policy.yaml"),
        PolicyRequest(
            province=facts.province,
            categories=facts.categories,
            channel=facts.channel,
            opener=facts.opened_by.agency,
        ),
    )


def _case(stage: Stage = Stage.receive, **over: Any) -> CaseData:
    case = CaseData.opening(_facts(), NOW)
    case.stage = stage
    case.stages = [StageRecord(stage=stage, entered_at=NOW, owner_agency=case.owner_agency)]
    for name, value in over.items():
        setattr(case, name, value)
    return case


def _ctx(already_safe: bool = True, reflection: ReflectionPolicy = REFLECTION) -> DecisionContext:
    return DecisionContext(already_safe=already_safe, reflection=reflection, now=NOW)


def _identify(status: TraffickingStatus, **over: Any) -> IdentifyDecision:
    return IdentifyDecision(
        status=status, deciding_org=DecisionMakingOrg.Police, evidence=EVIDENCE, **over
    )


VALID: dict[Stage, StageDecision] = {
    Stage.receive: ReceiveDecision(
        classification=Classification.trafficking_suspected, channel=Channel.walk_in
    ),
    Stage.verify: VerifyDecision(result=VerifyResult.confirmed),
    Stage.identify: _identify(TraffickingStatus.ActualVictimOfTrafficking),
    Stage.rescue: RescueDecision(needed=True, outcome="rescued"),
    Stage.protect: ProtectDecision(measures=["shelter"]),
    Stage.reintegrate: ReintegrateDecision(support_plan_ref="plan-1", reason="plan completed"),
}


# ---- the state container -------------------------------------------------------------------------
def test_a_new_case_is_in_receive_owned_by_the_opener():
    state = CaseData.opening(_facts(), NOW).snapshot(_facts(), "pending")
    assert (state.stage, state.status, state.owner_agency, state.province) == (
        Stage.receive,
        CaseStatus.Active,
        AgencyRole.border_guard,
        "20",
    )
    assert state.version == 0 and state.last_event_seq == 0 and state.outcome is None
    assert state.opened_at == NOW and state.updated_at == NOW and state.policy_version == "pending"
    assert [(j.province, j.since) for j in state.jurisdictions] == [("20", NOW)]
    assert state.trafficking_status == TraffickingStatus.PossibleVictimOfTrafficking
    assert not state.handoffs and not state.stages and not state.consents


def test_carried_state_comes_back_field_by_field():
    case = _case(Stage.reintegrate, version=7, last_event_seq=9, assignee="sp-1")
    case.participants.append(AgencyRole.police)
    case.consents["data_sharing:police"] = True
    case.follow_ups = deadlines.follow_ups_from(_policy(_facts()), NOW)
    case.reflection_until = NOW + timedelta(days=30)
    state = case.snapshot(_facts(), "VN-x")
    again = CaseData.carried(state, NOW + timedelta(days=1)).snapshot(_facts(), "VN-x")
    assert again == state
    assert again.model_dump() == state.model_dump()


def test_snapshot_copies_the_lists():
    case = _case()
    state = case.snapshot(_facts(), "VN-x")
    case.participants.append(AgencyRole.police)
    case.consents["support"] = True
    assert state.participants == [] and state.consents == {}


def test_state_carried_from_earlier_code_gets_opened_at_and_its_first_province():
    state = _case().snapshot(_facts(), "VN-x")
    old = state.model_copy(update={"opened_at": None, "jurisdictions": []})
    later = NOW + timedelta(days=3)
    case = CaseData.carried(old, later)
    assert case.opened_at == later
    assert [(j.province, j.since) for j in case.jurisdictions] == [("20", later)]


# ---- which decision in which stage ---------------------------------------------------------------
@pytest.mark.parametrize("stage", list(VALID))
@pytest.mark.parametrize("decision_stage", list(VALID))
def test_a_decision_is_valid_only_in_its_own_stage(stage: Stage, decision_stage: Stage):
    case = _case(stage)
    refusal = transitions.check_decision(case, VALID[decision_stage], NOW)
    if stage == decision_stage:
        assert refusal is None
    else:
        assert refusal == Refusal(
            "conflict", f"the case is in stage {stage.value}, not {decision_stage.value}"
        )


def test_no_decision_in_a_closed_case():
    refusal = transitions.check_decision(_case(Stage.closed), VALID[Stage.receive], NOW)
    assert refusal is not None and refusal.kind == "conflict"


@pytest.mark.parametrize(
    ("stage", "decision", "kind", "words"),
    [
        (
            Stage.identify,
            IdentifyDecision(
                status=TraffickingStatus.ActualVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
            ),
            "invalid",
            "evidence",
        ),
        (
            Stage.identify,
            IdentifyDecision(
                status=TraffickingStatus.NotAVictimOfTrafficking,
                deciding_org=DecisionMakingOrg.Police,
            ),
            "invalid",
            "evidence",
        ),
        (Stage.rescue, RescueDecision(needed=True), "invalid", "operation outcome"),
        (Stage.protect, ProtectDecision(declined=True), "invalid", "written refusal"),
        (Stage.protect, ProtectDecision(), "invalid", "at least one measure"),
    ],
)
def test_incomplete_decisions_are_invalid(
    stage: Stage, decision: StageDecision, kind: str, words: str
):
    refusal = transitions.check_decision(_case(stage), decision, NOW)
    assert refusal is not None and refusal.kind == kind and words in refusal.message


def test_interim_identification_needs_no_evidence():
    d = IdentifyDecision(
        status=TraffickingStatus.PossibleVictimOfTrafficking, deciding_org=DecisionMakingOrg.Police
    )
    assert transitions.check_decision(_case(Stage.identify), d, NOW) is None


def test_declined_protection_with_written_refusal_is_valid():
    d = ProtectDecision(declined=True, refusal_document_ref="doc-1")
    assert transitions.check_decision(_case(Stage.protect), d, NOW) is None


def test_reintegration_closes_only_after_every_follow_up():
    fus = [
        FollowUp(follow_up_id="fu-3m", due_at=NOW, outcome="done"),
        FollowUp(follow_up_id="fu-6m", due_at=NOW),
        FollowUp(follow_up_id="fu-12m", due_at=NOW),
    ]
    refusal = transitions.check_decision(
        _case(Stage.reintegrate, follow_ups=fus), VALID[Stage.reintegrate], NOW
    )
    assert refusal == Refusal("conflict", "follow-ups still pending: fu-6m, fu-12m")


def test_reintegration_does_not_close_during_the_reflection_period():
    case = _case(Stage.reintegrate, reflection_until=NOW + timedelta(days=1))
    refusal = transitions.check_decision(case, VALID[Stage.reintegrate], NOW)
    assert refusal is not None and refusal.kind == "conflict" and "reflection" in refusal.message
    assert (
        transitions.check_decision(case, VALID[Stage.reintegrate], NOW + timedelta(days=1)) is None
    )


# ---- what follows a decision ---------------------------------------------------------------------
def _receive(c: Classification) -> ReceiveDecision:
    return ReceiveDecision(classification=c, channel=Channel.walk_in)


@pytest.mark.parametrize(
    ("decision", "expected"),
    [
        (
            _receive(Classification.trafficking_suspected),
            Transition(finish=True, enter=(Stage.verify,)),
        ),
        (
            _receive(Classification.other_crime),
            Transition(finish=True, close=Closure(Outcome.not_relevant, CaseStatus.ClosedReferred)),
        ),
        (
            _receive(Classification.not_relevant),
            Transition(finish=True, close=Closure(Outcome.not_relevant, CaseStatus.Closed)),
        ),
        (
            VerifyDecision(result=VerifyResult.unfounded),
            Transition(finish=True, close=Closure(Outcome.unfounded, CaseStatus.Closed)),
        ),
        (
            VerifyDecision(result=VerifyResult.confirmed),
            Transition(
                finish=True,
                enter=(Stage.identify,),
                reflection_until=NOW + timedelta(days=30),
                data={"reflection_until": (NOW + timedelta(days=30)).isoformat()},
            ),
        ),
        (
            _identify(TraffickingStatus.PossibleVictimOfTrafficking),
            Transition(
                trafficking_status=TraffickingStatus.PossibleVictimOfTrafficking,
                data={"interim": True},
            ),
        ),
        (
            _identify(TraffickingStatus.NotAVictimOfTrafficking),
            Transition(
                trafficking_status=TraffickingStatus.NotAVictimOfTrafficking,
                finish=True,
                close=Closure(Outcome.not_a_victim, CaseStatus.Closed),
            ),
        ),
        (
            _identify(TraffickingStatus.NotAVictimOfTrafficking, referred_elsewhere="labour"),
            Transition(
                trafficking_status=TraffickingStatus.NotAVictimOfTrafficking,
                finish=True,
                close=Closure(Outcome.not_a_victim, CaseStatus.ClosedReferred),
            ),
        ),
        (
            RescueDecision(needed=True, outcome="postponed"),
            Transition(data={"interim": True}),
        ),
        (
            RescueDecision(needed=True, outcome="rescued"),
            Transition(finish=True, enter=(Stage.protect,)),
        ),
        (
            RescueDecision(needed=False),
            Transition(finish=True, skipped=True, enter=(Stage.protect,)),
        ),
        (
            ProtectDecision(measures=["shelter"]),
            Transition(finish=True, enter=(Stage.reintegrate,)),
        ),
        (
            ReintegrateDecision(
                support_plan_ref="p", reason="done well", cas_status=CaseStatus.ClosedReferred
            ),
            Transition(finish=True, close=Closure(Outcome.reintegrated, CaseStatus.ClosedReferred)),
        ),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, Transition) else "",
)
def test_what_each_decision_does(decision: StageDecision, expected: Transition):
    assert transitions.decide(decision, _ctx(already_safe=False)) == expected


def test_no_reflection_period_when_the_policy_has_none():
    off = REFLECTION.model_copy(update={"enabled": False})
    t = transitions.decide(VerifyDecision(result=VerifyResult.confirmed), _ctx(reflection=off))
    assert t == Transition(finish=True, enter=(Stage.identify,))


def test_a_victim_already_safe_passes_through_rescue_to_protection():
    t = transitions.decide(_identify(TraffickingStatus.ActualVictimOfTrafficking), _ctx(True))
    assert t.enter == (Stage.rescue, Stage.protect) and t.next_stage == Stage.protect
    assert t.finish and t.data == {"rescue_skipped": True}


def test_a_victim_still_in_danger_goes_to_rescue():
    t = transitions.decide(_identify(TraffickingStatus.ActualVictimOfTrafficking), _ctx(False))
    assert t.enter == (Stage.rescue,) and t.next_stage == Stage.rescue
    assert t.trafficking_status == TraffickingStatus.ActualVictimOfTrafficking


def test_next_stage():
    assert transitions.decide(VALID[Stage.protect], _ctx()).next_stage == Stage.reintegrate
    assert transitions.decide(VALID[Stage.reintegrate], _ctx()).next_stage == Stage.closed
    interim = transitions.decide(RescueDecision(needed=True, outcome="not_found"), _ctx())
    assert interim.next_stage is None and not interim.finish


def test_the_whole_path_of_a_child_returned_from_abroad():
    """A child returning through an embassy: each stage's decision leads to the next, the stage owners are
    the policy's for that channel (police verify and identify at the border) and identification gets
    the longer deadline for a person abroad."""
    facts = _facts(
        channel=Channel.embassy_repatriation,
        abroad=True,
        age_band=AgeBand.under_16,
        opened_by=OPENER.model_copy(update={"agency": AgencyRole.embassy}),
        already_safe=True,
    )
    policy = _policy(facts)
    assert facts.categories == ["child", "abroad", "under_16"]
    case = CaseData.opening(facts, NOW)
    ctx = DecisionContext(already_safe=True, reflection=policy.reflection_period, now=NOW)
    visited = [case.stage]
    for stage in (Stage.receive, Stage.verify, Stage.identify, Stage.protect):
        t = transitions.decide(VALID[stage], ctx)
        assert t.next_stage is not None
        visited.append(t.next_stage)
        case.stage = t.next_stage
    assert visited == [
        Stage.receive,
        Stage.verify,
        Stage.identify,
        Stage.protect,
        Stage.reintegrate,
    ]
    assert [policy.owners[s] for s in visited] == [
        AgencyRole.embassy,
        AgencyRole.police,
        AgencyRole.police,
        AgencyRole.social_protection,
        AgencyRole.social_protection,
    ]
    assert policy.deadlines[Stage.verify].id == "verify-child"
    identify = deadlines.deadline_for(policy, Stage.identify, NOW)
    assert "identify-abroad" in identify.source and identify.due_at == NOW + timedelta(days=30)


# ---- stage records and closing -------------------------------------------------------------------
def test_finish_stage_decides_the_open_record_of_the_current_stage():
    case = _case(Stage.verify)
    case.stages.insert(
        0, StageRecord(stage=Stage.receive, entered_at=NOW, owner_agency=OPENER.agency)
    )
    d = VALID[Stage.verify]
    transitions.finish_stage(case, "sp-1", d, NOW + timedelta(hours=1))
    assert case.stages[0].decided_at is None
    assert (case.stages[1].decided_by, case.stages[1].decision, case.stages[1].skipped) == (
        "sp-1",
        d,
        False,
    )
    transitions.finish_stage(case, "sp-2", None, NOW, skipped=True)  # nothing open any more
    assert case.stages[1].decided_by == "sp-1"


def _handoff(n: int, state: HandoffState) -> Handoff:
    return Handoff(
        handoff_id=f"h{n}",
        kind=HandoffKind.referral,
        from_agency=AgencyRole.border_guard,
        to_agency=AgencyRole.legal_aid,
        state=state,
        requested_at=NOW,
        requested_by="bg-1",
        accept_by=NOW + timedelta(days=2),
    )


def test_closing_ends_handoffs_and_the_deadline():
    policy = _policy(_facts())
    case = _case(
        Stage.protect,
        assignee="sp-1",
        escalation_level=2,
        deadline=deadlines.deadline_for(policy, Stage.protect, NOW),
        handoffs=[
            _handoff(1, HandoffState.accepted),
            _handoff(2, HandoffState.requested),
            _handoff(3, HandoffState.rejected),
        ],
    )
    later = NOW + timedelta(days=1)
    transitions.close(case, Closure(Outcome.deceased, CaseStatus.Closed), later)
    assert case.closed and case.stage == Stage.closed and case.closed_at == later
    assert (case.outcome, case.assignee, case.escalation_level, case.deadline) == (
        Outcome.deceased,
        None,
        0,
        None,
    )
    assert [h.state for h in case.handoffs] == [
        HandoffState.done,
        HandoffState.revoked,
        HandoffState.rejected,
    ]
    assert case.handoffs[1].reason == "case closed" and case.handoffs[1].responded_at == later


# ---- the other actions ---------------------------------------------------------------------------
def _end(outcome: Outcome, actor: Actor = SUPERVISOR, **over: Any) -> EndCase:
    return EndCase(actor=actor, outcome=outcome, reason="the reason", **over)


def test_an_early_end_is_closed_as_referred_only_when_the_case_leaves():
    assert transitions.end_case_closure(Outcome.transferred_jurisdiction) == Closure(
        Outcome.transferred_jurisdiction, CaseStatus.ClosedReferred
    )
    for outcome in (Outcome.consent_withdrawn, Outcome.lost_contact, Outcome.deceased):
        assert transitions.end_case_closure(outcome).status == CaseStatus.Closed


def test_no_closure_for_lost_contact_during_the_reflection_period():
    case = _case(Stage.identify, reflection_until=NOW + timedelta(days=5))
    refusal = transitions.check_end_case(case, _end(Outcome.lost_contact), NOW, leaving_rules=True)
    assert refusal is not None and refusal.kind == "conflict"
    assert transitions.check_end_case(case, _end(Outcome.deceased), NOW, leaving_rules=True) is None
    after = NOW + timedelta(days=5)
    assert (
        transitions.check_end_case(case, _end(Outcome.lost_contact), after, leaving_rules=True)
        is None
    )


@pytest.mark.parametrize(
    ("cmd", "leaving_rules", "kind"),
    [
        (_end(Outcome.transferred_jurisdiction, to_country="LA"), True, None),
        (_end(Outcome.transferred_jurisdiction, to_country="LA", to_province="XV"), True, None),
        (_end(Outcome.transferred_jurisdiction), True, "invalid"),
        (_end(Outcome.transferred_jurisdiction, to_country="VN"), True, "invalid"),
        (
            _end(Outcome.transferred_jurisdiction, to_country="LA", to_province="40"),
            True,
            "invalid",
        ),
        (_end(Outcome.transferred_jurisdiction, OPENER, to_country="LA"), True, "forbidden"),
        # the rule before issue 18, for recorded histories: another Vietnamese province
        (_end(Outcome.transferred_jurisdiction, to_province="40"), False, None),
        (_end(Outcome.transferred_jurisdiction, to_province="20"), False, "invalid"),
        (_end(Outcome.transferred_jurisdiction), False, "invalid"),
    ],
)
def test_a_case_leaving_the_country(cmd: EndCase, leaving_rules: bool, kind: str | None):
    refusal = transitions.check_end_case(
        _case(Stage.protect), cmd, NOW, leaving_rules=leaving_rules
    )
    assert (refusal.kind if refusal else None) == kind


def test_reopen_only_a_closed_case_into_an_open_stage():
    open_case = _case(Stage.verify)
    assert transitions.check_reopen(open_case, Stage.verify) == Refusal(
        "conflict", "only a closed case can be reopened"
    )
    closed = _case(Stage.verify)
    transitions.close(closed, Closure(Outcome.unfounded, CaseStatus.Closed), NOW)
    assert transitions.check_reopen(closed, Stage.verify) is None
    refusal = transitions.check_reopen(closed, Stage.closed)
    assert refusal is not None and refusal.kind == "invalid"


def test_escalation_by_hand_stops_at_the_policys_top_level():
    top = _policy(_facts()).escalation.top_level
    assert top == 3
    assert transitions.check_escalate(_case(escalation_level=top - 1), top) is None
    assert transitions.check_escalate(_case(escalation_level=top), top) == Refusal(
        "conflict", "the case is already escalated to the steering committee (level 3)"
    )


def test_follow_ups_are_recorded_once_in_reintegration():
    fus = [
        FollowUp(follow_up_id="fu-3m", due_at=NOW, outcome="done"),
        FollowUp(follow_up_id="fu-6m", due_at=NOW),
    ]
    case = _case(Stage.reintegrate, follow_ups=fus)
    assert transitions.check_follow_up(case, "fu-6m") is None
    assert transitions.check_follow_up(case, "fu-3m") == Refusal(
        "conflict", "follow-up fu-3m is already recorded"
    )
    assert transitions.check_follow_up(case, "fu-9m") == Refusal("not_found", "no follow-up fu-9m")
    refusal = transitions.check_follow_up(_case(Stage.protect, follow_ups=fus), "fu-6m")
    assert refusal is not None and refusal.kind == "conflict"


def test_no_services_once_found_not_a_victim():
    assert transitions.check_service(_case(Stage.protect)) is None
    case = _case(Stage.closed, trafficking_status=TraffickingStatus.NotAVictimOfTrafficking)
    refusal = transitions.check_service(case)
    assert refusal is not None and refusal.kind == "conflict"


def test_the_pure_modules_import_no_temporal():
    code = (
        "import sys, workflows.transitions, workflows.deadlines; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'temporalio'); "
        "assert not bad, bad"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)  # noqa: S603
    assert done.returncode == 0, done.stderr


# ---- handoffs and consent ------------------------------------------------------------------------
def _request(**over: Any) -> RequestHandoff:
    values: dict[str, Any] = {
        "actor": OPENER,
        "kind": HandoffKind.referral,
        "to_agency": AgencyRole.legal_aid,
        "reason": "legal advice",
        **over,
    }
    return RequestHandoff(**values)


def test_a_handoff_needs_the_persons_consent_or_a_supervisors_override():
    case = _case(Stage.protect)
    refusal = transitions.check_handoff_request(case, _request())
    assert refusal is not None and refusal.kind == "forbidden" and "consent" in refusal.message
    override = _request(consent_override_reason="child: protection law requires it")
    refusal = transitions.check_handoff_request(case, override)
    assert refusal == Refusal("forbidden", "only a supervisor may override missing consent")
    assert (
        transitions.check_handoff_request(case, override.model_copy(update={"actor": SUPERVISOR}))
        is None
    )
    case.consents["data_sharing:legal_aid"] = True
    assert transitions.check_handoff_request(case, _request()) is None


def test_consent_for_another_province_names_that_province():
    case = _case(Stage.protect, consents={"data_sharing:police": True})
    assert transitions.has_consent(case, AgencyRole.police)
    assert transitions.has_consent(case, AgencyRole.police, "20")  # the case's own province
    assert not transitions.has_consent(case, AgencyRole.police, "40")
    case.consents["data_sharing:police@40"] = True
    assert transitions.has_consent(case, AgencyRole.police, "40")


@pytest.mark.parametrize(
    ("over", "kind", "words"),
    [
        ({"to_province": "99"}, "invalid", "not one of the 34"),
        ({"to_province": "20", "kind": HandoffKind.transfer}, "invalid", "already in province"),
        ({"to_province": "40"}, "invalid", "only a transfer"),
        ({"to_agency": AgencyRole.border_guard, "kind": HandoffKind.transfer}, "invalid", "owned"),
        ({"to_agency": AgencyRole.police}, "conflict", "already takes part"),
    ],
)
def test_invalid_handoff_requests(over: dict[str, Any], kind: str, words: str):
    case = _case(Stage.protect, participants=[AgencyRole.police])
    case.consents.update({"data_sharing:legal_aid": True, "data_sharing:police": True})
    refusal = transitions.check_handoff_request(case, _request(**over))
    assert refusal is not None and refusal.kind == kind and words in refusal.message


def test_one_waiting_transfer_at_a_time():
    case = _case(Stage.protect, consents={"data_sharing:police@40": True})
    transfer = _request(kind=HandoffKind.transfer, to_agency=AgencyRole.police, to_province="40")
    assert transitions.check_handoff_request(case, transfer) is None
    case.handoffs = [
        _handoff(1, HandoffState.requested).model_copy(update={"kind": HandoffKind.transfer})
    ]
    assert transitions.check_handoff_request(case, transfer) == Refusal(
        "conflict", "a transfer is already waiting for acceptance"
    )


def test_consent_records_name_what_they_cover():
    def consent(**over: Any) -> Refusal | None:
        return transitions.check_consent(
            RecordConsent(actor=OPENER, purpose=ConsentPurpose.data_sharing, granted=True, **over)
        )

    assert consent(agency=AgencyRole.police) is None
    assert consent(agency=AgencyRole.police, province="40") is None
    assert consent() == Refusal("invalid", "data-sharing consent names the agency it covers")
    refusal = consent(province="40")
    assert refusal is not None and refusal.kind == "invalid"


# ---- issue 15 items 3 and 4: protection and rescue when they happen ---------------------------------
POLICE = OPENER.model_copy(update={"user_id": "pol-1", "agency": AgencyRole.police})


def _rescue_record(outcome: str = "rescued", op: str = "op-1") -> RescueRecord:
    return RescueRecord(
        operation_ref=op,
        outcome=outcome,  # type: ignore[arg-type]
        recorded_at=NOW,
        recorded_by="pol-1",
        agency=AgencyRole.police,
        stage=Stage.verify,
    )


@pytest.mark.parametrize("stage", [s for s in Stage if s != Stage.closed])
@pytest.mark.parametrize(
    "agency", [AgencyRole.police, AgencyRole.border_guard, AgencyRole.coast_guard]
)
def test_the_police_decide_protection_at_any_open_stage(stage: Stage, agency: AgencyRole):
    cmd = RecordProtection(
        actor=POLICE.model_copy(update={"agency": agency}),
        measures=["guard"],
        justification="threats by phone",
    )
    assert transitions.check_protection(_case(stage), cmd) is None


@pytest.mark.parametrize(
    "agency", [AgencyRole.social_protection, AgencyRole.legal_aid, AgencyRole.hotline]
)
def test_other_agencies_do_not_decide_protection_measures(agency: AgencyRole):
    cmd = RecordProtection(
        actor=SUPERVISOR.model_copy(update={"agency": agency}),
        measures=["guard"],
        justification="threats by phone",
    )
    refusal = transitions.check_protection(_case(Stage.protect), cmd)
    assert refusal is not None and refusal.kind == "forbidden" and "police" in refusal.message
    admin = cmd.model_copy(update={"actor": cmd.actor.model_copy(update={"roles": {Role.admin}})})
    assert transitions.check_protection(_case(Stage.protect), admin) is None


def test_a_protection_measure_is_named_once():
    cmd = RecordProtection(actor=POLICE, measures=["guard", "guard"], justification="twice over")
    refusal = transitions.check_protection(_case(), cmd)
    assert refusal is not None and refusal.kind == "invalid" and "measures" in refusal.message


def test_a_rescue_is_recorded_at_any_open_stage_but_rescue():
    cmd = RecordRescue(
        actor=POLICE, operation_ref="op-1", outcome="rescued", justification="found at the bar"
    )
    for stage in (Stage.receive, Stage.verify, Stage.identify, Stage.protect, Stage.reintegrate):
        assert transitions.check_rescue_record(_case(stage), cmd) is None
    refusal = transitions.check_rescue_record(_case(Stage.rescue), cmd)
    assert refusal is not None and refusal.kind == "conflict" and "decision" in refusal.message
    social = cmd.model_copy(
        update={"actor": SUPERVISOR.model_copy(update={"agency": AgencyRole.social_protection})}
    )
    refusal = transitions.check_rescue_record(_case(Stage.verify), social)
    assert refusal is not None and refusal.kind == "forbidden"


def test_an_operation_outcome_is_recorded_once_unless_postponed():
    cmd = RecordRescue(
        actor=POLICE, operation_ref="op-1", outcome="rescued", justification="found at the bar"
    )
    postponed = _case(Stage.identify, rescues=[_rescue_record("postponed")])
    assert transitions.check_rescue_record(postponed, cmd) is None
    done = _case(Stage.identify, rescues=[_rescue_record("not_found")])
    refusal = transitions.check_rescue_record(done, cmd)
    assert refusal is not None and refusal.kind == "conflict" and "op-1" in refusal.message
    other = cmd.model_copy(update={"operation_ref": "op-2"})
    assert transitions.check_rescue_record(done, other) is None


def test_the_first_rescue_that_found_the_person_counts():
    assert transitions.rescued_earlier(_case(rescues=[_rescue_record("not_found")])) is None
    found = _rescue_record("rescued", op="op-2")
    case = _case(rescues=[_rescue_record("postponed"), found, _rescue_record("rescued", "op-3")])
    assert transitions.rescued_earlier(case) == found


@pytest.mark.parametrize("already_safe", [True, False])
def test_a_victim_rescued_before_identification_passes_the_rescue_stage_as_decided(
    already_safe: bool,
):
    found = _rescue_record()
    ctx = DecisionContext(already_safe=already_safe, reflection=REFLECTION, now=NOW, rescued=found)
    t = transitions.decide(_identify(TraffickingStatus.ActualVictimOfTrafficking), ctx)
    assert t.enter == (Stage.rescue, Stage.protect) and t.finish and not t.skipped
    assert t.rescue_done == found and t.data == {"rescue_recorded": "op-1"}


def test_a_rescue_recorded_early_decides_nothing_for_a_suspected_or_not_a_victim():
    ctx = DecisionContext(
        already_safe=False, reflection=REFLECTION, now=NOW, rescued=_rescue_record()
    )
    interim = transitions.decide(_identify(TraffickingStatus.PossibleVictimOfTrafficking), ctx)
    assert interim.enter == () and not interim.finish and interim.rescue_done is None
    not_victim = transitions.decide(_identify(TraffickingStatus.NotAVictimOfTrafficking), ctx)
    assert not_victim.next_stage == Stage.closed and not_victim.rescue_done is None


def test_protections_and_rescues_are_carried_over():
    case = _case(Stage.identify, rescues=[_rescue_record()])
    state = case.snapshot(_facts(), "v1")
    assert CaseData.carried(state, NOW).rescues == case.rescues
    old = state.model_dump(mode="json")
    del old["protections"], old["rescues"]  # a state recorded before issue 15
    carried = CaseData.carried(type(state).model_validate(old), NOW)
    assert carried.protections == [] and carried.rescues == []
