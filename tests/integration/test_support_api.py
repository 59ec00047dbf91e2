"""Support over HTTP against the real CaseWorkflow (time-skipping server) and real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role, Stage
from shared.temporal import ensure_search_attributes, make_data_converter
from tests.conftest import BIN
from tests.helpers.verification_stack import auth, stack

A = AgencyRole
PLAN = {
    "spl_Objectives": "safe housing, return to school, counselling",
    "spl_Type": ["SocialCare", "Education"],
    "spl_PlannedEndDate": "2027-12-31",
    "spl_ActionPlan": "weekly visits by the commune officer",
}
CONSENT_DOC = {"kind": "signed_form", "signed_on": "2026-01-03", "reference": "DY-07/2026"}


async def test_entitlements_by_status(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        sp = auth(ring, A.social_protection)
        suspected = await s.open_case()
        await s.to_verify(suspected)
        r = await s.sup.get(f"/cases/{suspected}/entitlements", headers=sp)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status_column"] == "suspected_in_vietnam"
        assert "".join(i["letter"] for i in body["items"] if i["entitled"] == "yes") == "abcdđeg"
        r = await s.sup.get(f"/cases/{suspected}/entitlements?only=no", headers=sp)
        assert [i["letter"] for i in r.json()["items"]] == ["h", "i", "k"]
        # the child with a suspected victim has what the person has until the person is identified
        r = await s.sup.get(
            f"/cases/{suspected}/entitlements?beneficiary=accompanying_child", headers=sp
        )
        assert r.json()["status_column"] == "suspected_in_vietnam"
        assert (
            "".join(i["letter"] for i in r.json()["items"] if i["entitled"] == "yes") == "abcdđeg"
        )
        abroad = await s.open_case(abroad=True)
        await s.to_verify(abroad)
        r = await s.sup.get(f"/cases/{abroad}/entitlements?only=yes", headers=sp)
        assert r.json()["status_column"] == "suspected_abroad"
        assert [i["service_type"] for i in r.json()["items"]] == [
            "essential_needs",
            "medical_care",
            "interpretation",
            "legal_advice",
        ]
        victim = await s.open_case()
        await s.to_reintegrate(victim)
        r = await s.sup.get(
            f"/cases/{victim}/entitlements?beneficiary=accompanying_child&only=no", headers=sp
        )
        assert r.json()["status_column"] == "child_with_victim"
        assert [i["letter"] for i in r.json()["items"]] == ["i", "k"]
        # 422 on a bad query value, 403 for another province, 401 without a token
        r = await s.sup.get(f"/cases/{victim}/entitlements?beneficiary=cousin", headers=sp)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "beneficiary"
        r = await s.sup.get(
            f"/cases/{victim}/entitlements", headers=auth(ring, A.social_protection, province="79")
        )
        assert r.status_code == 403
        r = await s.sup.get(f"/cases/{victim}/entitlements")
        assert r.status_code == 401


async def test_services_refused_when_not_entitled(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        sp = auth(ring, A.social_protection)
        cid = await s.open_case(abroad=True)
        await s.to_verify(cid)
        svc = {
            "service_type": "essential_needs",
            "provider_agency": "social_protection",
            "delivered_on": "2026-01-03",
        }
        # suspected abroad: legal aid (đ) is refused with the reason
        r = await s.sup.post(
            f"/cases/{cid}/services", json={**svc, "service_type": "legal_aid"}, headers=sp
        )
        assert r.status_code == 422
        assert r.json()["detail"].startswith("service_type: legal_aid (đ")
        assert "suspected_abroad" in r.json()["detail"]
        # bad inputs: picklist, future date, negative amount, unknown field, wrong content type
        for bad in (
            {**svc, "service_type": "spa_day"},
            {**svc, "delivered_on": "2999-01-01"},
            {**svc, "amount_vnd": -5},
            {**svc, "colour": "blue"},
            {**svc, "provider_agency": "fbi"},
        ):
            r = await s.sup.post(f"/cases/{cid}/services", json=bad, headers=sp)
            assert r.status_code == 422, bad
        r = await s.sup.post(
            f"/cases/{cid}/services",
            content=b"service_type=a",
            headers={**sp, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 422
        r = await s.sup.post(
            f"/cases/{cid}/services",
            content=b"x" * 3_000_000,
            headers={**sp, "Content-Type": "application/json"},
        )
        assert r.status_code == 413
        # police do not deliver support (section rule) -> 403
        r = await s.sup.post(f"/cases/{cid}/services", json=svc, headers=auth(ring, A.police))
        assert r.status_code == 403
        assert await db_pool.fetchval("SELECT count(*) FROM support.services_delivered") == 0
        # happy path
        r = await s.sup.post(
            f"/cases/{cid}/services",
            json={**svc, "note": "blanket and food"},
            headers={**sp, "Idempotency-Key": "svc-1"},
        )
        assert r.status_code == 201, r.text
        assert r.json()["letter"] == "a" and r.json()["entitled"] == "yes"
        r = await s.sup.post(
            f"/cases/{cid}/services",
            json={**svc, "note": "blanket and food"},
            headers={**sp, "Idempotency-Key": "svc-1"},
        )
        assert r.status_code == 201  # a retry writes nothing twice
        assert (await s.state(cid)).services_delivered == 1
        assert await db_pool.fetchval("SELECT count(*) FROM support.services_delivered") == 1
        raw = await db_pool.fetchval("SELECT note FROM support.services_delivered")
        assert b"blanket" not in raw


async def test_case_by_case_needs_supervisor_and_money(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        foreign = await s.open_case(foreign=True)
        await s.to_reintegrate(foreign)
        sp, sup = (
            auth(ring, A.social_protection),
            auth(ring, A.social_protection, Role.supervisor, user="sp-sup"),
        )
        svc = {
            "service_type": "medical_care",
            "provider_agency": "social_protection",
            "delivered_on": "2026-01-03",
        }
        r = await s.sup.post(f"/cases/{foreign}/services", json=svc, headers=sp)
        assert r.status_code == 422 and r.json()["detail"].startswith("supervisor_approval_reason")
        approved = {**svc, "supervisor_approval_reason": "urgent care, no insurance"}
        r = await s.sup.post(f"/cases/{foreign}/services", json=approved, headers=sp)
        assert r.status_code == 403
        r = await s.sup.post(f"/cases/{foreign}/services", json=approved, headers=sup)
        assert r.status_code == 201 and r.json()["approved_by"] == "sp-sup"
        r = await s.sup.post(
            f"/cases/{foreign}/services",
            json={**svc, "service_type": "travel_home", "amount_vnd": 100},
            headers=sup,
        )
        assert (
            r.status_code == 422 and "travel_home" in r.json()["detail"]
        )  # e: not for foreign victims
        victim = await s.open_case()
        await s.to_reintegrate(victim)
        money = {
            "service_type": "hardship_allowance",
            "provider_agency": "commune",
            "delivered_on": "2026-01-05",
        }
        r = await s.sup.post(f"/cases/{victim}/services", json=money, headers=sp)
        assert r.status_code == 422 and r.json()["detail"].startswith("amount_vnd")
        r = await s.sup.post(
            f"/cases/{victim}/services", json={**money, "amount_vnd": 1_500_000}, headers=sp
        )
        assert r.status_code == 201
        r = await s.sup.post(
            f"/cases/{victim}/services", json={**svc, "delivered_on": "2026-01-01"}, headers=sp
        )
        assert r.status_code == 201
        r = await s.sup.get(f"/cases/{victim}/services?sort=-amount_vnd", headers=sp)
        page = r.json()
        assert page["total"] == 2 and page["total_amount_vnd"] == 1_500_000
        assert page["items"][0]["service_type"] == "hardship_allowance"
        r = await s.sup.get(
            f"/cases/{victim}/services?service_type=medical_care&limit=1", headers=sp
        )
        assert r.json()["total"] == 1 and len(r.json()["items"]) == 1
        r = await s.sup.get(f"/cases/{victim}/services?sort=colour", headers=sp)
        assert r.status_code == 422
        r = await s.sup.get(
            f"/cases/{victim}/services", headers=auth(ring, A.police, Role.supervisor)
        )
        assert r.status_code == 403


@pytest_asyncio.fixture(loop_scope="session")
async def own_ts_env(ring: KeyRing) -> AsyncIterator[WorkflowEnvironment]:
    """A time-skipping server of its own: cases left by earlier tests in the shared `ts_env` can hold its
    clock, and this test needs to skip 31 days (the reflection and recovery period)."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=make_data_converter(ring),
        test_server_existing_path=str(BIN / "temporal-test-server"),
    )
    await ensure_search_attributes(env.client)
    yield env
    await env.shutdown()


async def test_support_plan_follow_ups_and_closure(own_ts_env, db_pool, db_url, ring, task_queue):
    ts_env = own_ts_env
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        sp = auth(ring, A.social_protection)
        # closure without a plan: 422
        r = await s.sup.post(f"/cases/{cid}/closure", json={"reason": "reintegrated"}, headers=sp)
        assert r.status_code == 422 and r.json()["detail"].startswith("plan_id")
        # plan: bad picklist, missing objectives
        r = await s.sup.post(
            f"/cases/{cid}/support-plan", json={**PLAN, "spl_Type": ["Astrology"]}, headers=sp
        )
        assert r.status_code == 422 and "spl_Type" in str(r.json()["detail"][0]["loc"])
        r = await s.sup.post(
            f"/cases/{cid}/support-plan",
            json={k: v for k, v in PLAN.items() if k != "spl_Objectives"},
            headers=sp,
        )
        assert r.status_code == 422 and "spl_Objectives" in str(r.json())
        r = await s.sup.post(f"/cases/{cid}/support-plan", json=PLAN, headers=auth(ring, A.police))
        assert r.status_code == 403
        r = await s.sup.post(f"/cases/{cid}/support-plan", json=PLAN, headers=sp)
        assert r.status_code == 201, r.text
        first = r.json()["plan_id"]
        r = await s.sup.post(
            f"/cases/{cid}/support-plan", json={**PLAN, "spl_Type": ["Livelihood"]}, headers=sp
        )
        second = r.json()["plan_id"]
        r = await s.sup.get(
            f"/cases/{cid}/support-plan", headers=auth(ring, A.womens_union, Role.supervisor)
        )
        plans = r.json()
        assert (
            plans["total"] == 2
            and plans["items"][0]["plan_id"] == second
            and plans["items"][0]["current"]
        )
        assert (
            plans["items"][1]["spl_Objectives"] == PLAN["spl_Objectives"]
            and not plans["items"][1]["current"]
        )
        assert first != second
        r = await s.sup.get(
            f"/cases/{cid}/support-plan", headers=auth(ring, A.police, Role.supervisor)
        )
        assert r.status_code == 403
        # follow-ups scheduled by the workflow
        r = await s.sup.get(f"/cases/{cid}/follow-ups?pending=true", headers=sp)
        ids = [f["follow_up_id"] for f in r.json()["items"]]
        assert len(ids) == 3
        r = await s.sup.post(
            f"/cases/{cid}/follow-ups/{ids[0]}", json={"outcome": "maybe"}, headers=sp
        )
        assert r.status_code == 422
        r = await s.sup.post(
            f"/cases/{cid}/follow-ups/fu-99m", json={"outcome": "done"}, headers=sp
        )
        assert r.status_code == 404
        r = await s.sup.post(
            f"/cases/{cid}/follow-ups/{ids[0]}",
            json={"outcome": "done", "note": "back at school"},
            headers=sp,
        )
        assert r.status_code == 200 and r.json()["outcome"] == "done" and r.json()["note_id"]
        r = await s.sup.post(
            f"/cases/{cid}/follow-ups/{ids[0]}", json={"outcome": "done"}, headers=sp
        )
        assert r.status_code == 409
        assert (
            await db_pool.fetchval("SELECT count(*) FROM support.follow_up_notes") == 1
        )  # rolled back
        # closure while follow-ups are pending: 409 from the workflow, plan end date untouched
        r = await s.sup.post(f"/cases/{cid}/closure", json={"reason": "reintegrated"}, headers=sp)
        assert r.status_code == 409 and "follow-ups" in r.json()["detail"]
        assert (
            await db_pool.fetchval("SELECT count(actual_end_date) FROM support.support_plans") == 0
        )
        for fid in ids[1:]:
            r = await s.sup.post(
                f"/cases/{cid}/follow-ups/{fid}", json={"outcome": "done"}, headers=sp
            )
            assert r.status_code == 200
        await ts_env.sleep(timedelta(days=31))  # past the reflection and recovery period
        r = await s.sup.post(
            f"/cases/{cid}/closure", json={"cas_Status": "Open", "reason": "x y z"}, headers=sp
        )
        assert r.status_code == 422
        r = await s.sup.post(
            f"/cases/{cid}/closure",
            json={"reason": "reintegrated", "plan_id": "plan-nope"},
            headers=sp,
        )
        assert r.status_code == 422
        r = await s.sup.post(
            f"/cases/{cid}/closure",
            json={
                "cas_Status": "ClosedReferred",
                "reason": "reintegrated, referred to vocational school",
            },
            headers=sp,
        )
        assert r.status_code == 200, r.text
        assert (
            r.json()["case"]["stage"] == Stage.closed.value
            and r.json()["case"]["status"] == "ClosedReferred"
        )
        assert r.json()["plan_id"] == second
        assert await db_pool.fetchval(
            "SELECT actual_end_date FROM support.support_plans WHERE plan_id = $1", second
        )
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM support.follow_up_notes WHERE case_id = $1", cid
            )
            == 3
        )


async def test_consent_and_legal_aid_referral(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        sp, la = auth(ring, A.social_protection), auth(ring, A.legal_aid)
        # no consent yet: the workflow refuses the referral (403)
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral", json={"reason": "unpaid wages claim"}, headers=sp
        )
        assert r.status_code == 403 and "consent" in r.json()["detail"]
        # consent input checks
        for bad in (
            {"purpose": "data_sharing", "granted": True, "document": CONSENT_DOC},
            {"purpose": "research", "granted": True, "agency": "police", "document": CONSENT_DOC},
            {"purpose": "marketing", "granted": True, "document": CONSENT_DOC},
            {"purpose": "support", "granted": True},
        ):
            r = await s.sup.post(f"/cases/{cid}/consents", json=bad, headers=sp)
            assert r.status_code == 422, bad
        r = await s.sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "agency": "legal_aid",
                "granted": True,
                "document": CONSENT_DOC,
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["current"] == {"data_sharing:legal_aid": True}
        # referral, and legal aid answers
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral", json={"reason": "unpaid wages claim"}, headers=sp
        )
        assert r.status_code == 201, r.text
        h = r.json()["handoff"]
        assert (
            h["state"] == "requested" and h["kind"] == "referral" and h["to_agency"] == "legal_aid"
        )
        r = await s.sup.post(
            f"/handoffs/{cid}/{h['handoff_id']}/respond", json={"accept": False}, headers=la
        )
        assert r.status_code == 422 and "reason" in str(r.json())
        r = await s.sup.post(
            f"/handoffs/{cid}/{h['handoff_id']}/respond",
            json={"accept": True},
            headers=auth(ring, A.womens_union),
        )
        assert r.status_code == 403
        r = await s.sup.post(
            f"/handoffs/{cid}/{h['handoff_id']}/respond", json={"accept": True}, headers=sp
        )
        assert r.status_code == 403  # only the invited agency answers
        r = await s.sup.post(f"/handoffs/{cid}/h404/respond", json={"accept": True}, headers=la)
        assert r.status_code == 404
        r = await s.sup.post(
            f"/handoffs/{cid}/{h['handoff_id']}/respond", json={"accept": True}, headers=la
        )
        assert r.status_code == 200 and r.json()["handoff"]["state"] == "accepted"
        assert "legal_aid" in (await s.state(cid)).participants
        r = await s.sup.get(f"/cases/{cid}/handoffs?state=accepted", headers=la)
        assert r.status_code == 200 and r.json()["total"] == 1
        # withdrawal of data sharing with the women's union stops a waiting handoff to it
        r = await s.sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "agency": "womens_union",
                "granted": True,
                "document": CONSENT_DOC,
            },
        )
        await s.handle(cid).execute_update("request_handoff", _handoff_cmd(A.womens_union))
        r = await s.sup.post(
            f"/cases/{cid}/consents",
            headers={**sp, "Idempotency-Key": "withdraw-1"},
            json={"purpose": "data_sharing", "agency": "womens_union", "granted": False},
        )
        assert r.status_code == 201 and r.json()["current"]["data_sharing:womens_union"] is False
        r = await s.sup.get(f"/cases/{cid}/handoffs?to_agency=womens_union", headers=sp)
        assert r.json()["items"][0]["state"] == "revoked"
        # ... and legal aid: withdraw, then a new referral is refused
        await s.handle(cid).execute_update("revoke_handoff", _revoke_cmd(h["handoff_id"]))
        r = await s.sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={"purpose": "data_sharing", "agency": "legal_aid", "granted": False},
        )
        assert r.status_code == 201
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral", json={"reason": "second claim"}, headers=sp
        )
        assert r.status_code == 403 and "consent" in r.json()["detail"]
        # a supervisor may override with a reason (audited); a caseworker may not
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral",
            headers=sp,
            json={"reason": "second claim", "consent_override_reason": "court deadline"},
        )
        assert r.status_code == 403
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral",
            headers=auth(ring, A.social_protection, Role.supervisor, user="sup-1"),
            json={"reason": "second claim", "consent_override_reason": "court deadline tomorrow"},
        )
        assert r.status_code == 201 and r.json()["handoff"]["consent_overridden"] is True
        # history of consents, newest first, filterable
        r = await s.sup.get(f"/cases/{cid}/consents?purpose=data_sharing", headers=sp)
        out = r.json()
        assert out["total"] == 4 and out["history"][0]["granted"] is False
        assert out["history"][-1]["document_reference"] == "DY-07/2026"
        raw = await db_pool.fetchval(
            "SELECT document_reference FROM support.consent_records "
            "WHERE document_reference IS NOT NULL LIMIT 1"
        )
        assert b"DY-07" not in raw


def _handoff_cmd(to: AgencyRole):  # type: ignore[no-untyped-def]
    from shared.contract import HandoffKind, RequestHandoff
    from tests.helpers.verification_stack import wf_actor

    return RequestHandoff(
        actor=wf_actor(A.social_protection),
        kind=HandoffKind.referral,
        to_agency=to,
        reason="livelihood loan",
    )


def _revoke_cmd(handoff_id: str):  # type: ignore[no-untyped-def]
    from shared.contract import RevokeHandoff
    from tests.helpers.verification_stack import wf_actor

    return RevokeHandoff(
        actor=wf_actor(A.social_protection), handoff_id=handoff_id, reason="no longer needed"
    )
