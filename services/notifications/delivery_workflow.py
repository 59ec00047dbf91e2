"""Delivery workflows (task queue `nrm-notifications`).

- NotificationWorkflow (id `notify:<notification id>`, started by oversight's audit activity): plans the
  notification (recipients, preferences, inbox rows, digest items) and delivers each immediate message.
- DigestWorkflow (id `digest:<contact id>:<channel>`, signal-with-start `added`): waits the digest
  window, then sends one message with every item that arrived, and again while more keep arriving.
- DeliveryWorkflow (id `resend:<delivery id>:<n>`): a supervisor's resend of a dead letter.

Each send is one activity with retries and exponential backoff; after the last attempt the delivery is a
dead letter. Ids hold case ids and codes only."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from services.notifications.models import (
        DeliveryRef,
        DigestInput,
        FlushResult,
        Plan,
        ResendInput,
        RetryConfig,
    )
    from shared.contract import Notification

SHORT = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=60))


async def deliver(ref: DeliveryRef, retry: RetryConfig) -> bool:
    """Send one delivery with retries; a dead letter after the last. True when sent."""
    if ref.not_before is not None and ref.not_before > workflow.now():  # quiet hours
        await workflow.sleep(ref.not_before - workflow.now())
    try:
        await workflow.execute_activity(
            "send_delivery",
            ref.delivery_id,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=retry.initial_seconds),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(seconds=retry.max_seconds),
                maximum_attempts=retry.max_attempts,
                non_retryable_error_types=["permanent"],
            ),
        )
        return True
    except ActivityError as exc:
        cause = exc.cause
        why = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
        await workflow.execute_activity(
            "dead_letter",
            args=[ref.delivery_id, why],
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=SHORT,
        )
        return False


@workflow.defn(name="NotificationWorkflow")
class NotificationWorkflow:
    @workflow.run
    async def run(self, n: Notification) -> int:
        plan: Plan = await workflow.execute_activity(
            "plan_notification",
            args=[n, workflow.now()],
            result_type=Plan,
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=SHORT,
        )
        sent = 0
        for ref in (
            plan.deliveries
        ):  # a handful per notification: one after the other keeps the history short
            sent += await deliver(ref, plan.retry)
        return sent


@workflow.defn(name="DigestWorkflow")
class DigestWorkflow:
    def __init__(self) -> None:
        self.added = 0

    @workflow.signal(name="added")
    def added_item(self) -> None:
        self.added += 1

    @workflow.run
    async def run(self, inp: DigestInput) -> int:
        sent = 0
        rounds = 0
        while True:
            await workflow.sleep(timedelta(seconds=inp.window_seconds))
            rounds += 1
            self.added = (
                0  # items signalled from here on may miss this flush: they make another round
            )
            flush: FlushResult = await workflow.execute_activity(
                "flush_digest",
                args=[
                    inp.recipient_id,
                    inp.channel,
                    f"{workflow.info().run_id}:{rounds}",
                    workflow.now(),
                ],
                result_type=FlushResult,
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=SHORT,
            )
            if flush.delivery is not None:
                sent += await deliver(flush.delivery, flush.retry)
            if (
                self.added == 0 or rounds >= 50
            ):  # nothing came in meanwhile (or continue in a new run)
                return sent


@workflow.defn(name="DeliveryWorkflow")
class DeliveryWorkflow:
    @workflow.run
    async def run(self, inp: ResendInput) -> bool:
        return await deliver(DeliveryRef(delivery_id=inp.delivery_id), inp.retry)
