"""A mass arrival against the real `nrm up` stack, over HTTP only: the border guard hands over 200 persons
at once through intake's bulk endpoint (with 3 bad rows, reported per row while the valid ones open), then
classifies every case (bounded concurrency). All 200 reach verification, owned by the border guard (policy
stage owner for a border-guard handover), each with its verification deadline (2 days for children, 3 for
adults); the verification inbox lists all 200 and the oversight board counts 200 in the verify ×
border_guard cell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.domain import AgencyRole, Role
from tests.e2e.stack import PROVINCE, RunningStack, running_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
PERSONS = 200
CLASSIFY_CONCURRENCY = 8
VISIBILITY_WAIT = 60.0  # seconds for Temporal visibility and the oversight projection to catch up
POLICY_VERSION = "VN-2026.11-1"
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng"]
GIVEN = ["Lan", "Mai", "Hoa", "Linh", "Hương", "Thảo", "Ngọc", "Trang", "Hà", "Yến"]
MIDDLE = ["Thị", "Ngọc"]
INVALID_AT = (17, 101, 202)  # positions of the bad rows in the uploaded list


@pytest.fixture(scope="module")
def stack() -> Iterator[RunningStack]:
    with running_stack() as s:
        yield s


def person_row(i: int) -> dict[str, Any]:
    """The i-th person of the group: distinct names (no duplicate flags), every 5th a child, every 3rd
    without papers (age estimated)."""
    child = i % 5 == 0
    year = datetime.now(UTC).year - (14 if child else 24 + i % 10)
    person: dict[str, Any] = {
        "prs_FirstName": GIVEN[i % 10], "prs_MiddleName": MIDDLE[i // 100], "prs_SecondName": FAMILY[(i // 10) % 10],
        "prs_Gender": "Feminine", "prs_Citizenship": ["VN"], "prs_PrimaryLanguage": "vie",
    }
    if i % 3 == 0:
        person.update(no_documents=True, estimated_age=14 if child else 25)
    else:
        person.update(birth_year=year, prs_IdentityNumber=f"0013{i:08d}")
    return {
        "channel": "border_guard_handover", "province": PROVINCE, "abroad": False, "already_safe": True,
        "person": person,
        "victim": {"vic_TypeOfExploitation": ["ForcedLabour"], "vic_MethodOfRecruitment": ["ThroughOnlineSocialNetworks"]},
        "events": [{"hte_Type": "Exploitation", "hte_Country": "KH"}],
        "report": {"summary": "Group handed over at the international border gate by the Cambodian police.",
                   "cas_ReferringOrganisation": "Border guard post 5"},
        "con_Consent": True,
    }


def invalid_rows() -> list[dict[str, Any]]:
    bad_gender = person_row(0)
    bad_gender["person"] = {**bad_gender["person"], "prs_Gender": "Womanly"}
    no_person = {k: v for k, v in person_row(1).items() if k != "person"}
    bad_province = {**person_row(2), "province": "99"}
    return [bad_gender, no_person, bad_province]


def upload() -> tuple[list[dict[str, Any]], list[int]]:
    """203 rows: the 200 persons with the 3 bad rows at INVALID_AT; and each valid row's person number."""
    rows: list[dict[str, Any]] = []
    person_of: list[int] = []
    bad = iter(invalid_rows())
    n = 0
    for pos in range(PERSONS + len(INVALID_AT)):
        if pos in INVALID_AT:
            rows.append(next(bad))
            person_of.append(-1)
        else:
            rows.append(person_row(n))
            person_of.append(n)
            n += 1
    return rows, person_of


async def test_mass_arrival_of_200_reaches_verification(stack: RunningStack) -> None:
    guard = stack.auth(A.border_guard, user="bg-officer-5")
    guard_supervisor = stack.auth(A.border_guard, Role.supervisor, user="bg-commander-1")
    rows, person_of = upload()

    async with stack.async_client("intake", timeout=300) as intake, \
            stack.async_client("verification") as ver, stack.async_client("oversight") as ovs:
        # ---- one bulk upload: valid rows open, bad rows are reported row by row -----------------------
        started = time.monotonic()
        r = await intake.post("/cases/bulk", json=rows, headers={**guard, "Idempotency-Key": "handover-2026-001"})
        assert r.status_code == 200, r.text
        bulk = r.json()
        opened_in = time.monotonic() - started
        assert bulk["received"] == PERSONS + 3
        assert (bulk["opened"], bulk["duplicate_flagged"], bulk["invalid"], bulk["failed"]) == (PERSONS, 0, 3, 0), \
            [x for x in bulk["results"] if x["status"] != "opened"]
        results = bulk["results"]
        assert [x["index"] for x in results] == list(range(PERSONS + 3))
        for pos in INVALID_AT:
            assert results[pos]["status"] == "invalid" and results[pos]["case_id"] is None
        assert results[17]["errors"][0]["loc"][-1] == "prs_Gender" and "Feminine" in results[17]["errors"][0]["msg"]
        assert ["person"] in [e["loc"] for e in results[101]["errors"]]
        assert results[202]["errors"][0]["loc"] == ["province"]
        valid = [x for x in results if x["index"] not in INVALID_AT]
        assert all(x["status"] == "opened" and x["workflow_started"] for x in valid)
        case_ids = [x["case_id"] for x in valid]
        assert len(set(case_ids)) == PERSONS
        child = {x["case_id"]: person_of[x["index"]] % 5 == 0 for x in valid}

        listed = (await intake.get("/cases", params={"channel": "border_guard_handover", "limit": 1},
                                   headers=guard)).json()
        assert listed["total"] == PERSONS

        # ---- every case classified (bounded concurrency), straight to the border guard's verification --
        sem = asyncio.Semaphore(CLASSIFY_CONCURRENCY)
        classified_at = datetime.now(UTC)

        async def classify(cid: str) -> dict[str, Any]:
            async with sem:
                r = await intake.post(f"/cases/{cid}/classify", headers={**guard, "Idempotency-Key": f"cls-{cid}"},
                                      json={"classification": "trafficking_suspected",
                                            "justification": "group handover: forced labour at a scam compound"})
                assert r.status_code == 200, f"{cid}: {r.status_code} {r.text}"
                return dict(r.json())

        started = time.monotonic()
        states = await asyncio.gather(*(classify(cid) for cid in case_ids))
        classify_in = time.monotonic() - started
        for s in states:
            cid = s["case_id"]
            assert s["stage"] == "verify" and s["owner_agency"] == "border_guard" and s["status"] == "Active"
            due = datetime.fromisoformat(s["deadline"]["due_at"])
            rule = "verify-child" if child[cid] else "verify"
            assert s["deadline"]["source"].split(" — ")[0] == f"{POLICY_VERSION}:{rule}", (cid, s["deadline"])
            days = 2 if child[cid] else 3
            assert classified_at + timedelta(days=days) <= due <= datetime.now(UTC) + timedelta(days=days)
        assert sum(child.values()) == 40

        # ---- the verification inbox (Temporal visibility), page by page ------------------------------
        inbox = await _inbox(ver, guard, expected=PERSONS)
        assert sorted(i["case_id"] for i in inbox) == sorted(case_ids)
        for item in inbox:
            assert item["stage"] == "verify" and item["owner_agency"] == "border_guard"
            assert item["jurisdiction"] == PROVINCE and item["deadline_at"] is not None
            assert ("child" in item["categories"]) == child[item["case_id"]]
        deadlines = [datetime.fromisoformat(i["deadline_at"]) for i in inbox]
        assert deadlines == sorted(deadlines)  # earliest first: the 40 children lead
        assert all(child[i["case_id"]] for i in inbox[:40])
        # the workflow state through intake agrees, for a child and an adult
        for cid in (case_ids[0], case_ids[1]):
            wf = (await intake.get(f"/cases/{cid}", headers=guard)).json()["workflow"]
            assert wf["stage"] == "verify" and wf["owner_agency"] == "border_guard" and wf["status"] == "Active"

        # ---- the oversight board: one cell, 200 open, none overdue ------------------------------------
        board = await _board(ovs, guard_supervisor, expected=PERSONS)
        assert [(c["stage"], c["owner_agency"], c["open"], c["overdue"]) for c in board["cells"]] == [
            ("verify", "border_guard", PERSONS, 0)]
        assert board["province"] == PROVINCE and board["total_open"] == PERSONS and board["total_overdue"] == 0
        r = await ovs.get("/board", headers=guard)
        assert r.status_code == 403  # supervisors only

    print(f"\nbulk open of {PERSONS}: {opened_in:.1f}s; classify: {classify_in:.1f}s")


async def _inbox(ver: httpx.AsyncClient, headers: dict[str, str], expected: int) -> list[dict[str, Any]]:
    """All items of the verify in-progress inbox, 50 a page, once visibility shows `expected` of them."""
    deadline = time.monotonic() + VISIBILITY_WAIT
    while True:
        items: list[dict[str, Any]] = []
        offset, total = 0, None
        while total is None or offset < total:
            r = await ver.get("/inbox", headers=headers, params={
                "view": "in_progress", "stage": "verify", "limit": 50, "offset": offset})
            assert r.status_code == 200, r.text
            page = r.json()
            assert page["limit"] == 50 and page["offset"] == offset and len(page["items"]) <= 50
            items += page["items"]
            total = page["total"]
            if not page["items"]:
                break
            offset += len(page["items"])
        # visibility is eventually consistent: wait until every case shows its verify stage and deadline
        if (len(items) == expected and all(i["deadline_at"] for i in items)) or time.monotonic() > deadline:
            assert total == expected and len(items) == expected, f"inbox shows {len(items)} of {expected}"
            return items
        await asyncio.sleep(0.5)


async def _board(ovs: httpx.AsyncClient, headers: dict[str, str], expected: int) -> dict[str, Any]:
    deadline = time.monotonic() + VISIBILITY_WAIT
    while True:
        r = await ovs.get("/board", headers=headers)
        assert r.status_code == 200, r.text
        board: dict[str, Any] = r.json()
        cell = [c for c in board["cells"] if (c["stage"], c["owner_agency"]) == ("verify", "border_guard")]
        if (cell and cell[0]["open"] == expected) or time.monotonic() > deadline:
            return board
        await asyncio.sleep(0.5)
