"""The evidence that two person records are one person (issue 15 item 9): keyed blind indexes of the
identity facts, the blocking keys candidates are looked up under, and a score with reasons. Pure: no
database, no request (services/intake/repository.py stores and compares it; dedupe.py re-exports it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.crypto import KeyRing, normalise_identity_number, normalise_text

IDENTITY_PURPOSE = "persons.identity_number"


def full_name(first: str | None, middle: str | None, second: str | None) -> str | None:
    """Vietnamese order: family (second) name, middle name, given (first) name."""
    parts = [p for p in (second, middle, first) if p and p.strip()]
    return " ".join(parts) if parts else None


def identity_key(ring: KeyRing, identity_number: str | None) -> str | None:
    if not identity_number:
        return None
    normalised = normalise_identity_number(identity_number)
    return ring.blind_index(normalised, IDENTITY_PURPOSE) if len(normalised) >= 3 else None


# ---- scored evidence (issue 15 item 9) -----------------------------------------------------------------
# Name + birth year + province alone flags far too many pairs when a few family names cover most people
# (Nguyễn ~38%): in a 7,000-person arrival most "Nguyễn Thị Lan, 2003, Lạng Sơn" are different women. A pair
# is flagged only when the evidence adds up to FLAG_THRESHOLD: identity number, full birth date, phone,
# commune and the name, each compared through its own keyed blind index (the database never holds the
# clear value), and the caseworker sees the score with its reasons. Weights are log-odds-like points:
# agreement on a rare fact counts more than agreement on a common one; a conflict on a fact both records
# hold counts against. bench/dedupe/run.py measures precision and recall of this rule and the old one.
BIRTHDATE_PURPOSE = "persons.birthdate"
PHONE_PURPOSE = "persons.phone"
NAME_PURPOSE = "persons.full_name"
GIVEN_FAMILY_PURPOSE = "persons.given_family_name"
FLAG_THRESHOLD = 2.8
WEIGHTS: dict[str, float] = {
    "same_identity_number": 6.0,
    "different_identity_number": -4.0,
    "same_full_name": 2.0,
    "same_given_and_family_name": 1.2,
    "same_birth_date": 3.0,
    "different_birth_date": -4.0,
    "same_birth_year": 0.5,
    "different_birth_year": -4.0,
    "same_phone": 3.5,
    "same_commune": 0.8,
    "different_commune": -0.8,
    "same_province": 0.3,
}
REASONS_VI: dict[str, str] = {
    "same_identity_number": "Trùng số giấy tờ tùy thân",
    "different_identity_number": "Khác số giấy tờ tùy thân",
    "same_full_name": "Trùng họ và tên (không phân biệt dấu)",
    "same_given_and_family_name": "Trùng họ và tên gọi",
    "same_birth_date": "Trùng ngày sinh",
    "different_birth_date": "Khác ngày sinh",
    "same_birth_year": "Trùng năm sinh",
    "different_birth_year": "Khác năm sinh",
    "same_phone": "Trùng số điện thoại",
    "same_commune": "Cùng xã, phường",
    "different_commune": "Khác xã, phường",
    "same_province": "Cùng tỉnh",
}


@dataclass(frozen=True)
class Evidence:
    """A person's identity facts as keyed blind indexes (None = not known)."""

    identity: str | None = None
    full_name: str | None = None
    given_family: str | None = None
    birth_date: str | None = None
    birth_year: int | str | None = None  # the year, or (stored) its keyed blind index
    phone: str | None = None
    commune: str | None = None
    province: str | None = None

    def blocking_keys(self) -> list[str]:
        """Keys under which candidates are looked up: a true duplicate shares at least one of them unless it
        differs in name, phone and identity number all at once."""
        keys = [
            f"i:{self.identity}" if self.identity else None,
            f"n:{self.full_name}|{self.birth_year}" if self.full_name and self.birth_year else None,
            f"p:{self.phone}" if self.phone else None,
            f"g:{self.given_family}|{self.birth_date}"
            if self.given_family and self.birth_date
            else None,
        ]
        return [k for k in keys if k]


def normalise_phone(value: str | None) -> str | None:
    """Vietnamese mobile numbers: digits only, +84/84/0 prefix dropped (the last 9 digits)."""
    if not value:
        return None
    digits = "".join(ch for ch in value if ch.isdigit())
    return digits[-9:] if len(digits) >= 9 else None


def evidence(
    ring: KeyRing,
    *,
    identity_number: str | None,
    first: str | None,
    middle: str | None,
    second: str | None,
    birth_date: str | None,
    birth_year: int | None,
    phone: str | None,
    commune: str | None,
    province: str | None,
) -> Evidence:
    name = full_name(first, middle, second)
    tokens = sorted(normalise_text(name).split()) if name else []
    given_family = sorted(normalise_text(p) for p in (first, second) if p and p.strip())
    ph = normalise_phone(phone)
    return Evidence(
        identity=identity_key(ring, identity_number),
        full_name=ring.blind_index(" ".join(tokens), NAME_PURPOSE) if tokens else None,
        given_family=ring.blind_index(" ".join(given_family), GIVEN_FAMILY_PURPOSE)
        if len(given_family) == 2
        else None,
        birth_date=ring.blind_index(birth_date, BIRTHDATE_PURPOSE) if birth_date else None,
        birth_year=birth_year
        if birth_year is not None
        else (int(birth_date[:4]) if birth_date else None),
        phone=ring.blind_index(ph, PHONE_PURPOSE) if ph else None,
        commune=commune,
        province=province,
    )


def score(a: Evidence, b: Evidence) -> tuple[float, list[str]]:
    """The evidence that two records are one person: (points, reasons in the order they weigh)."""
    reasons: list[str] = []

    def compare(x: object, y: object, same: str, different: str | None) -> None:
        if x is None or y is None:
            return
        if x == y:
            reasons.append(same)
        elif different:
            reasons.append(different)

    compare(a.identity, b.identity, "same_identity_number", "different_identity_number")
    if a.full_name and a.full_name == b.full_name:
        reasons.append("same_full_name")
    elif a.given_family and a.given_family == b.given_family:
        reasons.append("same_given_and_family_name")
    if a.birth_date and b.birth_date:
        compare(a.birth_date, b.birth_date, "same_birth_date", "different_birth_date")
    else:
        compare(a.birth_year, b.birth_year, "same_birth_year", "different_birth_year")
    compare(a.phone, b.phone, "same_phone", None)  # people change numbers: no penalty
    compare(a.commune, b.commune, "same_commune", "different_commune")
    compare(a.province, b.province, "same_province", None)
    reasons.sort(key=lambda r: -abs(WEIGHTS[r]))
    return round(sum(WEIGHTS[r] for r in reasons), 2), reasons


def should_flag(points: float) -> bool:
    return points >= FLAG_THRESHOLD


BIRTH_YEAR_PURPOSE = "persons.birth_year_evidence"
BLOCKING_PURPOSE = "persons.blocking_key"


def stored(ring: KeyRing, ev: Evidence) -> tuple[Evidence, dict[str, Any]]:
    """What is kept of the evidence: the birth year as a keyed blind index too (a year in the clear narrows
    a person down), and the blocking keys hashed. Returns the comparable form (as rows read back are) and
    the intake.persons column values."""
    year = (
        ring.blind_index(str(ev.birth_year), BIRTH_YEAR_PURPOSE)
        if ev.birth_year is not None
        else None
    )
    comparable = Evidence(
        identity=ev.identity,
        full_name=ev.full_name,
        given_family=ev.given_family,
        birth_date=ev.birth_date,
        birth_year=year,
        phone=ev.phone,
        commune=ev.commune,
        province=ev.province,
    )
    columns = {
        "ev_full_name": ev.full_name,
        "ev_given_family": ev.given_family,
        "ev_birth_date": ev.birth_date,
        "ev_birth_year": year,
        "ev_phone": ev.phone,
        "ev_blocking": [ring.blind_index(k, BLOCKING_PURPOSE) for k in ev.blocking_keys()],
    }
    return comparable, columns


def from_row(row: Any) -> Evidence:
    """A stored person's evidence, comparable with `stored(...)[0]`."""
    return Evidence(
        identity=row["identity_bidx"],
        full_name=row["ev_full_name"],
        given_family=row["ev_given_family"],
        birth_date=row["ev_birth_date"],
        birth_year=row["ev_birth_year"],
        phone=row["ev_phone"],
        commune=row["commune"],
        province=row["province"],
    )
