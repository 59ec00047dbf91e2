"""Mass arrivals (issue 13 item 3): the entry decision carried by bulk rows (one step into verification,
recorded as the opener's classify), concurrent rows with the duplicate flags of row order, and background
batches (202, `done / total`, paged results, chunks, resumed after the intake process stops mid-batch).
Real PostgreSQL, real Temporal (time-skipping server), the real workflow and audit workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from services.intake import bulk
from shared.auth import Principal
from shared.contract import CaseInput, CaseState, Decide, ReceiveDecision
from shared.crypto import KeyRing
from shared.db import Conn
from shared.domain import AgencyRole, Channel, Role
from tests.helpers.intake_stack import PROVINCE, A, intake_app, open_body
from tests.helpers.workflow_harness import facts

ENTRY = {
    "classification": "trafficking_suspected",
    "justification": "group handover: forced labour at a scam compound",
}
POLL = 0.05  # seconds between polls of a batch's progress (bounded waits, never asserted)


GIVEN = ["Lan", "Mai", "Hoa", "Linh", "Hương", "Thảo", "Ngọc", "Trang", "Hà", "Yến"]
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ"]


def person_row(
    i: int,
    *,
    ident: str | None = None,
    name: tuple[str, str] | None = None,
    year: int = 2001,
    **over: Any,
) -> dict[str, Any]:
    """The i-th person (i < 100): a distinct name unless one is given."""
    name = name or (GIVEN[i % 10], FAMILY[i // 10])
    person = {
        "prs_FirstName": name[0],
        "prs_MiddleName": "Thị",
        "prs_SecondName": name[1],
        "birth_year": year,
        "prs_IdentityNumber": ident or f"0013{i:08d}",
    }
    return open_body(person=person, **over)


async def events(pool: Any, case_id: str, at_least: int) -> list[Any]:
    for _ in range(1200):  # bounded wait for the audit activity (a minute: CI machines are shared)
        rows = await pool.fetch(
            "SELECT * FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id
        )
        if len(rows) >= at_least:
            return list(rows)
        await asyncio.sleep(POLL)
    return list(rows)


async def test_entry_decision_opens_bulk_rows_straight_into_verification(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        guard = it.auth(A.border_guard, user="bg-officer-1")
        rows = [
            person_row(0),
            person_row(1, year=datetime.now(UTC).year - 14),
            {**person_row(2), "channel": "teleport"},
        ]
        before = await ts_env.get_current_time()
        r = await it.http.post(
            "/cases/bulk",
            json={"rows": rows, "entry_decision": ENTRY},
            headers={**guard, "X-Request-ID": "req-handover-1"},
        )
        assert r.status_code == 200, r.text
        res = r.json()
        assert [x["status"] for x in res["results"]] == ["opened", "opened", "invalid"]
        assert res["results"][2]["errors"][0]["loc"] == ["channel"]
        for x in res["results"][:2]:
            state = await ts_env.client.get_workflow_handle(x["case_id"]).query(
                "state", result_type=CaseState
            )
            # one step: in verification, owned by the border guard (policy owner for a handover), with its deadline
            assert state.stage.value == "verify" and state.owner_agency == AgencyRole.border_guard
            assert state.deadline is not None and state.deadline.due_at > before
            assert state.stages[0].decided_by == "bg-officer-1"
            # recorded as the classify would be: case_opened then stage_decided, by the same actor and request
            evs = await events(db_pool, x["case_id"], 2)
            assert [(e["kind"], e["actor_user_id"], e["actor_agency"]) for e in evs] == [
                ("case_opened", "bg-officer-1", "border_guard"),
                ("stage_decided", "bg-officer-1", "border_guard"),
            ]
            # the justification is kept as free text is (a reference into the encrypted store), as classify's
            assert evs[1]["reason"] and evs[1]["request_id"] == "req-handover-1"
            assert evs[1]["data"]["decision"]["classification"] == "trafficking_suspected"
            assert evs[1]["state"]["stage"] == "verify"
        # a plain list still works and opens in receive, as before
        plain = (await it.http.post("/cases/bulk", json=[person_row(3)], headers=guard)).json()
        state = await ts_env.client.get_workflow_handle(plain["results"][0]["case_id"]).query(
            "state", result_type=CaseState
        )
        assert state.stage.value == "receive"
        # a bad entry decision names its field
        r = await it.http.post(
            "/cases/bulk",
            json={"rows": rows, "entry_decision": {"classification": "maybe"}},
            headers=guard,
        )
        assert r.status_code == 422 and "entry_decision" in str(r.json()["detail"])


async def test_a_refused_initial_decision_is_recorded_and_the_case_stays_in_receive(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    """The workflow re-checks the decision as the decide Update would (here: an agency that does not own
    the receive stage): nothing changes but the refusal, which the audit log records."""
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue):
        f = facts("c-refused-initial-1", channel=Channel.walk_in, opener=A.police)
        other = f.opened_by.model_copy(update={"agency": A.womens_union, "user_id": "wu-1"})
        decide = Decide(
            actor=other,
            justification="not theirs to decide",
            decision=ReceiveDecision(classification="trafficking_suspected", channel=f.channel),
        )
        handle = await ts_env.client.start_workflow(
            "CaseWorkflow",
            CaseInput(
                facts=f, oversight_task_queue=f"{task_queue}-oversight", initial_decision=decide
            ),
            id=f.case_id,
            task_queue=task_queue,
        )
        evs = await events(db_pool, f.case_id, 2)
        assert [e["kind"] for e in evs] == ["case_opened", "initial_decision_refused"]
        assert evs[1]["actor_user_id"] == "wu-1" and evs[1]["data"]["error_type"] == "forbidden"
        state = await handle.query("state", result_type=CaseState)
        assert state.stage.value == "receive" and state.version == 0


def chain_rows() -> list[dict[str, Any]]:
    """40 rows with duplicates inside the batch: identity numbers repeat every 7 rows among the first 21;
    rows 21..39 have no identity number and the even ones from 30 share a name and birth year (evidence
    enough to flag); row 35 shares both. Every row has its own phone number."""
    rows = []
    for i in range(40):
        name = ("Hoa", "Trần") if i >= 30 and i % 2 == 0 else (f"Mai{i}", "Lê")
        row = person_row(i, ident=f"0013{i % 7:08d}", name=name, year=1999)
        row["person"]["prs_MobilePhone"] = f"09{i:08d}"
        if i >= 21:
            row["person"]["prs_IdentityNumber"] = None
        rows.append(row)
    rows[35]["person"]["prs_IdentityNumber"] = "001300000003"
    rows[35]["person"].update(prs_FirstName="Hoa", prs_SecondName="Trần")
    return rows


def flags_by_row(results: list[dict[str, Any]]) -> list[list[tuple[str, int]]]:
    """Each row's flags as (match kind, index of the other row), sorted."""
    index_of = {x["case_id"]: x["index"] for x in results}
    return [
        sorted((d["match_kind"], index_of[d["other_case_id"]]) for d in x["duplicates"])
        for x in results
    ]


async def test_concurrent_rows_flag_duplicates_as_row_order_does(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        rows = chain_rows()
        concurrent = (await it.http.post("/cases/bulk", json=rows, headers=it.auth())).json()[
            "results"
        ]

        # the same rows one after another (concurrency 1), as other persons (other ids, other family name)
        def other(row: dict[str, Any]) -> dict[str, Any]:
            p = row["person"]
            return {
                **row,
                "person": {
                    **p,
                    "prs_IdentityNumber": "7" + p["prs_IdentityNumber"]
                    if p["prs_IdentityNumber"]
                    else None,
                    "prs_SecondName": p["prs_SecondName"] + "x",
                    "prs_MobilePhone": "08" + p["prs_MobilePhone"][2:],
                },
            }

        principal = Principal(
            user_id="police-1",
            roles=frozenset({Role.caseworker}),
            agency=A.police,
            province=PROVINCE,
        )
        sequential: dict[int, bulk.RowDone] = {}

        async def record(done: bulk.RowDone, conn: Conn | None) -> None:
            sequential.setdefault(done.result.index, done)

        async def listed() -> AsyncIterator[tuple[int, Any]]:
            for i, row in enumerate(rows):
                yield i, other(row)

        await bulk.run_rows(
            it.runtime,
            principal,
            listed(),
            record,
            key_of=lambda i: None,
            request_id=None,
            source="bulk",
            entry=None,
            concurrency=1,
        )
        seq_results = [
            {
                "index": i,
                "case_id": sequential[i].result.case_id,
                "duplicates": sequential[i].duplicates,
            }
            for i in range(len(rows))
        ]
        expected = flags_by_row(seq_results)
        assert flags_by_row(concurrent) == expected
        # and that is: each row flagged against every earlier row sharing a key, never a later one
        assert expected[0] == [] and expected[7] == [("identity_number", 0)]
        assert expected[14] == [("identity_number", 0), ("identity_number", 7)]
        assert expected[35] == [
            ("evidence", 30),
            ("evidence", 32),
            ("evidence", 34),
            ("identity_number", 3),
            ("identity_number", 10),
            ("identity_number", 17),
        ]
        # two different persons who only share a birth year and the province are not flagged
        assert expected[31] == [] and expected[32] == [("evidence", 30)]
        assert all(other_index < i for i, fl in enumerate(expected) for _, other_index in fl)
        statuses = [x["status"] for x in concurrent]
        assert statuses.count("duplicate_flagged") == sum(1 for fl in expected if fl)


async def _wait_finished(it: Any, batch_id: str, headers: dict[str, str]) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for _ in range(1200):  # bounded wait
        view = (
            await it.http.get(
                f"/cases/bulk/batches/{batch_id}", headers=headers, params={"limit": 0}
            )
        ).json()
        if view["finished_at"]:
            break
        await asyncio.sleep(POLL)
    return view


async def test_background_batch_in_chunks_with_progress_and_pages(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        guard = {**it.auth(A.border_guard, user="bg-officer-2"), "Idempotency-Key": "handover-77"}
        rows = [person_row(i) for i in range(12)]
        rows[4] = person_row(4, prs_Gender="Womanly")
        rows[9]["person"]["prs_IdentityNumber"] = rows[1]["person"][
            "prs_IdentityNumber"
        ]  # a true duplicate
        body = {"total": 12, "entry_decision": ENTRY, "rows": rows[:5]}
        r = await it.http.post("/cases/bulk/batches", json=body, headers=guard)
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        assert (
            r.headers["Location"] == f"/cases/bulk/batches/{batch_id}" and r.json()["total"] == 12
        )
        # the same request again: the same batch
        again = await it.http.post("/cases/bulk/batches", json=body, headers=guard)
        assert again.status_code == 200 and again.json()["batch_id"] == batch_id
        assert again.headers["Idempotent-Replayed"] == "true"
        other_body = await it.http.post(
            "/cases/bulk/batches", json={**body, "total": 13}, headers=guard
        )
        assert other_body.status_code == 422
        # chunks in order: a gap is refused, a chunk sent twice is kept once, another row at a position is refused
        gap = await it.http.post(
            f"/cases/bulk/batches/{batch_id}/rows",
            json={"offset": 8, "rows": rows[8:]},
            headers=guard,
        )
        assert gap.status_code == 409 and "next offset is 5" in gap.json()["detail"]
        for _ in range(2):
            r = await it.http.post(
                f"/cases/bulk/batches/{batch_id}/rows",
                json={"offset": 5, "rows": rows[5:9]},
                headers=guard,
            )
            assert r.status_code == 202, r.text
        changed = await it.http.post(
            f"/cases/bulk/batches/{batch_id}/rows",
            json={"offset": 8, "rows": [person_row(99)]},
            headers=guard,
        )
        assert changed.status_code == 422 and "row 8" in str(changed.json()["detail"])
        beyond = await it.http.post(
            f"/cases/bulk/batches/{batch_id}/rows",
            json={"offset": 9, "rows": rows[9:] * 2},
            headers=guard,
        )
        assert beyond.status_code == 422
        progress = (await it.http.get(f"/cases/bulk/batches/{batch_id}", headers=guard)).json()
        assert (
            progress["received"] == 9 and progress["finished_at"] is None and progress["done"] <= 9
        )
        r = await it.http.post(
            f"/cases/bulk/batches/{batch_id}/rows",
            json={"offset": 9, "rows": rows[9:]},
            headers=guard,
        )
        assert r.status_code == 202

        view = await _wait_finished(it, batch_id, guard)
        assert view["finished_at"] and (view["done"], view["total"], view["received"]) == (
            12,
            12,
            12,
        )
        assert (view["opened"], view["duplicate_flagged"], view["invalid"], view["failed"]) == (
            10,
            1,
            1,
            0,
        )
        assert view["entry_decision"] == ENTRY
        # results page by page, in row order
        first = (
            await it.http.get(f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 5})
        ).json()
        assert [x["index"] for x in first["results"]] == [0, 1, 2, 3, 4] and first[
            "next_offset"
        ] == 5
        rest = (
            await it.http.get(
                f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 200, "offset": 5}
            )
        ).json()
        results = first["results"] + rest["results"]
        assert [x["index"] for x in results] == list(range(12)) and rest["next_offset"] is None
        assert (
            results[4]["status"] == "invalid" and results[4]["errors"][0]["loc"][-1] == "prs_Gender"
        )
        assert results[9]["status"] == "duplicate_flagged"
        assert results[9]["duplicates"][0]["other_case_id"] == results[1]["case_id"]
        invalid = (
            await it.http.get(
                f"/cases/bulk/batches/{batch_id}", headers=guard, params={"status": "invalid"}
            )
        ).json()["results"]
        assert [x["index"] for x in invalid] == [4]
        for x in results:
            if x["case_id"]:
                assert x["workflow_started"]
                state = await ts_env.client.get_workflow_handle(x["case_id"]).query(
                    "state", result_type=CaseState
                )
                assert state.stage.value == "verify" and state.deadline is not None
        # the rows' personal data is not kept once they are done
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM intake.bulk_rows WHERE payload IS NOT NULL"
            )
            == 0
        )
        # the batch is its sender's only
        r = await it.http.get(
            f"/cases/bulk/batches/{batch_id}", headers=it.auth(A.border_guard, user="bg-other")
        )
        assert r.status_code == 404


async def test_batch_resumes_after_the_intake_process_stops_mid_batch(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    rows = [person_row(i) for i in range(40)]
    for i in range(0, 40, 8):  # a few true duplicates, so the flags cross the restart
        rows[i + 4]["person"]["prs_IdentityNumber"] = rows[i]["person"]["prs_IdentityNumber"]
    quick = {"bulk_lease_seconds": 0.5, "bulk_resume_interval": 0.05}
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue, extras=quick) as it:
        guard = it.auth(A.border_guard, user="bg-officer-3")
        r = await it.http.post(
            "/cases/bulk/batches",
            json={"total": 40, "entry_decision": ENTRY, "rows": rows},
            headers=guard,
        )
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        for _ in range(400):  # stop once some rows are done and others are not (a bounded wait)
            done = await db_pool.fetchval(
                "SELECT count(*) FROM intake.bulk_rows WHERE batch_id = $1 AND status <> 'pending'",
                batch_id,
            )
            if done >= 3:
                break
            await asyncio.sleep(0.01)
    # the process is gone (its batch task cancelled mid-row); no half-written case
    assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == await db_pool.fetchval(
        "SELECT count(*) FROM intake.intake_cases"
    )
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue, extras=quick) as it:
        view = await _wait_finished(it, batch_id, guard)
        assert view["finished_at"] and view["done"] == 40 and view["failed"] == 0
        assert view["opened"] + view["duplicate_flagged"] + view["replayed"] == 40
        assert view["duplicate_flagged"] == 5
        results = (
            await it.http.get(
                f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 200}
            )
        ).json()["results"]
        case_ids = [x["case_id"] for x in results]
        assert len(set(case_ids)) == 40
        # one case per row, never two: the rows' keys are the batch id plus the row index
        assert await db_pool.fetchval("SELECT count(*) FROM intake.intake_cases") == 40
        assert await db_pool.fetchval("SELECT count(*) FROM intake.persons") == 40
        keys = await db_pool.fetch("SELECT idem_key FROM intake.intake_cases ORDER BY idem_key")
        assert sorted(k["idem_key"] for k in keys) == sorted(f"{batch_id}#{i}" for i in range(40))
        for i in range(0, 40, 8):
            assert [d["other_case_id"] for d in results[i + 4]["duplicates"]] == [case_ids[i]]
        # every case was classified at its start (the first process's cases were settled by its harness)
        for cid in case_ids:
            assert [e["kind"] for e in await events(db_pool, cid, 2)][:2] == [
                "case_opened",
                "stage_decided",
            ]


async def test_entry_justification_is_encrypted_at_rest_and_erased_with_the_person(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    from services.intake import repository

    canary = "CANARY chị Lan nhận ra chủ xưởng"
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        guard = it.auth(A.border_guard, user="bg-officer-1")
        entry = {"classification": "trafficking_suspected", "justification": canary}
        r = await it.http.post(
            "/cases/bulk", json={"rows": [person_row(0)], "entry_decision": entry}, headers=guard
        )
        assert r.status_code == 200, r.text
        case_id = r.json()["results"][0]["case_id"]
        state = await ts_env.client.get_workflow_handle(case_id).query(
            "state", result_type=CaseState
        )
        assert state.stage.value == "verify"  # the decision was read back and applied
        created = await it.http.post(
            "/cases/bulk/batches",
            json={"total": 1, "rows": [person_row(1)], "entry_decision": entry},
            headers=guard,
        )
        assert created.status_code == 202, created.text
        assert (
            created.json()["entry_decision"]["justification"] == canary
        )  # its sender reads it back
        raw = [
            bytes(v)
            for v in await db_pool.fetchval(
                "SELECT array_agg(entry_justification) FROM (SELECT entry_justification FROM intake.intake_cases "
                "UNION ALL SELECT entry_justification FROM intake.bulk_batches) t"
            )
        ]
        assert raw and all(b"CANARY" not in b for b in raw)
        person_id = await db_pool.fetchval(
            "SELECT person_id FROM intake.intake_cases WHERE case_id = $1", case_id
        )
        assert await repository.erase_person(db_pool, person_id) == "erased"
        assert (
            await db_pool.fetchval(
                "SELECT entry_justification FROM intake.intake_cases WHERE case_id = $1", case_id
            )
            is None
        )
