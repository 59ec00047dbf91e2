"""common.case_index (shared/case_index.py): every field after every kind of Update, after a timer
escalation, after continue-as-new, and after a crash between the Update and a projection write (the API's
write lost, or the audit activity delayed): the row converges to the workflow's state either way."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

from services.oversight.activities import build_activities as build_oversight_activities
from shared import case_index
from shared.config import Settings
from shared.contract import (
    Assign,
    CaseInput,
    CaseState,
    Claim,
    ConsentPurpose,
    EndCase,
    Escalate,
    ExtendDeadline,
    HandoffKind,
    HandoffState,
    RecordConsent,
    RecordService,
    Reopen,
    RequestHandoff,
    RespondHandoff,
    RevokeHandoff,
)
from shared.domain import AgencyRole, CaseStatus, Outcome, Role, Stage
from shared.runtime import Runtime
from tests.conftest import new_case_id
from tests.helpers import workflow_paths as paths
from tests.helpers.workflow_harness import Harness, actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

Handle = WorkflowHandle[Any, Any]
SP = AgencyRole.social_protection
POLICE = AgencyRole.police


def expected(s: CaseState) -> dict[str, Any]:
    """The index row a state must give, computed here from the state (not with the module's own mapping)."""
    pending = [h for h in s.handoffs if h.state == HandoffState.requested]
    is_open = s.status in (CaseStatus.Active, CaseStatus.FollowUp)
    return {
        "case_id": s.case_id,
        "province": s.province,
        "commune": s.facts.commune,
        "stage": s.stage.value,
        "status": s.status.value,
        "outcome": s.outcome.value if s.outcome else None,
        "owner_agency": s.owner_agency.value,
        "participants": sorted(a.value for a in s.participants),
        "pending_to": sorted({h.to_agency.value for h in pending}),
        "pending_handoffs": sorted((h.handoff_id, h.to_agency.value) for h in pending),
        "oldest_handoff_accept_by": min((h.accept_by for h in pending), default=None),
        "assignee": s.assignee,
        "deadline_at": s.deadline.due_at if s.deadline and is_open else None,
        "reminder_at": s.deadline.reminder_at if s.deadline and is_open else None,
        "escalation_level": s.escalation_level,
        "categories": s.facts.categories,
        "is_child": s.facts.child,
        "is_abroad": s.facts.abroad,
        "channel": s.facts.channel.value,
        "age_band": s.facts.age_band.value,
        "trafficking_status": s.trafficking_status.value,
        "version": s.version,
        "last_event_seq": s.last_event_seq,
        "opened_at": s.opened_at,
        "updated_at": s.updated_at,
        "closed_at": s.closed_at,
    }


def actual(row: Any) -> dict[str, Any]:
    handoffs = row["pending_handoffs"]
    assert isinstance(handoffs, list)  # a jsonb array, not a JSON text
    out = {
        k: row[k]
        for k in (
            "case_id",
            "province",
            "commune",
            "stage",
            "status",
            "outcome",
            "owner_agency",
            "oldest_handoff_accept_by",
            "assignee",
            "deadline_at",
            "reminder_at",
            "escalation_level",
            "is_child",
            "is_abroad",
            "channel",
            "age_band",
            "trafficking_status",
            "version",
            "last_event_seq",
            "opened_at",
            "updated_at",
            "closed_at",
        )
    }
    out["participants"] = list(row["participants"])
    out["pending_to"] = list(row["pending_to"])
    out["categories"] = list(row["categories"])
    out["pending_handoffs"] = sorted((h["handoff_id"], h["to_agency"]) for h in handoffs)
    return out


async def assert_indexed(h: Harness, state: CaseState) -> None:
    row = await case_index.get(h.pool, state.case_id)
    assert row is not None, state.case_id
    assert actual(row) == expected(state)


async def converged(h: Harness, handle: Handle) -> CaseState:
    """Wait until the audit activity recorded every event the workflow emitted, then the index must hold
    exactly the workflow's current state."""
    state: CaseState = await handle.query(CaseWorkflow.state)
    await h.events(state.case_id, state.last_event_seq, wait_s=60)
    state = await handle.query(CaseWorkflow.state)
    await h.events(state.case_id, state.last_event_seq, wait_s=60)
    await assert_indexed(h, state)
    return state


async def act(h: Harness, handle: Handle, update: Any, cmd: Any) -> CaseState:
    """An Update as the service API sends it: accepted, then the API's index write (b); the row holds the
    returned state at once, before the audit activity (a) has necessarily run."""
    state: CaseState = await handle.execute_update(update, cmd)
    await case_index.record_update(h.pool, state)
    await assert_indexed(h, state)
    return state


async def test_every_field_after_every_kind_of_update(ts_env, db_pool, ring, task_queue):
    sup_sp = actor(SP, Role.supervisor, user="sp-supervisor")
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time(), already_safe=False))
        await converged(h, handle)  # opened: receive, owned by the opener
        s = await paths.classify(handle)  # decide (receive)
        await case_index.record_update(h.pool, s)
        await assert_indexed(h, s)
        s = await act(h, handle, CaseWorkflow.claim, Claim(actor=actor(SP)))
        assert s.assignee == "social_protection-officer"
        s = await act(h, handle, CaseWorkflow.assign, Assign(actor=sup_sp, assignee_user_id="sp-2"))
        for agency in (AgencyRole.legal_aid, AgencyRole.womens_union, AgencyRole.commune):
            s = await act(
                h,
                handle,
                CaseWorkflow.record_consent,
                RecordConsent(
                    actor=actor(SP),
                    purpose=ConsentPurpose.data_sharing,
                    agency=agency,
                    granted=True,
                ),
            )
        s = await act(
            h,
            handle,
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(SP),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.legal_aid,
                reason="free legal aid",
            ),
        )
        accepted = s.handoffs[-1].handoff_id
        s = await act(
            h,
            handle,
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(SP),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.womens_union,
                reason="livelihood",
            ),
        )
        rejected = s.handoffs[-1].handoff_id
        s = await act(
            h,
            handle,
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=actor(SP),
                kind=HandoffKind.referral,
                to_agency=AgencyRole.commune,
                reason="home visit",
            ),
        )
        revoked = s.handoffs[-1].handoff_id
        row = await case_index.get(h.pool, cid)
        assert row is not None and list(row["pending_to"]) == [
            "commune",
            "legal_aid",
            "womens_union",
        ]
        s = await act(
            h,
            handle,
            CaseWorkflow.respond_handoff,
            RespondHandoff(actor=actor(AgencyRole.legal_aid), handoff_id=accepted, accept=True),
        )
        assert AgencyRole.legal_aid in s.participants
        s = await act(
            h,
            handle,
            CaseWorkflow.respond_handoff,
            RespondHandoff(
                actor=actor(AgencyRole.womens_union),
                handoff_id=rejected,
                accept=False,
                reason="outside our district",
            ),
        )
        s = await act(
            h,
            handle,
            CaseWorkflow.revoke_handoff,
            RevokeHandoff(actor=actor(SP), handoff_id=revoked, reason="family moved, refer later"),
        )
        assert s.handoffs[-1].state == HandoffState.revoked and not any(
            x.state == HandoffState.requested for x in s.handoffs
        )
        before = s.deadline
        s = await act(
            h,
            handle,
            CaseWorkflow.extend_deadline,
            ExtendDeadline(
                actor=sup_sp, extend_by=timedelta(days=2), reason="waiting for a medical report"
            ),
        )
        assert before is not None and s.deadline is not None and s.deadline.due_at > before.due_at
        s = await act(
            h,
            handle,
            CaseWorkflow.escalate,
            Escalate(actor=sup_sp, reason="repeat case, needs head"),
        )
        assert s.escalation_level == 1
        await converged(h, handle)
        # decide, per stage (the module's own helpers send them; the API's write follows each)
        for step in (paths.verify, paths.identify, paths.rescue, paths.protect):
            s = await step(handle)
            await case_index.record_update(h.pool, s)
            await assert_indexed(h, s)
        assert (
            s.stage == Stage.reintegrate
            and s.trafficking_status.value == "ActualVictimOfTrafficking"
        )
        s = await act(
            h,
            handle,
            CaseWorkflow.record_service,
            RecordService(actor=actor(SP), service_id="svc-1", service_type="essential_needs"),
        )
        s = await paths.follow_ups_done(handle)  # record_follow_up, each
        await case_index.record_update(h.pool, s)
        await assert_indexed(h, s)
        await ts_env.sleep(timedelta(days=31))  # past the reflection period
        s = await paths.close(handle)
        await case_index.record_update(h.pool, s)
        await assert_indexed(h, s)
        assert s.status == CaseStatus.Closed
        row = await case_index.get(h.pool, cid)
        assert row is not None and row["deadline_at"] is None and row["closed_at"] is not None
        s = await act(
            h,
            handle,
            CaseWorkflow.reopen,
            Reopen(actor=sup_sp, to_stage=Stage.protect, reason="new witness statement arrived"),
        )
        assert s.status == CaseStatus.Active and s.deadline is not None
        s = await act(
            h,
            handle,
            CaseWorkflow.end_case,
            EndCase(
                actor=actor(s.owner_agency),
                outcome=Outcome.consent_withdrawn,
                reason="withdrew in writing",
            ),
        )
        assert s.outcome == Outcome.consent_withdrawn
        await converged(h, handle)


async def test_timer_escalation_reaches_the_index_through_the_audit_activity(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        s = await paths.classify(handle)
        await case_index.record_update(h.pool, s)
        assert s.deadline is not None
        await ts_env.sleep(s.deadline.due_at - await ts_env.get_current_time() + timedelta(hours=1))
        s = await paths.wait_state(handle, lambda x: x.escalation_level >= 1)
        s = await converged(h, handle)  # nobody called an API: the audit activity wrote it
        row = await case_index.get(h.pool, cid)
        assert row is not None and row["escalation_level"] >= 1 and row["written_by"] == "audit"


async def test_continue_as_new_keeps_the_index_moving_forward(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        f = facts(cid, now=await ts_env.get_current_time())
        first = await h.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(facts=f, oversight_task_queue=h.oversight_task_queue, max_updates_per_run=10),
            id=cid,
            task_queue=task_queue,
        )
        h.adopt(cid)
        handle = h.client.get_workflow_handle(cid)
        s = await paths.classify(handle)
        for i in range(14):  # past max_updates_per_run: the run continues as new
            s = await act(
                h,
                handle,
                CaseWorkflow.assign,
                Assign(
                    actor=actor(SP, Role.supervisor, user="sp-supervisor"),
                    assignee_user_id=f"sp-{i}",
                ),
            )
        for _ in range(1500):  # the run drains its audit queue, then continues as new
            if (await handle.describe()).run_id != first.first_execution_run_id:
                break
            await asyncio.sleep(0.02)
        assert (await handle.describe()).run_id != first.first_execution_run_id
        s = await act(
            h,
            handle,
            CaseWorkflow.assign,
            Assign(
                actor=actor(SP, Role.supervisor, user="sp-supervisor"), assignee_user_id="sp-13"
            ),
        )
        s = await converged(h, handle)
        assert s.assignee == "sp-13" and s.version >= 15


async def test_api_write_lost_the_audit_activity_writes_it(ts_env, db_pool, ring, task_queue):
    """The API process dies between the Update and its index write: the audit activity's write (in the
    event's transaction) brings the row to the same state."""
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        await converged(h, handle)
        s = await paths.classify(handle)  # no record_update: the API's write never happened
        s = await handle.execute_update(CaseWorkflow.claim, Claim(actor=actor(SP)))
        await converged(h, handle)
        row = await case_index.get(h.pool, cid)
        assert row is not None and row["assignee"] == s.assignee and row["written_by"] == "audit"


async def test_audit_activity_delayed_the_api_write_stands_until_it_lands(
    ts_env, db_pool, ring, task_queue
):
    """The oversight worker is down: the API's writes are the only ones, the row follows each accepted
    Update; when the activity runs later, its older states do not overwrite the newer row, and the row
    ends at the workflow's state."""
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        stalled = f"{task_queue}-stalled-oversight"
        cid = new_case_id()
        await ts_env.client.start_workflow(
            CaseWorkflow.run,
            CaseInput(
                facts=facts(cid, now=await ts_env.get_current_time()), oversight_task_queue=stalled
            ),
            id=cid,
            task_queue=task_queue,
        )
        handle = ts_env.client.get_workflow_handle(cid)
        s = await paths.classify(handle)
        await case_index.record_update(h.pool, s)
        await assert_indexed(h, s)
        s = await act(h, handle, CaseWorkflow.claim, Claim(actor=actor(SP)))
        s = await act(
            h,
            handle,
            CaseWorkflow.assign,
            Assign(actor=actor(SP, Role.supervisor), assignee_user_id="x"),
        )
        assert (
            await h.pool.fetchval(
                "SELECT count(*) FROM oversight.case_events WHERE case_id = $1", cid
            )
            == 0
        )
        # an older state arriving late never wins
        assert not await case_index.upsert(
            h.pool, s.model_copy(update={"version": s.version - 1, "assignee": "stale"}), "audit"
        )
        await assert_indexed(h, s)
        runtime = Runtime(Settings(), ring, db_pool, ts_env.client)
        async with Worker(
            ts_env.client, task_queue=stalled, activities=build_oversight_activities(runtime)
        ):
            await h.events(cid, s.last_event_seq, wait_s=60)
            await converged(h, handle)
            await handle.terminate("test done")
        row = await case_index.get(h.pool, cid)
        assert row is not None and row["assignee"] == "x"


async def test_intake_opening_row_never_overwrites_a_newer_state(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        f = facts(cid, now=await ts_env.get_current_time())
        await case_index.record_opened(h.pool, f)  # intake, right after the start
        row = await case_index.get(h.pool, cid)
        assert row is not None and (row["stage"], row["owner_agency"], row["version"]) == (
            "receive",
            "hotline",
            0,
        )
        handle = await h.open(f)
        s = await paths.classify(handle)
        await case_index.record_update(h.pool, s)
        await case_index.record_opened(h.pool, f)  # a replayed open after the Update: ignored
        await assert_indexed(h, s)
        await converged(h, handle)
