"""DOMAIN.md §5 KPIs for a jurisdiction and a period, computed from the audit log and the projection.

Every formula is written down in kpis.yaml next to its target; this module implements exactly those."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter

from services.oversight import criminal_justice
from services.oversight import repository as repo
from services.oversight.models import Compliance, Kpis, Ratio, StageTiming
from shared.db import Conn

KPI_FILE = Path(__file__).with_name("kpis.yaml")
STAGES = ("receive", "verify", "identify", "rescue", "protect", "reintegrate")
FINAL_STATUSES = ("ActualVictimOfTrafficking", "NotAVictimOfTrafficking")
CLOSED = ("Closed", "ClosedReferred")
# returnees (seed:003): handed over at the border or at sea, repatriated through an embassy, or back from
# abroad by themselves (any channel with the abroad fact)
RETURN_CHANNELS = ("embassy_repatriation", "border_guard_handover", "coast_guard_handover")
# not a victim after all: out of the returnee KPI's denominator
NOT_VICTIM_OUTCOMES = ("unfounded", "not_a_victim", "not_relevant")


@dataclass(frozen=True)
class KpiConfig:
    version: str
    in_time: timedelta
    ratios: dict[str, dict[str, Any]]
    disclosure: dict[str, Any]  # reports leaving their jurisdiction: see reports.py


@lru_cache(maxsize=4)
def load_config(path: Path = KPI_FILE) -> KpiConfig:
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    in_time = TypeAdapter(timedelta).validate_python(raw["returnee_support_in_time"])
    return KpiConfig(
        version=raw["version"],
        in_time=in_time,
        ratios={r["id"]: r for r in raw["ratios"]},
        disclosure=dict(raw.get("disclosure") or {}),
    )


def percentile(values: list[float], p: float) -> float | None:
    """Linear interpolation between order statistics (PostgreSQL percentile_cont)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _ratio(
    cfg: KpiConfig, kpi_id: str, num: int, den: int, lang: str = "en", **detail: Any
) -> Ratio:
    r = cfg.ratios[kpi_id]
    value = num / den if den else None
    target = float(r["target"])
    met = (
        None if value is None else (value >= target if r["comparison"] == ">=" else value > target)
    )
    return Ratio(
        id=kpi_id,
        title=r[f"title_{lang}"],
        numerator=num,
        denominator=den,
        value=value,
        target=target,
        comparison=r["comparison"],
        met=met,
        formula=" ".join(str(r.get(f"formula_{lang}", r["formula"])).split()),
        detail=detail,
    )


async def compute(
    conn: Conn,
    province: str | None,
    start: datetime,
    end: datetime,
    lang: str = "en",
    cfg: KpiConfig | None = None,
) -> Kpis:
    cfg = cfg or load_config()
    received = await repo.received_cases(conn, province, start, end)
    classified = resolved = victims = full_path = returnees = in_time = pending = 0
    not_victims = 0
    for c in received:
        st: dict[str, Any] = c["state_at_end"] or {}
        decided = set(c["decided_stages"] or [])
        if "receive" in decided:
            classified += 1
        if st.get("status") in CLOSED or st.get("trafficking_status") in FINAL_STATUSES:
            resolved += 1
        if c["classification"] == "trafficking_suspected" and st.get("outcome") not in (
            "unfounded",
            "not_a_victim",
        ):
            victims += 1
            if {"verify", "identify", "protect"} <= decided:
                full_path += 1
        if c["channel"] in RETURN_CHANNELS or c["is_abroad"]:
            if (
                st.get("outcome") in NOT_VICTIM_OUTCOMES
                or st.get("trafficking_status") == "NotAVictimOfTrafficking"
            ):
                not_victims += 1
                continue
            returnees += 1
            limit = c["opened_at"] + cfg.in_time
            first = c["first_service_at"]
            if first is not None and first <= limit:
                in_time += 1
            elif first is None and limit > end:
                pending += 1
    n = len(received)
    ratios = [
        _ratio(cfg, "reports_classified", classified, n, lang),
        _ratio(cfg, "resolution_rate", resolved, n, lang),
        _ratio(cfg, "victims_full_path", full_path, victims, lang),
        _ratio(
            cfg,
            "returnees_supported_in_time",
            in_time,
            returnees,
            lang,
            pending=pending,
            not_victims_left_out=not_victims,
            in_time_limit=str(cfg.in_time),
        ),
    ]
    cj = await criminal_justice.counts(conn, province, start, end)
    ratios += [
        _ratio(cfg, "crime_reports_resolved", cj.reports_decided, cj.reports_received, lang),
        _ratio(cfg, "criminal_cases_solved", cj.cases_solved, cj.cases_opened, lang),
        _ratio(cfg, "criminal_cases_prosecuted", cj.cases_indicted, cj.cases_at_procuracy, lang),
        _ratio(cfg, "criminal_cases_tried", cj.cases_tried, cj.cases_indicted_in_period, lang),
        _ratio(
            cfg,
            "criminal_cases_prosecuted_and_tried",
            cj.at_procuracy_tried,
            cj.cases_at_procuracy,
            lang,
        ),
    ]
    durations: dict[str, list[float]] = defaultdict(list)
    compliance: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in await repo.stage_completions(conn, province, start, end):
        if r["entered_at"] is not None:
            durations[r["stage"]].append(
                (r["occurred_at"] - r["entered_at"]).total_seconds() / 3600
            )
        if r["due_at"] is not None:
            cell = compliance[(r["stage"], r["agency"] or "unknown")]
            cell[0] += 1
            cell[1] += int(r["occurred_at"] <= r["due_at"])
    timing = [
        StageTiming(
            stage=s,
            completed=len(durations[s]),
            p50_hours=_round(percentile(durations[s], 0.5)),
            p90_hours=_round(percentile(durations[s], 0.9)),
        )
        for s in STAGES
        if durations.get(s)
    ]
    order = {s: i for i, s in enumerate(STAGES)}
    comp = [
        Compliance(
            stage=s, agency=a, completed=v[0], on_time=v[1], rate=v[1] / v[0] if v[0] else None
        )
        for (s, a), v in sorted(
            compliance.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1])
        )
    ]
    return Kpis(
        province=province or "*",
        period_from=start,
        period_to=end,
        kpis_version=cfg.version,
        ratios=ratios,
        time_in_stage=timing,
        deadline_compliance=comp,
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)
