"""Auditors: history, state as of a past time, tamper evidence (API and `nrm audit verify`)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from services.oversight import cli
from shared.config import Settings
from shared.contract import Classification, Decide, ReceiveDecision, VerifyDecision, VerifyResult
from shared.domain import AgencyRole, Channel, Role
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow


async def _case_with_three_events(h, ts_env):
    cid = new_case_id()
    handle = await h.open(facts(cid))
    await h.events(cid, 1)
    await ts_env.sleep(timedelta(hours=1))
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.hotline),
            justification="caller describes recruitment abroad",
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected, channel=Channel.hotline_111
            ),
        ),
    )
    await h.events(cid, 2)
    await ts_env.sleep(timedelta(days=1))
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.social_protection),
            justification="police reply confirms the report",
            decision=VerifyDecision(result=VerifyResult.confirmed),
        ),
    )
    events = await h.events(cid, 3)
    return cid, handle, events


async def test_history_as_of_and_access(ts_env, db_pool, ring, task_queue):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid, handle, events = await _case_with_three_events(h, ts_env)
        assert [e["kind"] for e in events] == ["case_opened", "stage_decided", "stage_decided"]
        auditor = auth(ring, Role.auditor, province="*", user="aud-1")

        r = await api.get(f"/cases/{cid}/history", headers=auditor)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["total"] == 3 and body["next_offset"] is None
        assert [
            (e["seq"], e["kind"], e["actor_user_id"], e["actor_agency"]) for e in body["items"]
        ] == [
            (1, "case_opened", "hotline-officer", "hotline"),
            (2, "stage_decided", "hotline-officer", "hotline"),
            (3, "stage_decided", "social_protection-officer", "social_protection"),
        ]
        assert body["items"][1]["reason"] == "caller describes recruitment abroad"
        assert all(e["policy_version"] == "VN-2026.11-1" for e in body["items"])
        page = (await api.get(f"/cases/{cid}/history?limit=2&offset=0", headers=auditor)).json()
        assert len(page["items"]) == 2 and page["next_offset"] == 2

        # as-of: between events 1 and 2 the case was in receive; after event 3 in identify
        t1, t2, t3 = (e["occurred_at"] for e in events)
        r = await api.get(
            f"/cases/{cid}/as-of",
            params={"at": (t1 + timedelta(minutes=30)).isoformat()},
            headers=auditor,
        )
        assert r.status_code == 200, r.text
        assert r.json()["event_seq"] == 1 and r.json()["state"]["stage"] == "receive"
        r = await api.get(
            f"/cases/{cid}/as-of",
            params={"at": (t2 + timedelta(hours=2)).isoformat()},
            headers=auditor,
        )
        assert r.json()["event_seq"] == 2 and r.json()["state"]["stage"] == "verify"
        r = await api.get(f"/cases/{cid}/as-of", params={"at": t3.isoformat()}, headers=auditor)
        assert r.json()["event_seq"] == 3 and r.json()["state"]["stage"] == "identify"
        r = await api.get(
            f"/cases/{cid}/as-of",
            params={"at": (t1 - timedelta(seconds=1)).isoformat()},
            headers=auditor,
        )
        assert r.status_code == 404 and "no events yet" in r.json()["detail"]
        r = await api.get(
            f"/cases/{cid}/as-of", params={"at": "2026-01-01T00:00:00"}, headers=auditor
        )
        assert r.status_code == 422 and r.json()["detail"].startswith("at:")

        # access: own-province supervisor and auditor yes; caseworker, other province, no token: no
        assert (
            await api.get(f"/cases/{cid}/history", headers=auth(ring, Role.supervisor))
        ).status_code == 200
        assert (
            await api.get(f"/cases/{cid}/history", headers=auth(ring, Role.auditor))
        ).status_code == 200
        assert (
            await api.get(f"/cases/{cid}/history", headers=auth(ring, Role.caseworker))
        ).status_code == 403
        assert (
            await api.get(f"/cases/{cid}/history", headers=auth(ring, Role.auditor, province="79"))
        ).status_code == 403
        assert (await api.get(f"/cases/{cid}/history")).status_code == 401
        assert (await api.get("/cases/case-unknown/history", headers=auditor)).status_code == 404
        await handle.terminate()


async def test_tampered_event_is_detected(
    ts_env, db_pool, db_url, ring, task_queue, tmp_path, capsys
):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid, handle, _ = await _case_with_three_events(h, ts_env)
        other, other_handle, _ = await _case_with_three_events(h, ts_env)
        auditor = auth(ring, Role.auditor, province="*", user="aud-1")
        r = await api.get("/audit/verify", params={"case_id": cid}, headers=auditor)
        assert r.status_code == 200 and r.json()["ok"] is True
        [res] = r.json()["results"]
        assert res["case_id"] == cid and res["events"] >= 3 and res["first_broken_seq"] is None

        # the append-only trigger refuses the edit ...
        async with db_pool.acquire() as conn:
            try:
                await conn.execute(
                    "UPDATE oversight.case_events SET reason = 'x' WHERE case_id = $1 AND seq = 2",
                    cid,
                )
                raise AssertionError("append-only trigger did not fire")
            except Exception as exc:
                assert "append-only" in str(exc)
            # ... so a database administrator disables it and rewrites the reason of event 2
            await conn.execute(
                "ALTER TABLE oversight.case_events DISABLE TRIGGER case_events_no_update"
            )
            await conn.execute(
                "UPDATE oversight.case_events SET reason = 'nothing to see here' "
                "WHERE case_id = $1 AND seq = 2",
                cid,
            )
            await conn.execute(
                "ALTER TABLE oversight.case_events ENABLE TRIGGER case_events_no_update"
            )

        r = await api.get("/audit/verify", params={"case_id": cid}, headers=auditor)
        res = r.json()
        assert res["ok"] is False and res["broken"][0]["first_broken_seq"] == 2
        assert res["broken"][0]["problem"] == "event content does not match its hash"
        r = await api.get("/audit/verify", headers=auditor)  # every case
        res = r.json()
        assert res["checked"] == 2 and [b["case_id"] for b in res["broken"]] == [cid]

        # the CLI says the same and exits 1
        keyring = tmp_path / "keyring.json"
        ring.save(keyring)
        settings = Settings(database_url=db_url, keyring_file=keyring)
        code = await cli._verify(
            db_url, settings, argparse.Namespace(case_id=None, all=True, province=None)
        )
        out = capsys.readouterr().out
        assert code == 1
        assert f"{cid}: BROKEN at seq 2: event content does not match its hash" in out
        assert "2 case(s) checked, 1 broken" in out
        code = await cli._verify(
            db_url, settings, argparse.Namespace(case_id=other, all=False, province=None)
        )
        assert code == 0 and f"{other}: ok (" in capsys.readouterr().out
        await handle.terminate()
        await other_handle.terminate()
