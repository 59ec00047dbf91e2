"""Retention leaves nothing behind (issue 10 item 4): a case is driven through every stage over the four
service APIs with a canary string in every field that takes personal data or free text, closed, and erased.
Then every text, bytea, json/jsonb and array column of every table of every schema is searched for the
canaries (bytea field ciphertexts decrypted with the ring). Statistics stay, and the audit chain verifies."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import re
from datetime import date, timedelta
from typing import Any

import asyncpg
from cryptography.exceptions import InvalidTag

from services.intake import repository as intake_repo
from services.oversight.activities import OversightActivities
from services.oversight.audit_log import verify_chain
from services.oversight.retention import due_for_erasure, start_erasures
from services.support import repository as support_repo
from services.verification import repository as verification_repo
from shared.config import Settings
from shared.crypto import CryptoError, KeyRing
from shared.domain import Role
from shared.runtime import Runtime
from shared.temporal import INTAKE_TASK_QUEUE
from tests.helpers.intake_stack import open_body
from tests.helpers.security_stack import A, bearer, service_stack
from tests.helpers.workflow_harness import STARTED

TODAY = date.today().isoformat()
CANARY = "zqcanary"  # every free text below holds it; searched case-insensitively
PERP_PHONE, ID_NUMBER = "0912 000 777", "079399123456"
DIGIT_CANARIES = [re.compile(r"0?912[\s.\-]?000[\s.\-]?777"), re.compile(ID_NUMBER)]


def c(label: str) -> str:
    return f"Zqcanary {label}"


def canaries_in(text: str) -> bool:
    return CANARY in text.lower() or any(p.search(text) for p in DIGIT_CANARIES)


async def drive_case_with_canaries(st: Any, ts_env: Any) -> tuple[str, str]:
    """Open a case and record every kind of personal data and free text, through the APIs; close it."""
    police, sp = bearer(st.ring, A.police), bearer(st.ring, A.social_protection)
    sp_sup = bearer(st.ring, A.social_protection, Role.caseworker, Role.supervisor)
    i, v, s = st["intake"], st["verification"], st["support"]

    async def ok(call: Any, code: int = 200) -> dict[str, Any]:
        r = await call
        assert r.status_code == code, r.text
        return dict(r.json())

    opened = await ok(
        i.post(
            "/cases",
            headers=police,
            json=open_body(
                channel="walk_in",
                person={
                    "prs_FirstName": "Zqcanaryfirst",
                    "prs_SecondName": "Zqcanarylast",
                    "birth_year": 2000,
                    "prs_IdentityNumber": ID_NUMBER,
                    "prs_Email": "zqcanary@mail.example",
                    "prs_MailingStreet": c("street"),
                    "prs_MailingCity": c("city"),
                    "prs_MailingCountry": "VN",
                },
                victim={
                    "vic_TypeOfExploitation": ["ForcedLabour"],
                    "vic_DetailsOfVulnerabilities": c("vulnerability"),
                },
                events=[
                    {
                        "hte_Type": "Exploitation",
                        "hte_Country": "CN",
                        "hte_City": c("event city"),
                        "hte_Description": c("event"),
                    }
                ],
                report={
                    "summary": c("summary"),
                    "cas_IncomingReferralDetails": c("referral details"),
                    "cas_ReferringOrganisation": "Border post 3",
                },
            ),
        ),
        201,
    )
    case_id = opened["case_id"]
    p = f"/cases/{case_id}"
    await ok(
        i.post(
            f"{p}/classify",
            headers=police,
            json={
                "classification": "trafficking_suspected",
                "justification": c("classify justification"),
            },
        )
    )
    await ok(
        v.post(
            f"{p}/rescue-operations",
            headers=police,
            json={
                "planned_for": "2030-01-01T22:00:00+07:00",
                "location": c("rescue location"),
                "plan_notes": c("rescue notes"),
            },
        ),
        201,
    )
    await ok(
        v.post(
            f"{p}/perpetrators",
            headers=police,
            json={
                "roles": ["RecruiterOrIntermediary"],
                "name": c("perpetrator"),
                "aliases": [c("alias")],
                "phones": [PERP_PHONE],
                "recruitment_channel": c("channel"),
                "role_details": c("role details"),
                "nationality": "VN",
            },
        ),
        201,
    )
    await ok(
        v.post(
            f"{p}/verification",
            headers=sp,
            json={"result": "confirmed", "justification": c("verify justification")},
        )
    )
    await ok(
        v.post(
            f"{p}/identification",
            headers=police,
            json={
                "status": "ActualVictimOfTrafficking",
                "deciding_org": "Police",
                "justification": c("identify justification"),
                "evidence": [
                    {
                        "kind": "statement_of_person",
                        "source": c("evidence source"),
                        "date": TODAY,
                        "reference": c("evidence reference"),
                        "description": c("evidence description"),
                    }
                ],
            },
        )
    )
    state = await ok(
        v.post(
            f"{p}/protection",
            headers=sp,
            json={
                "declined": True,
                "justification": c("protect justification"),
                "refusal_document": {
                    "signed_on": TODAY,
                    "reference": c("refusal reference"),
                    "description": c("refusal description"),
                },
            },
        )
    )
    assert state["case"]["stage"] == "reintegrate", state
    await ok(
        s.post(
            f"{p}/consents",
            headers=sp,
            json={
                "purpose": "data_sharing",
                "agency": "legal_aid",
                "granted": True,
                "document": {
                    "kind": "signed_form",
                    "signed_on": TODAY,
                    "reference": c("consent reference"),
                },
            },
        ),
        201,
    )
    await ok(
        s.post(f"{p}/legal-aid-referral", headers=sp, json={"reason": c("referral reason")}), 201
    )
    await ok(
        s.post(
            f"{p}/support-plan",
            headers=sp,
            json={
                "spl_Objectives": c("plan objectives"),
                "spl_ActionPlan": c("plan actions"),
                "spl_Type": ["SocialCare"],
                "spl_PlannedEndDate": "2030-12-31",
            },
        ),
        201,
    )
    await ok(
        s.post(
            f"{p}/services",
            headers=sp_sup,
            json={
                "service_type": "essential_needs",
                "provider_agency": "social_protection",
                "delivered_on": TODAY,
                "provider_name": c("provider"),
                "note": c("service note"),
                "amount_vnd": 250000,
            },
        ),
        201,
    )
    follow_ups = await ok(s.get(f"{p}/follow-ups", headers=sp))
    for f in follow_ups["items"]:
        await ok(
            s.post(
                f"{p}/follow-ups/{f['follow_up_id']}",
                headers=sp,
                json={"outcome": "done", "note": c("follow-up note")},
            )
        )
    await ts_env.sleep(timedelta(days=31))  # past the reflection and recovery period
    closed = await ok(s.post(f"{p}/closure", headers=sp, json={"reason": c("closure reason")}))
    assert closed["case"]["status"] in ("Closed", "ClosedReferred"), closed
    await ts_env.sleep(
        timedelta(days=91)
    )  # past the reopen window: the run ends and exports its history
    await ts_env.client.get_workflow_handle(case_id).result()
    return case_id, opened["person_ref"]


async def _pk_columns(pool: asyncpg.Pool) -> dict[tuple[str, str], list[str]]:
    rows = await pool.fetch(
        """SELECT k.table_schema, k.table_name, k.column_name FROM information_schema.table_constraints t
           JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name)
           WHERE t.constraint_type = 'PRIMARY KEY'"""
    )
    out: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        out.setdefault((r["table_schema"], r["table_name"]), []).append(r["column_name"])
    return out


def _decrypt(
    ring: KeyRing, schema: str, table: str, column: str, value: bytes, row_ids: list[str]
) -> str | None:
    """The plain text of a field ciphertext (bound to its column, named with or without its schema, and
    maybe to its row's key); None if the value is not one."""
    if value[:1] not in (b"\x01", b"\x02"):
        return None
    for name in (f"{table}.{column}", f"{schema}.{table}.{column}"):
        for row in [None, *row_ids]:
            # a wrong context (column name, row) fails authentication: try the next one
            with contextlib.suppress(CryptoError, InvalidTag, ValueError, IndexError):
                return ring.decrypt_field(value, name, row=row)
    return None


async def find_canaries(pool: asyncpg.Pool, ring: KeyRing) -> tuple[list[str], list[str]]:
    """Every (schema.table.column) holding a canary, in clear or in a field ciphertext; and every field
    ciphertext the search could not decrypt (so could not search)."""
    columns = await pool.fetch(
        """SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns c
           WHERE table_schema NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
             AND (data_type IN ('text', 'character varying', 'bytea', 'json', 'jsonb', 'ARRAY', 'USER-DEFINED'))
             AND EXISTS (SELECT 1 FROM information_schema.tables t WHERE t.table_schema = c.table_schema
                         AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE')
           ORDER BY 1, 2, 3"""
    )
    pks = await _pk_columns(pool)
    found: list[str] = []
    opaque: list[str] = []
    for col in columns:
        schema, table, column = col["table_schema"], col["table_name"], col["column_name"]
        keys = pks.get((schema, table), [])
        key_sql = ", ".join(f'"{k}"::text' for k in keys) or "NULL"
        rows = await pool.fetch(
            f'SELECT "{column}" AS v, "{column}"::text AS t, ARRAY[{key_sql}] AS k FROM "{schema}"."{table}" '
            f'WHERE "{column}" IS NOT NULL'
        )
        where = f"{schema}.{table}.{column}"
        for r in rows:
            if canaries_in(r["t"]):
                found.append(where)
            value = r["v"]
            if isinstance(value, bytes):
                if canaries_in(value.decode("utf-8", "replace")):
                    found.append(where)
                clear = _decrypt(ring, schema, table, column, value, [k for k in r["k"] if k])
                if clear is not None and canaries_in(clear):
                    found.append(f"{where} (decrypted)")
                elif (
                    clear is None
                    and value[:1] in (b"\x01", b"\x02")
                    and not (schema, table) == ("oversight", "workflow_histories")
                ):
                    opaque.append(where)
    return sorted(set(found)), sorted(set(opaque))


async def _wait_export(pool: asyncpg.Pool, case_id: str) -> None:
    for _ in range(300):
        if await pool.fetchval(
            "SELECT count(*) FROM oversight.workflow_histories WHERE case_id = $1", case_id
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"history of {case_id} was not exported")


async def test_retention_leaves_no_personal_data_in_any_schema(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with service_stack(ts_env, db_pool, db_url, ring, task_queue) as st:
        case_id, person_ref = await drive_case_with_canaries(st, ts_env)
        await _wait_export(db_pool, case_id)
        await st.wait_event(db_pool, case_id, "stage_decided")

        # positive control: before retention the search finds the canaries in every service's schema
        before, opaque = await find_canaries(db_pool, ring)
        assert not opaque, f"field ciphertexts the search could not read: {opaque}"
        for where in (
            "intake.persons.first_name (decrypted)",
            "verification.perpetrators.full_name (decrypted)",
            "verification.evidence_items.source (decrypted)",
            "verification.rescue_operations.location (decrypted)",
            "verification.protection_refusals.reference (decrypted)",
            "support.support_plans.objectives (decrypted)",
            "support.services_delivered.note (decrypted)",
            "support.services_delivered.provider_name (decrypted)",
            "support.follow_up_notes.note (decrypted)",
            "support.consent_records.document_reference (decrypted)",
            "oversight.case_events.free_text (decrypted)",
        ):
            assert where in before, (where, before)
        history = await db_pool.fetchrow(
            "SELECT key_id, history, run_id FROM oversight.workflow_histories WHERE case_id = $1",
            case_id,
        )
        exported = gzip.decompress(
            ring.decrypt_bytes(
                history["key_id"],
                bytes(history["history"]),
                f"history:{case_id}:{history['run_id']}".encode(),
            )
        )
        assert (
            len(exported) > 1000
        )  # the exported history is a real one (its payloads are codec-encrypted)

        # the retention job, as the daily sweep runs it
        days = 5 * 365
        now = await ts_env.get_current_time()
        async with db_pool.acquire() as conn:
            due = await due_for_erasure(conn, now + timedelta(days=days + 400), days)
        assert [d.case_id for d in due] == [case_id]
        first = len(STARTED.ids)
        started = await start_erasures(
            ts_env.client,
            due,
            days,
            workflow_task_queue=task_queue,
            intake_task_queue=INTAKE_TASK_QUEUE,
            oversight_task_queue=f"{task_queue}-oversight",
        )
        assert started == [case_id]
        assert await ts_env.client.get_workflow_handle(STARTED.ids[first]).result() is True

        after, opaque = await find_canaries(db_pool, ring)
        assert not opaque, f"field ciphertexts the search could not read: {opaque}"
        assert after == [], "personal data left after retention:\n" + "\n".join(after)

        # statistics stay: kinds, dates, counts, roles, amounts, outcomes
        ev = await db_pool.fetchrow(
            "SELECT kind, evidence_date FROM verification.evidence_items WHERE case_id = $1",
            case_id,
        )
        assert (ev["kind"], ev["evidence_date"].isoformat()) == ("statement_of_person", TODAY)
        perp = await db_pool.fetchrow(
            "SELECT roles, nationality, full_name FROM verification.perpetrators "
            "WHERE case_id = $1",
            case_id,
        )
        assert (list(perp["roles"]), perp["nationality"], perp["full_name"]) == (
            ["RecruiterOrIntermediary"],
            "VN",
            None,
        )
        svc = await db_pool.fetchrow(
            "SELECT service_type, amount_vnd, note FROM support.services_delivered "
            "WHERE case_id = $1",
            case_id,
        )
        assert (svc["service_type"], svc["amount_vnd"], svc["note"]) == (
            "essential_needs",
            250000,
            None,
        )
        plan = await db_pool.fetchrow(
            "SELECT plan_types, actual_end_date FROM support.support_plans WHERE case_id = $1",
            case_id,
        )
        assert list(plan["plan_types"]) == ["SocialCare"] and plan["actual_end_date"] is not None
        summary = await db_pool.fetchrow(
            "SELECT status, age_band, channel, state FROM oversight.case_summary "
            "WHERE case_id = $1",
            case_id,
        )
        assert (summary["status"], summary["channel"]) == ("Closed", "walk_in")
        assert [h["to_agency"] for h in summary["state"]["handoffs"]] == ["legal_aid"]
        person = await db_pool.fetchrow(
            "SELECT age_band, erased_at FROM intake.persons WHERE person_id = $1", person_ref
        )
        assert person["erased_at"] is not None and person["age_band"] == summary["age_band"]
        assert (
            await db_pool.fetchval(
                "SELECT count(*) FROM oversight.workflow_histories WHERE case_id = $1", case_id
            )
            == 0
        )
        # the audit chain still verifies, and records the erasure
        async with db_pool.acquire() as conn:
            report = await verify_chain(conn, ring, case_id)
        assert report.ok, report
        kinds = [
            r["kind"]
            for r in await db_pool.fetch(
                "SELECT kind FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id
            )
        ]
        assert kinds[-1] == "personal_data_erased" and "stage_decided" in kinds
        # erasing again changes nothing
        assert set((await verification_repo.erase_case(db_pool, case_id)).values()) == {0}
        assert set((await support_repo.erase_case(db_pool, case_id)).values()) == {0}


async def test_cases_erased_before_retention_covered_every_schema_are_completed(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    """A case erased by the RetentionWorkflow of before (intake's registry and the audit event only) still
    holds verification's and support's data: the next sweep finds it and completes the erasure."""
    async with service_stack(ts_env, db_pool, db_url, ring, task_queue) as st:
        case_id, person_ref = await drive_case_with_canaries(st, ts_env)
        await _wait_export(db_pool, case_id)
        days = 5 * 365
        # what the old workflow did: the registry, then the audit event
        assert await intake_repo.erase_person(db_pool, person_ref) == "erased"
        runtime = Runtime(Settings(), ring, db_pool, ts_env.client)
        assert await OversightActivities(runtime).record_personal_data_erased(case_id, days) is True
        left, _ = await find_canaries(db_pool, ring)
        assert "verification.perpetrators.full_name (decrypted)" in left  # the defect: half-erased

        later = await ts_env.get_current_time() + timedelta(days=days + 400)
        async with db_pool.acquire() as conn:
            due = await due_for_erasure(conn, later, days)
        assert [(d.case_id, d.completing, d.workflow_id) for d in due] == [
            (case_id, True, f"retention-{case_id}-every-schema")
        ]
        first = len(STARTED.ids)
        assert await start_erasures(
            ts_env.client,
            due,
            days,
            workflow_task_queue=task_queue,
            intake_task_queue=INTAKE_TASK_QUEUE,
            oversight_task_queue=f"{task_queue}-oversight",
        ) == [case_id]
        assert (
            await ts_env.client.get_workflow_handle(STARTED.ids[first]).result() is False
        )  # event already there
        after, _ = await find_canaries(db_pool, ring)
        assert after == [], after
        async with db_pool.acquire() as conn:
            assert await due_for_erasure(conn, later, days) == []  # done: not picked again
            assert (await verify_chain(conn, ring, case_id)).ok
        kinds = [
            r["kind"]
            for r in await db_pool.fetch(
                "SELECT kind FROM oversight.case_events WHERE case_id = $1 ORDER BY seq", case_id
            )
        ]
        assert kinds.count("personal_data_erased") == 1


async def test_support_text_written_before_encryption_is_encrypted_and_erasable(
    db_pool: Any, ring: KeyRing
) -> None:
    """Rows from before migration 002 hold their provider name and approval reason in legacy_* columns:
    the worker's start encrypts them; until then reads and retention still see them."""
    await db_pool.execute(
        """INSERT INTO support.services_delivered (service_id, case_id, service_type, beneficiary, provider_agency,
               legacy_provider_name, delivered_on, entitled, legacy_supervisor_approval_reason, approved_by,
               recorded_by)
           VALUES ('svc-old', 'case-old', 'essential_needs', 'person', 'social_protection', 'Zqcanary centre',
                   '2025-01-02', 'case_by_case', 'Zqcanary approval', 'sup-1', 'sp-1')"""
    )
    items, _, _ = await support_repo.list_services(
        db_pool, ring, "case-old", 10, 0, None, "delivered_on"
    )
    assert (items[0].provider_name, items[0].supervisor_approval_reason) == (
        "Zqcanary centre",
        "Zqcanary approval",
    )
    assert await support_repo.encrypt_legacy_text(db_pool, ring) == 1
    assert await support_repo.encrypt_legacy_text(db_pool, ring) == 0  # idempotent
    raw = await db_pool.fetchrow(
        "SELECT * FROM support.services_delivered WHERE service_id = 'svc-old'"
    )
    assert raw["legacy_provider_name"] is None and raw["legacy_supervisor_approval_reason"] is None
    assert b"Zqcanary" not in bytes(raw["provider_name"])
    items, _, _ = await support_repo.list_services(
        db_pool, ring, "case-old", 10, 0, None, "delivered_on"
    )
    assert (items[0].provider_name, items[0].supervisor_approval_reason) == (
        "Zqcanary centre",
        "Zqcanary approval",
    )
    assert (await support_repo.erase_case(db_pool, "case-old"))["services_delivered"] == 1
    raw = await db_pool.fetchrow(
        "SELECT * FROM support.services_delivered WHERE service_id = 'svc-old'"
    )
    assert (
        raw["provider_name"],
        raw["supervisor_approval_reason"],
        raw["entitled"],
        raw["approved_by"],
    ) == (None, None, "case_by_case", "sup-1")
