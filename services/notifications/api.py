"""Notifications API: the caller's in-app inbox (the console's bell), the caller's delivery preferences,
and for supervisors the dead letters (messages that failed after the last retry) with their delivery log
and a resend."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
from fastapi import APIRouter, HTTPException, Request, status

from services.notifications import repository as repo
from services.notifications.delivery_workflow import DeliveryWorkflow
from services.notifications.directory import GROUP_ROLES
from services.notifications.models import (
    DeadLetter,
    DeadLetterPage,
    InboxItem,
    InboxPage,
    LogEntry,
    Preferences,
    ResendInput,
    Resent,
    RetryConfig,
)
from services.notifications.settings import TASK_QUEUE, NotificationSettings, settings_of
from services.notifications.templates import STAGES, case_link
from shared.api import runtime_of
from shared.api_models import Limit, Offset
from shared.auth import CurrentPrincipal, Principal
from shared.domain import AgencyRole, Role

DESCRIPTION = """Notifications of NRM: e-mail, SMS and the console's inbox for deadline reminders,
escalations, handoff requests and follow-ups. Messages carry case ids, stages, deadlines and links only,
never personal data of a victim.

- `GET /inbox`: the caller's notifications (unread first use: `unread=true`), for the console's bell.
- `PUT /preferences/me`: channel (email, sms, inapp), language, quiet hours (level-3 escalations ignore them).
- `GET /dead-letters`, `POST /dead-letters/{delivery_id}/resend`: supervisors see what could not be delivered
  after the last retry, with the delivery log, and send it again."""

router = APIRouter()


def _settings(request: Request) -> NotificationSettings:
    return settings_of(runtime_of(request))


def groups_of(p: Principal) -> list[str]:
    """Directory groups the caller stands for: its agency's desk (caseworkers), supervisors, the steering
    committee (Ban Chỉ đạo 138) of its province."""
    provinces = [p.province]
    out: list[str] = []
    for prov in provinces:
        if p.agency == AgencyRole.steering_committee:
            out.append(f"steering_committee:{prov}")
        if p.has(Role.caseworker) or p.has(Role.supervisor):
            out.append(f"{GROUP_ROLES[0]}:{p.agency.value}:{prov}")
        if p.has(Role.supervisor):
            out += [f"supervisor:{p.agency.value}:{prov}", f"agency_head:{p.agency.value}:{prov}"]
    return out


@router.get(
    "/inbox",
    response_model=InboxPage,
    summary="The caller's notifications (the console's bell)",
    description="Items addressed to the caller's user id or to a group the caller stands for (its "
    "agency's desk, its supervisors, its province's steering committee). A group's item is "
    "read for everyone in the group once one of them reads it.",
)
async def inbox(
    request: Request,
    principal: CurrentPrincipal,
    unread: bool = True,
    limit: Limit = 50,
    offset: Offset = 0,
) -> InboxPage:
    runtime = runtime_of(request)
    rows, unread_count = await repo.inbox(
        runtime.pool, principal.user_id, groups_of(principal), unread, limit, offset
    )
    console = _settings(request).console_url
    return InboxPage(
        items=[
            InboxItem(
                item_id=r["item_id"],
                case_id=r["case_id"],
                kind=r["kind"],
                level=r["level"],
                stage=r["stage"],
                stage_label=STAGES["vi"].get(r["stage"], r["stage"]),
                due_at=r["due_at"],
                created_at=r["created_at"],
                read=r["read_at"] is not None,
                link=case_link(console, r["case_id"]),
            )
            for r in rows
        ],
        unread=unread_count,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/inbox/{item_id}/read",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Mark an inbox item read",
)
async def mark_read(request: Request, principal: CurrentPrincipal, item_id: str) -> None:
    if not await repo.mark_read(
        runtime_of(request).pool,
        item_id,
        principal.user_id,
        groups_of(principal),
        datetime.now(UTC),
    ):
        raise HTTPException(404, detail="item_id: no such item in your inbox")


@router.get(
    "/preferences/me", response_model=Preferences, summary="The caller's delivery preferences"
)
async def get_preferences(request: Request, principal: CurrentPrincipal) -> Preferences:
    row = (await repo.preferences(runtime_of(request).pool, [principal.user_id])).get(
        principal.user_id
    )
    if row is None:
        return Preferences(channel="email")
    return Preferences(
        channel=row["channel"],
        language=row["language"],
        quiet_start=row["quiet_start"],
        quiet_end=row["quiet_end"],
    )


@router.put(
    "/preferences/me",
    response_model=Preferences,
    summary="Set the caller's delivery preferences",
    description="Applies to notifications addressed to the caller's user id (the directory's `users`).",
)
async def put_preferences(
    request: Request, principal: CurrentPrincipal, body: Preferences
) -> Preferences:
    await repo.set_preferences(
        runtime_of(request).pool,
        principal.user_id,
        body.channel,
        body.language,
        body.quiet_start,
        body.quiet_end,
    )
    return body


def _supervisor_province(principal: Principal) -> str | None:
    if not principal.has(Role.supervisor):
        raise HTTPException(403, detail="role: dead letters are for supervisors")
    return None if principal.national else principal.province


async def _dead_letter(pool: asyncpg.Pool, r: asyncpg.Record) -> DeadLetter:
    log = await repo.delivery_log(pool, r["delivery_id"])
    return DeadLetter(
        delivery_id=r["delivery_id"],
        case_ids=list(r["case_ids"]),
        digest=r["digest"],
        recipient_group=r["recipient_group"],
        province=r["province"],
        channel=r["channel"],
        max_level=r["max_level"],
        attempts=r["attempts"],
        resent=r["resent"],
        last_error=r["last_error"],
        dead_at=r["dead_at"],
        log=[
            LogEntry(at=e["at"], outcome=e["outcome"], attempt=e["attempt"], detail=e["detail"])
            for e in log
        ],
    )


@router.get(
    "/dead-letters",
    response_model=DeadLetterPage,
    summary="Messages not delivered after the last retry",
    description="Supervisors: the dead letters of their province (national supervisors: all), newest "
    "first, each with its delivery log (every attempt and why it failed).",
)
async def dead_letters(
    request: Request,
    principal: CurrentPrincipal,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DeadLetterPage:
    province = _supervisor_province(principal)
    pool = runtime_of(request).pool
    rows = await repo.dead_letters(pool, province, limit, offset)
    return DeadLetterPage(
        items=[await _dead_letter(pool, r) for r in rows], limit=limit, offset=offset
    )


@router.post(
    "/dead-letters/{delivery_id}/resend",
    response_model=Resent,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Send a dead letter again",
    description="Starts a new delivery (with the same retries) of the "
    "same message; the answer names the delivery workflow. 404 when it is not a dead letter you see.",
)
async def resend(request: Request, principal: CurrentPrincipal, delivery_id: str) -> Resent:
    province = _supervisor_province(principal)
    runtime = runtime_of(request)
    row = await repo.get_delivery(runtime.pool, delivery_id)
    if (
        row is None
        or row["status"] != "dead"
        or (province is not None and row["province"] != province)
    ):
        raise HTTPException(404, detail="delivery_id: no such dead letter in your province")
    n = await repo.reopen_dead(runtime.pool, delivery_id, principal.user_id)
    if n is None:
        raise HTTPException(409, detail="delivery_id: already being resent")
    s = _settings(request)
    retry = RetryConfig(
        max_attempts=s.notify_max_attempts,
        initial_seconds=s.notify_retry_initial_seconds,
        max_seconds=s.notify_retry_max_seconds,
    )
    workflow_id = f"resend:{delivery_id}:{n}"
    await runtime.temporal.start_workflow(
        DeliveryWorkflow.run,
        ResendInput(delivery_id=delivery_id, retry=retry),
        id=workflow_id,
        task_queue=str(runtime.extras.get("notifications_task_queue", TASK_QUEUE)),
    )
    return Resent(delivery_id=delivery_id, workflow_id=workflow_id, resent=n)
