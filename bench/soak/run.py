"""Soak benchmark: steady mixed load against `nrm up` for a long while; memory of every process at the
start, every minute and at the end, and the error count.

    .venv/bin/python bench/soak/run.py [--minutes 20] [--rate 6]

Runs against the system as deployed (`nrm up` on free ports, a temporary data directory: embedded
PostgreSQL, the Temporal dev server, the four services, the codec server and the workflow worker, each
its own process). This process is only the load generator: an open-loop schedule of `--rate` operations
per second, mixed as a province's day is: a case opened (hotline report), classified into verification,
claimed, read back (case view, person with a purpose, verification inbox, supervisor board, stuck list).

The baseline is the stack's own memory after a warm-up minute, in the same run: the figure of interest
is the growth ratio (end PSS / warm PSS per process) and the slope over the last half, which must be
flat for memory not to grow without bound. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import platform
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import PROVINCE, RunningStack, running_stack

WARMUP_SECONDS = 60.0
FAMILY = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ"]
GIVEN = ["Lan", "Hoa", "Mai", "Tuấn", "Hùng", "Linh", "Trang", "Dũng", "Hương", "Nam"]


def report(i: int) -> dict[str, Any]:
    rnd = random.Random(i)
    return {
        "channel": "hotline_111",
        "province": PROVINCE,
        "abroad": False,
        "already_safe": True,
        "person": {
            "prs_FirstName": rnd.choice(GIVEN),
            "prs_SecondName": rnd.choice(FAMILY),
            "birth_year": rnd.randint(1985, 2010),
            "prs_Gender": rnd.choice(["Feminine", "Masculine"]),
            "prs_Citizenship": ["VN"],
            "prs_MobilePhone": f"09{rnd.randint(10**7, 10**8 - 1)}",
        },
        "victim": {"vic_TypeOfExploitation": ["ForcedLabour"]},
        "report": {
            "summary": "Caller reports a relative held at a workplace abroad, wages withheld."
        },
        "con_Consent": True,
    }


def rss_by_process(stack: RunningStack) -> dict[str, int]:
    """Proportional resident memory (PSS, KiB) of each `nrm up` child by name, the Temporal server, and all
    PostgreSQL processes together (PSS shares PostgreSQL's shared buffers out among its backends instead of
    counting them once per backend, as RSS would)."""
    state = stack.state()
    names = {int(pid): name for name, pid in state["children"].items()}
    if state.get("temporal_pid"):
        names[int(state["temporal_pid"])] = "temporal"
    out: Counter[str] = Counter()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            status = Path(f"/proc/{entry}/smaps_rollup").read_text()
            command = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        name = names.get(int(entry)) or ("postgres" if command == "postgres" else None)
        if name is None:
            continue
        for line in status.splitlines():
            if line.startswith("Pss:"):
                out[name] += int(line.split()[1])
    return dict(out)


class Load:
    def __init__(self, stack: RunningStack) -> None:
        self.stack = stack
        self.hotline = stack.auth(AgencyRole.hotline, user="soak-hotline")
        self.sp = stack.auth(AgencyRole.social_protection, user="soak-sp")
        self.supervisor = stack.auth(AgencyRole.social_protection, Role.supervisor, user="soak-sup")
        self.clients = {
            name: stack.async_client(name, timeout=30.0)
            for name in ("intake", "verification", "oversight")
        }
        self.opened: list[str] = []
        self.classified: list[str] = []
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = {}
        self.seq = itertools.count()

    async def close(self) -> None:
        for c in self.clients.values():
            await c.aclose()

    async def _call(
        self, op: str, service: str, method: str, path: str, headers: dict[str, str], **kw: Any
    ) -> dict[str, Any] | None:
        t0 = time.perf_counter()
        try:
            r = await self.clients[service].request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            self.errors[f"{op}: {type(exc).__name__}"] += 1
            return None
        self.latency.setdefault(op, []).append(time.perf_counter() - t0)
        self.ops[op] += 1
        if r.status_code >= 400:
            self.errors[f"{op}: {r.status_code}"] += 1
            return None
        body: dict[str, Any] = r.json()
        return body

    async def one(self) -> None:
        i = next(self.seq)
        kind = i % 6
        if kind == 0 or not self.opened:
            got = await self._call(
                "open",
                "intake",
                "POST",
                "/cases",
                {**self.hotline, "Idempotency-Key": f"soak-{i}"},
                json=report(i),
            )
            if got:
                self.opened.append(got["case_id"])
        elif kind == 1 and self.opened:
            cid = self.opened.pop(0)
            got = await self._call(
                "classify",
                "intake",
                "POST",
                f"/cases/{cid}/classify",
                {**self.hotline, "Idempotency-Key": f"soak-cls-{cid}"},
                json={
                    "classification": "trafficking_suspected",
                    "justification": "wages withheld, documents taken",
                },
            )
            if got:
                self.classified.append(cid)
        elif kind == 2 and self.classified:
            cid = self.classified.pop(0)
            await self._call(
                "claim", "verification", "POST", f"/cases/{cid}/claim", self.sp, json={}
            )
        elif kind == 3:
            cid = random.choice(self.opened or self.classified or [""])
            if cid:
                await self._call("read_case", "intake", "GET", f"/cases/{cid}", self.hotline)
                await self._call(
                    "read_person",
                    "intake",
                    "GET",
                    f"/cases/{cid}/person",
                    self.hotline,
                    params={"purpose": "call-back"},
                )
        elif kind == 4:
            await self._call(
                "inbox", "verification", "GET", "/inbox", self.sp, params={"limit": 20}
            )
        else:
            await self._call("board", "oversight", "GET", "/board", self.supervisor)
            await self._call(
                "stuck", "oversight", "GET", "/stuck", self.supervisor, params={"limit": 20}
            )


def fmt_mb(kib: int) -> str:
    return f"{kib / 1024:.0f}"


async def soak(stack: RunningStack, minutes: float, rate: float) -> None:
    load = Load(stack)
    samples: list[tuple[float, dict[str, int]]] = [(0.0, rss_by_process(stack))]
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    deadline = started + minutes * 60
    next_sample = started + 60
    n = 0
    warm: dict[str, int] | None = None
    try:
        while (now := time.monotonic()) < deadline:
            # open loop: the schedule does not wait for slow answers (a backlog shows as in-flight count)
            target = int((now - started) * rate)
            while n < target and len(in_flight) < 200:
                task = asyncio.create_task(load.one())
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                n += 1
            if now >= next_sample:
                samples.append((now - started, rss_by_process(stack)))
                if warm is None and now - started >= WARMUP_SECONDS:
                    warm = samples[-1][1]
                total = sum(samples[-1][1].values())
                print(
                    f"  {(now - started) / 60:5.1f} min: {n} ops sent, {sum(load.errors.values())} errors, "
                    f"{len(in_flight)} in flight, stack PSS {fmt_mb(total)} MiB",
                    flush=True,
                )
                next_sample += 60
            await asyncio.sleep(0.02)
        await asyncio.gather(*in_flight, return_exceptions=True)
    finally:
        await load.close()
    end = rss_by_process(stack)
    samples.append((time.monotonic() - started, end))
    warm = warm or samples[0][1]
    elapsed = time.monotonic() - started

    print(
        f"\nSoak: {elapsed / 60:.1f} min, {n} operations at {n / elapsed:.1f}/s "
        f"(target {rate}/s), errors {sum(load.errors.values())}"
    )
    for op in sorted(load.ops):
        lat = sorted(load.latency.get(op, [0.0]))
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        print(
            f"  {op:12s} {load.ops[op]:6d} calls  p50 {p50 * 1000:7.1f} ms  p99 {p99 * 1000:7.1f} ms"
        )
    for what, count in load.errors.most_common():
        print(f"  error {what}: {count}")
    half = [s for s in samples if s[0] >= elapsed / 2]
    print(
        "\nMemory, PSS (MiB): start, after warm-up (baseline), end; end / warm-up; slope over the last half"
    )
    for name in sorted(end):
        first_half = half[0][1].get(name, 0) if half else 0
        span_min = (half[-1][0] - half[0][0]) / 60 if len(half) > 1 else 0
        slope = (end.get(name, 0) - first_half) / 1024 / span_min if span_min else 0.0
        ratio = end[name] / warm[name] if warm.get(name) else float("nan")
        print(
            f"  {name:16s} {fmt_mb(samples[0][1].get(name, 0)):>6s} {fmt_mb(warm.get(name, 0)):>6s} "
            f"{fmt_mb(end[name]):>6s}   {ratio:5.2f}x   {slope:+6.2f} MiB/min"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=6.0, help="operations per second (open loop)")
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()}: {os.cpu_count()} cores, "
        f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    with running_stack() as stack:
        asyncio.run(soak(stack, args.minutes, args.rate))


if __name__ == "__main__":
    main()
