"""Labels of every key a report shows (../shared/GLOSSARY.md, Vietnamese first, then English), province and
commune names (the `vietnam-provinces` package), and dates and numbers as the committee writes them.

A report never shows a raw key: `label(group, key, lang)` falls back to the group's word for "other"."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from vietnam_provinces import Province, ProvinceCode, Ward, WardCode

VN = timezone(timedelta(hours=7))

# group -> key -> (vi, en), from GLOSSARY.md §1-§7
GLOSSARY: dict[str, dict[str, tuple[str, str]]] = {
    "stage": {
        "receive": ("Tiếp nhận", "Intake"),
        "verify": ("Xác minh", "Verification"),
        "identify": ("Xác định nạn nhân", "Identification"),
        "rescue": ("Giải cứu", "Rescue"),
        "protect": ("Bảo vệ", "Protection"),
        "reintegrate": ("Hỗ trợ, tái hòa nhập cộng đồng", "Support and reintegration"),
        "closed": ("Đã kết thúc", "Closed"),
    },
    "outcome": {
        "reintegrated": ("Đã tái hòa nhập cộng đồng", "Reintegrated"),
        "unfounded": ("Tin báo không có cơ sở", "Report unfounded"),
        "not_a_victim": ("Không phải nạn nhân", "Not a victim"),
        "consent_withdrawn": ("Rút lại sự đồng ý (từ chối hỗ trợ)", "Consent withdrawn"),
        "transferred_jurisdiction": ("Chuyển địa bàn khác", "Transferred elsewhere"),
        "lost_contact": ("Mất liên lạc", "Lost contact"),
        "deceased": ("Đã qua đời", "Deceased"),
        "not_relevant": ("Không liên quan đến mua bán người", "Not trafficking-related"),
    },
    "channel": {
        "hotline_111": ("Tổng đài 111", "Hotline 111"),
        "hotline_113": ("Tổng đài 113 (Công an)", "Police hotline 113"),
        "walk_in": ("Tự đến trình báo", "Walk-in"),
        "border_guard_handover": ("Bộ đội Biên phòng bàn giao", "Border guard handover"),
        "coast_guard_handover": ("Cảnh sát biển bàn giao", "Coast guard handover"),
        "embassy_repatriation": ("Hồi hương qua cơ quan đại diện", "Embassy repatriation"),
        "rescue_operation": ("Qua giải cứu", "Rescue operation"),
        "ngo_referral": ("Tổ chức phi chính phủ chuyển đến", "NGO referral"),
        "online_report": ("Tin báo qua mạng", "Online report"),
        "missing_person": ("Đơn trình báo mất tích", "Missing-person report"),
    },
    "agency": {
        "police": ("Công an", "Police"),
        "border_guard": ("Bộ đội Biên phòng", "Border Guard"),
        "coast_guard": ("Cảnh sát biển", "Coast Guard"),
        "social_protection": ("Cơ quan bảo trợ xã hội", "Social protection authority"),
        "legal_aid": ("Trợ giúp pháp lý", "Legal aid"),
        "womens_union": ("Hội Liên hiệp Phụ nữ", "Women's Union"),
        "commune": ("UBND cấp xã", "Commune People's Committee"),
        "embassy": ("Cơ quan đại diện Việt Nam ở nước ngoài", "Vietnamese embassy/consulate"),
        "hotline": ("Tổng đài 111", "Hotline 111"),
        "prosecution": ("Viện kiểm sát nhân dân", "People's Procuracy"),
        "court": ("Tòa án nhân dân", "People's Court"),
        "steering_committee": ("Ban Chỉ đạo 138", "Steering Committee 138"),
        "unknown": ("Chưa rõ cơ quan", "Agency unknown"),
    },
    "support": {
        "essential_needs": ("Hỗ trợ nhu cầu thiết yếu", "Essential needs"),
        "medical_care": ("Hỗ trợ y tế", "Medical care"),
        "interpretation": ("Hỗ trợ phiên dịch", "Interpretation"),
        "legal_advice": ("Hỗ trợ pháp luật", "Legal advice"),
        "legal_aid": ("Trợ giúp pháp lý", "Legal aid"),
        "travel_home": ("Hỗ trợ chi phí đi lại", "Travel home"),
        "psychological_support": ("Hỗ trợ tâm lý", "Psychological support"),
        "general_education": ("Hỗ trợ học văn hóa", "General education"),
        "vocational_training": ("Hỗ trợ học nghề, việc làm", "Vocational training, jobs"),
        "hardship_allowance": (
            "Trợ cấp khó khăn ban đầu, hỗ trợ vay vốn",
            "Initial hardship allowance, loans",
        ),
    },
    # GLOSSARY §6: "trẻ em" is under 16 only; the under-18 category is "Dưới 18 tuổi"
    "age": {
        "under_16": ("Dưới 16 tuổi (trẻ em)", "Under 16 (child)"),
        "16_17": ("Từ đủ 16 đến dưới 18 tuổi", "16–17"),
        "adult": ("Từ đủ 18 tuổi trở lên", "18 and over"),
        "unknown": ("Chưa rõ tuổi", "Age unknown"),
    },
    # HTCDS prs_Gender, as the person's case carries it (CaseFacts.sex)
    "sex": {
        "Feminine": ("Nữ", "Female"),
        "Masculine": ("Nam", "Male"),
        "TransgenderFeminine": ("Người chuyển giới nữ", "Transgender woman"),
        "TransgenderMasculine": ("Người chuyển giới nam", "Transgender man"),
        "NonConforming": ("Không theo khuôn mẫu giới", "Gender non-conforming"),
        "NonSpecifiedUnknown": ("Không rõ", "Not specified"),
        "unknown": ("Chưa có thông tin", "Not recorded"),
    },
    "category": {
        "child": ("Dưới 18 tuổi", "Under 18"),
        "adult": ("Từ đủ 18 tuổi trở lên", "18 and over"),
        "abroad": ("Từ nước ngoài trở về", "Returned from abroad"),
        "domestic": ("Trong nước", "Domestic"),
    },
    "level": {
        "0": ("Chưa phân cấp", "No level"),
        "1": ("Cấp 1: người xử lý và lãnh đạo trực tiếp", "Level 1: assignee and supervisor"),
        "2": ("Cấp 2: thủ trưởng cơ quan", "Level 2: agency head"),
        "3": ("Cấp 3: Ban Chỉ đạo 138", "Level 3: Steering Committee 138"),
    },
    "transfer": {
        "transferred_in": ("Nhận từ tỉnh khác", "Received from another province"),
        "transferred_out": ("Chuyển sang tỉnh khác", "Transferred to another province"),
    },
}
OTHER = ("Khác", "Other")
MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def label(group: str, key: str | None, lang: str) -> str:
    i = 0 if lang == "vi" else 1
    if group == "outcome" and key and key.startswith("open:"):
        stage = label("stage", key[5:], lang)
        return f"Đang ở giai đoạn {stage}" if lang == "vi" else f"Open, at {stage}"
    if group == "commune":
        return commune_name(key, lang)
    pair = GLOSSARY.get(group, {}).get(str(key))
    return (pair or OTHER)[i]


def province_name(code: str | None, lang: str) -> str:
    if code in (None, "*"):
        return "Toàn quốc" if lang == "vi" else "National"
    try:
        return str(Province.from_code(ProvinceCode(int(code))).name)
    except ValueError:
        return "Tỉnh chưa rõ" if lang == "vi" else "Unknown province"


def commune_name(code: str | None, lang: str) -> str:
    if not code or code == "unknown":
        return "Chưa rõ xã, phường" if lang == "vi" else "Commune not recorded"
    try:
        return str(Ward.from_code(WardCode(int(code))).name)
    except ValueError:
        return "Xã, phường chưa rõ" if lang == "vi" else "Unknown commune"


def date(t: datetime, lang: str) -> str:
    """dd/mm/yyyy in Vietnamese, '7 Mar 2024' in English (Vietnam time)."""
    d = t.astimezone(VN)
    return (
        f"{d.day:02d}/{d.month:02d}/{d.year}"
        if lang == "vi"
        else f"{d.day} {MONTHS_EN[d.month - 1]} {d.year}"
    )


def date_time(t: datetime, lang: str) -> str:
    return f"{t.astimezone(VN):%H:%M}, {date(t, lang)}"


def period(start: datetime, end: datetime, lang: str) -> str:
    """The period with its last day, inclusive: [from, to) where `to` is midnight shows to - 1 day."""
    e = end.astimezone(VN)
    if (e.hour, e.minute, e.second, e.microsecond) == (0, 0, 0, 0):
        last = date(e - timedelta(days=1), lang)
        s_time = start.astimezone(VN)
        first = (
            date(start, lang) if (s_time.hour, s_time.minute) == (0, 0) else date_time(start, lang)
        )
        note = " (tính cả ngày cuối kỳ)" if lang == "vi" else " (last day included)"
        return f"{first} – {last}{note}"
    until = "đến trước" if lang == "vi" else "up to"
    return f"{date_time(start, lang)} – {until} {date_time(end, lang)}"


def number(v: float, lang: str, digits: int = 1) -> str:
    s = f"{v:,.{digits}f}"
    if digits:
        s = s.rstrip("0").rstrip(".")
    return s.replace(",", "\x00").replace(".", ",").replace("\x00", ".") if lang == "vi" else s


def percent(v: float, lang: str) -> str:
    return f"{number(v * 100, lang)}%"
