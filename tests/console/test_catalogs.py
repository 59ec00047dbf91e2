"""The console's words: every string of its templates and code is in both gettext catalogs, every picklist
value it can show has a Vietnamese and an English label (never a raw key), dates and deadlines are formatted
as GLOSSARY §8 says, and an API's 422 lands on the right field of a form. No stack needed."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from services.console import api
from services.console.client import ApiError
from services.console.forms import KNOWN_MESSAGES, TYPE_MESSAGES, errors_from
from services.console.i18n import LOCALES, Lang, catalog_ids
from services.intake.duplicate_evidence import REASONS_VI
from shared.domain import (
    AgeBand,
    AgencyRole,
    CaseStatus,
    Channel,
    DecisionMakingOrg,
    Section,
    Stage,
    TraffickingStatus,
)

CONSOLE = LOCALES.parent
MSG = re.compile(r"""(?<![A-Za-z0-9])_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')""")


def used_strings() -> set[str]:
    found: set[str] = set()
    for path in [*CONSOLE.glob("templates/*.html"), *CONSOLE.glob("*.py")]:
        for m in MSG.finditer(path.read_text(encoding="utf-8")):
            found.add(m.group(1) if m.group(1) is not None else m.group(2))
    found |= {text for _, text in KNOWN_MESSAGES}
    found |= set(TYPE_MESSAGES.values())
    found |= {p["label"] for p in api.PERSONAS}
    return found


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_string_is_in_the_catalog(lang: str) -> None:
    ids = {msgid for ctx, msgid in catalog_ids(lang) if ctx is None}
    missing = sorted(used_strings() - ids)
    assert missing == [], f"{lang}: not in console.po: {missing}"


LISTS = {
    "stage": [s.value for s in Stage],
    "agency": [a.value for a in AgencyRole],
    "channel": [c.value for c in Channel],
    "case_status": [s.value for s in CaseStatus],
    "age_band": [a.value for a in AgeBand],
    "trafficking_status": [s.value for s in TraffickingStatus],
    "decision_org": [d.value for d in DecisionMakingOrg],
    "section": [s.value for s in Section],
    "classification": list(api.CLASSIFICATIONS),
    "evidence_kind": list(api.EVIDENCE_KINDS),
    "measure": list(api.MEASURES),
    "support_type": list(api.SUPPORT_TYPES),
    "plan_type": list(api.PLAN_TYPES),
    "consent_purpose": list(api.CONSENT_PURPOSES),
    "follow_up_outcome": list(api.FOLLOW_UP_OUTCOMES),
    "stuck_reason": list(api.STUCK_REASONS),
    "category": [*api.CATEGORIES, "under_16", "foreign"],
    "inbox_view": list(api.INBOX_VIEWS),
    "report_kind": list(api.REPORT_KINDS),
    "gender": list(api.GENDERS),
    "exploitation": list(api.EXPLOITATION),
    "consent_doc": list(api.CONSENT_DOC_KINDS),
    "level": ["1", "2", "3"],
    "rescue_outcome": list(api.RESCUE_OUTCOMES),
    "refusal_signer": list(api.REFUSAL_SIGNERS),
    "notification_kind": list(api.NOTIFICATION_KINDS),
    "perpetrator_role": list(api.PERPETRATOR_ROLES),
    "match_kind": ["identity_number", "evidence", "name_birth_year_province"],
    "dup_reason": list(REASONS_VI),
    "done": [*api.ACTIONS, "opened", "opened_dup", "duplicate"],
}


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_every_picklist_value_has_a_label(lang: str) -> None:
    ids = catalog_ids(lang)
    missing = [
        f"{ctx}:{key}" for ctx, keys in LISTS.items() for key in keys if (ctx, key) not in ids
    ]
    assert missing == [], f"{lang}: no label for {missing}"


def test_labels_follow_the_glossary() -> None:
    vi, en = Lang("vi"), Lang("en")
    assert vi.label("stage", "reintegrate") == "Hỗ trợ, tái hòa nhập cộng đồng"
    assert vi.label("agency", "social_protection") == "Cơ quan bảo trợ xã hội"
    assert vi.label("age_band", "16_17") == "Từ đủ 16 đến dưới 18 tuổi"
    assert vi.label("case_status", "ClosedReferred") == "Đã kết thúc, đã chuyển tuyến"
    assert (
        en.label("case_status", "Active") == "Active"
    )  # an English label equal to its key is still a label
    assert vi.label("stage", "no_such_stage") == "(giá trị chưa có nhãn)"  # never the raw key
    assert vi.province("20") == "Lạng Sơn" and vi.province("01") == "Thành phố Hà Nội"


def test_dates_and_deadlines_in_vietnam_time() -> None:
    vi, en = Lang("vi"), Lang("en")
    evening_utc = datetime(2026, 3, 1, 20, 30, tzinfo=UTC)  # already 2 March in Vietnam (UTC+7)
    assert vi.date(evening_utc) == "02/03/2026" and vi.datetime(evening_utc) == "03:30, 02/03/2026"
    assert en.date(evening_utc) == "2 Mar 2026"
    now = datetime(2026, 3, 1, tzinfo=UTC)
    assert vi.due(now + timedelta(days=2, hours=5), now) == "Còn 2 ngày"
    assert vi.due(now + timedelta(hours=5, minutes=10), now) == "Còn 5 giờ"
    assert vi.due(now + timedelta(minutes=20), now) == "Còn dưới 1 giờ"
    assert vi.due(now - timedelta(hours=3, minutes=5), now) == "Quá hạn 3 giờ"
    assert vi.due(now - timedelta(days=2, hours=1), now) == "Quá hạn 2 ngày"
    assert en.due(now - timedelta(hours=3), now) == "3 hours overdue"
    assert vi.number(1234.5, 1) == "1.234,5" and en.number(1234.5, 1) == "1,234.5"


def test_a_422_lands_on_its_field_in_vietnamese() -> None:
    vi = Lang("vi")
    exc = ApiError(
        422,
        [
            {
                "loc": ["body", "person", "birth_year"],
                "msg": "Input should be less than or equal to 2100",
                "type": "less_than_equal",
            },
            {
                "loc": ["body", "commune"],
                "msg": "Value error, 'abc' is not one of the 3,321 commune/ward codes",
                "type": "value_error",
            },
            {
                "loc": ["body"],
                "msg": "Value error, reason: required when rejecting a handoff",
                "type": "value_error",
            },
            {
                "loc": ["body", "evidence", 0, "date"],
                "msg": "Input should be a valid date",
                "type": "date_parsing",
            },
        ],
        "intake",
    )
    errs = errors_from(vi, exc, ["commune", "person.birth_year", "reason", "evidence.0.date"])
    assert errs.by_field == {
        "commune": "Không có mã xã, phường này: 5 chữ số, ví dụ 00070",
        "person.birth_year": "Không được quá 2100",
        "reason": "Cần nêu lý do khi từ chối",
        "evidence.0.date": "Hãy nhập ngày hợp lệ",
    }
    stale = errors_from(
        vi, ApiError(409, "stale: the case is at version 5, the request expected 4", "support"), []
    )
    assert stale.general == ["Có người khác vừa thay đổi vụ việc này, hãy tải lại"]
    plain = errors_from(
        vi, ApiError(422, "amount_vnd: required for travel_home", "support"), ["amount_vnd"]
    )
    assert plain.by_field == {"amount_vnd": "Bắt buộc với loại này"}
