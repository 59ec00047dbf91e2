from __future__ import annotations

from datetime import timedelta

from shared.contract import (
    Classification,
    Decide,
    ReceiveDecision,
)
from shared.domain import AgencyRole, Channel, Stage
from tests.conftest import new_case_id
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow


async def test_open_classify_verify(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = new_case_id()
        handle = await h.open(facts(cid))
        s = await h.state(handle)
        assert s.stage == Stage.receive and s.owner_agency == AgencyRole.hotline
        s = await handle.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(AgencyRole.hotline),
                justification="caller describes recruitment abroad",
                decision=ReceiveDecision(
                    classification=Classification.trafficking_suspected, channel=Channel.hotline_111
                ),
            ),
        )
        assert s.stage == Stage.verify and s.owner_agency == AgencyRole.social_protection
        assert s.deadline is not None and s.deadline.due_at - s.updated_at == timedelta(days=3)
        events = await h.events(cid, 2)
        assert [e["kind"] for e in events] == ["case_opened", "stage_decided"]
