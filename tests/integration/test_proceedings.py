"""Criminal proceedings (issue 15 item 1): the crime report and the decisions of police and procuracy on
it, recorded per case and linked to its suspected perpetrators; encrypted at rest, non-personal facts in
common.criminal_proceedings for the KPIs, each record an audit note with its id only, every read
access-logged, and every bad request a 4xx naming the field."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from services.verification.proceedings import today
from shared.domain import AgencyRole, Role
from tests.helpers.verification_stack import auth, stack

A = AgencyRole


async def test_proceedings_recorded_in_order_by_the_right_bodies(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_identify(cid)  # police own identification
        police = auth(ring, A.police)
        procuracy = auth(ring, A.prosecution, Role.supervisor)
        court = auth(ring, A.court, Role.supervisor)
        r = await s.ver.post(
            f"/cases/{cid}/perpetrators",
            json={"roles": ["RecruiterOrIntermediary"], "name": "Nguyễn Văn A"},
            headers=police,
        )
        assert r.status_code == 201, r.text
        per = r.json()["perpetrator_id"]
        d0 = today() - timedelta(days=60)
        report = {
            "report_number": "TB-112/2026",
            "report_received_on": d0.isoformat(),
            "perpetrator_ids": [per],
            "notes": "tin báo của gia đình",
        }

        # 422 naming the field; 403 for bodies that do not record crime reports
        for bad, field in (
            ({**report, "perpetrator_ids": ["per-nobody"]}, "perpetrator_ids"),
            (
                {**report, "report_received_on": (today() + timedelta(days=2)).isoformat()},
                "report_received_on",
            ),
        ):
            r = await s.ver.post(f"/cases/{cid}/proceedings", json=bad, headers=police)
            assert r.status_code == 422 and r.json()["detail"].startswith(f"{field}:"), r.text
        for bad in (
            {**report, "court": "x"},
            {k: v for k, v in report.items() if k != "report_number"},
        ):
            r = await s.ver.post(f"/cases/{cid}/proceedings", json=bad, headers=police)
            assert r.status_code == 422, bad
        for who in (auth(ring, A.social_protection), procuracy):
            r = await s.ver.post(f"/cases/{cid}/proceedings", json=report, headers=who)
            assert r.status_code == 403 and "record a crime report" in r.json()["detail"]
        r = await s.ver.post(f"/cases/{cid}/proceedings", json=report)
        assert r.status_code == 401

        r = await s.ver.post(f"/cases/{cid}/proceedings", json=report, headers=police)
        assert r.status_code == 201, r.text
        pid = r.json()["proceeding_id"]
        assert r.json()["perpetrator_ids"] == [per] and r.json()["steps"] == []
        assert r.json()["report_number"] == "TB-112/2026"
        steps = f"/cases/{cid}/proceedings/{pid}/steps"

        def step(name: str, outcome: str, days: int, **extra: str) -> dict[str, str]:
            return {
                "step": name,
                "outcome": outcome,
                "on": (d0 + timedelta(days=days)).isoformat(),
                **extra,
            }

        # out of order: 409; wrong body: 403; unknown step / outcome: 422; unknown proceeding: 404
        r = await s.ver.post(steps, json=step("prosecution", "indicted", 5), headers=procuracy)
        assert r.status_code == 409 and r.json()["detail"].startswith("step:")
        r = await s.ver.post(steps, json=step("decision", "opened", 3), headers=procuracy)
        assert r.status_code == 403
        for bad in (step("arrest", "opened", 3), step("decision", "indicted", 3)):
            assert (await s.ver.post(steps, json=bad, headers=police)).status_code == 422
        r = await s.ver.post(
            f"/cases/{cid}/proceedings/proc-nothing/steps",
            json=step("decision", "opened", 3),
            headers=police,
        )
        assert r.status_code == 404
        # a date before the report: 422 naming `on`
        r = await s.ver.post(steps, json=step("decision", "opened", -1), headers=police)
        assert r.status_code == 422 and r.json()["detail"].startswith("on:")

        r = await s.ver.post(
            steps, json=step("decision", "opened", 3, reference="QĐ-KT 45/2026"), headers=police
        )
        assert r.status_code == 200, r.text
        r = await s.ver.post(steps, json=step("decision", "not_opened", 4), headers=police)
        assert r.status_code == 409  # recorded once
        r = await s.ver.post(steps, json=step("investigation", "solved", 2), headers=police)
        assert r.status_code == 422 and r.json()["detail"].startswith("on:")  # before the decision
        r = await s.ver.post(steps, json=step("investigation", "solved", 30), headers=police)
        assert r.status_code == 200, r.text
        r = await s.ver.post(steps, json=step("prosecution", "indicted", 40), headers=police)
        assert r.status_code == 403  # the procuracy indicts
        r = await s.ver.post(steps, json=step("prosecution", "indicted", 40), headers=court)
        assert r.status_code == 403  # not the court either
        r = await s.ver.post(
            steps,
            json=step("prosecution", "indicted", 40, reference="CT 12/2026"),
            headers=procuracy,
        )
        assert r.status_code == 200, r.text
        r = await s.ver.post(steps, json=step("trial", "convicted", 55), headers=court)
        assert r.status_code == 200, r.text  # the court records its verdict
        assert [(x["step"], x["outcome"]) for x in r.json()["steps"]] == [
            ("decision", "opened"),
            ("investigation", "solved"),
            ("prosecution", "indicted"),
            ("trial", "convicted"),
        ]
        assert r.json()["steps"][2]["reference"] == "CT 12/2026"
        assert r.json()["steps"][2]["recorded_agency"] == "prosecution"
        assert r.json()["steps"][3]["recorded_agency"] == "court"

        # a suspect identified during the investigation: linked later, once recorded on the case
        links = f"/cases/{cid}/proceedings/{pid}/perpetrators"
        r = await s.ver.post(links, json={"perpetrator_ids": ["per-nobody"]}, headers=police)
        assert r.status_code == 422 and r.json()["detail"].startswith("perpetrator_ids:")
        assert (
            await s.ver.post(links, json={"perpetrator_ids": []}, headers=police)
        ).status_code == 422
        r = await s.ver.post(
            f"/cases/{cid}/perpetrators", json={"roles": ["Transporter"]}, headers=police
        )
        per2 = r.json()["perpetrator_id"]
        r = await s.ver.post(links, json={"perpetrator_ids": [per2]}, headers=procuracy)
        assert r.status_code == 403
        r = await s.ver.post(
            f"/cases/{cid}/proceedings/proc-nothing/perpetrators",
            json={"perpetrator_ids": [per2]},
            headers=police,
        )
        assert r.status_code == 404
        r = await s.ver.post(links, json={"perpetrator_ids": [per2, per]}, headers=police)
        assert r.status_code == 200 and r.json()["perpetrator_ids"] == sorted([per, per2])

        # encrypted at rest; the floor's read model holds keys and dates only
        raw = await db_pool.fetchrow(
            "SELECT report_number, notes FROM verification.criminal_proceedings WHERE proceeding_id = $1",
            pid,
        )
        assert b"TB-112" not in raw["report_number"] and "tin báo".encode() not in raw["notes"]
        ref = await db_pool.fetchval(
            "SELECT reference FROM verification.criminal_proceeding_steps WHERE step = 'prosecution'"
        )
        assert b"CT 12" not in ref
        facts = await db_pool.fetchrow(
            "SELECT * FROM common.criminal_proceedings WHERE proceeding_id = $1", pid
        )
        assert dict(facts) | {"updated_at": None} == {
            "proceeding_id": pid,
            "case_id": cid,
            "province": "01",
            "report_received_on": d0,
            "decision": "opened",
            "decided_on": d0 + timedelta(days=3),
            "investigation": "solved",
            "investigated_on": d0 + timedelta(days=30),
            "prosecution": "indicted",
            "prosecuted_on": d0 + timedelta(days=40),
            "verdict": "convicted",
            "tried_on": d0 + timedelta(days=55),
            "updated_at": None,
        }

        # the audit log: one note per record, in the perpetrators section, with its id and no content
        notes = [e["data"] for e in await _notes(s, cid, 8)]
        assert {n["section"] for n in notes} == {"perpetrators"}
        assert [n["note_id"] for n in notes] == [
            per,
            pid,
            f"{pid}.decision",
            f"{pid}.investigation",
            f"{pid}.prosecution",
            f"{pid}.trial",
            per2,
            f"{pid}.perpetrators",
        ]

        # reads: police data readers; auditors masked unless they break glass; every read logged
        r = await s.ver.get(f"/cases/{cid}/proceedings", headers=police)
        assert r.status_code == 200 and r.json()["total"] == 1 and r.json()["masked"] is False
        assert r.json()["items"][0]["notes"] == "tin báo của gia đình"
        r = await s.ver.get(f"/cases/{cid}/proceedings", headers=procuracy)
        assert r.status_code == 200
        auditor = auth(ring, A.steering_committee, Role.auditor, province="*")
        r = await s.ver.get(f"/cases/{cid}/proceedings", headers=auditor)
        item = r.json()["items"][0]
        assert r.json()["masked"] is True and item["report_number"] != "TB-112/2026"
        assert (
            item["steps"][0]["reference"] != "QĐ-KT 45/2026"
            and item["steps"][0]["outcome"] == "opened"
        )
        r = await s.ver.get(
            f"/cases/{cid}/proceedings",
            params={"break_glass_reason": "court order 12/2026, case review"},
            headers=auditor,
        )
        assert (
            r.json()["masked"] is False and r.json()["items"][0]["report_number"] == "TB-112/2026"
        )
        for agency in (A.social_protection, A.legal_aid):
            r = await s.ver.get(
                f"/cases/{cid}/proceedings", headers=auth(ring, agency, Role.supervisor)
            )
            assert r.status_code == 403 and "perpetrators" in r.json()["detail"]
        r = await s.ver.get(
            f"/cases/{cid}/proceedings",
            headers=auth(ring, A.police, Role.supervisor, province="79"),
        )
        assert r.status_code == 403
        assert (await s.ver.get(f"/cases/{cid}/proceedings")).status_code == 401
        assert (
            await s.ver.get(f"/cases/{cid}/proceedings?limit=0", headers=police)
        ).status_code == 422
        logged = await db_pool.fetch(
            "SELECT user_id FROM common.access_log WHERE case_id = $1 AND action = 'read_criminal_proceedings'",
            cid,
        )
        # the four step answers, the link's answer and the four list reads that were answered (a refused
        # read logs nothing)
        assert len(logged) == 4 + 1 + 4


async def _notes(s: Any, case_id: str, n: int) -> list[Any]:
    """The case's note_added audit events once `n` have landed (the audit activity runs after the Update)."""
    rows: list[Any] = []
    for _ in range(200):
        rows = [e for e in await s.workers.events(case_id) if e["kind"] == "note_added"]
        if len(rows) >= n:
            break
        await asyncio.sleep(0.05)
    return rows
