"""How oversight hands a queued notification over (a few lines in its audit activity call this): after the
outbox row is committed, a NotificationWorkflow per notification is started on this service's task queue,
id `notify:<notification id>` (case id, sequence, kind, level: no personal data). A repeated start (the
audit activity retried) finds the workflow already there and is a no-op, so every notification is handed
over at least once and delivered once. The outbox row stays oversight's record."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client
from temporalio.common import WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from shared.config import get_settings
from shared.contract import Notification
from shared.runtime import RuntimeExtras

# the notifications service's task queue (services/notifications listens on it; oversight starts workflows there)
TASK_QUEUE = "nrm-notifications"


def handover_queue(extras: RuntimeExtras) -> str | None:
    """The task queue to hand over to: runtime.extras["notifications_task_queue"] (tests), else the service's
    queue unless NRM_NOTIFICATIONS_HANDOVER is off."""
    queue = extras.get("notifications_task_queue")
    if queue:
        return str(queue)
    return TASK_QUEUE if _handover_on() else None


def _handover_on() -> bool:
    return get_settings().notifications_handover


async def hand_over(client: Client, notifications: Sequence[Notification], task_queue: str) -> int:
    started = 0
    for n in notifications:
        try:
            await client.start_workflow(
                "NotificationWorkflow",
                n,
                id=f"notify:{n.notification_id}",
                task_queue=task_queue,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            started += 1
        except WorkflowAlreadyStartedError:
            pass
    return started
