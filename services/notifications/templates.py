"""Vietnamese and English messages. A message names the case by its id only: stage (docs/reference/GLOSSARY.md labels),
deadline (dd/mm/yyyy HH:mm, Vietnam time), escalation level and a link to the console. The Notification a
message is made from carries no personal data, and nothing else is read to write one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

VN_TZ = timezone(timedelta(hours=7), "Asia/Ho_Chi_Minh")  # no daylight saving in Vietnam

STAGES = {
    "vi": {
        "receive": "Tiếp nhận",
        "verify": "Xác minh",
        "identify": "Xác định nạn nhân",
        "rescue": "Giải cứu",
        "protect": "Bảo vệ",
        "reintegrate": "Hỗ trợ, tái hòa nhập cộng đồng",
        "closed": "Đã kết thúc",
    },
    "en": {
        "receive": "Intake",
        "verify": "Verification",
        "identify": "Identification",
        "rescue": "Rescue",
        "protect": "Protection",
        "reintegrate": "Support and reintegration",
        "closed": "Closed",
    },
}
KINDS = {
    "vi": {
        "reminder": "Nhắc việc: sắp đến thời hạn",
        "escalation": "Chuyển cấp trên — cấp {level}",  # a missed deadline or a supervisor by hand
        "handoff_requested": "Đề nghị chuyển giao vụ việc",
        "handoff_escalation": "Đề nghị chuyển giao chưa được trả lời — chuyển cấp trên, cấp {level}",
        "follow_up_due": "Đến hạn theo dõi sau hỗ trợ",
        "handoff_accepted": "Đề nghị chuyển giao đã được chấp nhận",
        "handoff_rejected": "Đề nghị chuyển giao bị từ chối",
    },
    "en": {
        "reminder": "Reminder: deadline approaching",
        "escalation": "Escalation — level {level}",
        "handoff_requested": "Handoff request",
        "handoff_escalation": "Handoff unanswered — escalation level {level}",
        "follow_up_due": "Follow-up due",
        "handoff_accepted": "Handoff accepted",
        "handoff_rejected": "Handoff rejected",
    },
}
WORDS = {
    "vi": {
        "case": "Vụ việc",
        "stage": "Giai đoạn",
        "deadline": "Thời hạn",
        "level": "Cấp chuyển",
        "open": "Mở trong hệ thống",
        "none": "không có",
        "digest": "{n} vụ việc cần chú ý",
        "footer": "Thư tự động của hệ thống NRM. Không chứa thông tin cá nhân của nạn nhân; "
        "xem chi tiết trong hệ thống sau khi đăng nhập.",
    },
    "en": {
        "case": "Case",
        "stage": "Stage",
        "deadline": "Deadline",
        "level": "Escalation level",
        "open": "Open in the console",
        "none": "none",
        "digest": "{n} cases need attention",
        "footer": "Automatic message from NRM. It holds no personal data of the victim; sign in to the "
        "console for the details.",
    },
}


@dataclass(frozen=True)
class Item:
    """One notification as a message shows it (ids and codes only)."""

    case_id: str
    kind: str
    level: int
    stage: str
    due_at: datetime | None


@dataclass(frozen=True)
class Message:
    subject: str
    body: str
    sms: str


def lang_of(language: str | None) -> str:
    return "en" if (language or "").lower().startswith("en") else "vi"


def format_deadline(at: datetime | None, lang: str) -> str:
    return at.astimezone(VN_TZ).strftime("%d/%m/%Y %H:%M") if at else WORDS[lang]["none"]


def case_link(console_url: str, case_id: str) -> str:
    return f"{console_url.rstrip('/')}/cases/{case_id}"


def _title(item: Item, lang: str) -> str:
    return KINDS[lang].get(item.kind, item.kind).format(level=item.level)


def _lines(item: Item, lang: str, console_url: str) -> list[str]:
    w = WORDS[lang]
    lines = [
        f"{w['case']}: {item.case_id}",
        f"{w['stage']}: {STAGES[lang].get(item.stage, item.stage)}",
        f"{w['deadline']}: {format_deadline(item.due_at, lang)}",
    ]
    if item.level:
        lines.append(f"{w['level']}: {item.level}")
    lines.append(f"{w['open']}: {case_link(console_url, item.case_id)}")
    return lines


def render(items: list[Item], language: str | None, console_url: str) -> Message:
    """One item: a message about that case; several: a digest listing each case (most urgent first)."""
    lang = lang_of(language)
    w = WORDS[lang]
    if len(items) == 1:
        it = items[0]
        subject = f"[NRM] {_title(it, lang)} — {w['case']} {it.case_id}"
        body = "\n".join([_title(it, lang), "", *_lines(it, lang, console_url), "", w["footer"]])
        sms = (
            f"NRM: {_title(it, lang)}. {w['case']} {it.case_id}, {STAGES[lang].get(it.stage, it.stage)}, "
            f"{w['deadline']} {format_deadline(it.due_at, lang)}. {case_link(console_url, it.case_id)}"
        )
        return Message(subject, body, sms)
    ordered = sorted(
        items, key=lambda i: (-i.level, i.due_at or datetime.max.replace(tzinfo=VN_TZ), i.case_id)
    )
    head = w["digest"].format(n=len(ordered))
    parts = [f"[NRM] {head}", ""]
    for it in ordered:
        parts += [
            f"• {_title(it, lang)}",
            *(f"  {line}" for line in _lines(it, lang, console_url)),
            "",
        ]
    parts.append(w["footer"])
    sms = f"NRM: {head}. {console_url.rstrip('/')}/"
    return Message(f"[NRM] {head}", "\n".join(parts), sms)
