"""Reports to the steering committee (Ban Chỉ đạo 138): 6-monthly, annual and ad hoc (đột xuất), for a
jurisdiction and any period, as JSON, CSV or printable HTML in Vietnamese (English available).

Disclosure control for a report that leaves its jurisdiction (the caller's province differs from the
report's, a national export of a province, or `external=true`). Suppressing cells below 5 is not enough on
its own: two overlapping periods (1 Jan-1 Mar and 2 Jan-1 Mar) can be subtracted to isolate one arrival.
So, consistently, for every such report:

1. Whole calendar months only (Vietnam time), at least `min_window_months` (kpis.yaml, default 1): two
   periods then differ by whole months, and a month is itself the smallest period anyone can ask for.
2. Every count is published as a function of the true count alone: 0 stays 0, 1-4 show as "<5", 5 and more
   are rounded to the nearest multiple of 5 (`rounding_base`). A cell shows the same value in every report
   and the difference of two published counts is off by up to 4 either way, so subtracting reports
   (overlapping periods, a total minus its other cells, national minus the other provinces) does not pin a
   count below 5. Totals are rounded on their own, so they need not equal the sum of their rounded cells.
3. A rate is withheld ("<5") when its numerator or denominator is below 5, and otherwise computed from the
   rounded counts (a precise rate over an exact denominator would give the numerator back); percentiles of
   fewer than 5 stage completions are withheld.
Inside the jurisdiction (the province's own staff, a national user on the national report) figures are exact."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from fastapi.responses import Response

from services.oversight import kpi as kpi_mod
from services.oversight import labels
from services.oversight import repository as repo
from services.oversight.models import ReportFormat, ReportKind
from shared import agencies
from shared.db import Conn
from shared.domain import AgencyRole

SMALL_CELL = 5
AGE_GROUPS = ("under_16", "16_17", "adult", "unknown")
SEXES = (
    "Feminine",
    "Masculine",
    "TransgenderFeminine",
    "TransgenderMasculine",
    "NonConforming",
    "NonSpecifiedUnknown",
    "unknown",
)
SUPPRESSED = "<5"
VN = timezone(timedelta(hours=7))


class DisclosureError(ValueError):
    """A report period that a report leaving its jurisdiction may not cover (the message names the field)."""


def disclosure_config() -> tuple[int, int]:
    """(min_window_months, rounding_base) from kpis.yaml's `disclosure` section."""
    raw = kpi_mod.load_config().disclosure
    return int(raw.get("min_window_months", 1)), int(raw.get("rounding_base", SMALL_CELL))


def check_disclosure_window(start: datetime, end: datetime) -> None:
    """Whole calendar months (00:00 on the 1st, Vietnam time), at least min_window_months long."""
    min_months, _ = disclosure_config()
    for name, t in (("from", start), ("to", end)):
        local = t.astimezone(VN)
        if (local.day, local.hour, local.minute, local.second, local.microsecond) != (
            1,
            0,
            0,
            0,
            0,
        ):
            raise DisclosureError(
                f"{name}: a report outside your jurisdiction covers whole calendar months, from and to on the 1st "
                f"of a month at 00:00+07:00 (got {local.isoformat()})"
            )
    s, e = start.astimezone(VN), end.astimezone(VN)
    months = (e.year - s.year) * 12 + e.month - s.month
    if months < min_months:
        raise DisclosureError(
            f"to: a report outside your jurisdiction covers at least {min_months} month(s)"
        )


LABELS: dict[str, dict[str, str]] = {
    "vi": {
        "title.six_monthly": "Báo cáo 6 tháng công tác phòng, chống mua bán người",
        "title.annual": "Báo cáo tổng kết công tác phòng, chống mua bán người năm {year}",
        "title.ad_hoc": "Báo cáo đột xuất công tác phòng, chống mua bán người",
        "to": "Kính gửi: Ban Chỉ đạo 138",
        "province": "Địa bàn",
        "period": "Kỳ báo cáo",
        "generated": "Ngày lập",
        "national": "Toàn quốc",
        "suppressed_note": (
            'Số liệu dưới 5 được hiển thị là "<5", các số khác được làm tròn đến bội số của 5, '
            "để bảo vệ danh tính nạn nhân."
        ),
        "period_note": "Số liệu tính theo giờ Việt Nam (UTC+7), từ 00:00 ngày đầu kỳ đến hết ngày cuối kỳ.",
        "kpis": "Chỉ số đánh giá",
        "kpi": "Chỉ số",
        "numerator": "Tử số",
        "denominator": "Mẫu số",
        "value": "Tỷ lệ",
        "target": "Chỉ tiêu",
        "met": "Kết quả",
        "yes": "Đạt",
        "no": "Chưa đạt",
        "na": "—",
        "received": "Vụ việc tiếp nhận trong kỳ",
        "by_channel": "Theo kênh tiếp nhận",
        "by_category": "Theo nhóm",
        "by_age_group": "Theo nhóm tuổi",
        "by_sex": "Theo giới tính",
        "by_commune": "Theo xã, phường",
        "sex": "Giới tính",
        "identified": "Số người được xác định là nạn nhân trong kỳ",
        "support": "Hỗ trợ nạn nhân trong kỳ theo chế độ hỗ trợ",
        "support_type": "Chế độ hỗ trợ",
        "services": "Lượt hỗ trợ",
        "persons": "Số người được hỗ trợ",
        "outcomes": "Kết quả (vụ việc tiếp nhận trong kỳ, đến cuối kỳ)",
        "open_by_stage": "Vụ việc đang xử lý cuối kỳ theo giai đoạn",
        "overdue": "Quá hạn",
        "count": "Số vụ việc",
        "escalations": "Số lần chuyển cấp trên do quá hạn",
        "level": "Cấp",
        "times": "Số lần",
        "time_in_stage": "Thời gian xử lý theo giai đoạn (giờ)",
        "stage": "Giai đoạn",
        "completed": "Hoàn thành",
        "p50": "Trung vị (giờ)",
        "p90": "90% vụ việc trong (giờ)",
        "compliance": "Tuân thủ thời hạn theo giai đoạn và cơ quan",
        "agency": "Cơ quan",
        "on_time": "Đúng hạn",
        "rate": "Tỷ lệ",
        "metric": "Nội dung",
        "section": "Mục",
        "formula": "Cách tính",
        "total": "Tổng",
        "transfers": "Chuyển tỉnh trong kỳ (vụ việc theo người được hỗ trợ)",
        "commune": "Xã, phường",
        "age_group": "Nhóm tuổi",
        "channel": "Kênh tiếp nhận",
        "outcome": "Kết quả",
        "csv_header": "Mục,Nội dung,Cột,Giá trị",
    },
    "en": {
        "title.six_monthly": "Six-monthly report on counter-trafficking work",
        "title.annual": "Annual review of counter-trafficking work, {year}",
        "title.ad_hoc": "Ad hoc report on counter-trafficking work",
        "to": "To: Steering Committee 138",
        "province": "Jurisdiction",
        "period": "Period",
        "generated": "Generated",
        "national": "National",
        "suppressed_note": (
            'Counts below 5 are shown as "<5" and other counts rounded to a multiple of 5, '
            "to protect victims' identity."
        ),
        "period_note": "Figures in Vietnam time (UTC+7), from 00:00 on the first day to the end of the last day.",
        "kpis": "Indicators",
        "kpi": "Indicator",
        "numerator": "Numerator",
        "denominator": "Denominator",
        "value": "Rate",
        "target": "Target",
        "met": "Result",
        "yes": "Met",
        "no": "Not met",
        "na": "—",
        "received": "Cases received in the period",
        "by_channel": "By channel",
        "by_category": "By category",
        "by_age_group": "By age group",
        "by_sex": "By sex",
        "by_commune": "By commune",
        "sex": "Sex",
        "identified": "Persons identified as victims in the period",
        "support": "Support delivered in the period by type",
        "support_type": "Type of support",
        "services": "Services",
        "persons": "Persons supported",
        "outcomes": "Outcomes (cases received in the period, at its end)",
        "open_by_stage": "Open cases at the end of the period by stage",
        "overdue": "Overdue",
        "count": "Cases",
        "escalations": "Escalations after a missed deadline",
        "level": "Level",
        "times": "Times",
        "time_in_stage": "Time in stage (hours)",
        "stage": "Stage",
        "completed": "Completed",
        "p50": "Median (hours)",
        "p90": "90% of cases within (hours)",
        "compliance": "Deadline compliance by stage and agency",
        "agency": "Agency",
        "on_time": "On time",
        "rate": "Rate",
        "metric": "Item",
        "section": "Section",
        "formula": "Formula",
        "total": "Total",
        "transfers": "Transfers between provinces in the period (the case travels with the person)",
        "commune": "Commune",
        "age_group": "Age group",
        "channel": "Channel",
        "outcome": "Outcome",
        "csv_header": "Section,Item,Column,Value",
    },
}


def default_period(kind: ReportKind, now: datetime) -> tuple[datetime, datetime]:
    """The current half-year or year in Vietnam's time zone."""
    local = now.astimezone(VN)
    if kind == ReportKind.annual:
        start = datetime(local.year, 1, 1, tzinfo=VN)
    else:
        start = datetime(local.year, 1 if local.month <= 6 else 7, 1, tzinfo=VN)
    return start, period_end(kind, start)


def period_end(kind: ReportKind, start: datetime) -> datetime:
    months = 12 if kind == ReportKind.annual else 6
    m = start.month - 1 + months
    return start.replace(year=start.year + m // 12, month=m % 12 + 1)


async def build(
    conn: Conn,
    kind: ReportKind,
    province: str | None,
    start: datetime,
    end: datetime,
    lang: str,
    now: datetime,
) -> dict[str, Any]:
    """The report's figures, unsuppressed (rendering applies suppression)."""
    kpis = await kpi_mod.compute(conn, province, start, end, lang)
    received = await repo.received_cases(conn, province, start, end)
    by_channel = Counter(r["channel"] for r in received)
    by_category: Counter[str] = Counter()
    by_age: Counter[str] = Counter()
    by_sex: Counter[str] = Counter()
    by_commune: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for r in received:
        by_category["child" if r["is_child"] else "adult"] += 1
        by_category["abroad" if r["is_abroad"] else "domestic"] += 1
        st = r["state_at_end"] or {}
        f = st.get("facts") or {}
        by_age[f.get("age_band") or "unknown"] += 1
        by_sex[f.get("sex") or "unknown"] += 1  # cases opened before the facts carried it: unknown
        by_commune[f.get("commune") or "unknown"] += 1
        outcomes[st.get("outcome") or f"open:{st.get('stage', '?')}"] += 1
    support = await repo.services_by_type(conn, province, start, end)
    identified = await repo.identified_victims(conn, province, start, end)
    open_rows = await repo.open_counts(conn, province, end)
    esc = await repo.escalations(conn, province, start, end)
    moved = await repo.transfers(conn, province, start, end)
    return {
        "kind": kind.value,
        "province": province or "*",
        "period_from": start.isoformat(),
        "period_to": end.isoformat(),
        "generated_at": now.astimezone(UTC).isoformat(),
        "kpis_version": kpis.kpis_version,
        "received": len(received),
        "by_channel": dict(sorted(by_channel.items())),
        "by_category": dict(sorted(by_category.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "by_age_group": {k: by_age[k] for k in AGE_GROUPS if by_age[k]},
        "by_sex": {k: by_sex[k] for k in SEXES if by_sex[k]},
        "by_commune": dict(sorted(by_commune.items())),
        "identified_victims": identified,
        "support_by_type": [
            {"type": r["service_type"], "services": r["n"], "persons": r["persons"]}
            for r in support
        ],
        "open_by_stage": [
            {"stage": r["stage"], "count": r["n"], "overdue": r["overdue"]} for r in open_rows
        ],
        "escalations": [{"level": r["level"], "count": r["n"]} for r in esc],
        "transfers": moved,
        "kpis": [
            {
                "id": k.id,
                "title": k.title,
                "source": kpi_mod.load_config().ratios[k.id].get("source"),
                "numerator": k.numerator,
                "denominator": k.denominator,
                "value": k.value,
                "target": k.target,
                "comparison": k.comparison,
                "met": k.met,
                "formula": " ".join(
                    str(
                        kpi_mod.load_config().ratios[k.id].get(f"formula_plain_{lang}") or k.formula
                    ).split()
                ),
            }
            for k in kpis.ratios
        ],
        "time_in_stage": [t.model_dump() for t in kpis.time_in_stage],
        "deadline_compliance": [
            {
                "stage": c.stage,
                "agency": c.agency,
                "completed": c.completed,
                "on_time": c.on_time,
                "rate": c.rate,
            }
            for c in kpis.deadline_compliance
        ],
    }


def _count(n: int, suppress: bool) -> int | str:
    """What a count publishes as: exact inside the jurisdiction; outside, 0, "<5", or rounded to the base."""
    if not suppress or n == 0:
        return n
    if n < SMALL_CELL:
        return SUPPRESSED
    base = disclosure_config()[1]
    return (n + base // 2) // base * base


def _rate(v: float | None, num: int, den: int, suppress: bool) -> float | str | None:
    if not suppress:
        return None if v is None else round(v, 4)
    if num < SMALL_CELL or den < SMALL_CELL:
        return SUPPRESSED
    rn, rd = _count(num, True), _count(den, True)
    assert isinstance(rn, int) and isinstance(rd, int)
    return round(rn / rd, 2) if rd else None


def suppressed(report: dict[str, Any], suppress: bool) -> dict[str, Any]:
    """A copy of the report with small cells suppressed (no-op when `suppress` is False)."""
    r: dict[str, Any] = json.loads(json.dumps(report))
    r["suppressed"] = suppress
    if not suppress:
        return r
    r["received"] = _count(r["received"], True)
    for key in ("by_channel", "by_category", "outcomes", "by_age_group", "by_sex", "by_commune"):
        r[key] = {k: _count(v, True) for k, v in r.get(key, {}).items()}
    r["identified_victims"] = _count(r.get("identified_victims", 0), True)
    for row in r.get("support_by_type", []):
        row["services"], row["persons"] = (
            _count(row["services"], True),
            _count(row["persons"], True),
        )
    for row in r["open_by_stage"]:
        row["count"], row["overdue"] = _count(row["count"], True), _count(row["overdue"], True)
    for row in r["escalations"]:
        row["count"] = _count(row["count"], True)
    r["transfers"] = {k: _count(v, True) for k, v in r.get("transfers", {}).items()}
    for k in r["kpis"]:
        k["value"] = _rate(k["value"], k["numerator"], k["denominator"], True)
        if not isinstance(k["value"], float):
            k["met"] = None
        else:  # judged on the published value, so "met" says nothing the value does not
            k["met"] = (
                k["value"] >= k["target"] if k["comparison"] == ">=" else k["value"] > k["target"]
            )
        k["numerator"], k["denominator"] = (
            _count(k["numerator"], True),
            _count(k["denominator"], True),
        )
    for t in r["time_in_stage"]:
        if t["completed"] < SMALL_CELL:  # percentiles of fewer than 5 cases describe individuals
            t["p50_hours"] = t["p90_hours"] = SUPPRESSED
        t["completed"] = _count(t["completed"], True)
    for c in r["deadline_compliance"]:
        c["rate"] = _rate(c["rate"], c["on_time"], c["completed"], True)
        c["completed"], c["on_time"] = _count(c["completed"], True), _count(c["on_time"], True)
    return r


def title(r: dict[str, Any], lang: str) -> str:
    year = datetime.fromisoformat(r["period_from"]).astimezone(VN).year
    return LABELS[lang]["title." + r["kind"]].format(year=year)


def _cell(v: Any, lang: str) -> str:
    """A published value as the committee reads it: '<5', '—', numbers with the language's separators."""
    L = LABELS[lang]
    if v is None:
        return L["na"]
    if isinstance(v, bool):
        return L["yes"] if v else L["no"]
    if isinstance(v, float):
        return labels.number(v, lang, 3)
    if isinstance(v, int):
        return labels.number(v, lang, 0)
    return str(v)


def _pct(v: Any, lang: str) -> str:
    return labels.percent(v, lang) if isinstance(v, float) else _cell(v, lang)


# A report as blocks, rendered the same way to HTML and PDF: ("h2", text), ("p", text), ("note", text),
# ("table", headers, rows of strings), ("list", [(bold, text)]).
Block = tuple[Any, ...]


def agency_during(role: str, r: dict[str, Any], lang: str) -> str:
    """The role's label and the body (or bodies, with their dates) that held it during the report's
    period, in Vietnam time: a half-year across 1/3/2025 names both Sở LĐ-TB&XH and Sở Y tế."""
    start = datetime.fromisoformat(r["period_from"]).astimezone(VN).date()
    end = datetime.fromisoformat(r["period_to"]).astimezone(VN).date()
    role_label = labels.label("agency", role, lang)
    try:
        bodies = agencies.label_during(AgencyRole(role), start, end, "vi" if lang == "vi" else "en")
    except ValueError:  # not a role key: its label only
        return role_label
    return role_label if bodies == role_label else f"{role_label} ({bodies})"


def blocks(r: dict[str, Any], lang: str) -> list[Block]:
    L = LABELS[lang]
    lab = labels.label
    start, end = datetime.fromisoformat(r["period_from"]), datetime.fromisoformat(r["period_to"])
    out: list[Block] = [
        ("p", f"{L['province']}: {labels.province_name(r['province'], lang)}"),
        ("p", f"{L['period']}: {labels.period(start, end, lang)}"),
        (
            "p",
            f"{L['generated']}: {labels.date_time(datetime.fromisoformat(r['generated_at']), lang)}",
        ),
        ("note", L["period_note"]),
    ]
    if r["suppressed"]:
        out.append(("note", L["suppressed_note"]))
    out.append(("h2", f"1. {L['kpis']}"))
    out.append(
        (
            "table",
            [L["kpi"], L["numerator"], L["denominator"], L["value"], L["target"], L["met"]],
            [
                [
                    k["title"],
                    _cell(k["numerator"], lang),
                    _cell(k["denominator"], lang),
                    _pct(k["value"], lang),
                    f"{'>' if k['comparison'] == '>' else '≥'} {labels.percent(float(k['target']), lang)}",
                    _cell(k["met"], lang),
                ]
                for k in r["kpis"]
            ],
        )
    )
    out.append(("h2", f"2. {L['received']}: {_cell(r['received'], lang)}"))
    out.append(("p", L["by_channel"]))
    out.append(
        (
            "table",
            [L["channel"], L["count"]],
            [[lab("channel", k, lang), _cell(v, lang)] for k, v in r["by_channel"].items()],
        )
    )
    out.append(("p", L["by_age_group"]))
    out.append(
        (
            "table",
            [L["age_group"], L["count"]],
            [[lab("age", k, lang), _cell(v, lang)] for k, v in r.get("by_age_group", {}).items()],
        )
    )
    out.append(("p", L["by_category"]))
    out.append(
        (
            "table",
            [L["metric"], L["count"]],  # age is in the age groups above (unknown ages included)
            [
                [lab("category", k, lang), _cell(v, lang)]
                for k, v in r["by_category"].items()
                if k in ("abroad", "domestic")
            ],
        )
    )
    out.append(("p", L["by_sex"]))
    out.append(
        (
            "table",
            [L["sex"], L["count"]],
            [[lab("sex", k, lang), _cell(v, lang)] for k, v in r.get("by_sex", {}).items()],
        )
    )
    out.append(("p", L["by_commune"]))
    out.append(
        (
            "table",
            [L["commune"], L["count"]],
            [[lab("commune", k, lang), _cell(v, lang)] for k, v in r.get("by_commune", {}).items()],
        )
    )
    out.append(("h2", f"3. {L['identified']}: {_cell(r.get('identified_victims', 0), lang)}"))
    out.append(("h2", f"4. {L['support']}"))
    out.append(
        (
            "table",
            [L["support_type"], L["services"], L["persons"]],
            [
                [
                    lab("support", s["type"], lang),
                    _cell(s["services"], lang),
                    _cell(s["persons"], lang),
                ]
                for s in r.get("support_by_type", [])
            ],
        )
    )
    out.append(("h2", f"5. {L['outcomes']}"))
    out.append(
        (
            "table",
            [L["outcome"], L["count"]],
            [[lab("outcome", k, lang), _cell(v, lang)] for k, v in r["outcomes"].items()],
        )
    )
    out.append(("h2", f"6. {L['open_by_stage']}"))
    out.append(
        (
            "table",
            [L["stage"], L["count"], L["overdue"]],
            [
                [lab("stage", x["stage"], lang), _cell(x["count"], lang), _cell(x["overdue"], lang)]
                for x in r["open_by_stage"]
            ],
        )
    )
    out.append(("h2", f"7. {L['escalations']}"))
    out.append(
        (
            "table",
            [L["level"], L["times"]],
            [
                [lab("level", str(x["level"]), lang), _cell(x["count"], lang)]
                for x in r["escalations"]
            ],
        )
    )
    out.append(("p", L["transfers"]))
    out.append(
        (
            "table",
            [L["metric"], L["count"]],
            [[lab("transfer", k, lang), _cell(v, lang)] for k, v in r.get("transfers", {}).items()],
        )
    )
    out.append(("h2", f"8. {L['time_in_stage']}"))
    out.append(
        (
            "table",
            [L["stage"], L["completed"], L["p50"], L["p90"]],
            [
                [
                    lab("stage", t["stage"], lang),
                    _cell(t["completed"], lang),
                    _cell(t["p50_hours"], lang),
                    _cell(t["p90_hours"], lang),
                ]
                for t in r["time_in_stage"]
            ],
        )
    )
    out.append(("h2", f"9. {L['compliance']}"))
    out.append(
        (
            "table",
            [L["stage"], L["agency"], L["completed"], L["on_time"], L["rate"]],
            [
                [
                    lab("stage", c["stage"], lang),
                    agency_during(c["agency"], r, lang),
                    _cell(c["completed"], lang),
                    _cell(c["on_time"], lang),
                    _pct(c["rate"], lang),
                ]
                for c in r["deadline_compliance"]
            ],
        )
    )
    out.append(("h2", L["formula"]))
    out.append(("list", [(k["title"], k["formula"]) for k in r["kpis"]]))
    return out


def rows(report: dict[str, Any], lang: str) -> list[tuple[str, str, str, Any]]:
    """(section, key, column, value) rows: the keys and values of the CSV body."""
    return [r[:4] for r in labelled_rows(report, lang)]


def labelled_rows(
    report: dict[str, Any], lang: str
) -> list[tuple[str, str, str, Any, str, str, str]]:
    """(section, key, column, value, and their labels) rows: the CSV body. Keys stay for machines; every
    label is the committee's (GLOSSARY.md)."""
    L = LABELS[lang]
    lab = labels.label
    out: list[tuple[str, str, str, Any, str, str, str]] = []

    def add(
        section: str,
        key: str,
        column: str,
        value: Any,
        sec_label: str,
        key_label: str,
        col_label: str,
    ) -> None:
        out.append((section, key, column, value, sec_label, key_label, col_label))

    start, end = (
        datetime.fromisoformat(report["period_from"]),
        datetime.fromisoformat(report["period_to"]),
    )
    add("meta", "kind", "value", report["kind"], L["section"], title(report, lang), "")
    add(
        "meta",
        "province",
        "value",
        report["province"],
        L["province"],
        labels.province_name(report["province"], lang),
        "",
    )
    add(
        "meta",
        "period_from",
        "value",
        report["period_from"],
        L["period"],
        labels.period(start, end, lang),
        "",
    )
    add(
        "meta",
        "period_to",
        "value",
        report["period_to"],
        L["period"],
        labels.period(start, end, lang),
        "",
    )
    add(
        "meta",
        "suppressed",
        "value",
        report["suppressed"],
        L["suppressed_note"] if report["suppressed"] else "",
        "",
        "",
    )
    add("received", "total", "count", report["received"], L["received"], L["total"], L["count"])
    for k in report["kpis"]:
        for col in ("numerator", "denominator", "value", "target", "met"):
            v = k[col]
            col_label = L[col]
            add("kpis", k["id"], col, v, L["kpis"], k["title"], col_label)
    groups = (
        ("by_channel", "channel"),
        ("by_category", "category"),
        ("by_age_group", "age"),
        ("by_sex", "sex"),
        ("by_commune", "commune"),
        ("outcomes", "outcome"),
    )
    for key, group in groups:
        sec = L["outcomes"] if key == "outcomes" else L[key]
        for k, v in report.get(key, {}).items():
            add(key, k, "count", v, sec, lab(group, k, lang), L["count"])
    add(
        "identified_victims",
        "total",
        "count",
        report.get("identified_victims", 0),
        L["identified"],
        L["total"],
        L["count"],
    )
    for s in report.get("support_by_type", []):
        add(
            "support_by_type",
            s["type"],
            "services",
            s["services"],
            L["support"],
            lab("support", s["type"], lang),
            L["services"],
        )
        add(
            "support_by_type",
            s["type"],
            "persons",
            s["persons"],
            L["support"],
            lab("support", s["type"], lang),
            L["persons"],
        )
    for row in report["open_by_stage"]:
        add(
            "open_by_stage",
            row["stage"],
            "count",
            row["count"],
            L["open_by_stage"],
            lab("stage", row["stage"], lang),
            L["count"],
        )
        add(
            "open_by_stage",
            row["stage"],
            "overdue",
            row["overdue"],
            L["open_by_stage"],
            lab("stage", row["stage"], lang),
            L["overdue"],
        )
    for row in report["escalations"]:
        add(
            "escalations",
            f"level_{row['level']}",
            "count",
            row["count"],
            L["escalations"],
            lab("level", str(row["level"]), lang),
            L["times"],
        )
    for k, v in report.get("transfers", {}).items():
        add("transfers", k, "count", v, L["transfers"], lab("transfer", k, lang), L["count"])
    for t in report["time_in_stage"]:
        for c in ("completed", "p50_hours", "p90_hours"):
            add(
                "time_in_stage",
                t["stage"],
                c,
                t[c],
                L["time_in_stage"],
                lab("stage", t["stage"], lang),
                L[c.removesuffix("_hours")],
            )
    for c in report["deadline_compliance"]:
        for col in ("completed", "on_time", "rate"):
            add(
                "deadline_compliance",
                f"{c['stage']}/{c['agency']}",
                col,
                c[col],
                L["compliance"],
                f"{lab('stage', c['stage'], lang)} – {agency_during(c['agency'], report, lang)}",
                L[col],
            )
    return out


def to_csv(report: dict[str, Any], lang: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "column", "value", *LABELS[lang]["csv_header"].split(",")[:3]])
    for row in labelled_rows(report, lang):
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def to_html(r: dict[str, Any], lang: str) -> str:
    t = html.escape(title(r, lang))
    parts = [
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8"><title>{t}'
        "</title><style>body{font-family:'Times New Roman',serif;margin:2cm;font-size:13pt}"
        "h1{text-align:center;font-size:15pt;text-transform:uppercase}h2{font-size:13pt;margin-top:1.2em}"
        "table{border-collapse:collapse;width:100%;margin:.4em 0}th,td{border:1px solid #000;padding:3px 6px;"
        "text-align:left}td:nth-child(n+2){text-align:right}.note{font-style:italic}"
        "@media print{body{margin:1.5cm}h2{page-break-after:avoid}table{page-break-inside:avoid}}</style></head><body>",
        f"<p>{html.escape(LABELS[lang]['to'])}</p><h1>{t}</h1>",
    ]
    for b in blocks(r, lang):
        if b[0] == "h2":
            parts.append(f"<h2>{html.escape(b[1])}</h2>")
        elif b[0] in ("p", "note"):
            cls = ' class="note"' if b[0] == "note" else ""
            parts.append(f"<p{cls}>{html.escape(b[1])}</p>")
        elif b[0] == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in b[2]
            )
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif b[0] == "list":
            parts.append(
                "<ul>"
                + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in b[1])
                + "</ul>"
            )
    parts.append("</body></html>")
    return "".join(parts)


def render(report: dict[str, Any], fmt: ReportFormat, lang: str, suppress: bool) -> Response:
    r = suppressed(report, suppress)
    name = f"nrm-{r['kind']}-{r['province'].replace('*', 'national')}-{r['period_from'][:10]}"
    if fmt == ReportFormat.csv:
        return Response(
            to_csv(r, lang),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if fmt == ReportFormat.html:
        return Response(to_html(r, lang), media_type="text/html; charset=utf-8")
    if fmt == ReportFormat.pdf:
        from services.oversight import report_pdf  # fpdf2 and the font are needed only here

        try:
            pdf = report_pdf.to_pdf(title(r, lang), LABELS[lang]["to"], blocks(r, lang))
        except report_pdf.FontMissing as exc:
            return Response(
                json.dumps({"detail": str(exc)}), status_code=503, media_type="application/json"
            )
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
        )
    return Response(json.dumps(r, ensure_ascii=False, default=str), media_type="application/json")
