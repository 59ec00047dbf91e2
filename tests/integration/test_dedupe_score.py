"""Issue 15 item 9: the scored duplicate evidence (services/intake/dedupe.py). Same name, birth year and
province is not enough when the records conflict; a phone or a full birth date carries a pair with a typo or
stripped accents; every flag has its reasons."""

from __future__ import annotations

from services.intake import dedupe
from shared.crypto import KeyRing


def ev(ring: KeyRing, **kw: object) -> dedupe.Evidence:
    base: dict[str, object] = {
        "identity_number": None,
        "first": "Lan",
        "middle": "Thị",
        "second": "Nguyễn",
        "birth_date": None,
        "birth_year": 2003,
        "phone": None,
        "commune": None,
        "province": "20",
    }
    return dedupe.evidence(ring, **{**base, **kw})  # type: ignore[arg-type]


def test_scores_and_reasons() -> None:
    ring = KeyRing.generate()
    # two Nguyễn Thị Lan born 2003 in Lạng Sơn with different birth dates: two women, not flagged
    s, why = dedupe.score(ev(ring, birth_date="2003-02-01"), ev(ring, birth_date="2003-09-12"))
    assert why == ["different_birth_date", "same_full_name", "same_province"] and s == -1.7
    assert not dedupe.should_flag(s)
    # ... and in different communes, without birth dates: not flagged either
    s, why = dedupe.score(ev(ring, commune="20001"), ev(ring, commune="20017"))
    assert s == 2.0 and not dedupe.should_flag(s) and "different_commune" in why
    # the same name and year alone is as weak as the old rule: flagged at the threshold, reasons say why
    s, why = dedupe.score(ev(ring), ev(ring))
    assert (s, why) == (
        2.8,
        ["same_full_name", "same_birth_year", "same_province"],
    ) and dedupe.should_flag(s)
    # accents stripped and a typo in the given name, same phone in another format and same birth date: flagged
    a = ev(ring, birth_date="2003-02-01", phone="0912345678")
    b = ev(
        ring,
        first="Lam",
        middle="Thi",
        second="Nguyen",
        birth_date="2003-02-01",
        phone="+84 912 345 678",
    )
    s, why = dedupe.score(a, b)
    assert (
        why == ["same_phone", "same_birth_date", "same_province"]
        and s == 6.8
        and dedupe.should_flag(s)
    )
    assert set(a.blocking_keys()) & set(b.blocking_keys())  # found as a candidate through the phone
    # the same identity number outweighs everything else; a different one counts against
    s, why = dedupe.score(
        ev(ring, identity_number="001303012345", first="Mai"),
        ev(ring, identity_number="0013-0301-2345", first="Hoa"),
    )
    assert why[0] == "same_identity_number" and dedupe.should_flag(s)
    s, _ = dedupe.score(
        ev(ring, identity_number="001303012345"), ev(ring, identity_number="079300099999")
    )
    assert not dedupe.should_flag(s)
    assert all(
        r in dedupe.REASONS_VI for r in dedupe.WEIGHTS
    )  # every reason has its Vietnamese wording
    assert (
        dedupe.normalise_phone("+84 912-345-678")
        == dedupe.normalise_phone("0912345678")
        == "912345678"
    )
