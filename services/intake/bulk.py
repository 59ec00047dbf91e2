"""Bulk intake for mass arrivals: many rows, one result per row, valid rows opened even when others fail.

CSV layout (one person per row, header required; empty cell = unknown):
- case columns: channel, province, commune, abroad, foreign_national, already_safe, con_Consent
- person columns: every prs_* field of PersonIn, birth_year, estimated_age, no_documents,
  vic_AgreementToManagePersonalData
- victim columns: vic_* (multiselect values separated by ';')
- report columns: report_summary, report_received_at, cas_ReferringOrganisation, cas_IncomingReferralDate,
  cas_ReasonForIncomingReferral, cas_IncomingReferralDetails
- one trafficking event: hte_* columns

Rows open concurrently (BULK_CONCURRENCY at a time) with the same duplicate flags as one after another in
row order: before a row opens, it waits for the earlier rows of its batch that share one of its duplicate
keys (identity number, name + birth year + province), so a later row is always the one flagged against
an earlier, and never the reverse. Rows sharing no key cannot flag each other and open side by side.

Background batches (POST /cases/bulk/batches): the rows are stored encrypted, then opened by a task of
the intake process holding the batch's lease; each row's result commits in the transaction that opens
its case. A batch whose process died (its lease expired) is taken over by a running intake process and
resumes at its first row without a result; rows are keyed <batch key>#<row index>, so a case committed
before the crash is never opened twice."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from pydantic import TypeAdapter, ValidationError

from shared.auth import Principal
from shared.db import Conn
from shared.runtime import Runtime

from . import opening, repository
from .dedupe import flag_view
from .models import (
    MAX_BULK_ROWS,
    BatchView,
    BulkResponse,
    BulkRowResult,
    EntryDecision,
    OpenCaseRequest,
    PersonIn,
    ReportIn,
    TraffickingEventIn,
    VictimContextIn,
)
from .repository import IdempotencyConflict

log = structlog.get_logger("intake")
_ADAPTER = TypeAdapter(OpenCaseRequest)
BULK_CONCURRENCY = 16  # rows opening at once (each holds a database connection for its transaction)
LEASE_SECONDS = 30.0  # a batch whose process stopped renewing this long is taken over
RESUME_INTERVAL = 5.0  # how often an intake process looks for batches to take over
ROW_ATTEMPTS = 3  # a row failing this many times (database or Temporal away) is reported failed
PAGE = 500  # pending rows read at a time
PAYLOAD_COLUMN = "bulk_rows.payload"
ROW_HASH_PURPOSE = "intake.bulk_row"

CASE_COLUMNS = (
    "channel",
    "province",
    "commune",
    "abroad",
    "foreign_national",
    "already_safe",
    "con_Consent",
)
PERSON_COLUMNS = tuple(PersonIn.model_fields)
VICTIM_COLUMNS = tuple(VictimContextIn.model_fields)
EVENT_COLUMNS = tuple(TraffickingEventIn.model_fields)
REPORT_COLUMNS = {
    "report_summary": "summary",
    "report_received_at": "received_at",
    **{k: k for k in ReportIn.model_fields if k.startswith("cas_")},
}
CSV_COLUMNS = (*CASE_COLUMNS, *PERSON_COLUMNS, *VICTIM_COLUMNS, *REPORT_COLUMNS, *EVENT_COLUMNS)
_MULTI = {
    name
    for name, f in {**PersonIn.model_fields, **VictimContextIn.model_fields}.items()
    if "list" in str(f.annotation)
}


class CsvError(ValueError):
    pass


def error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """Field and reason only (the input value is not echoed: it may be personal data)."""
    return [
        {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows as nested dicts ready for OpenCaseRequest validation. Raises CsvError on a bad header."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames
    if not header:
        raise CsvError("the CSV is empty: a header row is required")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise CsvError(
            f"unknown CSV columns: {', '.join(unknown)}; allowed columns: {', '.join(CSV_COLUMNS)}"
        )
    missing = [c for c in ("channel", "province") if c not in header]
    if missing:
        raise CsvError(f"required CSV columns missing: {', '.join(missing)}")
    reader.fieldnames = header
    rows: list[dict[str, Any]] = []
    for raw in reader:
        if len(rows) >= MAX_BULK_ROWS:
            raise CsvError(f"at most {MAX_BULK_ROWS} rows per upload")
        if None in raw:
            rows.append({"__csv_error__": "more cells than header columns"})
            continue
        cells = {k: v.strip() for k, v in raw.items() if v is not None and v.strip() != ""}
        if not cells:
            continue
        row: dict[str, Any] = {k: cells[k] for k in CASE_COLUMNS if k in cells}
        person = {k: _cell(k, cells[k]) for k in PERSON_COLUMNS if k in cells}
        row["person"] = person
        victim = {k: _cell(k, cells[k]) for k in VICTIM_COLUMNS if k in cells}
        if victim:
            row["victim"] = victim
        report = {target: cells[src] for src, target in REPORT_COLUMNS.items() if src in cells}
        if report:
            row["report"] = report
        event = {k: cells[k] for k in EVENT_COLUMNS if k in cells}
        if event:
            row["events"] = [event]
        rows.append(row)
    return rows


def _cell(name: str, value: str) -> Any:
    if name in _MULTI:
        return [v.strip() for v in value.replace("|", ";").split(";") if v.strip()]
    return value


# ---- one pass over rows: validate in order, open concurrently, duplicates flagged as in row order ------
@dataclass
class RowDone:
    """A row's result and, for an opened row, its duplicate candidates as stored (viewed per reader)."""

    result: BulkRowResult
    duplicates: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Work:
    index: int
    new: repository.NewCase | None = None
    invalid: BulkRowResult | None = None
    after: list[asyncio.Event] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


class RowOrder:
    """Which earlier rows a row must wait for: the last earlier row sharing each of its duplicate keys
    (that row waited for the ones before it, so the chain keeps row order)."""

    def __init__(self) -> None:
        self._last: dict[str, _Work] = {}

    def place(self, work: _Work, keys: Iterable[str | None]) -> None:
        for k in keys:
            if k is None:
                continue
            earlier = self._last.get(k)
            if earlier is not None and not earlier.done.is_set():
                work.after.append(earlier.done)
            self._last[k] = work


def invalid_row(index: int, loc: list[str], msg: str, type_: str) -> BulkRowResult:
    return BulkRowResult(
        index=index, status="invalid", errors=[{"loc": loc, "msg": msg, "type": type_}]
    )


def prepare_row(
    runtime: Runtime,
    principal: Principal,
    index: int,
    raw: Any,
    *,
    key: str | None,
    request_id: str | None,
    source: str,
    entry: EntryDecision | None,
) -> _Work:
    """Validation, jurisdiction and entry-decision checks, then the case as it will be written."""
    if isinstance(raw, dict) and "__csv_error__" in raw:
        return _Work(index, invalid=invalid_row(index, ["row"], raw["__csv_error__"], "csv"))
    try:
        req = _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        return _Work(
            index, invalid=BulkRowResult(index=index, status="invalid", errors=error_list(exc))
        )
    if not principal.covers_province(req.province):
        return _Work(
            index,
            invalid=invalid_row(
                index,
                ["province"],
                f"province {req.province} is outside your jurisdiction ({principal.province})",
                "forbidden",
            ),
        )
    if entry is not None and (why := opening.may_take_entry_decision(principal, req)) is not None:
        return _Work(index, invalid=invalid_row(index, ["entry_decision"], why, "forbidden"))
    new = opening.build_new_case(
        runtime, req, principal, idem_key=key, request_id=request_id, source=source, entry=entry
    )
    return _Work(index, new=new)


# What becomes of a row's result: `record(done, conn)` with the opening transaction's connection when the
# row opened a case (commit together), or None otherwise. Raising leaves the row unanswered.
Record = Callable[[RowDone, Conn | None], Awaitable[None]]


async def open_work(
    runtime: Runtime,
    principal: Principal,
    work: _Work,
    record: Record,
    *,
    source: str,
    retry_later: bool = False,
) -> None:
    """Open one prepared row once the earlier rows it could duplicate are done. With `retry_later`, an
    unexpected failure leaves the row unanswered (a batch passes over it again) instead of `failed`."""
    try:
        if work.invalid is not None:
            await record(RowDone(work.invalid), None)
            return
        for earlier in work.after:
            await earlier.wait()
        assert work.new is not None
        i = work.index

        def done_of(outcome: repository.OpenOutcome, started: bool | None) -> RowDone:
            dups = [
                {k: d[k] for k in ("candidate_id", "match_kind", "other_case_id", "other_province")}
                for d in outcome.duplicates
            ]
            state = (
                "replayed" if not outcome.created else ("duplicate_flagged" if dups else "opened")
            )
            return RowDone(
                BulkRowResult(
                    index=i, status=state, case_id=outcome.case["case_id"], workflow_started=started
                ),
                dups,
            )

        async def also(conn: Conn, outcome: repository.OpenOutcome) -> None:
            await record(done_of(outcome, None), conn)

        try:
            outcome, started = await opening.open_new_case(
                runtime, work.new, source=source, also=also
            )
        except IdempotencyConflict as exc:
            await record(
                RowDone(
                    BulkRowResult(
                        index=i,
                        status="invalid",
                        case_id=exc.case_id,
                        errors=[
                            {
                                "loc": ["Idempotency-Key"],
                                "msg": "this key and row position were used before with a different "
                                "row",
                                "type": "idempotency_conflict",
                            }
                        ],
                    )
                ),
                None,
            )
            return
        except Exception as exc:  # one bad row must not sink the others
            log.warning("bulk_row_failed", row=i, error=type(exc).__name__)
            if retry_later:
                raise
            await record(
                RowDone(
                    BulkRowResult(
                        index=i,
                        status="failed",
                        errors=[
                            {
                                "loc": ["row"],
                                "msg": f"could not be stored ({type(exc).__name__}); retry this row",
                                "type": "internal",
                            }
                        ],
                    )
                ),
                None,
            )
            return
        if not outcome.created:
            await record(done_of(outcome, started), None)
        else:
            await record(done_of(outcome, started), _STARTED_ONLY)
    finally:
        work.done.set()


class _StartedOnly:
    """Marker passed as `conn` after the opening committed: only the workflow-started flag is new."""


_STARTED_ONLY: Any = _StartedOnly()


async def run_rows(
    runtime: Runtime,
    principal: Principal,
    rows: AsyncIterator[tuple[int, Any]],
    record: Record,
    *,
    key_of: Callable[[int], str | None],
    request_id: str | None,
    source: str,
    entry: EntryDecision | None,
    order: RowOrder | None = None,
    retry_later: bool = False,
    concurrency: int = BULK_CONCURRENCY,
) -> int:
    """Prepare rows in row order (one coroutine) and open them `concurrency` at a time. Returns the number
    of rows whose opening raised (only with `retry_later`; they stay unanswered)."""
    order = order or RowOrder()
    queue: asyncio.Queue[_Work | None] = asyncio.Queue(maxsize=2 * concurrency)
    failures = 0

    async def produce() -> None:
        async for index, raw in rows:
            work = prepare_row(
                runtime,
                principal,
                index,
                raw,
                key=key_of(index),
                request_id=request_id,
                source=source,
                entry=entry,
            )
            if work.new is not None:
                order.place(work, work.new.lock_keys)
            await queue.put(work)
        for _ in range(concurrency):  # (on an error the task group cancels the consumers instead)
            await queue.put(None)

    async def consume() -> None:
        nonlocal failures
        while (work := await queue.get()) is not None:
            try:
                await open_work(
                    runtime, principal, work, record, source=source, retry_later=retry_later
                )
            except Exception:  # counted; the batch passes over the row again
                failures += 1

    async with asyncio.TaskGroup() as tg:
        tg.create_task(produce())
        for _ in range(concurrency):
            tg.create_task(consume())
    return failures


async def _listed(rows: list[Any]) -> AsyncIterator[tuple[int, Any]]:
    for i, raw in enumerate(rows):
        yield i, raw
        if i % 50 == 49:
            await asyncio.sleep(0)  # let opened rows proceed while a long list is validated


def summary(results: list[BulkRowResult]) -> dict[str, int]:
    return {
        s: sum(1 for r in results if r.status == s)
        for s in ("opened", "duplicate_flagged", "replayed", "invalid", "failed")
    }


async def open_rows(
    runtime: Runtime,
    principal: Principal,
    rows: list[Any],
    *,
    idem_key: str | None,
    request_id: str | None,
    source: str,
    entry: EntryDecision | None = None,
) -> BulkResponse:
    """The synchronous bulk endpoint: every row's result in the response."""
    done: dict[int, RowDone] = {}

    async def record(row: RowDone, conn: Conn | None) -> None:
        if conn is _STARTED_ONLY and row.result.index in done:
            done[row.result.index].result.workflow_started = row.result.workflow_started
        else:
            done[row.result.index] = row

    # the batch key plus the row position; no batch key: every row is a new case
    await run_rows(
        runtime,
        principal,
        _listed(rows),
        record,
        key_of=lambda i: f"{idem_key}#{i}" if idem_key else None,
        request_id=request_id,
        source=source,
        entry=entry,
    )
    final = []
    for i in range(len(rows)):
        r = done[i]
        r.result.duplicates = [flag_view(principal, d) for d in r.duplicates]
        final.append(r.result)
    return BulkResponse(received=len(rows), results=final, **summary(final))


# ---- background batches ----------------------------------------------------------------------------
def row_key(batch: asyncpg.Record, index: int) -> str:
    return f"{batch['idem_key'] or batch['batch_id']}#{index}"


def sealed_rows(
    runtime: Runtime, batch_id: str, offset: int, rows: list[dict[str, Any]]
) -> list[tuple[int, bytes, str]]:
    """(index, encrypted row bound to its batch and position, keyed hash of the row)."""
    out = []
    for n, raw in enumerate(rows):
        i = offset + n
        text = json.dumps(raw, sort_keys=True, ensure_ascii=False)
        payload = runtime.ring.encrypt_field(text, PAYLOAD_COLUMN, row=f"{batch_id}#{i}")
        assert payload is not None
        out.append((i, payload, runtime.ring.blind_index(text, ROW_HASH_PURPOSE)))
    return out


def new_batch_id() -> str:
    return f"bb-{uuid.uuid4().hex}"


def _tasks(runtime: Runtime) -> dict[str, asyncio.Task[None]]:
    tasks: dict[str, asyncio.Task[None]] = runtime.extras.setdefault("bulk_tasks", {})
    return tasks


def _wakeup(runtime: Runtime, batch_id: str) -> asyncio.Event:
    events: dict[str, asyncio.Event] = runtime.extras.setdefault("bulk_wakeups", {})
    return events.setdefault(batch_id, asyncio.Event())


def rows_arrived(runtime: Runtime, batch_id: str) -> None:
    _wakeup(runtime, batch_id).set()


def spawn(runtime: Runtime, batch_id: str) -> None:
    """Process the batch in this process unless it already does."""
    tasks = _tasks(runtime)
    running = tasks.get(batch_id)
    if running is not None and not running.done():
        return
    tasks[batch_id] = asyncio.create_task(
        _run_batch_logged(runtime, batch_id), name=f"bulk-{batch_id}"
    )


async def _run_batch_logged(runtime: Runtime, batch_id: str) -> None:
    try:
        await run_batch(runtime, batch_id)
    except asyncio.CancelledError:
        log.info(
            "bulk_batch_paused", batch_id=batch_id
        )  # shutdown: another process (or our restart) resumes
        raise
    except Exception as exc:  # the lease expires and the resume loop takes it over
        log.warning("bulk_batch_interrupted", batch_id=batch_id, error=type(exc).__name__)
    finally:
        runtime.extras.get("bulk_wakeups", {}).pop(batch_id, None)


def lease_seconds(runtime: Runtime) -> float:
    return float(runtime.extras.get("bulk_lease_seconds", LEASE_SECONDS))


async def _keep_lease(runtime: Runtime, batch_id: str) -> None:
    seconds = lease_seconds(runtime)
    while True:
        await asyncio.sleep(seconds / 3)
        with contextlib.suppress(asyncpg.PostgresError, OSError):
            await repository.lease_batch(runtime.pool, batch_id, seconds)


async def run_batch(runtime: Runtime, batch_id: str) -> None:
    """Open every row of the batch that has no result yet, in passes, until all `total` rows have one."""
    pool = runtime.pool
    batch = await repository.get_batch(pool, batch_id)
    if batch is None or batch["finished_at"] is not None:
        return
    principal = Principal.model_validate(batch["principal"])
    entry = (
        EntryDecision(
            classification=batch["entry_classification"],
            justification=opening.open_justification(
                runtime.ring, batch["entry_justification"], "bulk_batches", batch_id
            ),
        )
        if batch["entry_classification"]
        else None
    )
    log.info("bulk_batch_running", batch_id=batch_id, total=batch["total"])
    # a batch taken over after its process died: cases committed just before the crash may never have had
    # their workflow started (the reconcile loop would, but only after a minute); start them now
    for case in await repository.unstarted_batch_cases(pool, batch_id):
        await opening.start_case_workflow(runtime, case)

    async def record(row: RowDone, conn: Conn | None) -> None:
        r = row.result
        if conn is _STARTED_ONLY:
            return  # the started mark lives on the case row (intake_cases.workflow_started_at)
        await repository.record_row(
            conn if conn is not None else pool,
            batch_id,
            r.index,
            r.status,
            r.case_id,
            row.duplicates,
            r.errors,
        )

    attempts: dict[int, int] = {}

    async def pending() -> AsyncIterator[tuple[int, Any]]:
        after = -1
        while page := await repository.pending_rows(pool, batch_id, after, PAGE):
            for rec in page:
                i = rec["row_index"]
                after = i
                if attempts.get(i, 0) >= ROW_ATTEMPTS:
                    await repository.record_row(
                        pool,
                        batch_id,
                        i,
                        "failed",
                        None,
                        [],
                        [
                            {
                                "loc": ["row"],
                                "msg": "could not be stored (the database or Temporal was unavailable); "
                                "send this row again",
                                "type": "internal",
                            }
                        ],
                    )
                    continue
                text = runtime.ring.decrypt_field(
                    rec["payload"], PAYLOAD_COLUMN, row=f"{batch_id}#{i}"
                )
                yield i, json.loads(text or "null")

    class Counting:
        def __init__(self) -> None:
            self.seen: list[int] = []

        async def rows(self) -> AsyncIterator[tuple[int, Any]]:
            async for i, raw in pending():
                self.seen.append(i)
                yield i, raw

    lease = asyncio.create_task(_keep_lease(runtime, batch_id), name=f"bulk-lease-{batch_id}")
    wake = _wakeup(runtime, batch_id)
    delay = 0.5
    try:
        while True:
            wake.clear()
            passing = Counting()
            failures = await run_rows(
                runtime,
                principal,
                passing.rows(),
                record,
                key_of=lambda i: row_key(batch, i),
                request_id=batch["request_id"],
                source=batch["source"],
                entry=entry,
                retry_later=True,
            )
            if failures:
                for i in passing.seen:
                    attempts[i] = attempts.get(i, 0) + 1
            if await repository.finish_batch_if_done(pool, batch_id):
                break
            if failures:  # the database or Temporal is away: pass again a little later
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            # rows still to be received: wait for a chunk (this process is told; another's is polled)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=1.0)
    finally:
        lease.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lease
    await opening.started_marks(runtime).flush()
    log.info("bulk_batch_finished", batch_id=batch_id)


async def resume_loop(runtime: Runtime, interval: float) -> None:
    """Take over batches whose process died (lease expired), this process's own after a restart too."""
    while True:
        try:
            for batch_id in await repository.claim_abandoned_batches(
                runtime.pool, lease_seconds(runtime)
            ):
                log.info("bulk_batch_resumed", batch_id=batch_id)
                spawn(runtime, batch_id)
        except Exception as exc:  # the database may be back next time
            log.warning("bulk_resume_failed", error=type(exc).__name__)
        await asyncio.sleep(interval)


async def stop_batches(runtime: Runtime) -> None:
    tasks = list(_tasks(runtime).values())
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def batch_view(
    runtime: Runtime,
    principal: Principal,
    batch: Any,
    *,
    offset: int = 0,
    limit: int = 0,
    status_filter: str | None = None,
) -> BatchView:
    """A batch as its owner reads it: progress counts, the entry decision, a page of row results."""
    counts = await repository.batch_progress(runtime.pool, batch["batch_id"])
    results = []
    rows = (
        (
            await repository.batch_rows(
                runtime.pool,
                batch["batch_id"],
                status=status_filter,
                offset=offset,
                limit=limit + 1,
            )
        )
        if limit
        else []
    )
    for r in rows[:limit]:
        results.append(
            BulkRowResult(
                index=r["row_index"],
                status=r["status"],
                case_id=r["case_id"],
                duplicates=[flag_view(principal, d) for d in r["duplicates"]],
                errors=r["errors"],
                workflow_started=(r["workflow_started_at"] is not None) if r["case_id"] else None,
            )
        )
    entry = (
        EntryDecision(
            classification=batch["entry_classification"],
            justification=opening.open_justification(
                runtime.ring, batch["entry_justification"], "bulk_batches", batch["batch_id"]
            ),
        )
        if batch["entry_classification"]
        else None
    )
    return BatchView(
        batch_id=batch["batch_id"],
        created_at=batch["created_at"],
        finished_at=batch["finished_at"],
        total=batch["total"],
        received=sum(counts.values()),
        done=sum(n for s, n in counts.items() if s != "pending"),
        entry_decision=entry,
        results=results,
        next_offset=rows[limit]["row_index"] if len(rows) > limit and limit else None,
        **{
            s: counts.get(s, 0)
            for s in ("opened", "duplicate_flagged", "replayed", "invalid", "failed")
        },
    )
