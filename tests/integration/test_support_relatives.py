"""Issue 15 item 5: relatives as beneficiaries, the child of a suspected victim, an identification made under
the 2011 law (Law 53/2024 Art. 63), and the financial-hardship condition of free legal aid."""

from __future__ import annotations

from shared.domain import AgencyRole, Role
from tests.helpers.verification_stack import auth, stack

A = AgencyRole
SERVICE = {"provider_agency": "social_protection", "delivered_on": "2026-01-03"}
CONSENT_DOC = {"kind": "signed_form", "signed_on": "2026-01-03", "reference": "DY-07/2026"}


async def test_a_relative_is_supported_case_by_case_without_entering_the_registry(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        sp = auth(ring, A.social_protection)
        boss = auth(ring, A.social_protection, Role.supervisor)
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        r = await s.sup.get(f"/cases/{cid}/entitlements?beneficiary=relative", headers=sp)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["status_column"] == "relative" and "local_practice" in body["explanation"]
        by = {i["letter"]: i["entitled"] for i in body["items"]}
        assert {k for k, v in by.items() if v == "case_by_case"} == set("abcdđg")
        assert {k for k, v in by.items() if v == "no"} == set("ehik")
        persons = await db_pool.fetchval("SELECT count(*) FROM intake.persons")
        # a caseworker alone may not grant it; a supervisor with a reason may
        svc = {**SERVICE, "service_type": "psychological_support", "beneficiary": "relative"}
        r = await s.sup.post(f"/cases/{cid}/services", json=svc, headers=sp)
        assert r.status_code == 422 and "supervisor_approval_reason" in r.json()["detail"]
        r = await s.sup.post(
            f"/cases/{cid}/services",
            json={**svc, "supervisor_approval_reason": "mother of the victim, in shock on return"},
            headers=boss,
        )
        assert r.status_code == 201, r.text
        assert r.json()["beneficiary"] == "relative" and r.json()["entitled"] == "case_by_case"
        r = await s.sup.post(
            f"/cases/{cid}/services",
            json={**svc, "service_type": "general_education"},
            headers=boss,
        )
        assert r.status_code == 422 and "relative" in r.json()["detail"]
        # the relative is not a person in the victim registry
        assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == persons


async def test_identified_under_the_2011_law(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        sp = auth(ring, A.social_protection)
        boss = auth(ring, A.social_protection, Role.supervisor)
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        r = await s.sup.get(f"/cases/{cid}/entitlements?only=yes", headers=sp)
        assert r.json()["regime"] == "law_53_2024" and len(r.json()["items"]) == 10
        # an identification from the day Law 53/2024 came into force is not a 2011 one
        r = await s.sup.put(
            f"/cases/{cid}/legacy-identification",
            json={"identified_on": "2025-07-01"},
            headers=sp,
        )
        assert r.status_code == 422 and "identified_on" in str(r.json()["detail"])
        r = await s.sup.put(
            f"/cases/{cid}/legacy-identification",
            json={"identified_on": "2019-04-12", "document_reference": "QĐ 45/2019/CA"},
            headers=sp,
        )
        assert r.status_code == 200, r.text
        assert r.json()["regime"] == "law_66_2011"
        raw = await db_pool.fetchval(
            "SELECT document_reference FROM support.legacy_identifications WHERE case_id = $1", cid
        )
        assert b"45/2019" not in raw  # encrypted at rest
        r = await s.sup.get(f"/cases/{cid}/entitlements", headers=sp)
        body = r.json()
        assert body["regime"] == "law_66_2011" and "Art. 63" in body["explanation"]
        assert {i["entitled"] for i in body["items"]} == {"case_by_case"}
        svc = {**SERVICE, "service_type": "essential_needs"}
        r = await s.sup.post(f"/cases/{cid}/services", json=svc, headers=sp)
        assert r.status_code == 422 and "Law 66/2011" in r.json()["detail"]
        r = await s.sup.post(
            f"/cases/{cid}/services",
            json={**svc, "supervisor_approval_reason": "shelter under Decree 09/2013 Art. 19"},
            headers=boss,
        )
        assert r.status_code == 201, r.text
        # the record is in the case's history (a support-plan note), and police may not write it
        state = await s.state(cid)
        assert state.version > 0
        r = await s.sup.put(
            f"/cases/{cid}/legacy-identification",
            json={"identified_on": "2019-04-12"},
            headers=auth(ring, A.police),
        )
        assert r.status_code == 403


async def test_legal_aid_referral_records_financial_hardship(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        sp = auth(ring, A.social_protection)
        cid = await s.open_case()
        await s.to_reintegrate(cid)
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
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral",
            json={"reason": "unpaid wages claim", "financial_hardship": "maybe"},
            headers=sp,
        )
        assert r.status_code == 422 and "financial_hardship" in str(r.json()["detail"])
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral",
            json={"reason": "unpaid wages claim", "financial_hardship": True},
            headers=sp,
        )
        assert r.status_code == 201, r.text
        assert r.json()["financial_hardship"] is True
        row = await db_pool.fetchrow(
            "SELECT * FROM support.legal_aid_referrals WHERE case_id = $1", cid
        )
        assert row["handoff_id"] == r.json()["handoff"]["handoff_id"] and row["financial_hardship"]
