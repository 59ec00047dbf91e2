"""Every path of the case lifecycle, on the time-skipping server with the real audit log."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from services.oversight.audit_log import readable_event
from shared.contract import (
    Assign,
    Claim,
    Classification,
    ConsentPurpose,
    Decide,
    EndCase,
    Escalate,
    ExtendDeadline,
    HandoffKind,
    HandoffState,
    ReceiveDecision,
    RecordConsent,
    RecordService,
    Reopen,
    RequestHandoff,
    RespondHandoff,
    RevokeHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import (
    AgeBand,
    AgencyRole,
    CaseStatus,
    Channel,
    Outcome,
    Role,
    Stage,
    TraffickingStatus,
)
from tests.conftest import new_case_id
from tests.helpers import workflow_paths as paths
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

SP = AgencyRole.social_protection


async def _rejection(coro: object) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro  # type: ignore[misc]
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def _accepted_updates(handle) -> int:  # type: ignore[no-untyped-def]
    from temporalio.api.enums.v1 import EventType

    history = await handle.fetch_history()
    return sum(
        1
        for e in history.events
        if e.event_type
        in (
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
            EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_REJECTED,
        )
    )


async def _open(h, env: WorkflowEnvironment, **kw):  # type: ignore[no-untyped-def]
    cid = new_case_id()
    handle = await h.open(facts(cid, now=await env.get_current_time(), **kw))
    return cid, handle


async def _consent(handle, agency: AgencyRole):  # type: ignore[no-untyped-def]
    state = await handle.query(CaseWorkflow.state)
    return await handle.execute_update(
        CaseWorkflow.record_consent,
        RecordConsent(
            actor=actor(state.owner_agency),
            purpose=ConsentPurpose.data_sharing,
            agency=agency,
            granted=True,
        ),
    )


async def test_happy_path_to_closure_records_every_step(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env, already_safe=False)
        s = await paths.classify(handle)
        assert (s.stage, s.owner_agency) == (Stage.verify, SP)
        s = await paths.verify(handle)
        assert (s.stage, s.owner_agency) == (Stage.identify, AgencyRole.police)
        assert s.reflection_until is not None
        s = await paths.identify(handle)
        assert (
            s.stage == Stage.rescue
            and s.trafficking_status == TraffickingStatus.ActualVictimOfTrafficking
        )
        s = await paths.rescue(handle)
        assert (s.stage, s.owner_agency) == (Stage.protect, SP)
        s = await paths.protect(handle)
        assert s.stage == Stage.reintegrate
        assert [f.follow_up_id for f in s.follow_ups] == ["fu-3m", "fu-6m", "fu-12m"]
        # closing before follow-ups are done is refused
        err = await _rejection(paths.close(handle))
        assert err.type == "conflict" and "follow-ups still pending" in err.message
        await paths.follow_ups_done(handle)
        await ts_env.sleep(timedelta(days=31))  # past the reflection period
        s = await paths.close(handle)
        assert (s.stage, s.status, s.outcome) == (
            Stage.closed,
            CaseStatus.Closed,
            Outcome.reintegrated,
        )
        assert [r.stage for r in s.stages] == [
            Stage.receive,
            Stage.verify,
            Stage.identify,
            Stage.rescue,
            Stage.protect,
            Stage.reintegrate,
        ]
        events = await h.events(cid, s.last_event_seq)
        kinds = [e["kind"] for e in events]
        assert (
            kinds[0] == "case_opened" and kinds.count("stage_decided") == 6
        )  # the refused close wrote nothing
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        summary = await db_pool.fetchrow(
            "SELECT * FROM oversight.case_summary WHERE case_id = $1", cid
        )
        assert summary["stage"] == "closed" and summary["outcome"] == "reintegrated"


async def test_rescue_skipped_when_already_safe(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env, already_safe=True)
        s = await paths.to_stage(handle, Stage.identify)
        s = await paths.identify(handle)
        assert s.stage == Stage.protect
        rescue = [r for r in s.stages if r.stage == Stage.rescue]
        assert len(rescue) == 1 and rescue[0].skipped


@pytest.mark.parametrize(
    ("outcome_path", "expected"),
    [
        ("unfounded", (Outcome.unfounded, CaseStatus.Closed)),
        ("not_a_victim", (Outcome.not_a_victim, CaseStatus.ClosedReferred)),
        ("not_relevant", (Outcome.not_relevant, CaseStatus.Closed)),
        ("other_crime", (Outcome.not_relevant, CaseStatus.ClosedReferred)),
        ("consent_withdrawn", (Outcome.consent_withdrawn, CaseStatus.Closed)),
        ("deceased", (Outcome.deceased, CaseStatus.Closed)),
        ("transferred", (Outcome.transferred_jurisdiction, CaseStatus.ClosedReferred)),
        ("lost_contact", (Outcome.lost_contact, CaseStatus.Closed)),
    ],
)
async def test_early_outcomes(ts_env, db_pool, ring, task_queue, outcome_path, expected):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        if outcome_path in ("not_relevant", "other_crime"):
            cls = (
                Classification.not_relevant
                if outcome_path == "not_relevant"
                else Classification.other_crime
            )
            s = await paths.decide(
                handle, ReceiveDecision(classification=cls, channel=Channel.hotline_111)
            )
        elif outcome_path == "unfounded":
            await paths.classify(handle)
            s = await paths.decide(handle, VerifyDecision(result=VerifyResult.unfounded))
        elif outcome_path == "not_a_victim":
            await paths.to_stage(handle, Stage.identify)
            from shared.contract import EvidenceKind, EvidenceRef, IdentifyDecision
            from shared.domain import DecisionMakingOrg

            s = await paths.decide(
                handle,
                IdentifyDecision(
                    status=TraffickingStatus.NotAVictimOfTrafficking,
                    deciding_org=DecisionMakingOrg.Police,
                    evidence=[
                        EvidenceRef(evidence_id="ev-9", kind=EvidenceKind.statement_of_witness)
                    ],
                    referred_elsewhere="labour inspectorate",
                ),
            )
        else:
            await paths.to_stage(handle, Stage.identify)
            if outcome_path == "lost_contact":
                await ts_env.sleep(timedelta(days=31))  # after the reflection period
            outcome = {
                "consent_withdrawn": Outcome.consent_withdrawn,
                "deceased": Outcome.deceased,
                "transferred": Outcome.transferred_jurisdiction,
                "lost_contact": Outcome.lost_contact,
            }
            who = (
                actor(AgencyRole.police, Role.caseworker, Role.supervisor)
                if outcome_path == "transferred"
                else actor(AgencyRole.police)
            )
            s = await handle.execute_update(
                CaseWorkflow.end_case,
                EndCase(
                    actor=who,
                    outcome=outcome[outcome_path],
                    reason="recorded by the police unit",
                    to_country="KH" if outcome_path == "transferred" else None,
                ),
            )
        assert (s.outcome, s.status) == expected and s.stage == Stage.closed
        events = await h.events(cid, s.last_event_seq)
        assert events[-1]["kind"] in ("stage_decided", "case_ended")
        assert events[-1]["state"]["outcome"] == expected[0].value


async def test_lost_contact_refused_during_reflection_period(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.end_case,
                EndCase(
                    actor=actor(AgencyRole.police),
                    outcome=Outcome.lost_contact,
                    reason="person unreachable",
                ),
            )
        )
        assert err.type == "conflict" and "reflection and recovery period" in err.message


async def test_child_case_gets_child_deadline_and_category(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env, age_band=AgeBand.under_16)
        s = await paths.classify(handle)
        assert s.facts.categories == ["child", "domestic", "under_16"]
        assert s.deadline is not None and "verify-child" in s.deadline.source
        assert s.deadline.due_at - s.updated_at == timedelta(days=2)
        # categories are searchable, without PII (raw describe: the typed one cannot decode this server's
        # datetime search attributes)
        from temporalio.api.common.v1 import WorkflowExecution
        from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
        from temporalio.converter import PayloadConverter

        desc = await ts_env.client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=ts_env.client.namespace,
                execution=WorkflowExecution(workflow_id=s.case_id),
            )
        )
        category = desc.workflow_execution_info.search_attributes.indexed_fields["CaseCategory"]
        assert "child" in PayloadConverter.default.from_payloads([category])[0]


async def test_case_abroad_owned_by_police_at_border_with_longer_identification(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(
            h, ts_env, channel=Channel.embassy_repatriation, abroad=True, opener=AgencyRole.embassy
        )
        s = await paths.classify(handle, Channel.embassy_repatriation)
        assert s.owner_agency == AgencyRole.police  # Arts. 29-30: MPS verifies returnees
        s = await paths.verify(handle)
        assert s.stage == Stage.identify and s.deadline is not None
        assert "identify-abroad" in s.deadline.source
        assert s.deadline.due_at - s.updated_at == timedelta(days=30)
        assert (
            AgencyRole.embassy in s.participants
        )  # the receiving embassy keeps read access as a participant


async def test_escalation_levels_fire_on_schedule_and_stop_after_decision(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        s = await paths.classify(handle)  # verify: 3 calendar days
        due = s.deadline.due_at  # type: ignore[union-attr]
        await ts_env.sleep(timedelta(days=2, hours=6))  # past 75%: reminder only
        s = await paths.wait_state(
            handle, lambda st: bool(st.deadline and st.deadline.reminder_sent)
        )
        assert s.escalation_level == 0
        await ts_env.sleep(timedelta(hours=19))  # just past the deadline: level 1
        s = await paths.wait_state(handle, lambda st: st.escalation_level == 1)
        await ts_env.sleep(timedelta(days=1))  # level 2 one day after the deadline
        s = await paths.wait_state(handle, lambda st: st.escalation_level == 2)
        await paths.verify(handle)  # the decision stops the ladder for verify
        await ts_env.sleep(timedelta(days=3))
        s = await handle.query(CaseWorkflow.state)
        assert s.stage == Stage.identify and s.escalation_level == 0
        events = await h.events(cid, s.last_event_seq)
        escalations = [e for e in events if e["kind"] == "deadline_escalated"]
        assert [e["data"]["level"] for e in escalations] == [1, 2]
        assert all(e["stage"] == "verify" for e in escalations)
        assert escalations[0]["occurred_at"] >= due
        notes = await db_pool.fetch(
            "SELECT kind, level, recipients FROM oversight.notification_outbox "
            "WHERE case_id = $1 ORDER BY created_at",
            cid,
        )
        assert [(n["kind"], n["level"]) for n in notes] == [
            ("reminder", 0),
            ("escalation", 1),
            ("escalation", 2),
        ]
        assert notes[2]["recipients"] == ["agency_head"]


async def test_level_three_reaches_steering_committee(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        await paths.classify(handle)
        await ts_env.sleep(timedelta(days=7))
        s = await paths.wait_state(handle, lambda st: st.escalation_level == 3)
        await ts_env.sleep(timedelta(days=10))
        s = await handle.query(CaseWorkflow.state)
        assert s.escalation_level == 3  # the ladder ends at level 3; no repeats
        notes = await db_pool.fetch(
            "SELECT recipients FROM oversight.notification_outbox WHERE case_id = $1 "
            "AND kind = 'escalation' AND level = 3",
            cid,
        )
        assert len(notes) == 1 and notes[0]["recipients"] == ["steering_committee"]


async def test_supervisor_extension_moves_the_timer(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        s = await paths.classify(handle)
        old_due = s.deadline.due_at  # type: ignore[union-attr]
        s = await handle.execute_update(
            CaseWorkflow.extend_deadline,
            ExtendDeadline(
                actor=paths.SUPERVISOR,
                extend_by=timedelta(days=5),
                reason="interpreter for Khmer arrives Friday",
            ),
        )
        assert s.deadline.due_at == old_due + timedelta(days=5)  # type: ignore[union-attr]
        await ts_env.sleep(timedelta(days=4))  # past the old deadline, before the new one
        s = await handle.query(CaseWorkflow.state)
        assert s.escalation_level == 0
        await ts_env.sleep(timedelta(days=4, hours=2))
        s = await paths.wait_state(handle, lambda st: st.escalation_level == 1)
        events = await h.events(cid, s.last_event_seq)
        ext = next(e for e in events if e["kind"] == "deadline_extended")
        assert (
            readable_event(ring, ext)["reason"] == "interpreter for Khmer arrives Friday"
        )  # stored encrypted
        assert ext["actor_user_id"] == "sp-supervisor"


async def test_extension_needs_a_supervisor(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.classify(handle)
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.extend_deadline,
                ExtendDeadline(
                    actor=actor(SP), extend_by=timedelta(days=1), reason="need more time"
                ),
            )
        )
        assert err.type == "forbidden" and "supervisor" in err.message


async def test_transfer_accepted_moves_ownership(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        await _consent(handle, AgencyRole.border_guard)
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(AgencyRole.police),
                kind=HandoffKind.transfer,
                to_agency=AgencyRole.border_guard,
                reason="recruitment happened across the border",
            ),
        )
        hid = s.handoffs[-1].handoff_id
        # the invited agency can now see and answer; others cannot
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=actor(AgencyRole.legal_aid), handoff_id=hid, accept=True),
            )
        )
        assert err.type == "forbidden"
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(actor=actor(AgencyRole.border_guard), handoff_id=hid, accept=True),
        )
        assert s.owner_agency == AgencyRole.border_guard and AgencyRole.police in s.participants
        assert s.handoffs[-1].state == HandoffState.accepted


async def test_handoff_without_consent_needs_supervisor_override(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        req = RequestHandoff(
            actor=actor(AgencyRole.police),
            kind=HandoffKind.referral,
            to_agency=AgencyRole.legal_aid,
            reason="free legal aid",
        )
        err = await _rejection(handle.execute_update(CaseWorkflow.request_handoff, req))
        assert err.type == "forbidden" and "consent" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.request_handoff,
                req.model_copy(
                    update={"consent_override_reason": "person unreachable, hearing tomorrow"}
                ),
            )
        )
        assert err.type == "forbidden" and "supervisor" in err.message
        sup = actor(AgencyRole.police, Role.supervisor, user="police-sup")
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            req.model_copy(
                update={
                    "actor": sup,
                    "consent_override_reason": "person unreachable, hearing tomorrow",
                }
            ),
        )
        assert s.handoffs[-1].consent_overridden
        events = await h.events(cid, s.last_event_seq)
        # typed by a person: stored encrypted in the audit log, read back by an authorised reader
        assert (
            readable_event(ring, events[-1])["data"]["consent_override_reason"]
            == "person unreachable, hearing tomorrow"
        )


async def test_rejected_and_revoked_handoffs(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        await _consent(handle, AgencyRole.legal_aid)
        await _consent(handle, AgencyRole.womens_union)
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(AgencyRole.police),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.legal_aid,
                reason="legal aid",
            ),
        )
        h1 = s.handoffs[-1].handoff_id
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=actor(AgencyRole.legal_aid), handoff_id=h1, accept=False),
            )
        )
        assert err.type == "invalid" and "reason" in err.message
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(
                actor=actor(AgencyRole.legal_aid),
                handoff_id=h1,
                accept=False,
                reason="outside our district",
            ),
        )
        assert (
            s.handoffs[0].state == HandoffState.rejected
            and AgencyRole.legal_aid not in s.participants
        )
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(AgencyRole.police),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.womens_union,
                reason="livelihood support",
            ),
        )
        h2 = s.handoffs[-1].handoff_id
        s = await handle.execute_update(
            CaseWorkflow.revoke_handoff,
            RevokeHandoff(
                actor=actor(AgencyRole.police), handoff_id=h2, reason="family moved, refer later"
            ),
        )
        assert s.handoffs[1].state == HandoffState.revoked
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.respond_handoff,
                RespondHandoff(actor=actor(AgencyRole.womens_union), handoff_id=h2, accept=True),
            )
        )
        assert err.type in ("conflict", "forbidden")


async def test_unaccepted_handoff_escalates(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        await _consent(handle, AgencyRole.legal_aid)
        s = await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(AgencyRole.police),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.legal_aid,
                reason="legal aid",
            ),
        )
        await ts_env.sleep(timedelta(days=10))  # 2 working days to accept, then the ladder
        s = await paths.wait_state(handle, lambda st: st.handoffs[-1].escalation_level == 3)
        events = await h.events(cid, s.last_event_seq)
        levels = [e["data"]["level"] for e in events if e["kind"] == "handoff_escalated"]
        assert levels == [1, 2, 3]
        pending = await db_pool.fetchval(
            "SELECT open_handoffs FROM oversight.case_summary WHERE case_id = $1", cid
        )
        assert pending == 1


async def test_withdrawn_consent_stops_waiting_handoffs(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        await _consent(handle, AgencyRole.legal_aid)
        await handle.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(AgencyRole.police),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.legal_aid,
                reason="legal aid",
            ),
        )
        s = await handle.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=actor(AgencyRole.police),
                purpose=ConsentPurpose.data_sharing,
                agency=AgencyRole.legal_aid,
                granted=False,
            ),
        )
        assert (
            s.handoffs[-1].state == HandoffState.revoked
            and s.handoffs[-1].reason == "data-sharing consent withdrawn"
        )
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.request_handoff,
                RequestHandoff(
                    actor=actor(AgencyRole.police),
                    kind=HandoffKind.referral,
                    to_agency=AgencyRole.legal_aid,
                    reason="again",
                ),
            )
        )
        assert err.type == "forbidden"


async def test_stale_and_forbidden_updates_are_rejected_without_history(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        s = await paths.classify(handle)
        before = await _accepted_updates(handle)
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.claim, Claim(actor=actor(SP), expected_version=s.version - 1)
            )
        )
        assert err.type == "stale" and f"version {s.version}" in err.message
        err = await _rejection(
            handle.execute_update(CaseWorkflow.claim, Claim(actor=actor(AgencyRole.police)))
        )
        assert err.type == "forbidden"  # police neither owns nor joined the case
        err = await _rejection(
            handle.execute_update(CaseWorkflow.claim, Claim(actor=actor(SP, province="79")))
        )
        assert err.type == "forbidden" and "province 79" in err.message  # other province
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.decide,
                Decide(
                    actor=actor(SP),
                    justification="wrong stage",
                    decision=ReceiveDecision(
                        classification=Classification.trafficking_suspected, channel=Channel.walk_in
                    ),
                ),
            )
        )
        assert err.type == "conflict" and "stage verify" in err.message
        auditor = actor(SP, Role.auditor, user="auditor-1")
        err = await _rejection(handle.execute_update(CaseWorkflow.claim, Claim(actor=auditor)))
        assert err.type == "forbidden"
        assert (
            await _accepted_updates(handle) == before
        )  # rejected updates write nothing to history
        s = await handle.execute_update(
            CaseWorkflow.claim, Claim(actor=actor(SP), expected_version=s.version)
        )
        assert s.assignee == "social_protection-officer"
        err = await _rejection(
            handle.execute_update(CaseWorkflow.claim, Claim(actor=actor(SP, user="other")))
        )
        assert err.type == "conflict" and "already claimed" in err.message
        s = await handle.execute_update(
            CaseWorkflow.assign, Assign(actor=paths.SUPERVISOR, assignee_user_id="other")
        )
        assert s.assignee == "other"


async def test_supervisor_reopens_and_escalates(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        await paths.classify(handle)
        s = await paths.decide(handle, VerifyDecision(result=VerifyResult.unfounded))
        assert s.status == CaseStatus.Closed
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.record_service,
                RecordService(actor=actor(SP), service_id="svc-1", service_type="essential_needs"),
            )
        )
        assert err.type == "conflict" and "closed" in err.message
        s = await handle.execute_update(
            CaseWorkflow.reopen,
            Reopen(
                actor=paths.SUPERVISOR,
                to_stage=Stage.verify,
                reason="new witness statement arrived",
            ),
        )
        assert (s.status, s.stage, s.outcome) == (CaseStatus.Active, Stage.verify, None)
        s = await handle.execute_update(
            CaseWorkflow.escalate,
            Escalate(actor=paths.SUPERVISOR, reason="repeat case, needs head"),
        )
        assert s.escalation_level == 1
        events = await h.events(cid, s.last_event_seq)
        assert [e["kind"] for e in events][-2:] == ["case_reopened", "escalated_by_supervisor"]


async def test_suspected_victim_keeps_rights_while_identification_goes_on(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _open(h, ts_env)
        await paths.to_stage(handle, Stage.identify)
        s = await paths.identify(handle, TraffickingStatus.PossibleVictimOfTrafficking)
        assert (
            s.stage == Stage.identify
            and s.trafficking_status == TraffickingStatus.PossibleVictimOfTrafficking
        )
        s = await handle.execute_update(
            CaseWorkflow.record_service,
            RecordService(
                actor=actor(AgencyRole.police), service_id="svc-1", service_type="essential_needs"
            ),
        )
        assert s.services_delivered == 1


async def test_worker_restart_mid_stage_loses_nothing_and_duplicates_nothing(
    ts_env, db_pool, ring, task_queue
):
    cid = new_case_id()
    async with running_workers(ts_env.client, db_pool, ring, task_queue, keep_cases=True) as h:
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        await paths.classify(handle)
    # the workers are gone (a crashed process); new ones pick the case up from its history alone
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        h.adopt(cid)
        await ts_env.sleep(timedelta(days=4))
        s = await paths.wait_state(handle, lambda st: st.escalation_level >= 1)
        s = await paths.verify(handle)
        assert s.stage == Stage.identify
        events = await h.events(cid, s.last_event_seq)
        seqs = [e["seq"] for e in events]
        assert seqs == list(range(1, s.last_event_seq + 1))  # no gap, no duplicate
        assert [e["kind"] for e in events][:2] == ["case_opened", "stage_decided"]


async def test_resent_audit_batch_inserts_nothing(ts_env, db_pool, ring, task_queue):
    """A retried record_case_events (the worker died after the commit, before reporting) is a no-op."""
    from services.oversight.activities import OversightActivities
    from shared.config import Settings
    from shared.contract import RecordBatch
    from shared.runtime import Runtime

    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _open(h, ts_env)
        s = await paths.classify(handle)
        rows = await h.events(cid, s.last_event_seq)
    from shared.contract import CaseEvent

    batch = RecordBatch(
        events=[
            CaseEvent.model_validate(
                {
                    **{
                        k: r[k]
                        for k in (
                            "event_id",
                            "case_id",
                            "seq",
                            "occurred_at",
                            "kind",
                            "actor_user_id",
                            "actor_agency",
                            "stage",
                            "reason",
                            "request_id",
                            "policy_version",
                            "data",
                            "state",
                        )
                    }
                }
            )
            for r in rows
        ]
    )
    acts = OversightActivities(Runtime(Settings(), ring, db_pool, ts_env.client))
    assert await acts.record_case_events(batch) == 0
    count = await db_pool.fetchval(
        "SELECT count(*) FROM oversight.case_events WHERE case_id = $1", cid
    )
    assert count == len(rows)


async def test_long_case_continues_as_new_without_losing_state(ts_env, db_pool, ring, task_queue):
    from shared.contract import AddNote, CaseInput
    from shared.domain import Section

    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await ts_env.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(
                facts=facts(cid, now=await ts_env.get_current_time()),
                oversight_task_queue=h.oversight_task_queue,
                history_limit=60,
                max_updates_per_run=20,
            ),
            id=cid,
            task_queue=task_queue,
        )
        h.adopt(cid)
        s = await paths.to_stage(handle, Stage.identify)
        for i in range(40):
            s = await handle.execute_update(
                CaseWorkflow.add_note,
                AddNote(
                    actor=actor(AgencyRole.police), section=Section.case_notes, note_id=f"note-{i}"
                ),
            )
        s = await paths.wait_state(handle, lambda st: st.last_event_seq == s.last_event_seq)
        first_run = ts_env.client.get_workflow_handle(cid, run_id=handle.first_execution_run_id)
        runs: set[str] = set()
        for _ in range(250):  # the run drains its audit queue, then continues as new
            runs = {
                e.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
                for e in (await first_run.fetch_history()).events
                if e.HasField("workflow_execution_continued_as_new_event_attributes")
            }
            if runs:
                break
            await asyncio.sleep(0.02)
        assert len(runs) >= 1  # the first run handed over to a new one
        handle = ts_env.client.get_workflow_handle(cid)  # follows the latest run
        s = await paths.identify(handle)  # the new run still knows the stage, owner and deadlines
        assert s.stage == Stage.protect and s.facts.case_id == cid
        events = await h.events(cid, s.last_event_seq)
        assert [e["seq"] for e in events] == list(range(1, s.last_event_seq + 1))
        assert sum(1 for e in events if e["kind"] == "note_added") == 40
