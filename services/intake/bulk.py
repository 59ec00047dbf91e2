"""Bulk intake for mass arrivals: many rows, one result per row, valid rows opened even when others fail.

CSV layout (one person per row, header required; empty cell = unknown):
- case columns: channel, province, commune, abroad, foreign_national, already_safe, con_Consent
- person columns: every prs_* field of PersonIn, birth_year, estimated_age, no_documents,
  vic_AgreementToManagePersonalData
- victim columns: vic_* (multiselect values separated by ';')
- report columns: report_summary, report_received_at, cas_ReferringOrganisation, cas_IncomingReferralDate,
  cas_ReasonForIncomingReferral, cas_IncomingReferralDetails
- one trafficking event: hte_* columns"""

from __future__ import annotations

import asyncio
import csv
import io
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.auth import Principal
from shared.runtime import Runtime

from . import opening
from .dedupe import flag_view
from .models import (
    MAX_BULK_ROWS,
    BulkResponse,
    BulkRowResult,
    OpenCaseRequest,
    PersonIn,
    ReportIn,
    TraffickingEventIn,
    VictimContextIn,
)
from .repository import IdempotencyConflict

_ADAPTER = TypeAdapter(OpenCaseRequest)
# Rows open one after another, in row order: when two rows of one arrival describe the same person,
# the later row is the one flagged as a possible duplicate of the earlier, every time.
BULK_CONCURRENCY = 1

CASE_COLUMNS = ("channel", "province", "commune", "abroad", "foreign_national", "already_safe", "con_Consent")
PERSON_COLUMNS = tuple(PersonIn.model_fields)
VICTIM_COLUMNS = tuple(VictimContextIn.model_fields)
EVENT_COLUMNS = tuple(TraffickingEventIn.model_fields)
REPORT_COLUMNS = {"report_summary": "summary", "report_received_at": "received_at",
                  **{k: k for k in ReportIn.model_fields if k.startswith("cas_")}}
CSV_COLUMNS = (*CASE_COLUMNS, *PERSON_COLUMNS, *VICTIM_COLUMNS, *REPORT_COLUMNS, *EVENT_COLUMNS)
_MULTI = {name for name, f in {**PersonIn.model_fields, **VictimContextIn.model_fields}.items()
          if "list" in str(f.annotation)}


class CsvError(ValueError):
    pass


def error_list(exc: ValidationError) -> list[dict[str, Any]]:
    """Field and reason only (the input value is not echoed: it may be personal data)."""
    return [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]


def parse_csv(text: str) -> list[dict[str, Any]]:
    """Rows as nested dicts ready for OpenCaseRequest validation. Raises CsvError on a bad header."""
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames
    if not header:
        raise CsvError("the CSV is empty: a header row is required")
    header = [h.strip() for h in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise CsvError(f"unknown CSV columns: {', '.join(unknown)}; allowed columns: {', '.join(CSV_COLUMNS)}")
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


async def open_rows(runtime: Runtime, principal: Principal, rows: list[Any], *, idem_key: str | None,
                    request_id: str | None, source: str) -> BulkResponse:
    results: list[BulkRowResult | None] = [None] * len(rows)
    valid: list[tuple[int, OpenCaseRequest]] = []
    for i, raw in enumerate(rows):
        if isinstance(raw, dict) and "__csv_error__" in raw:
            results[i] = BulkRowResult(index=i, status="invalid",
                                       errors=[{"loc": ["row"], "msg": raw["__csv_error__"], "type": "csv"}])
            continue
        try:
            req = _ADAPTER.validate_python(raw)
        except ValidationError as exc:
            results[i] = BulkRowResult(index=i, status="invalid", errors=error_list(exc))
            continue
        if not principal.covers_province(req.province):
            results[i] = BulkRowResult(index=i, status="invalid", errors=[{
                "loc": ["province"], "msg": f"province {req.province} is outside your jurisdiction "
                                            f"({principal.province})", "type": "forbidden"}])
            continue
        valid.append((i, req))

    sem = asyncio.Semaphore(BULK_CONCURRENCY)

    async def one(i: int, req: OpenCaseRequest) -> None:
        async with sem:
            # the batch key plus the row position; no batch key: every row is a new case
            key = f"{idem_key}#{i}" if idem_key else None
            try:
                outcome, started = await opening.open_case(runtime, req, principal, idem_key=key,
                                                           request_id=request_id, source=source)
            except IdempotencyConflict as exc:
                results[i] = BulkRowResult(index=i, status="invalid", case_id=exc.case_id, errors=[{
                    "loc": ["Idempotency-Key"], "msg": "this key and row position were used before with a "
                                                      "different row", "type": "idempotency_conflict"}])
                return
            except Exception as exc:  # one bad row must not sink the others
                results[i] = BulkRowResult(index=i, status="failed", errors=[{
                    "loc": ["row"], "msg": f"could not be stored ({type(exc).__name__}); retry this row",
                    "type": "internal"}])
                return
            dups = [flag_view(principal, d) for d in outcome.duplicates]
            state = "replayed" if not outcome.created else ("duplicate_flagged" if dups else "opened")
            results[i] = BulkRowResult(index=i, status=state, case_id=outcome.case["case_id"], duplicates=dups,
                                       workflow_started=started)

    # within-batch duplicates are still flagged: openings with the same keys serialise in the database
    await asyncio.gather(*(one(i, req) for i, req in valid))
    final = [r for r in results if r is not None]
    count = {s: sum(1 for r in final if r.status == s)
             for s in ("opened", "duplicate_flagged", "replayed", "invalid", "failed")}
    return BulkResponse(received=len(rows), results=final, **count)
