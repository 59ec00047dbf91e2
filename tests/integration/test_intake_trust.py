"""Intake trust (issue 10): no silent merges, keys scoped to (caller, operation, case), every read of
personal data in the one access log, no case id leaked across provinces, access checked before anything
starts. Real PostgreSQL, real Temporal (time-skipping server)."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.service import RPCError, RPCStatusCode

from services.intake import opening, repository
from services.intake.models import OpenCaseRequest
from shared.access_log import AccessRead, list_reads, record_read
from shared.auth import Principal
from shared.crypto import KeyRing
from shared.domain import Role
from tests.helpers.intake_stack import PROVINCE, A, intake_app, open_body

OTHER_PROVINCE = "79"


def unnamed_rescued_girl() -> dict[str, Any]:
    """What a mass rescue often knows of a person at first: no name, no papers, a birth year."""
    return {
        "channel": "rescue_operation",
        "province": PROVINCE,
        "already_safe": False,
        "person": {"prs_Gender": "Feminine", "birth_year": 2010, "no_documents": True},
    }


CLASSIFY = {"classification": "trafficking_suspected", "justification": "signs of coercion"}


# ---- 1. two different people never become one case ------------------------------------------------
async def test_two_unnamed_persons_without_key_are_two_cases(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        first = await it.open(unnamed_rescued_girl())
        second = await it.open(unnamed_rescued_girl())
        assert first.status_code == second.status_code == 201, (first.text, second.text)
        assert first.json()["created"] and second.json()["created"]
        assert "Idempotent-Replayed" not in second.headers
        assert first.json()["case_id"] != second.json()["case_id"]
        assert first.json()["person_ref"] != second.json()["person_ref"]
        assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == 2
        for opened in (first.json(), second.json()):
            assert opened["workflow_started"]
            await ts_env.client.get_workflow_handle(
                opened["case_id"]
            ).describe()  # both are running cases


async def test_same_facts_without_key_are_flagged_not_merged(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        first = (await it.open()).json()
        second = await it.open()
        assert second.status_code == 201 and second.json()["case_id"] != first["case_id"]
        # one flag per pair, of the strongest kind, with the evidence behind it
        (flag,) = second.json()["duplicates"]
        assert (flag["match_kind"], flag["other_case_id"]) == ("identity_number", first["case_id"])
        assert (
            flag["reasons"][:2] == ["same_identity_number", "same_phone"] and flag["score"] >= 2.8
        )


async def test_bulk_rows_without_key_are_each_a_new_case(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        rows = [unnamed_rescued_girl() for _ in range(3)]
        r = await it.http.post("/cases/bulk", json=rows, headers=it.auth())
        assert r.status_code == 200, r.text
        res = r.json()
        assert [x["status"] for x in res["results"]] == ["opened"] * 3 and res["replayed"] == 0
        assert len({x["case_id"] for x in res["results"]}) == 3
        # the same rows again without a key: three more persons, not a replay
        again = (await it.http.post("/cases/bulk", json=rows, headers=it.auth())).json()
        assert again["opened"] == 3 and again["replayed"] == 0
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 6


async def test_bulk_key_is_the_batch_key_plus_the_row_index(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        rows = [unnamed_rescued_girl() for _ in range(2)]
        keyed = {**it.auth(), "Idempotency-Key": "rescue-op-7"}
        first = (await it.http.post("/cases/bulk", json=rows, headers=keyed)).json()
        # identical rows at two positions are two persons
        assert (
            first["opened"] == 2
            and first["results"][0]["case_id"] != first["results"][1]["case_id"]
        )
        retry = (await it.http.post("/cases/bulk", json=rows, headers=keyed)).json()
        assert retry["replayed"] == 2
        assert [x["case_id"] for x in retry["results"]] == [x["case_id"] for x in first["results"]]
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 2


# ---- 2. keys are scoped to (caller, operation, case) ---------------------------------------------------
async def test_same_key_from_another_user_opens_their_own_case(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        mine = await it.open(
            unnamed_rescued_girl(), key="handover-1", headers=it.auth(user="police-1")
        )
        theirs = await it.open(
            unnamed_rescued_girl(), key="handover-1", headers=it.auth(user="police-2")
        )
        assert mine.status_code == theirs.status_code == 201
        assert theirs.json()["created"] and theirs.json()["case_id"] != mine.json()["case_id"]
        replay = await it.open(
            unnamed_rescued_girl(), key="handover-1", headers=it.auth(user="police-2")
        )
        assert replay.status_code == 200 and replay.json()["case_id"] == theirs.json()["case_id"]


async def test_same_key_on_another_endpoint_is_a_new_request(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        opened = await it.open(key="k-42")
        record = (
            await it.http.get(f"/cases/{opened.json()['case_id']}/htcds", headers=it.auth())
        ).json()
        imported = await it.http.post(
            "/cases/import/htcds", json=record, headers={**it.auth(), "Idempotency-Key": "k-42"}
        )
        assert imported.status_code == 201, imported.text
        assert imported.json()["case_id"] != opened.json()["case_id"] and imported.json()["created"]


async def test_opening_key_reused_with_another_body_is_422(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        assert (await it.open(key="k-1")).status_code == 201
        other = await it.open(open_body(channel="walk_in"), key="k-1")
        assert other.status_code == 422
        assert (
            "Idempotency-Key" in other.json()["detail"]
            and "different request body" in other.json()["detail"]
        )
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 1


async def test_classify_key_from_another_user_is_not_answered_with_the_first_result(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        case_id = (await it.open()).json()["case_id"]
        first = await it.http.post(
            f"/cases/{case_id}/classify",
            json=CLASSIFY,
            headers={**it.auth(user="police-1"), "Idempotency-Key": "cl-1"},
        )
        assert first.status_code == 200, first.text
        # a colleague's own request with the same key is validated on its own (the receive stage is over)
        colleague = await it.http.post(
            f"/cases/{case_id}/classify",
            json={"classification": "not_relevant", "justification": "no signs"},
            headers={**it.auth(user="police-2"), "Idempotency-Key": "cl-1"},
        )
        assert colleague.status_code in (403, 409), colleague.text
        state = (await it.http.get(f"/cases/{case_id}", headers=it.auth())).json()["workflow"]
        assert state["version"] == first.json()["version"]
        # the Update id is derived from the keyed scope: never the bare key, never a user id
        ids = [
            e.workflow_execution_update_accepted_event_attributes.accepted_request.meta.update_id
            async for e in ts_env.client.get_workflow_handle(case_id).fetch_history_events()
            if e.HasField("workflow_execution_update_accepted_event_attributes")
        ]
        assert len(ids) == 1 and "cl-1" not in ids[0] and "police-1" not in ids[0]


async def test_classify_key_reused_with_another_body_is_422(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        case_id = (await it.open()).json()["case_id"]
        keyed = {**it.auth(), "Idempotency-Key": "cl-1"}
        first = await it.http.post(f"/cases/{case_id}/classify", json=CLASSIFY, headers=keyed)
        assert first.status_code == 200, first.text
        retry = await it.http.post(f"/cases/{case_id}/classify", json=CLASSIFY, headers=keyed)
        assert retry.status_code == 200 and retry.json()["version"] == first.json()["version"]
        changed = await it.http.post(
            f"/cases/{case_id}/classify",
            headers=keyed,
            json={**CLASSIFY, "justification": "another reason entirely"},
        )
        assert changed.status_code == 422, changed.text
        assert (
            "Idempotency-Key" in changed.json()["detail"]
            and "different request" in changed.json()["detail"]
        )


async def test_refused_classify_leaves_no_key_behind(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        case_id = (await it.open()).json()["case_id"]
        keyed = {**it.auth(), "Idempotency-Key": "cl-1"}
        stale = await it.http.post(
            f"/cases/{case_id}/classify", headers=keyed, json={**CLASSIFY, "expected_version": 99}
        )
        assert stale.status_code == 409, stale.text
        assert await db_pool.fetchval("SELECT count(*) FROM common.idempotency_keys") == 0
        # so the corrected request may use the same key
        ok = await it.http.post(f"/cases/{case_id}/classify", json=CLASSIFY, headers=keyed)
        assert ok.status_code == 200, ok.text


async def test_resolve_duplicate_key_replays_and_refuses_another_body(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        await it.open()
        cand = (await it.open()).json()["duplicates"][0]["candidate_id"]
        decision = {"decision": "keep_apart", "reason": "different mothers' names on papers"}
        keyed = {**it.auth(user="police-1"), "Idempotency-Key": "res-1"}
        first = await it.http.post(f"/duplicates/{cand}/resolve", json=decision, headers=keyed)
        assert first.status_code == 200 and first.json()["status"] == "kept_apart"
        retry = await it.http.post(f"/duplicates/{cand}/resolve", json=decision, headers=keyed)
        assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
        assert retry.json() == first.json()
        changed = await it.http.post(
            f"/duplicates/{cand}/resolve",
            headers=keyed,
            json={"decision": "link", "reason": "same person after all"},
        )
        assert changed.status_code == 422 and "different request body" in changed.json()["detail"]
        # a colleague's same key is their own request: the candidate is decided already
        colleague = await it.http.post(
            f"/duplicates/{cand}/resolve",
            json=decision,
            headers={**it.auth(user="police-2"), "Idempotency-Key": "res-1"},
        )
        assert colleague.status_code == 409 and "already decided" in colleague.json()["detail"]


# ---- 3. the one access log ---------------------------------------------------------------------------
async def test_person_reads_are_logged_in_the_one_access_log(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        opened = (await it.open()).json()
        case_id = opened["case_id"]
        r = await it.http.get(
            f"/cases/{case_id}/person", params={"purpose": "verification"}, headers=it.auth()
        )
        assert r.status_code == 200
        assert (await it.http.get(f"/cases/{case_id}", headers=it.auth())).status_code == 200
        assert (await it.http.get(f"/cases/{case_id}/htcds", headers=it.auth())).status_code == 200
        aud = it.auth(A.steering_committee, Role.auditor, user="auditor-1", province="*")
        reason = "complaint 2025-17 about this case"
        assert (
            await it.http.get(
                f"/persons/{opened['person_ref']}",
                params={"break_glass_reason": reason},
                headers=aud,
            )
        ).status_code == 200
        lines = list(reversed(await list_reads(db_pool, ring, case_id=case_id)))
        assert [
            (x["service"], x["user_id"], x["action"], x["masked"], x["break_glass"]) for x in lines
        ] == [
            ("intake", "police-1", "read_person", False, False),
            ("intake", "police-1", "read_case", False, False),
            ("intake", "police-1", "export_htcds", False, False),
            ("intake", "auditor-1", "read_person", False, True),
        ]
        assert (
            lines[0]["purpose"] == "verification" and lines[0]["person_id"] == opened["person_ref"]
        )
        assert lines[3]["break_glass_reason"] == reason
        # the reason is stored encrypted, and nothing goes to intake's legacy log any more
        raw = await db_pool.fetchval(
            "SELECT break_glass_reason FROM common.access_log WHERE access_id = $1",
            lines[3]["access_id"],
        )
        assert reason.encode() not in bytes(raw)
        assert await db_pool.fetchval("SELECT count(*) FROM intake.access_log_legacy") == 0

        # GET /access-log shows every service's reads, same shape plus the service
        await record_read(
            db_pool,
            ring,
            AccessRead(
                service="verification",
                user_id="police-9",
                agency="police",
                roles=["caseworker"],
                case_id=case_id,
                case_province=PROVINCE,
                action="read_perpetrators",
                sections=["perpetrators"],
                masked=False,
            ),
        )
        page = (await it.http.get("/access-log", params={"case_id": case_id}, headers=aud)).json()
        assert [(x["service"], x["action"]) for x in page["items"]][:2] == [
            ("verification", "read_perpetrators"),
            ("intake", "read_person"),
        ]
        only = (
            await it.http.get(
                "/access-log",
                params={"case_id": case_id, "service": "verification"},
                headers=it.auth(A.police, Role.supervisor),
            )
        ).json()
        assert [x["user_id"] for x in only["items"]] == ["police-9"] and only["items"][0][
            "person_id"
        ] is None
        elsewhere = (
            await it.http.get(
                "/access-log", headers=it.auth(A.police, Role.supervisor, province=OTHER_PROVINCE)
            )
        ).json()
        assert elsewhere["items"] == []


async def test_legacy_access_log_is_kept_and_append_only(db_pool: Any) -> None:
    assert await db_pool.fetchval("SELECT to_regclass('intake.access_log')") is None
    await db_pool.execute(
        "INSERT INTO intake.access_log_legacy (user_id, agency, roles, case_id, person_id, case_province, action, "
        "masked) VALUES ('u', 'police', '{caseworker}', 'c-1', 'p-1', '01', 'read_person', false)"
    )
    for statement in (
        "DELETE FROM intake.access_log_legacy",
        "UPDATE intake.access_log_legacy SET masked = true",
        "TRUNCATE intake.access_log_legacy",
    ):
        with pytest.raises(Exception, match="append-only"):
            await db_pool.execute(statement)
    assert await db_pool.fetchval("SELECT count(*) FROM intake.access_log_legacy") == 1


async def test_caseworker_who_is_also_auditor_sees_unmasked_only_cases_their_role_reaches(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        ours = (await it.open()).json()["case_id"]
        theirs = (
            await it.open(
                open_body(channel="walk_in", person={"prs_IdentityNumber": "B123"}),
                headers=it.auth(A.social_protection, user="sp-1"),
            )
        ).json()["case_id"]
        dual = it.auth(A.police, Role.caseworker, Role.auditor, user="dual-1")

        own = await it.http.get(f"/cases/{ours}/person", headers=dual)
        assert own.status_code == 200 and own.json()["masked"] is False
        assert own.json()["person_identity"]["prs_FirstName"] == "Lan"
        assert (await it.http.get(f"/cases/{ours}/htcds", headers=dual)).status_code == 200

        # another agency's case: readable as an auditor, so masked as for an auditor
        other = await it.http.get(f"/cases/{theirs}/person", headers=dual)
        assert other.status_code == 200 and other.json()["masked"] is True
        assert other.json()["person_identity"]["prs_FirstName"] != "Lan"
        assert (
            "Nguyễn" not in other.text
            and "B123" not in other.text
            and "0912345678" not in other.text
        )
        view = (await it.http.get(f"/cases/{theirs}", headers=dual)).json()
        assert view["masked"] is True and view["person"]["display_name"] != "Nguyễn Thị Lan"
        assert (await it.http.get(f"/cases/{theirs}/htcds", headers=dual)).status_code == 403
        unmasked = await it.http.get(
            f"/cases/{theirs}/person",
            headers=dual,
            params={"break_glass_reason": "audit of referral 2025-3"},
        )
        assert unmasked.json()["masked"] is False
        masks = [
            (x["case_id"], x["masked"])
            for x in reversed(await list_reads(db_pool, ring, user_id="dual-1"))
        ]
        assert masks == [
            (ours, False),
            (ours, False),
            (theirs, True),
            (theirs, True),
            (theirs, False),
        ]


# ---- 4. smaller leaks -----------------------------------------------------------------------------------
async def test_identity_match_in_another_province_does_not_reveal_its_case_id(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        hcm = it.auth(A.police, user="hcm-1", province=OTHER_PROVINCE)
        earlier = (await it.open(open_body(province=OTHER_PROVINCE), headers=hcm)).json()["case_id"]
        opened = await it.open(open_body(channel="walk_in"))
        assert opened.status_code == 201
        flag = opened.json()["duplicates"][0]
        assert flag["match_kind"] == "identity_number" and len(opened.json()["duplicates"]) == 1
        assert flag["other_case_id"] is None and flag["within_your_jurisdiction"] is False
        assert "outside your jurisdiction" in flag["note"]
        assert earlier not in opened.text
        newer = opened.json()["case_id"]

        listed = await it.http.get(f"/cases/{newer}/duplicates", headers=it.auth())
        assert listed.status_code == 200 and earlier not in listed.text
        assert listed.json()[0]["other_case_id"] is None and listed.json()[0]["case_id"] == newer
        # the other province's supervisor sees the match on their case, without our case id
        theirs = await it.http.get(
            f"/cases/{earlier}/duplicates",
            headers=it.auth(A.police, Role.supervisor, province=OTHER_PROVINCE),
        )
        assert theirs.json()[0]["other_case_id"] == earlier and theirs.json()[0]["case_id"] is None
        # national users see both
        national = it.auth(A.steering_committee, Role.auditor, province="*")
        both = (await it.http.get(f"/cases/{newer}/duplicates", headers=national)).json()[0]
        assert (both["case_id"], both["other_case_id"], both["within_your_jurisdiction"]) == (
            newer,
            earlier,
            True,
        )

        # a caseworker of one side cannot decide blind; a national supervisor can
        decision = {"decision": "link", "reason": "same identity card, checked by phone"}
        refused = await it.http.post(
            f"/duplicates/{flag['candidate_id']}/resolve", json=decision, headers=it.auth()
        )
        assert refused.status_code == 403 and "spans two provinces" in refused.json()["detail"]
        assert earlier not in refused.text
        decided = await it.http.post(
            f"/duplicates/{flag['candidate_id']}/resolve",
            json=decision,
            headers=it.auth(A.police, Role.supervisor, user="nat-1", province="*"),
        )
        assert decided.status_code == 200 and decided.json()["status"] == "linked"
        assert decided.json()["other_case_id"] == earlier
        # once decided, the provincial caseworker still learns only that it was
        after = (await it.http.get(f"/cases/{newer}/duplicates", headers=it.auth())).json()[0]
        assert (
            after["status"] == "linked"
            and after["other_case_id"] is None
            and after["reason"] is None
        )

        # bulk rows are flagged the same way
        bulk = (
            await it.http.post(
                "/cases/bulk", json=[open_body(channel="hotline_111")], headers=it.auth()
            )
        ).json()
        flags = bulk["results"][0]["duplicates"]
        assert {f["other_case_id"] for f in flags if f["match_kind"] == "identity_number"} >= {
            None,
            newer,
        }


async def test_supervisor_of_the_other_province_may_decide_a_cross_province_match(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        await it.open(
            open_body(province=OTHER_PROVINCE),
            headers=it.auth(user="hcm-1", province=OTHER_PROVINCE),
        )
        cand = (await it.open(open_body(channel="walk_in"))).json()["duplicates"][0]["candidate_id"]
        r = await it.http.post(
            f"/duplicates/{cand}/resolve",
            json={"decision": "keep_apart", "reason": "checked"},
            headers=it.auth(A.police, Role.supervisor, user="hcm-sup", province=OTHER_PROVINCE),
        )
        assert (
            r.status_code == 200
            and r.json()["status"] == "kept_apart"
            and r.json()["case_id"] is None
        )


async def test_classify_without_access_starts_nothing_and_writes_nothing(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        # a case whose workflow is not started yet (its start is pending after a crash)
        opener = Principal(
            user_id="police-1",
            roles=frozenset({Role.caseworker}),
            agency=A.police,
            province=PROVINCE,
        )
        new = opening.build_new_case(
            it.runtime,
            OpenCaseRequest.model_validate(open_body()),
            opener,
            idem_key=None,
            request_id=None,
            source="api",
        )
        case_id = (await repository.open_case_once(db_pool, new)).case["case_id"]

        for headers in (
            it.auth(A.legal_aid),
            it.auth(A.police, user="hcm-1", province=OTHER_PROVINCE),
        ):
            r = await it.http.post(
                f"/cases/{case_id}/classify",
                json=CLASSIFY,
                headers={**headers, "Idempotency-Key": "cl-x"},
            )
            assert r.status_code == 403, r.text
        with pytest.raises(RPCError) as err:
            await ts_env.client.get_workflow_handle(case_id).describe()
        assert err.value.status == RPCStatusCode.NOT_FOUND
        assert (
            await db_pool.fetchval(
                "SELECT workflow_started_at FROM intake.intake_cases WHERE case_id = $1", case_id
            )
            is None
        )
        assert await db_pool.fetchval("SELECT count(*) FROM common.idempotency_keys") == 0
        # the opener's agency may: the workflow is started and decides
        ok = await it.http.post(f"/cases/{case_id}/classify", json=CLASSIFY, headers=it.auth())
        assert ok.status_code == 200, ok.text


async def test_supervisor_of_another_agency_classifies_only_with_an_override_reason(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    import asyncio

    from services.oversight.audit_log import readable_event

    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        case_id = (await it.open()).json()[
            "case_id"
        ]  # opened by the police: the receive stage is theirs
        commune_supervisor = it.auth(A.commune, Role.supervisor, user="commune-sup-1")
        refused = await it.http.post(
            f"/cases/{case_id}/classify", json=CLASSIFY, headers=commune_supervisor
        )
        assert refused.status_code == 403 and "override" in refused.json()["detail"], refused.text
        done = await it.http.post(
            f"/cases/{case_id}/classify",
            headers=commune_supervisor,
            json={**CLASSIFY, "override_reason": "police post unreachable for a week"},
        )
        assert done.status_code == 200 and done.json()["stage"] == "verify", done.text
        row = None
        for _ in range(200):  # the audit activity writes the event after the Update returned
            row = await db_pool.fetchrow(
                "SELECT * FROM oversight.case_events WHERE case_id = $1 AND kind = 'stage_decided'",
                case_id,
            )
            if row is not None:
                break
            await asyncio.sleep(0.05)
        assert row is not None
        override = readable_event(ring, row)["data"]["override"]
        assert override["by_agency"] == "commune" and override["owner_agency"] == "police"
        assert override["reason"] == "police post unreachable for a week"


async def test_a_persons_ciphertext_copied_into_another_persons_row_does_not_decrypt(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from shared.crypto import CryptoError

    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        first = (await it.open()).json()
        second = (await it.open(open_body(channel="walk_in"))).json()
        rows = {r["person_id"]: r for r in await db_pool.fetch("SELECT * FROM intake.persons")}
        a, b = rows[first["person_ref"]], rows[second["person_ref"]]
        assert ring.decrypt_field(a["first_name"], "persons.first_name", row=a["person_id"])
        # the same column of another person: bound to its row, it does not decrypt there
        with pytest.raises(CryptoError):
            ring.decrypt_field(a["first_name"], "persons.first_name", row=b["person_id"])
        case = await db_pool.fetchrow(
            "SELECT * FROM intake.intake_cases WHERE case_id = $1", first["case_id"]
        )
        if case["report_summary"] is not None:
            with pytest.raises(CryptoError):
                ring.decrypt_field(
                    case["report_summary"], "intake_cases.report_summary", row=second["case_id"]
                )
