"""Possible-duplicate keys: keyed blind indexes over normalised identity facts.

Two persons are possible duplicates when they share an identity number (normalised: letters and
digits only, upper case), or the same accent-insensitive full name + birth year + province
("Nguyễn Thị Lan" = "nguyen thi  LAN"). Keys are HMACs under the key ring's blind-index key, so the
database never holds the clear text. Candidates are flagged for a caseworker, never merged."""

from __future__ import annotations

from shared.crypto import KeyRing, normalise_identity_number, normalise_text

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
