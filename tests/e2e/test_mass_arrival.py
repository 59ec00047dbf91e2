"""A mass arrival against the real `nrm up` stack, over HTTP only: the border guard hands over 200 persons
at once as one background batch carrying the entry decision (classified at handover, issue 13 item 3), in
two chunks, with 3 bad rows reported per row while the valid ones open, and polls the batch's progress.
All 200 reach verification in that one step, owned by the border guard (policy stage owner for a
border-guard handover), each with its verification deadline (2 days for children, 3 for adults); the
verification inbox lists all 200 and the oversight board counts 200 in the verify × border_guard cell."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack

pytestmark = pytest.mark.e2e

A = AgencyRole
PERSONS = 200
VISIBILITY_WAIT = 300.0  # seconds for the last workflows' first tasks to land in the case index
ENTRY = {
    "classification": "trafficking_suspected",
    "justification": "group handover: forced labour at a scam compound",
}
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
        "prs_FirstName": GIVEN[i % 10],
        "prs_MiddleName": MIDDLE[i // 100],
        "prs_SecondName": FAMILY[(i // 10) % 10],
        "prs_Gender": "Feminine",
        "prs_Citizenship": ["VN"],
        "prs_PrimaryLanguage": "vie",
    }
    if i % 3 == 0:
        person.update(no_documents=True, estimated_age=14 if child else 25)
    else:
        person.update(birth_year=year, prs_IdentityNumber=f"0013{i:08d}")
    return {
        "channel": "border_guard_handover",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": person,
        "victim": {
            "vic_TypeOfExploitation": ["ForcedLabour"],
            "vic_MethodOfRecruitment": ["ThroughOnlineSocialNetworks"],
        },
        "events": [{"hte_Type": "Exploitation", "hte_Country": "KH"}],
        "report": {
            "summary": "Group handed over at the international border gate by the Cambodian police.",
            "cas_ReferringOrganisation": "Border guard post 5",
        },
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

    async with (
        stack.async_client("intake", timeout=300) as intake,
        stack.async_client("verification") as ver,
        stack.async_client("oversight") as ovs,
    ):
        # ---- one background batch with the entry decision, sent in two chunks -------------------------
        started = time.monotonic()
        classified_at = datetime.now(UTC)
        r = await intake.post(
            "/cases/bulk/batches",
            headers={**guard, "Idempotency-Key": "handover-2026-001"},
            json={"total": len(rows), "entry_decision": ENTRY, "rows": rows[:120]},
        )
        assert r.status_code == 202, r.text
        batch_id = r.json()["batch_id"]
        r = await intake.post(
            f"/cases/bulk/batches/{batch_id}/rows",
            headers=guard,
            json={"offset": 120, "rows": rows[120:]},
        )
        assert r.status_code == 202, r.text
        view: dict[str, Any] = {}
        while (
            time.monotonic() - started < 600
        ):  # progress: done / total, until every row has its result
            view = (
                await intake.get(
                    f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 0}
                )
            ).json()
            assert 0 <= view["done"] <= view["total"] == PERSONS + 3
            if view["finished_at"]:
                break
            await asyncio.sleep(0.5)
        opened_in = time.monotonic() - started
        assert (view["opened"], view["duplicate_flagged"], view["invalid"], view["failed"]) == (
            PERSONS,
            0,
            3,
            0,
        ), view
        results: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = (
                await intake.get(
                    f"/cases/bulk/batches/{batch_id}",
                    headers=guard,
                    params={"limit": 200, "offset": offset},
                )
            ).json()
            results += page["results"]
            offset = page["next_offset"]
        assert [x["index"] for x in results] == list(range(PERSONS + 3))
        for pos in INVALID_AT:
            assert results[pos]["status"] == "invalid" and results[pos]["case_id"] is None
        assert (
            results[17]["errors"][0]["loc"][-1] == "prs_Gender"
            and "Feminine" in results[17]["errors"][0]["msg"]
        )
        assert ["person"] in [e["loc"] for e in results[101]["errors"]]
        assert results[202]["errors"][0]["loc"] == ["province"]
        valid = [x for x in results if x["index"] not in INVALID_AT]
        assert all(x["status"] == "opened" for x in valid)
        case_ids = [x["case_id"] for x in valid]
        assert len(set(case_ids)) == PERSONS
        child = {x["case_id"]: person_of[x["index"]] % 5 == 0 for x in valid}
        assert sum(child.values()) == 40

        listed = (
            await intake.get(
                "/cases", params={"channel": "border_guard_handover", "limit": 1}, headers=guard
            )
        ).json()
        assert listed["total"] == PERSONS

        # ---- the verification inbox (the case index), page by page ------------------------------------
        # a row is done when its case is committed and its workflow started; the workflow applies the entry
        # decision in its first task and the case index shows it after that task's audit write
        await _until_at_verify(ovs, guard_supervisor, expected=PERSONS)
        inbox = await _inbox(ver, guard, expected=PERSONS)
        assert sorted(i["case_id"] for i in inbox) == sorted(case_ids)
        for item in inbox:
            assert item["stage"] == "verify" and item["owner_agency"] == "border_guard"
            assert item["jurisdiction"] == PROVINCE and item["deadline_at"] is not None
            assert ("child" in item["categories"]) == child[item["case_id"]]
            days = 2 if child[item["case_id"]] else 3
            due = datetime.fromisoformat(item["deadline_at"])
            assert (
                classified_at + timedelta(days=days)
                <= due
                <= datetime.now(UTC) + timedelta(days=days)
            )
        deadlines = [datetime.fromisoformat(i["deadline_at"]) for i in inbox]
        assert deadlines == sorted(deadlines)  # earliest first: the 40 children lead
        assert all(child[i["case_id"]] for i in inbox[:40])
        # the workflow state through intake agrees, for a child and an adult
        for cid in (case_ids[0], case_ids[1]):
            wf = (await intake.get(f"/cases/{cid}", headers=guard)).json()["workflow"]
            assert (
                wf["stage"] == "verify"
                and wf["owner_agency"] == "border_guard"
                and wf["status"] == "Active"
            )

        # ---- the oversight board: one cell, 200 open, none overdue ------------------------------------
        board = await _board(ovs, guard_supervisor, expected=PERSONS)
        assert [
            (c["stage"], c["owner_agency"], c["open"], c["overdue"]) for c in board["cells"]
        ] == [("verify", "border_guard", PERSONS, 0)]
        assert (
            board["province"] == PROVINCE
            and board["total_open"] == PERSONS
            and board["total_overdue"] == 0
        )
        r = await ovs.get("/board", headers=guard)
        assert r.status_code == 403  # supervisors only

    print(f"\nbulk open of {PERSONS} into verification: {opened_in:.1f}s")


async def _inbox(
    ver: httpx.AsyncClient, headers: dict[str, str], expected: int
) -> list[dict[str, Any]]:
    """All items of the verify in-progress inbox, 50 a page, read once: the inbox reads the case index in
    PostgreSQL (exact total, every page complete), so once the cases are there it needs no retry (it no
    longer waits for Temporal visibility)."""
    items: list[dict[str, Any]] = []
    offset, total = 0, None
    while total is None or offset < total:
        r = await ver.get(
            "/inbox",
            headers=headers,
            params={"view": "in_progress", "stage": "verify", "limit": 50, "offset": offset},
        )
        assert r.status_code == 200, r.text
        page = r.json()
        assert page["limit"] == 50 and page["offset"] == offset and len(page["items"]) <= 50
        assert page["complete"] is True
        items += page["items"]
        total = page["total"]
        if not page["items"]:
            break
        offset += len(page["items"])
    assert total == expected and len(items) == expected, f"inbox shows {len(items)} of {expected}"
    return items


async def _until_at_verify(ovs: httpx.AsyncClient, headers: dict[str, str], expected: int) -> None:
    """Bounded wait until the board counts `expected` cases in verify (not a timed assertion)."""
    deadline = time.monotonic() + VISIBILITY_WAIT
    while time.monotonic() < deadline:
        cells = (await ovs.get("/board", headers=headers)).json()["cells"]
        if sum(c["open"] for c in cells if c["stage"] == "verify") >= expected:
            return
        await asyncio.sleep(0.5)


async def _board(ovs: httpx.AsyncClient, headers: dict[str, str], expected: int) -> dict[str, Any]:
    """The board, read once: it reads the same case index as the inbox."""
    r = await ovs.get("/board", headers=headers)
    assert r.status_code == 200, r.text
    board: dict[str, Any] = r.json()
    return board
