"""Drives a case through its stages with the decisions a caseworker would make (used by the path
tests and the replay recorder)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from temporalio.client import WorkflowHandle

from shared.contract import (
    CaseState,
    Classification,
    Decide,
    EvidenceKind,
    EvidenceRef,
    IdentifyDecision,
    ProtectDecision,
    ReceiveDecision,
    RecordFollowUp,
    ReintegrateDecision,
    RescueDecision,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgencyRole, Channel, DecisionMakingOrg, Role, Stage, TraffickingStatus
from tests.helpers.workflow_harness import actor
from workflows.case_workflow import CaseWorkflow

Handle = WorkflowHandle[Any, Any]


def owner_actor(state: CaseState, *roles: Role) -> Any:
    return actor(state.owner_agency, *roles)


async def decide(
    handle: Handle, decision: Any, why: str = "recorded by the owning agency"
) -> CaseState:
    state: CaseState = await handle.query(CaseWorkflow.state)
    return await handle.execute_update(
        CaseWorkflow.decide, Decide(actor=owner_actor(state), decision=decision, justification=why)
    )


async def classify(handle: Handle, channel: Channel = Channel.hotline_111) -> CaseState:
    return await decide(
        handle,
        ReceiveDecision(classification=Classification.trafficking_suspected, channel=channel),
    )


async def verify(handle: Handle) -> CaseState:
    return await decide(handle, VerifyDecision(result=VerifyResult.confirmed))


async def identify(
    handle: Handle, status: TraffickingStatus = TraffickingStatus.ActualVictimOfTrafficking
) -> CaseState:
    return await decide(
        handle,
        IdentifyDecision(
            status=status,
            deciding_org=DecisionMakingOrg.Police,
            evidence=[EvidenceRef(evidence_id="ev-1", kind=EvidenceKind.statement_of_person)],
        ),
    )


async def rescue(handle: Handle) -> CaseState:
    return await decide(
        handle, RescueDecision(needed=True, operation_ref="op-1", outcome="rescued")
    )


async def protect(handle: Handle) -> CaseState:
    return await decide(handle, ProtectDecision(measures=["safe_shelter", "identity_protection"]))


async def follow_ups_done(handle: Handle) -> CaseState:
    state: CaseState = await handle.query(CaseWorkflow.state)
    for f in state.follow_ups:
        state = await handle.execute_update(
            CaseWorkflow.record_follow_up,
            RecordFollowUp(actor=owner_actor(state), follow_up_id=f.follow_up_id, outcome="done"),
        )
    return state


async def close(handle: Handle) -> CaseState:
    return await decide(
        handle, ReintegrateDecision(support_plan_ref="plan-1", reason="reintegrated at home")
    )


async def to_stage(handle: Handle, stage: Stage) -> CaseState:
    """Walk the happy path until the case is in `stage`."""
    steps: dict[Stage, Callable[[Handle], Any]] = {
        Stage.receive: classify,
        Stage.verify: verify,
        Stage.identify: identify,
        Stage.rescue: rescue,
        Stage.protect: protect,
    }
    state: CaseState = await handle.query(CaseWorkflow.state)
    while state.stage != stage:
        state = await steps[state.stage](handle)
    return state


async def wait_state(
    handle: Handle, predicate: Callable[[CaseState], bool], tries: int = 200
) -> CaseState:
    """Poll the query until the workflow has processed what the test waits for (a fired timer)."""
    state: CaseState = await handle.query(CaseWorkflow.state)
    for _ in range(tries):
        if predicate(state):
            return state
        await asyncio.sleep(0.02)
        state = await handle.query(CaseWorkflow.state)
    raise AssertionError(
        f"condition not reached; state: stage={state.stage} level={state.escalation_level} "
        f"handoffs={[(h.handoff_id, h.state, h.escalation_level) for h in state.handoffs]}"
    )


SUPERVISOR = actor(AgencyRole.social_protection, Role.supervisor, user="sp-supervisor")
