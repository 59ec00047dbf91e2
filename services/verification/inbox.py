"""The verification inbox: which cases an agency sees in each view, read from the floor's case index.

People's screens read PostgreSQL, operators read Temporal: the index (shared/case_index.py) is written by
this service's own Updates before they return and by the audit activity for every change; visibility
stays for operators (`temporal workflow list`)."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from services.verification.models import InboxItem, InboxView
from shared import case_index
from shared.auth import Principal
from shared.domain import Stage

DECIDING = (Stage.verify, Stage.identify, Stage.rescue, Stage.protect)


def query(
    principal: Principal,
    view: InboxView,
    now: datetime,
    due_within: timedelta,
    stage: Stage | None,
    category: str | None,
    assigned_to_me: bool,
    descending: bool = False,
    limit: int = 50,
    offset: int = 0,
) -> case_index.InboxQuery:
    if stage is not None:
        stages: tuple[str, ...] = (stage.value,)
    else:
        stages = () if view == InboxView.waiting_acceptance else tuple(s.value for s in DECIDING)
    return case_index.InboxQuery(
        view=view.value,
        agency=principal.agency.value,
        province=None if principal.national else principal.province,
        now=now,
        due_within=due_within,
        stages=stages,
        category=category,
        assignee=principal.user_id if assigned_to_me else None,
        descending=descending,
        limit=limit,
        offset=offset,
    )


async def read(pool: asyncpg.Pool, q: case_index.InboxQuery) -> tuple[list[InboxItem], int]:
    rows, total = await case_index.inbox(pool, q)
    items = [
        InboxItem(
            case_id=r["case_id"],
            stage=r["stage"],
            owner_agency=r["owner_agency"],
            jurisdiction=r["province"],
            status=r["status"],
            deadline_at=r["deadline_at"],
            assignee=r["assignee"],
            categories=list(r["categories"]),
            pending_handoff_to=list(r["pending_to"]),
            escalation_level=r["escalation_level"],
        )
        for r in rows
    ]
    return items, total
