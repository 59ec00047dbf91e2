"""Verification over HTTP against the real CaseWorkflow (time-skipping server) and real PostgreSQL."""

from __future__ import annotations

from shared.domain import AgencyRole, Channel, Role, Stage, TraffickingStatus
from tests.helpers.verification_stack import PROVINCE, auth, stack

A = AgencyRole
EVIDENCE = [
    {
        "kind": "statement_of_person",
        "source": "provincial police interview",
        "date": "2026-01-02",
        "reference": "BB-12/2026",
        "description": "consistent account of recruitment",
    }
]


async def test_claim_assign_verify(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        st = await s.to_verify(cid)
        sp = auth(ring, A.social_protection)
        # 403: police are not the verify owner for a hotline case, and not a participant
        r = await s.ver.post(f"/cases/{cid}/claim", json={}, headers=auth(ring, A.police))
        assert r.status_code == 403
        # 403: auditors never act
        r = await s.ver.post(
            f"/cases/{cid}/claim", json={}, headers=auth(ring, A.social_protection, Role.auditor)
        )
        assert r.status_code == 403 and "requires role" in r.json()["detail"]
        # 403: other province
        r = await s.ver.post(
            f"/cases/{cid}/claim", json={}, headers=auth(ring, A.social_protection, province="79")
        )
        assert r.status_code == 403
        # 409: stale version
        r = await s.ver.post(
            f"/cases/{cid}/claim", json={"expected_version": st.version + 5}, headers=sp
        )
        assert r.status_code == 409 and "stale" in r.json()["detail"]
        # 422: wrong field
        r = await s.ver.post(f"/cases/{cid}/claim", json={"expected_version": -1}, headers=sp)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "expected_version"
        r = await s.ver.post(f"/cases/{cid}/claim", json={"surprise": 1}, headers=sp)
        assert r.status_code == 422
        # 404: unknown case
        r = await s.ver.post("/cases/case-doesnotexist/claim", json={}, headers=sp)
        assert r.status_code == 404
        # happy path: claim, with an idempotency key (a retry returns the same state)
        r = await s.ver.post(
            f"/cases/{cid}/claim",
            json={"expected_version": st.version},
            headers={**sp, "Idempotency-Key": "claim-1"},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["assignee"] == "social_protection-1" and body["stage"] == "verify"
        r2 = await s.ver.post(
            f"/cases/{cid}/claim",
            json={"expected_version": st.version},
            headers={**sp, "Idempotency-Key": "claim-1"},
        )
        assert r2.status_code == 200 and r2.json()["version"] == body["version"]
        # 409: another caseworker cannot claim a claimed stage
        r = await s.ver.post(
            f"/cases/{cid}/claim", json={}, headers=auth(ring, A.social_protection, user="sp-2")
        )
        assert r.status_code == 409
        # assign: a caseworker cannot assign to someone else (403), a supervisor can
        r = await s.ver.post(f"/cases/{cid}/assign", json={"assignee_user_id": "sp-2"}, headers=sp)
        assert r.status_code == 403
        r = await s.ver.post(
            f"/cases/{cid}/assign",
            json={"assignee_user_id": "sp-2"},
            headers=auth(ring, A.social_protection, Role.supervisor, user="sp-sup"),
        )
        assert r.status_code == 200 and r.json()["assignee"] == "sp-2"
        r = await s.ver.post(f"/cases/{cid}/assign", json={}, headers=sp)
        assert r.status_code == 422 and "assignee_user_id" in str(r.json())
        # verification decision: bad picklist value, then confirmed
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "maybe", "justification": "xyz"},
            headers=sp,
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "result"
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "confirmed", "justification": "joint check with police"},
            headers=sp,
        )
        assert r.status_code == 200, r.text
        assert r.json()["stage"] == "identify" and r.json()["owner_agency"] == "police"
        # 409: the verify stage is over
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "confirmed", "justification": "again"},
            headers=auth(ring, A.police),
        )
        assert r.status_code == 409


async def test_unfounded_verification_closes(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_verify(cid)
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "unfounded", "justification": "no grounds"},
            headers=auth(ring, A.social_protection),
        )
        assert r.status_code == 200 and r.json()["stage"] == "closed"


async def test_identification_with_evidence(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_identify(cid)
        police = auth(ring, A.police)
        # 422: victim without evidence; bad evidence kind; future date; bad deciding org
        base = {
            "status": "ActualVictimOfTrafficking",
            "deciding_org": "Police",
            "justification": "grounds found",
        }
        r = await s.ver.post(f"/cases/{cid}/identification", json=base, headers=police)
        assert r.status_code == 422 and "evidence" in str(r.json())
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "evidence": [{**EVIDENCE[0], "kind": "rumour"}]},
            headers=police,
        )
        assert r.status_code == 422 and "kind" in str(r.json()["detail"][0]["loc"])
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "evidence": [{**EVIDENCE[0], "date": "2999-01-01"}]},
            headers=police,
        )
        assert r.status_code == 422 and "future" in str(r.json())
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "deciding_org": "Astrologer", "evidence": EVIDENCE},
            headers=police,
        )
        assert r.status_code == 422
        # 403 from the workflow side: social protection no longer owns the stage... and is a participant
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "evidence": EVIDENCE},
            headers=auth(ring, A.social_protection),
        )
        assert r.status_code == 403
        # nothing half-written: the rejected decision left no evidence rows
        assert await db_pool.fetchval("SELECT count(*) FROM verification.evidence_items") == 0
        # 409 stale: evidence rolled back too
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "evidence": EVIDENCE, "expected_version": 0},
            headers=police,
        )
        assert r.status_code == 409
        assert await db_pool.fetchval("SELECT count(*) FROM verification.evidence_items") == 0
        # happy path (case already safe: rescue is skipped, protection next)
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            json={**base, "evidence": EVIDENCE * 2},
            headers={**police, "Idempotency-Key": "ident-1"},
        )
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["case"]["trafficking_status"] == "ActualVictimOfTrafficking"
        assert out["case"]["stage"] == "protect" and len(out["evidence_ids"]) == 2
        st = await s.state(cid)
        ident = next(x for x in st.stages if x.stage == Stage.identify)
        assert [e.evidence_id for e in ident.decision.evidence] == out["evidence_ids"]  # type: ignore[union-attr]
        # encrypted at rest
        raw = await db_pool.fetchrow(
            "SELECT source, reference FROM verification.evidence_items LIMIT 1"
        )
        assert b"police" not in raw["source"] and b"BB-12" not in raw["reference"]
        # readable by police; not by legal aid (403 section), even as a reader of the case
        r = await s.ver.get(f"/cases/{cid}/evidence?sort=-date", headers=police)
        assert r.status_code == 200 and r.json()["total"] == 2
        assert r.json()["items"][0]["reference"] == "BB-12/2026"
        r = await s.ver.get(f"/cases/{cid}/evidence?kind=statement_of_witness", headers=police)
        assert r.json()["total"] == 0
        r = await s.ver.get(
            f"/cases/{cid}/evidence", headers=auth(ring, A.legal_aid, Role.supervisor)
        )
        assert r.status_code == 403 and "evidence" in r.json()["detail"]
        r = await s.ver.get(f"/cases/{cid}/evidence?limit=0", headers=police)
        assert r.status_code == 422


async def test_rescue_operation_and_protection_refusal(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case(already_safe=False)
        other = await s.open_case()
        await s.to_protect(cid)  # not already safe: identification leads to rescue
        assert (await s.state(cid)).stage == Stage.rescue
        police = auth(ring, A.police)
        plan = {"planned_for": "2026-03-05T22:00:00+07:00", "location": "karaoke bar, ward X"}
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations", json=plan, headers=auth(ring, A.social_protection)
        )
        assert r.status_code == 403
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations",
            json={**plan, "planned_for": "2026-03-05T22:00:00"},
            headers=police,
        )
        assert r.status_code == 422  # naive datetime
        r = await s.ver.post(f"/cases/{cid}/rescue-operations", json=plan, headers=police)
        assert r.status_code == 201, r.text
        op = r.json()
        assert op["status"] == "planned" and op["location"] == "karaoke bar, ward X"
        # outcome: not_found keeps the case in rescue
        done = {"outcome": "not_found", "justification": "premises empty"}
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/op-nope/complete", json=done, headers=police
        )
        assert r.status_code == 404
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/{op['operation_id']}/complete",
            json={**done, "persons": [{"case_id": other, "relation": "existing"}]},
            headers=police,
        )
        assert r.status_code == 422
        # second operation: rescued, with another person linked
        r = await s.ver.post(f"/cases/{cid}/rescue-operations", json=plan, headers=police)
        op2 = r.json()["operation_id"]
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/{op['operation_id']}/complete",
            json=done,
            headers=police,
        )
        assert r.status_code == 200 and r.json()["case"]["stage"] == "rescue"
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/{op['operation_id']}/complete",
            json=done,
            headers=police,
        )
        assert r.status_code == 409
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/{op2}/complete",
            headers=police,
            json={
                "outcome": "rescued",
                "justification": "two persons found",
                "persons": [{"case_id": other, "relation": "existing"}],
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["case"]["stage"] == "protect"
        assert r.json()["operation"]["persons"] == [{"case_id": other, "relation": "existing"}]
        r = await s.ver.get(f"/cases/{cid}/rescue-operations?status=done", headers=police)
        assert r.json()["total"] == 2
        # protection: invalid combinations are 422 before anything is written
        sp = auth(ring, A.social_protection)
        for bad in (
            {"justification": "none"},
            {"declined": True, "justification": "refused"},
            {"measures": ["teleport"], "justification": "x y z"},
            {
                "measures": ["guard"],
                "declined": True,
                "justification": "x y z",
                "refusal_document": {"signed_on": "2026-01-01", "reference": "CK-1"},
            },
        ):
            r = await s.ver.post(f"/cases/{cid}/protection", json=bad, headers=sp)
            assert r.status_code == 422, bad
        r = await s.ver.post(
            f"/cases/{cid}/protection",
            headers=sp,
            json={
                "declined": True,
                "justification": "person declined in writing",
                "refusal_document": {"signed_on": "2026-01-08", "reference": "CK-03/2026"},
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["case"]["stage"] == "reintegrate" and r.json()["refusal_document_id"]
        st = await s.state(cid)
        prot = next(x for x in st.stages if x.stage == Stage.protect)
        assert prot.decision.refusal_document_ref == r.json()["refusal_document_id"]  # type: ignore[union-attr]
        # two operations, both done, and one written refusal (ids only in the workflow)
        counts = await db_pool.fetchrow(
            "SELECT (SELECT count(*) FROM verification.rescue_operations WHERE case_id = $1) AS ops,"
            " (SELECT count(*) FROM verification.rescue_operations WHERE case_id = $1"
            "  AND status = 'planned') AS open_ops,"
            " (SELECT count(*) FROM verification.protection_refusals WHERE case_id = $1) AS refusals",
            cid,
        )
        assert (counts["ops"], counts["open_ops"], counts["refusals"]) == (2, 0, 1)


async def test_rescue_not_needed_and_interim_identification(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case(already_safe=False)
        await s.to_protect(cid, TraffickingStatus.PossibleVictimOfTrafficking)
        st = await s.state(cid)
        assert st.stage == Stage.identify  # interim decision: identification goes on
        police = auth(ring, A.police)
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/not-needed",
            json={"justification": "safe now"},
            headers=police,
        )
        assert (
            r.status_code == 409 and "identify" in r.json()["detail"]
        )  # wrong stage: the workflow refuses
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            headers=police,
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "evidence": EVIDENCE,
                "justification": "confirmed by witness",
            },
        )
        assert r.status_code == 200 and r.json()["case"]["stage"] == "rescue"
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/not-needed",
            json={"justification": "safe now"},
            headers=police,
        )
        assert r.status_code == 200 and r.json()["stage"] == "protect"
        assert st.province == PROVINCE


# ---- issue 15 items 3 and 4: protection from day one, rescue when it happens -----------------------
async def test_police_decide_protection_measures_from_receipt(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case(channel=Channel.rescue_operation)
        url = f"/cases/{cid}/protection-measures"
        ok = {"measures": ["confidential_location"], "justification": "recruiter knows the family"}
        # 403: protection measures belong to the police (police, border guard, coast guard)
        r = await s.ver.post(url, json=ok, headers=auth(ring, A.social_protection, Role.supervisor))
        assert r.status_code == 403 and "police" in r.json()["detail"]
        # 422 naming the field, before anything is sent to the workflow
        police_sup = auth(ring, A.police, Role.supervisor, user="police-sup")
        for bad, field in (
            ({"measures": [], "justification": "x y z"}, "measures"),
            ({"measures": ["teleport"], "justification": "x y z"}, "measures"),
            ({"measures": ["guard", "guard"], "justification": "x y z"}, "measures"),
            ({"measures": ["guard"]}, "justification"),
        ):
            r = await s.ver.post(url, json=bad, headers=police_sup)
            assert r.status_code == 422 and field in str(r.json()["detail"]), bad
        # receive (the hotline's stage): a police supervisor decides at once; the stage stays
        before = await s.state(cid)
        r = await s.ver.post(url, json=ok, headers=police_sup)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["case"]["stage"] == "receive" and body["case"]["owner_agency"] == "hotline"
        assert body["case"]["version"] == before.version + 1
        assert [(p["stage"], p["measures"], p["agency"]) for p in body["protections"]] == [
            ("receive", ["confidential_location"], "police")
        ]
        # verify, owned by the police for a rescued person: a police caseworker, with a retry key
        st = await s.to_verify(cid)
        assert st.stage == Stage.verify and st.owner_agency == A.police
        police = auth(ring, A.police)
        relatives = {"measures": ["protection_of_relatives", "guard"], "justification": "threats"}
        r = await s.ver.post(
            url, json={**relatives, "expected_version": st.version + 2}, headers=police
        )
        assert r.status_code == 409 and "stale" in r.json()["detail"]
        keyed = {**police, "Idempotency-Key": "protect-relatives-1"}
        r = await s.ver.post(url, json=relatives, headers=keyed)
        again = await s.ver.post(url, json=relatives, headers=keyed)
        assert r.status_code == again.status_code == 200, r.text
        assert again.json()["case"]["version"] == r.json()["case"]["version"]
        assert r.json()["case"]["stage"] == "verify"
        assert [p["stage"] for p in again.json()["protections"]] == ["receive", "verify"]
        st = await s.state(cid)
        assert st.stage == Stage.verify and len(st.protections) == 2
        events = await s.workers.events(cid, st.last_event_seq)
        assert [
            (e["stage"], e["actor_user_id"]) for e in events if e["kind"] == "protection_recorded"
        ] == [
            ("receive", "police-sup"),
            ("verify", "police-1"),
        ]
        # a closed case takes no more measures
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "unfounded", "justification": "no grounds"},
            headers=police,
        )
        assert r.status_code == 200 and r.json()["stage"] == "closed"
        r = await s.ver.post(url, json=ok, headers=police)
        assert r.status_code == 409 and "closed" in r.json()["detail"]


async def test_rescue_completed_before_identification_is_not_asked_again(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case(already_safe=False, channel=Channel.rescue_operation)
        st = await s.to_verify(cid)
        assert st.owner_agency == A.police
        police = auth(ring, A.police)
        plan = {"planned_for": "2026-03-05T22:00:00+07:00", "location": "karaoke bar, ward X"}
        r = await s.ver.post(f"/cases/{cid}/rescue-operations", json=plan, headers=police)
        assert r.status_code == 201, r.text
        op = r.json()["operation_id"]
        done = {"outcome": "rescued", "justification": "found during the raid"}
        complete = f"/cases/{cid}/rescue-operations/{op}/complete"
        r = await s.ver.post(
            complete, json=done, headers=auth(ring, A.social_protection, Role.supervisor)
        )
        assert r.status_code == 403 and "police" in r.json()["detail"]
        # verify stage: the outcome is recorded in the case's history, the stage does not move
        r = await s.ver.post(complete, json=done, headers=police)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["case"]["stage"] == "verify" and body["operation"]["status"] == "done"
        assert body["rescue_recorded"]["operation_ref"] == op
        assert body["rescue_recorded"]["outcome"] == "rescued"
        assert body["rescue_recorded"]["stage"] == "verify"
        r = await s.ver.post(complete, json=done, headers=police)
        assert r.status_code == 409  # the operation is done
        st = await s.state(cid)
        events = await s.workers.events(cid, st.last_event_seq)
        assert [e["stage"] for e in events if e["kind"] == "rescue_recorded"] == ["verify"]
        # identification is not skipped: it runs, and then the rescue stage is not asked again
        r = await s.ver.post(
            f"/cases/{cid}/verification",
            json={"result": "confirmed", "justification": "joint check"},
            headers=police,
        )
        assert r.status_code == 200 and r.json()["stage"] == "identify"
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            headers=police,
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "evidence": EVIDENCE,
                "justification": "rescuer report and statement",
            },
        )
        assert r.status_code == 200, r.text
        assert r.json()["case"]["stage"] == "protect"
        st = await s.state(cid)
        rescue = next(x for x in st.stages if x.stage == Stage.rescue)
        assert not rescue.skipped and rescue.decided_by == "police-1"
        assert rescue.decision.operation_ref == op  # type: ignore[union-attr]
        r = await s.ver.post(
            f"/cases/{cid}/rescue-operations/not-needed",
            json={"justification": "safe now"},
            headers=police,
        )
        # no rescue decision is asked any more: the case is in protect, social protection's stage
        assert r.status_code == 403 and "stage protect" in r.json()["detail"]


async def test_a_stale_index_saying_yes_does_not_let_a_caller_act(
    ts_env, db_pool, db_url, ring, task_queue
):
    """Action endpoints check the caller against the case index before the Update (no Query to the
    workflow). The index only lets a request through to the workflow, whose validator decides again on
    the live state: a row that wrongly names the caller's agency as owner gets the workflow's 403, and
    nothing is applied. A row saying no (or no row) still gets the precise reason from the workflow."""
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        st = await s.to_verify(cid)
        police = auth(ring, A.police)
        r = await s.ver.post(f"/cases/{cid}/claim", json={}, headers=police)
        assert r.status_code == 403
        assert r.json()["detail"] == "you may not act on this case (agency or jurisdiction)"
        # the index now (wrongly) says the police own the case and take part in it
        await db_pool.execute(
            "UPDATE common.case_index SET owner_agency = 'police', participants = '{police}' "
            "WHERE case_id = $1",
            cid,
        )
        r = await s.ver.post(f"/cases/{cid}/claim", json={}, headers=police)
        assert r.status_code == 403, r.text
        assert "police" in r.json()["detail"] and "may not act" in r.json()["detail"]
        r = await s.ver.post(
            f"/cases/{cid}/assign",
            json={"assignee_user_id": "police-2"},
            headers=auth(ring, A.police, Role.supervisor, province="79"),
        )
        assert r.status_code == 403  # another province: the index's row is no help either
        after = await s.state(cid)
        assert after.version == st.version and after.assignee is None
        # no row at all (the index lost it): the workflow is asked, and the owner acts as before
        await db_pool.execute("DELETE FROM common.case_index WHERE case_id = $1", cid)
        r = await s.ver.post(
            f"/cases/{cid}/claim", json={}, headers=auth(ring, A.social_protection)
        )
        assert r.status_code == 200, r.text
        assert r.json()["assignee"] == "social_protection-1"
        row = await db_pool.fetchrow(
            "SELECT assignee, owner_agency FROM common.case_index WHERE case_id = $1", cid
        )
        assert row is not None and row["assignee"] == "social_protection-1"
        assert row["owner_agency"] == "social_protection"
