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
from services.oversight import repository as repo
from services.oversight.models import ReportFormat, ReportKind
from shared.db import Conn

SMALL_CELL = 5
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
        if (local.day, local.hour, local.minute, local.second, local.microsecond) != (1, 0, 0, 0, 0):
            raise DisclosureError(
                f"{name}: a report outside your jurisdiction covers whole calendar months, from and to on the 1st "
                f"of a month at 00:00+07:00 (got {local.isoformat()})")
    s, e = start.astimezone(VN), end.astimezone(VN)
    months = (e.year - s.year) * 12 + e.month - s.month
    if months < min_months:
        raise DisclosureError(f"to: a report outside your jurisdiction covers at least {min_months} month(s)")

LABELS: dict[str, dict[str, str]] = {
    "vi": {
        "title.six_monthly": "Báo cáo 6 tháng công tác phòng, chống mua bán người",
        "title.annual": "Báo cáo năm công tác phòng, chống mua bán người",
        "title.ad_hoc": "Báo cáo đột xuất công tác phòng, chống mua bán người",
        "to": "Kính gửi: Ban Chỉ đạo 138", "province": "Địa bàn", "period": "Kỳ báo cáo",
        "generated": "Ngày lập", "national": "Toàn quốc", "suppressed_note":
            "Số liệu dưới 5 được hiển thị là \"<5\", các số khác được làm tròn đến bội số của 5, để bảo vệ danh tính nạn nhân.",
        "kpis": "Chỉ tiêu", "kpi": "Chỉ tiêu", "numerator": "Tử số", "denominator": "Mẫu số", "value": "Tỷ lệ",
        "target": "Mục tiêu", "met": "Đạt", "yes": "Đạt", "no": "Chưa đạt", "na": "—",
        "received": "Tiếp nhận trong kỳ", "by_channel": "Theo kênh tiếp nhận", "by_category": "Theo nhóm",
        "outcomes": "Kết quả (vụ việc tiếp nhận trong kỳ, đến cuối kỳ)", "open_by_stage":
            "Vụ việc đang xử lý cuối kỳ theo giai đoạn", "overdue": "Quá hạn", "count": "Số vụ việc",
        "escalations": "Số lần báo cáo vượt cấp trong kỳ", "level": "Cấp",
        "time_in_stage": "Thời gian xử lý theo giai đoạn (giờ)", "stage": "Giai đoạn", "completed": "Hoàn thành",
        "compliance": "Tuân thủ thời hạn theo giai đoạn và cơ quan", "agency": "Cơ quan", "on_time": "Đúng hạn",
        "rate": "Tỷ lệ", "metric": "Chỉ số", "section": "Mục", "formula": "Cách tính",
        "child": "Trẻ em", "adult": "Người lớn", "abroad": "Từ nước ngoài", "domestic": "Trong nước",
        "total": "Tổng", "transfers": "Chuyển tỉnh trong kỳ (vụ việc theo người được hỗ trợ)",
        "transferred_in": "Nhận từ tỉnh khác", "transferred_out": "Chuyển sang tỉnh khác",
    },
    "en": {
        "title.six_monthly": "Six-monthly report on counter-trafficking work",
        "title.annual": "Annual report on counter-trafficking work",
        "title.ad_hoc": "Ad hoc report on counter-trafficking work",
        "to": "To: Steering Committee 138", "province": "Jurisdiction", "period": "Period",
        "generated": "Generated", "national": "National", "suppressed_note":
            "Counts below 5 are shown as \"<5\" and other counts rounded to a multiple of 5, to protect victims' identity.",
        "kpis": "Key indicators", "kpi": "Indicator", "numerator": "Numerator", "denominator": "Denominator",
        "value": "Rate", "target": "Target", "met": "Met", "yes": "met", "no": "not met", "na": "—",
        "received": "Received in the period", "by_channel": "By channel", "by_category": "By category",
        "outcomes": "Outcomes (cases received in the period, at its end)", "open_by_stage":
            "Open cases at the end of the period by stage", "overdue": "Overdue", "count": "Cases",
        "escalations": "Escalations in the period", "level": "Level",
        "time_in_stage": "Time in stage (hours)", "stage": "Stage", "completed": "Completed",
        "compliance": "Deadline compliance by stage and agency", "agency": "Agency", "on_time": "On time",
        "rate": "Rate", "metric": "Metric", "section": "Section", "formula": "Formula",
        "child": "Child", "adult": "Adult", "abroad": "Abroad", "domestic": "Domestic", "total": "Total",
        "transfers": "Transfers between provinces in the period (the case travels with the person)",
        "transferred_in": "Received from another province", "transferred_out": "Transferred to another province",
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


async def build(conn: Conn, kind: ReportKind, province: str | None, start: datetime, end: datetime,
                lang: str, now: datetime) -> dict[str, Any]:
    """The report's figures, unsuppressed (rendering applies suppression)."""
    kpis = await kpi_mod.compute(conn, province, start, end, lang)
    received = await repo.received_cases(conn, province, start, end)
    by_channel = Counter(r["channel"] for r in received)
    by_category: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    for r in received:
        by_category["child" if r["is_child"] else "adult"] += 1
        by_category["abroad" if r["is_abroad"] else "domestic"] += 1
        st = r["state_at_end"] or {}
        outcomes[st.get("outcome") or f"open:{st.get('stage', '?')}"] += 1
    open_rows = await repo.open_counts(conn, province, end)
    esc = await repo.escalations(conn, province, start, end)
    moved = await repo.transfers(conn, province, start, end)
    return {
        "kind": kind.value, "province": province or "*", "period_from": start.isoformat(),
        "period_to": end.isoformat(), "generated_at": now.astimezone(UTC).isoformat(),
        "kpis_version": kpis.kpis_version, "received": len(received),
        "by_channel": dict(sorted(by_channel.items())), "by_category": dict(sorted(by_category.items())),
        "outcomes": dict(sorted(outcomes.items())),
        "open_by_stage": [{"stage": r["stage"], "count": r["n"], "overdue": r["overdue"]} for r in open_rows],
        "escalations": [{"level": r["level"], "count": r["n"]} for r in esc],
        "transfers": moved,
        "kpis": [{"id": k.id, "title": k.title, "numerator": k.numerator, "denominator": k.denominator,
                  "value": k.value, "target": k.target, "comparison": k.comparison, "met": k.met,
                  "formula": k.formula} for k in kpis.ratios],
        "time_in_stage": [t.model_dump() for t in kpis.time_in_stage],
        "deadline_compliance": [{"stage": c.stage, "agency": c.agency, "completed": c.completed,
                                 "on_time": c.on_time, "rate": c.rate} for c in kpis.deadline_compliance],
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
    for key in ("by_channel", "by_category", "outcomes"):
        r[key] = {k: _count(v, True) for k, v in r[key].items()}
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
            k["met"] = k["value"] >= k["target"] if k["comparison"] == ">=" else k["value"] > k["target"]
        k["numerator"], k["denominator"] = _count(k["numerator"], True), _count(k["denominator"], True)
    for t in r["time_in_stage"]:
        if t["completed"] < SMALL_CELL:  # percentiles of fewer than 5 cases describe individuals
            t["p50_hours"] = t["p90_hours"] = SUPPRESSED
        t["completed"] = _count(t["completed"], True)
    for c in r["deadline_compliance"]:
        c["rate"] = _rate(c["rate"], c["on_time"], c["completed"], True)
        c["completed"], c["on_time"] = _count(c["completed"], True), _count(c["on_time"], True)
    return r


def rows(report: dict[str, Any], lang: str) -> list[tuple[str, str, str, Any]]:
    """(section, key, column, value) rows: the CSV body and the HTML tables' source."""
    out: list[tuple[str, str, str, Any]] = [("meta", "kind", "value", report["kind"]),
                                            ("meta", "province", "value", report["province"]),
                                            ("meta", "period_from", "value", report["period_from"]),
                                            ("meta", "period_to", "value", report["period_to"]),
                                            ("meta", "suppressed", "value", report["suppressed"]),
                                            ("received", "total", "count", report["received"])]
    for k in report["kpis"]:
        for col in ("numerator", "denominator", "value", "target", "met"):
            out.append(("kpis", k["id"], col, k[col]))
    for key in ("by_channel", "by_category", "outcomes"):
        out += [(key, k, "count", v) for k, v in report[key].items()]
    for row in report["open_by_stage"]:
        out += [("open_by_stage", row["stage"], "count", row["count"]),
                ("open_by_stage", row["stage"], "overdue", row["overdue"])]
    out += [("escalations", f"level_{row['level']}", "count", row["count"]) for row in report["escalations"]]
    out += [("transfers", k, "count", v) for k, v in report.get("transfers", {}).items()]
    for t in report["time_in_stage"]:
        out += [("time_in_stage", t["stage"], c, t[c]) for c in ("completed", "p50_hours", "p90_hours")]
    for c in report["deadline_compliance"]:
        out += [("deadline_compliance", f"{c['stage']}/{c['agency']}", col, c[col])
                for col in ("completed", "on_time", "rate")]
    return out


def to_csv(report: dict[str, Any], lang: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["section", "key", "column", "value"])
    for row in rows(report, lang):
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _fmt(v: Any, lang: str) -> str:
    L = LABELS[lang]
    if v is None:
        return L["na"]
    if isinstance(v, bool):
        return L["yes"] if v else L["no"]
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".")
    return html.escape(str(v))


def _table(headers: list[str], body: list[list[Any]], lang: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join("<tr>" + "".join(f"<td>{_fmt(c, lang)}</td>" for c in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>"


def _pct(v: Any) -> Any:
    return f"{v * 100:.1f}%" if isinstance(v, float) else v


def to_html(r: dict[str, Any], lang: str) -> str:
    L = LABELS[lang]
    province = L["national"] if r["province"] == "*" else r["province"]
    parts = [
        f"<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\"><title>{html.escape(L['title.' + r['kind']])}"
        "</title><style>body{font-family:'Times New Roman',serif;margin:2cm;font-size:13pt}"
        "h1{text-align:center;font-size:15pt;text-transform:uppercase}h2{font-size:13pt;margin-top:1.2em}"
        "table{border-collapse:collapse;width:100%;margin:.4em 0}th,td{border:1px solid #000;padding:3px 6px;"
        "text-align:left}td:nth-child(n+2){text-align:right}.note{font-style:italic}"
        "@media print{body{margin:1.5cm}h2{page-break-after:avoid}table{page-break-inside:avoid}}</style></head><body>",
        f"<p>{html.escape(L['to'])}</p><h1>{html.escape(L['title.' + r['kind']])}</h1>",
        f"<p>{L['province']}: <b>{html.escape(province)}</b><br>{L['period']}: {html.escape(r['period_from'][:10])} – "
        f"{html.escape(r['period_to'][:10])}<br>{L['generated']}: {html.escape(r['generated_at'][:19])}</p>",
    ]
    if r["suppressed"]:
        parts.append(f"<p class=\"note\">{html.escape(L['suppressed_note'])}</p>")
    parts.append(f"<h2>1. {L['kpis']}</h2>")
    parts.append(_table([L["kpi"], L["numerator"], L["denominator"], L["value"], L["target"], L["met"]],
                        [[k["title"], k["numerator"], k["denominator"], _pct(k["value"]),
                          f"{k['comparison']} {k['target'] * 100:.0f}%", k["met"]] for k in r["kpis"]], lang))
    parts.append(f"<h2>2. {L['received']}: {_fmt(r['received'], lang)}</h2>")
    parts.append(f"<p>{L['by_channel']}</p>" + _table([L["metric"], L["count"]], list(map(list, r["by_channel"].items())),
                                                       lang))
    parts.append(f"<p>{L['by_category']}</p>" + _table(
        [L["metric"], L["count"]], [[L.get(k, k), v] for k, v in r["by_category"].items()], lang))
    parts.append(f"<h2>3. {L['outcomes']}</h2>" + _table([L["metric"], L["count"]],
                                                         list(map(list, r["outcomes"].items())), lang))
    parts.append(f"<h2>4. {L['open_by_stage']}</h2>" + _table(
        [L["stage"], L["count"], L["overdue"]], [[x["stage"], x["count"], x["overdue"]] for x in r["open_by_stage"]],
        lang))
    parts.append(f"<h2>5. {L['escalations']}</h2>" + _table(
        [L["level"], L["count"]], [[x["level"], x["count"]] for x in r["escalations"]], lang))
    parts.append(f"<p>{L['transfers']}</p>" + _table(
        [L["metric"], L["count"]], [[L.get(k, k), v] for k, v in r.get("transfers", {}).items()], lang))
    parts.append(f"<h2>6. {L['time_in_stage']}</h2>" + _table(
        [L["stage"], L["completed"], "p50", "p90"],
        [[t["stage"], t["completed"], t["p50_hours"], t["p90_hours"]] for t in r["time_in_stage"]], lang))
    parts.append(f"<h2>7. {L['compliance']}</h2>" + _table(
        [L["stage"], L["agency"], L["completed"], L["on_time"], L["rate"]],
        [[c["stage"], c["agency"], c["completed"], c["on_time"], _pct(c["rate"])] for c in r["deadline_compliance"]],
        lang))
    parts.append(f"<h2>{L['formula']}</h2><ul>" + "".join(
        f"<li><b>{html.escape(k['title'])}</b>: {html.escape(k['formula'])}</li>" for k in r["kpis"]) + "</ul>")
    parts.append("</body></html>")
    return "".join(parts)


def render(report: dict[str, Any], fmt: ReportFormat, lang: str, suppress: bool) -> Response:
    r = suppressed(report, suppress)
    name = f"nrm-{r['kind']}-{r['province'].replace('*', 'national')}-{r['period_from'][:10]}"
    if fmt == ReportFormat.csv:
        return Response(to_csv(r, lang), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})
    if fmt == ReportFormat.html:
        return Response(to_html(r, lang), media_type="text/html; charset=utf-8")
    return Response(json.dumps(r, ensure_ascii=False, default=str), media_type="application/json")
