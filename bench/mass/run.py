"""Mass-arrival benchmark (issue 13 item 3): N persons handed over at once by the border guard, bulk-opened
through a background batch carrying the entry decision, until every valid person is in verification with
its deadline; beside a baseline in the same run on the same server: raw `start_workflow` of as many
CaseWorkflows with the same initial decision (no HTTP, no validation, no encryption, no database row).

    .venv/bin/python bench/mass/run.py [--n 7000] [--dup 0.10] [--invalid 0.02] [--chunk 1000]

Against `nrm up` on free ports and a temporary data directory (tests/helpers/process_stack.py), this process being only
the load generator. The rows: realistic Vietnamese names (family, middle, given), birth year, identity
number for most, a phone, victim context, one trafficking event, a report narrative; `--dup` of them are
true duplicates of an earlier person of the batch (same identity number, or same name and birth year, with
accents or name order changed as a border post writes them), `--invalid` are bad rows (a wrong picklist
value, a province that does not exist, no person). Timed from the first request to the moment the
oversight board (PostgreSQL projection written by each case's audit activity) counts every valid person
open in verify; then the verification inbox is read page by page to check each case's deadline.
Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sys
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.intake.run import settle, stack_cpu_seconds
from shared.contract import Actor, CaseFacts, CaseInput, Classification, Decide, ReceiveDecision
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.temporal import WORKFLOW_TASK_QUEUE, connect
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack

FAMILY = [
    "Nguyễn",
    "Trần",
    "Lê",
    "Phạm",
    "Hoàng",
    "Huỳnh",
    "Phan",
    "Vũ",
    "Võ",
    "Đặng",
    "Bùi",
    "Đỗ",
    "Hồ",
    "Ngô",
    "Dương",
    "Lý",
]
MIDDLE_F = ["Thị", "Ngọc", "Thu", "Thanh", "Kim", "Mỹ", "Hồng"]
MIDDLE_M = ["Văn", "Đức", "Minh", "Quang", "Hữu", "Công"]
GIVEN_F = [
    "Lan",
    "Mai",
    "Hoa",
    "Linh",
    "Hương",
    "Thảo",
    "Ngọc",
    "Trang",
    "Hà",
    "Yến",
    "Nhung",
    "Phương",
    "Vy",
    "Anh",
    "Dung",
    "Huyền",
]
GIVEN_M = [
    "Tuấn",
    "Hùng",
    "Dũng",
    "Nam",
    "Long",
    "Phúc",
    "Thắng",
    "Khoa",
    "Bảo",
    "Hải",
    "Sơn",
    "Tài",
]
ENTRY = {
    "classification": "trafficking_suspected",
    "justification": "group handed over by the Cambodian police: forced labour at a scam compound",
}
BASELINE_PROVINCE = "79"  # the baseline's cases are counted on another province's board


def strip_accents(text: str) -> str:
    """As a form typed without Vietnamese accents (đ -> d)."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def person(rnd: random.Random, i: int) -> dict[str, Any]:
    female = rnd.random() < 0.7
    year = datetime.now(UTC).year - (
        rnd.randint(13, 17) if rnd.random() < 0.2 else rnd.randint(18, 40)
    )
    p: dict[str, Any] = {
        "prs_FirstName": rnd.choice(GIVEN_F if female else GIVEN_M),
        "prs_MiddleName": rnd.choice(MIDDLE_F if female else MIDDLE_M),
        "prs_SecondName": rnd.choice(FAMILY),
        "birth_year": year,
        "prs_Gender": "Feminine" if female else "Masculine",
        "prs_Citizenship": ["VN"],
        "prs_PrimaryLanguage": "vie",
    }
    if rnd.random() < 0.85:  # most carry a citizen id card (CCCD: 12 digits)
        p["prs_IdentityNumber"] = (
            f"0{rnd.randint(1, 96):02d}{rnd.randint(0, 1)}{year % 100:02d}{i:06d}"
        )
    else:
        p["no_documents"] = True
    if rnd.random() < 0.5:
        p["prs_MobilePhone"] = f"09{rnd.randint(10**7, 10**8 - 1)}"
    return p


def row_of(p: dict[str, Any]) -> dict[str, Any]:
    return {
        "channel": "border_guard_handover",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": p,
        "victim": {
            "vic_TypeOfExploitation": ["ForcedLabour"],
            "vic_MethodOfRecruitment": ["ThroughOnlineSocialNetworks"],
            "vic_MethodsOfControl": ["WithholdsDocuments", "DebtBondage"],
        },
        "events": [
            {
                "hte_Type": "Exploitation",
                "hte_Country": "KH",
                "hte_City": "Sihanoukville",
                "hte_Description": "Held in a guarded compound and made to run online scams.",
            }
        ],
        "report": {
            "summary": "Handed over at the Mộc Bài border gate with the group from the compound.",
            "cas_ReferringOrganisation": "Border guard post Mộc Bài",
        },
        "con_Consent": True,
    }


def arrival(
    n: int, dup: float, invalid: float, seed: int = 7
) -> tuple[list[dict[str, Any]], int, int]:
    """n rows: distinct persons, true duplicates of earlier ones (as written again by another officer) and
    bad rows, shuffled together. Returns the rows, the number of duplicates and of invalid rows."""
    rnd = random.Random(seed)
    n_invalid, n_dup = round(n * invalid), round(n * dup)
    persons = [person(rnd, i) for i in range(n - n_invalid - n_dup)]
    rows = [row_of(p) for p in persons]
    for _ in range(n_dup):
        p = dict(rnd.choice(persons))
        if (
            "prs_IdentityNumber" not in p or rnd.random() < 0.4
        ):  # same name + year, written without accents
            p = {
                **p,
                "prs_FirstName": strip_accents(p["prs_FirstName"].lower()),
                "prs_SecondName": strip_accents(p["prs_SecondName"].upper()),
            }
            p.pop("prs_IdentityNumber", None)
            p.pop("no_documents", None)
        rows.insert(rnd.randrange(len(rows) + 1), row_of(p))
    for k in range(n_invalid):
        bad = row_of(person(rnd, 900_000 + k))
        kind = k % 3
        if kind == 0:
            bad["person"]["prs_Gender"] = "Womanly"
        elif kind == 1:
            bad["province"] = "99"
        else:
            del bad["person"]
        rows.insert(rnd.randrange(len(rows) + 1), bad)
    return rows, n_dup, n_invalid


async def board_open(ovs: httpx.AsyncClient, headers: dict[str, str], agency: str) -> int:
    r = await ovs.get("/board", headers=headers)
    r.raise_for_status()
    return sum(
        c["open"]
        for c in r.json()["cells"]
        if (c["stage"], c["owner_agency"]) == ("verify", agency)
    )


async def wait_board(
    ovs: httpx.AsyncClient,
    headers: dict[str, str],
    agency: str,
    expected: int,
    t0: float,
    label: str,
    progress: Any = None,
) -> float:
    last = -1.0
    while True:
        n = await board_open(ovs, headers, agency)
        now = time.monotonic()
        if now - last >= 10:
            extra = await progress() if progress else ""
            print(f"  {label} {now - t0:6.1f}s: {n}/{expected} at verify {extra}", flush=True)
            last = now
        if n >= expected:
            return now - t0
        await asyncio.sleep(0.5)


async def mass(
    stack: RunningStack, n: int, dup: float, invalid: float, chunk: int
) -> dict[str, Any]:
    rows, n_dup, n_invalid = arrival(n, dup, invalid)
    guard = stack.auth(AgencyRole.border_guard, user="bg-mocbai-1")
    sup = stack.auth(AgencyRole.border_guard, Role.supervisor, user="bg-commander-1")
    valid = n - n_invalid
    async with (
        stack.async_client("intake", timeout=120) as intake,
        stack.async_client("oversight") as ovs,
        stack.async_client("verification", timeout=120) as ver,
    ):
        cpu0 = stack_cpu_seconds(stack)
        t0 = time.monotonic()
        r = await intake.post(
            "/cases/bulk/batches",
            json={"total": n, "entry_decision": ENTRY, "rows": rows[:chunk]},
            headers={**guard, "Idempotency-Key": f"mocbai-{uuid.uuid4().hex[:8]}"},
        )
        r.raise_for_status()
        batch_id = r.json()["batch_id"]
        for off in range(chunk, n, chunk):
            r = await intake.post(
                f"/cases/bulk/batches/{batch_id}/rows",
                json={"offset": off, "rows": rows[off : off + chunk]},
                headers=guard,
            )
            r.raise_for_status()
        uploaded = time.monotonic() - t0
        print(f"  uploaded {n} rows in {uploaded:.1f}s (batch {batch_id})", flush=True)

        async def progress() -> str:
            v = (
                await intake.get(
                    f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 0}
                )
            ).json()
            return f"(batch done {v['done']}/{v['total']})"

        at_verify = await wait_board(ovs, sup, "border_guard", valid, t0, "bulk", progress)
        view = (
            await intake.get(f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 0})
        ).json()
        while not view["finished_at"]:
            await asyncio.sleep(0.5)
            view = (
                await intake.get(
                    f"/cases/bulk/batches/{batch_id}", headers=guard, params={"limit": 0}
                )
            ).json()
        batch_done = datetime.fromisoformat(view["finished_at"]) - datetime.fromisoformat(
            view["created_at"]
        )
        await settle(stack)
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack_cpu_seconds(stack).items()}
        # each case's deadline, through the verification inbox (paged)
        t1 = time.monotonic()
        with_deadline, seen, offset = 0, 0, 0
        while True:
            r = await ver.get(
                "/inbox",
                headers=guard,
                params={"view": "in_progress", "stage": "verify", "limit": 200, "offset": offset},
            )
            r.raise_for_status()
            page = r.json()
            seen += len(page["items"])
            with_deadline += sum(1 for i in page["items"] if i["deadline_at"])
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
        inbox_s = time.monotonic() - t1
    return {
        "n": n,
        "valid": valid,
        "dup": n_dup,
        "invalid": n_invalid,
        "seconds": at_verify,
        "upload": uploaded,
        "batch": view,
        "batch_seconds": batch_done.total_seconds(),
        "inbox_seen": seen,
        "inbox_deadlines": with_deadline,
        "inbox_seconds": inbox_s,
        "cpu": cpu,
    }


async def baseline(stack: RunningStack, count: int, concurrency: int = 20) -> dict[str, Any]:
    """`count` CaseWorkflows started directly with the same initial decision (another province)."""
    client = await connect(stack.temporal_address, "default", stack.ring)
    actor = Actor(
        user_id="bench-raw",
        agency=AgencyRole.border_guard,
        roles=frozenset({Role.caseworker}),
        province=BASELINE_PROVINCE,
    )
    sup = stack.auth(
        AgencyRole.border_guard, Role.supervisor, user="bg-commander-79", province=BASELINE_PROVINCE
    )
    queue = list(range(count))

    async def starter() -> None:
        while queue:
            queue.pop()
            cid = f"c-{uuid.uuid4().hex}"
            facts = CaseFacts(
                case_id=cid,
                person_ref=f"p-{uuid.uuid4().hex}",
                province=BASELINE_PROVINCE,
                channel=Channel.border_guard_handover,
                age_band=AgeBand.adult,
                opened_by=actor,
                opened_at=datetime.now(UTC),
            )
            decide = Decide(
                actor=actor,
                justification=ENTRY["justification"],
                decision=ReceiveDecision(
                    classification=Classification.trafficking_suspected,
                    channel=Channel.border_guard_handover,
                ),
            )
            await client.start_workflow(
                "CaseWorkflow",
                CaseInput(facts=facts, initial_decision=decide),
                id=cid,
                task_queue=WORKFLOW_TASK_QUEUE,
            )

    async with stack.async_client("oversight") as ovs:
        cpu0 = stack_cpu_seconds(stack)
        t0 = time.monotonic()
        await asyncio.gather(*(starter() for _ in range(concurrency)))
        started = time.monotonic() - t0
        at_verify = await wait_board(ovs, sup, "border_guard", count, t0, "raw ")
        await settle(stack)
        cpu = {k: v - cpu0.get(k, 0.0) for k, v in stack_cpu_seconds(stack).items()}
    return {"seconds": at_verify, "started": started, "cpu": cpu}


def cpu_line(cpu: dict[str, float], cases: int) -> str:
    parts = "  ".join(
        f"{k} {v / cases * 1000:.1f}" for k, v in sorted(cpu.items()) if v / cases >= 0.0001
    )
    return f"stack CPU {sum(cpu.values()) / cases * 1000:.1f} ms per case ({parts})"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=7000)
    ap.add_argument("--dup", type=float, default=0.10)
    ap.add_argument("--invalid", type=float, default=0.02)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args()
    with running_stack() as stack:
        print(
            f"nrm up ready in {stack.data_dir}; {os.cpu_count()} CPUs, {platform.machine()}, "
            f"load {os.getloadavg()[0]:.2f}",
            flush=True,
        )
        m = asyncio.run(mass(stack, args.n, args.dup, args.invalid, args.chunk))
        b = None if args.no_baseline else asyncio.run(baseline(stack, m["valid"]))
    v = m["batch"]
    print(
        f"\nmass arrival: {m['n']} rows ({m['dup']} true duplicates, {m['invalid']} invalid), "
        f"load {os.getloadavg()[0]:.2f} at the end"
    )
    print(
        f"  all {m['valid']} valid persons at verify (board) {m['seconds']:.1f}s after the first request "
        f"({m['valid'] / m['seconds']:.1f} persons/s); upload {m['upload']:.1f}s; batch finished in "
        f"{m['batch_seconds']:.1f}s"
    )
    print(
        f"  batch: opened {v['opened']}, duplicate_flagged {v['duplicate_flagged']}, invalid {v['invalid']}, "
        f"failed {v['failed']}, replayed {v['replayed']}"
    )
    print(
        f"  inbox: {m['inbox_seen']} in verify, {m['inbox_deadlines']} with a deadline (read in "
        f"{m['inbox_seconds']:.1f}s)"
    )
    print(f"  {cpu_line(m['cpu'], m['valid'])}")
    if b:
        print(
            f"raw baseline: {m['valid']} CaseWorkflows started with the same initial decision: all at verify "
            f"{b['seconds']:.1f}s ({m['valid'] / b['seconds']:.1f}/s; start calls {b['started']:.1f}s)"
        )
        print(f"  {cpu_line(b['cpu'], m['valid'])}")
        print(f"ratio: the mass arrival takes {m['seconds'] / b['seconds']:.2f}x the raw baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
