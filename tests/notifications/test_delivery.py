"""Durable delivery: SMS through the Twilio adapter against a local server speaking Twilio's Messages API
(retried until it answers, delivered once; a dead letter after the last attempt, seen by supervisors and
resent), and a 1,000-case escalation burst that gives each supervisor one digest."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from services.notifications.delivery_workflow import NotificationWorkflow
from services.notifications.repository import set_preferences
from services.notifications.settings import NotificationSettings
from shared.config import Settings
from shared.contract import Notification
from shared.domain import AgencyRole, Role, Stage
from shared.notification_handover import hand_over
from shared.runtime import Runtime
from tests.helpers.mail_sms_servers import SmtpServer, TwilioServer
from tests.helpers.notifications_stack import notification_settings, notification_workers
from tests.helpers.tokens import bearer

DESK = "desk:police:01"


def note(
    case_id: str, recipients: list[str], level: int = 1, kind: str = "escalation"
) -> Notification:
    return Notification(
        notification_id=f"{case_id}:n7:{kind}:{level}",
        case_id=case_id,
        kind=kind,
        level=level,
        recipients=recipients,
        stage=Stage.verify,
        due_at=datetime(2026, 12, 1, 2, 30, tzinfo=UTC),
        created_at=datetime.now(UTC),
    )


def auth(
    ring: Any, *roles: Role, province: str = "01", agency: AgencyRole = AgencyRole.police
) -> dict[str, str]:
    return bearer(
        ring, agency, *roles, user=f"{agency.value}-{province}-{roles[0].value}", province=province
    )


async def api_client(
    ts_env: Any, db_pool: Any, ring: Any, settings: NotificationSettings, queue: str
) -> httpx.AsyncClient:
    """The notifications API in-process (its worker is the harness's)."""
    from services.notifications import api
    from shared.api import create_app

    async def factory() -> Runtime:
        return Runtime(
            Settings(),
            ring,
            db_pool,
            ts_env.client,
            extras={"notification_settings": settings, "notifications_task_queue": queue},
        )

    app = create_app(
        "notifications", [api.router], description=api.DESCRIPTION, runtime_factory=factory
    )
    app.state.runtime = await factory()
    from shared.auth import TokenVerifier

    app.state.token_verifier = TokenVerifier(ring, "nrm-dev", "nrm", None)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://notifications"
    )


async def test_sms_fails_twice_then_delivers_once(
    ts_env: Any, db_pool: Any, ring: Any, task_queue: str
) -> None:
    with TwilioServer() as sms:
        sms.fail_next = 2
        settings = notification_settings(sms=sms, notify_digest_minutes=0, notify_max_attempts=5)
        await set_preferences(db_pool, DESK, "sms", "en", None, None)
        async with notification_workers(ts_env.client, db_pool, ring, task_queue, settings) as h:
            cid = f"case-{uuid.uuid4().hex[:16]}"
            sent = await ts_env.client.execute_workflow(
                NotificationWorkflow.run,
                note(cid, ["police@01"]),
                id=f"notify:{cid}",
                task_queue=f"{h.task_queue}-notifications",
            )
    assert sent == 1
    assert sms.requests == 3 and len(sms.messages) == 1
    msg = sms.messages[0]
    assert msg["To"] == "+84901000000" and msg["From"] == "+15005550006"
    assert (
        cid in msg["Body"] and "Verification" in msg["Body"] and "01/12/2026 09:30" in msg["Body"]
    )
    log = await db_pool.fetch("SELECT outcome, attempt FROM notifications.delivery_log ORDER BY id")
    assert [(r["outcome"], r["attempt"]) for r in log] == [
        ("failed", 1),
        ("failed", 2),
        ("sent", 3),
    ]
    row = await db_pool.fetchrow("SELECT status, provider_ref FROM notifications.deliveries")
    assert row["status"] == "sent" and row["provider_ref"] == f"twilio:{msg['sid']}"


async def test_always_failing_provider_ends_in_a_dead_letter_that_a_supervisor_resends(
    ts_env: Any, db_pool: Any, ring: Any, task_queue: str
) -> None:
    with TwilioServer() as sms:
        sms.always_fail = True
        settings = notification_settings(sms=sms, notify_digest_minutes=0, notify_max_attempts=3)
        await set_preferences(db_pool, DESK, "sms", None, None, None)
        async with notification_workers(ts_env.client, db_pool, ring, task_queue, settings) as h:
            queue = f"{h.task_queue}-notifications"
            cid = f"case-{uuid.uuid4().hex[:16]}"
            sent = await ts_env.client.execute_workflow(
                NotificationWorkflow.run,
                note(cid, ["police@01"]),
                id=f"notify:{cid}",
                task_queue=queue,
            )
            assert sent == 0 and sms.requests == 3 and sms.messages == []
            http = await api_client(ts_env, db_pool, ring, settings, queue)
            async with http:
                r = await http.get("/dead-letters", headers=auth(ring, Role.supervisor))
                assert r.status_code == 200, r.text
                [dead] = r.json()["items"]
                assert (
                    dead["case_ids"] == [cid] and dead["channel"] == "sms" and dead["attempts"] == 3
                )
                assert [e["outcome"] for e in dead["log"]] == ["failed", "failed", "failed", "dead"]
                assert "Twilio 503" in dead["last_error"]
                # others do not see it: a caseworker, a supervisor of another province
                assert (
                    await http.get("/dead-letters", headers=auth(ring, Role.caseworker))
                ).status_code == 403
                other = await http.get(
                    "/dead-letters", headers=auth(ring, Role.supervisor, province="20")
                )
                assert other.json()["items"] == []
                assert (
                    await http.post(
                        f"/dead-letters/{dead['delivery_id']}/resend",
                        headers=auth(ring, Role.supervisor, province="20"),
                    )
                ).status_code == 404
                sms.always_fail = False
                r = await http.post(
                    f"/dead-letters/{dead['delivery_id']}/resend",
                    headers=auth(ring, Role.supervisor),
                )
                assert r.status_code == 202, r.text
                assert (
                    await ts_env.client.get_workflow_handle(r.json()["workflow_id"]).result()
                    is True
                )
                assert len(sms.messages) == 1 and cid in sms.messages[0]["Body"]
                r = await http.get("/dead-letters", headers=auth(ring, Role.supervisor))
                assert r.json()["items"] == []
                # the in-app inbox of the police desk in 01 holds the escalation
                r = await http.get("/inbox", headers=auth(ring, Role.caseworker))
                assert r.status_code == 200 and r.json()["unread"] == 1
                item = r.json()["items"][0]
                assert item["case_id"] == cid and item["stage_label"] == "Xác minh"
                assert (
                    await http.post(
                        f"/inbox/{item['item_id']}/read", headers=auth(ring, Role.caseworker)
                    )
                ).status_code == 204
                assert (await http.get("/inbox", headers=auth(ring, Role.caseworker))).json()[
                    "unread"
                ] == 0
    log = await db_pool.fetch("SELECT outcome FROM notifications.delivery_log ORDER BY id")
    assert [r["outcome"] for r in log] == ["failed", "failed", "failed", "dead", "resend", "sent"]


async def test_burst_of_1000_escalations_gives_one_digest_per_supervisor(
    ts_env: Any, db_pool: Any, ring: Any, task_queue: str, tmp_path: Path
) -> None:
    with SmtpServer(tmp_path) as smtp:
        settings = notification_settings(smtp)
        async with notification_workers(ts_env.client, db_pool, ring, task_queue, settings) as h:
            queue = f"{h.task_queue}-notifications"
            cases = {
                "01": [f"case-{uuid.uuid4().hex[:16]}" for _ in range(500)],
                "20": [f"case-{uuid.uuid4().hex[:16]}" for _ in range(500)],
            }
            agency = {"01": "police", "20": "social_protection"}
            notes = [
                note(c, [f"{agency[p]}@{p}", f"supervisor@{p}"])
                for p, ids in cases.items()
                for c in ids
            ]
            for i in range(0, len(notes), 50):
                await asyncio.gather(
                    *(
                        hand_over(ts_env.client, notes[j : j + 10], queue)
                        for j in range(i, i + 50, 10)
                    )
                )
            # every notification planned (polled: waiting on a result would let the test server skip time)
            for _ in range(6000):
                if (
                    await db_pool.fetchval("SELECT count(*) FROM notifications.digest_items")
                    == 2000
                ):
                    break
                await asyncio.sleep(0.05)
            assert await db_pool.fetchval("SELECT count(*) FROM notifications.inbox") == 2000
            await ts_env.sleep(timedelta(minutes=30))  # past the digest window
            sent = [
                await ts_env.client.get_workflow_handle(
                    f"digest:{role}:{agency[p]}:{p}:email"
                ).result()
                for p in cases
                for role in ("supervisor", "desk")
            ]
            assert sent == [1, 1, 1, 1]
        mails = smtp.received
    by_rcpt = {m.rcpt[0]: m for m in mails}
    assert len(mails) == 4 and len(by_rcpt) == 4
    for p, ids in cases.items():
        m = by_rcpt[f"supervisor.{agency[p]}.{p}@nrm.example"]
        assert str(m.msg["Subject"]) == "[NRM] 500 vụ việc cần chú ý"
        body = str(m.msg.get_content())
        assert all(c in body for c in ids)
