"""The audit log's completeness and erasable free text (issue 10 items 5 and 4):

- a deleted tail, or every event of a case deleted, fails verification naming the case and the missing
  range, against the count the workflow emitted (projection; live workflow; exported history);
- TRUNCATE is refused on the audit tables, and the projection's count never moves backwards;
- free text is stored encrypted, hashed as a keyed digest, erasable by retention without breaking the
  chain; events written in the old format (text hashed in clear) still verify and can be erased."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.oversight import cli
from services.oversight.audit_log import (
    GENESIS,
    chain_hash,
    erase_case_free_text,
    event_fields,
    verify_case,
    verify_chain,
)
from shared.config import Settings
from shared.contract import Classification, Decide, ReceiveDecision, VerifyDecision, VerifyResult
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Channel, Role
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from workflows.case_workflow import CaseWorkflow

CANARY = "Nguyễn Thị Canary"


async def _three_events(
    h: Any, reason: str = "caller describes recruitment abroad"
) -> tuple[str, Any]:
    cid = new_case_id()
    handle = await h.open(facts(cid))
    await h.events(cid, 1)
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.hotline),
            justification=reason,
            decision=ReceiveDecision(
                classification=Classification.trafficking_suspected, channel=Channel.hotline_111
            ),
        ),
    )
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.social_protection),
            justification="police reply confirms the report",
            decision=VerifyDecision(result=VerifyResult.confirmed),
        ),
    )
    await h.events(cid, 3)
    return cid, handle


async def _closed_case(h: Any, reason: str) -> str:
    cid = new_case_id()
    handle = await h.open(facts(cid))
    await h.events(cid, 1)
    await handle.execute_update(
        CaseWorkflow.decide,
        Decide(
            actor=actor(AgencyRole.hotline),
            justification=reason,
            decision=ReceiveDecision(
                classification=Classification.not_relevant, channel=Channel.hotline_111
            ),
        ),
    )
    await h.events(cid, 2)
    return cid


async def _as_dba(conn: asyncpg.Connection, *sql: tuple[Any, ...]) -> None:
    """What a database administrator can do: switch the guards off, edit, switch them on."""
    await conn.execute("ALTER TABLE oversight.case_events DISABLE TRIGGER USER")
    await conn.execute("ALTER TABLE oversight.case_summary DISABLE TRIGGER USER")
    try:
        for stmt, *args in sql:
            await conn.execute(stmt, *args)
    finally:
        await conn.execute("ALTER TABLE oversight.case_events ENABLE TRIGGER USER")
        await conn.execute("ALTER TABLE oversight.case_summary ENABLE TRIGGER USER")


def _settings(ring: KeyRing, db_url: str, tmp_path: Any) -> Settings:
    keyring = tmp_path / "keyring.json"
    ring.save(keyring)
    return Settings(database_url=db_url, keyring_file=keyring)


# ---- item 5: a deleted tail -------------------------------------------------------------------
async def test_deleting_the_last_event_fails_verification_naming_the_case(
    ts_env, db_pool, db_url, ring, task_queue, tmp_path, capsys
):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid, handle = await _three_events(h)
        _other, other_handle = await _three_events(h)
        auditor = auth(ring, Role.auditor, province="*", user="aud-1")
        assert (await api.get("/audit/verify", params={"case_id": cid}, headers=auditor)).json()[
            "ok"
        ] is True

        async with db_pool.acquire() as conn:
            await _as_dba(
                conn, ("DELETE FROM oversight.case_events WHERE case_id = $1 AND seq = 3", cid)
            )

        r = await api.get("/audit/verify", params={"case_id": cid}, headers=auditor)
        [res] = r.json()["broken"]
        assert res["case_id"] == cid and res["ok"] is False and res["events"] == 2
        assert res["first_broken_seq"] == 3 and res["expected_events"] == 3
        assert res["problem"].startswith("event 3 missing: the workflow emitted 3")
        assert "workflow 3" in res["problem"] and "projection 3" in res["problem"]
        res = (await api.get("/audit/verify", headers=auditor)).json()
        assert res["checked"] == 2 and [b["case_id"] for b in res["broken"]] == [cid]

        code = await cli._verify(
            db_url,
            _settings(ring, db_url, tmp_path),
            argparse.Namespace(case_id=None, all=True, province=None),
        )
        out = capsys.readouterr().out
        assert (
            code == 1
            and f"{cid}: BROKEN at seq 3: event 3 missing" in out
            and "2 case(s) checked, 1 broken" in out
        )
        await handle.terminate()
        await other_handle.terminate()


async def test_deleting_every_event_of_a_case_fails_verification(
    ts_env, db_pool, db_url, ring, task_queue, tmp_path, capsys
):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid, handle = await _three_events(h)
        async with db_pool.acquire() as conn:
            await _as_dba(conn, ("DELETE FROM oversight.case_events WHERE case_id = $1", cid))
            report = await verify_chain(conn, ring, cid)
        assert not report.ok and report.events == 0 and report.first_broken_seq == 1
        assert report.problem is not None and report.problem.startswith("events 1..3 missing")

        auditor = auth(ring, Role.auditor, province="*", user="aud-1")
        res = (
            await api.get("/audit/verify", headers=auditor)
        ).json()  # --all: the projection knows the case
        assert res["ok"] is False and [b["case_id"] for b in res["broken"]] == [cid]
        code = await cli._verify(
            db_url,
            _settings(ring, db_url, tmp_path),
            argparse.Namespace(case_id=None, all=True, province=None),
        )
        assert (
            code == 1 and f"{cid}: BROKEN at seq 1: events 1..3 missing" in capsys.readouterr().out
        )
        await handle.terminate()


async def test_tail_deleted_and_projection_rewound_is_caught_by_the_workflow_counter(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _three_events(h)
        async with db_pool.acquire() as conn:
            await _as_dba(
                conn,
                ("DELETE FROM oversight.case_events WHERE case_id = $1 AND seq = 3", cid),
                ("UPDATE oversight.case_summary SET last_event_seq = 2 WHERE case_id = $1", cid),
            )
            assert (await verify_chain(conn, ring, cid)).ok  # the database alone can no longer tell
            report = await verify_case(conn, ring, cid, ts_env.client)
        assert not report.ok and report.expected_from == "workflow" and report.expected_events == 3
        assert report.problem is not None and report.problem.startswith("event 3 missing")
        await handle.terminate()


async def test_a_closed_cases_deleted_tail_is_caught_by_its_exported_history(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid = await _closed_case(h, "a labour dispute, no sign of trafficking")
        for _ in range(200):  # the export is the workflow's last activity, after the reopen window
            await ts_env.sleep(timedelta(days=40))
            if await db_pool.fetchval(
                "SELECT 1 FROM oversight.workflow_histories WHERE case_id = $1", cid
            ):
                break
        async with db_pool.acquire() as conn:
            await _as_dba(
                conn,
                ("DELETE FROM oversight.case_events WHERE case_id = $1 AND seq = 2", cid),
                ("UPDATE oversight.case_summary SET last_event_seq = 1 WHERE case_id = $1", cid),
            )
            report = await verify_case(conn, ring, cid)  # no Temporal: the export is the witness
        assert (
            not report.ok
            and report.expected_from == "exported history"
            and report.expected_events == 2
        )
        assert report.problem is not None and report.problem.startswith("event 2 missing")


async def test_truncate_and_rewinding_the_audit_tables_are_refused(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _three_events(h)
        async with db_pool.acquire() as conn:
            for sql in (
                "TRUNCATE oversight.case_events",
                "TRUNCATE oversight.case_summary",
                "TRUNCATE oversight.workflow_histories",
                "TRUNCATE oversight.case_events CASCADE",
            ):
                with pytest.raises(asyncpg.RaiseError, match="TRUNCATE refused"):
                    await conn.execute(sql)
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute("DELETE FROM oversight.case_events WHERE case_id = $1", cid)
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await conn.execute(
                    "UPDATE oversight.case_events SET kind = 'x' WHERE case_id = $1", cid
                )
            with pytest.raises(asyncpg.RaiseError, match="never removed"):
                await conn.execute("DELETE FROM oversight.case_summary WHERE case_id = $1", cid)
            with pytest.raises(asyncpg.RaiseError, match="never moves backwards"):
                await conn.execute(
                    "UPDATE oversight.case_summary SET last_event_seq = 1 WHERE case_id = $1", cid
                )
            # the erasure switch does not open the chain columns
            async with conn.transaction():
                await conn.execute("SET LOCAL nrm.audit_erasure = 'on'")
                with pytest.raises(asyncpg.RaiseError, match="append-only"):
                    await conn.execute(
                        "UPDATE oversight.case_events SET hash = 'x', free_text = NULL, "
                        "free_text_erased_at = now() WHERE case_id = $1",
                        cid,
                    )
            assert (
                await conn.fetchval(
                    "SELECT count(*) FROM oversight.case_events WHERE case_id = $1", cid
                )
                == 3
            )
            assert (await verify_chain(conn, ring, cid)).ok
        await handle.terminate()


# ---- item 4: free text erasable without breaking the chain ------------------------------------
async def test_free_text_is_stored_encrypted_and_erased_after_closure_with_the_chain_intact(
    ts_env, db_pool, ring, task_queue
):
    reason = f"{CANARY} called from Lào Cai about her sister"
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid = await _closed_case(h, reason)
        open_cid, open_handle = await _three_events(h, reason=f"{CANARY} again")
        raw = await db_pool.fetchval(
            "SELECT string_agg(concat_ws('|', reason, data::text, state::text), '\n') FROM oversight.case_events"
        )
        summary = await db_pool.fetchval(
            "SELECT string_agg(state::text, '\n') FROM oversight.case_summary"
        )
        assert CANARY not in raw and CANARY not in summary  # not in clear anywhere in oversight
        auditor = auth(ring, Role.auditor, province="*", user="aud-1")
        items = (await api.get(f"/cases/{cid}/history", headers=auditor)).json()["items"]
        assert (
            items[1]["reason"] == reason and items[1]["free_text_erased"] is False
        )  # authorised reader

        async with db_pool.acquire() as conn:
            with pytest.raises(ValueError, match="is open"):
                await erase_case_free_text(conn, open_cid)
            assert await erase_case_free_text(conn, cid) == 1
            assert await erase_case_free_text(conn, cid) == 0  # idempotent
            assert (await verify_chain(conn, ring, cid)).ok
            row = await conn.fetchrow(
                "SELECT * FROM oversight.case_events WHERE case_id = $1 AND seq = 2", cid
            )
        assert (
            row["free_text"] is None
            and row["free_text_digest"]
            and row["free_text_erased_at"] is not None
        )
        items = (await api.get(f"/cases/{cid}/history", headers=auditor)).json()["items"]
        assert items[1]["reason"] == "[erased]" and items[1]["free_text_erased"] is True
        assert items[1]["data"]["decision"]["classification"] == "not_relevant"  # the facts stay
        as_of = (
            await api.get(
                f"/cases/{cid}/as-of", params={"at": "2999-01-01T00:00:00+00:00"}, headers=auditor
            )
        ).json()
        assert as_of["state"]["status"] == "Closed"
        await open_handle.terminate()


async def test_free_text_ciphertext_moved_to_another_event_is_detected(
    ts_env, db_pool, ring, task_queue
):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _three_events(h)
        async with db_pool.acquire() as conn:
            await _as_dba(
                conn,
                (
                    "UPDATE oversight.case_events SET free_text = (SELECT free_text FROM "
                    "oversight.case_events WHERE case_id = $1 AND seq = 2) WHERE case_id = $1 AND seq = 3",
                    cid,
                ),
            )
            report = await verify_chain(conn, ring, cid)
        assert not report.ok and report.first_broken_seq == 3
        assert report.problem is not None and "does not decrypt" in report.problem
        await handle.terminate()


async def test_free_text_removed_from_an_open_case_is_reported(ts_env, db_pool, ring, task_queue):
    async with running_workers(ts_env.client, db_pool, ring, task_queue) as h:
        cid, handle = await _three_events(h, reason=f"{CANARY} must not vanish quietly")
        async with db_pool.acquire() as conn:
            await _as_dba(
                conn,
                (
                    "UPDATE oversight.case_events SET free_text = NULL, free_text_erased_at = now() "
                    "WHERE case_id = $1 AND seq = 2",
                    cid,
                ),
            )
            report = await verify_chain(conn, ring, cid)
        assert not report.ok and report.first_broken_seq == 2
        assert report.problem is not None and "erased while the case is open" in report.problem
        await handle.terminate()


async def _insert_legacy_chain(conn: asyncpg.Connection, ring: KeyRing, case_id: str) -> None:
    """Two events exactly as the code before hash format 2 wrote them (free text hashed in clear)."""
    prev = GENESIS
    t0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    state = {
        "case_id": case_id,
        "status": "Closed",
        "stage": "closed",
        "handoffs": [{"handoff_id": "h1", "reason": f"{CANARY} needs a shelter"}],
        "last_event_seq": 2,
    }
    for seq, (kind, reason, data) in enumerate(
        [
            ("case_opened", None, {"channel": "hotline_111"}),
            (
                "stage_decided",
                f"{CANARY} is a neighbour's daughter",
                {"decision": {"stage": "receive", "classification": "not_relevant"}},
            ),
        ],
        start=1,
    ):
        at = t0 + timedelta(minutes=seq)
        fields = event_fields(
            event_id=f"{case_id}:{seq}",
            case_id=case_id,
            seq=seq,
            occurred_at=at,
            kind=kind,
            actor_user_id="hotline-officer",
            actor_agency="hotline",
            stage="receive",
            reason=reason,
            request_id=None,
            policy_version="VN-2026.11-1",
            data=data,
            state=state,
        )
        digest = chain_hash(ring, fields, prev)
        await conn.execute(
            """INSERT INTO oversight.case_events (event_id, case_id, seq, occurred_at, kind, actor_user_id,
                   actor_agency, stage, reason, request_id, policy_version, data, state, prev_hash, hash)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,NULL,$10,$11,$12,$13,$14)""",
            f"{case_id}:{seq}",
            case_id,
            seq,
            at,
            kind,
            "hotline-officer",
            "hotline",
            "receive",
            reason,
            "VN-2026.11-1",
            data,
            state,
            prev,
            digest,
        )
        prev = digest


async def test_events_hashed_over_clear_text_still_verify_and_are_resealed_when_erased(
    db_pool, ring
):
    cid = new_case_id()
    async with db_pool.acquire() as conn:
        await _insert_legacy_chain(conn, ring, cid)
        assert (await verify_chain(conn, ring, cid)).ok  # old chains verify unchanged
        with pytest.raises(ValueError, match="pass ring="):
            await erase_case_free_text(conn, cid)
        assert (
            await erase_case_free_text(conn, cid, ring) == 2
        )  # both hold text (the state's handoff reason)
        assert await erase_case_free_text(conn, cid, ring) == 0
        raw = await conn.fetchval(
            "SELECT string_agg(concat_ws('|', reason, data::text, state::text), '\n') "
            "FROM oversight.case_events WHERE case_id = $1",
            cid,
        )
        assert CANARY not in raw
        assert (await verify_chain(conn, ring, cid)).ok
        # a resealed event is still tamper-evident
        await _as_dba(
            conn,
            (
                "UPDATE oversight.case_events SET data = $2 WHERE case_id = $1 AND seq = 2",
                cid,
                json.loads(
                    '{"decision": {"stage": "receive", "classification": "trafficking_suspected"}}'
                ),
            ),
        )
        report = await verify_chain(conn, ring, cid)
        assert not report.ok and report.first_broken_seq == 2
