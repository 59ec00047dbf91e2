"""Intake: possible duplicates, bulk and CSV intake, HTCDS round trip, retention erasure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker

from services.intake.activities import TASK_QUEUE, build_activities
from shared.access_log import list_reads
from shared.crypto import KeyRing
from shared.domain import Role
from tests.helpers.intake_stack import PROVINCE, A, intake_app, open_body


async def test_duplicates_flagged_accent_insensitive_and_resolved(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        first = (await it.open()).json()
        assert first["duplicates"] == []
        # same name without accents, same phone and birth year, no id number: the evidence adds up
        second = (
            await it.open(
                open_body(
                    channel="walk_in",
                    person={
                        "prs_FirstName": "lan",
                        "prs_MiddleName": "thi",
                        "prs_SecondName": "NGUYEN",
                        "prs_IdentityNumber": None,
                    },
                )
            )
        ).json()
        assert [(d["match_kind"], d["other_case_id"]) for d in second["duplicates"]] == [
            ("evidence", first["case_id"])
        ]
        assert second["duplicates"][0]["reasons"] == [
            "same_phone",
            "same_full_name",
            "same_birth_year",
            "same_province",
        ]
        # the same name, phone and birth year under another identity number: the conflict counts against
        other_id = (
            await it.open(
                open_body(channel="walk_in", person={"prs_IdentityNumber": "079300099999"})
            )
        ).json()
        assert first["case_id"] not in {d["other_case_id"] for d in other_id["duplicates"]}
        # same identity number written differently, other name
        third = (
            await it.open(
                open_body(
                    channel="hotline_111",
                    person={"prs_FirstName": "Mai", "prs_IdentityNumber": "0013-0001-2345"},
                )
            )
        ).json()
        # (and, by phone + birth year + province, the second person who gave no identity number)
        assert [(d["match_kind"], d["other_case_id"]) for d in third["duplicates"]] == [
            ("identity_number", first["case_id"]),
            ("evidence", second["case_id"]),
        ]
        # different birth year: not a duplicate
        fourth = (
            await it.open(
                open_body(
                    channel="online_report", person={"birth_year": 1990, "prs_IdentityNumber": None}
                )
            )
        ).json()
        assert fourth["duplicates"] == []
        # nothing merged: four persons, four cases
        assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == 5

        r = await it.http.get(f"/cases/{first['case_id']}/duplicates", headers=it.auth())
        assert (
            r.status_code == 200
            and len(r.json()) == 2
            and {d["status"] for d in r.json()} == {"open"}
        )
        r = await it.http.get(f"/cases/{first['case_id']}", headers=it.auth())
        assert r.json()["open_duplicates"] == 2

        cand = second["duplicates"][0]["candidate_id"]
        bad = await it.http.post(
            f"/duplicates/{cand}/resolve",
            headers=it.auth(),
            json={"decision": "merge", "reason": "same person"},
        )
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "decision"
        no_reason = await it.http.post(
            f"/duplicates/{cand}/resolve", headers=it.auth(), json={"decision": "link"}
        )
        assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["loc"][-1] == "reason"
        forbidden = await it.http.post(
            f"/duplicates/{cand}/resolve",
            headers=it.auth(A.legal_aid),
            json={"decision": "link", "reason": "same person"},
        )
        assert forbidden.status_code == 403
        ok = await it.http.post(
            f"/duplicates/{cand}/resolve",
            headers=it.auth(),
            json={"decision": "keep_apart", "reason": "different mothers' names on papers"},
        )
        assert (
            ok.status_code == 200
            and ok.json()["status"] == "kept_apart"
            and ok.json()["decided_by"] == "police-1"
        )
        twice = await it.http.post(
            f"/duplicates/{cand}/resolve",
            headers=it.auth(),
            json={"decision": "link", "reason": "changed my mind"},
        )
        assert twice.status_code == 409 and "already decided" in twice.json()["detail"]
        link = await it.http.post(
            f"/duplicates/{third['duplicates'][0]['candidate_id']}/resolve",
            headers=it.auth(),
            json={"decision": "link", "reason": "same id card"},
        )
        assert link.json()["status"] == "linked"
        r = await it.http.post(
            "/duplicates/d-none/resolve",
            headers=it.auth(),
            json={"decision": "link", "reason": "same id card"},
        )
        assert r.status_code == 404


async def test_concurrent_duplicates_are_both_seen(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        bodies = [
            open_body(channel=ch)
            for ch in ("walk_in", "hotline_111", "hotline_113", "online_report")
        ]
        results = [r.json() for r in await asyncio.gather(*(it.open(b) for b in bodies))]
        assert len({r["case_id"] for r in results}) == 4
        flags = await db_pool.fetchval(
            "SELECT count(*) FROM intake.duplicate_candidates WHERE match_kind = 'identity_number'"
        )
        assert flags == 6  # every pair flagged once (by the later of the two)


async def test_bulk_json_mixed_rows(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        rows = [
            open_body(person={"prs_IdentityNumber": "111111111"}),
            open_body(person={"prs_Gender": "Male", "prs_IdentityNumber": "222222222"}),
            open_body(
                channel="rescue_operation",
                already_safe=False,
                person={"prs_FirstName": "Hoa", "prs_IdentityNumber": "333333333"},
            ),
            {"channel": "walk_in"},
            open_body(person={"prs_FirstName": "Minh", "prs_IdentityNumber": "111111111"}),
            open_body(province="79", person={"prs_IdentityNumber": "444444444"}),
        ]
        r = await it.http.post(
            "/cases/bulk", json=rows, headers={**it.auth(), "Idempotency-Key": "b-1"}
        )
        assert r.status_code == 200, r.text
        res = r.json()
        statuses = [x["status"] for x in res["results"]]
        assert statuses[1] == "invalid" and statuses[3] == "invalid" and statuses[5] == "invalid"
        assert res["results"][1]["errors"][0]["loc"][-1] == "prs_Gender"
        assert "Feminine" in res["results"][1]["errors"][0]["msg"]
        assert {e["loc"][-1] for e in res["results"][3]["errors"]} >= {"province", "person"}
        assert "jurisdiction" in res["results"][5]["errors"][0]["msg"]
        # rows 0 and 4 share an identity number: both opened, the later one flagged
        assert sorted([statuses[0], statuses[4]]) == ["duplicate_flagged", "opened"]
        assert statuses[2] == "opened"
        assert res["opened"] + res["duplicate_flagged"] == 3 and res["invalid"] == 3
        assert (
            await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases WHERE source = 'bulk'")
            == 3
        )
        assert all(x["workflow_started"] for x in res["results"] if x["case_id"])
        # the same batch again with the same key: replayed, nothing new
        again = (
            await it.http.post(
                "/cases/bulk", json=rows, headers={**it.auth(), "Idempotency-Key": "b-1"}
            )
        ).json()
        assert again["replayed"] == 3 and again["opened"] == 0
        assert [x["case_id"] for x in again["results"]] == [x["case_id"] for x in res["results"]]
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 3
        # too many rows, empty list, wrong content type
        r = await it.http.post("/cases/bulk", json=[{}] * 1001, headers=it.auth())
        assert r.status_code == 422
        r = await it.http.post("/cases/bulk", json=[], headers=it.auth())
        assert r.status_code == 422
        r = await it.http.post(
            "/cases/bulk", content="a,b", headers={**it.auth(), "Content-Type": "text/csv"}
        )
        assert r.status_code == 415


CHILD_YEAR = datetime.now(UTC).year - 13
CSV = f"""channel,province,prs_FirstName,prs_MiddleName,prs_SecondName,birth_year,prs_Gender,prs_IdentityNumber,\
vic_TypeOfExploitation,hte_Type,hte_Country,report_summary,already_safe
rescue_operation,01,Hoa,Thị,Trần,{CHILD_YEAR},Feminine,001309011111,ForcedLabour;ChildLabour,Exploitation,MY,Rescued,false
rescue_operation,01,Mai,,Lê,2001,Womanly,001301022222,,,,,true
rescue_operation,01,Tuấn,Văn,Phạm,,Masculine,,Servitude,Transit,TH,,true
rescue_operation,01,hoa,thi,tran,{CHILD_YEAR},Feminine,,,,,,true
"""


async def test_bulk_csv(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        r = await it.http.post(
            "/cases/bulk.csv",
            content=CSV.encode(),
            headers={**it.auth(), "Content-Type": "text/csv; charset=utf-8"},
        )
        assert r.status_code == 200, r.text
        res = r.json()
        assert [x["status"] for x in res["results"]] == [
            "opened",
            "invalid",
            "opened",
            "duplicate_flagged",
        ]
        assert res["results"][1]["errors"][0]["loc"][-1] == "prs_Gender"
        assert res["results"][3]["duplicates"][0]["other_case_id"] == res["results"][0]["case_id"]
        child = res["results"][0]["case_id"]
        p = (await it.http.get(f"/cases/{child}/person", headers=it.auth())).json()
        assert (
            p["person_identity"]["prs_FirstName"] == "Hoa"
            and p["person_identity"]["age_band"] == "under_16"
        )
        assert p["report"]["victim"]["vic_TypeOfExploitation"] == ["ForcedLabour", "ChildLabour"]
        assert p["report"]["events"][0]["hte_Country"] == "MY"
        assert (
            await db_pool.fetchval(
                "SELECT already_safe FROM intake.intake_cases WHERE case_id = $1", child
            )
            is False
        )
        # multipart upload works too
        files = {
            "file": ("arrivals.csv", "channel,province,prs_FirstName\nwalk_in,01,Lan\n", "text/csv")
        }
        r = await it.http.post("/cases/bulk.csv", files=files, headers=it.auth())
        assert r.status_code == 200 and r.json()["opened"] == 1
        # bad header names the column; bad encoding; JSON is not CSV
        r = await it.http.post(
            "/cases/bulk.csv",
            content=b"channel,province,name\nwalk_in,01,Lan\n",
            headers={**it.auth(), "Content-Type": "text/csv"},
        )
        assert r.status_code == 422 and "name" in r.json()["detail"]
        r = await it.http.post(
            "/cases/bulk.csv",
            content="channel,province\nwalk_in,01\n".encode("utf-16"),
            headers={**it.auth(), "Content-Type": "text/csv"},
        )
        assert r.status_code == 422 and "UTF-8" in r.json()["detail"]
        r = await it.http.post("/cases/bulk.csv", json=[], headers=it.auth())
        assert r.status_code == 415


async def test_htcds_round_trip(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        body = open_body(
            person={
                "prs_Birthdate": "2000-03-04",
                "birth_year": None,
                "prs_Email": "lan@example.org",
                "prs_MaritalStatus": "Single",
                "prs_HighestLevelOfEducation": "PrimaryEducation",
                "prs_Salutation": "Ms",
                "vic_AgreementToManagePersonalData": True,
            },
            commune="00070",
            victim={
                "vic_TypeOfExploitation": ["ForcedMarriage", "SexualExploitation"],
                "vic_MethodsOfControl": ["WithholdsDocuments", "DebtBondage"],
                "vic_RelationshipToTrafficker": "Acquainted",
                "vic_AgeWhenTrafficked": 19,
                "vic_ForcedLabourIndustry": "C_Manufacturing",
            },
            report={
                "summary": "Walked into the commune office.",
                "cas_ReferringOrganisation": "NGO X",
                "cas_IncomingReferralDate": "2025-08-01",
                "cas_ReasonForIncomingReferral": "AdditionalServicesRequired",
                "cas_IncomingReferralDetails": "Needs shelter",
            },
        )
        case_id = (await it.open(body)).json()["case_id"]
        r = await it.http.get(
            f"/cases/{case_id}/htcds", params={"purpose": "referral to NGO"}, headers=it.auth()
        )
        assert r.status_code == 200, r.text
        rec = r.json()
        assert rec["prs_FirstName"] == "Lan" and rec["prs_Birthdate"] == "2000-03-04"
        assert (
            rec["vic_TraffickingStatus"] == "PossibleVictimOfTrafficking"
            and rec["cas_Status"] == "Active"
        )
        assert rec["historic_trafficking_events"][0]["hte_Type"] == "Exploitation"
        assert (
            rec["x_nrm"]["channel"] == "border_guard_handover"
            and rec["x_nrm"]["commune"] == "00070"
        )
        assert all(k.split("_")[0] in ("prs", "vic", "cas", "con", "historic", "x") for k in rec)

        # import it back (as another agency's caseworker opening it fresh): a new case, same data
        imp = await it.http.post(
            "/cases/import/htcds", json=rec, headers=it.auth(A.social_protection, user="sp-1")
        )
        assert imp.status_code == 201, imp.text
        new_id = imp.json()["case_id"]
        assert (
            new_id != case_id and imp.json()["duplicates"]
        )  # flagged against the original, never merged
        back = (
            await it.http.get(
                f"/cases/{new_id}/htcds", headers=it.auth(A.social_protection, user="sp-1")
            )
        ).json()
        strip = {"x_nrm"}
        assert {k: v for k, v in back.items() if k not in strip} == {
            k: v for k, v in rec.items() if k not in strip
        }
        assert {k: v for k, v in back["x_nrm"].items() if k != "case_id"} == {
            k: v for k, v in rec["x_nrm"].items() if k != "case_id"
        }

        # picklists are checked on import, naming the field
        bad = {**rec, "vic_MethodsOfControl": ["Magic"]}
        r = await it.http.post("/cases/import/htcds", json=bad, headers=it.auth())
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "vic_MethodsOfControl"
        assert "DebtBondage" in r.json()["detail"][0]["msg"]
        # auditors export only with break-glass; every export is access-logged
        aud = it.auth(A.steering_committee, Role.auditor, province="*")
        assert (await it.http.get(f"/cases/{case_id}/htcds", headers=aud)).status_code == 403
        r = await it.http.get(
            f"/cases/{case_id}/htcds",
            params={"break_glass_reason": "court order 12/2025"},
            headers=aud,
        )
        assert r.status_code == 200
        exports = [
            e
            for e in reversed(await list_reads(db_pool, ring, case_id=case_id))
            if e["action"] == "export_htcds"
        ]
        assert [(e["purpose"], e["break_glass"]) for e in exports] == [
            ("referral to NGO", False),
            (None, True),
        ]


async def test_erase_person_pii_activity(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        opened = (await it.open()).json()
        other = (await it.open(open_body(channel="walk_in"))).json()
        assert other["duplicates"]
        # run the activity through a real Temporal worker on its own queue
        client: Client = ts_env.client
        queue = f"{TASK_QUEUE}-{uuid.uuid4().hex[:8]}"
        async with Worker(
            client, task_queue=queue, activities=build_activities(it.runtime), workflows=[EraseOnce]
        ):
            res = await client.execute_workflow(
                EraseOnce.run,
                opened["person_ref"],
                id=f"erase-{uuid.uuid4().hex}",
                task_queue=queue,
            )
            again = await client.execute_workflow(
                EraseOnce.run,
                opened["person_ref"],
                id=f"erase-{uuid.uuid4().hex}",
                task_queue=queue,
            )
        assert res == "erased" and again == "already_erased"
        row = await db_pool.fetchrow(
            "SELECT * FROM intake.persons WHERE person_id = $1", opened["person_ref"]
        )
        for col in (
            "first_name",
            "second_name",
            "identity_number",
            "mobile_phone",
            "birth_year",
            "victim_context",
            "trafficking_events",
            "identity_bidx",
            "name_year_bidx",
        ):
            assert row[col] is None, col
        assert row["erased_at"] is not None
        assert (row["age_band"], row["province"], row["gender"], list(row["citizenship"])) == (
            "adult",
            PROVINCE,
            "Feminine",
            ["VN"],
        )
        case = await db_pool.fetchrow(
            "SELECT * FROM intake.intake_cases WHERE case_id = $1", opened["case_id"]
        )
        assert case["report_summary"] is None and case["channel"] == "border_guard_handover"
        # the erased person is no longer a duplicate candidate for new arrivals
        third = (await it.open(open_body(channel="hotline_111"))).json()
        assert [d["other_case_id"] for d in third["duplicates"]] == [other["case_id"]]
        p = (await it.http.get(f"/persons/{opened['person_ref']}", headers=it.auth())).json()
        assert p["erased"] is True and p["person_identity"]["prs_FirstName"] is None
        assert p["person_identity"]["age_band"] == "adult"


# a minimal workflow that calls the activity the CaseWorkflow calls at retention time


@workflow.defn(sandboxed=False)
class EraseOnce:
    @workflow.run
    async def run(self, person_ref: str) -> str:
        res = await workflow.execute_activity(
            "erase_person_pii", person_ref, start_to_close_timeout=timedelta(seconds=30)
        )
        return str(res["result"])
