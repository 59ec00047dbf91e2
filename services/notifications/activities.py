"""Activities on the notifications task queue (`nrm-notifications`): plan a notification (recipients from
the agency directory and the case index, preferences, inbox rows, digest items), send one delivery, make
a digest, record a dead letter. The workflows that call them are in delivery_workflow.py and run on the
same queue, in the same process (services/notifications/__main__.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from services.notifications import repository as repo
from services.notifications.channels import (
    EmailChannel,
    Outgoing,
    PermanentFailure,
    TemporaryFailure,
    sms_provider,
)
from services.notifications.delivery_workflow import DigestWorkflow
from services.notifications.directory import Contact, Directory, resolve
from services.notifications.models import DeliveryRef, DigestInput, FlushResult, Plan, RetryConfig
from services.notifications.settings import TASK_QUEUE, NotificationSettings, settings_of
from services.notifications.templates import VN_TZ, Item, render
from shared import case_index
from shared.contract import Notification
from shared.runtime import Runtime

__all__ = ["TASK_QUEUE", "NotificationActivities", "build_activities"]
log = structlog.get_logger("notifications")
URGENT_KINDS = ("escalation", "handoff_escalation")


def _id(prefix: str, *parts: str) -> str:
    return prefix + hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:32]


def quiet_until(pref: Any, now: datetime, level: int, kind: str | None) -> datetime | None:
    """The end of the contact's quiet hours when `now` falls in them; level-3 escalations never wait."""
    if (
        pref is None
        or pref["quiet_start"] is None
        or (level >= 3 and (kind is None or kind in URGENT_KINDS))
    ):
        return None
    start, end = pref["quiet_start"], pref["quiet_end"]
    local = now.astimezone(VN_TZ)
    t = local.time().replace(tzinfo=None)
    inside = (start <= t < end) if start < end else (t >= start or t < end)
    if not inside:
        return None
    day = local.date() if t < end else local.date() + timedelta(days=1)
    return datetime.combine(day, time(end.hour, end.minute), tzinfo=VN_TZ)


class NotificationActivities:
    def __init__(
        self,
        runtime: Runtime,
        settings: NotificationSettings | None = None,
        directory: Directory | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or settings_of(runtime)
        self.directory = directory or Directory.load(self.settings.directory_file)
        self.email = EmailChannel(self.settings)
        self.sms = sms_provider(self.settings)

    @property
    def retry(self) -> RetryConfig:
        s = self.settings
        return RetryConfig(
            max_attempts=s.notify_max_attempts,
            initial_seconds=s.notify_retry_initial_seconds,
            max_seconds=s.notify_retry_max_seconds,
        )

    def _channel_for(self, c: Contact, pref: Any) -> tuple[str, str] | None:
        """(channel, address) by preference, falling back to what the contact and configuration allow."""
        wanted = pref["channel"] if pref is not None else ("email" if c.email else "sms")
        if wanted == "inapp":
            return None
        order = ["sms", "email"] if wanted == "sms" else ["email", "sms"]
        for ch in order:
            if ch == "email" and c.email:
                return "email", c.email
            if ch == "sms" and c.phone and self.sms is not None:
                return "sms", c.phone
        return None

    @activity.defn(name="plan_notification")
    async def plan_notification(self, n: Notification, now: datetime) -> Plan:
        pool = self.runtime.pool
        row = await case_index.get(pool, n.case_id)
        if row is None:
            log.warning("notification_without_case_index", notification_id=n.notification_id)
        contacts = resolve(
            self.directory,
            n.recipients,
            province=row["province"] if row else None,
            owner_agency=row["owner_agency"] if row else None,
            assignee=row["assignee"] if row else None,
        )
        prefs = await repo.preferences(pool, [c.id for c in contacts])
        note = {
            "notification_id": n.notification_id,
            "case_id": n.case_id,
            "kind": n.kind,
            "level": n.level,
            "stage": n.stage.value,
            "due_at": n.due_at,
        }
        item = Item(
            case_id=n.case_id, kind=n.kind, level=n.level, stage=n.stage.value, due_at=n.due_at
        )
        digest_window = self.settings.notify_digest_minutes * 60
        refs: list[DeliveryRef] = []
        digests: list[tuple[str, str]] = []
        async with pool.acquire() as conn, conn.transaction():
            for c in contacts:
                await repo.insert_inbox(
                    conn,
                    {
                        **note,
                        "item_id": _id("i-", n.notification_id, c.id),
                        "recipient_id": c.id,
                        "recipient_group": c.group,
                        "province": c.province,
                        "created_at": n.created_at,
                    },
                )
                pref = prefs.get(c.id)
                route = self._channel_for(c, pref)
                if route is None:
                    continue
                channel, address = route
                language = (pref["language"] if pref is not None else None) or c.language
                if not c.is_person and digest_window > 0:  # group contacts get digests
                    await repo.add_digest_item(
                        conn,
                        {
                            "recipient_id": c.id,
                            "channel": channel,
                            "recipient_group": c.group,
                            "province": c.province,
                            "address": address,
                            "language": language,
                        },
                        note,
                    )
                    digests.append((c.id, channel))
                    continue
                msg = render([item], language, self.settings.console_url)
                delivery_id = _id("d-", n.notification_id, c.id, channel)
                not_before = quiet_until(pref, now, n.level, n.kind)
                await repo.insert_delivery(
                    conn,
                    {
                        "delivery_id": delivery_id,
                        "notification_ids": [n.notification_id],
                        "case_ids": [n.case_id],
                        "digest": False,
                        "recipient_id": c.id,
                        "recipient_group": c.group,
                        "province": c.province,
                        "channel": channel,
                        "address": address,
                        "language": language,
                        "max_level": n.level,
                        "subject": msg.subject,
                        "body": msg.body,
                        "short_text": msg.sms,
                        "not_before": not_before,
                    },
                )
                refs.append(DeliveryRef(delivery_id=delivery_id, not_before=not_before))
        for recipient_id, channel in digests:
            await self.runtime.temporal.start_workflow(
                DigestWorkflow.run,
                DigestInput(
                    recipient_id=recipient_id, channel=channel, window_seconds=digest_window
                ),
                id=f"digest:{recipient_id}:{channel}",
                task_queue=activity.info().task_queue,
                start_signal="added",
            )
        log.info(
            "notification_planned",
            notification_id=n.notification_id,
            deliveries=len(refs),
            digested=len(digests),
            contacts=len(contacts),
        )
        return Plan(deliveries=refs, retry=self.retry, digested=len(digests), inbox=len(contacts))

    @activity.defn(name="flush_digest")
    async def flush_digest(
        self, recipient_id: str, channel: str, flush_key: str, now: datetime
    ) -> FlushResult:
        """One digest delivery of every item waiting for this contact (idempotent per flush_key)."""
        pool = self.runtime.pool
        delivery_id = _id("g-", recipient_id, channel, flush_key)
        existing = await repo.get_delivery(pool, delivery_id)
        if existing is not None:
            pending = existing["status"] == "pending"
            return FlushResult(
                delivery=DeliveryRef(delivery_id=delivery_id, not_before=existing["not_before"])
                if pending
                else None,
                retry=self.retry,
            )
        async with pool.acquire() as conn, conn.transaction():
            items = await repo.take_digest_items(conn, recipient_id, channel, delivery_id)
            if not items:
                return FlushResult(delivery=None, retry=self.retry)
            first = items[0]
            pref = (await repo.preferences(conn, [recipient_id])).get(recipient_id)
            max_level = max(i["level"] for i in items)
            urgent = any(i["level"] >= 3 and i["kind"] in URGENT_KINDS for i in items)
            not_before = None if urgent else quiet_until(pref, now, 0, None)
            msg = render(
                [
                    Item(
                        case_id=i["case_id"],
                        kind=i["kind"],
                        level=i["level"],
                        stage=i["stage"],
                        due_at=i["due_at"],
                    )
                    for i in items
                ],
                first["language"],
                self.settings.console_url,
            )
            await repo.insert_delivery(
                conn,
                {
                    "delivery_id": delivery_id,
                    "notification_ids": sorted(i["notification_id"] for i in items),
                    "case_ids": sorted({i["case_id"] for i in items}),
                    "digest": len(items) > 1,
                    "recipient_id": recipient_id,
                    "recipient_group": first["recipient_group"],
                    "province": first["province"],
                    "channel": channel,
                    "address": first["address"],
                    "language": first["language"],
                    "max_level": max_level,
                    "subject": msg.subject,
                    "body": msg.body,
                    "short_text": msg.sms,
                    "not_before": not_before,
                },
            )
        log.info("digest_made", delivery_id=delivery_id, items=len(items))
        return FlushResult(
            delivery=DeliveryRef(delivery_id=delivery_id, not_before=not_before), retry=self.retry
        )

    @activity.defn(name="send_delivery")
    async def send_delivery(self, delivery_id: str) -> str:
        pool = self.runtime.pool
        row = await repo.get_delivery(pool, delivery_id)
        if row is None:
            raise ApplicationError("unknown delivery", type="permanent", non_retryable=True)
        if row["status"] == "sent":  # a retry after the send was recorded: never twice
            return str(row["provider_ref"])
        attempt = activity.info().attempt
        out = Outgoing(
            delivery_id=delivery_id,
            address=row["address"],
            subject=row["subject"],
            body=row["body"],
            sms=row["short_text"],
            language=row["language"],
        )
        try:
            if row["channel"] == "email":
                ref = await self.email.send(out)
            elif self.sms is not None:
                ref = await self.sms.send(out)
            else:
                raise PermanentFailure("no SMS provider configured (NRM_SMS_PROVIDER)")
        except TemporaryFailure as exc:
            await repo.mark_failed(pool, delivery_id, attempt, str(exc))
            log.warning(
                "delivery_failed", delivery_id=delivery_id, attempt=attempt, permanent=False
            )
            raise ApplicationError(str(exc)[: repo.ERROR_MAX], type="temporary") from None
        except PermanentFailure as exc:
            await repo.mark_failed(pool, delivery_id, attempt, str(exc))
            log.warning("delivery_failed", delivery_id=delivery_id, attempt=attempt, permanent=True)
            raise ApplicationError(
                str(exc)[: repo.ERROR_MAX], type="permanent", non_retryable=True
            ) from None
        await repo.mark_sent(pool, delivery_id, attempt, ref)
        log.info("delivery_sent", delivery_id=delivery_id, attempt=attempt, channel=row["channel"])
        return ref

    @activity.defn(name="dead_letter")
    async def dead_letter(self, delivery_id: str, why: str) -> bool:
        dead = await repo.mark_dead(self.runtime.pool, delivery_id, why)
        log.error("delivery_dead_letter", delivery_id=delivery_id)
        return dead


def build_activities(
    runtime: Runtime,
    settings: NotificationSettings | None = None,
    directory: Directory | None = None,
) -> list[Callable[..., Any]]:
    acts = NotificationActivities(runtime, settings, directory)
    return [acts.plan_notification, acts.flush_digest, acts.send_delivery, acts.dead_letter]
