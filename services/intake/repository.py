"""SQL of the intake schema (asyncpg, no ORM). Tables are always schema-qualified (`intake.`)."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from shared.db import Conn

from .duplicate_evidence import Evidence
from .duplicate_evidence import from_row as dedupe_from_row
from .duplicate_evidence import score as dedupe_score
from .duplicate_evidence import should_flag as dedupe_should_flag

PERSON_COLUMNS = (
    "first_name",
    "middle_name",
    "second_name",
    "birthdate",
    "birth_year",
    "identity_number",
    "mobile_phone",
    "home_phone",
    "email",
    "mailing_street",
    "mailing_city",
    "mailing_state",
    "mailing_postal_code",
    "victim_context",
    "trafficking_events",
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
    # the scored evidence (issue 15 item 9), comparable with dedupe.from_row; its columns are in `person`
    evidence: Evidence | None = None

    @property
    def lock_keys(self) -> list[str]:
        """Keys two openings that could be duplicates of each other share (they are serialised on them)."""
        blocking = self.person.get("ev_blocking") or []
        return sorted({k for k in (self.identity_bidx, self.name_year_bidx, *blocking) if k})


# A duplicate candidate row with the provinces of both its cases (who may see which case id depends on them).
DuplicateRow = dict[str, Any]


@dataclass
class OpenOutcome:
    case: asyncpg.Record
    created: bool
    duplicates: list[DuplicateRow] = field(default_factory=list)


class IdempotencyConflict(Exception):
    """The caller used this Idempotency-Key for this operation before, with a different request."""

    def __init__(self, target_id: str) -> None:
        super().__init__(target_id)
        self.case_id = target_id


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def _insert_sql(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(columns)
    params = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO intake.{table} ({cols}) VALUES ({params})"


# Written in the transaction that opens the case (a bulk batch's row result), so both commit or neither.
AlsoWrite = Callable[[Conn, OpenOutcome], Awaitable[None]]


async def open_case(pool: asyncpg.Pool, new: NewCase, also: AlsoWrite | None = None) -> OpenOutcome:
    """Person + case + duplicate candidates in ONE transaction, exactly once per (caller, opening
    endpoint, key); without a key (idem_key NULL) always a new case.

    Concurrent requests with the same key: the second INSERT waits for the first to commit, then
    conflicts (ON CONFLICT DO NOTHING) and the transaction is rolled back, person row included."""
    async with pool.acquire() as conn:
        async with conn.transaction():
            # serialise openings that could be duplicates of each other, so each sees the other
            keys = new.lock_keys
            if (
                keys
            ):  # one round trip; sorted, so two openings never wait on each other in opposite order
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(k, 7310)) "
                    "FROM unnest($1::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
                    keys,
                )
            person = {
                **new.person,
                "person_id": new.person_id,
                "identity_bidx": new.identity_bidx,
                "name_year_bidx": new.name_year_bidx,
            }
            await conn.execute(_insert_sql("persons", list(person)), *person.values())
            case = {**new.case, "case_id": new.case_id, "person_id": new.person_id}
            inserted = await conn.fetchrow(
                _insert_sql("intake_cases", list(case))
                + " ON CONFLICT (idem_user, source, idem_key) DO NOTHING RETURNING *",
                *case.values(),
            )
            if inserted is not None:
                outcome = OpenOutcome(inserted, True, await _flag_duplicates(conn, new))
                if also is not None:
                    await also(conn, outcome)
                return outcome
            # fall through: roll this transaction back (the person row goes with it)
            raise _Replay()
    raise AssertionError("unreachable")  # pragma: no cover


class _Replay(Exception):
    pass


async def open_case_once(
    pool: asyncpg.Pool, new: NewCase, also: AlsoWrite | None = None
) -> OpenOutcome:
    """`also` runs in the opening transaction only when this call creates the case."""
    try:
        return await open_case(pool, new, also)
    except _Replay:
        pass
    existing = await case_by_idempotency_key(
        pool, new.case["idem_user"], new.case["source"], new.case["idem_key"]
    )
    assert existing is not None  # only a key can conflict
    if existing["request_hash"] != new.case["request_hash"]:
        raise IdempotencyConflict(existing["case_id"])
    return OpenOutcome(
        existing, False, await duplicates_of_case(pool, existing["case_id"], only_new=True)
    )


async def _flag_duplicates(conn: Any, new: NewCase) -> list[DuplicateRow]:
    """Flag the earlier persons this one may be: the same identity number always; otherwise a person found
    under a shared blocking key whose evidence scores at least dedupe.FLAG_THRESHOLD (kind `evidence`, with
    the score and reasons); a person stored before scoring (no evidence columns) by the old name + birth
    year + province key."""
    blocking = new.person.get("ev_blocking") or []
    if not new.identity_bidx and not new.name_year_bidx and not blocking:
        return []
    matches = await conn.fetch(
        """SELECT p.person_id, p.identity_bidx, p.ev_full_name, p.ev_given_family, p.ev_birth_date,
                  p.ev_birth_year, p.ev_phone, p.ev_blocking, c.case_id, c.province, c.commune,
                  (p.name_year_bidx IS NOT NULL AND p.name_year_bidx = $3) AS by_name
           FROM intake.persons p JOIN intake.intake_cases c ON c.person_id = p.person_id
           WHERE p.person_id <> $1 AND p.erased_at IS NULL
             AND (p.identity_bidx = $2 OR p.ev_blocking && $4::text[]
                  OR (p.ev_blocking IS NULL AND p.name_year_bidx = $3))
           ORDER BY c.opened_at""",
        new.person_id,
        new.identity_bidx,
        new.name_year_bidx,
        blocking,
    )
    rows: list[DuplicateRow] = []
    for m in matches:
        same_identity = bool(new.identity_bidx) and m["identity_bidx"] == new.identity_bidx
        points: float | None = None
        reasons: list[str] = []
        if m["ev_blocking"] is not None and new.evidence is not None:
            points, reasons = dedupe_score(new.evidence, dedupe_from_row(m))
        kinds: list[str] = []
        if same_identity:
            kinds.append("identity_number")
        elif points is not None:
            if dedupe_should_flag(points):
                kinds.append("evidence")
        elif m["by_name"]:  # a person stored before scoring
            kinds.append("name_birth_year_province")
        for kind in kinds:
            row = await conn.fetchrow(
                """INSERT INTO intake.duplicate_candidates
                       (candidate_id, case_id, person_id, other_case_id, other_person_id, match_kind,
                        score, reasons)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                   ON CONFLICT (person_id, other_person_id, match_kind) DO NOTHING RETURNING *""",
                new_id("d"),
                new.case_id,
                new.person_id,
                m["case_id"],
                m["person_id"],
                kind,
                points,
                reasons,
            )
            if row is not None:
                rows.append(
                    {
                        **dict(row),
                        "case_province": new.case["province"],
                        "other_province": m["province"],
                    }
                )
    return rows


async def case_by_idempotency_key(
    pool: asyncpg.Pool, user: str, source: str, key: str
) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "SELECT * FROM intake.intake_cases WHERE idem_user = $1 AND source = $2 AND idem_key = $3",
        user,
        source,
        key,
    )


async def claim_request_key(
    conn: Conn, *, user_id: str, operation: str, target_id: str, key: str, request_hash: str
) -> bool:
    """Record that this caller used `key` for `operation` on `target_id`. True: first use (go ahead);
    False: a retry of the same request (replay). Raises IdempotencyConflict when the key came with
    another request. Call it inside the transaction of the action it guards: a concurrent request
    with the same key waits here until that transaction ends."""
    inserted = await conn.fetchval(
        """INSERT INTO intake.request_keys (user_id, operation, target_id, idem_key, request_hash)
           VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true""",
        user_id,
        operation,
        target_id,
        key,
        request_hash,
    )
    if inserted:
        return True
    earlier = await conn.fetchval(
        "SELECT request_hash FROM intake.request_keys WHERE user_id = $1 AND operation = $2 AND target_id = $3 "
        "AND idem_key = $4",
        user_id,
        operation,
        target_id,
        key,
    )
    if earlier != request_hash:
        raise IdempotencyConflict(target_id)
    return False


async def mark_workflows_started(pool: asyncpg.Pool, case_ids: Sequence[str]) -> None:
    """A hint for the reconcile loop, so it need not wait for a flush to disk: if a crash loses it, the
    loop starts the workflow again and Temporal answers "already started" (the case row itself was
    committed durably before the start)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit TO off")
        await conn.execute(
            "UPDATE intake.intake_cases SET workflow_started_at = now() "
            "WHERE case_id = ANY($1::text[]) AND workflow_started_at IS NULL",
            list(case_ids),
        )


async def unstarted_cases(
    pool: asyncpg.Pool, older_than: timedelta, limit: int = 200
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT * FROM intake.intake_cases WHERE workflow_started_at IS NULL "
            "AND opened_at < now() - $1::interval ORDER BY opened_at LIMIT $2",
            older_than,
            limit,
        )
    )


async def unstarted_batch_cases(pool: asyncpg.Pool, batch_id: str) -> list[asyncpg.Record]:
    """The batch's committed cases whose workflow start a crash may have cut off (no started mark yet)."""
    return list(
        await pool.fetch(
            "SELECT c.* FROM intake.bulk_rows r JOIN intake.intake_cases c USING (case_id) "
            "WHERE r.batch_id = $1 AND c.workflow_started_at IS NULL ORDER BY r.row_index",
            batch_id,
        )
    )


async def get_case(pool: asyncpg.Pool, case_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.intake_cases WHERE case_id = $1", case_id)


async def case_of_person(pool: asyncpg.Pool, person_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.intake_cases WHERE person_id = $1", person_id)


async def get_person(pool: asyncpg.Pool, person_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.persons WHERE person_id = $1", person_id)


SORTS = {
    "opened_at": "opened_at ASC, case_id ASC",
    "-opened_at": "opened_at DESC, case_id DESC",
    "province": "province ASC, opened_at DESC, case_id DESC",
    "channel": "channel ASC, opened_at DESC, case_id DESC",
}


async def list_cases(
    pool: asyncpg.Pool,
    *,
    province: str | None,
    channel: str | None,
    opened_from: datetime | None,
    opened_to: datetime | None,
    sort: str,
    limit: int,
    offset: int,
) -> tuple[list[asyncpg.Record], int]:
    where: list[str] = []
    args: list[Any] = []
    for cond, val in (
        ("province = ${}", province),
        ("channel = ${}", channel),
        ("opened_at >= ${}", opened_from),
        ("opened_at < ${}", opened_to),
    ):
        if val is not None:
            args.append(val)
            where.append(cond.format(len(args)))
    clause = ("WHERE " + " AND ".join(where)) if where else ""
    total = await pool.fetchval(f"SELECT count(*) FROM intake.intake_cases {clause}", *args)
    rows = await pool.fetch(
        f"SELECT * FROM intake.intake_cases {clause} ORDER BY {SORTS[sort]} "
        f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
        *args,
        limit,
        offset,
    )
    return list(rows), int(total)


_WITH_PROVINCES = """SELECT d.*, c.province AS case_province, o.province AS other_province
    FROM {source} d JOIN intake.intake_cases c ON c.case_id = d.case_id
    JOIN intake.intake_cases o ON o.case_id = d.other_case_id"""
_DUPLICATES = _WITH_PROVINCES.format(source="intake.duplicate_candidates")


async def duplicates_of_case(
    pool: asyncpg.Pool, case_id: str, only_new: bool = False
) -> list[DuplicateRow]:
    if only_new:
        rows = await pool.fetch(
            f"{_DUPLICATES} WHERE d.case_id = $1 ORDER BY d.flagged_at", case_id
        )
    else:
        rows = await pool.fetch(
            f"{_DUPLICATES} WHERE d.case_id = $1 OR d.other_case_id = $1 ORDER BY d.flagged_at",
            case_id,
        )
    return [dict(r) for r in rows]


async def count_open_duplicates(pool: asyncpg.Pool, case_id: str) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM intake.duplicate_candidates WHERE (case_id = $1 OR other_case_id = $1) "
            "AND status = 'open'",
            case_id,
        )
    )


async def get_duplicate(db: asyncpg.Pool | Conn, candidate_id: str) -> DuplicateRow | None:
    row = await db.fetchrow(f"{_DUPLICATES} WHERE d.candidate_id = $1", candidate_id)
    return dict(row) if row is not None else None


async def resolve_duplicate(
    db: asyncpg.Pool | Conn, candidate_id: str, status: str, user_id: str, reason: str
) -> DuplicateRow | None:
    """Only an open candidate can be resolved (None otherwise: already decided)."""
    decided = (
        "(UPDATE intake.duplicate_candidates SET status = $2, decided_by = $3, decided_at = now(), reason = $4 "
        "WHERE candidate_id = $1 AND status = 'open' RETURNING *)"
    )
    row = await db.fetchrow(
        "WITH decided AS " + decided + " " + _WITH_PROVINCES.format(source="decided"),
        candidate_id,
        status,
        user_id,
        reason,
    )
    return dict(row) if row is not None else None


async def erase_person(pool: asyncpg.Pool, person_id: str) -> str:
    """Erase personal data, keep statistics (age band, province, commune, gender, citizenship, channel).

    Returns 'erased', 'already_erased' or 'not_found'."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            "SELECT erased_at FROM intake.persons WHERE person_id = $1 FOR UPDATE", person_id
        )
        if row is None:
            return "not_found"
        if row["erased_at"] is not None:
            return "already_erased"
        sets = ", ".join(f"{c} = NULL" for c in PERSON_COLUMNS)
        await conn.execute(
            f"UPDATE intake.persons SET {sets}, identity_bidx = NULL, name_year_bidx = NULL, "
            "ev_full_name = NULL, ev_given_family = NULL, ev_birth_date = NULL, ev_birth_year = NULL, "
            "ev_phone = NULL, ev_blocking = NULL, "
            "estimated_age = NULL, number_of_children = NULL, marital_status = NULL, erased_at = now() "
            "WHERE person_id = $1",
            person_id,
        )
        # the request hash is a keyed hash of the whole request, personal data included
        await conn.execute(
            "UPDATE intake.intake_cases SET report_summary = NULL, incoming_referral_details = NULL, "
            "request_hash = NULL, entry_justification = NULL WHERE person_id = $1",
            person_id,
        )
        return "erased"


# ---- bulk batches (processed in the background, resumable) ------------------------------------------
async def create_batch(
    pool: asyncpg.Pool, batch: dict[str, Any], rows: Sequence[tuple[int, bytes, str]]
) -> tuple[asyncpg.Record, bool]:
    """The batch and its first rows in one transaction. Returns (batch, created); with a key the caller
    used before for this operation, the earlier batch and False (nothing written)."""
    async with pool.acquire() as conn, conn.transaction():
        inserted = await conn.fetchrow(
            _insert_sql("bulk_batches", list(batch))
            + " ON CONFLICT (user_id, source, idem_key) DO NOTHING "
            "RETURNING *",
            *batch.values(),
        )
        if inserted is None:
            earlier = await conn.fetchrow(
                "SELECT * FROM intake.bulk_batches WHERE user_id = $1 AND source = $2 "
                "AND idem_key = $3",
                batch["user_id"],
                batch["source"],
                batch["idem_key"],
            )
            assert earlier is not None
            return earlier, False
        await _insert_rows(conn, batch["batch_id"], rows)
        return inserted, True


async def _insert_rows(conn: Conn, batch_id: str, rows: Sequence[tuple[int, bytes, str]]) -> None:
    await conn.executemany(
        "INSERT INTO intake.bulk_rows (batch_id, row_index, payload, row_hash) VALUES ($1, $2, $3, $4) "
        "ON CONFLICT (batch_id, row_index) DO NOTHING",
        [(batch_id, i, payload, h) for i, payload, h in rows],
    )


async def append_rows(
    pool: asyncpg.Pool, batch_id: str, offset: int, rows: Sequence[tuple[int, bytes, str]]
) -> tuple[int, list[int]]:
    """Rows at positions offset.. of a batch. Positions already stored are kept (a re-sent chunk); returns
    the number of rows stored after the call and the positions re-sent with a different row."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM intake.bulk_batches WHERE batch_id = $1 FOR UPDATE", batch_id
        )
        stored = await conn.fetch(
            "SELECT row_index, row_hash FROM intake.bulk_rows WHERE batch_id = $1 "
            "AND row_index >= $2 AND row_index < $3",
            batch_id,
            offset,
            offset + len(rows),
        )
        known = {r["row_index"]: r["row_hash"] for r in stored}
        differ = [i for i, _, h in rows if i in known and known[i] != h]
        if not differ:
            await _insert_rows(conn, batch_id, [r for r in rows if r[0] not in known])
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM intake.bulk_rows WHERE batch_id = $1", batch_id
            )
        ), differ


async def get_batch(pool: asyncpg.Pool, batch_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM intake.bulk_batches WHERE batch_id = $1", batch_id)


async def batch_progress(pool: asyncpg.Pool, batch_id: str) -> dict[str, int]:
    rows = await pool.fetch(
        "SELECT status, count(*) AS n FROM intake.bulk_rows WHERE batch_id = $1 GROUP BY status",
        batch_id,
    )
    return {r["status"]: int(r["n"]) for r in rows}


async def batch_rows(
    pool: asyncpg.Pool, batch_id: str, *, status: str | None, offset: int, limit: int
) -> list[asyncpg.Record]:
    """Results in row order, without the payload; with the started mark of each row's case."""
    return list(
        await pool.fetch(
            "SELECT r.row_index, r.status, r.case_id, r.duplicates, r.errors, c.workflow_started_at "
            "FROM intake.bulk_rows r LEFT JOIN intake.intake_cases c ON c.case_id = r.case_id "
            "WHERE r.batch_id = $1 AND ($2::text IS NULL OR r.status = $2) AND r.row_index >= $3 "
            "ORDER BY r.row_index LIMIT $4",
            batch_id,
            status,
            offset,
            limit,
        )
    )


async def pending_rows(
    pool: asyncpg.Pool, batch_id: str, after: int, limit: int
) -> list[asyncpg.Record]:
    return list(
        await pool.fetch(
            "SELECT row_index, payload FROM intake.bulk_rows WHERE batch_id = $1 AND status = 'pending' "
            "AND row_index > $2 ORDER BY row_index LIMIT $3",
            batch_id,
            after,
            limit,
        )
    )


async def record_row(
    db: asyncpg.Pool | Conn,
    batch_id: str,
    index: int,
    status: str,
    case_id: str | None,
    duplicates: list[dict[str, Any]],
    errors: list[dict[str, Any]],
) -> None:
    """A row's result, once (a row already done keeps its first result); its personal data is dropped."""
    await db.execute(
        "UPDATE intake.bulk_rows SET status = $3, case_id = $4, duplicates = $5, errors = $6, payload = NULL, "
        "done_at = now() WHERE batch_id = $1 AND row_index = $2 AND status = 'pending'",
        batch_id,
        index,
        status,
        case_id,
        duplicates,
        errors,
    )


async def lease_batch(pool: asyncpg.Pool, batch_id: str, seconds: float) -> bool:
    """Take or renew the lease of an unfinished batch whose lease is free, expired or ours to renew."""
    return bool(
        await pool.fetchval(
            "UPDATE intake.bulk_batches SET lease_until = now() + make_interval(secs => $2) "
            "WHERE batch_id = $1 AND finished_at IS NULL RETURNING true",
            batch_id,
            seconds,
        )
    )


async def claim_abandoned_batches(pool: asyncpg.Pool, seconds: float, limit: int = 10) -> list[str]:
    """Unfinished batches whose lease expired (their process died): leased to the caller."""
    rows = await pool.fetch(
        """UPDATE intake.bulk_batches SET lease_until = now() + make_interval(secs => $1)
           WHERE batch_id IN (SELECT batch_id FROM intake.bulk_batches
                              WHERE finished_at IS NULL AND (lease_until IS NULL OR lease_until < now())
                              ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
           RETURNING batch_id""",
        seconds,
        limit,
    )
    return [r["batch_id"] for r in rows]


async def finish_batch_if_done(pool: asyncpg.Pool, batch_id: str) -> bool:
    """Mark the batch finished when every one of its `total` rows is stored and has a result."""
    return bool(
        await pool.fetchval(
            """UPDATE intake.bulk_batches b SET finished_at = now(), lease_until = NULL
           WHERE b.batch_id = $1 AND b.finished_at IS NULL
             AND (SELECT count(*) FROM intake.bulk_rows r WHERE r.batch_id = b.batch_id AND r.status <> 'pending')
                 = b.total
           RETURNING true""",
            batch_id,
        )
    )
