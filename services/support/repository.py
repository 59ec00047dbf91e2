"""SQL on the support schema (asyncpg). Encrypts free text on the way in, decrypts on the way out."""

from __future__ import annotations

from datetime import date

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.support.entitlements import LETTER, Entitled, SupportType
from services.support.models import (
    ConsentIn,
    ConsentRecord,
    ServiceIn,
    ServiceOut,
    SupportPlanIn,
    SupportPlanOut,
)
from shared.crypto import KeyRing

S = "support"
Conn = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy


# ---- support plans ----------------------------------------------------------------------------
async def insert_plan(
    conn: Conn,
    ring: KeyRing,
    plan_id: str,
    case_id: str,
    body: SupportPlanIn,
    user_id: str,
    agency: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.support_plans (plan_id, case_id, objectives, action_plan, plan_types, planned_end_date,
                actual_end_date, created_by, created_agency) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
            ON CONFLICT (plan_id) DO NOTHING""",
        plan_id,
        case_id,
        ring.encrypt_field(body.spl_Objectives, "support_plans.objectives", row=plan_id),
        ring.encrypt_field(body.spl_ActionPlan, "support_plans.action_plan", row=plan_id),
        [t.value for t in body.spl_Type],
        body.spl_PlannedEndDate,
        body.spl_ActualEndDate,
        user_id,
        agency,
    )


async def list_plans(
    conn: Conn, ring: KeyRing, case_id: str, limit: int, offset: int
) -> tuple[list[SupportPlanOut], int]:
    rows = await conn.fetch(
        f"""SELECT *, count(*) OVER () AS total,
                   row_number() OVER (ORDER BY created_at DESC, plan_id DESC) = 1 AS current
            FROM {S}.support_plans WHERE case_id = $1
            ORDER BY created_at DESC, plan_id DESC LIMIT $2 OFFSET $3""",
        case_id,
        limit,
        offset,
    )
    return [
        SupportPlanOut(
            plan_id=r["plan_id"],
            case_id=r["case_id"],
            spl_Objectives=ring.decrypt_field(
                r["objectives"], "support_plans.objectives", row=r["plan_id"]
            )
            or "",
            spl_ActionPlan=ring.decrypt_field(
                r["action_plan"], "support_plans.action_plan", row=r["plan_id"]
            ),
            spl_Type=list(r["plan_types"]),
            spl_PlannedEndDate=r["planned_end_date"],
            spl_ActualEndDate=r["actual_end_date"],
            current=r["current"],
            created_by=r["created_by"],
            created_at=r["created_at"],
        )
        for r in rows
    ], int(rows[0]["total"]) if rows else 0


async def current_plan_id(conn: Conn, case_id: str) -> str | None:
    value = await conn.fetchval(
        f"SELECT plan_id FROM {S}.support_plans WHERE case_id = $1 ORDER BY created_at DESC, plan_id DESC LIMIT 1",
        case_id,
    )
    return str(value) if value is not None else None


async def plan_exists(conn: Conn, case_id: str, plan_id: str) -> bool:
    return bool(
        await conn.fetchval(
            f"SELECT EXISTS (SELECT 1 FROM {S}.support_plans WHERE case_id = $1 AND plan_id = $2)",
            case_id,
            plan_id,
        )
    )


async def set_actual_end(conn: Conn, plan_id: str) -> None:
    await conn.execute(
        f"UPDATE {S}.support_plans SET actual_end_date = coalesce(actual_end_date, current_date) WHERE plan_id = $1",
        plan_id,
    )


# ---- services ---------------------------------------------------------------------------------
async def insert_service(
    conn: Conn,
    ring: KeyRing,
    service_id: str,
    case_id: str,
    body: ServiceIn,
    entitled: Entitled,
    approved_by: str | None,
    user_id: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.services_delivered (service_id, case_id, service_type, beneficiary, provider_agency,
                provider_name, delivered_on, amount_vnd, entitled, supervisor_approval_reason, approved_by, note,
                recorded_by) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)
            ON CONFLICT (service_id) DO NOTHING""",
        service_id,
        case_id,
        body.service_type.value,
        body.beneficiary.value,
        body.provider_agency.value,
        ring.encrypt_field(body.provider_name, "services_delivered.provider_name", row=service_id),
        body.delivered_on,
        body.amount_vnd,
        entitled.value,
        ring.encrypt_field(
            body.supervisor_approval_reason if entitled == Entitled.case_by_case else None,
            "services_delivered.supervisor_approval_reason",
            row=service_id,
        ),
        approved_by,
        ring.encrypt_field(body.note, "services_delivered.note", row=service_id),
        user_id,
    )


def _service_text(ring: KeyRing, r: asyncpg.Record, column: str) -> str | None:
    """The encrypted column, or a row's value from before it was encrypted (migration 002) until
    encrypt_legacy_text has moved it."""
    value = ring.decrypt_field(r[column], f"services_delivered.{column}", row=r["service_id"])
    return value if value is not None else r[f"legacy_{column}"]


async def encrypt_legacy_text(pool: asyncpg.Pool, ring: KeyRing, batch: int = 500) -> int:
    """Encrypt the plain-text values migration 002 moved aside, and clear them. Idempotent; returns rows done."""
    done = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"""SELECT service_id, legacy_provider_name, legacy_supervisor_approval_reason
                    FROM {S}.services_delivered
                    WHERE legacy_provider_name IS NOT NULL OR legacy_supervisor_approval_reason IS NOT NULL
                    LIMIT $1 FOR UPDATE SKIP LOCKED""",
                batch,
            )
            if not rows:
                return done
            await conn.executemany(
                f"""UPDATE {S}.services_delivered SET
                        provider_name = coalesce(provider_name, $2), legacy_provider_name = NULL,
                        supervisor_approval_reason = coalesce(supervisor_approval_reason, $3),
                        legacy_supervisor_approval_reason = NULL
                    WHERE service_id = $1""",
                [
                    (
                        r["service_id"],
                        ring.encrypt_field(
                            r["legacy_provider_name"],
                            "services_delivered.provider_name",
                            row=r["service_id"],
                        ),
                        ring.encrypt_field(
                            r["legacy_supervisor_approval_reason"],
                            "services_delivered.supervisor_approval_reason",
                            row=r["service_id"],
                        ),
                    )
                    for r in rows
                ],
            )
            done += len(rows)


SERVICE_SORTS = {
    "delivered_on": "delivered_on ASC",
    "-delivered_on": "delivered_on DESC",
    "amount_vnd": "amount_vnd ASC NULLS FIRST",
    "-amount_vnd": "amount_vnd DESC NULLS LAST",
}


async def list_services(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    limit: int,
    offset: int,
    service_type: str | None,
    sort: str,
    service_id: str | None = None,
) -> tuple[list[ServiceOut], int, int]:
    order = SERVICE_SORTS[sort]
    rows = await conn.fetch(
        f"""SELECT *, count(*) OVER () AS total, coalesce(sum(amount_vnd) OVER (), 0) AS total_amount
            FROM {S}.services_delivered
            WHERE case_id = $1 AND ($2::text IS NULL OR service_type = $2) AND ($3::text IS NULL OR service_id = $3)
            ORDER BY {order}, service_id LIMIT $4 OFFSET $5""",
        case_id,
        service_type,
        service_id,
        limit,
        offset,
    )
    items = [
        ServiceOut(
            service_id=r["service_id"],
            case_id=r["case_id"],
            service_type=r["service_type"],
            letter=LETTER[SupportType(r["service_type"])],
            beneficiary=r["beneficiary"],
            provider_agency=r["provider_agency"],
            provider_name=_service_text(ring, r, "provider_name"),
            delivered_on=r["delivered_on"],
            amount_vnd=r["amount_vnd"],
            entitled=r["entitled"],
            supervisor_approval_reason=_service_text(ring, r, "supervisor_approval_reason"),
            approved_by=r["approved_by"],
            note=ring.decrypt_field(r["note"], "services_delivered.note", row=r["service_id"]),
            recorded_by=r["recorded_by"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]
    total = int(rows[0]["total"]) if rows else 0
    amount = int(rows[0]["total_amount"]) if rows else 0
    return items, total, amount


# ---- follow-up notes --------------------------------------------------------------------------
async def insert_follow_up_note(
    conn: Conn,
    ring: KeyRing,
    note_id: str,
    case_id: str,
    follow_up_id: str,
    outcome: str,
    note: str | None,
    user_id: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.follow_up_notes (note_id, case_id, follow_up_id, outcome, note, recorded_by)
            VALUES ($1,$2,$3,$4,$5,$6) ON CONFLICT (note_id) DO NOTHING""",
        note_id,
        case_id,
        follow_up_id,
        outcome,
        ring.encrypt_field(note, "follow_up_notes.note", row=note_id),
        user_id,
    )


# ---- identification under the 2011 law (Art. 63) and legal-aid hardship ------------------------
async def upsert_legacy_identification(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    identified_on: date,
    document_reference: str | None,
    user_id: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.legacy_identifications
                (case_id, identified_on, document_reference, recorded_by)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (case_id) DO UPDATE SET identified_on = EXCLUDED.identified_on,
                document_reference = EXCLUDED.document_reference,
                recorded_by = EXCLUDED.recorded_by, recorded_at = now()""",
        case_id,
        identified_on,
        ring.encrypt_field(
            document_reference, "legacy_identifications.document_reference", row=case_id
        ),
        user_id,
    )


async def legacy_identification(
    conn: Conn | asyncpg.Pool, ring: KeyRing, case_id: str
) -> tuple[date, str | None] | None:
    row = await conn.fetchrow(
        f"SELECT * FROM {S}.legacy_identifications WHERE case_id = $1", case_id
    )
    if row is None:
        return None
    reference = ring.decrypt_field(
        row["document_reference"], "legacy_identifications.document_reference", row=case_id
    )
    return row["identified_on"], reference


async def record_legal_aid_referral(
    conn: Conn | asyncpg.Pool,
    case_id: str,
    handoff_id: str,
    financial_hardship: bool | None,
    user_id: str,
) -> None:
    """Idempotent: a retry of the same referral (same handoff) writes nothing twice."""
    await conn.execute(
        f"""INSERT INTO {S}.legal_aid_referrals (case_id, handoff_id, financial_hardship, recorded_by)
            VALUES ($1, $2, $3, $4) ON CONFLICT (case_id, handoff_id) DO NOTHING""",
        case_id,
        handoff_id,
        financial_hardship,
        user_id,
    )


# ---- consents ---------------------------------------------------------------------------------
async def insert_consent(
    conn: Conn, ring: KeyRing, consent_id: str, case_id: str, body: ConsentIn, user_id: str
) -> None:
    doc = body.document
    await conn.execute(
        f"""INSERT INTO {S}.consent_records (consent_id, case_id, purpose, agency, granted, document_kind,
                document_signed_on, document_reference, document_language, recorded_by, province)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) ON CONFLICT (consent_id) DO NOTHING""",
        consent_id,
        case_id,
        body.purpose.value,
        body.agency.value if body.agency else None,
        body.granted,
        doc.kind if doc else None,
        doc.signed_on if doc else None,
        ring.encrypt_field(
            doc.reference if doc else None, "consent_records.document_reference", row=consent_id
        ),
        doc.language if doc else None,
        user_id,
        body.province,
    )


async def list_consents(
    conn: Conn, ring: KeyRing, case_id: str, limit: int, offset: int, purpose: str | None
) -> tuple[list[ConsentRecord], int]:
    rows = await conn.fetch(
        f"""SELECT *, count(*) OVER () AS total FROM {S}.consent_records
            WHERE case_id = $1 AND ($2::text IS NULL OR purpose = $2)
            ORDER BY recorded_at DESC, consent_id LIMIT $3 OFFSET $4""",
        case_id,
        purpose,
        limit,
        offset,
    )
    return [
        ConsentRecord(
            consent_id=r["consent_id"],
            purpose=r["purpose"],
            agency=r["agency"],
            province=r["province"],
            granted=r["granted"],
            document_kind=r["document_kind"],
            document_signed_on=r["document_signed_on"],
            document_reference=ring.decrypt_field(
                r["document_reference"], "consent_records.document_reference", row=r["consent_id"]
            ),
            document_language=r["document_language"],
            recorded_by=r["recorded_by"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ], int(rows[0]["total"]) if rows else 0


# ---- retention --------------------------------------------------------------------------------
async def erase_case(pool: asyncpg.Pool, case_id: str) -> dict[str, int]:
    """Erase every personal-data and free-text column of the case (NULL), including values from before
    encryption (legacy_*); keep plan types and dates, service kinds, amounts, entitlement, approver,
    follow-up outcomes and consent purposes. Idempotent. Returns the rows touched per table."""
    async with pool.acquire() as conn, conn.transaction():
        out = {
            "support_plans": _rows(
                await conn.execute(
                    f"""UPDATE {S}.support_plans SET objectives = NULL, action_plan = NULL
                    WHERE case_id = $1 AND (objectives IS NOT NULL OR action_plan IS NOT NULL)""",
                    case_id,
                )
            ),
            "services_delivered": _rows(
                await conn.execute(
                    f"""UPDATE {S}.services_delivered SET provider_name = NULL, supervisor_approval_reason = NULL,
                        note = NULL, legacy_provider_name = NULL, legacy_supervisor_approval_reason = NULL
                    WHERE case_id = $1 AND (provider_name IS NOT NULL OR supervisor_approval_reason IS NOT NULL
                        OR note IS NOT NULL OR legacy_provider_name IS NOT NULL
                        OR legacy_supervisor_approval_reason IS NOT NULL)""",
                    case_id,
                )
            ),
            "follow_up_notes": _rows(
                await conn.execute(
                    f"UPDATE {S}.follow_up_notes SET note = NULL WHERE case_id = $1 AND note IS NOT NULL",
                    case_id,
                )
            ),
            "legacy_identifications": _rows(
                await conn.execute(
                    f"""UPDATE {S}.legacy_identifications SET document_reference = NULL
                    WHERE case_id = $1 AND document_reference IS NOT NULL""",
                    case_id,
                )
            ),
            "consent_records": _rows(
                await conn.execute(
                    f"""UPDATE {S}.consent_records SET document_reference = NULL
                    WHERE case_id = $1 AND document_reference IS NOT NULL""",
                    case_id,
                )
            ),
        }
        await conn.execute(
            f"INSERT INTO {S}.erasures (case_id) VALUES ($1) ON CONFLICT (case_id) DO NOTHING",
            case_id,
        )
        return out


def _rows(status: str) -> int:
    """Rows affected, from asyncpg's command tag ('UPDATE 3')."""
    return int(status.rsplit(" ", 1)[-1])
