"""Intake benchmark: cases opened per second over HTTP, beside raw Temporal workflow starts per second
on the same server in the same run.

    .venv/bin/python bench/intake/run.py [--n 1000] [--concurrency 20] [--rounds 2]

Runs against the system as deployed: `nrm up` on free ports and a temporary data directory (embedded
PostgreSQL, the dev server with SQLite WAL + synchronous=FULL, the intake service, the workflow worker
and the oversight worker each in its own process). This process is only the load generator. Each HTTP
case: a realistic person (Vietnamese name, birth year, id number, phone, address, victim context, one
trafficking event, report narrative): authentication, validation, encryption, blind indexes, duplicate
check, one transaction, then the workflow start. The baseline starts the same CaseWorkflow directly
(same server, same worker, same task queue, same payload codec), without any of that.

Rounds alternate the order (HTTP, raw, raw, HTTP, ...) so a drift of the machine's load during the run
touches both sides alike, and each phase starts only when the whole stack is quiet again (under
0.1 core busy: the workers finish the previous phase's workflow tasks after its start calls have
returned); the figures are the totals over all rounds. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.contract import Actor, CaseFacts, CaseInput
from shared.domain import AgeBand, AgencyRole, Channel, Role
from shared.temporal import WORKFLOW_TASK_QUEUE, connect
from tests.helpers.process_stack import RunningStack, running_stack

FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ"]
MIDDLE = ["Thị", "Văn", "Ngọc", "Minh", "Thu", "Đức"]
GIVEN = ["Lan", "Hoa", "Mai", "Tuấn", "Hùng", "Linh", "Trang", "Dũng", "Hương", "Nam"]
PROVINCE = "20"  # Lạng Sơn (border province)
QUIET_CPU = 0.10  # the stack counts as settled when all its processes together use less than this many cores


def person_payload(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    return {
        "channel": rnd.choice(
            ["border_guard_handover", "rescue_operation", "hotline_111", "embassy_repatriation"]
        ),
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": rnd.choice(GIVEN),
            "prs_MiddleName": rnd.choice(MIDDLE),
            "prs_SecondName": rnd.choice(FAMILY),
            "birth_year": rnd.randint(1985, 2012),
            "prs_Gender": rnd.choice(["Feminine", "Masculine"]),
            "prs_Citizenship": ["VN"],
            "prs_PrimaryLanguage": "vie",
            "prs_IdentityNumber": f"020{rnd.randint(10**8, 10**9 - 1)}",
            "prs_MobilePhone": f"09{rnd.randint(10**7, 10**8 - 1)}",
            "prs_MailingStreet": "Thôn 3",
            "prs_MailingCity": "Lạng Sơn",
            "prs_MailingCountry": "VN",
        },
        "victim": {
            "vic_TypeOfExploitation": [
                rnd.choice(["ForcedMarriage", "ForcedLabour", "SexualExploitation"])
            ],
            "vic_MethodOfRecruitment": ["ThroughFriendsOrSocialEvents"],
            "vic_MethodsOfControl": ["WithholdsDocuments", "DebtBondage"],
            "vic_DetailsOfVulnerabilities": "Left school early; family debt.",
        },
        "events": [
            {
                "hte_Type": "Exploitation",
                "hte_Country": "CN",
                "hte_City": "Bằng Tường",
                "hte_Description": "Kept in a house and made to work without pay.",
            }
        ],
        "report": {
            "summary": "Handed over by the Chinese police at the Hữu Nghị border gate.",
            "cas_ReferringOrganisation": "Border guard post Hữu Nghị",
        },
        "con_Consent": True,
    }


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


async def run_bounded(
    n: int, concurrency: int, op: Callable[[int], Awaitable[None]], first: int = 0
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    errors = 0
    queue = list(range(first, first + n))

    async def runner() -> None:
        nonlocal errors
        while queue:
            i = queue.pop()
            t0 = time.perf_counter()
            try:
                await op(i)
                latencies.append(time.perf_counter() - t0)
            except Exception as exc:  # counted and shown once: a bench reports, it does not stop
                if errors == 0:
                    print(f"  first error: {exc!r}"[:300])
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(runner() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies, errors


def stack_cpu_seconds(stack: RunningStack) -> dict[str, float]:
    """CPU seconds used so far by each process of the stack: every `nrm up` child by name, the Temporal
    dev server, and all PostgreSQL processes together."""
    state = stack.state()
    names = {int(pid): name for name, pid in state["children"].items()}
    if state.get("temporal_pid"):
        names[int(state["temporal_pid"])] = "temporal"
    ticks: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        command, fields = (
            raw[raw.index("(") + 1 : raw.rindex(")")],
            raw[raw.rindex(")") + 2 :].split(),
        )
        name = names.get(int(entry)) or ("postgres" if command == "postgres" else None)
        if name is not None:
            ticks[name] = ticks.get(name, 0) + int(fields[11]) + int(fields[12])  # utime + stime
    return {name: t / os.sysconf("SC_CLK_TCK") for name, t in ticks.items()}


def cpu_used(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before.get(name, 0.0) for name in after}


async def settle(stack: RunningStack, limit_seconds: float = 120.0) -> float:
    """Wait until the previous phase's work has drained: the workers run every started case's first
    workflow tasks, policy and audit activities after the start call returned, and that work must not be
    billed to the next phase. Returns the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit_seconds:
        before = stack_cpu_seconds(stack)
        await asyncio.sleep(1.0)
        if sum(cpu_used(before, stack_cpu_seconds(stack)).values()) < QUIET_CPU:
            break
    return time.monotonic() - t0


class LeanHttp:
    """A minimal HTTP/1.1 keep-alive client, one connection per concurrent runner. The load generator
    shares the 2 cores with the system it measures, and httpx spent about three times the CPU per
    request of the Temporal client used for the baseline; this keeps the generator's cost out of the
    ratio. JSON bodies with Content-Length only, which is all the bench sends and uvicorn answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, bytes]:
        payload = json.dumps(body, ensure_ascii=False).encode()
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n{head}\r\n"
        ).encode() + payload
        status_line = b""
        while (
            not status_line
        ):  # an idle connection the server has closed answers nothing: use a new one
            reused = bool(self._idle)
            reader, writer = (
                self._idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
            )
            try:
                writer.write(request)
                status_line = await reader.readline()
            except ConnectionError:
                if not reused:
                    raise
            if not status_line and not reused:
                raise ConnectionError("the server closed a new connection without answering")
        length, keep = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                keep = False
        content = await reader.readexactly(length)
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return int(status_line.split()[1]), content

    async def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


@dataclass
class Side:
    """One side of the comparison, summed over rounds."""

    name: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    stack_cpu: dict[str, float] = field(
        default_factory=dict
    )  # CPU seconds per process, phase start to quiet
    generator_cpu: float = 0.0  # CPU seconds of this load generator during the phase

    def add(self, result: tuple[float, list[float], int]) -> None:
        self.seconds += result[0]
        self.latencies += result[1]
        self.errors += result[2]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        lat = self.latencies
        return (
            f"{self.name:<34} {self.rate:8.1f}/s   p50 {pct(lat, 50) * 1000:7.1f} ms   "
            f"p99 {pct(lat, 99) * 1000:7.1f} ms   mean {statistics.fmean(lat) * 1000:7.1f} ms   "
            f"ok {len(lat)}  errors {self.errors}"
        )

    def cpu_line(self) -> str:
        n = max(1, len(self.latencies))
        parts = "  ".join(
            f"{name} {secs / n * 1000:.1f}"
            for name, secs in sorted(self.stack_cpu.items())
            if secs / n >= 0.00005
        )
        return (
            f"{self.name:<34} stack CPU {sum(self.stack_cpu.values()) / n * 1000:6.1f} ms per case "
            f"({parts}; load generator {self.generator_cpu / n * 1000:.1f})"
        )


async def bench(stack: RunningStack, n: int, concurrency: int, rounds: int) -> None:
    client = await connect(stack.temporal_address, "default", stack.ring)
    headers = stack.auth(
        AgencyRole.border_guard, Role.caseworker, user="bench-officer", province=PROVINCE
    )
    actor = Actor(
        user_id="bench-officer",
        agency=AgencyRole.border_guard,
        roles=frozenset({Role.caseworker}),
        province=PROVINCE,
    )
    http_side, raw_side = Side("intake POST /cases (HTTP)"), Side("raw Temporal start_workflow")
    http = LeanHttp("127.0.0.1", stack.ports["NRM_INTAKE_PORT"])
    try:

        async def open_one(i: int) -> None:
            code, content = await http.post_json(
                "/cases", person_payload(i), {**headers, "Idempotency-Key": f"bench-{i}"}
            )
            if code != 201:
                raise RuntimeError(f"{code}: {content[:200]!r}")

        async def start_one(i: int) -> None:
            cid = f"c-{uuid.uuid4().hex}"
            facts = CaseFacts(
                case_id=cid,
                person_ref=f"p-{uuid.uuid4().hex}",
                province=PROVINCE,
                channel=Channel.border_guard_handover,
                age_band=AgeBand.adult,
                opened_by=actor,
                opened_at=datetime.now(UTC),
            )
            await client.start_workflow(
                "CaseWorkflow", CaseInput(facts=facts), id=cid, task_queue=WORKFLOW_TASK_QUEUE
            )

        # warm-up: connections, the workers' caches, PostgreSQL's plans
        await run_bounded(10, 5, open_one, first=10_000_000)
        await run_bounded(10, 5, start_one)
        await settle(stack)
        phases = {"http": (open_one, http_side), "raw": (start_one, raw_side)}
        for r in range(rounds):
            for name in ("http", "raw") if r % 2 == 0 else ("raw", "http"):
                op, side = phases[name]
                cpu0, gen0 = stack_cpu_seconds(stack), time.process_time()
                side.add(await run_bounded(n, concurrency, op, first=r * n))
                side.generator_cpu += time.process_time() - gen0
                drained = await settle(stack)
                for proc, secs in cpu_used(cpu0, stack_cpu_seconds(stack)).items():
                    side.stack_cpu[proc] = side.stack_cpu.get(proc, 0.0) + secs
                print(
                    f"  round {r + 1} {name:<4} done (stack quiet {drained:.0f} s later): {side.line()}",
                    flush=True,
                )
    finally:
        await http.close()

    print(
        f"\nN={n} x {rounds} rounds, concurrency={concurrency} (nrm up topology, same Temporal server; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, load {os.getloadavg()[0]:.2f})"
    )
    print(http_side.line())
    print(raw_side.line())
    print(http_side.cpu_line())
    print(raw_side.cpu_line())
    if raw_side.rate:
        print(
            f"ratio: intake opens at {http_side.rate / raw_side.rate:.2f}x the raw workflow-start rate"
        )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--n",
        type=int,
        default=1000,
        help="cases per phase (enough for a steady state: a short burst "
        "mostly measures how much workflow work the server can defer past the phase)",
    )
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with running_stack() as stack:
        print(f"nrm up ready in {stack.data_dir}", flush=True)
        asyncio.run(bench(stack, args.n, args.concurrency, args.rounds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
