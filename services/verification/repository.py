"""SQL on the verification schema (asyncpg). Encrypts on the way in and decrypts on the way out, so
no other module touches a ciphertext; column names double as the encryption context."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from services.verification.models import (
    EvidenceIn,
    EvidenceOut,
    LinkedCase,
    LinkKind,
    PerpetratorIn,
    PerpetratorOut,
    ProceedingIn,
    ProceedingOut,
    ProceedingStepOut,
    RefusalDocument,
    RescuedPerson,
    RescueOperationOut,
    RescuePlanRequest,
    StepIn,
)
from shared.crypto import KeyRing, normalise_text

S = "verification"
Conn = asyncpg.Connection | asyncpg.Pool | PoolConnectionProxy


def _enc(ring: KeyRing, value: str | None, column: str, row: str) -> bytes | None:
    """Bound to the column and to the row (its primary key): a value copied elsewhere does not decrypt."""
    return ring.encrypt_field(value, column, row=row)


def _dec(ring: KeyRing, value: bytes | None, column: str, row: str) -> str | None:
    return ring.decrypt_field(value, column, row=row)


# ---- evidence ---------------------------------------------------------------------------------
async def insert_evidence(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    items: Sequence[tuple[str, EvidenceIn]],
    user_id: str,
    agency: str,
) -> None:
    await conn.executemany(
        f"""INSERT INTO {S}.evidence_items (evidence_id, case_id, kind, source, evidence_date, reference,
                description, recorded_by, recorded_agency) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)
            ON CONFLICT (evidence_id) DO NOTHING""",
        [
            (
                eid,
                case_id,
                e.kind.value,
                _enc(ring, e.source, "evidence_items.source", eid),
                e.date,
                _enc(ring, e.reference, "evidence_items.reference", eid),
                _enc(ring, e.description, "evidence_items.description", eid),
                user_id,
                agency,
            )
            for eid, e in items
        ],
    )


async def list_evidence(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    limit: int,
    offset: int,
    kind: str | None,
    descending: bool,
) -> tuple[list[EvidenceOut], int]:
    order = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT *, count(*) OVER () AS total FROM {S}.evidence_items
            WHERE case_id = $1 AND ($2::text IS NULL OR kind = $2)
            ORDER BY evidence_date {order}, evidence_id LIMIT $3 OFFSET $4""",
        case_id,
        kind,
        limit,
        offset,
    )
    total = (
        rows[0]["total"]
        if rows
        else await conn.fetchval(
            f"SELECT count(*) FROM {S}.evidence_items WHERE case_id = $1 AND ($2::text IS NULL OR kind = $2)",
            case_id,
            kind,
        )
    )
    return [
        EvidenceOut(
            evidence_id=r["evidence_id"],
            case_id=r["case_id"],
            kind=r["kind"],
            source=_dec(ring, r["source"], "evidence_items.source", r["evidence_id"]) or "",
            date=r["evidence_date"],
            reference=_dec(ring, r["reference"], "evidence_items.reference", r["evidence_id"]),
            description=_dec(
                ring, r["description"], "evidence_items.description", r["evidence_id"]
            ),
            recorded_by=r["recorded_by"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ], int(total)


# ---- rescue operations ------------------------------------------------------------------------
async def insert_rescue_operation(
    conn: Conn,
    ring: KeyRing,
    operation_id: str,
    case_id: str,
    body: RescuePlanRequest,
    user_id: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.rescue_operations (operation_id, case_id, status, planned_for, lead_agency, location,
                plan_notes, created_by) VALUES ($1,$2,'planned',$3,$4,$5,$6,$7)
            ON CONFLICT (operation_id) DO NOTHING""",
        operation_id,
        case_id,
        body.planned_for,
        body.lead_agency.value,
        _enc(ring, body.location, "rescue_operations.location", operation_id),
        _enc(ring, body.plan_notes, "rescue_operations.plan_notes", operation_id),
        user_id,
    )


async def lock_rescue_operation(
    conn: Conn, case_id: str, operation_id: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"SELECT * FROM {S}.rescue_operations WHERE case_id = $1 AND operation_id = $2 FOR UPDATE",
        case_id,
        operation_id,
    )


async def complete_rescue_operation(
    conn: Conn, operation_id: str, outcome: str, persons: Sequence[RescuedPerson]
) -> None:
    await conn.execute(
        f"UPDATE {S}.rescue_operations SET status = 'done', outcome = $2, completed_at = now() "
        "WHERE operation_id = $1",
        operation_id,
        outcome,
    )
    await conn.executemany(
        f"""INSERT INTO {S}.rescued_persons (operation_id, case_id, relation) VALUES ($1,$2,$3)
            ON CONFLICT DO NOTHING""",
        [(operation_id, p.case_id, p.relation) for p in persons],
    )


async def get_rescue_operation(
    conn: Conn, ring: KeyRing, case_id: str, operation_id: str
) -> RescueOperationOut | None:
    ops, _ = await list_rescue_operations(
        conn, ring, case_id, 1, 0, None, operation_id=operation_id
    )
    return ops[0] if ops else None


async def list_rescue_operations(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    limit: int,
    offset: int,
    status: str | None,
    operation_id: str | None = None,
) -> tuple[list[RescueOperationOut], int]:
    rows = await conn.fetch(
        f"""SELECT o.*, count(*) OVER () AS total,
                   coalesce((SELECT json_agg(json_build_object('case_id', p.case_id, 'relation', p.relation)
                                             ORDER BY p.case_id)
                             FROM {S}.rescued_persons p WHERE p.operation_id = o.operation_id), '[]') AS persons
            FROM {S}.rescue_operations o
            WHERE o.case_id = $1 AND ($2::text IS NULL OR o.status = $2) AND ($3::text IS NULL OR o.operation_id = $3)
            ORDER BY o.planned_for, o.operation_id LIMIT $4 OFFSET $5""",
        case_id,
        status,
        operation_id,
        limit,
        offset,
    )
    out = [
        RescueOperationOut(
            operation_id=r["operation_id"],
            case_id=r["case_id"],
            status=r["status"],
            planned_for=r["planned_for"],
            lead_agency=r["lead_agency"],
            location=_dec(ring, r["location"], "rescue_operations.location", r["operation_id"])
            or "",
            plan_notes=_dec(
                ring, r["plan_notes"], "rescue_operations.plan_notes", r["operation_id"]
            ),
            outcome=r["outcome"],
            completed_at=r["completed_at"],
            persons=[RescuedPerson(**p) for p in r["persons"]],
            created_by=r["created_by"],
            created_at=r["created_at"],
        )
        for r in rows
    ]
    return out, int(rows[0]["total"]) if rows else 0


# ---- protection refusals ----------------------------------------------------------------------
async def insert_refusal(
    conn: Conn, ring: KeyRing, document_id: str, case_id: str, doc: RefusalDocument, user_id: str
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.protection_refusals (document_id, case_id, signed_on, signed_by, reference, description,
                recorded_by) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (document_id) DO NOTHING""",
        document_id,
        case_id,
        doc.signed_on,
        doc.signed_by,
        _enc(ring, doc.reference, "protection_refusals.reference", document_id),
        _enc(ring, doc.description, "protection_refusals.description", document_id),
        user_id,
    )


async def count_refusals(conn: Conn, case_id: str) -> int:
    return int(
        await conn.fetchval(
            f"SELECT count(*) FROM {S}.protection_refusals WHERE case_id = $1", case_id
        )
    )


# ---- perpetrators -----------------------------------------------------------------------------
_NON_DIGIT = re.compile(r"\D")


def normalise_phone(value: str) -> str:
    """Digits only, Vietnamese national form: +84 912 345 678, 0084912345678 and 0912345678 are equal."""
    digits = _NON_DIGIT.sub("", value)
    if digits.startswith("0084"):
        digits = digits[4:]
    elif digits.startswith("84") and len(digits) >= 11:
        digits = digits[2:]
    if not digits.startswith("0"):
        digits = "0" + digits
    return digits


def identifiers(ring: KeyRing, p: PerpetratorIn) -> set[tuple[str, str]]:
    """(kind, blind index) pairs for linking across cases. Keyed hashes, never the plain values."""
    out: set[tuple[str, str]] = set()
    for name in [p.name, *p.aliases]:
        if name and normalise_text(name):
            out.add(
                (LinkKind.name.value, ring.blind_index(normalise_text(name), "perpetrator.name"))
            )
    for phone in p.phones:
        out.add(
            (LinkKind.phone.value, ring.blind_index(normalise_phone(phone), "perpetrator.phone"))
        )
    if p.recruitment_channel and normalise_text(p.recruitment_channel):
        out.add(
            (
                LinkKind.recruitment_channel.value,
                ring.blind_index(
                    normalise_text(p.recruitment_channel), "perpetrator.recruitment_channel"
                ),
            )
        )
    return out


async def insert_perpetrator(
    conn: Conn,
    ring: KeyRing,
    perpetrator_id: str,
    case_id: str,
    province: str,
    p: PerpetratorIn,
    user_id: str,
    agency: str,
) -> None:
    inserted = await conn.fetchval(
        f"""INSERT INTO {S}.perpetrators (perpetrator_id, case_id, province, roles, role_details, full_name, aliases,
                phones, recruitment_channel, nationality, recorded_by, recorded_agency)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT (perpetrator_id) DO NOTHING
            RETURNING perpetrator_id""",
        perpetrator_id,
        case_id,
        province,
        [r.value for r in p.roles],
        _enc(ring, p.role_details, "perpetrators.role_details", perpetrator_id),
        _enc(ring, p.name, "perpetrators.full_name", perpetrator_id),
        _enc(
            ring, json.dumps(p.aliases, ensure_ascii=False), "perpetrators.aliases", perpetrator_id
        ),
        _enc(ring, json.dumps(p.phones), "perpetrators.phones", perpetrator_id),
        _enc(ring, p.recruitment_channel, "perpetrators.recruitment_channel", perpetrator_id),
        p.nationality,
        user_id,
        agency,
    )
    if inserted is None:
        return
    await conn.executemany(
        f"INSERT INTO {S}.perpetrator_identifiers (perpetrator_id, case_id, kind, bidx) VALUES ($1,$2,$3,$4)",
        [(perpetrator_id, case_id, kind, bidx) for kind, bidx in sorted(identifiers(ring, p))],
    )


def _perpetrator(ring: KeyRing, r: asyncpg.Record) -> PerpetratorOut:
    return PerpetratorOut(
        perpetrator_id=r["perpetrator_id"],
        case_id=r["case_id"],
        roles=list(r["roles"]),
        role_details=_dec(
            ring, r["role_details"], "perpetrators.role_details", r["perpetrator_id"]
        ),
        name=_dec(ring, r["full_name"], "perpetrators.full_name", r["perpetrator_id"]),
        aliases=json.loads(
            _dec(ring, r["aliases"], "perpetrators.aliases", r["perpetrator_id"]) or "[]"
        ),
        phones=json.loads(
            _dec(ring, r["phones"], "perpetrators.phones", r["perpetrator_id"]) or "[]"
        ),
        recruitment_channel=_dec(
            ring, r["recruitment_channel"], "perpetrators.recruitment_channel", r["perpetrator_id"]
        ),
        nationality=r["nationality"],
        recorded_by=r["recorded_by"],
        recorded_agency=r["recorded_agency"],
        recorded_at=r["recorded_at"],
    )


async def list_perpetrators(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    limit: int,
    offset: int,
    role: str | None,
    descending: bool,
) -> tuple[list[PerpetratorOut], int]:
    order = "DESC" if descending else "ASC"
    rows = await conn.fetch(
        f"""SELECT *, count(*) OVER () AS total FROM {S}.perpetrators
            WHERE case_id = $1 AND ($2::text IS NULL OR $2 = ANY(roles))
            ORDER BY recorded_at {order}, perpetrator_id LIMIT $3 OFFSET $4""",
        case_id,
        role,
        limit,
        offset,
    )
    return [_perpetrator(ring, r) for r in rows], int(rows[0]["total"]) if rows else 0


async def get_perpetrator(conn: Conn, ring: KeyRing, perpetrator_id: str) -> PerpetratorOut | None:
    r = await conn.fetchrow(
        f"SELECT * FROM {S}.perpetrators WHERE perpetrator_id = $1", perpetrator_id
    )
    return _perpetrator(ring, r) if r else None


async def linked_cases(conn: Conn, case_id: str, kinds: Sequence[str]) -> list[LinkedCase]:
    """Other cases whose perpetrators share a blind index (name, phone, channel) with this case's."""
    rows = await conn.fetch(
        f"""SELECT o.case_id, p.province, array_agg(DISTINCT o.kind ORDER BY o.kind) AS kinds,
                   array_agg(DISTINCT o.perpetrator_id ORDER BY o.perpetrator_id) AS perpetrator_ids
            FROM {S}.perpetrator_identifiers mine
            JOIN {S}.perpetrator_identifiers o ON o.kind = mine.kind AND o.bidx = mine.bidx AND o.case_id <> $1
            JOIN {S}.perpetrators p ON p.perpetrator_id = o.perpetrator_id
            WHERE mine.case_id = $1 AND mine.kind = ANY($2::text[])
            GROUP BY o.case_id, p.province
            ORDER BY count(DISTINCT o.kind) DESC, o.case_id""",
        case_id,
        list(kinds),
    )
    merged: dict[str, dict[str, Any]] = {}
    for r in rows:
        m = merged.setdefault(
            r["case_id"],
            {"case_id": r["case_id"], "province": r["province"], "kinds": set(), "pids": set()},
        )
        m["kinds"].update(r["kinds"])
        m["pids"].update(r["perpetrator_ids"])
    return [
        LinkedCase(
            case_id=m["case_id"],
            province=m["province"],
            matched_on=sorted(m["kinds"]),
            perpetrator_ids=sorted(m["pids"]),
        )
        for m in merged.values()
    ]


# ---- retention --------------------------------------------------------------------------------
async def erase_case(pool: asyncpg.Pool, case_id: str) -> dict[str, int]:
    """Erase every personal-data and free-text column of the case (NULL) and its perpetrators' blind
    indexes (a keyed hash of a name still lets someone test a guess); keep kinds, dates, counts, roles,
    agencies and outcomes. Idempotent: a second run changes nothing. Returns the rows touched per table."""
    async with pool.acquire() as conn, conn.transaction():
        out = {
            "evidence_items": _rows(
                await conn.execute(
                    f"""UPDATE {S}.evidence_items SET source = NULL, reference = NULL, description = NULL
                    WHERE case_id = $1 AND (source IS NOT NULL OR reference IS NOT NULL
                                            OR description IS NOT NULL)""",
                    case_id,
                )
            ),
            "rescue_operations": _rows(
                await conn.execute(
                    f"""UPDATE {S}.rescue_operations SET location = NULL, plan_notes = NULL
                    WHERE case_id = $1 AND (location IS NOT NULL OR plan_notes IS NOT NULL)""",
                    case_id,
                )
            ),
            "protection_refusals": _rows(
                await conn.execute(
                    f"""UPDATE {S}.protection_refusals SET reference = NULL, description = NULL
                    WHERE case_id = $1 AND (reference IS NOT NULL OR description IS NOT NULL)""",
                    case_id,
                )
            ),
            "perpetrator_identifiers": _rows(
                await conn.execute(
                    f"DELETE FROM {S}.perpetrator_identifiers WHERE case_id = $1", case_id
                )
            ),
            "perpetrators": _rows(
                await conn.execute(
                    f"""UPDATE {S}.perpetrators SET role_details = NULL, full_name = NULL, aliases = NULL,
                        phones = NULL,
                        recruitment_channel = NULL
                    WHERE case_id = $1 AND (role_details IS NOT NULL OR full_name IS NOT NULL OR aliases IS NOT NULL
                                            OR phones IS NOT NULL OR recruitment_channel IS NOT NULL)""",
                    case_id,
                )
            ),
        }
        out.update(await erase_proceedings(conn, case_id))
        await conn.execute(
            f"INSERT INTO {S}.erasures (case_id) VALUES ($1) ON CONFLICT (case_id) DO NOTHING",
            case_id,
        )
        return out


def _rows(status: str) -> int:
    """Rows affected, from asyncpg's command tag ('UPDATE 3', 'DELETE 0')."""
    return int(status.rsplit(" ", 1)[-1])


# ---- criminal proceedings ---------------------------------------------------------------------
async def case_perpetrator_ids(conn: Conn, case_id: str) -> set[str]:
    rows = await conn.fetch(
        f"SELECT perpetrator_id FROM {S}.perpetrators WHERE case_id = $1", case_id
    )
    return {r["perpetrator_id"] for r in rows}


async def insert_proceeding(
    conn: Conn,
    ring: KeyRing,
    proceeding_id: str,
    case_id: str,
    province: str,
    body: ProceedingIn,
    user_id: str,
    agency: str,
) -> None:
    await conn.execute(
        f"""INSERT INTO {S}.criminal_proceedings (proceeding_id, case_id, province, report_number,
                report_received_on, perpetrator_ids, notes, recorded_by, recorded_agency)
            VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (proceeding_id) DO NOTHING""",
        proceeding_id,
        case_id,
        province,
        _enc(ring, body.report_number, "criminal_proceedings.report_number", proceeding_id),
        body.report_received_on,
        sorted(set(body.perpetrator_ids)),
        _enc(ring, body.notes, "criminal_proceedings.notes", proceeding_id),
        user_id,
        agency,
    )


async def link_perpetrators(conn: Conn, proceeding_id: str, perpetrator_ids: list[str]) -> None:
    """Add links (idempotent: the set of ids, sorted)."""
    await conn.execute(
        f"""UPDATE {S}.criminal_proceedings
            SET perpetrator_ids = ARRAY(SELECT DISTINCT unnest(perpetrator_ids || $2::text[]) ORDER BY 1)
            WHERE proceeding_id = $1""",
        proceeding_id,
        perpetrator_ids,
    )


async def lock_proceeding(
    conn: Conn, case_id: str, proceeding_id: str
) -> tuple[asyncpg.Record | None, dict[str, asyncpg.Record]]:
    """The proceeding (locked for the step being recorded) and its steps so far, by step."""
    row = await conn.fetchrow(
        f"SELECT * FROM {S}.criminal_proceedings WHERE case_id = $1 AND proceeding_id = $2 FOR UPDATE",
        case_id,
        proceeding_id,
    )
    if row is None:
        return None, {}
    steps = await conn.fetch(
        f"SELECT step, outcome, occurred_on FROM {S}.criminal_proceeding_steps WHERE proceeding_id = $1",
        proceeding_id,
    )
    return row, {s["step"]: s for s in steps}


async def insert_proceeding_step(
    conn: Conn,
    ring: KeyRing,
    proceeding_id: str,
    step: str,
    outcome: str,
    body: StepIn,
    user_id: str,
    agency: str,
) -> None:
    row = f"{proceeding_id}:{step}"
    await conn.execute(
        f"""INSERT INTO {S}.criminal_proceeding_steps (proceeding_id, step, outcome, occurred_on, reference,
                notes, recorded_by, recorded_agency) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)
            ON CONFLICT (proceeding_id, step) DO NOTHING""",
        proceeding_id,
        step,
        outcome,
        body.on,
        _enc(ring, body.reference, "criminal_proceeding_steps.reference", row),
        _enc(ring, body.notes, "criminal_proceeding_steps.notes", row),
        user_id,
        agency,
    )


_STEP_ORDER = "array_position(ARRAY['decision','investigation','prosecution','trial'], s.step)"


async def list_proceedings(
    conn: Conn,
    ring: KeyRing,
    case_id: str,
    limit: int,
    offset: int,
    proceeding_id: str | None = None,
) -> tuple[list[ProceedingOut], int]:
    rows = await conn.fetch(
        f"""SELECT p.*, count(*) OVER () AS total,
                   coalesce((SELECT json_agg(json_build_object(
                                'step', s.step, 'outcome', s.outcome, 'on', s.occurred_on,
                                'reference', encode(s.reference, 'base64'), 'notes', encode(s.notes, 'base64'),
                                'recorded_by', s.recorded_by, 'recorded_agency', s.recorded_agency,
                                'recorded_at', s.recorded_at) ORDER BY {_STEP_ORDER})
                             FROM {S}.criminal_proceeding_steps s WHERE s.proceeding_id = p.proceeding_id),
                            '[]') AS steps
            FROM {S}.criminal_proceedings p
            WHERE p.case_id = $1 AND ($2::text IS NULL OR p.proceeding_id = $2)
            ORDER BY p.report_received_on, p.proceeding_id LIMIT $3 OFFSET $4""",
        case_id,
        proceeding_id,
        limit,
        offset,
    )

    def step(pid: str, s: dict[str, Any]) -> ProceedingStepOut:
        row = f"{pid}:{s['step']}"

        def text(key: str) -> str | None:
            raw = s[key]
            return _dec(
                ring,
                base64.b64decode(raw) if raw else None,
                f"criminal_proceeding_steps.{key}",
                row,
            )

        return ProceedingStepOut(**{**s, "reference": text("reference"), "notes": text("notes")})

    out = [
        ProceedingOut(
            proceeding_id=r["proceeding_id"],
            case_id=r["case_id"],
            report_number=_dec(
                ring, r["report_number"], "criminal_proceedings.report_number", r["proceeding_id"]
            ),
            report_received_on=r["report_received_on"],
            perpetrator_ids=list(r["perpetrator_ids"]),
            notes=_dec(ring, r["notes"], "criminal_proceedings.notes", r["proceeding_id"]),
            steps=[step(r["proceeding_id"], s) for s in _json_list(r["steps"])],
            recorded_by=r["recorded_by"],
            recorded_agency=r["recorded_agency"],
            recorded_at=r["recorded_at"],
        )
        for r in rows
    ]
    return out, int(rows[0]["total"]) if rows else 0


def _json_list(value: Any) -> list[dict[str, Any]]:
    return list(json.loads(value) if isinstance(value, str) else value)


async def erase_proceedings(conn: Conn, case_id: str) -> dict[str, int]:
    """Retention: the proceedings' reference numbers and notes (NULL); steps, outcomes and dates stay."""
    return {
        "criminal_proceedings": _rows(
            await conn.execute(
                f"""UPDATE {S}.criminal_proceedings SET report_number = NULL, notes = NULL
                WHERE case_id = $1 AND (report_number IS NOT NULL OR notes IS NOT NULL)""",
                case_id,
            )
        ),
        "criminal_proceeding_steps": _rows(
            await conn.execute(
                f"""UPDATE {S}.criminal_proceeding_steps SET reference = NULL, notes = NULL
                WHERE proceeding_id IN (SELECT proceeding_id FROM {S}.criminal_proceedings
                                        WHERE case_id = $1)
                  AND (reference IS NOT NULL OR notes IS NOT NULL)""",
                case_id,
            )
        ),
    }
