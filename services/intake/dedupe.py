"""Possible-duplicate keys: keyed blind indexes over normalised identity facts.

Two persons are possible duplicates when they share an identity number (normalised: letters and
digits only, upper case), or the same accent-insensitive full name + birth year + province
("Nguyễn Thị Lan" = "nguyen thi  LAN"). Keys are HMACs under the key ring's blind-index key, so the
database never holds the clear text. Candidates are flagged for a caseworker, never merged.

An identity number matches across provinces. A caller sees the id of a case on a candidate only when
their jurisdiction covers that case's province; otherwise they learn only that a match exists
elsewhere (a case id is a handle on a person in a province they may not reach)."""

from __future__ import annotations

from typing import Any

from shared.crypto import KeyRing, normalise_identity_number, normalise_text

from .models import OUTSIDE_JURISDICTION, DuplicateFlag, DuplicateOut
from .repository import DuplicateRow

IDENTITY_PURPOSE = "persons.identity_number"
NAME_YEAR_PURPOSE = "persons.name_birth_year_province"


def full_name(first: str | None, middle: str | None, second: str | None) -> str | None:
    """Vietnamese order: family (second) name, middle name, given (first) name."""
    parts = [p for p in (second, middle, first) if p and p.strip()]
    return " ".join(parts) if parts else None


def identity_key(ring: KeyRing, identity_number: str | None) -> str | None:
    if not identity_number:
        return None
    normalised = normalise_identity_number(identity_number)
    return ring.blind_index(normalised, IDENTITY_PURPOSE) if len(normalised) >= 3 else None


def name_year_key(ring: KeyRing, name: str | None, birth_year: int | None, province: str) -> str | None:
    """Needs a name and a birth year; the order of name parts does not matter (given/family swaps)."""
    if not name or birth_year is None:
        return None
    tokens = sorted(normalise_text(name).split())
    if not tokens:
        return None
    return ring.blind_index(f"{' '.join(tokens)}|{birth_year}|{province}", NAME_YEAR_PURPOSE)


def flag_view(principal: Any, row: DuplicateRow) -> DuplicateFlag:
    """A candidate as the opener of the newer case sees it."""
    visible = bool(principal.covers_province(row["other_province"]))
    return DuplicateFlag(candidate_id=row["candidate_id"], match_kind=row["match_kind"],
                         other_case_id=row["other_case_id"] if visible else None,
                         within_your_jurisdiction=visible, note=None if visible else OUTSIDE_JURISDICTION)


def candidate_view(principal: Any, row: DuplicateRow) -> DuplicateOut:
    """A candidate as any reader sees it: each case id only within their jurisdiction; the decision's
    author and reason (which speak of both persons) only when both cases are."""
    newer = bool(principal.covers_province(row["case_province"]))
    older = bool(principal.covers_province(row["other_province"]))
    both = newer and older
    return DuplicateOut(
        candidate_id=row["candidate_id"], case_id=row["case_id"] if newer else None,
        other_case_id=row["other_case_id"] if older else None, within_your_jurisdiction=both,
        note=None if both else OUTSIDE_JURISDICTION, match_kind=row["match_kind"], status=row["status"],
        flagged_at=row["flagged_at"], decided_at=row["decided_at"],
        decided_by=row["decided_by"] if both else None, reason=row["reason"] if both else None)
