"""Intake: opening cases (encryption, workflow start, idempotency), reading persons (access log,
masking, break-glass), picklist errors, 401/403/415. Real PostgreSQL, real Temporal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from services.intake import opening
from shared.access_log import list_reads
from shared.contract import CaseState
from shared.crypto import KeyRing
from shared.domain import Role
from tests.helpers.intake_stack import PROVINCE, A, intake_app, open_body


async def test_open_case_encrypts_and_starts_workflow(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        r = await it.open()
        assert r.status_code == 201, r.text
        body = r.json()
        case_id, person_ref = body["case_id"], body["person_ref"]
        assert case_id.startswith("c-") and body["created"] and body["workflow_started"]
        assert body["age_band"] == "adult" and body["categories"] == ["adult", "domestic"]

        # PII is encrypted at rest: neither the name nor the identity number nor the phone appears in clear
        row = await db_pool.fetchrow(
            "SELECT p.*, c.report_summary, c.workflow_started_at FROM intake.persons p "
            "JOIN intake.intake_cases c USING (person_id) WHERE c.case_id = $1",
            case_id,
        )
        raw = " ".join(repr(v) for v in dict(row).values())
        for secret in (
            "Lan",
            "Nguy",
            "001300012345",
            "0912345678",
            "Phố Huế",
            "Handed over",
            "Nam Ninh",
        ):
            assert secret not in raw
        # format 02: bound to the column and to the person's row
        assert row["first_name"] is not None and bytes(row["first_name"])[:1] == b"\x02"
        assert (
            ring.decrypt_field(
                row["identity_number"], "persons.identity_number", row=row["person_id"]
            )
            == "001300012345"
        )
        assert row["age_band"] == "adult"
        # the started mark is written a moment later, in a batch
        await opening.started_marks(it.runtime).flush()
        assert (
            await db_pool.fetchval(
                "SELECT workflow_started_at FROM intake.intake_cases WHERE case_id = $1", case_id
            )
            is not None
        )

        # the workflow runs with non-PII facts only
        state = await ts_env.client.get_workflow_handle(case_id).query(
            "state", result_type=CaseState
        )
        assert (
            state.facts.person_ref == person_ref
            and state.facts.channel.value == "border_guard_handover"
        )
        # the person's sex travels as a statistical fact (the committee's breakdown), nothing else of hers
        assert state.facts.sex == "Feminine"
        assert "Lan" not in state.model_dump_json()
        desc = await ts_env.client.get_workflow_handle(case_id).describe()
        sa = {k.name: v for k, v in ((p.key, p.value) for p in desc.typed_search_attributes)}
        assert (
            sa["Jurisdiction"] == PROVINCE
            and sa["CaseStage"] == "receive"
            and sa["OwnerAgency"] == "police"
        )


async def test_idempotency_same_key_and_conflict(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        first = await it.open(key="k-1")
        again = await it.open(key="k-1")
        assert first.status_code == 201 and again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert (
            again.json()["case_id"] == first.json()["case_id"] and again.json()["created"] is False
        )
        other = await it.open(open_body(channel="walk_in"), key="k-1")
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
        # without a key, an identical body is a new case (flagged as a possible duplicate, never merged)
        a = await it.open(open_body(person={"prs_IdentityNumber": "X123"}))
        b = await it.open(open_body(person={"prs_IdentityNumber": "X123"}))
        assert a.status_code == b.status_code == 201 and a.json()["case_id"] != b.json()["case_id"]
        assert a.json()["case_id"] in {d["other_case_id"] for d in b.json()["duplicates"]}
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 3
        assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == 3


async def test_concurrent_identical_requests_make_one_case(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        results = await asyncio.gather(*(it.open(key="same-key") for _ in range(6)))
        assert sorted(r.status_code for r in results) == [200] * 5 + [201]
        assert len({r.json()["case_id"] for r in results}) == 1
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 1
        assert (
            await db_pool.fetchval("SELECT count(*) FROM intake.persons") == 1
        )  # no orphan person rows


async def test_crash_between_commit_and_start_is_recovered(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from services.intake import repository
    from services.intake.models import OpenCaseRequest
    from shared.auth import Principal
    from shared.domain import AgencyRole

    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        principal = Principal(
            user_id="police-1",
            roles=frozenset({Role.caseworker}),
            agency=AgencyRole.police,
            province=PROVINCE,
        )
        # the commit happens, the process "dies" before the start: simulate by committing only
        req = OpenCaseRequest.model_validate(open_body())
        new = opening.build_new_case(
            it.runtime, req, principal, idem_key="crash-1", request_id=None, source="api"
        )
        outcome = await repository.open_case_once(db_pool, new)
        case_id = outcome.case["case_id"]
        assert outcome.case["workflow_started_at"] is None
        # the retry with the same key starts the workflow, no second case
        r = await it.open(key="crash-1")
        assert (
            r.status_code == 200 and r.json()["case_id"] == case_id and r.json()["workflow_started"]
        )
        await ts_env.client.get_workflow_handle(case_id).query("state", result_type=CaseState)

        # and reconcile picks up committed cases nobody retried
        new2 = opening.build_new_case(
            it.runtime,
            OpenCaseRequest.model_validate(open_body(channel="walk_in")),
            principal,
            idem_key="crash-2",
            request_id=None,
            source="api",
        )
        lost = (await repository.open_case_once(db_pool, new2)).case["case_id"]
        from datetime import timedelta

        started = await opening.reconcile_workflow_starts(it.runtime, older_than=timedelta(0))
        assert started == [lost]
        assert (
            await db_pool.fetchval(
                "SELECT workflow_started_at FROM intake.intake_cases WHERE case_id = $1", lost
            )
            is not None
        )
        # starting twice is harmless (already started counts as started)
        row = await repository.get_case(db_pool, lost)
        assert await opening.start_case_workflow(it.runtime, row)
        assert await opening.reconcile_workflow_starts(it.runtime, older_than=timedelta(0)) == []


async def test_reconcile_runs_in_the_background(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from services.intake import repository
    from services.intake.models import OpenCaseRequest
    from shared.auth import Principal
    from shared.domain import AgencyRole

    async with intake_app(
        ts_env,
        db_pool,
        db_url,
        ring,
        task_queue,
        extras={"reconcile_interval": 0.05, "reconcile_older_than": 0},
    ) as it:
        principal = Principal(
            user_id="police-1",
            roles=frozenset({Role.caseworker}),
            agency=AgencyRole.police,
            province=PROVINCE,
        )
        new = opening.build_new_case(
            it.runtime,
            OpenCaseRequest.model_validate(open_body()),
            principal,
            idem_key="bg-1",
            request_id=None,
            source="api",
        )
        case_id = (await repository.open_case_once(db_pool, new)).case["case_id"]
        started = None
        for _ in range(200):  # bounded wait for the background task, not a timing assertion
            started = await db_pool.fetchval(
                "SELECT workflow_started_at FROM intake.intake_cases WHERE case_id = $1", case_id
            )
            if started:
                break
            await asyncio.sleep(0.05)
        assert started is not None
        state = await ts_env.client.get_workflow_handle(case_id).query(
            "state", result_type=CaseState
        )
        assert state.facts.case_id == case_id


async def test_picklist_and_bad_input_errors(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue, workers=False) as it:
        r = await it.open(open_body(person={"prs_Gender": "Male"}))
        assert r.status_code == 422
        err = r.json()["detail"][0]
        assert (
            err["loc"][-1] == "prs_Gender"
            and "Feminine" in err["msg"]
            and "NonSpecifiedUnknown" in err["msg"]
        )
        r = await it.open(open_body(victim={"vic_TypeOfExploitation": ["ForcedLabour", "Slavery"]}))
        assert r.status_code == 422 and "vic_TypeOfExploitation" in r.json()["detail"][0]["msg"]
        assert "ForcedMarriage" in r.json()["detail"][0]["msg"]
        r = await it.open(open_body(province="99"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "province"
        r = await it.open(open_body(channel="carrier_pigeon"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "channel"
        r = await it.open(open_body(unexpected="x"))
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "unexpected"
        body = open_body()
        del body["channel"]
        r = await it.open(body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "channel"
        r = await it.http.post(
            "/cases",
            content="channel=walk_in",
            headers={**it.auth(), "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415 and "application/json" in r.json()["detail"]
        r = await it.http.post(
            "/cases",
            content=b"x" * 2_100_000,
            headers={**it.auth(), "Content-Type": "application/json"},
        )
        assert r.status_code == 413

        # no Content-Length (chunked): the stream is counted as it is read and cut off at the limit
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"channel": "walk_in", "report": {"summary": "'
            for _ in range(30):
                yield b"x" * 100_000
            yield b'"}}'

        r = await it.http.post(
            "/cases", content=chunks(), headers={**it.auth(), "Content-Type": "application/json"}
        )
        assert r.status_code == 413, r.text
        assert r.json()["detail"][0]["type"] == "payload_too_large"
        assert "content-length" not in r.request.headers
        # unknowns are fine: no papers, estimated age only
        ok = await it.open(
            open_body(
                person={
                    "prs_IdentityNumber": None,
                    "birth_year": None,
                    "prs_FirstName": None,
                    "prs_SecondName": None,
                    "prs_MiddleName": None,
                    "estimated_age": 14,
                    "no_documents": True,
                }
            ),
            key="unknowns",
        )
        # no workflow worker in this test: the case is recorded, the start goes through (start needs no worker)
        assert ok.status_code == 201, ok.text
        assert ok.json()["age_band"] == "under_16" and "under_16" in ok.json()["categories"]
        assert (
            await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 1
        )  # nothing half-written


async def test_auth_and_roles(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue, workers=False) as it:
        for method, path in [
            ("POST", "/cases"),
            ("POST", "/cases/bulk"),
            ("POST", "/cases/bulk.csv"),
            ("GET", "/cases"),
            ("GET", "/cases/c-x"),
            ("GET", "/persons/p-x"),
            ("GET", "/cases/c-x/person"),
            ("GET", "/access-log"),
            ("GET", "/cases/c-x/htcds"),
            ("GET", "/cases/c-x/duplicates"),
            ("POST", "/duplicates/d-x/resolve"),
            ("POST", "/cases/c-x/classify"),
            ("POST", "/cases/import/htcds"),
        ]:
            r = await it.http.request(method, path, json={})
            assert r.status_code == 401, (method, path)
            r = await it.http.request(
                method, path, json={}, headers={"Authorization": "Bearer nonsense"}
            )
            assert r.status_code == 401, (method, path)
        # auditors do not open cases; caseworkers do not read the access log
        r = await it.open(headers=it.auth(A.police, Role.auditor))
        assert r.status_code == 403 and "caseworker" in r.json()["detail"]
        r = await it.http.get("/access-log", headers=it.auth())
        assert r.status_code == 403
        # opening outside one's jurisdiction
        r = await it.open(open_body(province="79"))
        assert r.status_code == 403 and "jurisdiction" in r.json()["detail"]


async def test_person_read_access_log_masking_break_glass(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        opened = (await it.open()).json()
        case_id, person_id = opened["case_id"], opened["person_ref"]

        r = await it.http.get(
            f"/persons/{person_id}", params={"purpose": "verification"}, headers=it.auth()
        )
        assert r.status_code == 200, r.text
        p = r.json()
        assert p["masked"] is False and p["person_identity"]["prs_FirstName"] == "Lan"
        assert p["person_identity"]["prs_IdentityNumber"] == "001300012345"
        assert p["report"]["victim"]["vic_TypeOfExploitation"] == ["ForcedMarriage"]
        assert p["report"]["summary"] == "Handed over at the border gate."

        # another agency not on the case, same province: refused, and nothing leaks
        r = await it.http.get(f"/cases/{case_id}/person", headers=it.auth(A.legal_aid))
        assert r.status_code == 403
        # other province supervisor: refused
        r = await it.http.get(
            f"/cases/{case_id}/person", headers=it.auth(A.police, Role.supervisor, province="79")
        )
        assert r.status_code == 403

        # auditor: masked; with break-glass: clear, and the reason is recorded
        aud = it.auth(A.steering_committee, Role.auditor, user="auditor-1", province="*")
        r = await it.http.get(f"/cases/{case_id}/person", headers=aud)
        masked = r.json()
        assert r.status_code == 200 and masked["masked"] is True
        assert masked["person_identity"]["prs_FirstName"] != "Lan"
        assert masked["person_identity"]["prs_FirstName"].startswith("L")
        assert (
            "001300012345" not in r.text
            and "0912345678" not in r.text
            and "Handed over" not in r.text
        )
        r = await it.http.get(
            f"/cases/{case_id}/person", params={"break_glass_reason": "too short"}, headers=aud
        )
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == "break_glass_reason"
        reason = "complaint 2025-17 about this case"
        r = await it.http.get(
            f"/cases/{case_id}/person",
            params={"break_glass_reason": reason},
            headers={**aud, "X-Request-ID": "req-bg-1"},
        )
        assert r.status_code == 200 and r.json()["masked"] is False
        assert r.json()["person_identity"]["prs_FirstName"] == "Lan"

        # case view: person summary, also access-logged
        r = await it.http.get(f"/cases/{case_id}", headers=it.auth())
        assert r.status_code == 200 and r.json()["person"]["display_name"] == "Nguyễn Thị Lan"
        assert (
            r.json()["workflow"]["stage"] == "receive"
            and r.json()["facts"]["channel"] == "border_guard_handover"
        )

        rows = list(
            reversed(await list_reads(db_pool, ring, case_id=case_id))
        )  # the one access log
        assert {x["service"] for x in rows} == {"intake"}
        assert [(x["user_id"], x["action"], x["masked"]) for x in rows] == [
            ("police-1", "read_person", False),
            ("auditor-1", "read_person", True),
            ("auditor-1", "read_person", False),
            ("police-1", "read_case", False),
        ]
        assert rows[0]["purpose"] == "verification" and rows[0]["person_id"] == person_id
        assert rows[2]["break_glass_reason"] == reason and rows[2]["request_id"] == "req-bg-1"

        # the access log, for auditors (national) and supervisors (their province), paginated
        r = await it.http.get("/access-log", params={"case_id": case_id, "limit": 3}, headers=aud)
        page = r.json()
        assert r.status_code == 200 and len(page["items"]) == 3 and page["next_cursor"] is not None
        r = await it.http.get(
            "/access-log", params={"case_id": case_id, "cursor": page["next_cursor"]}, headers=aud
        )
        assert [x["action"] for x in r.json()["items"]] == ["read_person"] and r.json()[
            "next_cursor"
        ] is None
        r = await it.http.get(
            "/access-log",
            params={"user_id": "auditor-1"},
            headers=it.auth(A.police, Role.supervisor),
        )
        assert len(r.json()["items"]) == 2
        r = await it.http.get(
            "/access-log", headers=it.auth(A.police, Role.supervisor, province="79")
        )
        assert r.json()["items"] == []
        # the access log is append-only
        try:
            await db_pool.execute("DELETE FROM common.access_log")
            raise AssertionError("delete should be refused")
        except Exception as exc:
            assert "append-only" in str(exc)


async def test_list_cases_jurisdiction_filters_and_classify(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        a = (
            await it.open(open_body(channel="hotline_111", person={"prs_IdentityNumber": "A123"}))
        ).json()
        b = (
            await it.open(open_body(channel="walk_in", person={"prs_IdentityNumber": "B123"}))
        ).json()
        hcm = it.auth(A.police, user="hcm-1", province="79")
        c = await it.open(
            open_body(province="79", person={"prs_IdentityNumber": "C123"}), headers=hcm
        )
        assert c.status_code == 201
        r = await it.http.get("/cases", headers=it.auth())
        assert r.status_code == 200 and r.json()["total"] == 2
        assert [x["case_id"] for x in r.json()["items"]] == [b["case_id"], a["case_id"]]
        r = await it.http.get(
            "/cases", params={"channel": "hotline_111", "sort": "opened_at"}, headers=it.auth()
        )
        assert [x["case_id"] for x in r.json()["items"]] == [a["case_id"]]
        r = await it.http.get("/cases", params={"province": "79"}, headers=it.auth())
        assert r.status_code == 403
        nat = it.auth(A.steering_committee, Role.auditor, province="*")
        r = await it.http.get("/cases", params={"limit": 2}, headers=nat)
        assert r.json()["total"] == 3 and r.json()["next_offset"] == 2
        r = await it.http.get("/cases", params={"sort": "name"}, headers=it.auth())
        assert r.status_code == 422

        # classify: the receive decision goes to the workflow
        r = await it.http.post(
            f"/cases/{a['case_id']}/classify",
            headers={**it.auth(), "Idempotency-Key": "cl-1"},
            json={"classification": "trafficking_suspected", "justification": "signs of coercion"},
        )
        assert r.status_code == 200, r.text
        assert r.json()["stage"] != "receive"
        again = await it.http.post(
            f"/cases/{a['case_id']}/classify",
            headers={**it.auth(), "Idempotency-Key": "cl-1"},
            json={"classification": "trafficking_suspected", "justification": "signs of coercion"},
        )
        assert again.status_code == 200 and again.json()["version"] == r.json()["version"]
        # the case moved on to verify (owned by another agency): police may no longer act on it,
        # and a police supervisor may not decide another agency's stage without an override reason
        moved = await it.http.post(
            f"/cases/{a['case_id']}/classify",
            headers=it.auth(),
            json={"classification": "not_relevant", "justification": "second try"},
        )
        assert moved.status_code == 403
        stale = await it.http.post(
            f"/cases/{a['case_id']}/classify",
            headers=it.auth(A.police, Role.supervisor),
            json={"classification": "not_relevant", "justification": "second try"},
        )
        assert stale.status_code == 403 and "override" in stale.json()["detail"], stale.text
        other = await it.http.post(
            f"/cases/{b['case_id']}/classify",
            headers=it.auth(A.legal_aid),
            json={"classification": "not_relevant", "justification": "not ours"},
        )
        assert other.status_code == 403
        r = await it.http.post(
            "/cases/c-nope/classify",
            headers=it.auth(),
            json={"classification": "not_relevant", "justification": "none"},
        )
        assert r.status_code == 404
