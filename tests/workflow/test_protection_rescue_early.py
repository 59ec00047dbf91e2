"""Issue 15 items 3 and 4 on the time-skipping server with the real audit log: protection measures decided by
the police at any stage from receipt, and a rescue recorded when it happens; neither moves the case's stage,
and a rescue recorded before identification decides the rescue stage when identification leads there."""

from __future__ import annotations

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError

from shared.contract import RecordProtection, RecordRescue
from shared.domain import AgencyRole, Channel, Role, Stage
from tests.conftest import new_case_id
from tests.helpers import workflow_paths as paths
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

A = AgencyRole
POLICE = actor(A.police)


async def _rejection(coro: object) -> ApplicationError:
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await coro  # type: ignore[misc]
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def _protection(who=POLICE, measures=("confidential_location",), **kw):  # type: ignore[no-untyped-def]
    return RecordProtection(
        actor=who, measures=list(measures), justification="risk assessment at first contact", **kw
    )


def _rescue(op: str, outcome: str = "rescued", who=POLICE):  # type: ignore[no-untyped-def]
    return RecordRescue(
        actor=who, operation_ref=op, outcome=outcome, justification="operation at the bar"
    )


async def test_police_decide_protection_at_every_stage_without_moving_it(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        # a police-opened case: police own receive, verify (rescue_operation) and identify
        handle = await h.open(
            facts(
                cid,
                channel=Channel.rescue_operation,
                opener=A.police,
                now=await ts_env.get_current_time(),
            )
        )
        before = await handle.query(CaseWorkflow.state)
        s = await handle.execute_update(CaseWorkflow.record_protection, _protection())
        assert s.stage == Stage.receive and s.owner_agency == A.police
        assert s.version == before.version + 1 and s.deadline == before.deadline
        assert [(p.measures, p.stage, p.agency) for p in s.protections] == [
            (["confidential_location"], Stage.receive, A.police)
        ]
        # social protection (a participant later) is not the police: 403, at any stage
        s = await paths.classify(handle, Channel.rescue_operation)
        assert s.stage == Stage.verify
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.record_protection,
                _protection(actor(A.social_protection, Role.supervisor)),
            )
        )
        assert err.type == "forbidden" and "police" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.record_protection, _protection(measures=("guard", "guard"))
            )
        )
        assert err.type == "invalid" and "measures" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.record_protection, _protection(expected_version=s.version + 3)
            )
        )
        assert err.type == "stale"
        s = await handle.execute_update(
            CaseWorkflow.record_protection,
            _protection(
                actor(A.border_guard, Role.supervisor),
                measures=("protection_of_relatives", "guard"),
                expected_version=s.version,
            ),
        )
        assert s.stage == Stage.verify and [p.stage for p in s.protections] == [
            Stage.receive,
            Stage.verify,
        ]
        # the protect stage after identification still takes its own decision
        s = await paths.to_stage(handle, Stage.protect)
        s = await paths.protect(handle)
        assert s.stage == Stage.reintegrate and len(s.protections) == 2
        events = await h.events(cid, s.last_event_seq)
        recorded = [e for e in events if e["kind"] == "protection_recorded"]
        assert [(e["stage"], e["actor_agency"]) for e in recorded] == [
            ("receive", "police"),
            ("verify", "border_guard"),
        ]


async def test_rescue_recorded_before_identification_is_not_asked_again(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(
            facts(
                cid,
                channel=Channel.rescue_operation,
                opener=A.police,
                already_safe=False,
                now=await ts_env.get_current_time(),
            )
        )
        await paths.classify(handle, Channel.rescue_operation)
        s = await paths.verify(handle)
        assert s.stage == Stage.identify  # the 20-day identification stage runs
        due = s.deadline
        # a postponed operation is recorded and decides nothing
        s = await handle.execute_update(CaseWorkflow.record_rescue, _rescue("op-1", "postponed"))
        assert s.stage == Stage.identify and s.deadline == due
        s = await handle.execute_update(CaseWorkflow.record_rescue, _rescue("op-1"))
        assert s.stage == Stage.identify and s.deadline == due  # identification is not skipped
        assert [(r.operation_ref, r.outcome, r.stage) for r in s.rescues] == [
            ("op-1", "postponed", Stage.identify),
            ("op-1", "rescued", Stage.identify),
        ]
        err = await _rejection(handle.execute_update(CaseWorkflow.record_rescue, _rescue("op-1")))
        assert err.type == "conflict" and "already recorded" in err.message
        err = await _rejection(
            handle.execute_update(
                CaseWorkflow.record_rescue,
                _rescue("op-2", who=actor(A.social_protection, Role.supervisor)),
            )
        )
        assert err.type == "forbidden" and "rescuing force" in err.message
        # identification confirms: the rescue stage is decided by the rescue already recorded
        s = await paths.identify(handle)
        assert s.stage == Stage.protect
        rescue = [r for r in s.stages if r.stage == Stage.rescue]
        assert len(rescue) == 1 and not rescue[0].skipped
        assert rescue[0].decided_by == POLICE.user_id
        assert rescue[0].decision is not None and rescue[0].decision.model_dump() == {
            "stage": Stage.rescue,
            "needed": True,
            "operation_ref": "op-1",
            "outcome": "rescued",
        }
        events = await h.events(cid, s.last_event_seq)
        kinds = [e["kind"] for e in events]
        assert kinds.count("rescue_recorded") == 2
        assert [e["kind"] for e in events][-1] == "stage_decided"


async def test_a_rescue_without_the_person_still_leads_to_the_rescue_stage(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(
            facts(cid, opener=A.police, already_safe=False, now=await ts_env.get_current_time())
        )
        s = await handle.execute_update(CaseWorkflow.record_rescue, _rescue("op-9", "not_found"))
        assert s.stage == Stage.receive and s.rescues[0].outcome == "not_found"
        s = await paths.to_stage(handle, Stage.rescue)  # nothing found: the rescue stage asks
        assert s.stage == Stage.rescue
        err = await _rejection(handle.execute_update(CaseWorkflow.record_rescue, _rescue("op-10")))
        assert err.type == "conflict" and "rescue stage" in err.message
        s = await paths.rescue(handle)
        assert s.stage == Stage.protect
