"""`nrm audit replay` / GET /audit/replay: the history exported at closure (and the live one) replays on
the current code and reaches the audit log's last state; changed code is reported as non-deterministic."""

from __future__ import annotations

import argparse

from services.oversight import cli
from services.oversight.replay import replay_case
from shared.config import Settings
from shared.contract import Classification, Decide, ReceiveDecision
from shared.domain import AgencyRole, Channel, Role
from tests.conftest import new_case_id
from tests.helpers.oversight_stack import auth, oversight_api
from tests.helpers.workflow_harness import actor, facts, running_workers
from tests.replay.test_replay import ChangedCaseWorkflow
from workflows.case_workflow import CaseWorkflow


async def test_replay_exported_and_live_history(
    ts_env, db_pool, db_url, ring, task_queue, tmp_path, capsys
):
    async with (
        running_workers(ts_env.client, db_pool, ring, task_queue) as h,
        oversight_api(ts_env, db_pool, ring) as api,
    ):
        cid = new_case_id()
        handle = await h.open(facts(cid, now=await ts_env.get_current_time()))
        await handle.execute_update(
            CaseWorkflow.decide,
            Decide(
                actor=actor(AgencyRole.hotline),
                justification="a neighbour dispute, not trafficking",
                decision=ReceiveDecision(
                    classification=Classification.not_relevant, channel=Channel.hotline_111
                ),
            ),
        )
        final = (
            await handle.result()
        )  # the reopen window passes; the history is exported at the end
        async with db_pool.acquire() as conn:
            exported = await conn.fetch(
                "SELECT run_id FROM oversight.workflow_histories WHERE case_id = $1", cid
            )
            assert len(exported) == 1
            [rep] = await replay_case(None, conn, ring, cid, source="export")
            assert rep.source == "export" and rep.deterministic and rep.error is None
            # the export is the workflow's last activity, so it ends before the completion event
            assert (
                rep.final_state_from == "last_record_case_events_input" and rep.matches_audit_log
            ), rep.differences
            [live] = await replay_case(ts_env.client, conn, ring, cid, source="live")
            assert live.source == "live" and live.deterministic and live.matches_audit_log, (
                live.differences
            )
            assert live.final_state_from == "completion_result"
            assert live.run_id == rep.run_id == exported[0]["run_id"]
            [bad] = await replay_case(
                None, conn, ring, cid, source="export", workflows=[ChangedCaseWorkflow]
            )
            assert not bad.deterministic and "NondeterminismError" in (bad.error or "")
        assert final.status.value == "ClosedReferred" or final.status.value == "Closed"

        r = await api.get(
            "/audit/replay", params={"case_id": cid}, headers=auth(ring, Role.auditor, province="*")
        )
        assert r.status_code == 200, r.text
        assert r.json()[0]["deterministic"] is True and r.json()[0]["matches_audit_log"] is True
        assert (
            await api.get(
                "/audit/replay", params={"case_id": cid}, headers=auth(ring, Role.caseworker)
            )
        ).status_code == 403

        # the CLI, from the export (Temporal not needed)
        keyring = tmp_path / "keyring.json"
        ring.save(keyring)
        code = await cli._replay(
            db_url,
            Settings(database_url=db_url, keyring_file=keyring),
            argparse.Namespace(case_id=cid, source="export"),
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert "deterministic" in out and "matches the audit log" in out

        # an altered audit log no longer matches what the workflow reached
        async with db_pool.acquire() as conn:
            await conn.execute(
                "ALTER TABLE oversight.case_events DISABLE TRIGGER case_events_no_update"
            )
            await conn.execute(
                """UPDATE oversight.case_events SET state = jsonb_set(state, '{outcome}', '"deceased"')
                                  WHERE case_id = $1 AND seq = (SELECT max(seq) FROM oversight.case_events
                                                                WHERE case_id = $1)""",
                cid,
            )
            [rep] = await replay_case(None, conn, ring, cid, source="export")
            assert (
                rep.deterministic
                and rep.matches_audit_log is False
                and rep.differences == ["outcome"]
            )
