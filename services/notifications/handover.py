"""How oversight hands a queued notification over (a few lines in its audit activity call this): after the
outbox row is committed, a NotificationWorkflow per notification is started on this service's task queue,
id `notify:<notification id>` (case id, sequence, kind, level: no personal data). A repeated start (the
audit activity retried) finds the workflow already there and is a no-op, so every notification is handed
over at least once and delivered once. The outbox row stays oversight's record."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from services.notifications.settings import TASK_QUEUE, NotificationSettings
from workflows.models import Notification


def handover_queue(extras: dict[str, object]) -> str | None:
    """The task queue to hand over to: runtime.extras["notifications_task_queue"] (tests), else the service's
    queue unless NRM_NOTIFICATIONS_HANDOVER is off."""
    queue = extras.get("notifications_task_queue")
    if queue:
        return str(queue)
    return TASK_QUEUE if _handover_on() else None


@lru_cache(maxsize=1)
def _handover_on() -> bool:
    return NotificationSettings().notifications_handover


async def hand_over(client: Client, notifications: Sequence[Notification], task_queue: str) -> int:
    started = 0
    for n in notifications:
        try:
            await client.start_workflow("NotificationWorkflow", n, id=f"notify:{n.notification_id}",
                                        task_queue=task_queue,
                                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE)
            started += 1
        except WorkflowAlreadyStartedError:
            pass
    return started
