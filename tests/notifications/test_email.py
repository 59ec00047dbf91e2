"""E-mail delivery end to end on the time-skipping server: a case opened through intake (with canary
personal data) breaches its verification deadline and climbs the escalation ladder; the SMTP server
(STARTTLS + AUTH required) receives exactly one message per recipient per level, in Vietnamese, and no
message holds the victim's name, phone or id number."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from services.notifications.templates import STAGES
from tests.helpers import workflow_paths as paths
from tests.helpers.intake_stack import intake_app, open_body
from tests.helpers.mail_sms_servers import Mail, SmtpServer
from tests.helpers.notifications_stack import notification_settings, notification_workers
from workflows.case_workflow import CaseWorkflow

CANARY = {
    "prs_FirstName": "Canaryxuan",
    "prs_MiddleName": "Thị",
    "prs_SecondName": "Zebrafinch",
    "prs_IdentityNumber": "079399123456",
    "prs_MobilePhone": "0987654321",
}
LEVEL = re.compile(r"(?:cấp|level) (\d)")


async def wait_mail(smtp: SmtpServer, count: int, tries: int = 600) -> list[Mail]:
    for _ in range(tries):
        if len(smtp.received) >= count:
            break
        await asyncio.sleep(0.05)
    return smtp.received


def assert_no_canary(texts: list[str]) -> None:
    for text in texts:
        low = text.lower()
        for value in CANARY.values():
            if value == "Thị":
                continue
            assert value.lower() not in low, "a message holds personal data of the victim"
            assert value[-6:] not in low


async def test_escalation_one_email_per_recipient_per_level(
    ts_env: Any, db_pool: Any, db_url: str, ring: Any, task_queue: str, tmp_path: Path
) -> None:
    with SmtpServer(tmp_path) as smtp:
        settings = notification_settings(smtp)
        async with (
            notification_workers(ts_env.client, db_pool, ring, task_queue, settings) as h,
            intake_app(
                ts_env,
                db_pool,
                db_url,
                ring,
                task_queue,
                workers=False,
                extras={"oversight_task_queue": h.oversight_task_queue},
            ) as intake,
        ):
            r = await intake.open(open_body(person=CANARY))
            assert r.status_code == 201, r.text
            cid = r.json()["case_id"]
            h.adopt(cid)
            handle = ts_env.client.get_workflow_handle(cid)
            s = await paths.classify(
                handle
            )  # verification, by the border guard (a handover), 3 calendar days
            owner = s.owner_agency.value
            await ts_env.sleep(
                timedelta(days=8)
            )  # past level 3 (deadline + 3 days) and every digest window
            s = await paths.wait_state(handle, lambda st: st.escalation_level == 3)
            mails = await wait_mail(smtp, 5)
            await ts_env.sleep(timedelta(hours=2))  # nothing more comes
            s = await handle.query(CaseWorkflow.state)
            assert s.escalation_level == 3
        mails = smtp.received
    base = f"{owner}.01@nrm.example"
    escalations: Counter[tuple[str, int]] = Counter()
    reminders = []
    for m in mails:
        assert m.tls and m.authenticated  # STARTTLS then AUTH, every time
        assert len(m.rcpt) == 1
        subject = str(m.msg["Subject"])
        if "Nhắc việc" in subject:
            reminders.append(m.rcpt[0])
            continue
        level = LEVEL.search(subject)
        assert level is not None, subject
        escalations[(m.rcpt[0], int(level.group(1)))] += 1
    assert reminders == [f"desk.{base}"]
    assert escalations == {
        (f"desk.{base}", 1): 1,
        (f"supervisor.{base}", 1): 1,
        (f"agency_head.{base}", 2): 1,
        ("bcd138.01@nrm.example", 3): 1,
    }
    body = str(mails[-1].msg.get_content())
    assert cid in body and f"https://nrm.test/cases/{cid}" in body
    assert STAGES["vi"]["verify"] in body and re.search(r"\d\d/\d\d/\d{4} \d\d:\d\d", body)
    assert_no_canary([m.text for m in mails])
    rows = await db_pool.fetch(
        "SELECT subject, body, short_text, status FROM notifications.deliveries"
    )
    assert {r["status"] for r in rows} == {"sent"} and len(rows) == 5
    assert_no_canary([f"{r['subject']} {r['body']} {r['short_text']}" for r in rows])
