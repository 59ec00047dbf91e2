"""Benchmark: the console's server time per page at N concurrent signed-in users, beside the API calls the
page makes (what the console adds on top of the APIs).

    .venv/bin/python bench/console/run.py    # starts `nrm up` on free ports (tests/helpers/process_stack.py)
    .venv/bin/python bench/console/run.py --users 50 --rounds 10

Each user signs in through the console's development persona form (one session cookie each). Pages: the
inbox, a case page, the board (a supervisor). For each page the same user's token calls the APIs the page
calls, with the same concurrency, so that both columns see the same load. Prints p50/p95 per page and the
console's overhead as a share of the API time. Goal (issue 14): the console adds < 20% over the API time."""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.console.app import API_LIMITS
from shared.auth import mint_token
from shared.domain import AgencyRole, Role
from tests.helpers.process_stack import RunningStack, running_stack

CASE_BODY = {
    "channel": "border_guard_handover",
    "province": "20",
    "person": {"prs_FirstName": "Lan", "birth_year": 2008},
}


def p(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) >= 2 else values[0]


async def signed_in(stack: RunningStack, persona: str) -> httpx.AsyncClient:
    http = httpx.AsyncClient(base_url=stack.url("console"), timeout=120, follow_redirects=False)
    page = await http.get("/signin")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    r = await http.post("/signin/dev", data={"csrf": csrf.group(1), "persona": persona})
    assert r.status_code == 303, r.text
    return http


async def timed(
    n: int, rounds: int, call: Callable[[int], Awaitable[httpx.Response]]
) -> list[float]:
    out: list[float] = []
    for _ in range(rounds):

        async def one(i: int) -> float:
            t = time.perf_counter()
            r = await call(i)
            assert r.status_code == 200, r.status_code
            return (time.perf_counter() - t) * 1000

        out.extend(await asyncio.gather(*(one(i) for i in range(n))))
    return out


async def bench(stack: RunningStack, users: int, rounds: int, pages: list[str]) -> None:
    token = mint_token(
        stack.ring,
        user_id="bp-langson-01",
        roles=[Role.caseworker],
        agency=AgencyRole.border_guard,
        province="20",
    )
    sup_token = mint_token(
        stack.ring,
        user_id="ca-langson-gs-01",
        roles=[Role.supervisor],
        agency=AgencyRole.police,
        province="20",
    )
    auth = {"Authorization": f"Bearer {token}"}
    sup_auth = {"Authorization": f"Bearer {sup_token}"}
    async with stack.async_client("intake") as intake:
        case_id = (await intake.post("/cases", json=CASE_BODY, headers=auth)).json()["case_id"]
    cw = [await signed_in(stack, "bg") for _ in range(users)]
    sv = [await signed_in(stack, "sup") for _ in range(users)]
    # the same connection limits as the console's own client to the APIs
    apis = {
        s: httpx.AsyncClient(base_url=stack.url(s), timeout=120, limits=API_LIMITS)
        for s in ("intake", "verification", "support", "oversight", "notifications")
    }
    bell = {"unread": "true", "limit": 1}

    async def inbox_apis(_: int) -> httpx.Response:
        """What /inbox calls, all at once: the open tab's view for 3 stage groups, every other tab's count
        (limit 1; 3 stage groups each, the waiting tab once), and the bell's unread count."""

        def view(v: str, stage: str | None, limit: int) -> Awaitable[httpx.Response]:
            params = {"view": v, **({"stage": stage} if stage else {}), "limit": limit}
            return apis["verification"].get("/inbox", params=params, headers=auth)

        groups = (None, "receive", "reintegrate")
        calls = [
            *(view("in_progress", s, 100) for s in groups),
            *(view(v, s, 1) for v in ("due_soon", "overdue") for s in groups),
            view("waiting_acceptance", None, 1),
            apis["notifications"].get("/inbox", params=bell, headers=auth),
        ]
        return (await asyncio.gather(*calls))[0]

    async def case_apis(_: int) -> httpx.Response:
        """What /cases/{id} calls for a border-guard caseworker, all at once (the case read carries the
        deadline, assignee, escalation level and allowed actions: no inbox lookup after it)."""
        calls = [
            apis["intake"].get(f"/cases/{case_id}", headers=auth),
            apis["intake"].get(
                f"/cases/{case_id}/person", params={"purpose": "bench"}, headers=auth
            ),
            *(
                apis["support"].get(f"/cases/{case_id}/{w}", headers=auth)
                for w in ("handoffs", "consents", "follow-ups", "support-plan", "services")
            ),
            apis["intake"].get(f"/cases/{case_id}/duplicates", headers=auth),
            apis["verification"].get(f"/cases/{case_id}/perpetrators", headers=auth),
            apis["verification"].get(f"/cases/{case_id}/linked-cases", headers=auth),
        ]
        return (await asyncio.gather(*calls))[0]

    async def board_apis(_: int) -> httpx.Response:
        board, _bell = await asyncio.gather(
            apis["oversight"].get("/board", headers=sup_auth),
            apis["notifications"].get("/inbox", params=bell, headers=sup_auth),
        )
        return board

    rows = [
        ("inbox", lambda i: cw[i].get("/inbox"), inbox_apis),
        ("case page", lambda i: cw[i].get(f"/cases/{case_id}"), case_apis),
        ("board", lambda i: sv[i].get("/board"), board_apis),
    ]
    print(f"{users} concurrent users, {rounds} rounds; milliseconds")
    print(
        f"{'page':<10} {'console p50':>12} {'console p95':>12} {'APIs p50':>10} {'APIs p95':>10} {'overhead p95':>13}"
    )
    for name, page, api in (r for r in rows if r[0] in pages):
        await timed(users, 1, page)  # warm-up
        c = await timed(users, rounds, page)
        a = await timed(users, rounds, api)
        over = (p(c, 95) - p(a, 95)) / p(a, 95) * 100
        print(
            f"{name:<10} {p(c, 50):>12.0f} {p(c, 95):>12.0f} {p(a, 50):>10.0f} {p(a, 95):>10.0f} {over:>12.0f}%"
        )
    for h in [*cw, *sv, *apis.values()]:
        await h.aclose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--pages", default="inbox,case page,board", help="comma-separated page names")
    args = ap.parse_args()
    with running_stack() as stack:
        asyncio.run(bench(stack, args.users, args.rounds, args.pages.split(",")))


if __name__ == "__main__":
    main()
