"""Personal data outside intake (issue 10 item 3): verification's and support's reads apply intake's rules.
Oversight roles see the values masked unless they give a break-glass reason; every read, masked or not,
lands in the one access log (common.access_log) before the data is returned; the values are encrypted at rest."""

from __future__ import annotations

from typing import Any

import pytest

from shared.access_log import list_reads
from shared.crypto import CryptoError, KeyRing
from shared.domain import AgencyRole, Role, Stage
from tests.helpers.verification_stack import auth, stack

A = AgencyRole
REASON = "complaint 2026/41 from the victim's lawyer"
PERP = {
    "roles": ["RecruiterOrIntermediary"],
    "name": "Đinh Công Tráng",
    "aliases": ["Tráng Sẹo"],
    "phones": ["0987 654 321"],
    "recruitment_channel": "Zalo: Tuyển thợ may",
    "role_details": "hứa việc làm",
}


def auditor(ring: KeyRing) -> dict[str, str]:
    return auth(ring, A.steering_committee, Role.auditor, user="auditor-1", province="*")


async def last_read(db_pool: Any, ring: KeyRing, case_id: str) -> dict[str, Any]:
    rows = await list_reads(db_pool, ring, case_id=case_id, limit=1)
    assert rows, f"no access-log line for {case_id}"
    return rows[0]


async def reads_of(db_pool: Any, ring: KeyRing, case_id: str) -> int:
    return len(await list_reads(db_pool, ring, case_id=case_id, limit=200))


async def test_perpetrators_and_evidence_are_masked_for_auditors_and_every_read_is_logged(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_identify(cid)
        police = auth(ring, A.police, user="police-7")
        r = await s.ver.post(f"/cases/{cid}/perpetrators", json=PERP, headers=police)
        assert r.status_code == 201, r.text
        r = await s.ver.post(
            f"/cases/{cid}/identification",
            headers=police,
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "justification": "consistent statements",
                "evidence": [
                    {
                        "kind": "statement_of_person",
                        "source": "Lời khai tại đồn",
                        "date": "2026-01-05",
                        "reference": "BB-99/2026",
                        "description": "Ảnh hợp đồng",
                    }
                ],
            },
        )
        assert r.status_code == 200, r.text

        # an auditor without a reason: masked, and logged as a masked read
        r = await s.ver.get(f"/cases/{cid}/perpetrators", headers=auditor(ring))
        assert r.status_code == 200, r.text
        page = r.json()
        p = page["items"][0]
        assert page["masked"] is True
        assert p["name"] != PERP["name"] and p["name"].startswith("Đ") and "•" in p["name"]
        assert p["phones"] != PERP["phones"] and "654" not in p["phones"][0]
        assert p["aliases"][0] != "Tráng Sẹo" and p["recruitment_channel"].startswith("Z")
        assert p["role_details"] != "hứa việc làm" and p["roles"] == ["RecruiterOrIntermediary"]
        line = await last_read(db_pool, ring, cid)
        assert (
            line["service"],
            line["action"],
            line["sections"],
            line["masked"],
            line["break_glass"],
            line["user_id"],
            line["case_province"],
        ) == ("verification", "read_perpetrators", ["perpetrators"], True, False, "auditor-1", "01")

        # with a break-glass reason: unmasked, and the reason is in the log
        r = await s.ver.get(
            f"/cases/{cid}/perpetrators",
            headers=auditor(ring),
            params={"break_glass_reason": REASON},
        )
        assert r.status_code == 200, r.text
        assert r.json()["masked"] is False and r.json()["items"][0]["name"] == PERP["name"]
        assert r.json()["items"][0]["phones"] == PERP["phones"]
        line = await last_read(db_pool, ring, cid)
        assert (
            line["action"],
            line["masked"],
            line["break_glass"],
            line["break_glass_reason"],
        ) == ("read_perpetrators", False, True, REASON)

        # a police caseworker of the case: unmasked, logged
        r = await s.ver.get(f"/cases/{cid}/perpetrators", headers=police)
        assert r.json()["items"][0]["name"] == PERP["name"] and r.json()["masked"] is False
        line = await last_read(db_pool, ring, cid)
        assert (line["user_id"], line["agency"], line["masked"], line["break_glass"]) == (
            "police-7",
            "police",
            False,
            False,
        )

        # auditor + caseworker of an agency the case does not reach: still masked (holding both unmasks nothing)
        both = auth(ring, A.commune, Role.caseworker, Role.auditor, user="commune-auditor")
        r = await s.ver.get(f"/cases/{cid}/perpetrators", headers=both)
        assert r.status_code == 200 and r.json()["masked"] is True, r.text
        assert (await last_read(db_pool, ring, cid))["masked"] is True

        # a reason too short is refused, naming the field, and nothing is read or logged
        before = await reads_of(db_pool, ring, cid)
        r = await s.ver.get(
            f"/cases/{cid}/perpetrators",
            headers=auditor(ring),
            params={"break_glass_reason": "why"},
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "break_glass_reason"
        assert await reads_of(db_pool, ring, cid) == before

        # evidence: the same rules
        r = await s.ver.get(f"/cases/{cid}/evidence", headers=auditor(ring))
        ev = r.json()["items"][0]
        assert (
            r.json()["masked"] is True
            and ev["source"] != "Lời khai tại đồn"
            and ev["reference"] != "BB-99/2026"
        )
        assert (
            ev["kind"] == "statement_of_person" and ev["date"] == "2026-01-05"
        )  # what is not personal stays
        assert (await last_read(db_pool, ring, cid))["action"] == "read_evidence"
        r = await s.ver.get(f"/cases/{cid}/evidence", headers=police)
        assert r.json()["items"][0]["source"] == "Lời khai tại đồn"
        line = await last_read(db_pool, ring, cid)
        assert (line["action"], line["sections"], line["masked"]) == (
            "read_evidence",
            ["evidence"],
            False,
        )


async def test_rescue_locations_are_masked_for_auditors_and_every_read_is_logged(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case(already_safe=False)
        await s.to_protect(cid)
        assert (await s.state(cid)).stage == Stage.rescue
        police = auth(ring, A.police, user="police-8")
        plan = {
            "planned_for": "2026-03-05T22:00:00+07:00",
            "location": "Nhà nghỉ Phương Đông, phòng 12",
            "plan_notes": "Hai tổ phối hợp",
        }
        r = await s.ver.post(f"/cases/{cid}/rescue-operations", json=plan, headers=police)
        assert r.status_code == 201, r.text

        r = await s.ver.get(f"/cases/{cid}/rescue-operations", headers=auditor(ring))
        op = r.json()["items"][0]
        assert r.json()["masked"] is True
        assert (
            op["location"] != plan["location"]
            and op["location"].startswith("N")
            and "Phương" not in op["location"]
        )
        assert op["plan_notes"] != plan["plan_notes"] and op["status"] == "planned"
        line = await last_read(db_pool, ring, cid)
        assert (line["service"], line["action"], line["sections"], line["masked"]) == (
            "verification",
            "read_rescue_operations",
            ["evidence"],
            True,
        )

        r = await s.ver.get(
            f"/cases/{cid}/rescue-operations",
            headers=auditor(ring),
            params={"break_glass_reason": REASON},
        )
        assert r.json()["items"][0]["location"] == plan["location"]
        line = await last_read(db_pool, ring, cid)
        assert (line["masked"], line["break_glass_reason"]) == (False, REASON)

        r = await s.ver.get(f"/cases/{cid}/rescue-operations", headers=police)
        assert r.json()["items"][0]["location"] == plan["location"]
        line = await last_read(db_pool, ring, cid)
        assert (line["user_id"], line["masked"], line["break_glass"]) == ("police-8", False, False)
        raw = await db_pool.fetchrow(
            "SELECT location, plan_notes FROM verification.rescue_operations WHERE case_id = $1",
            cid,
        )
        assert (
            "Phương".encode() not in bytes(raw["location"])
            and b"phong" not in bytes(raw["location"]).lower()
        )


async def test_support_plans_services_and_consents_are_masked_for_auditors_and_every_read_is_logged(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        sp = auth(ring, A.social_protection, user="sp-3")
        plan = {
            "spl_Objectives": "Học nghề tại trung tâm Hoa Sen",
            "spl_ActionPlan": "Thăm nhà chị Lan hàng tuần",
            "spl_Type": ["SocialCare"],
            "spl_PlannedEndDate": "2027-12-31",
        }
        assert (
            await s.sup.post(f"/cases/{cid}/support-plan", json=plan, headers=sp)
        ).status_code == 201
        r = await s.sup.post(
            f"/cases/{cid}/services",
            headers=sp,
            json={
                "service_type": "essential_needs",
                "provider_agency": "social_protection",
                "delivered_on": "2026-01-03",
                "provider_name": "Bác sĩ Trịnh Văn Hòa",
                "note": "Đã cấp thuốc cho chị Lan",
            },
        )
        assert r.status_code == 201, r.text
        r = await s.sup.post(
            f"/cases/{cid}/consents",
            headers=sp,
            json={
                "purpose": "support",
                "granted": True,
                "document": {
                    "kind": "signed_form",
                    "signed_on": "2026-01-03",
                    "reference": "DY-LAN-0423",
                },
            },
        )
        assert r.status_code == 201, r.text

        r = await s.sup.get(f"/cases/{cid}/support-plan", headers=auditor(ring))
        got = r.json()["items"][0]
        assert r.json()["masked"] is True and got["spl_Objectives"] != plan["spl_Objectives"]
        assert got["spl_ActionPlan"] != plan["spl_ActionPlan"] and got["spl_Type"] == ["SocialCare"]
        line = await last_read(db_pool, ring, cid)
        assert (
            line["service"],
            line["action"],
            line["sections"],
            line["masked"],
            line["break_glass"],
        ) == ("support", "read_support_plan", ["support_plan"], True, False)
        r = await s.sup.get(
            f"/cases/{cid}/support-plan",
            headers=auditor(ring),
            params={"break_glass_reason": REASON},
        )
        assert r.json()["items"][0]["spl_Objectives"] == plan["spl_Objectives"]
        line = await last_read(db_pool, ring, cid)
        assert (line["masked"], line["break_glass_reason"]) == (False, REASON)
        r = await s.sup.get(f"/cases/{cid}/support-plan", headers=sp)
        assert r.json()["items"][0]["spl_ActionPlan"] == plan["spl_ActionPlan"]
        line = await last_read(db_pool, ring, cid)
        assert (line["user_id"], line["action"], line["masked"]) == (
            "sp-3",
            "read_support_plan",
            False,
        )

        r = await s.sup.get(f"/cases/{cid}/services", headers=auditor(ring))
        svc = r.json()["items"][0]
        assert (
            r.json()["masked"] is True
            and "Lan" not in svc["note"]
            and "Hòa" not in svc["provider_name"]
        )
        assert svc["service_type"] == "essential_needs"
        assert (await last_read(db_pool, ring, cid))["action"] == "read_services"
        r = await s.sup.get(f"/cases/{cid}/services", headers=sp)
        assert r.json()["items"][0]["provider_name"] == "Bác sĩ Trịnh Văn Hòa"
        assert (await last_read(db_pool, ring, cid))["masked"] is False

        r = await s.sup.get(f"/cases/{cid}/consents", headers=auditor(ring))
        assert (
            r.json()["masked"] is True
            and r.json()["history"][0]["document_reference"] != "DY-LAN-0423"
        )
        assert r.json()["current"] == {"support": True}
        line = await last_read(db_pool, ring, cid)
        assert (line["action"], line["masked"]) == ("read_consents", True)
        r = await s.sup.get(f"/cases/{cid}/consents", headers=sp)
        assert r.json()["history"][0]["document_reference"] == "DY-LAN-0423"

        # free text of services is encrypted at rest (provider name and note were plain text before)
        raw = await db_pool.fetchrow(
            "SELECT service_id, provider_name, note FROM support.services_delivered "
            "WHERE case_id = $1",
            cid,
        )
        assert (
            isinstance(raw["provider_name"], bytes) and "Hòa".encode() not in raw["provider_name"]
        )
        assert (
            ring.decrypt_field(
                raw["provider_name"], "services_delivered.provider_name", row=raw["service_id"]
            )
            == "Bác sĩ Trịnh Văn Hòa"
        )
        # bound to its row: the same ciphertext read as another service's does not decrypt
        with pytest.raises(CryptoError):
            ring.decrypt_field(
                raw["provider_name"], "services_delivered.provider_name", row="svc-other"
            )


async def test_handoff_reasons_are_masked_for_auditors_and_logged(
    ts_env, db_pool, db_url, ring, task_queue
):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        cid = await s.open_case()
        await s.to_reintegrate(cid)
        sp = auth(ring, A.social_protection, Role.caseworker, Role.supervisor, user="sp-sup")
        r = await s.sup.post(
            f"/cases/{cid}/legal-aid-referral",
            headers=sp,
            json={
                "reason": "chị Lan muốn kiện chủ xưởng đòi lương",
                "consent_override_reason": "urgent hearing next week",
            },
        )
        assert r.status_code == 201, r.text
        r = await s.sup.get(f"/cases/{cid}/handoffs", headers=auditor(ring))
        assert r.json()["masked"] is True and "Lan" not in r.json()["items"][0]["reason"]
        assert r.json()["items"][0]["to_agency"] == "legal_aid"
        line = await last_read(db_pool, ring, cid)
        assert (line["service"], line["action"], line["masked"]) == (
            "support",
            "read_handoffs",
            True,
        )
        r = await s.sup.get(f"/cases/{cid}/handoffs", headers=sp)
        assert "Lan" in r.json()["items"][0]["reason"]
        assert (await last_read(db_pool, ring, cid))["masked"] is False
