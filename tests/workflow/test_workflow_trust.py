"""Issue 10 on the CaseWorkflow itself (time-skipping server, real audit log):

- item 7: an agency that was only asked (a pending handoff invitee) may answer the handoff and nothing
  else until it accepts;
- item 9: a supervisor decides for their own agency's stages; on another agency's stage only as an
  explicit, reasoned override that the audit event records;
- item 2/8 (workflow half): an Update id applied by an earlier run is not applied again by the run after
  a continue-as-new (Temporal deduplicates Update ids per run only)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from shared.contract import (
    AddNote,
    CaseInput,
    Claim,
    ConsentPurpose,
    Decide,
    EvidenceKind,
    EvidenceRef,
    HandoffKind,
    IdentifyDecision,
    RecordConsent,
    RecordService,
    RequestHandoff,
    RespondHandoff,
)
from shared.domain import AgencyRole, DecisionMakingOrg, Role, Section, Stage, TraffickingStatus
from tests.conftest import new_case_id
from tests.helpers import workflow_paths as paths
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

SP, LA, POLICE = AgencyRole.social_protection, AgencyRole.legal_aid, AgencyRole.police


async def _refused(coro: Any) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def _data(row: Any) -> dict[str, Any]:
    data = row["data"]
    return json.loads(data) if isinstance(data, str) else dict(data)


async def _referred_to_legal_aid(h: Any, ts_env: Any) -> tuple[str, Any]:
    """A case in verify, owned by social protection, with a referral to legal aid waiting (h1)."""
    cid = new_case_id()
    handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
    s = await paths.classify(handle)
    assert s.owner_agency == SP
    await handle.execute_update(
        CaseWorkflow.record_consent,
        RecordConsent(
            actor=actor(SP), purpose=ConsentPurpose.data_sharing, granted=True, agency=LA
        ),
    )
    await handle.execute_update(
        CaseWorkflow.request_handoff,
        RequestHandoff(
            actor=actor(SP), kind=HandoffKind.referral, to_agency=LA, reason="claim unpaid wages"
        ),
    )
    return cid, handle


async def test_pending_invitee_cannot_act_until_it_accepts(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _referred_to_legal_aid(h, ts_env)
        before = await handle.query(CaseWorkflow.state)
        la = actor(LA)
        attempts = [
            (
                CaseWorkflow.record_consent,
                RecordConsent(actor=la, purpose=ConsentPurpose.support, granted=True),
            ),
            (
                CaseWorkflow.add_note,
                AddNote(actor=la, section=Section.legal_aid, note_id="plan-la-1"),
            ),
            (
                CaseWorkflow.add_note,
                AddNote(actor=la, section=Section.support_plan, note_id="plan-la-2"),
            ),
            (
                CaseWorkflow.record_service,
                RecordService(actor=la, service_id="svc-la-1", service_type="legal_aid"),
            ),
            (CaseWorkflow.claim, Claim(actor=la)),
        ]
        for update, cmd in attempts:
            cause = await _refused(handle.execute_update(update, cmd))
            assert cause.type == "forbidden", (update, cause)
            assert "has not accepted the handoff yet" in cause.message, cause.message
        after = await handle.query(CaseWorkflow.state)
        assert after.version == before.version and after.services_delivered == 0
        assert after.consents == before.consents

        # it may answer: accept, and from then on it takes part
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff, RespondHandoff(actor=la, handoff_id="h1", accept=True)
        )
        assert LA in s.participants
        s = await handle.execute_update(
            CaseWorkflow.add_note, AddNote(actor=la, section=Section.legal_aid, note_id="plan-la-3")
        )
        s = await handle.execute_update(
            CaseWorkflow.record_service,
            RecordService(actor=la, service_id="svc-la-2", service_type="legal_aid"),
        )
        assert s.services_delivered == 1
        events = await h.events(cid, s.last_event_seq)
        assert [e["kind"] for e in events].count("service_delivered") == 1
        assert not any(_data(e).get("note_id") in ("plan-la-1", "plan-la-2") for e in events)


async def test_only_the_invited_agency_in_the_province_answers_a_handoff(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        _, handle = await _referred_to_legal_aid(h, ts_env)
        for who in (
            actor(AgencyRole.womens_union),
            actor(LA, province="79"),
            actor(SP),
            actor(AgencyRole.commune, Role.supervisor),
        ):
            cause = await _refused(
                handle.execute_update(
                    CaseWorkflow.respond_handoff,
                    RespondHandoff(actor=who, handoff_id="h1", accept=True),
                )
            )
            assert cause.type == "forbidden" and "answers handoff h1" in cause.message, (
                who,
                cause.message,
            )
        # a legal-aid supervisor of the province answers for its agency
        s = await handle.execute_update(
            CaseWorkflow.respond_handoff,
            RespondHandoff(
                actor=actor(LA, Role.supervisor, user="la-supervisor"),
                handoff_id="h1",
                accept=False,
                reason="outside our capacity this month",
            ),
        )
        assert s.handoffs[0].state.value == "rejected" and LA not in s.participants


def _identify(who: Any, override_reason: str | None = None) -> Decide:
    return Decide(
        actor=who,
        justification="statements and rescuer report",
        override_reason=override_reason,
        decision=IdentifyDecision(
            status=TraffickingStatus.ActualVictimOfTrafficking,
            deciding_org=DecisionMakingOrg.Police,
            evidence=[EvidenceRef(evidence_id="ev-9", kind=EvidenceKind.statement_of_person)],
        ),
    )


async def test_supervisor_of_another_agency_decides_a_stage_only_with_an_override_reason(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        await paths.classify(handle)
        s = await paths.verify(handle)
        assert (s.stage, s.owner_agency) == (Stage.identify, POLICE)
        commune_sup = actor(AgencyRole.commune, Role.supervisor, user="commune-supervisor")

        cause = await _refused(handle.execute_update(CaseWorkflow.decide, _identify(commune_sup)))
        assert cause.type == "forbidden" and "override_reason" in cause.message
        assert "owned by police" in cause.message
        assert (
            await handle.query(CaseWorkflow.state)
        ).trafficking_status == TraffickingStatus.PossibleVictimOfTrafficking
        # a caseworker of another agency cannot override at all, reason or not
        cause = await _refused(
            handle.execute_update(
                CaseWorkflow.decide,
                _identify(actor(AgencyRole.commune), "police unreachable for weeks"),
            )
        )
        assert cause.type == "forbidden"

        s = await handle.execute_update(
            CaseWorkflow.decide,
            _identify(commune_sup, "police unit disbanded, provincial order 12"),
        )
        assert s.trafficking_status == TraffickingStatus.ActualVictimOfTrafficking
        events = await h.events(cid, s.last_event_seq)
        decided = [e for e in events if e["kind"] == "stage_decided"][-1]
        assert decided["actor_user_id"] == "commune-supervisor"
        override = _data(decided)["override"]
        assert {k: override[k] for k in ("by_agency", "owner_agency", "stage")} == {
            "by_agency": "commune",
            "owner_agency": "police",
            "stage": "identify",
        }
        assert override[
            "reason"
        ]  # the reason is recorded with the event (text encrypted by the audit log)


async def test_supervisor_of_the_owning_agency_needs_no_override(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        await paths.classify(handle)
        await paths.verify(handle)
        s = await handle.execute_update(
            CaseWorkflow.decide, _identify(actor(POLICE, Role.supervisor, user="police-supervisor"))
        )
        assert s.trafficking_status == TraffickingStatus.ActualVictimOfTrafficking
        events = await h.events(cid, s.last_event_seq)
        decided = [e for e in events if e["kind"] == "stage_decided"][-1]
        assert "override" not in _data(decided)


async def test_an_update_applied_before_continue_as_new_is_not_applied_again(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        first = await h.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(
                facts=facts(cid, now=await ts_env.get_current_time()),
                oversight_task_queue=h.oversight_task_queue,
                max_updates_per_run=10,
            ),
            id=cid,
            task_queue=h.task_queue,
        )
        h.adopt(cid)
        handle = h.client.get_workflow_handle(cid)
        await paths.classify(handle)
        note = AddNote(actor=actor(SP), section=Section.case_notes, note_id="note-once")
        applied = await handle.execute_update(CaseWorkflow.add_note, note, id="retry-me-1")
        for i in range(12):  # past max_updates_per_run: the run continues as new
            await handle.execute_update(
                CaseWorkflow.add_note,
                AddNote(actor=actor(SP), section=Section.case_notes, note_id=f"n{i}"),
            )
        for _ in range(500):  # the run drains its audit queue, then continues as new
            if (await handle.describe()).run_id != first.first_execution_run_id:
                break
            await asyncio.sleep(0.02)
        assert (
            await handle.describe()
        ).run_id != first.first_execution_run_id  # the retry reaches a new run
        before = await handle.query(CaseWorkflow.state)

        again = await handle.execute_update(
            CaseWorkflow.add_note, note, id="retry-me-1"
        )  # the client's retry
        assert again.version == before.version > applied.version
        events = await h.events(cid, before.last_event_seq)
        assert sum(1 for e in events if _data(e).get("note_id") == "note-once") == 1
        # a new id still applies
        s = await handle.execute_update(CaseWorkflow.add_note, note, id="retry-me-2")
        assert s.version == before.version + 1
