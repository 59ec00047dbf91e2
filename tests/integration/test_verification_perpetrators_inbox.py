"""Suspected perpetrators and linked cases (blind indexes), and the inbox (read from common.case_index)."""

from __future__ import annotations

import asyncio

from services.verification.repository import normalise_phone
from shared.domain import AgencyRole, Role
from tests.helpers.verification_stack import auth, stack

A = AgencyRole
RING_MEMBER = {
    "roles": ["RecruiterOrIntermediary"],
    "role_details": "offered factory job in Lạng Sơn",
    "name": "Nguyễn Văn A",
    "aliases": ["Anh Tư"],
    "phones": ["+84 912 345 678"],
    "recruitment_channel": "Facebook: Việc làm lương cao",
    "nationality": "VN",
}


def test_phone_normalisation() -> None:
    assert (
        normalise_phone("+84 912 345 678")
        == normalise_phone("0912.345.678")
        == normalise_phone("0084912345678")
    )
    assert normalise_phone("0912345678") == "0912345678"


async def test_perpetrators_and_linked_cases(ts_env, db_pool, db_url, ring, task_queue):
    async with stack(ts_env, db_pool, db_url, ring, task_queue) as s:
        c1, c2, c3 = await s.open_case(), await s.open_case(), await s.open_case()
        for c in (c1, c2, c3):
            await s.to_identify(c)  # police own identification
        police = auth(ring, A.police)
        # 422: wrong picklist value, empty roles, bad phone, unknown field
        for bad in (
            {**RING_MEMBER, "roles": ["Mastermind"]},
            {**RING_MEMBER, "roles": []},
            {**RING_MEMBER, "phones": ["call me"]},
            {**RING_MEMBER, "eye_colour": "brown"},
        ):
            r = await s.ver.post(f"/cases/{c1}/perpetrators", json=bad, headers=police)
            assert r.status_code == 422, bad
        # 403: social protection does not record perpetrators
        r = await s.ver.post(
            f"/cases/{c1}/perpetrators", json=RING_MEMBER, headers=auth(ring, A.social_protection)
        )
        assert r.status_code == 403
        r = await s.ver.post(f"/cases/{c1}/perpetrators", json=RING_MEMBER, headers=police)
        assert r.status_code == 201, r.text
        assert r.json()["name"] == "Nguyễn Văn A" and r.json()["roles"] == [
            "RecruiterOrIntermediary"
        ]
        # same phone written differently, name without accents: linked
        r = await s.ver.post(
            f"/cases/{c2}/perpetrators",
            headers=police,
            json={"roles": ["Transporter"], "name": "nguyen van a", "phones": ["0912.345.678"]},
        )
        assert r.status_code == 201
        # only the recruitment channel in common
        r = await s.ver.post(
            f"/cases/{c3}/perpetrators",
            headers=police,
            json={
                "roles": ["Exploiter"],
                "name": "Trần B",
                "recruitment_channel": "facebook:  VIỆC LÀM LƯƠNG CAO",
            },
        )
        assert r.status_code == 201
        # encrypted at rest, blind indexes only
        raw = await db_pool.fetchrow(
            "SELECT full_name, phones FROM verification.perpetrators WHERE case_id = $1", c1
        )
        assert b"Nguy" not in raw["full_name"] and b"912" not in raw["phones"]
        r = await s.ver.get(f"/cases/{c1}/linked-cases", headers=police)
        assert r.status_code == 200, r.text
        links = {x["case_id"]: x["matched_on"] for x in r.json()["items"]}
        assert links == {c2: ["name", "phone"], c3: ["recruitment_channel"]}
        assert all(
            x["within_your_jurisdiction"] and x["perpetrator_ids"] for x in r.json()["items"]
        )
        r = await s.ver.get(f"/cases/{c1}/linked-cases?on=phone", headers=police)
        assert [x["case_id"] for x in r.json()["items"]] == [c2]
        # a linked case in another province: listed (the ring shows up), its perpetrator records withheld
        await db_pool.execute(
            "UPDATE verification.perpetrators SET province = '79' WHERE case_id = $1", c3
        )
        r = await s.ver.get(f"/cases/{c1}/linked-cases", headers=police)
        other = next(x for x in r.json()["items"] if x["case_id"] == c3)
        assert other == {
            "case_id": c3,
            "province": "79",
            "matched_on": ["recruitment_channel"],
            "perpetrator_ids": [],
            "within_your_jurisdiction": False,
        }
        national = auth(ring, A.police, Role.supervisor, province="*")
        r = await s.ver.get(f"/cases/{c1}/linked-cases", headers=national)
        other = next(x for x in r.json()["items"] if x["case_id"] == c3)
        assert other["within_your_jurisdiction"] and len(other["perpetrator_ids"]) == 1
        r = await s.ver.get(f"/cases/{c1}/linked-cases?on=shoe_size", headers=police)
        assert r.status_code == 422
        # police and prosecution read; social protection and legal aid may not (section rule)
        r = await s.ver.get(
            f"/cases/{c1}/perpetrators?role=RecruiterOrIntermediary", headers=police
        )
        assert r.json()["total"] == 1 and r.json()["items"][0]["phones"] == ["+84 912 345 678"]
        r = await s.ver.get(
            f"/cases/{c1}/perpetrators", headers=auth(ring, A.prosecution, Role.supervisor)
        )
        assert r.status_code == 200 and r.json()["total"] == 1
        for agency in (A.social_protection, A.legal_aid):
            r = await s.ver.get(
                f"/cases/{c1}/perpetrators", headers=auth(ring, agency, Role.supervisor)
            )
            assert r.status_code == 403 and "perpetrators" in r.json()["detail"]
            r = await s.ver.get(
                f"/cases/{c1}/linked-cases", headers=auth(ring, agency, Role.supervisor)
            )
            assert r.status_code == 403
        # the workflow knows the record's id (audit), not its content
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM verification.perpetrator_identifiers WHERE case_id = $1", c1
            )
            == 4
        )


async def _inbox(s, headers, **params):  # type: ignore[no-untyped-def]
    r = await s.ver.get("/inbox", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def _eventually(s, headers, expect, **params):  # type: ignore[no-untyped-def]
    """Updates sent straight to the workflow (test setup, not through the API) reach the index through the
    audit activity: poll until the expected ids appear (bounded)."""
    page = None
    for _ in range(
        600
    ):  # the audit activity lands in well under a second; a busy machine gets 30 s
        page = await _inbox(s, headers, **params)
        if expect(page):
            return page
        await asyncio.sleep(0.05)
    raise AssertionError(page)


async def test_inbox_views(dev_env, db_pool, db_url, ring, task_queue):
    async with stack(dev_env, db_pool, db_url, ring, task_queue) as s:
        sp, police = auth(ring, A.social_protection), auth(ring, A.police)
        v1, v2 = await s.open_case(), await s.open_case(age_band="under_16")
        ident = await s.open_case()
        await s.to_verify(v1)
        await s.to_verify(v2)
        await s.to_identify(ident)
        mine = {v1, v2}
        # `ident` passed through verify on its way to identify: wait until the index holds its final stage,
        # or a read in between still shows it in the verify inbox (the index is eventually consistent for
        # Updates that did not come through the API)
        await _eventually(
            s, police, lambda p: ident in {i["case_id"] for i in p["items"]}, stage="identify"
        )
        page = await _eventually(s, sp, lambda p: mine == {i["case_id"] for i in p["items"]})
        item = next(i for i in page["items"] if i["case_id"] == v1)
        assert (
            item["stage"] == "verify"
            and item["owner_agency"] == "social_protection"
            and item["deadline_at"]
        )
        deadlines = [i["deadline_at"] for i in page["items"]]
        assert deadlines == sorted(deadlines) and page["total"] == 2 and page["complete"]
        deadline_ids = [i["case_id"] for i in page["items"]]
        page = await _inbox(s, sp, sort="-deadline")
        assert [i["deadline_at"] for i in page["items"]] == sorted(deadlines, reverse=True)
        # filters and pagination
        page = await _inbox(s, sp, category="child")
        assert v2 in {i["case_id"] for i in page["items"]} and v1 not in {
            i["case_id"] for i in page["items"]
        }
        page = await _inbox(s, sp, limit=1)
        assert len(page["items"]) == 1 and page["total"] == 2 and page["complete"]
        page = await _inbox(s, sp, limit=1, offset=1)
        assert [i["case_id"] for i in page["items"]] == [deadline_ids[1]] and page["total"] == 2
        page = await _inbox(s, police, stage="identify")
        assert ident in {i["case_id"] for i in page["items"]}
        # due soon (3-day verify deadline within 4 days) vs overdue (none yet)
        page = await _inbox(s, sp, view="due_soon", due_within_hours=96)
        assert mine <= {i["case_id"] for i in page["items"]}
        page = await _inbox(s, sp, view="due_soon", due_within_hours=1)
        assert not mine & {i["case_id"] for i in page["items"]}
        page = await _inbox(s, sp, view="overdue")
        assert not mine & {i["case_id"] for i in page["items"]}
        # assigned to me
        r = await s.ver.post(f"/cases/{v1}/claim", json={}, headers=sp)
        assert r.status_code == 200, r.text
        # the caller's accepted action is in the inbox when its call returns (no waiting)
        page = await _inbox(s, sp, assigned_to_me="true")
        assert [i["case_id"] for i in page["items"]] == [v1] and page["items"][0][
            "assignee"
        ] == "social_protection-1"
        # waiting for acceptance: a transfer to legal aid appears in legal aid's inbox
        await s.sup.post(
            f"/cases/{ident}/consents",
            headers=police,
            json={
                "purpose": "data_sharing",
                "agency": "legal_aid",
                "granted": True,
                "document": {"kind": "signed_form", "signed_on": "2026-01-03"},
            },
        )
        r = await s.sup.post(
            f"/cases/{ident}/legal-aid-referral",
            json={"reason": "early legal advice"},
            headers=police,
        )
        assert r.status_code == 201, r.text
        la = auth(ring, A.legal_aid)
        await _eventually(
            s, la, lambda p: ident in {i["case_id"] for i in p["items"]}, view="waiting_acceptance"
        )
        # other province sees none of these; bad view is 422
        page = await _inbox(s, auth(ring, A.social_protection, province="79"))
        assert not mine & {i["case_id"] for i in page["items"]}
        r = await s.ver.get("/inbox?view=everything", headers=sp)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "view"
        r = await s.ver.get("/inbox")
        assert r.status_code == 401
