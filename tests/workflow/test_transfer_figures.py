"""Issue 18: figures count a transferred case right. Each period's work belongs to the province that held
the case then (received where opened, stage completions and escalations where the case was, transfers out
of one province and into the other), so no case is counted twice or lost and the provinces add up to the
national figures. A built data set: two cases on the time-skipping server with the real audit log."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Any

from services.oversight import kpi, reports
from services.oversight import repository as repo
from services.oversight.models import ReportKind
from shared.contract import (
    CaseFacts,
    Classification,
    ConsentPurpose,
    Decide,
    HandoffKind,
    ReceiveDecision,
    RecordConsent,
    RequestHandoff,
    RespondHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgencyRole, Channel
from tests.conftest import new_case_id
from tests.helpers.workflow_harness import actor, running_workers
from workflows.case_workflow import CaseWorkflow

A = AgencyRole
BG_20, SP_40, HOTLINE_40 = (
    actor(A.border_guard, province="20"),
    actor(A.social_protection, province="40"),
    actor(A.hotline, province="40"),
)


def _classify(who: Any, channel: Channel) -> Decide:
    return Decide(
        actor=who,
        justification="classified",
        decision=ReceiveDecision(
            classification=Classification.trafficking_suspected, channel=channel
        ),
    )


async def test_each_province_counts_the_work_done_while_it_held_the_case(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        t0 = await ts_env.get_current_time()
        start = t0 - timedelta(minutes=1)
        # A: a border-guard handover in Lạng Sơn (20); B: a hotline report in Nghệ An (40)
        a = await h.open(
            CaseFacts(
                case_id=new_case_id(),
                person_ref=f"p-{uuid.uuid4().hex[:8]}",
                province="20",
                channel=Channel.border_guard_handover,
                opened_by=BG_20,
                opened_at=t0,
            )
        )
        b = await h.open(
            CaseFacts(
                case_id=new_case_id(),
                person_ref=f"p-{uuid.uuid4().hex[:8]}",
                province="40",
                channel=Channel.hotline_111,
                opened_by=HOTLINE_40,
                opened_at=t0,
            )
        )
        await a.execute_update(CaseWorkflow.decide, _classify(BG_20, Channel.border_guard_handover))
        await b.execute_update(CaseWorkflow.decide, _classify(HOTLINE_40, Channel.hotline_111))
        await ts_env.sleep(
            timedelta(days=4, hours=1)
        )  # both verifications overdue: levels 1 and 2, each in its own province
        await a.execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=BG_20,
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=A.social_protection,
                province="40",
            ),
        )
        await a.execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=BG_20,
                kind=HandoffKind.transfer,
                to_agency=A.social_protection,
                to_province="40",
                reason="the person lives in Nghệ An",
            ),
        )
        await a.execute_update(
            CaseWorkflow.respond_handoff, RespondHandoff(actor=SP_40, handoff_id="h1", accept=True)
        )
        sa = await a.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=SP_40,
                justification="verified at home",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        sb = await b.query(CaseWorkflow.state)
        await h.events(sa.case_id, sa.last_event_seq)
        await h.events(sb.case_id, sb.last_event_seq)
        end = await ts_env.get_current_time() + timedelta(minutes=1)

        async with db_pool.acquire() as conn:
            received = {
                p: sorted(r["case_id"] for r in await repo.received_cases(conn, p, start, end))
                for p in ("20", "40", None)
            }
            assert received == {
                "20": [sa.case_id],
                "40": [sb.case_id],
                None: sorted([sa.case_id, sb.case_id]),
            }
            moved = {p: await repo.transfers(conn, p, start, end) for p in ("20", "40", None)}
            assert moved == {
                "20": {"transferred_out": 1, "transferred_in": 0},
                "40": {"transferred_out": 0, "transferred_in": 1},
                None: {"transferred_out": 1, "transferred_in": 1},
            }
            done = {
                p: Counter(
                    (r["case_id"], r["stage"])
                    for r in await repo.stage_completions(conn, p, start, end)
                )
                for p in ("20", "40", None)
            }
            assert done["20"] == Counter({(sa.case_id, "receive"): 1})
            assert done["40"] == Counter({(sa.case_id, "verify"): 1, (sb.case_id, "receive"): 1})
            assert done["20"] + done["40"] == done[None]
            esc = {
                p: {r["level"]: r["n"] for r in await repo.escalations(conn, p, start, end)}
                for p in ("20", "40", None)
            }
            assert esc["20"] == {1: 1, 2: 1} and esc["40"] == {
                1: 1,
                2: 1,
            }  # A escalated in 20, B in 40
            assert esc[None] == {1: 2, 2: 2}
            open_at_end = {
                p: {r["stage"]: r["n"] for r in await repo.open_counts(conn, p, end)}
                for p in ("20", "40", None)
            }
            assert open_at_end == {
                "20": {},
                "40": {"identify": 1, "verify": 1},
                None: {"identify": 1, "verify": 1},
            }
            # half-way (before the transfer) A was open in 20
            mid = t0 + timedelta(days=2)
            assert {r["stage"]: r["n"] for r in await repo.open_counts(conn, "20", mid)} == {
                "verify": 1
            }
            k20 = await kpi.compute(conn, "20", start, end)
            k40 = await kpi.compute(conn, "40", start, end)
            ratios = {k.id: k for k in k20.ratios}
            assert (
                ratios["reports_classified"].denominator == 1
                and ratios["reports_classified"].numerator == 1
            )
            assert {(c.stage, c.agency) for c in k20.deadline_compliance} == {
                ("receive", "border_guard")
            }
            assert {(c.stage, c.agency) for c in k40.deadline_compliance} == {
                ("receive", "hotline"),
                ("verify", "social_protection"),
            }
            r20 = await reports.build(conn, ReportKind.ad_hoc, "20", start, end, "en", end)
            r40 = await reports.build(conn, ReportKind.ad_hoc, "40", start, end, "en", end)
            national = await reports.build(conn, ReportKind.ad_hoc, None, start, end, "en", end)
        assert (r20["received"], r40["received"], national["received"]) == (1, 1, 2)
        assert r20["transfers"] == {"transferred_out": 1, "transferred_in": 0}
        assert r40["transfers"] == {"transferred_out": 0, "transferred_in": 1}
        assert r20["open_by_stage"] == [] and sum(x["count"] for x in r40["open_by_stage"]) == 2
        rows = reports.rows(reports.suppressed(r40, False), "en")
        assert ("transfers", "transferred_in", "count", 1) in rows
        html = reports.to_html(reports.suppressed(r20, True), "vi")
        assert "Chuyển sang tỉnh khác" in html
