"""Which real body holds each agency role, and since when (issue 15 item 8).

`AgencyRole` names a role (police, social protection, legal aid, ...); the body that plays it changed with
the 2025 reorganisation (docs/reference/DOMAIN.md §0, GLOSSARY.md §4): MOLISA was merged into the Ministry
of Home Affairs and social protection moved to the health sector from 1/3/2025 (Decree 25/2025), the police
became two-level (province and commune) from 1/3/2025, and district-level government ended on 1/7/2025.
A report over a period that spans a change names every body that held the role in it, each with its dates
(`label_during`); an event is attributed to the body of its date (`body_on`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from shared.domain import AgencyRole

A = AgencyRole
Lang = Literal["vi", "en"]
REORGANISATION = date(2025, 3, 1)  # Decree 25/2025: MOLISA into Home Affairs; police two-level
DISTRICTS_END = date(2025, 7, 1)  # district-level government ended


@dataclass(frozen=True)
class Body:
    role: AgencyRole
    vi: str
    en: str
    source: str
    valid_from: date | None = None  # inclusive; None = before anything recorded here
    valid_to: date | None = None  # exclusive; None = still today

    def holds_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_to is None or day < self.valid_to
        )

    def name(self, lang: Lang = "vi") -> str:
        return self.vi if lang == "vi" else self.en


BODIES: dict[AgencyRole, tuple[Body, ...]] = {
    A.police: (
        Body(
            A.police,
            "Công an (tỉnh, huyện, xã)",
            "Police (province, district, commune)",
            "GLOSSARY.md §4; police were three-level until 1/3/2025 (DOMAIN.md §0)",
            valid_to=REORGANISATION,
        ),
        Body(
            A.police,
            "Công an (tỉnh, xã)",
            "Police (province, commune)",
            "DOMAIN.md §0: only province and commune levels since 1/3/2025",
            valid_from=REORGANISATION,
        ),
    ),
    A.social_protection: (
        Body(
            A.social_protection,
            "Sở Lao động – Thương binh và Xã hội",
            "Department of Labour, Invalids and Social Affairs",
            "seed:002, seed:003 (before 2025); GLOSSARY.md §4",
            valid_to=REORGANISATION,
        ),
        Body(
            A.social_protection,
            "Sở Y tế (cơ quan chuyên môn về y tế cấp tỉnh)",
            "Department of Health (provincial health authority)",
            "Decree 25/2025 and the amended Arts. 27-28 of Law 53/2024 (DOMAIN.md §0)",
            valid_from=REORGANISATION,
        ),
    ),
    A.legal_aid: (
        Body(
            A.legal_aid,
            "Phòng Tư pháp cấp huyện",
            "District Justice Office",
            "seed:003 (before 2025)",
            valid_to=DISTRICTS_END,
        ),
        Body(
            A.legal_aid,
            "Trung tâm Trợ giúp pháp lý nhà nước",
            "State Legal Aid Centre",
            "local_practice: GLOSSARY.md §4 [proposed]; district level ended 1/7/2025",
            valid_from=DISTRICTS_END,
        ),
    ),
    A.commune: (
        Body(
            A.commune,
            "UBND cấp xã (xã, phường, thị trấn)",
            "Commune People's Committee (commune, ward, township)",
            "seed:001, seed:003",
            valid_to=DISTRICTS_END,
        ),
        Body(
            A.commune,
            "UBND cấp xã (xã, phường, đặc khu)",
            "Commune People's Committee (commune, ward, special zone)",
            "GLOSSARY.md §4: since 7/2025",
            valid_from=DISTRICTS_END,
        ),
    ),
    A.border_guard: (Body(A.border_guard, "Bộ đội Biên phòng", "Border Guard", "seed:003"),),
    A.coast_guard: (Body(A.coast_guard, "Cảnh sát biển", "Coast Guard", "Law 53/2024 Art. 27(1)"),),
    A.womens_union: (Body(A.womens_union, "Hội Liên hiệp Phụ nữ", "Women's Union", "seed:003"),),
    A.embassy: (
        Body(
            A.embassy,
            "Cơ quan đại diện Việt Nam ở nước ngoài",
            "Vietnamese embassy or consulate",
            "GLOSSARY.md §4 [proposed]",
        ),
    ),
    A.hotline: (
        Body(
            A.hotline,
            "Tổng đài điện thoại quốc gia về phòng, chống mua bán người (111)",
            "National anti-trafficking hotline (111)",
            "seed:003; Decree 162/2025",
        ),
    ),
    A.prosecution: (
        Body(A.prosecution, "Viện kiểm sát nhân dân", "People's Procuracy", "seed:003"),
    ),
    A.court: (Body(A.court, "Tòa án nhân dân", "People's Court", "seed:003, seed:004"),),
    A.steering_committee: (
        Body(
            A.steering_committee, "Ban Chỉ đạo 138", "Steering Committee 138", "seed:001, seed:003"
        ),
    ),
}


def body_on(role: AgencyRole, day: date) -> Body:
    """The body that held `role` on `day`."""
    return next(b for b in BODIES[role] if b.holds_on(day))


def bodies_during(role: AgencyRole, start: date, end: date) -> list[Body]:
    """The bodies that held `role` at some time in [start, end) (end exclusive, as report periods)."""
    return [
        b
        for b in BODIES[role]
        if (b.valid_to is None or start < b.valid_to)
        and (b.valid_from is None or b.valid_from < end)
    ]


def label_during(role: AgencyRole, start: date, end: date, lang: Lang = "vi") -> str:
    """One body's name, or each body with the dates it held the role within the period:
    "Sở Lao động – Thương binh và Xã hội (đến 28/02/2025); Sở Y tế (...) (từ 01/03/2025)"."""
    held = bodies_during(role, start, end)
    if len(held) == 1:
        return held[0].name(lang)
    until, since = ("đến", "từ") if lang == "vi" else ("until", "from")
    parts = []
    for b in held:
        dates = []
        if b.valid_from is not None and b.valid_from > start:
            dates.append(f"{since} {b.valid_from:%d/%m/%Y}")
        if b.valid_to is not None and b.valid_to < end:
            dates.append(f"{until} {b.valid_to - timedelta(days=1):%d/%m/%Y}")
        parts.append(f"{b.name(lang)} ({', '.join(dates)})" if dates else b.name(lang))
    return "; ".join(parts)
