"""Duplicate keys and age bands: accent-insensitive names, normalised id numbers, presumption of minority."""

from __future__ import annotations

from datetime import date

from services.intake.dedupe import full_name, identity_key, name_year_key
from services.intake.person import age_band
from shared.crypto import KeyRing
from shared.domain import AgeBand

RING = KeyRing.generate()


def test_name_key_is_accent_case_order_insensitive() -> None:
    a = name_year_key(RING, full_name("Lan", "Thị", "Nguyễn"), 2000, "01")
    assert a == name_year_key(RING, "nguyen thi  LAN", 2000, "01")
    assert a == name_year_key(RING, "Lan Thi Nguyen", 2000, "01")
    assert a != name_year_key(RING, "Nguyen Thi Lan", 2001, "01")
    assert a != name_year_key(RING, "Nguyen Thi Lan", 2000, "79")
    assert name_year_key(RING, "Đặng Văn Đức", 1999, "01") == name_year_key(
        RING, "dang van duc", 1999, "01"
    )
    assert (
        name_year_key(RING, None, 2000, "01") is None
        and name_year_key(RING, "Lan", None, "01") is None
    )
    assert "nguyen" not in (a or "")


def test_identity_key_normalised() -> None:
    assert identity_key(RING, "0013-0001 2345") == identity_key(RING, "001300012345")
    assert identity_key(RING, "b1234567") == identity_key(RING, "B1234567")
    assert identity_key(RING, None) is None and identity_key(RING, "--") is None
    assert identity_key(RING, "001300012345") != identity_key(KeyRing.generate(), "001300012345")


def test_age_band() -> None:
    on = date(2026, 6, 1)
    assert (
        age_band(birthdate=date(2010, 6, 2), birth_year=None, estimated_age=None, on=on)
        == AgeBand.under_16
    )
    assert (
        age_band(birthdate=date(2010, 6, 1), birth_year=None, estimated_age=None, on=on)
        == AgeBand.age_16_17
    )
    assert (
        age_band(birthdate=date(2008, 6, 1), birth_year=None, estimated_age=None, on=on)
        == AgeBand.adult
    )
    # birth year only: the younger possible age (a child when in doubt)
    assert age_band(birthdate=None, birth_year=2010, estimated_age=None, on=on) == AgeBand.under_16
    assert age_band(birthdate=None, birth_year=2008, estimated_age=None, on=on) == AgeBand.age_16_17
    assert age_band(birthdate=None, birth_year=None, estimated_age=17, on=on) == AgeBand.age_16_17
    assert age_band(birthdate=None, birth_year=None, estimated_age=None, on=on) == AgeBand.unknown
