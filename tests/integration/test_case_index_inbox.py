"""The inbox, the stuck list and the board on a built data set of 10,000 index rows (no Temporal): each
view's filters (mine, my agency, waiting for my acceptance, due soon, overdue, stage, category), its order
and exact total against a computation in Python, and the plans (EXPLAIN) use each screen's index."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from services.oversight import repository as oversight_repo
from services.verification.inbox import query as inbox_query
from services.verification.models import InboxView
from shared import case_index
from shared.auth import Principal
from shared.contract import (
    Actor,
    CaseFacts,
    CaseState,
    Deadline,
    Handoff,
    HandoffKind,
    HandoffState,
    StageRecord,
)
from shared.domain import AgeBand, AgencyRole, CaseStatus, Channel, Role, Stage

N = 10_000
NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
PROVINCES = ("01", "79", "48")
AGENCIES = (
    AgencyRole.social_protection,
    AgencyRole.police,
    AgencyRole.border_guard,
    AgencyRole.legal_aid,
)
USERS = ("u1", "u2", "u3")
DECIDING = ("verify", "identify", "rescue", "protect")
STATUSES = (CaseStatus.Active,) * 8 + (CaseStatus.FollowUp, CaseStatus.Closed)


def build_states(n: int, seed: int = 13) -> list[CaseState]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        province = rnd.choice(PROVINCES)
        opener = Actor(
            user_id="hotline-1",
            agency=AgencyRole.hotline,
            roles=frozenset({Role.caseworker}),
            province=province,
        )
        opened = NOW - timedelta(days=rnd.randint(1, 60))
        f = CaseFacts(
            case_id=f"case-{i:05d}",
            person_ref=f"p-{i}",
            province=province,
            channel=Channel.hotline_111,
            age_band=rnd.choice(list(AgeBand)),
            abroad=rnd.random() < 0.2,
            foreign_national=rnd.random() < 0.1,
            opened_by=opener,
            opened_at=opened,
        )
        status = rnd.choice(STATUSES)
        stage = (
            Stage.closed
            if status == CaseStatus.Closed
            else Stage(rnd.choice(("receive", *DECIDING, "reintegrate")))
        )
        owner = rnd.choice(AGENCIES)
        deadline = None
        if stage != Stage.closed and rnd.random() < 0.95:
            due = NOW + timedelta(hours=rnd.randint(-24 * 10, 24 * 20))
            deadline = Deadline(
                due_at=due, source="test", reminder_at=due - timedelta(hours=12), stage=stage
            )
        handoffs = []
        if stage != Stage.closed and rnd.random() < 0.1:
            to = rnd.choice([a for a in AGENCIES if a != owner])
            handoffs.append(
                Handoff(
                    handoff_id=f"h-{i}",
                    kind=HandoffKind.referral,
                    from_agency=owner,
                    to_agency=to,
                    state=HandoffState.requested,
                    requested_at=NOW - timedelta(days=1),
                    requested_by="x",
                    accept_by=NOW + timedelta(hours=rnd.randint(-48, 48)),
                )
            )
        out.append(
            CaseState(
                case_id=f.case_id,
                version=rnd.randint(1, 30),
                stage=stage,
                status=status,
                facts=f,
                owner_agency=owner,
                province=province,
                assignee=rnd.choice((None, *USERS)),
                deadline=deadline,
                escalation_level=rnd.randint(0, 3),
                handoffs=handoffs,
                policy_version="p",
                stages=[StageRecord(stage=stage, entered_at=opened, owner_agency=owner)]
                if stage != Stage.closed
                else [],
                last_event_seq=rnd.randint(1, 40),
                opened_at=opened,
                closed_at=NOW if stage == Stage.closed else None,
                updated_at=NOW - timedelta(days=rnd.randint(0, 20)),
            )
        )
    return out


def expected_inbox(
    states: list[CaseState],
    p: Principal,
    view: str,
    *,
    stage: str | None = None,
    category: str | None = None,
    mine: bool = False,
    within: timedelta = timedelta(hours=48),
    descending: bool = False,
) -> list[str]:
    def matches(s: CaseState) -> bool:
        if not p.national and s.province != p.province:
            return False
        due = (
            s.deadline.due_at
            if s.deadline and s.status in (CaseStatus.Active, CaseStatus.FollowUp)
            else None
        )
        if view == "waiting_acceptance":
            if p.agency not in {
                h.to_agency for h in s.handoffs if h.state == HandoffState.requested
            }:
                return False
            if stage and s.stage.value != stage:
                return False
        else:
            if s.status != CaseStatus.Active or s.owner_agency != p.agency:
                return False
            if s.stage.value not in ((stage,) if stage else DECIDING):
                return False
        if category and category not in s.facts.categories:
            return False
        if mine and s.assignee != p.user_id:
            return False
        if view == "overdue" and not (due is not None and due < NOW):
            return False
        return not (view == "due_soon" and not (due is not None and NOW <= due <= NOW + within))

    far = datetime.max.replace(tzinfo=UTC)
    hits = [s for s in states if matches(s)]
    hits.sort(
        key=lambda s: (s.deadline.due_at if s.deadline else far, s.case_id), reverse=descending
    )
    return [s.case_id for s in hits]


async def _load(pool: asyncpg.Pool) -> list[CaseState]:
    states = build_states(N)
    await case_index.upsert_many(pool, states, "audit")
    await pool.execute("VACUUM ANALYZE common.case_index")  # as autovacuum leaves it
    return states


def principal(agency: AgencyRole, province: str = "01", user: str = "u1") -> Principal:
    return Principal(
        user_id=user, roles=frozenset({Role.caseworker}), agency=agency, province=province
    )


async def test_inbox_views_filters_order_and_total(db_pool):
    states = await _load(db_pool)
    assert await db_pool.fetchval("SELECT count(*) FROM common.case_index") == N
    cases = [
        (principal(AgencyRole.social_protection), "in_progress", {}),
        (principal(AgencyRole.police, "79"), "in_progress", {"descending": True}),
        (principal(AgencyRole.police, "*"), "in_progress", {}),  # national
        (principal(AgencyRole.social_protection), "in_progress", {"mine": True}),
        (
            principal(AgencyRole.border_guard, "48", "u2"),
            "in_progress",
            {"mine": True, "stage": "identify"},
        ),
        (principal(AgencyRole.social_protection), "in_progress", {"category": "child"}),
        (principal(AgencyRole.social_protection), "in_progress", {"stage": "reintegrate"}),
        (principal(AgencyRole.legal_aid), "waiting_acceptance", {}),
        (principal(AgencyRole.police, "*"), "waiting_acceptance", {"descending": True}),
        (principal(AgencyRole.social_protection), "due_soon", {}),
        (principal(AgencyRole.social_protection), "due_soon", {"within": timedelta(hours=2)}),
        (principal(AgencyRole.police), "overdue", {}),
        (principal(AgencyRole.police), "overdue", {"category": "abroad", "descending": True}),
    ]
    for p, view, kw in cases:
        want = expected_inbox(states, p, view, **kw)
        assert want or view == "due_soon", (p.agency, view, kw)  # the data set exercises every view
        got: list[str] = []
        offset = 0
        while True:  # every page, as a client pages through
            q = inbox_query(
                p,
                InboxView(view),
                NOW,
                kw.get("within", timedelta(hours=48)),
                Stage(kw["stage"]) if "stage" in kw else None,
                kw.get("category"),
                kw.get("mine", False),
                kw.get("descending", False),
                limit=200,
                offset=offset,
            )
            rows, total = await case_index.inbox(db_pool, q)
            assert total == len(want), (p.agency, view, kw)  # exact, no cut
            got += [r["case_id"] for r in rows]
            offset += 200
            if offset >= total:
                break
        assert got == want, (p.agency, view, kw)


async def _plan(pool: asyncpg.Pool, sql: str, *args: Any) -> str:
    rows = await pool.fetch(f"EXPLAIN {sql}", *args)
    return "\n".join(r[0] for r in rows)


async def test_each_screen_uses_its_index_on_10000_rows(db_pool):
    await _load(db_pool)
    plans: dict[str, str] = {}
    for name, p, view, mine in [
        ("inbox in_progress", principal(AgencyRole.social_protection), "in_progress", False),
        ("inbox national", principal(AgencyRole.police, "*"), "in_progress", False),
        ("inbox mine", principal(AgencyRole.social_protection), "in_progress", True),
        ("inbox overdue", principal(AgencyRole.police), "overdue", False),
        ("inbox due_soon", principal(AgencyRole.police), "due_soon", False),
        ("inbox waiting_acceptance", principal(AgencyRole.legal_aid), "waiting_acceptance", False),
    ]:
        q = inbox_query(p, InboxView(view), NOW, timedelta(hours=48), None, None, mine)
        page, count, args = case_index.inbox_sql(q)
        plans[name] = await _plan(db_pool, page, *args, 50, 0)
        plans[name + " (count)"] = await _plan(db_pool, count, *args)
    sql, args = oversight_repo._stuck_sql(oversight_repo.StuckFilter(now=NOW, province="01"))
    plans["stuck"] = await _plan(db_pool, sql, *args)
    sql, args = oversight_repo._stuck_sql(oversight_repo.StuckFilter(now=NOW, province=None))
    plans["stuck national"] = await _plan(db_pool, sql, *args)
    plans["board"] = await _plan(
        db_pool,
        f"""SELECT stage, owner_agency, count(*) FILTER (WHERE deadline_at < $1) FROM common.case_index
                     WHERE province = $2 AND {oversight_repo.OPEN} GROUP BY stage, owner_agency""",
        NOW,
        "01",
    )
    for name, plan in plans.items():
        print(f"-- {name}\n{plan}")
        assert "Seq Scan" not in plan, (name, plan)
    assert "case_index_inbox" in plans["inbox in_progress"]
    assert "case_index_inbox_national" in plans["inbox national"]
    assert "case_index_assignee" in plans["inbox mine"] or "case_index_inbox" in plans["inbox mine"]
    assert "case_index_pending" in plans["inbox waiting_acceptance"]
    assert (
        "case_index_stuck" in plans["stuck"]
        and "case_index_stuck_national" in plans["stuck national"]
    )
    assert "case_index_board" in plans["board"]
    # read in index order, no sort of the matches ("mine" sorts the caller's own few cases after its index)
    for name in ("inbox in_progress", "inbox national", "inbox overdue", "stuck", "stuck national"):
        assert "Sort" not in plans[name], (name, plans[name])


async def test_a_transfer_from_another_province_waits_in_the_receiving_provinces_inbox_and_stuck_list(
    db_pool,
):
    def case(i: int, province: str, handoff: Handoff) -> CaseState:
        opener = Actor(
            user_id="bg-1",
            agency=AgencyRole.border_guard,
            roles=frozenset({Role.caseworker}),
            province=province,
        )
        f = CaseFacts(
            case_id=f"case-t{i}",
            person_ref=f"p-t{i}",
            province=province,
            channel=Channel.border_guard_handover,
            age_band=AgeBand.adult,
            abroad=True,
            foreign_national=False,
            opened_by=opener,
            opened_at=NOW - timedelta(days=3),
        )
        return CaseState(
            case_id=f.case_id,
            version=4,
            stage=Stage.protect,
            status=CaseStatus.Active,
            facts=f,
            owner_agency=AgencyRole.border_guard,
            province=province,
            handoffs=[handoff],
            policy_version="p",
            last_event_seq=4,
            opened_at=f.opened_at,
            updated_at=NOW,
        )

    def handoff(kind: HandoffKind, from_province: str, to_province: str | None) -> Handoff:
        return Handoff(
            handoff_id="h1",
            kind=kind,
            from_agency=AgencyRole.border_guard,
            to_agency=AgencyRole.social_protection,
            state=HandoffState.requested,
            requested_at=NOW - timedelta(hours=2),
            requested_by="bg-1",
            accept_by=NOW + timedelta(days=1),
            from_province=from_province,
            to_province=to_province,
        )

    transfer = case(1, "20", handoff(HandoffKind.transfer, "20", "40"))  # Lạng Sơn → Nghệ An
    local = case(2, "40", handoff(HandoffKind.referral, "40", None))  # within Nghệ An
    await case_index.upsert_many(db_pool, [transfer, local], "audit")

    async def waiting(province: str | None) -> list[str]:
        q = case_index.InboxQuery(
            view="waiting_acceptance",
            agency="social_protection",
            province=province,
            now=NOW,
            due_within=timedelta(hours=48),
            stages=(),
        )
        rows, total = await case_index.inbox(db_pool, q)
        assert total == len(rows)
        return sorted(r["case_id"] for r in rows)

    assert await waiting("40") == ["case-t1", "case-t2"]  # the receiving province sees the transfer
    assert await waiting("20") == []  # the sending province's social protection is not asked
    assert await waiting(None) == ["case-t1", "case-t2"]  # national

    async def stuck(province: str) -> list[str]:
        f = oversight_repo.StuckFilter(now=NOW, province=province, reasons={"handoff_waiting"})
        return sorted(r["case_id"] for r in await oversight_repo.stuck(db_pool, f))

    assert await stuck("40") == ["case-t1", "case-t2"]
    assert await stuck("20") == ["case-t1"]  # the sending supervisor sees it waiting too
    row = await case_index.get(db_pool, "case-t1")
    assert row is not None and row["pending_at"] == ["social_protection@40"]
    assert row["pending_handoffs"][0]["to_province"] == "40"
