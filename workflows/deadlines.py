"""Deadlines, reminders and escalations as plain functions of the policy, the case and an instant: no
Temporal, no I/O, no clock (the workflow passes `now`).

- `deadline_for`, `extended`, `handoff_accept_by`, `follow_ups_from`: the instants a stage, an extension,
  a handoff and reintegration start.
- `next_wake`: the earliest instant at which something is due (the workflow's one durable timer).
- `due`: what is due at an instant, in the order the workflow applies it (each item names its
  notification's kind, level and recipients).
- `ESCALATION_RECIPIENTS`: who hears of each escalation level, the one table for a stage deadline, a
  handoff (within a province and across two) and a supervisor's escalation by hand.

The top escalation level is the policy's (`EscalationPolicy.top_level`, the length of its ladder)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.contract import Deadline, FollowUp, Handoff, HandoffState
from shared.domain import Stage
from shared.policy import CasePolicy, add_months, add_period
from workflows.transitions import CaseData

# Who hears of an escalation, by level. ACTING is whoever should have acted: the stage's assignee, or the
# agency invited by a handoff. Level 3 is the provincial steering committee (Ban Chỉ đạo 138).
ACTING = "<acting>"
ESCALATION_RECIPIENTS: Mapping[int, tuple[str, ...]] = {
    1: (ACTING, "supervisor"),
    2: ("agency_head",),
    3: ("steering_committee",),
}


def escalation_recipients(level: int, acting: str = "assignee") -> list[str]:
    return [acting if r == ACTING else r for r in ESCALATION_RECIPIENTS[level]]


def handoff_escalation_recipients(h: Handoff, level: int) -> list[str]:
    """Who hears that a handoff is still unanswered. Within a province: the invited agency and the
    supervisor, then the agency head, then the steering committee. A transfer to another province escalates
    on both sides: the receiving province hears the whole level (its invited agency included), the sending
    province the same roles but the invited agency (`role@province`)."""
    recipients = escalation_recipients(level, acting=h.to_agency.value)
    if not h.crosses_province:
        return recipients
    sending = [r for r in ESCALATION_RECIPIENTS[level] if r != ACTING]
    return [f"{r}@{h.to_province}" for r in recipients] + [
        f"{r}@{h.from_province}" for r in sending
    ]


# ---- the instants ------------------------------------------------------------------------------
def deadline_for(policy: CasePolicy, stage: Stage, start: datetime) -> Deadline:
    """The deadline of `stage` entered at `start`, with its reminder (policy.escalation's fraction of the
    stage's time before the deadline)."""
    rule = policy.deadlines[stage]
    due = add_period(start, rule.duration, rule.days, policy.holidays, policy.timezone_offset_hours)
    return Deadline(
        due_at=due,
        source=f"{policy.version}:{rule.id} — {rule.source}",
        reminder_at=_reminder_at(policy, due, start),
        stage=stage,
    )


def extended(policy: CasePolicy, d: Deadline, extend_by: timedelta, now: datetime) -> Deadline:
    """The deadline moved by a supervisor: its reminder is due again, counted from now."""
    due = d.due_at + extend_by
    return d.model_copy(
        update={
            "due_at": due,
            "extended_by": d.extended_by + extend_by,
            "reminder_at": _reminder_at(policy, due, now),
            "reminder_sent": False,
        }
    )


def _reminder_at(policy: CasePolicy, due: datetime, start: datetime) -> datetime:
    return due - (due - start) * policy.escalation.reminder_before_fraction


def handoff_accept_by(policy: CasePolicy, requested_at: datetime) -> datetime:
    hp = policy.handoff
    return add_period(
        requested_at, hp.accept_within, hp.days, policy.holidays, policy.timezone_offset_hours
    )


def follow_ups_from(policy: CasePolicy, start: datetime) -> list[FollowUp]:
    """The follow-ups of reintegration entered at `start`."""
    return [
        FollowUp(follow_up_id=f"fu-{m}m", due_at=add_months(start, m))
        for m in policy.reintegration.follow_up_months
    ]


def escalation_instants(policy: CasePolicy, due: datetime) -> list[datetime]:
    """When each escalation level is reached (index 0: level 1) for something due at `due`."""
    return [due + offset for offset in policy.escalation.level_offsets()]


def run_ends_at(policy: CasePolicy, case: CaseData) -> datetime | None:
    """A closed case ends its workflow when the reopen window has passed."""
    if case.closed and case.closed_at is not None:
        return case.closed_at + policy.reopen_window
    return None


def _follow_up_waiting(f: FollowUp) -> bool:
    return not f.notified and f.outcome is None


def next_wake(policy: CasePolicy, case: CaseData) -> datetime | None:
    """The earliest instant at which something is due (see `due`) or the run ends; None: nothing."""
    top = policy.escalation.top_level
    instants: list[datetime] = []
    if not case.closed and case.deadline is not None:
        d = case.deadline
        if d.reminder_at and not d.reminder_sent:
            instants.append(d.reminder_at)
        if case.escalation_level < top:
            instants.append(escalation_instants(policy, d.due_at)[case.escalation_level])
    for h in case.handoffs:
        if h.state == HandoffState.requested and h.escalation_level < top:
            instants.append(escalation_instants(policy, h.accept_by)[h.escalation_level])
    if not case.closed:
        instants.extend(f.due_at for f in case.follow_ups if _follow_up_waiting(f))
    end = run_ends_at(policy, case)
    if end is not None:
        instants.append(end)
    return min(instants) if instants else None


# ---- what is due at an instant -----------------------------------------------------------------
@dataclass(frozen=True)
class Reminder:
    """The stage's deadline is near (sent once per deadline)."""

    due_at: datetime
    recipients: list[str]
    kind: Literal["reminder"] = "reminder"
    level: int = 0


@dataclass(frozen=True)
class Escalation:
    """The stage's deadline passed and the case reaches `level`."""

    level: int
    due_at: datetime
    source: str
    recipients: list[str]
    kind: Literal["escalation"] = "escalation"


@dataclass(frozen=True)
class HandoffEscalation:
    """Handoff number `index` is still unanswered and reaches `level`."""

    index: int
    level: int
    due_at: datetime  # the handoff's accept_by
    recipients: list[str]
    kind: Literal["handoff_escalation"] = "handoff_escalation"


@dataclass(frozen=True)
class FollowUpDue:
    """Reintegration follow-up number `index` is due."""

    index: int
    due_at: datetime
    recipients: list[str]
    kind: Literal["follow_up_due"] = "follow_up_due"
    level: int = 0


Due = Reminder | Escalation | HandoffEscalation | FollowUpDue


def _levels_reached(policy: CasePolicy, due: datetime, level: int, now: datetime) -> Iterator[int]:
    """The levels above `level` reached by `now`, in order, up to the top."""
    instants = escalation_instants(policy, due)
    while level < policy.escalation.top_level and now >= instants[level]:
        level += 1
        yield level


def due(policy: CasePolicy, case: CaseData, now: datetime) -> Sequence[Due]:
    """What is due at `now`, in order: the stage's reminder, its escalations (one per level reached), each
    waiting handoff's escalations, the follow-ups. A closed case has no stage deadline or follow-up; a
    handoff of a closed case is no longer waiting (closing revokes it)."""
    items: list[Due] = []
    if not case.closed and case.deadline is not None:
        d = case.deadline
        if d.reminder_at and not d.reminder_sent and now >= d.reminder_at:
            items.append(Reminder(d.due_at, ["assignee", case.owner_agency.value]))
        items.extend(
            Escalation(level, d.due_at, d.source, escalation_recipients(level))
            for level in _levels_reached(policy, d.due_at, case.escalation_level, now)
        )
    for i, h in enumerate(case.handoffs):
        if h.state == HandoffState.requested:
            items.extend(
                HandoffEscalation(i, level, h.accept_by, handoff_escalation_recipients(h, level))
                for level in _levels_reached(policy, h.accept_by, h.escalation_level, now)
            )
    if not case.closed:
        items.extend(
            FollowUpDue(i, f.due_at, [case.owner_agency.value, "assignee"])
            for i, f in enumerate(case.follow_ups)
            if _follow_up_waiting(f) and now >= f.due_at
        )
    return items
