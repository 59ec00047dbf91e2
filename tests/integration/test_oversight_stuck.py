"""Supervisors: the stuck-case list (every filter), the board, and acting from there."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime, timedelta

from services.oversight import cli
from services.oversight.audit_log import readable_event
from shared.contract import (
    Classification,
    ConsentPurpose,
    Decide,
    HandoffKind,
    ReceiveDecision,
    RecordConsent,
    RequestHandoff,
    VerifyDecision,
    VerifyResult,
)
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.temporal import OVERSIGHT_TASK_QUEUE
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import Clock, auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

SUPERVISOR_ID = "sup-province-01"


def _receive(
    agency: AgencyRole,
    channel: Channel = Channel.hotline_111,
    classification: Classification = Classification.trafficking_suspected,
) -> Decide:
    return Decide(
        actor=actor(agency),
        justification="classified from the report",
        decision=ReceiveDecision(classification=classification, channel=channel),
    )


async def _ids(api, headers, **params) -> list[str]:
    r = await api.get("/stuck", params={"check_temporal": "false", **params}, headers=headers)
    assert r.status_code == 200, r.text
    return [i["case_id"] for i in r.json()["items"]]


async def test_stuck_board_and_actions(ts_env, db_pool, db_url, ring, task_queue, capsys):
    clock = Clock(ts_env)
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring, clock) as api,
    ):
        handles = {}
        t0 = await clock.sync()

        async def open_case(name: str, **kw):
            cid = new_case_id()
            handles[name] = await h.open(facts(cid, **kw))
            await h.events(cid, 1)
            return cid

        # t0: A verify (3 days), B child verify (2 days), C identify (20 days), D verify + waiting handoff,
        # E returnee left in receive (1 day), H closed (not relevant)
        a = await open_case("A", now=t0)
        await handles["A"].execute_update(CaseWorkflow.decide, _receive(AgencyRole.hotline))
        b = await open_case("B", age_band=AgeBand.under_16, now=t0)
        await handles["B"].execute_update(CaseWorkflow.decide, _receive(AgencyRole.hotline))
        c = await open_case("C", now=t0)
        await handles["C"].execute_update(CaseWorkflow.decide, _receive(AgencyRole.hotline))
        await handles["C"].execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(AgencyRole.social_protection),
                justification="verified with police",
                decision=VerifyDecision(result=VerifyResult.confirmed),
            ),
        )
        d = await open_case("D", now=t0)
        await handles["D"].execute_update(CaseWorkflow.decide, _receive(AgencyRole.hotline))
        sp = actor(AgencyRole.social_protection)
        await handles["D"].execute_update(
            CaseWorkflow.record_consent,
            RecordConsent(
                actor=sp,
                purpose=ConsentPurpose.data_sharing,
                granted=True,
                agency=AgencyRole.legal_aid,
            ),
        )
        await handles["D"].execute_update(
            CaseWorkflow.request_handoff,
            RequestHandoff(
                actor=sp,
                kind=HandoffKind.referral,
                to_agency=AgencyRole.legal_aid,
                reason="free legal aid",
            ),
        )
        e = await open_case(
            "E",
            channel=Channel.embassy_repatriation,
            abroad=True,
            opener=AgencyRole.embassy,
            now=t0,
        )
        hc = await open_case("H", now=t0)
        await handles["H"].execute_update(
            CaseWorkflow.decide,
            _receive(AgencyRole.hotline, classification=Classification.not_relevant),
        )
        await h.events(hc, 2)
        await h.events(d, 5)

        # 3.5 days later: A, D (level 1), B, E (level 2) are overdue; C is idle
        await ts_env.sleep(timedelta(days=3, hours=12))
        await h.events(e, 4)  # opened, reminder, level 1, level 2
        await clock.sync()
        f = await open_case("F", now=clock())  # fresh: receive due within 24 hours
        g = await open_case(
            "G", now=clock()
        )  # fresh, and its audit write will fail (technically stuck)
        sup = auth(ring, Role.supervisor, user=SUPERVISOR_ID)

        # --- each reason -----------------------------------------------------------------
        overdue = await _ids(api, sup, reason="overdue")
        assert set(overdue) == {a, b, d, e}
        assert overdue[0] == e  # the most late first (receive was due at t0 + 1 day)
        r = await api.get(
            "/stuck", params={"reason": "overdue", "check_temporal": "false"}, headers=sup
        )
        lates = [i["late_by_hours"] for i in r.json()["items"]]
        assert lates == sorted(lates, reverse=True) and 59 < lates[0] < 61  # E: 2.5 days late
        item_b = next(i for i in r.json()["items"] if i["case_id"] == b)
        assert item_b["categories"] == ["child", "domestic"] and "overdue" in item_b["reasons"]
        assert set(await _ids(api, sup, reason="due_soon", due_within_hours=48)) == {f, g}
        assert set(await _ids(api, sup, reason="due_soon", due_within_hours=1)) == set()
        assert await _ids(api, sup, reason="handoff_waiting") == [d]
        assert await _ids(api, sup, reason="idle", idle_days=3) == [c]
        assert set(await _ids(api, sup, reason="escalated")) == {a, b, d, e}
        assert set(await _ids(api, sup, reason="escalated", level=2)) == {b, e}
        assert set(await _ids(api, sup, reason="escalated", level=1)) == {a, d}
        # several reasons: any of them
        assert set(await _ids(api, sup, reason=["handoff_waiting", "idle"], idle_days=3)) == {c, d}
        # all reasons by default (idle after 7 days: none): H, closed, never shows
        assert set(await _ids(api, sup)) == {a, b, d, e}
        assert set(await _ids(api, sup, due_within_hours=48)) == {a, b, d, e, f, g}

        # --- filters -----------------------------------------------------------------------
        assert await _ids(api, sup, category="child") == [b]
        assert await _ids(api, sup, category="abroad") == [e]
        assert set(await _ids(api, sup, category=["adult", "domestic"])) == {a, d}
        assert await _ids(api, sup, agency="embassy") == [e]
        assert set(await _ids(api, sup, agency="social_protection")) == {a, b, d}
        assert await _ids(
            api, sup, reason="idle", idle_days=3, agency="police", stage="identify"
        ) == [c]
        assert await _ids(api, sup, stage="receive") == [e]
        assert set(await _ids(api, sup, stage="receive", due_within_hours=48)) == {e, f, g}

        # --- pagination ----------------------------------------------------------------------
        p1 = (
            await api.get(
                "/stuck",
                params={"reason": "overdue", "limit": 2, "check_temporal": "false"},
                headers=sup,
            )
        ).json()
        p2 = (
            await api.get(
                "/stuck",
                params={"reason": "overdue", "limit": 2, "offset": 2, "check_temporal": "false"},
                headers=sup,
            )
        ).json()
        assert p1["next_offset"] == 2 and len(p1["items"]) == 2 and len(p2["items"]) == 2
        assert [i["case_id"] for i in p1["items"] + p2["items"]] == overdue

        # --- technically stuck: G's next audit write fails (a foreign row took its seq) -------
        async with db_pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO oversight.case_events (event_id, case_id, seq, occurred_at, kind, actor_user_id, stage,
                       policy_version, state, prev_hash, hash)
                   SELECT 'foreign', case_id, 2, occurred_at, 'foreign', 'x', stage, policy_version, state, hash, 'x'
                   FROM oversight.case_events WHERE case_id = $1 AND seq = 1""",
                g,
            )
        await handles["G"].execute_update(CaseWorkflow.decide, _receive(AgencyRole.hotline))
        for _ in range(100):
            desc = await handles["G"].describe()
            if any(pa.attempt > 1 for pa in desc.raw_description.pending_activities):
                break
            await asyncio.sleep(0.1)
        r = await api.get(
            "/stuck", params={"reason": "technical", "due_within_hours": 48}, headers=sup
        )
        assert r.status_code == 200, r.text
        tech = r.json()["items"]
        assert [i["case_id"] for i in tech] == [g]
        problem = tech[0]["technical"][0]
        assert problem["kind"] == "activity_failing" and problem["attempt"] > 1
        assert (
            problem["detail"].startswith("record_case_events:")
            and "expected 3" in problem["detail"]
        )
        assert "technical" in tech[0]["reasons"]
        # checked on the page only: the ordinary list also reports it when G is on the page
        r = await api.get(
            "/stuck", params={"stage": "receive", "due_within_hours": 48}, headers=sup
        )
        marked = {i["case_id"]: i["technical"] for i in r.json()["items"]}
        assert marked[g] and not marked[e] and not marked[f]
        await handles["G"].terminate()

        # --- board ---------------------------------------------------------------------------
        r = await api.get("/board", headers=sup)
        assert r.status_code == 200, r.text
        cells = {
            (x["stage"], x["owner_agency"]): (x["open"], x["overdue"]) for x in r.json()["cells"]
        }
        assert cells == {
            ("verify", "social_protection"): (3, 3),
            ("identify", "police"): (1, 0),
            ("receive", "embassy"): (1, 1),
            ("receive", "hotline"): (2, 0),
        }
        assert r.json()["total_open"] == 7 and r.json()["total_overdue"] == 4

        # --- access ----------------------------------------------------------------------------
        assert (await api.get("/stuck", headers=auth(ring, Role.caseworker))).status_code == 403
        assert (await api.get("/board", headers=auth(ring, Role.auditor))).status_code == 403
        r = await api.get("/stuck", params={"province": "79"}, headers=sup)
        assert r.status_code == 403 and r.json()["detail"].startswith("province:")
        national = auth(ring, Role.supervisor, province="*", user="sup-national")
        assert set(await _ids(api, national, province="01", reason="overdue")) == {a, b, d, e}
        assert set(await _ids(api, auth(ring, Role.supervisor, province="79"))) == set()

        # --- actions -----------------------------------------------------------------------------
        r = await api.post(
            f"/cases/{a}/reassign",
            json={"assignee_user_id": "sp-officer-9"},
            headers={**sup, "X-Request-ID": "req-reassign-1"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["assignee"] == "sp-officer-9"
        ev = (await h.events(a, 5))[-1]
        assert await _ids(api, sup, assignee="sp-officer-9") == [a]
        assert (ev["kind"], ev["actor_user_id"], ev["actor_agency"], ev["request_id"]) == (
            "stage_assigned",
            SUPERVISOR_ID,
            "social_protection",
            "req-reassign-1",
        )

        before = datetime.fromisoformat(r.json()["deadline_at"])
        r = await api.post(
            f"/cases/{a}/extend-deadline",
            json={"extend_by": "P2D", "reason": "waiting for police reply"},
            headers=sup,
        )
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["deadline_at"]) == before + timedelta(days=2)
        assert (await handles["A"].query(CaseWorkflow.state)).escalation_level == 0
        ev = (await h.events(a, 6))[-1]
        assert (
            ev["kind"] == "deadline_extended"
            and readable_event(ring, ev)["reason"] == "waiting for police reply"
        )
        r = await api.post(f"/cases/{a}/extend-deadline", json={"extend_by": "P2D"}, headers=sup)
        assert r.status_code == 422

        # escalate, idempotent on the key
        key = {"Idempotency-Key": "esc-c-1"}
        r1 = await api.post(
            f"/cases/{c}/escalate", json={"reason": "idle for days"}, headers={**sup, **key}
        )
        r2 = await api.post(
            f"/cases/{c}/escalate", json={"reason": "idle for days"}, headers={**sup, **key}
        )
        assert r1.status_code == r2.status_code == 200 and r2.json() == r1.json()
        assert (await handles["C"].query(CaseWorkflow.state)).escalation_level == 1
        evs = await h.events(c, 4)
        assert [x["kind"] for x in evs].count("escalated_by_supervisor") == 1

        # reopen the closed case
        r = await api.post(
            f"/cases/{hc}/reopen",
            json={"to_stage": "receive", "reason": "new information"},
            headers=sup,
        )
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "Active" and r.json()["stage"] == "receive"
        r = await api.post(
            f"/cases/{a}/reopen",
            json={"to_stage": "receive", "reason": "new information"},
            headers=sup,
        )
        assert r.status_code == 409 and "closed" in r.json()["detail"]

        # the actor comes from the token only; caseworkers and other provinces are refused
        r = await api.post(
            f"/cases/{c}/escalate",
            json={"reason": "x" * 5, "actor": {"user_id": "someone"}},
            headers=sup,
        )
        assert r.status_code == 422
        r = await api.post(
            f"/cases/{c}/escalate", json={"reason": "because"}, headers=auth(ring, Role.caseworker)
        )
        assert r.status_code == 403
        r = await api.post(
            f"/cases/{c}/escalate",
            json={"reason": "because"},
            headers=auth(ring, Role.supervisor, province="79"),
        )
        assert r.status_code == 403
        r = await api.post("/cases/case-none/escalate", json={"reason": "because"}, headers=sup)
        assert r.status_code == 404

        # --- nrm stuck: the same list in a terminal table -------------------------------------
        # (the CLI uses the wall clock; the time-skipping server runs ahead of it, so ask for a wide window)
        args = argparse.Namespace(
            province="01",
            limit=50,
            offset=0,
            reason=["handoff_waiting"],
            due_within_hours=24,
            idle_days=7,
            json=False,
        )
        out = await cli._stuck(db_url, args)
        assert [o["case_id"] for o in out] == [d]
        assert "handoff_waiting" in out[0]["reasons"]
        print(cli.table(list(out[0]), [list(o.values()) for o in out]))
        assert d in capsys.readouterr().out
        assert datetime.now(UTC) < clock()  # sanity: the server clock is ahead of the wall clock

        for hd in handles.values():
            try:
                await hd.terminate()
            except Exception:  # noqa: S110 - already terminated (G)
                pass
    assert OVERSIGHT_TASK_QUEUE
