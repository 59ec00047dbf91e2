"""Memory at many open cases: open N cases through intake (none closed) and print the memory of the
workflow worker, the Temporal dev server and every other part every `--every` cases.

    .venv/bin/python bench/soak/open_cases.py [--cases 10000] [--every 1000] [--concurrency 20]

Runs against `nrm up` (free ports, a temporary data directory). Each opened case is a running CaseWorkflow
with its deadline timer: what a province carries after a mass arrival. The baseline is the same stack before
the first case. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.soak.run import report, rss_by_process
from shared.domain import AgencyRole
from tests.helpers.process_stack import RunningStack, running_stack


async def open_many(stack: RunningStack, cases: int, every: int, concurrency: int) -> None:
    hotline = stack.auth(AgencyRole.hotline, user="mem-hotline")
    before = rss_by_process(stack)
    names = sorted(before)
    print(f"{'open cases':>10s}  " + "  ".join(f"{n[:14]:>14s}" for n in names) + "   (PSS, MiB)")
    print(f"{0:>10d}  " + "  ".join(f"{before.get(n, 0) / 1024:14.0f}" for n in names), flush=True)
    errors = 0
    done = 0
    started = time.monotonic()
    async with stack.async_client("intake", timeout=60.0) as http:
        next_i = 0

        async def worker(target: int) -> None:
            nonlocal next_i, errors, done
            while next_i < target:
                i = next_i
                next_i += 1
                r = await http.post(
                    "/cases", json=report(i), headers={**hotline, "Idempotency-Key": f"mem-{i}"}
                )
                if r.status_code != 201:
                    errors += 1
                done += 1

        for chunk_end in range(every, cases + every, every):
            target = min(chunk_end, cases)
            await asyncio.gather(*(worker(target) for _ in range(concurrency)))
            await asyncio.sleep(
                5
            )  # let the workers run the new cases' first tasks before measuring
            now = rss_by_process(stack)
            print(
                f"{target:>10d}  "
                + "  ".join(f"{now.get(n, 0) / 1024:14.0f}" for n in names)
                + f"   {done / (time.monotonic() - started):.1f} opens/s, {errors} errors",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--every", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=20)
    args = parser.parse_args()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} cores, load average "
        f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}"
    )
    with running_stack() as stack:
        asyncio.run(open_many(stack, args.cases, args.every, args.concurrency))


if __name__ == "__main__":
    main()
