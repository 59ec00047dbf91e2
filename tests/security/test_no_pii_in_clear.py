"""No personal data in the clear anywhere the system writes: Temporal histories (raw event bytes and their
JSON), search attributes and memo, every table of every schema of PostgreSQL (raw rows: intake, verification,
support, oversight and the common access log), and the logs.

A case is opened with known names, birth date, identity number, phones, e-mail, address and narrative,
then driven through every stage over the four service APIs (classify, rescue plan, perpetrator, verify,
identify with evidence, protection refused in writing, consent, legal-aid referral, support plan, service,
person reads, reads of every service's personal data by caseworkers and by auditors with and without break
glass, closure with its history export), with a second case flagged as a duplicate of it; people's names
are typed into the reasons too, as happens. Everything is searched for those strings: exactly, lowercased
and accent-stripped (as whole words), and the digit runs with or without separators. Then the retention
job erases the case, and the database, the retention run's history and the logs are searched again."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest

from services.oversight.retention import due_for_erasure, start_erasures
from shared.crypto import KeyRing, normalise_text
from shared.domain import Role
from shared.temporal import INTAKE_TASK_QUEUE
from tests.helpers.intake_stack import open_body
from tests.helpers.security_stack import A, bearer, json_logs, service_stack
from tests.helpers.workflow_harness import STARTED

TODAY = date.today().isoformat()
FIRST, MIDDLE, LAST = "Khuê", "Uyển", "Quách"
BIRTHDATE = "2001-07-19"
ID_NUMBER = "079301005566"
MOBILE, HOME_PHONE = "0978 123 456", "024-3765-4321"
EMAIL = "quach.khue@mail.example"
STREET, CITY = "Số 12 ngách 4 ngõ Thổ Quan", "Xóm Đồi Thông"
SUMMARY = "Bị người quen lừa sang Bằng Tường làm ở xưởng may không lương"
VULNERABILITY = "Mồ côi cha từ nhỏ, nợ tiền học"
EVENT_TEXT, EVENT_CITY = "Bị giữ giấy tờ tại xưởng may", "Bằng Tường"
REFERRAL_DETAILS = "Cán bộ đồn biên phòng chuyển hồ sơ sang"
PERPETRATOR, ALIAS, PERP_PHONE = "Lò Văn Thắng", "Thắng Móm", "0966 111 222"
RECRUITMENT = "Zalo: Việc nhẹ lương cao Sao Mai"
EVIDENCE_SOURCE, EVIDENCE_REF, EVIDENCE_TEXT = (
    "Lời khai nạn nhân",
    "BB-77/2026",
    "Ảnh chụp hợp đồng giả mạo",
)
RESCUE_PLACE, RESCUE_NOTES = "Quán karaoke Hoa Hồng Đỏ", "Hai tổ công tác phối hợp"
PLAN_GOALS, PLAN_ACTIONS = "Học nghề may tại trung tâm Sao Mai", "Thăm hỏi hàng tuần tại nhà"
CONSENT_REF, SERVICE_NOTE = "DY-0423/2026", "Đã cấp quần áo và thuốc men"
FOLLOW_UP_NOTE = "Gia đình đón về, đi học lại lớp may"
PROVIDER = "Phòng khám bác sĩ Lương Thị Nhàn"  # provider names were stored in clear before
REFUSAL_REF, REFUSAL_TEXT = "CK-5521/2026", "Không muốn ở nhà tạm lánh Hướng Dương"

TEXTS = [
    FIRST,
    MIDDLE,
    LAST,
    f"{LAST} {MIDDLE} {FIRST}",
    f"{FIRST} {LAST}",
    EMAIL,
    STREET,
    CITY,
    SUMMARY,
    VULNERABILITY,
    FOLLOW_UP_NOTE,
    EVENT_TEXT,
    EVENT_CITY,
    REFERRAL_DETAILS,
    PERPETRATOR,
    ALIAS,
    RECRUITMENT,
    EVIDENCE_SOURCE,
    EVIDENCE_REF,
    EVIDENCE_TEXT,
    RESCUE_PLACE,
    RESCUE_NOTES,
    PLAN_GOALS,
    PLAN_ACTIONS,
    CONSENT_REF,
    SERVICE_NOTE,
    "xưởng may",
    PROVIDER,
    REFUSAL_REF,
    REFUSAL_TEXT,
]
DATES = [BIRTHDATE, "19/07/2001", "19-07-2001", "20010719", "19.07.2001"]
DIGITS = [ID_NUMBER, MOBILE, HOME_PHONE, PERP_PHONE]


def _digit_pattern(value: str) -> re.Pattern[str]:
    digits = re.sub(r"\D", "", value)
    # the run of digits, with or without separators, and with +84 for a leading 0
    body = r"[\s.\-()]?".join(digits[1:])
    return re.compile(rf"(?<!\d)(?:{digits[0]}|\+?84[\s.\-]?){body}(?!\d)")


PATTERNS: list[tuple[str, re.Pattern[str]]] = (
    [(t, re.compile(re.escape(t))) for t in TEXTS + DATES]
    + [
        (f"{t} (folded)", re.compile(rf"(?<![a-z0-9]){re.escape(normalise_text(t))}(?![a-z0-9])"))
        for t in TEXTS
    ]
    + [(d, _digit_pattern(d)) for d in DIGITS]
)


def leaks(where: str, haystack: str | bytes) -> list[str]:
    """Which of the known strings appear in this text (or bytes: decoded leniently, and as hex)."""
    if isinstance(haystack, bytes | bytearray | memoryview):
        raw = bytes(haystack)
        texts = [raw.decode("utf-8", "replace"), raw.decode("utf-16-le", "ignore")]
    else:
        texts = [haystack]
    found = []
    for text in texts:
        folded = normalise_text(text)
        for label, pattern in PATTERNS:
            target = folded if label.endswith("(folded)") else text
            if pattern.search(target):
                found.append(f"{where}: {label}")
    return sorted(set(found))


def person_body() -> dict[str, Any]:
    return open_body(
        channel="walk_in",
        person={
            "prs_FirstName": FIRST,
            "prs_MiddleName": MIDDLE,
            "prs_SecondName": LAST,
            "birth_year": 2001,
            "prs_Birthdate": BIRTHDATE,
            "prs_IdentityNumber": ID_NUMBER,
            "prs_MobilePhone": MOBILE,
            "prs_HomePhone": HOME_PHONE,
            "prs_Email": EMAIL,
            "prs_MailingStreet": STREET,
            "prs_MailingCity": CITY,
            "prs_MailingCountry": "VN",
        },
        victim={
            "vic_TypeOfExploitation": ["ForcedLabour"],
            "vic_DetailsOfVulnerabilities": VULNERABILITY,
            "vic_LocationOfRecruitment": EVENT_CITY,
        },
        events=[
            {
                "hte_Type": "Exploitation",
                "hte_Country": "CN",
                "hte_City": EVENT_CITY,
                "hte_Description": EVENT_TEXT,
            }
        ],
        report={
            "summary": SUMMARY,
            "cas_IncomingReferralDetails": REFERRAL_DETAILS,
            "cas_ReferringOrganisation": "Border post 3",
        },
    )


def test_the_detector_detects() -> None:
    """Positive control: each kind of variant is found when it is there."""
    assert leaks("x", f"hello {normalise_text(LAST)} x") == [f"x: {LAST} (folded)"]
    assert leaks("x", "call +84 978.123.456 now") == ["x: 0978 123 456"]
    assert leaks("x", "id 079301005566") == [f"x: {ID_NUMBER}"]
    assert "x: 19/07/2001" in leaks("x", b"born 19/07/2001")
    assert leaks("x", "kh" + "ue" + "quach") == []  # not as a word: random base64/hex never matches
    assert leaks("x", "transfer receive protect quachy") == []


async def test_no_pii_in_clear(
    ts_env: Any,
    db_pool: Any,
    db_url: str,
    ring: KeyRing,
    task_queue: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    police, sp = bearer(ring, A.police), bearer(ring, A.social_protection)
    with json_logs("security-test") as logs:
        async with service_stack(ts_env, db_pool, db_url, ring, task_queue) as st:
            r = await st["intake"].post("/cases", json=person_body(), headers=police)
            assert r.status_code == 201, r.text
            case_id, person_id = r.json()["case_id"], r.json()["person_ref"]
            # the same person again (another channel, a spelling without accents): flagged as a duplicate
            dup = person_body()
            dup["channel"] = "hotline_111"
            dup["person"]["prs_FirstName"], dup["person"]["prs_SecondName"] = "Khue", "Quach"
            r = await st["intake"].post("/cases", json=dup, headers=police)
            assert r.status_code == 201 and r.json()["duplicates"], r.text
            dup_case = r.json()["case_id"]

            async def ok(r: Any, code: int = 200) -> dict[str, Any]:
                resp = await r
                assert resp.status_code == code, resp.text
                return dict(resp.json())

            i, v, s = st["intake"], st["verification"], st["support"]
            c = f"/cases/{case_id}"
            # people type names into reasons: the audit log must not keep them in clear either
            await ok(
                i.post(
                    f"{c}/classify",
                    headers=police,
                    json={
                        "classification": "trafficking_suspected",
                        "justification": f"{FIRST} {LAST}: signs of forced labour",
                    },
                )
            )
            await ok(
                v.post(
                    f"{c}/rescue-operations",
                    headers=police,
                    json={
                        "planned_for": "2030-01-01T22:00:00+07:00",
                        "location": RESCUE_PLACE,
                        "plan_notes": RESCUE_NOTES,
                    },
                ),
                201,
            )
            await ok(
                v.post(
                    f"{c}/perpetrators",
                    headers=police,
                    json={
                        "roles": ["RecruiterOrIntermediary"],
                        "name": PERPETRATOR,
                        "aliases": [ALIAS],
                        "phones": [PERP_PHONE],
                        "recruitment_channel": RECRUITMENT,
                        "role_details": f"{PERPETRATOR} hứa việc làm",
                    },
                ),
                201,
            )
            await ok(
                v.post(
                    f"{c}/verification",
                    headers=sp,
                    json={"result": "confirmed", "justification": "joint check done"},
                )
            )
            await ok(
                v.post(
                    f"{c}/identification",
                    headers=police,
                    json={
                        "status": "ActualVictimOfTrafficking",
                        "deciding_org": "Police",
                        "justification": "evidence is clear",
                        "evidence": [
                            {
                                "kind": "statement_of_person",
                                "source": EVIDENCE_SOURCE,
                                "date": TODAY,
                                "reference": EVIDENCE_REF,
                                "description": EVIDENCE_TEXT,
                            }
                        ],
                    },
                )
            )
            state = await ok(
                v.post(
                    f"{c}/protection",
                    headers=sp,
                    json={
                        "declined": True,
                        "justification": "refused in writing",
                        "refusal_document": {
                            "signed_on": TODAY,
                            "reference": REFUSAL_REF,
                            "description": REFUSAL_TEXT,
                        },
                    },
                )
            )
            assert state["case"]["stage"] == "reintegrate", state
            await ok(
                s.post(
                    f"{c}/consents",
                    headers=sp,
                    json={
                        "purpose": "support",
                        "granted": True,
                        "document": {
                            "kind": "signed_form",
                            "signed_on": TODAY,
                            "reference": CONSENT_REF,
                        },
                    },
                ),
                201,
            )
            await ok(
                s.post(
                    f"{c}/legal-aid-referral",
                    headers=bearer(ring, A.social_protection, Role.supervisor),
                    json={
                        "reason": f"{FIRST} {LAST} claims unpaid wages",
                        "consent_override_reason": "hearing next week, consent form on its way",
                    },
                ),
                201,
            )
            await ok(
                s.post(
                    f"{c}/support-plan",
                    headers=sp,
                    json={
                        "spl_Objectives": PLAN_GOALS,
                        "spl_ActionPlan": PLAN_ACTIONS,
                        "spl_Type": ["SocialCare"],
                        "spl_PlannedEndDate": "2030-12-31",
                    },
                ),
                201,
            )
            await ok(
                s.post(
                    f"{c}/services",
                    headers=sp,
                    json={
                        "service_type": "essential_needs",
                        "provider_agency": "social_protection",
                        "delivered_on": TODAY,
                        "provider_name": PROVIDER,
                        "note": SERVICE_NOTE,
                    },
                ),
                201,
            )
            # reads of the person (access-logged), an auditor breaking glass, the HTCDS export
            person = await ok(
                i.get(f"/persons/{person_id}", headers=sp, params={"purpose": "case review"})
            )
            assert leaks("api", json.dumps(person, ensure_ascii=False)), (
                "positive control: the API shows the name"
            )
            auditor = bearer(ring, A.steering_committee, Role.auditor, province="*")
            await ok(
                i.get(
                    f"{c}/person",
                    headers=auditor,
                    params={"break_glass_reason": "complaint number 12 review"},
                )
            )
            await ok(i.get(f"{c}/htcds", headers=sp))
            await ok(v.get(f"{c}/perpetrators", headers=police))
            await ok(v.get(f"{c}/linked-cases", headers=police))
            glass = {
                "break_glass_reason": f"complaint about {FIRST} {LAST}'s case"
            }  # a reason with a name in it
            for service, path, who in (
                ("verification", "perpetrators", police),
                ("verification", "evidence", police),
                ("verification", "rescue-operations", police),
                ("support", "support-plan", sp),
                ("support", "services", sp),
                ("support", "consents", sp),
                ("support", "handoffs", sp),
            ):
                await ok(st[service].get(f"{c}/{path}", headers=who))
                masked = await ok(st[service].get(f"{c}/{path}", headers=auditor))
                assert masked["masked"] is True and not leaks(
                    "api", json.dumps(masked, ensure_ascii=False)
                ), masked
                await ok(st[service].get(f"{c}/{path}", headers=auditor, params=glass))
            follow_ups = await ok(s.get(f"{c}/follow-ups", headers=sp))
            assert follow_ups["items"], follow_ups
            for f in follow_ups["items"]:
                await ok(
                    s.post(
                        f"{c}/follow-ups/{f['follow_up_id']}",
                        headers=sp,
                        json={"outcome": "done", "note": FOLLOW_UP_NOTE},
                    )
                )
            await ts_env.sleep(timedelta(days=31))  # past the reflection and recovery period
            closed = await ok(
                s.post(f"{c}/closure", headers=sp, json={"reason": f"{FIRST} reintegrated at home"})
            )
            assert closed["case"]["status"] in ("Closed", "ClosedReferred"), closed
            await ts_env.sleep(
                timedelta(days=91)
            )  # past the reopen window: the run ends and exports its history
            await ts_env.client.get_workflow_handle(case_id).result()
            await st.wait_event(db_pool, case_id, "stage_decided")
            await wait_for_export(db_pool, case_id)

            # ---- Temporal: raw event bytes, the JSON history, search attributes and memo --------------
            found: list[str] = []
            for cid in (case_id, dup_case):
                history = await ts_env.client.get_workflow_handle(cid).fetch_history()
                assert len(history.events) > 5
                for event in history.events:
                    found += leaks(
                        f"history {cid} event {event.event_id} bytes", event.SerializeToString()
                    )
                found += leaks(f"history {cid} json", history.to_json())
                desc = await ts_env.client.workflow_service.describe_workflow_execution(
                    DescribeWorkflowExecutionRequest(
                        namespace=ts_env.client.namespace,
                        execution=WorkflowExecution(workflow_id=cid),
                    )
                )
                info = desc.workflow_execution_info
                assert info.search_attributes.indexed_fields, "search attributes are set"
                found += leaks(
                    f"search attributes {cid}", info.search_attributes.SerializeToString()
                )
                found += leaks(f"search attributes {cid}", str(info.search_attributes))
                found += leaks(f"memo {cid}", info.memo.SerializeToString())
                found += leaks(f"describe {cid}", desc.SerializeToString())

            # ---- PostgreSQL: every table of every schema, as text and as raw values ------------------
            tables_found, rows_seen = await scan_tables(db_pool)
            found += tables_found
            counts = {
                t: await db_pool.fetchval(f"SELECT count(*) FROM {t}")
                for t in (
                    "intake.persons",
                    "common.access_log",
                    "intake.duplicate_candidates",
                    "verification.perpetrators",
                    "verification.evidence_items",
                    "verification.rescue_operations",
                    "verification.protection_refusals",
                    "support.support_plans",
                    "support.services_delivered",
                    "support.consent_records",
                    "support.follow_up_notes",
                    "oversight.case_events",
                    "oversight.workflow_histories",
                )
            }
            assert all(counts.values()), counts  # every kind of record was written, so was searched
            assert rows_seen > 30
            assert (
                await db_pool.fetchval(
                    "SELECT count(DISTINCT service) FROM common.access_log WHERE case_id = $1",
                    case_id,
                )
                == 3
            )  # intake, verification, support

            # ---- a retention run: what it writes (its history, the erasure, the markers) is clean too ----
            days = 5 * 365
            async with db_pool.acquire() as conn:
                due = await due_for_erasure(
                    conn, await ts_env.get_current_time() + timedelta(days=days + 400), days
                )
            assert case_id in [d.case_id for d in due]
            first = len(STARTED.ids)
            await start_erasures(
                ts_env.client,
                [d for d in due if d.case_id == case_id],
                days,
                workflow_task_queue=task_queue,
                intake_task_queue=INTAKE_TASK_QUEUE,
                oversight_task_queue=f"{task_queue}-oversight",
            )
            retention = ts_env.client.get_workflow_handle(STARTED.ids[first])
            assert await retention.result() is True
            for event in (await retention.fetch_history()).events:
                found += leaks(
                    f"retention history event {event.event_id}", event.SerializeToString()
                )
            tables_found, _ = await scan_tables(db_pool)
            found += [f"after retention: {f}" for f in tables_found]
            assert await db_pool.fetchval(
                "SELECT count(*) FROM verification.erasures WHERE case_id = $1", case_id
            )
            assert await db_pool.fetchval(
                "SELECT count(*) FROM support.erasures WHERE case_id = $1", case_id
            )

    # ---- the logs: structured JSON of every service, the SDK, and anything printed -------------------
    out = capsys.readouterr()
    log_text = logs.getvalue()
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    events = {e.get("event") for e in lines}
    assert {"case_opened", "case_classified"} <= events, (
        events
    )  # the services did log through this set-up
    found += leaks("logs", log_text) + leaks("stdout", out.out) + leaks("stderr", out.err)
    assert not found, "personal data in the clear:\n" + "\n".join(sorted(set(found)))


async def scan_tables(pool: Any) -> tuple[list[str], int]:
    """Every table of every schema (intake, verification, support, oversight, common), as text and raw values."""
    tables = await pool.fetch(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    )
    schemas = {t["table_schema"] for t in tables}
    assert {"intake", "verification", "support", "oversight", "common"} <= schemas, schemas
    found: list[str] = []
    rows_seen = 0
    for t in tables:
        name = f'"{t["table_schema"]}"."{t["table_name"]}"'
        for row in await pool.fetch(f"SELECT x::text AS whole, x.* FROM {name} x"):
            rows_seen += 1
            found += leaks(name, row["whole"])
            for col, value in row.items():
                if isinstance(value, bytes):
                    found += leaks(f"{name}.{col}", value)
                elif value is not None and col != "whole":
                    found += leaks(f"{name}.{col}", str(value))
    return found, rows_seen


async def wait_for_export(pool: Any, case_id: str) -> None:
    import asyncio

    for _ in range(300):
        if await pool.fetchval(
            "SELECT count(*) FROM oversight.workflow_histories WHERE case_id = $1", case_id
        ):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"history of {case_id} was not exported")
