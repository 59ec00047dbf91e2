"""Deadlines, reminders and escalations (workflows/deadlines.py) without Temporal: the instants, the next
wake instant, what is due at an instant and who hears of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.contract import Actor, CaseFacts, FollowUp, Handoff, HandoffKind, HandoffState
from shared.domain import AgeBand, AgencyRole, CaseStatus, Channel, Outcome, Role, Stage
from shared.policy import CasePolicy, PolicyRequest, load_policy, resolve_policy
from workflows import deadlines, transitions
from workflows.deadlines import Escalation, FollowUpDue, HandoffEscalation, Reminder
from workflows.transitions import CaseData, Closure

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday 16:00 in Viet Nam
DAY = timedelta(days=1)
OPENER = Actor(
    user_id="bg-1",
    agency=AgencyRole.border_guard,
    roles=frozenset({Role.caseworker}),
    province="20",
)


def _facts(**over: Any) -> CaseFacts:
    values: dict[str, Any] = {
        "case_id": "case-1",
        "person_ref": "person-1",
        "province": "20",
        "channel": Channel.walk_in,
        "opened_by": OPENER,
        "opened_at": NOW,
        **over,
    }
    return CaseFacts(**values)


def _policy(facts: CaseFacts | None = None) -> CasePolicy:
    f = facts or _facts()
    return resolve_policy(
        load_policy(ROOT / "shared" / "policy.yaml"),
        PolicyRequest(
            province=f.province,
            categories=f.categories,
            channel=f.channel,
            opener=f.opened_by.agency,
        ),
    )


POLICY = _policy()


def _verify_case(**over: Any) -> CaseData:
    """A case that entered verify at NOW (3 calendar days; reminder at 75% of them)."""
    case = CaseData.opening(_facts(), NOW)
    case.stage = Stage.verify
    case.owner_agency = AgencyRole.social_protection
    case.deadline = deadlines.deadline_for(POLICY, Stage.verify, NOW)
    for name, value in over.items():
        setattr(case, name, value)
    return case


def _handoff(
    state: HandoffState = HandoffState.requested, level: int = 0, to_province: str | None = None
) -> Handoff:
    return Handoff(
        handoff_id="h1",
        kind=HandoffKind.transfer,
        from_agency=AgencyRole.social_protection,
        to_agency=AgencyRole.police,
        state=state,
        requested_at=NOW,
        requested_by="sp-1",
        accept_by=NOW + 2 * DAY,
        escalation_level=level,
        from_province="20" if to_province else None,
        to_province=to_province,
    )


# ---- the instants --------------------------------------------------------------------------------
def test_stage_deadline_and_reminder():
    d = deadlines.deadline_for(POLICY, Stage.verify, NOW)
    assert d.due_at == NOW + 3 * DAY and d.stage == Stage.verify
    assert d.reminder_at == NOW + 3 * DAY - (3 * DAY) * 0.25
    assert d.source.startswith(f"{POLICY.version}:verify — ") and not d.reminder_sent


def test_a_child_is_verified_sooner_and_a_person_abroad_identified_later():
    child = _policy(_facts(age_band=AgeBand.age_16_17))
    d = deadlines.deadline_for(child, Stage.verify, NOW)
    assert d.due_at == NOW + 2 * DAY and ":verify-child" in d.source
    abroad = _policy(_facts(abroad=True))
    d = deadlines.deadline_for(abroad, Stage.identify, NOW)
    assert d.due_at == NOW + 30 * DAY and ":identify-abroad" in d.source
    assert deadlines.deadline_for(POLICY, Stage.identify, NOW).due_at == NOW + 20 * DAY


def test_protection_counts_working_days():
    friday = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)  # 09:00 in Viet Nam
    d = deadlines.deadline_for(POLICY, Stage.protect, friday)
    assert d.due_at == friday + 7 * DAY  # 5 working days: Mon..Fri of the next week


def test_extension_moves_the_deadline_and_the_reminder_from_now():
    d = deadlines.deadline_for(POLICY, Stage.verify, NOW).model_copy(update={"reminder_sent": True})
    later = NOW + 4 * DAY
    e = deadlines.extended(POLICY, d, 2 * DAY, later)
    assert e.due_at == NOW + 5 * DAY and e.extended_by == 2 * DAY and not e.reminder_sent
    assert e.reminder_at == e.due_at - (e.due_at - later) * 0.25
    assert deadlines.extended(POLICY, e, DAY, later).extended_by == 3 * DAY


def test_handoff_acceptance_counts_working_days():
    friday = datetime(2026, 3, 6, 2, 0, tzinfo=UTC)
    assert deadlines.handoff_accept_by(POLICY, friday) == friday + 4 * DAY  # Mon, Tue


def test_reintegration_follow_ups():
    fus = deadlines.follow_ups_from(POLICY, NOW)
    assert [(f.follow_up_id, f.due_at.date().isoformat()) for f in fus] == [
        ("fu-3m", "2026-06-02"),
        ("fu-6m", "2026-09-02"),
        ("fu-12m", "2027-03-02"),
    ]


def test_escalation_instants_follow_the_ladder():
    assert deadlines.escalation_instants(POLICY, NOW) == [NOW, NOW + DAY, NOW + 3 * DAY]


def test_the_top_level_is_the_ladders_length():
    assert POLICY.escalation.top_level == 3 == len(POLICY.escalation.level_offsets())
    assert set(deadlines.ESCALATION_RECIPIENTS) == set(range(1, POLICY.escalation.top_level + 1))


# ---- who hears of an escalation ------------------------------------------------------------------
def test_escalation_recipients_of_a_stage_deadline():
    assert [deadlines.escalation_recipients(level) for level in (1, 2, 3)] == [
        ["assignee", "supervisor"],
        ["agency_head"],
        ["steering_committee"],
    ]


def test_escalation_recipients_of_a_handoff_within_the_province():
    h = _handoff()
    assert [deadlines.handoff_escalation_recipients(h, level) for level in (1, 2, 3)] == [
        ["police", "supervisor"],
        ["agency_head"],
        ["steering_committee"],
    ]


def test_escalation_recipients_of_a_transfer_to_another_province_are_on_both_sides():
    h = _handoff(to_province="40")
    assert [deadlines.handoff_escalation_recipients(h, level) for level in (1, 2, 3)] == [
        ["police@40", "supervisor@40", "supervisor@20"],
        ["agency_head@40", "agency_head@20"],
        ["steering_committee@40", "steering_committee@20"],
    ]


# ---- the next wake instant -----------------------------------------------------------------------
def test_next_wake_goes_reminder_then_each_level_then_nothing():
    case = _verify_case()
    assert case.deadline is not None
    due = case.deadline.due_at
    assert deadlines.next_wake(POLICY, case) == case.deadline.reminder_at
    case.deadline = case.deadline.model_copy(update={"reminder_sent": True})
    assert deadlines.next_wake(POLICY, case) == due
    case.escalation_level = 1
    assert deadlines.next_wake(POLICY, case) == due + DAY
    case.escalation_level = 2
    assert deadlines.next_wake(POLICY, case) == due + 3 * DAY
    case.escalation_level = 3
    assert deadlines.next_wake(POLICY, case) is None


def test_next_wake_takes_the_earliest_of_handoffs_and_follow_ups():
    case = _verify_case(deadline=None)
    case.handoffs = [_handoff(level=1)]
    assert deadlines.next_wake(POLICY, case) == NOW + 3 * DAY  # accept_by + 1 day
    case.follow_ups = [FollowUp(follow_up_id="fu-3m", due_at=NOW + DAY)]
    assert deadlines.next_wake(POLICY, case) == NOW + DAY
    case.follow_ups = [FollowUp(follow_up_id="fu-3m", due_at=NOW + DAY, notified=True)]
    case.handoffs = [_handoff(HandoffState.accepted)]
    assert deadlines.next_wake(POLICY, case) is None


def test_a_closed_case_wakes_only_when_its_reopen_window_ends():
    case = _verify_case(follow_ups=[FollowUp(follow_up_id="fu-3m", due_at=NOW + DAY)])
    transitions.close(case, Closure(Outcome.unfounded, CaseStatus.Closed), NOW)
    assert deadlines.next_wake(POLICY, case) == NOW + timedelta(days=90)
    assert deadlines.run_ends_at(POLICY, case) == NOW + timedelta(days=90)
    assert deadlines.run_ends_at(POLICY, _verify_case()) is None


# ---- what is due at an instant -------------------------------------------------------------------
def test_nothing_is_due_before_the_reminder():
    case = _verify_case()
    assert case.deadline is not None and case.deadline.reminder_at is not None
    assert deadlines.due(POLICY, case, case.deadline.reminder_at - timedelta(seconds=1)) == []


def test_the_reminder_is_due_once():
    case = _verify_case()
    assert case.deadline is not None and case.deadline.reminder_at is not None
    at = case.deadline.reminder_at
    assert deadlines.due(POLICY, case, at) == [
        Reminder(case.deadline.due_at, ["assignee", "social_protection"])
    ]
    case.deadline = case.deadline.model_copy(update={"reminder_sent": True})
    assert deadlines.due(POLICY, case, at) == []


def test_every_level_reached_is_due_in_order_up_to_the_top():
    case = _verify_case()
    d = case.deadline
    assert d is not None
    items = deadlines.due(POLICY, case, d.due_at + 10 * DAY)
    assert items == [
        Reminder(d.due_at, ["assignee", "social_protection"]),
        Escalation(1, d.due_at, d.source, ["assignee", "supervisor"]),
        Escalation(2, d.due_at, d.source, ["agency_head"]),
        Escalation(3, d.due_at, d.source, ["steering_committee"]),
    ]
    case.escalation_level = 1
    case.deadline = d.model_copy(update={"reminder_sent": True})
    assert [i.level for i in deadlines.due(POLICY, case, d.due_at + DAY)] == [2]


@pytest.mark.parametrize(
    ("state", "expected"), [(HandoffState.requested, 2), (HandoffState.done, 0)]
)
def test_a_waiting_handoff_escalates(state: HandoffState, expected: int):
    case = _verify_case(deadline=None)
    case.handoffs = [_handoff(HandoffState.accepted), _handoff(state, to_province="40")]
    items = deadlines.due(POLICY, case, NOW + 3 * DAY)  # accept_by + 1 day: levels 1 and 2
    assert len(items) == expected
    if expected:
        assert items[0] == HandoffEscalation(
            1, 1, NOW + 2 * DAY, ["police@40", "supervisor@40", "supervisor@20"]
        )
        assert items[1] == HandoffEscalation(
            1, 2, NOW + 2 * DAY, ["agency_head@40", "agency_head@20"]
        )


def test_follow_ups_are_due_while_the_case_is_open():
    fus = [
        FollowUp(follow_up_id="fu-3m", due_at=NOW),
        FollowUp(follow_up_id="fu-6m", due_at=NOW, notified=True),
        FollowUp(follow_up_id="fu-9m", due_at=NOW, outcome="done"),
        FollowUp(follow_up_id="fu-12m", due_at=NOW + DAY),
    ]
    case = _verify_case(deadline=None, follow_ups=fus)
    assert deadlines.due(POLICY, case, NOW) == [
        FollowUpDue(0, NOW, ["social_protection", "assignee"])
    ]
    transitions.close(case, Closure(Outcome.deceased, CaseStatus.Closed), NOW)
    assert deadlines.due(POLICY, case, NOW + 2 * DAY) == []


def test_a_closed_case_has_no_deadline_due():
    case = _verify_case()
    case.status = CaseStatus.Closed  # as a case closed before its deadline was cleared
    assert deadlines.due(POLICY, case, NOW + 10 * DAY) == []
