"""Stuck cases: which open cases need a supervisor and why. The database gives the candidates (the case
index, filtered and sorted most late first: repository.stuck); each gets its reasons (overdue, due soon,
handoff waiting, idle, escalated) and, when asked, what Temporal says is technically wrong with it
(diagnostics.py, for the page's cases only)."""

from __future__ import annotations

from typing import Any

from services.oversight import repository as repo
from services.oversight.diagnostics import technical_problems_of
from services.oversight.models import Category, StuckCase, StuckPage, StuckReason, TechnicalProblem
from shared.runtime import Runtime


def categories(r: Any) -> list[Category]:
    return [
        Category.child if r["is_child"] else Category.adult,
        Category.abroad if r["is_abroad"] else Category.domestic,
    ]


def reasons(r: Any, f: repo.StuckFilter) -> list[StuckReason]:
    """The database-side reasons why the case in row `r` is stuck, as of `f.now`."""
    now, out = f.now, []
    if r["deadline_at"] is not None and r["deadline_at"] < now:
        out.append(StuckReason.overdue)
    if r["deadline_at"] is not None and now <= r["deadline_at"] < now + f.due_within:
        out.append(StuckReason.due_soon)
    if r["open_handoffs"] > 0:
        out.append(StuckReason.handoff_waiting)
    if r["last_event_at"] < now - f.idle_for:
        out.append(StuckReason.idle)
    if r["escalation_level"] > 0 and (f.level is None or r["escalation_level"] == f.level):
        out.append(StuckReason.escalated)
    return out


def stuck_case(r: Any, f: repo.StuckFilter, technical: list[TechnicalProblem]) -> StuckCase:
    due = r["due"]
    return StuckCase(
        case_id=r["case_id"],
        province=r["province"],
        stage=r["stage"],
        owner_agency=r["owner_agency"],
        assignee=r["assignee"],
        categories=categories(r),
        deadline_at=r["deadline_at"],
        late_by_hours=round((f.now - due).total_seconds() / 3600, 2) if due else None,
        escalation_level=r["escalation_level"],
        open_handoffs=r["open_handoffs"],
        oldest_handoff_accept_by=r["oldest_handoff_accept_by"],
        last_event_at=r["last_event_at"],
        idle_days=round((f.now - r["last_event_at"]).total_seconds() / 86400, 2),
        reasons=reasons(r, f) + ([StuckReason.technical] if technical else []),
        technical=technical,
    )


async def stuck_page(runtime: Runtime, f: repo.StuckFilter, *, check_temporal: bool) -> StuckPage:
    """One page of stuck cases. With `technical` among the requested reasons every open case is a
    candidate (repository.stuck), and the page keeps those that have a requested reason, so it can hold
    fewer than `f.limit` items before the last page; `next_offset` follows the candidates."""
    async with runtime.pool.acquire() as conn:
        rows = await repo.stuck(conn, f)
    technical: list[list[TechnicalProblem]] = [[] for _ in rows]
    if check_temporal and rows:
        technical = await technical_problems_of(runtime.temporal, (r["case_id"] for r in rows))
    requested = {StuckReason(r) for r in f.reasons}
    items = [stuck_case(r, f, tech) for r, tech in zip(rows, technical, strict=True)]
    if StuckReason.technical in requested:
        items = [c for c in items if set(c.reasons) & requested]
    return StuckPage(
        items=items,
        limit=f.limit,
        offset=f.offset,
        next_offset=f.offset + f.limit if len(rows) == f.limit else None,
        as_of=f.now,
        temporal_checked=check_temporal,
    )
