"""SQL of the intake schema (asyncpg, no ORM). Tables are always schema-qualified (`intake.`)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

PERSON_COLUMNS = (
    "first_name", "middle_name", "second_name", "birthdate", "birth_year", "identity_number", "mobile_phone",
    "home_phone", "email", "mailing_street", "mailing_city", "mailing_state", "mailing_postal_code",
    "victim_context", "trafficking_events",
)


@dataclass
class NewCase:
    """Everything one opening writes (already encrypted where it must be)."""

    case_id: str
    person_id: str
    person: dict[str, Any]  # column -> value for intake.persons (besides person_id)
    case: dict[str, Any]  # column -> value for intake.intake_cases (besides case_id, person_id)
    identity_bidx: str | None
    name_year_bidx: str | None


@dataclass
class OpenOutcome:
    case: asyncpg.Record
    created: bool
    duplicates: list[asyncpg.Record] = field(default_factory=list)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was used before with a different request."""

    def __init__(self, case_id: str) -> None:
        super().__init__(case_id)
        self.case_id = case_id


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO intake.{table} ({cols}) VALUES ({params})"


async def open_case(pool: asyncpg.Pool, new: NewCase) -> OpenOutcome:
    """Person + case + duplicate candidates in ONE transaction, exactly once per (caller, key).

    Concurrent requests with the same key: the second INSERT waits for the first to commit, then
    conflicts (ON CONFLICT DO NOTHING) and the transaction is rolled back, person row included."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            # serialise openings that could be duplicates of each other, so each sees the other
            keys = sorted(k for k in (new.identity_bidx, new.name_year_bidx) if k)
            if keys:  # one round trip; sorted, so two openings never wait on each other in opposite order
                await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(k, 7310)) "
                                   "FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n", keys)
            person = {**new.person, "person_id": new.person_id, "identity_bidx": new.identity_bidx,
                      "name_year_bidx": new.name_year_bidx}
            await conn.execute(_insert_sql("persons", list(person)), *person.values())
            case = {**new.case, "case_id": new.case_id, "person_id": new.person_id}
            inserted = await conn.fetchrow(
                _insert_sql("intake_cases", list(case))
                + " ON CONFLICT (idem_user, idem_key) DO NOTHING RETURNING *", *case.values())
            if inserted is not None:
                duplicates = await _flag_duplicates(conn, new)
                return OpenOutcome(inserted, True, duplicates)
            # fall through: roll this transaction back (the person row goes with it)
            raise _Replay()
    raise AssertionError("unreachable")  # pragma: no cover


class _Replay(Exception):
    pass


async def open_case_once(pool: asyncpg.Pool, new: NewCase) -> OpenOutcome:
    try:
        return await open_case(pool, new)
    except _Replay:
        pass
    existing = await case_by_idempotency_key(pool, new.case["idem_user"], new.case["idem_key"])
    assert existing is not None
    if existing["request_hash"] != new.case["request_hash"]:
        raise IdempotencyConflict(existing["case_id"])
    return OpenOutcome(existing, False, await duplicates_of_case(pool, existing["case_id"], only_new=True))


async def _flag_duplicates(conn: Any, new: NewCase) -> list[asyncpg.Record]:
    if not new.identity_bidx and not new.name_year_bidx:
        return []
    matches = await conn.fetch(
        """SELECT p.person_id, c.case_id,
                  (p.identity_bidx IS NOT NULL AND p.identity_bidx = $2) AS by_identity,
                  (p.name_year_bidx IS NOT NULL AND p.name_year_bidx = $3) AS by_name
           FROM intake.persons p JOIN intake.intake_cases c ON c.person_id = p.person_id
           WHERE p.person_id <> $1 AND p.erased_at IS NULL
             AND (p.identity_bidx = $2 OR p.name_year_bidx = $3)
           ORDER BY c.opened_at""",
        new.person_id, new.identity_bidx, new.name_year_bidx)
    rows: list[asyncpg.Record] = []
    for m in matches:
        for kind, hit in (("identity_number", m["by_identity"]), ("name_birth_year_province", m["by_name"])):
            if not hit:
                continue
            row = await conn.fetchrow(
                """INSERT INTO intake.duplicate_candidates
                       (candidate_id, case_id, person_id, other_case_id, other_person_id, match_kind)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (person_id, other_person_id, match_kind) DO NOTHING RETURNING *""",
                new_id("d"), new.case_id, new.person_id, m["case_id"], m["person_id"], kind)
            if row is not None:
                rows.append(row)
    return rows


async def case_by_idempotency_key(pool: asyncpg.Pool, user: str, key: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.intake_cases WHERE idem_user = $1 AND idem_key = $2",
                               user, key)


async def mark_workflows_started(pool: asyncpg.Pool, case_ids: Sequence[str]) -> None:
    """A hint for the reconcile loop, so it need not wait for a flush to disk: if a crash loses it, the
    loop starts the workflow again and Temporal answers "already started" (the case row itself was
    committed durably before the start)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        await conn.execute("UPDATE intake.intake_cases SET workflow_started_at = now() "
                           "WHERE case_id = ANY($1::text[]) AND workflow_started_at IS NULL", list(case_ids))


async def unstarted_cases(pool: asyncpg.Pool, older_than: timedelta, limit: int = 200) -> list[asyncpg.Record]:
    return list(await pool.fetch(
        "SELECT * FROM intake.intake_cases WHERE workflow_started_at IS NULL "
        "AND opened_at < now() - $1::interval ORDER BY opened_at LIMIT $2", older_than, limit))


async def get_case(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.intake_cases WHERE case_id = $1", case_id)


async def case_of_person(pool: asyncpg.Pool, person_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.intake_cases WHERE person_id = $1", person_id)


async def get_person(pool: asyncpg.Pool, person_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.persons WHERE person_id = $1", person_id)


SORTS = {"opened_at": "opened_at ASC, case_id ASC", "-opened_at": "opened_at DESC, case_id DESC",
         "province": "province ASC, opened_at DESC, case_id DESC", "channel": "channel ASC, opened_at DESC, case_id DESC"}


async def list_cases(pool: asyncpg.Pool, *, province: str | None, channel: str | None,
                     opened_from: datetime | None, opened_to: datetime | None, sort: str, limit: int,
                     offset: int) -> tuple[list[asyncpg.Record], int]:
    where: list[str] = []
    args: list[Any] = []
    for cond, val in (("province = ${}", province), ("channel = ${}", channel),
                      ("opened_at >= ${}", opened_from), ("opened_at < ${}", opened_to)):
        if val is not None:
            args.append(val)
            where.append(cond.format(len(args)))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    total = await pool.fetchval(f"SELECT count(*) FROM intake.intake_cases {clause}", *args)
    rows = await pool.fetch(
        f"SELECT * FROM intake.intake_cases {clause} ORDER BY {SORTS[sort]} "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}", *args, limit, offset)
    return list(rows), int(total)


async def duplicates_of_case(pool: asyncpg.Pool, case_id: str, only_new: bool = False) -> list[asyncpg.Record]:
    if only_new:
        return list(await pool.fetch(
            "SELECT * FROM intake.duplicate_candidates WHERE case_id = $1 ORDER BY flagged_at", case_id))
    return list(await pool.fetch(
        "SELECT * FROM intake.duplicate_candidates WHERE case_id = $1 OR other_case_id = $1 ORDER BY flagged_at",
        case_id))


async def count_open_duplicates(pool: asyncpg.Pool, case_id: str) -> int:
    return int(await pool.fetchval(
        "SELECT count(*) FROM intake.duplicate_candidates WHERE (case_id = $1 OR other_case_id = $1) "
        "AND status = 'open'", case_id))


async def get_duplicate(pool: asyncpg.Pool, candidate_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.duplicate_candidates WHERE candidate_id = $1", candidate_id)


async def resolve_duplicate(pool: asyncpg.Pool, candidate_id: str, status: str, user_id: str,
                            reason: str) -> asyncpg.Record | None:
    """Only an open candidate can be resolved (None otherwise: already decided)."""
    return await pool.fetchrow(
        "UPDATE intake.duplicate_candidates SET status = $2, decided_by = $3, decided_at = now(), reason = $4 "
        "WHERE candidate_id = $1 AND status = 'open' RETURNING *", candidate_id, status, user_id, reason)


async def log_access(pool: asyncpg.Pool, *, user_id: str, agency: str, roles: list[str], case_id: str,
                     person_id: str, case_province: str, action: str, purpose: str | None,
                     break_glass_reason: str | None, masked: bool, sections: list[str],
                     request_id: str | None) -> int:
    return int(await pool.fetchval(
        """INSERT INTO intake.access_log (user_id, agency, roles, case_id, person_id, case_province, action,
               purpose, break_glass_reason, masked, sections, request_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING access_id""",
        user_id, agency, roles, case_id, person_id, case_province, action, purpose, break_glass_reason, masked,
        sections, request_id))


async def list_access_log(pool: asyncpg.Pool, *, case_id: str | None, user_id: str | None,
                          province: str | None, cursor: int | None, limit: int) -> list[asyncpg.Record]:
    where: list[str] = []
    args: list[Any] = []
    for cond, val in (("case_id = ${}", case_id), ("user_id = ${}", user_id), ("case_province = ${}", province),
                      ("access_id < ${}", cursor)):
        if val is not None:
            args.append(val)
            where.append(cond.format(len(args)))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    return list(await pool.fetch(
        f"SELECT * FROM intake.access_log {clause} ORDER BY access_id DESC LIMIT ${len(args) + 1}",
        *args, limit))


async def erase_person(pool: asyncpg.Pool, person_id: str) -> str:
    """Erase personal data, keep statistics (age band, province, commune, gender, citizenship, channel).

    Returns 'erased', 'already_erased' or 'not_found'."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT erased_at FROM intake.persons WHERE person_id = $1 FOR UPDATE",
                                  person_id)
        if row is None:
            return "not_found"
        if row["erased_at"] is not None:
            return "already_erased"
        sets = ", ".join(f"{c} = NULL" for c in PERSON_COLUMNS)
        await conn.execute(
            f"UPDATE intake.persons SET {sets}, identity_bidx = NULL, name_year_bidx = NULL, "
            "estimated_age = NULL, number_of_children = NULL, marital_status = NULL, erased_at = now() "
            "WHERE person_id = $1", person_id)
        await conn.execute(
            "UPDATE intake.intake_cases SET report_summary = NULL, incoming_referral_details = NULL "
            "WHERE person_id = $1", person_id)
        return "erased"
