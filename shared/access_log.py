"""The one access log: every read of a case's personal data, by any service, lands in
`common.access_log` (who, which case and section, why, masked or not). Auditors query it in one place.

Reasons are free text that people type names into, so they are stored encrypted; the log itself is
append-only (UPDATE, DELETE and TRUNCATE raise) and survives retention, as an audit record must."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.crypto import KeyRing
from shared.db import Conn

PURPOSE_COLUMN = "access_log.purpose"
REASON_COLUMN = "access_log.break_glass_reason"


@dataclass(frozen=True)
class AccessRead:
    """One read of personal data, as the caller's service saw it."""

    service: str
    user_id: str
    agency: str
    roles: Iterable[str]
    case_id: str
    case_province: str
    action: str  # e.g. read_person, read_perpetrators, read_support_plan, export_htcds
    sections: Iterable[str]
    masked: bool
    person_id: str | None = None
    purpose: str | None = None
    break_glass_reason: str | None = None
    request_id: str | None = None


async def record_read(db: asyncpg.Pool | Conn, ring: KeyRing, read: AccessRead) -> int:
    """Append one line; returns its access_id. Call it before returning the data, so that a read whose
    log line could not be written fails instead of going unrecorded."""
    return int(
        await db.fetchval(
            """INSERT INTO common.access_log (service, user_id, agency, roles, case_id, case_province, person_id,
               action, sections, purpose, break_glass, break_glass_reason, masked, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING access_id""",
            read.service,
            read.user_id,
            read.agency,
            sorted(str(r) for r in read.roles),
            read.case_id,
            read.case_province,
            read.person_id,
            read.action,
            sorted(str(s) for s in read.sections),
            ring.encrypt_field(read.purpose, PURPOSE_COLUMN),
            read.break_glass_reason is not None,
            ring.encrypt_field(read.break_glass_reason, REASON_COLUMN),
            read.masked,
            read.request_id,
        )
    )


async def list_reads(
    db: asyncpg.Pool | Conn,
    ring: KeyRing,
    *,
    case_id: str | None = None,
    user_id: str | None = None,
    province: str | None = None,
    service: str | None = None,
    cursor: int | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first; `province` limits to cases of that province (None: every province);
    `cursor` is the last access_id of the previous page."""
    where: list[str] = []
    args: list[Any] = []
    for cond, val in (
        ("case_id = ${}", case_id),
        ("user_id = ${}", user_id),
        ("case_province = ${}", province),
        ("service = ${}", service),
        ("access_id < ${}", cursor),
    ):
        if val is not None:
            args.append(val)
            where.append(cond.format(len(args)))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    rows = await db.fetch(
        f"SELECT * FROM common.access_log {clause} ORDER BY access_id DESC LIMIT ${len(args) + 1}",
        *args,
        limit,
    )
    out = []
    for r in rows:
        row = dict(r)
        row["roles"] = list(r["roles"])
        row["sections"] = list(r["sections"])
        row["purpose"] = ring.decrypt_field(r["purpose"], PURPOSE_COLUMN)
        row["break_glass_reason"] = ring.decrypt_field(r["break_glass_reason"], REASON_COLUMN)
        out.append(row)
    return out
