"""CaseWorkflow: one durable workflow per case, the only writer of case state.

- Every human action is an Update whose validator rejects stale (409), forbidden (403) and invalid
  (422) actions before anything is written to history.
- Handlers change state synchronously and queue an audit event; the main loop sends queued events,
  in order, to the oversight activity (append-only hash-chained log + case_summary projection), so
  an Update answers in milliseconds and the audit write is retried durably until it lands.
- Deadlines, reminders, escalations, handoff acceptance and follow-ups are durable timers derived
  from state (no polling): the loop sleeps until the next instant, or until an Update changes state.
- No personal data: ids and non-identifying facts only (shared/contract.py).

What lives where: the state machine (which decision is valid in which stage, what follows it) and the
case's state (`CaseData`, declared once) are in workflows/transitions.py; what is due when (deadlines,
reminders, escalations and who hears of them) in workflows/deadlines.py. Both are pure; this module applies
what they say and owns everything Temporal: the policy's local activity, the wake timer, the audit
outbox, the search attributes, continue-as-new and the patches that keep recorded histories replaying."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeUpdate
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from shared.access import (
        CaseAccessFacts,
        acts_as_stage_owner,
        can_act_on_case,
        can_read_section,
        can_respond_to_handoff,
    )
    from shared.contract import (
        APPLIED_UPDATE_IDS_KEPT,
        AddNote,
        Assign,
        CaseEvent,
        CaseFacts,
        CaseInput,
        CaseState,
        Claim,
        Command,
        ConsentPurpose,
        Decide,
        EndCase,
        Escalate,
        ExtendDeadline,
        Handoff,
        HandoffKind,
        HandoffState,
        IdentifyDecision,
        JurisdictionSpell,
        Notification,
        ProtectionRecord,
        RecordBatch,
        RecordConsent,
        RecordFollowUp,
        RecordProtection,
        RecordRescue,
        RecordService,
        Reopen,
        RequestHandoff,
        RescueDecision,
        RescueRecord,
        RespondHandoff,
        RevokeHandoff,
        StageOwnerCommand,
        StageRecord,
        consent_key,
    )
    from shared.domain import AgencyRole, CaseStatus, Outcome, Role, Stage
    from shared.policy import CasePolicy, PolicyRequest
    from shared.temporal import (
        ASSIGNEE,
        CASE_CATEGORY,
        CASE_STAGE,
        CASE_STATUS,
        DEADLINE_AT,
        ESCALATION_LEVEL,
        JURISDICTION,
        OWNER_AGENCY,
        PENDING_HANDOFF_TO,
    )
    from workflows import deadlines, transitions
    from workflows.transitions import CaseData, Closure, DecisionContext, Refusal

SYSTEM_USER = "system"
# Patch ids (workflow.patched): each guards a change in the commands this workflow issues, so histories
# recorded by earlier code replay unchanged (tests/replay).
TRUST_RULES = "trust-rules-issue-10"  # handlers re-check with the rules of issue 10 items 7 and 9
CARRY_UPDATE_IDS = "carry-applied-update-ids"  # continue-as-new carries the ids of applied Updates
# the wake-up timer is kept while the next wake instant is unchanged (it was cancelled and started again
# on every pass of the main loop: 2 history events per Update)
KEEP_WAKE_TIMER = "keep-wake-timer-issue-13"
# issue 18: a transfer to another province resolves the receiving province's policy (local activity) at
# acceptance; transferred_jurisdiction (end_case) is for a case leaving the country's system only
PROVINCE_TRANSFER = "province-transfer-issue-18"
# issue 15 item 3: protection measures recorded at any stage from receipt (Update record_protection)
PROTECTION_FROM_RECEIPT = "protection-from-receipt-issue-15"
# issue 15 item 4: a rescue recorded when it happens (Update record_rescue); identification then passes the
# rescue stage as decided by that rescue instead of asking for it again
RESCUE_WHEN_IT_HAPPENS = "rescue-when-it-happens-issue-15"
ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)  # unlimited attempts: the audit log must land


def _forbidden(msg: str) -> ApplicationError:
    return ApplicationError(msg, type="forbidden", non_retryable=True)


def _conflict(msg: str) -> ApplicationError:
    return ApplicationError(msg, type="conflict", non_retryable=True)


def _invalid(msg: str) -> ApplicationError:
    return ApplicationError(msg, type="invalid", non_retryable=True)


def _refuse(refusal: Refusal | None) -> None:
    """Fail the Update with the refusal a transitions.check_* returned, if any."""
    if refusal is not None:
        raise ApplicationError(refusal.message, type=refusal.kind, non_retryable=True)


def _could_act_before_issue_10(p: Any, facts: CaseAccessFacts) -> bool:
    """The rule handlers applied before issue 10 item 7 (a pending invitee could act): kept only so that
    histories recorded under it replay unchanged. New Updates never get this far (validators are strict)."""
    return can_act_on_case(p, facts) or bool(
        p.has(Role.caseworker)
        and p.covers_province(facts.province)
        and p.agency in facts.pending_invitees
    )


def _province_pair(h: Handoff) -> dict[str, Any]:
    """A handoff's provinces for its audit events (a transfer to another province only)."""
    return (
        {"from_province": h.from_province, "to_province": h.to_province}
        if h.crosses_province
        else {}
    )


@workflow.defn(name="CaseWorkflow")
class CaseWorkflow:
    @workflow.init
    def __init__(self, inp: CaseInput) -> None:
        self.facts: CaseFacts = inp.facts
        self._policy: CasePolicy | None = inp.policy  # None until run resolves it: see `policy`
        self.oversight_queue = inp.oversight_task_queue
        self.history_limit = inp.history_limit
        self.max_updates_per_run = inp.max_updates_per_run
        self._updates_this_run = 0
        now = workflow.now()
        self._carried = inp.carried is not None
        self.case: CaseData = (
            CaseData.carried(inp.carried, now)
            if inp.carried is not None
            else CaseData.opening(inp.facts, now)
        )
        self._pending_events: list[CaseEvent] = []
        self._pending_notifications: list[Notification] = []
        self._changed = False
        self._last_search_attributes: dict[str, Any] = {}
        self._wake_timer: asyncio.TimerHandle | None = (
            None  # the durable timer of the next wake instant
        )
        self._wake_at: datetime | None = None
        self._wake_fired = False
        # Updates applied by earlier runs (carried) and by this one: Temporal deduplicates an Update id
        # within a run only; a retry that reaches the next run must not apply twice.
        self._applied_update_ids: list[str] = list(inp.applied_update_ids)
        self._carried_update_ids: frozenset[str] = frozenset(inp.applied_update_ids)

    @property
    def policy(self) -> CasePolicy:
        """The case's policy: given in CaseInput (intake, continue-as-new) or resolved by the first step of
        `run`. Every handler waits for it (`_opened`); only a validator or the query may run before."""
        if self._policy is None:
            raise RuntimeError("the case's policy is not resolved yet")
        return self._policy

    # ---- main loop ------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: CaseInput) -> CaseState:
        if self._policy is None:
            self._policy = await self._resolve_policy(self.facts.province)
        if not self._carried:
            self._enter_stage(Stage.receive, self.facts.opened_at)
            self._record(
                "case_opened",
                self.facts.opened_by.user_id,
                self.facts.opened_by.agency,
                reason=None,
                request_id=self.facts.opened_by.request_id,
                data={
                    "channel": self.facts.channel.value,
                    "categories": self.facts.categories,
                    "owner_agency": self.case.owner_agency.value,
                },
            )
            if inp.initial_decision is not None:
                await self._apply_initial_decision(inp.initial_decision)
        while True:
            self._fire_due_timers()
            await self._flush()
            if self._finished():
                break
            if self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                await self._flush()
                applied = (
                    self._applied_update_ids[-APPLIED_UPDATE_IDS_KEPT:]
                    if workflow.patched(CARRY_UPDATE_IDS)
                    else []
                )
                workflow.continue_as_new(
                    CaseInput(
                        facts=self.facts,
                        carried=self._snapshot(),
                        policy=self.policy,
                        oversight_task_queue=self.oversight_queue,
                        history_limit=self.history_limit,
                        max_updates_per_run=self.max_updates_per_run,
                        applied_update_ids=applied,
                    )
                )
            await self._sleep_until(deadlines.next_wake(self.policy, self.case))
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._flush()
        await workflow.execute_activity(
            "export_case_history",
            args=[self.facts.case_id, workflow.info().run_id],
            task_queue=self.oversight_queue,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=ACTIVITY_RETRY,
        )
        return self._snapshot()

    async def _resolve_policy(self, province: str) -> CasePolicy:
        """The policy in force for this case in `province` (a local activity: the policy file is I/O)."""
        policy: CasePolicy = await workflow.execute_local_activity(
            "resolve_case_policy",
            PolicyRequest(
                province=province,
                categories=self.facts.categories,
                channel=self.facts.channel,
                opener=self.facts.opened_by.agency,
            ),
            result_type=CasePolicy,
            start_to_close_timeout=timedelta(seconds=10),
        )
        return policy

    async def _apply_initial_decision(self, cmd: Decide) -> None:
        """The receive decision taken at handover (CaseInput.initial_decision), applied in the first workflow
        task through the `decide` handler itself (same validation, same state change, same `stage_decided`
        event by the same actor), so a bulk-opened case reaches verification without an Update. Only runs
        started with a decision take this path: histories of earlier runs replay unchanged. A refused
        decision leaves the case in receive and is recorded."""
        decide: Any = self.decide  # the @workflow.update method is the plain coroutine function
        try:
            await decide(cmd)
        except ApplicationError as exc:
            self._record(
                "initial_decision_refused",
                cmd.actor.user_id,
                cmd.actor.agency,
                reason=exc.message,
                request_id=cmd.actor.request_id,
                data={"error_type": exc.type or "invalid"},
            )

    def _finished(self) -> bool:
        """The case is closed and its reopen window has passed."""
        end = deadlines.run_ends_at(self.policy, self.case)
        return end is not None and workflow.now() >= end

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self.history_limit
            or self._updates_this_run >= self.max_updates_per_run
        )

    async def _flush(self) -> None:
        """Send queued events and notifications, in order, to the oversight activity."""
        while self._pending_events or self._pending_notifications:
            batch = RecordBatch(
                events=list(self._pending_events), notifications=list(self._pending_notifications)
            )
            await workflow.execute_activity(
                "record_case_events",
                batch,
                task_queue=self.oversight_queue,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=ACTIVITY_RETRY,
            )
            sent_events = {e.event_id for e in batch.events}
            sent_notes = {n.notification_id for n in batch.notifications}
            self._pending_events = [
                e for e in self._pending_events if e.event_id not in sent_events
            ]
            self._pending_notifications = [
                n for n in self._pending_notifications if n.notification_id not in sent_notes
            ]

    # ---- timers ---------------------------------------------------------------------------
    async def _sleep_until(self, wake: datetime | None) -> None:
        """Wait until an Update changes state, events are queued, continue-as-new is due, or the wake
        instant passes. One durable timer per wake instant: it is kept across passes while the instant is
        unchanged and cancelled only when the instant moves (patch keep-wake-timer-issue-13). Runs recorded
        before the patch cancelled it on every wake-up and started it again on the next pass (the
        `wait_condition(timeout=...)` they used); the commands here are the same as that code's."""
        self._changed = False
        if self._wake_timer is not None and wake != self._wake_at:
            self._wake_timer.cancel()
            self._wake_timer = None
        if self._wake_timer is None and wake is not None:
            delay = max(wake - workflow.now(), timedelta(seconds=1))
            self._wake_at, self._wake_fired = wake, False
            self._wake_timer = asyncio.get_running_loop().call_later(
                delay.total_seconds(), self._woken
            )
        await workflow.wait_condition(
            lambda: (
                self._changed
                or bool(self._pending_events)
                or self._should_continue_as_new()
                or self._wake_fired
            )
        )
        if self._wake_fired:
            self._wake_timer, self._wake_fired = None, False
        elif self._wake_timer is not None and not workflow.patched(KEEP_WAKE_TIMER):
            self._wake_timer.cancel()  # as the code before the patch did on every wake-up
            self._wake_timer = None

    def _woken(self) -> None:
        self._wake_fired = True

    def _fire_due_timers(self) -> None:
        """Apply, in order, what is due now (deadlines.due): each changes the state, notifies and records."""
        for item in deadlines.due(self.policy, self.case, workflow.now()):
            kind, data = self._apply_due(item)
            self._notify(item.kind, item.level, item.recipients, due_at=item.due_at)
            self._record_system(kind, data)

    def _apply_due(self, item: deadlines.Due) -> tuple[str, dict[str, Any]]:
        """The state change of one due item; returns the kind and data of the event it records."""
        c = self.case
        match item:
            case deadlines.Reminder():
                if c.deadline is not None:
                    c.deadline = c.deadline.model_copy(update={"reminder_sent": True})
                return "deadline_reminder", {"due_at": item.due_at.isoformat()}
            case deadlines.Escalation():
                c.escalation_level = item.level
                return "deadline_escalated", {
                    "level": item.level,
                    "due_at": item.due_at.isoformat(),
                    "deadline_source": item.source,
                }
            case deadlines.HandoffEscalation():
                h = c.handoffs[item.index].model_copy(update={"escalation_level": item.level})
                c.handoffs[item.index] = h
                return "handoff_escalated", {
                    "handoff_id": h.handoff_id,
                    "level": item.level,
                    "to_agency": h.to_agency.value,
                    **_province_pair(h),
                }
            case deadlines.FollowUpDue():
                f = c.follow_ups[item.index]
                c.follow_ups[item.index] = f.model_copy(update={"notified": True})
                return "follow_up_due", {"follow_up_id": f.follow_up_id}

    def _record_system(self, kind: str, data: dict[str, Any]) -> None:
        self._touch()
        self._record(kind, SYSTEM_USER, None, data=data)

    # ---- state helpers --------------------------------------------------------------------
    def _touch(self) -> None:
        self.case.version += 1
        self.case.updated_at = workflow.now()
        self._changed = True
        self._upsert_search_attributes()

    def _enter_stage(self, stage: Stage, at: datetime) -> None:
        """Enter an open stage: its owner (from the policy) takes the case, the previous owner stays as a
        participant; its deadline starts; reintegration schedules its follow-ups."""
        c = self.case
        c.stage, c.assignee, c.escalation_level = stage, None, 0
        owner = self.policy.owners[stage]
        if owner != c.owner_agency:
            if c.owner_agency not in c.participants:
                c.participants.append(c.owner_agency)
            c.owner_agency = owner
        c.deadline = deadlines.deadline_for(self.policy, stage, at)
        c.stages.append(StageRecord(stage=stage, entered_at=at, owner_agency=c.owner_agency))
        if stage == Stage.reintegrate:
            c.follow_ups = deadlines.follow_ups_from(self.policy, at)

    def _close(self, closure: Closure) -> None:
        transitions.close(self.case, closure, workflow.now())

    def _record(
        self,
        kind: str,
        actor_id: str,
        agency: AgencyRole | None,
        *,
        reason: str | None = None,
        request_id: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self.case.last_event_seq += 1
        seq = self.case.last_event_seq
        snapshot = self._snapshot()
        self._pending_events.append(
            CaseEvent(
                event_id=f"{self.facts.case_id}:{seq}",
                case_id=self.facts.case_id,
                seq=seq,
                occurred_at=workflow.now(),
                kind=kind,
                actor_user_id=actor_id,
                actor_agency=agency,
                stage=self.case.stage,
                reason=reason,
                request_id=request_id,
                policy_version=self.policy.version,
                data=data or {},
                state=snapshot,
            )
        )

    def _record_action(
        self,
        kind: str,
        cmd: Command,
        *,
        reason: str | None = None,
        data: dict[str, Any] | None = None,
        override: dict[str, str] | None = None,
    ) -> None:
        self._updates_this_run += 1
        info = workflow.current_update_info()
        if info is not None:
            self._applied_update_ids.append(info.id)
            if len(self._applied_update_ids) > 2 * APPLIED_UPDATE_IDS_KEPT:
                del self._applied_update_ids[:-APPLIED_UPDATE_IDS_KEPT]
        if override is not None:
            data = {**(data or {}), "override": override}
        self._touch()
        self._record(
            kind,
            cmd.actor.user_id,
            cmd.actor.agency,
            reason=reason,
            request_id=cmd.actor.request_id,
            data=data,
        )

    def _notify(
        self, kind: str, level: int, recipients: list[str], due_at: datetime | None = None
    ) -> None:
        self._pending_notifications.append(
            Notification(
                notification_id=f"{self.facts.case_id}:n{self.case.last_event_seq + 1}:{kind}:{level}",
                case_id=self.facts.case_id,
                kind=kind,
                level=level,
                recipients=recipients,
                stage=self.case.stage,
                due_at=due_at,
                created_at=workflow.now(),
            )
        )

    def _upsert_search_attributes(self) -> None:
        c = self.case
        values: dict[str, Any] = {
            "stage": c.stage.value,
            "owner": c.owner_agency.value,
            "province": c.province,
            "deadline": c.deadline.due_at if c.deadline else None,
            "level": c.escalation_level,
            "categories": self.facts.categories,
            "status": c.status.value,
            "pending": sorted(
                {h.to_agency.value for h in c.handoffs if h.state == HandoffState.requested}
            ),
            "assignee": c.assignee,
        }
        if values == self._last_search_attributes:
            return
        self._last_search_attributes = values
        updates: list[SearchAttributeUpdate[Any]] = [
            CASE_STAGE.value_set(values["stage"]),
            OWNER_AGENCY.value_set(values["owner"]),
            JURISDICTION.value_set(values["province"]),
            ESCALATION_LEVEL.value_set(values["level"]),
            CASE_CATEGORY.value_set(values["categories"]),
            CASE_STATUS.value_set(values["status"]),
            PENDING_HANDOFF_TO.value_set(values["pending"])
            if values["pending"]
            else PENDING_HANDOFF_TO.value_unset(),
            DEADLINE_AT.value_set(values["deadline"])
            if values["deadline"]
            else DEADLINE_AT.value_unset(),
            ASSIGNEE.value_set(values["assignee"])
            if values["assignee"]
            else ASSIGNEE.value_unset(),
        ]
        workflow.upsert_search_attributes(updates)

    def _snapshot(self) -> CaseState:
        return self.case.snapshot(
            self.facts, self._policy.version if self._policy is not None else "pending"
        )

    # ---- validation shared by validators and handlers -------------------------------------
    def _strict(self) -> bool:
        """Whether the rules of issue 10 (items 7 and 9) apply. Always in a validator (validators are not
        re-run on replay); in a handler only for Updates applied by this code (patched), so a history
        recorded under the earlier rules replays unchanged."""
        return workflow.unsafe.is_read_only() or workflow.patched(TRUST_RULES)

    def _check(
        self,
        cmd: Command,
        *,
        supervisor: bool = False,
        stage_owner: bool = False,
        allow_closed: bool = False,
        answering: Handoff | None = None,
    ) -> None:
        a = cmd.actor
        strict = self._strict()
        facts = self._snapshot().access_facts()
        if answering is not None and strict:
            # the invitee is not a participant yet: it may answer this handoff, and nothing else
            if not can_respond_to_handoff(
                a, facts, answering.to_agency, answering.to_province or self.case.province
            ):
                raise _forbidden(
                    f"only {answering.to_agency.value} in province "
                    f"{answering.to_province or self.case.province} answers handoff {answering.handoff_id}"
                )
        elif not (can_act_on_case(a, facts) if strict else _could_act_before_issue_10(a, facts)):
            if strict and (
                a.agency in facts.pending_invitees
                or any(
                    a.agency == ag and a.covers_province(pr) for pr, ag in facts.invited_elsewhere
                )
            ):
                raise _forbidden(
                    f"agency {a.agency.value} was asked to take part in this case but has not "
                    "accepted the handoff yet; it may only accept or reject it"
                )
            if strict and any(a.province == f.province for f in facts.former):
                raise _forbidden(
                    f"the case was transferred from province {a.province} to province "
                    f"{self.case.province}: province {a.province} reads what it did, and no longer acts"
                )
            raise _forbidden(
                f"agency {a.agency.value} in province {a.province} may not act on this case"
            )
        if supervisor and not a.has(Role.supervisor):
            raise _forbidden("this action needs a supervisor")
        if not allow_closed and self.case.closed:
            raise _conflict(
                f"the case is closed ({self.case.outcome.value if self.case.outcome else 'closed'})"
            )
        if stage_owner and not acts_as_stage_owner(a, self.case.owner_agency):
            if not a.has(Role.supervisor):
                raise _forbidden(
                    f"stage {self.case.stage.value} is owned by {self.case.owner_agency.value}, not {a.agency.value}"
                )
            if strict and not (isinstance(cmd, StageOwnerCommand) and cmd.override_reason):
                raise _forbidden(
                    f"stage {self.case.stage.value} is owned by {self.case.owner_agency.value}: a supervisor of "
                    f"{a.agency.value} acts on it only as an override, with override_reason "
                    "(recorded in the audit log)"
                )
        # last: who may act is decided before anything about the case (its version) is told
        if cmd.expected_version is not None and cmd.expected_version != self.case.version:
            raise ApplicationError(
                f"stale: the case is at version {self.case.version}, the request expected {cmd.expected_version}",
                type="stale",
                non_retryable=True,
            )

    def _leaving_rules(self) -> bool:
        """Whether transferred_jurisdiction follows issue 18 (a destination country, no Vietnamese province):
        always in a validator; in a handler only for Updates applied by this code (patched)."""
        return workflow.unsafe.is_read_only() or workflow.patched(PROVINCE_TRANSFER)

    def _override(self, cmd: StageOwnerCommand) -> dict[str, str] | None:
        """The override a stage-owner command makes (a supervisor acting on another agency's stage), as the
        audit event records it; call it after validation and before the state changes."""
        if cmd.override_reason and not acts_as_stage_owner(cmd.actor, self.case.owner_agency):
            return {
                "by_agency": cmd.actor.agency.value,
                "owner_agency": self.case.owner_agency.value,
                "stage": self.case.stage.value,
                "reason": cmd.override_reason,
            }
        return None

    def _already_applied(self) -> bool:
        """This Update's id was applied by an earlier run (a client retry after a continue-as-new): answer
        with the current state and apply nothing. Within a run Temporal itself answers a known id."""
        info = workflow.current_update_info()
        return info is not None and info.id in self._carried_update_ids

    # ---- Updates ---------------------------------------------------------------------------
    async def _opened(self) -> None:
        """An Update that arrives right after the start waits for the policy (resolved by the first
        workflow task's local activity) instead of being refused; no history when already resolved."""
        await workflow.wait_condition(lambda: self._policy is not None)

    @workflow.query
    def state(self) -> CaseState:
        return self._snapshot()

    @workflow.update
    async def claim(self, cmd: Claim) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_claim(cmd)
        override = self._override(cmd)
        self.case.assignee = cmd.actor.user_id
        self._record_action(
            "stage_claimed", cmd, data={"assignee": cmd.actor.user_id}, override=override
        )
        return self._snapshot()

    @claim.validator
    def _validate_claim(self, cmd: Claim) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        if self.case.assignee and self.case.assignee != cmd.actor.user_id:
            raise _conflict(
                f"stage {self.case.stage.value} is already claimed; a supervisor can reassign it"
            )

    @workflow.update
    async def assign(self, cmd: Assign) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_assign(cmd)
        override = self._override(cmd)
        self.case.assignee = cmd.assignee_user_id
        self._record_action(
            "stage_assigned", cmd, data={"assignee": cmd.assignee_user_id}, override=override
        )
        return self._snapshot()

    @assign.validator
    def _validate_assign(self, cmd: Assign) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        if not cmd.actor.has(Role.supervisor) and cmd.assignee_user_id != cmd.actor.user_id:
            raise _forbidden("only a supervisor assigns a stage to someone else")

    @workflow.update
    async def decide(self, cmd: Decide) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_decide(cmd)
        override = self._override(cmd)
        d = cmd.decision
        now = workflow.now()
        # only a case with a rescue recorded before identification asks for the patch (none recorded earlier)
        rescued = (
            transitions.rescued_earlier(self.case)
            if isinstance(d, IdentifyDecision)
            and self.case.rescues
            and workflow.patched(RESCUE_WHEN_IT_HAPPENS)
            else None
        )
        t = transitions.decide(
            d,
            DecisionContext(
                already_safe=self.facts.already_safe,
                reflection=self.policy.reflection_period,
                now=now,
                rescued=rescued,
            ),
        )
        c = self.case
        if t.trafficking_status is not None:
            c.trafficking_status = t.trafficking_status
        if t.reflection_until is not None:
            c.reflection_until = t.reflection_until
        if t.finish:
            transitions.finish_stage(c, cmd.actor.user_id, d, now, skipped=t.skipped)
        for passed in t.enter[:-1]:  # entered and left at once, recorded as skipped by the system
            self._enter_stage(passed, now)
            r = t.rescue_done
            if passed == Stage.rescue and r is not None:  # decided by the rescue recorded earlier
                rescue = RescueDecision(
                    needed=True, operation_ref=r.operation_ref, outcome="rescued"
                )
                transitions.finish_stage(c, r.recorded_by, rescue, now)
            else:
                transitions.finish_stage(c, SYSTEM_USER, None, now, skipped=True)
        if t.enter:
            self._enter_stage(t.enter[-1], now)
        if t.close is not None:
            self._close(t.close)
        data: dict[str, Any] = {"decision": d.model_dump(mode="json"), **t.data}
        self._record_action(
            "stage_decided", cmd, reason=cmd.justification, data=data, override=override
        )
        return self._snapshot()

    @decide.validator
    def _validate_decide(self, cmd: Decide) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        _refuse(transitions.check_decision(self.case, cmd.decision, workflow.now()))

    @workflow.update
    async def add_note(self, cmd: AddNote) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_add_note(cmd)
        self._record_action(
            "note_added", cmd, data={"section": cmd.section.value, "note_id": cmd.note_id}
        )
        return self._snapshot()

    @add_note.validator
    def _validate_add_note(self, cmd: AddNote) -> None:
        if self._already_applied():
            return
        self._check(cmd, allow_closed=True)
        if not can_read_section(cmd.actor, cmd.section):
            raise _forbidden(
                f"agency {cmd.actor.agency.value} may not write to section {cmd.section.value}"
            )

    @workflow.update
    async def record_protection(self, cmd: RecordProtection) -> CaseState:
        """Protection measures decided by the police at any open stage (issue 15 item 3); the stage, its
        owner and its deadline stay as they are."""
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_record_protection(cmd)
        workflow.patched(PROTECTION_FROM_RECEIPT)  # marks the histories that carry this Update
        record = ProtectionRecord(
            measures=list(cmd.measures),
            decided_at=workflow.now(),
            decided_by=cmd.actor.user_id,
            agency=cmd.actor.agency,
            stage=self.case.stage,
        )
        self.case.protections.append(record)
        self._record_action(
            "protection_recorded",
            cmd,
            reason=cmd.justification,
            data={"measures": record.measures, "at_stage": record.stage.value},
        )
        return self._snapshot()

    @record_protection.validator
    def _validate_record_protection(self, cmd: RecordProtection) -> None:
        if self._already_applied():
            return
        self._check(cmd)
        _refuse(transitions.check_protection(self.case, cmd))

    @workflow.update
    async def record_rescue(self, cmd: RecordRescue) -> CaseState:
        """A rescue operation's outcome recorded when it happens, outside the rescue stage (issue 15
        item 4): the case keeps its stage (identification is not skipped); a `rescued` outcome decides
        the rescue stage when identification leads there."""
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_record_rescue(cmd)
        workflow.patched(RESCUE_WHEN_IT_HAPPENS)  # marks the histories that carry this Update
        record = RescueRecord(
            operation_ref=cmd.operation_ref,
            outcome=cmd.outcome,
            recorded_at=workflow.now(),
            recorded_by=cmd.actor.user_id,
            agency=cmd.actor.agency,
            stage=self.case.stage,
        )
        self.case.rescues.append(record)
        self._record_action(
            "rescue_recorded",
            cmd,
            reason=cmd.justification,
            data={
                "operation_ref": cmd.operation_ref,
                "outcome": cmd.outcome,
                "at_stage": record.stage.value,
            },
        )
        return self._snapshot()

    @record_rescue.validator
    def _validate_record_rescue(self, cmd: RecordRescue) -> None:
        if self._already_applied():
            return
        self._check(cmd)
        _refuse(transitions.check_rescue_record(self.case, cmd))

    @workflow.update
    async def record_consent(self, cmd: RecordConsent) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_record_consent(cmd)
        key = consent_key(cmd.purpose.value, cmd.agency, cmd.province)
        self.case.consents[key] = cmd.granted
        data: dict[str, Any] = {"purpose": key, "granted": cmd.granted}
        if not cmd.granted and cmd.purpose == ConsentPurpose.data_sharing:
            stopped = []
            for i, h in enumerate(self.case.handoffs):
                if (
                    h.state == HandoffState.requested
                    and not h.consent_overridden
                    and (cmd.agency is None or h.to_agency == cmd.agency)
                    and (cmd.province is None or h.to_province == cmd.province)
                ):
                    self.case.handoffs[i] = h.model_copy(
                        update={
                            "state": HandoffState.revoked,
                            "responded_at": workflow.now(),
                            "reason": "data-sharing consent withdrawn",
                        }
                    )
                    stopped.append(h.handoff_id)
            data["handoffs_stopped"] = stopped
        self._record_action("consent_recorded", cmd, data=data)
        return self._snapshot()

    @record_consent.validator
    def _validate_record_consent(self, cmd: RecordConsent) -> None:
        if self._already_applied():
            return
        self._check(cmd)
        _refuse(transitions.check_consent(cmd))

    @workflow.update
    async def request_handoff(self, cmd: RequestHandoff) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_request_handoff(cmd)
        override = self._override(cmd)
        now = workflow.now()
        elsewhere = cmd.to_province is not None and cmd.to_province != self.case.province
        handoff = Handoff(
            handoff_id=f"h{len(self.case.handoffs) + 1}",
            kind=cmd.kind,
            from_agency=self.case.owner_agency,
            to_agency=cmd.to_agency,
            state=HandoffState.requested,
            requested_at=now,
            requested_by=cmd.actor.user_id,
            accept_by=deadlines.handoff_accept_by(self.policy, now),
            reason=cmd.reason,
            consent_overridden=cmd.consent_override_reason is not None,
            **(
                {"from_province": self.case.province, "to_province": cmd.to_province}
                if elsewhere
                else {}
            ),
        )
        self.case.handoffs.append(handoff)
        if elsewhere:  # both provinces: the receiving agency and its supervisor, the sending agency's supervisor
            recipients = [
                f"{cmd.to_agency.value}@{cmd.to_province}",
                f"supervisor@{cmd.to_province}",
                f"supervisor@{self.case.province}",
            ]
        else:
            recipients = [cmd.to_agency.value]
        self._notify("handoff_requested", 0, recipients, due_at=handoff.accept_by)
        self._record_action(
            "handoff_requested",
            cmd,
            reason=cmd.reason,
            data={
                "handoff_id": handoff.handoff_id,
                "kind": cmd.kind.value,
                "to_agency": cmd.to_agency.value,
                "accept_by": handoff.accept_by.isoformat(),
                "consent_override_reason": cmd.consent_override_reason,
                **(
                    {"from_agency": self.case.owner_agency.value, **_province_pair(handoff)}
                    if elsewhere
                    else {}
                ),
            },
            override=override,
        )
        return self._snapshot()

    @request_handoff.validator
    def _validate_request_handoff(self, cmd: RequestHandoff) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        _refuse(transitions.check_handoff_request(self.case, cmd))

    def _find_handoff(self, handoff_id: str) -> tuple[int, Handoff]:
        for i, h in enumerate(self.case.handoffs):
            if h.handoff_id == handoff_id:
                return i, h
        raise ApplicationError(
            f"no handoff {handoff_id} on this case", type="not_found", non_retryable=True
        )

    @workflow.update
    async def respond_handoff(self, cmd: RespondHandoff) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_respond_handoff(cmd)
        i, h = self._find_handoff(cmd.handoff_id)
        if cmd.accept and h.crosses_province:
            await self._accept_transfer(cmd)
            return self._snapshot()
        now = workflow.now()
        if h.crosses_province:
            self.case.handoffs[i] = h.model_copy(
                update={
                    "state": HandoffState.rejected,
                    "responded_at": now,
                    "reason": cmd.reason,
                    "responded_by": cmd.actor.user_id,
                }
            )
            self._notify(
                "handoff_rejected",
                0,
                [f"{h.from_agency.value}@{h.from_province}", f"supervisor@{h.from_province}"],
            )
            self._record_action(
                "handoff_rejected",
                cmd,
                reason=cmd.reason,
                data={
                    "handoff_id": h.handoff_id,
                    "kind": h.kind.value,
                    "to_agency": h.to_agency.value,
                    "from_agency": h.from_agency.value,
                    **_province_pair(h),
                },
            )
            return self._snapshot()
        if cmd.accept:
            self.case.handoffs[i] = h.model_copy(
                update={"state": HandoffState.accepted, "responded_at": now}
            )
            if h.kind == HandoffKind.transfer:
                if self.case.owner_agency not in self.case.participants:
                    self.case.participants.append(self.case.owner_agency)
                self.case.owner_agency = h.to_agency
                self.case.assignee = None
                if self.case.stages:
                    self.case.stages[-1] = self.case.stages[-1].model_copy(
                        update={"owner_agency": h.to_agency}
                    )
            elif h.to_agency not in self.case.participants:
                self.case.participants.append(h.to_agency)
            kind = "handoff_accepted"
        else:
            self.case.handoffs[i] = h.model_copy(
                update={"state": HandoffState.rejected, "responded_at": now, "reason": cmd.reason}
            )
            kind = "handoff_rejected"
        self._record_action(
            kind,
            cmd,
            reason=cmd.reason,
            data={"handoff_id": h.handoff_id, "kind": h.kind.value, "to_agency": h.to_agency.value},
        )
        return self._snapshot()

    async def _accept_transfer(self, cmd: RespondHandoff) -> None:
        """A transfer to another province accepted (issue 18): the same case continues there. Jurisdiction,
        owner (the accepting agency) and policy move to the receiving province; the assignee is cleared; the
        current stage's deadline is recomputed under the receiving province's policy from this moment (its
        escalation starts again at 0). The sending province's agencies leave the participants and keep reading
        what they did up to now (`jurisdictions`, CaseAccessFacts.former); the other handoffs still waiting
        in the sending province are withdrawn."""
        _, h = self._find_handoff(cmd.handoff_id)
        to_province = h.to_province
        assert to_province is not None and h.from_province is not None
        if workflow.patched(PROVINCE_TRANSFER):
            policy = await self._resolve_policy(to_province)
        else:  # unreachable for recorded histories (no transfer between provinces before this code)
            policy = self.policy
        # the policy was read while other Updates could run: answer only a transfer still waiting
        i, h = self._find_handoff(cmd.handoff_id)
        if h.state != HandoffState.requested or self.case.province != h.from_province:
            raise _conflict(f"handoff {h.handoff_id} is {h.state.value}, not waiting for an answer")
        now = workflow.now()
        previous = {
            "from_policy_version": self.policy.version,
            "previous_owner": self.case.owner_agency.value,
            "previous_assignee": self.case.assignee,
            "previous_due_at": self.case.deadline.due_at.isoformat()
            if self.case.deadline
            else None,
            "previous_escalation_level": self.case.escalation_level,
            "was_overdue": bool(self.case.deadline and now > self.case.deadline.due_at),
        }
        took_part = sorted({self.case.owner_agency, *self.case.participants}, key=lambda a: a.value)
        self.case.jurisdictions[-1] = self.case.jurisdictions[-1].model_copy(
            update={"until": now, "agencies": took_part}
        )
        self.case.jurisdictions.append(
            JurisdictionSpell(province=to_province, since=now, arrived_by=h.handoff_id)
        )
        self.case.handoffs[i] = h.model_copy(
            update={
                "state": HandoffState.accepted,
                "responded_at": now,
                "responded_by": cmd.actor.user_id,
            }
        )
        withdrawn = []
        for j, other in enumerate(self.case.handoffs):
            if other.state == HandoffState.requested:
                self.case.handoffs[j] = other.model_copy(
                    update={
                        "state": HandoffState.revoked,
                        "responded_at": now,
                        "reason": f"case transferred to province {to_province}",
                    }
                )
                withdrawn.append(other.handoff_id)
            elif other.state == HandoffState.accepted and other.kind == HandoffKind.referral:
                self.case.handoffs[j] = other.model_copy(update={"state": HandoffState.done})
        self.case.province = to_province
        self.case.owner_agency = h.to_agency
        self.case.participants = []
        self.case.assignee = None
        self._policy = policy
        if self.case.stages and self.case.stage != Stage.closed:
            self.case.stages[-1] = self.case.stages[-1].model_copy(
                update={"owner_agency": h.to_agency}
            )
        if self.case.deadline is not None and self.case.stage != Stage.closed:
            self.case.deadline = deadlines.deadline_for(policy, self.case.stage, now)
            self.case.escalation_level = 0
        self._notify(
            "handoff_accepted",
            0,
            [
                f"{h.from_agency.value}@{h.from_province}",
                f"supervisor@{h.from_province}",
                f"supervisor@{to_province}",
            ],
            due_at=self.case.deadline.due_at if self.case.deadline else None,
        )
        self._record_action(
            "handoff_accepted",
            cmd,
            reason=cmd.reason,
            data={
                "handoff_id": h.handoff_id,
                "kind": h.kind.value,
                "jurisdiction_transfer": True,
                "from_agency": h.from_agency.value,
                "to_agency": h.to_agency.value,
                **_province_pair(h),
                "requested_by": h.requested_by,
                "requested_at": h.requested_at.isoformat(),
                "accepted_by": cmd.actor.user_id,
                "policy_version": policy.version,
                "due_at": self.case.deadline.due_at.isoformat() if self.case.deadline else None,
                "deadline_source": self.case.deadline.source if self.case.deadline else None,
                "handoffs_withdrawn": withdrawn,
                **previous,
            },
        )

    @respond_handoff.validator
    def _validate_respond_handoff(self, cmd: RespondHandoff) -> None:
        if self._already_applied():
            return
        _, h = self._find_handoff(cmd.handoff_id)
        self._check(cmd, answering=h)
        if h.state != HandoffState.requested:
            raise _conflict(f"handoff {h.handoff_id} is {h.state.value}, not waiting for an answer")
        if cmd.actor.agency != h.to_agency:
            raise _forbidden(f"only {h.to_agency.value} answers this handoff")
        if not cmd.accept and not cmd.reason:
            raise _invalid("rejecting a handoff needs a reason")

    @workflow.update
    async def revoke_handoff(self, cmd: RevokeHandoff) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_revoke_handoff(cmd)
        i, h = self._find_handoff(cmd.handoff_id)
        self.case.handoffs[i] = h.model_copy(
            update={
                "state": HandoffState.revoked,
                "responded_at": workflow.now(),
                "reason": cmd.reason,
            }
        )
        if (
            h.state == HandoffState.accepted
            and h.kind == HandoffKind.referral
            and h.to_agency in self.case.participants
        ):
            self.case.participants.remove(h.to_agency)
        self._record_action(
            "handoff_revoked",
            cmd,
            reason=cmd.reason,
            data={"handoff_id": h.handoff_id, **_province_pair(h)},
        )
        return self._snapshot()

    @revoke_handoff.validator
    def _validate_revoke_handoff(self, cmd: RevokeHandoff) -> None:
        if self._already_applied():
            return
        self._check(cmd)
        _, h = self._find_handoff(cmd.handoff_id)
        revocable = h.state == HandoffState.requested or (
            h.state == HandoffState.accepted and h.kind == HandoffKind.referral
        )
        if not revocable:
            raise _conflict(f"handoff {h.handoff_id} is {h.state.value} and cannot be revoked")
        if cmd.actor.agency != h.from_agency and not cmd.actor.has(Role.supervisor):
            raise _forbidden(f"only {h.from_agency.value} or a supervisor revokes this handoff")

    @workflow.update
    async def extend_deadline(self, cmd: ExtendDeadline) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_extend_deadline(cmd)
        now = workflow.now()
        if cmd.handoff_id:
            i, h = self._find_handoff(cmd.handoff_id)
            new_due = h.accept_by + cmd.extend_by
            self.case.handoffs[i] = h.model_copy(
                update={
                    "accept_by": new_due,
                    "escalation_level": 0 if new_due > now else h.escalation_level,
                }
            )
            data = {"handoff_id": h.handoff_id, "accept_by": new_due.isoformat()}
        else:
            assert self.case.deadline is not None  # the validator refuses a case without one
            d = self.case.deadline
            self.case.deadline = deadlines.extended(self.policy, d, cmd.extend_by, now)
            new_due = self.case.deadline.due_at
            if new_due > now:
                self.case.escalation_level = 0
            data = {
                "due_at": new_due.isoformat(),
                "previous_due_at": d.due_at.isoformat(),
                "extend_by": str(cmd.extend_by),
            }
        self._record_action("deadline_extended", cmd, reason=cmd.reason, data=data)
        return self._snapshot()

    @extend_deadline.validator
    def _validate_extend_deadline(self, cmd: ExtendDeadline) -> None:
        if self._already_applied():
            return
        self._check(cmd, supervisor=True)
        if cmd.handoff_id:
            _, h = self._find_handoff(cmd.handoff_id)
            if h.state != HandoffState.requested:
                raise _conflict(
                    f"handoff {h.handoff_id} is {h.state.value}; only a waiting handoff has a deadline"
                )
        elif self.case.deadline is None:
            raise _conflict("the case has no running deadline")

    @workflow.update
    async def escalate(self, cmd: Escalate) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_escalate(cmd)
        self.case.escalation_level += 1
        self._notify(
            "escalation",
            self.case.escalation_level,
            deadlines.escalation_recipients(self.case.escalation_level),
            due_at=self.case.deadline.due_at if self.case.deadline else None,
        )
        self._record_action(
            "escalated_by_supervisor",
            cmd,
            reason=cmd.reason,
            data={"level": self.case.escalation_level},
        )
        return self._snapshot()

    @escalate.validator
    def _validate_escalate(self, cmd: Escalate) -> None:
        if self._already_applied():
            return
        self._check(cmd, supervisor=True)
        # validated before the policy is resolved only for a case just opened (level 0): nothing to refuse
        if self._policy is not None:
            _refuse(transitions.check_escalate(self.case, self._policy.escalation.top_level))

    @workflow.update
    async def reopen(self, cmd: Reopen) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_reopen(cmd)
        previous = self.case.outcome
        self.case.status = CaseStatus.Active
        self.case.outcome = None
        self.case.closed_at = None
        self._enter_stage(cmd.to_stage, workflow.now())
        self._record_action(
            "case_reopened",
            cmd,
            reason=cmd.reason,
            data={
                "to_stage": cmd.to_stage.value,
                "previous_outcome": previous.value if previous else None,
            },
        )
        return self._snapshot()

    @reopen.validator
    def _validate_reopen(self, cmd: Reopen) -> None:
        if self._already_applied():
            return
        self._check(cmd, supervisor=True, allow_closed=True)
        _refuse(transitions.check_reopen(self.case, cmd.to_stage))

    @workflow.update
    async def end_case(self, cmd: EndCase) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_end_case(cmd)
        override = self._override(cmd)
        transitions.finish_stage(self.case, cmd.actor.user_id, None, workflow.now())
        data: dict[str, Any] = {"outcome": cmd.outcome.value}
        if cmd.outcome == Outcome.transferred_jurisdiction:
            data["to_province"] = cmd.to_province
            if cmd.to_country is not None:
                data["to_country"] = cmd.to_country
        self._close(transitions.end_case_closure(cmd.outcome))
        self._record_action("case_ended", cmd, reason=cmd.reason, data=data, override=override)
        return self._snapshot()

    @end_case.validator
    def _validate_end_case(self, cmd: EndCase) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        _refuse(
            transitions.check_end_case(
                self.case,
                cmd,
                workflow.now(),
                # only a transfer out asks which rules apply (the patch is checked for it alone)
                leaving_rules=cmd.outcome == Outcome.transferred_jurisdiction
                and self._leaving_rules(),
            )
        )

    @workflow.update
    async def record_follow_up(self, cmd: RecordFollowUp) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_record_follow_up(cmd)
        override = self._override(cmd)
        for i, f in enumerate(self.case.follow_ups):
            if f.follow_up_id == cmd.follow_up_id:
                self.case.follow_ups[i] = f.model_copy(
                    update={"outcome": cmd.outcome, "recorded_at": workflow.now()}
                )
        self._record_action(
            "follow_up_recorded",
            cmd,
            data={"follow_up_id": cmd.follow_up_id, "outcome": cmd.outcome, "note_id": cmd.note_id},
            override=override,
        )
        return self._snapshot()

    @record_follow_up.validator
    def _validate_record_follow_up(self, cmd: RecordFollowUp) -> None:
        if self._already_applied():
            return
        self._check(cmd, stage_owner=True)
        _refuse(transitions.check_follow_up(self.case, cmd.follow_up_id))

    @workflow.update
    async def record_service(self, cmd: RecordService) -> CaseState:
        await self._opened()
        if self._already_applied():
            return self._snapshot()
        self._validate_record_service(cmd)
        self.case.services_delivered += 1
        self._record_action(
            "service_delivered",
            cmd,
            data={"service_id": cmd.service_id, "service_type": cmd.service_type},
        )
        return self._snapshot()

    @record_service.validator
    def _validate_record_service(self, cmd: RecordService) -> None:
        if self._already_applied():
            return
        self._check(cmd)
        _refuse(transitions.check_service(self.case))


__all__ = ["CaseWorkflow"]
