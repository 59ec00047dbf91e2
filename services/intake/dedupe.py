"""Possible duplicates: keyed blind indexes over normalised identity facts, and a score.

Two persons are possible duplicates when they share an identity number (normalised: letters and
digits only, upper case), or when the evidence they share (accent-insensitive full name, birth date or
year, phone, commune, province) scores at least FLAG_THRESHOLD (`score`, below). Keys are HMACs under the
key ring's blind-index key, so the database never holds the clear text. Candidates are flagged for a
caseworker with their score and reasons, never merged. Persons stored before scoring (intake migration
006) are still matched by the old keys: identity number, or name + birth year + province.

An identity number matches across provinces. A caller sees the id of a case on a candidate only when
their jurisdiction covers that case's province; otherwise they learn only that a match exists
elsewhere (a case id is a handle on a person in a province they may not reach)."""

from __future__ import annotations

from typing import Any

from shared.crypto import KeyRing, normalise_text

from .duplicate_evidence import (  # re-exported: one import for callers
    BIRTHDATE_PURPOSE,
    FLAG_THRESHOLD,
    IDENTITY_PURPOSE,
    REASONS_VI,
    WEIGHTS,
    Evidence,
    evidence,
    from_row,
    full_name,
    identity_key,
    normalise_phone,
    score,
    should_flag,
    stored,
)
from .models import OUTSIDE_JURISDICTION, DuplicateFlag, DuplicateOut
from .repository import DuplicateRow

NAME_YEAR_PURPOSE = "persons.name_birth_year_province"
__all__ = [
    "BIRTHDATE_PURPOSE",
    "FLAG_THRESHOLD",
    "IDENTITY_PURPOSE",
    "NAME_YEAR_PURPOSE",
    "REASONS_VI",
    "WEIGHTS",
    "Evidence",
    "candidate_view",
    "evidence",
    "flag_view",
    "from_row",
    "full_name",
    "identity_key",
    "name_year_key",
    "normalise_phone",
    "score",
    "should_flag",
    "stored",
]


def name_year_key(
    ring: KeyRing, name: str | None, birth_year: int | None, province: str
) -> str | None:
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
    return DuplicateFlag(
        candidate_id=row["candidate_id"],
        match_kind=row["match_kind"],
        score=row.get("score"),
        reasons=list(row.get("reasons") or []),
        other_case_id=row["other_case_id"] if visible else None,
        within_your_jurisdiction=visible,
        note=None if visible else OUTSIDE_JURISDICTION,
    )


def candidate_view(principal: Any, row: DuplicateRow) -> DuplicateOut:
    """A candidate as any reader sees it: each case id only within their jurisdiction; the decision's
    author and reason (which speak of both persons) only when both cases are."""
    newer = bool(principal.covers_province(row["case_province"]))
    older = bool(principal.covers_province(row["other_province"]))
    both = newer and older
    return DuplicateOut(
        candidate_id=row["candidate_id"],
        case_id=row["case_id"] if newer else None,
        other_case_id=row["other_case_id"] if older else None,
        within_your_jurisdiction=both,
        note=None if both else OUTSIDE_JURISDICTION,
        match_kind=row["match_kind"],
        score=row.get("score"),
        reasons=list(row.get("reasons") or []),
        status=row["status"],
        flagged_at=row["flagged_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"] if both else None,
        reason=row["reason"] if both else None,
    )
