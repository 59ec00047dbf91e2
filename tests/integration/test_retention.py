"""Retention: cases closed longer than the retention period lose their personal data; statistics and
the audit chain stay valid; running the job twice erases once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio.worker import Worker

from services.oversight.audit_log import verify_chain
from services.oversight.retention import due_for_erasure, start_erasures
from services.support.activities import TASK_QUEUE as SUPPORT_QUEUE
from services.support.activities import build_activities as support_activities
from services.verification.activities import TASK_QUEUE as VERIFICATION_QUEUE
from services.verification.activities import build_activities as verification_activities
from shared.crypto import KeyRing
from shared.temporal import INTAKE_TASK_QUEUE
from tests.helpers.intake_stack import PROVINCE, intake_app, open_body
from tests.helpers.workflow_harness import STARTED


async def _wait(pool: Any, sql: str, *args: Any, tries: int = 300) -> Any:
    import asyncio

    for _ in range(tries):
        value = await pool.fetchval(sql, *args)
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError(f"never true: {sql}")


async def test_retention_erases_pii_of_long_closed_cases_once(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with (
        intake_app(ts_env, db_pool, db_url, ring, task_queue) as it,
        Worker(
            ts_env.client,
            task_queue=VERIFICATION_QUEUE,
            activities=verification_activities(it.runtime),
        ),
        Worker(ts_env.client, task_queue=SUPPORT_QUEUE, activities=support_activities(it.runtime)),
    ):
        closed = (await it.open()).json()
        still_open = (
            await it.open(
                open_body(person={"prs_FirstName": "Mai", "prs_IdentityNumber": "001300099999"})
            )
        ).json()
        r = await it.http.post(
            f"/cases/{closed['case_id']}/classify",
            headers={**it.auth(), "Idempotency-Key": "cl-r"},
            json={
                "classification": "not_relevant",
                "justification": "a labour dispute, no sign of trafficking",
            },
        )
        assert r.status_code == 200, r.text
        await _wait(
            db_pool,
            "SELECT 1 FROM oversight.case_summary WHERE case_id = $1 AND status = 'Closed'",
            closed["case_id"],
        )

        retention_days = 5 * 365
        now = await ts_env.get_current_time()  # the case closed on the test server's clock
        async with db_pool.acquire() as conn:
            assert await due_for_erasure(conn, now, retention_days) == []  # not yet
            due = await due_for_erasure(
                conn, now + timedelta(days=retention_days + 400), retention_days
            )
        assert [d.case_id for d in due] == [closed["case_id"]]  # the open case is never due
        first = len(STARTED.ids)
        started = await start_erasures(
            ts_env.client,
            due,
            retention_days,
            workflow_task_queue=task_queue,
            intake_task_queue=INTAKE_TASK_QUEUE,
            oversight_task_queue=f"{task_queue}-oversight",
        )
        assert started == [closed["case_id"]]
        assert (
            await start_erasures(ts_env.client, due, retention_days, workflow_task_queue=task_queue)
            == []
        )  # once
        result = await ts_env.client.get_workflow_handle(STARTED.ids[first]).result()
        assert result is True

        person = await db_pool.fetchrow(
            "SELECT * FROM intake.persons WHERE person_id = $1", closed["person_ref"]
        )
        assert (
            person["erased_at"] is not None
            and person["first_name"] is None
            and person["identity_number"] is None
        )
        assert (person["age_band"], person["province"]) == ("adult", PROVINCE)  # statistics stay
        kept = await db_pool.fetchrow(
            "SELECT * FROM intake.persons WHERE person_id = $1", still_open["person_ref"]
        )
        assert kept["erased_at"] is None and kept["first_name"] is not None
        events = await db_pool.fetch(
            "SELECT kind, reason FROM oversight.case_events WHERE case_id = $1 ORDER BY seq",
            closed["case_id"],
        )
        assert events[-1]["kind"] == "personal_data_erased" and "1825 days" in events[-1]["reason"]
        async with db_pool.acquire() as conn:
            assert (await verify_chain(conn, ring, closed["case_id"])).ok
            assert (
                await due_for_erasure(
                    conn, now + timedelta(days=retention_days + 400), retention_days
                )
                == []
            )
