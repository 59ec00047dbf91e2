"""Duplicate flags in a mass arrival (issue 15 item 9): precision and recall of the old rule (identity number,
or full name + birth year + province) and the scored rule (services/intake/dedupe.py `score`) on a generated
arrival with known duplicates, in the same run.

Names follow the Vietnamese distribution: a few family names cover most people (Nguyễn ~38%, Trần ~11%,
Lê ~9.5%, Phạm ~7%...), women mostly "Thị" as middle name, a few dozen common given names; birth years mostly
1995-2010; most people from a few provinces near the border post. A duplicate is the same person recorded
again, with what happens on a busy day: accents stripped, a typo in the given name, the middle name dropped,
the birth date reduced to a year or missing, no phone, another phone format, no commune.

    .venv/bin/python bench/dedupe/run.py [--persons 7000] [--dup-rate 0.10] [--seed 15]
"""

from __future__ import annotations

import argparse
import random
import sys
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.intake import dedupe
from shared.crypto import KeyRing

FAMILY = [
    ("Nguyễn", 38),
    ("Trần", 11),
    ("Lê", 9.5),
    ("Phạm", 7),
    ("Hoàng", 4),
    ("Huỳnh", 1),
    ("Phan", 4.5),
    ("Vũ", 3.9),
    ("Võ", 1),
    ("Đặng", 2.1),
    ("Bùi", 2),
    ("Đỗ", 1.4),
    ("Hồ", 1.3),
    ("Ngô", 1.3),
    ("Dương", 1),
    ("Lý", 0.5),
    ("Đinh", 1),
    ("Lương", 0.8),
    ("Hà", 0.8),
    ("Mai", 0.5),
    ("Lò", 0.6),
    ("Sùng", 0.5),
    ("Giàng", 0.5),
    ("Vàng", 0.4),
    ("Triệu", 0.4),
]
GIVEN_F = [
    "Lan",
    "Hương",
    "Mai",
    "Linh",
    "Trang",
    "Hà",
    "Thảo",
    "Ngọc",
    "Huyền",
    "Anh",
    "Nhung",
    "Hằng",
    "Phương",
    "Thủy",
    "Yến",
    "Hoa",
    "Dung",
    "Nga",
    "Vân",
    "Loan",
    "Hạnh",
    "Thu",
    "Quỳnh",
    "Chi",
    "Mỷ",
    "Dợ",
    "Sua",
]
GIVEN_M = [
    "Hùng",
    "Dũng",
    "Nam",
    "Tuấn",
    "Minh",
    "Long",
    "Hải",
    "Sơn",
    "Thắng",
    "Cường",
    "Quang",
    "Đức",
    "Hiếu",
    "Trung",
    "Phong",
    "Tú",
    "Vinh",
    "Thành",
    "Lâm",
    "Khánh",
    "Páo",
    "Chứ",
    "Sềnh",
]
MIDDLE_F = [
    ("Thị", 70),
    ("Ngọc", 6),
    ("Thu", 5),
    ("Thanh", 5),
    ("Minh", 4),
    ("Kim", 4),
    ("Hồng", 3),
    ("Mai", 3),
]
MIDDLE_M = [
    ("Văn", 60),
    ("Đức", 8),
    ("Minh", 8),
    ("Quang", 6),
    ("Thanh", 6),
    ("Hữu", 6),
    ("Công", 6),
]
PROVINCES = [
    ("20", 40),
    ("04", 15),
    ("08", 12),
    ("14", 10),
    ("40", 10),
    ("01", 8),
    ("19", 5),
]  # border post in 20
COMMUNES_PER_PROVINCE = 40


@dataclass(frozen=True)
class Rec:
    person: int
    first: str
    middle: str | None
    second: str
    birth_date: str | None
    birth_year: int | None
    phone: str | None
    identity: str | None
    commune: str | None
    province: str


def pick(rng: random.Random, weighted: list[tuple[str, float]]) -> str:
    return rng.choices([w[0] for w in weighted], [w[1] for w in weighted])[0]


def strip_accents(s: str) -> str:
    return "".join(
        c
        for c in unicodedata.normalize("NFD", s.replace("Đ", "D").replace("đ", "d"))
        if unicodedata.category(c) != "Mn"
    )


def person(rng: random.Random, i: int) -> Rec:
    female = rng.random() < 0.7
    born = date(1995, 1, 1) + timedelta(days=int(rng.triangular(0, 16 * 365, 9 * 365)))
    province = pick(rng, PROVINCES)
    return Rec(
        person=i,
        first=rng.choice(GIVEN_F if female else GIVEN_M),
        middle=pick(rng, MIDDLE_F if female else MIDDLE_M),
        second=pick(rng, FAMILY),
        birth_date=born.isoformat() if rng.random() < 0.6 else None,
        birth_year=born.year if rng.random() < 0.95 else None,
        phone=f"09{rng.randrange(10**8):08d}" if rng.random() < 0.55 else None,
        identity=f"0{rng.randrange(10**11):011d}" if rng.random() < 0.25 else None,
        commune=f"{province}{rng.randrange(COMMUNES_PER_PROVINCE):03d}"
        if rng.random() < 0.7
        else None,
        province=province,
    )


def typo(rng: random.Random, s: str) -> str:
    if len(s) < 3:
        return s
    i = rng.randrange(1, len(s))
    return (
        s[:i] + rng.choice("aeinoưhtg") + s[i + 1 :] if rng.random() < 0.5 else s[:i] + s[i + 1 :]
    )


def recorded_again(rng: random.Random, r: Rec) -> Rec:
    d = r
    if rng.random() < 0.35:
        d = replace(
            d,
            first=strip_accents(d.first),
            middle=strip_accents(d.middle) if d.middle else None,
            second=strip_accents(d.second),
        )
    if rng.random() < 0.10:
        d = replace(d, first=typo(rng, d.first))
    if rng.random() < 0.10:
        d = replace(d, middle=None)
    if d.birth_date and rng.random() < 0.30:
        d = replace(d, birth_date=None)
    if rng.random() < 0.05:
        d = replace(d, birth_year=None, birth_date=None)
    if rng.random() < 0.40:
        d = replace(d, phone=None)
    elif d.phone and rng.random() < 0.5:
        d = replace(d, phone="+84 " + d.phone[1:4] + " " + d.phone[4:])
    if rng.random() < 0.40:
        d = replace(d, identity=None)
    if rng.random() < 0.40:
        d = replace(d, commune=None)
    return d


def old_keys(ring: KeyRing, r: Rec) -> list[str]:
    keys = [
        dedupe.identity_key(ring, r.identity),
        dedupe.name_year_key(
            ring, dedupe.full_name(r.first, r.middle, r.second), r.birth_year, r.province
        ),
    ]
    return [k for k in keys if k]


def pairs_sharing(keys: dict[int, list[str]]) -> set[tuple[int, int]]:
    by_key: dict[str, list[int]] = defaultdict(list)
    for idx, ks in keys.items():
        for k in ks:
            by_key[k].append(idx)
    out: set[tuple[int, int]] = set()
    for members in by_key.values():
        for x in range(len(members)):
            for y in range(x + 1, len(members)):
                out.add((members[x], members[y]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=7000)
    ap.add_argument("--dup-rate", type=float, default=0.10)
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    ring = KeyRing.generate()
    n_dup = int(args.persons * args.dup_rate)
    originals = [person(rng, i) for i in range(args.persons - n_dup)]
    records = originals + [recorded_again(rng, rng.choice(originals)) for _ in range(n_dup)]
    rng.shuffle(records)
    by_person: dict[int, list[int]] = defaultdict(list)
    for idx, r in enumerate(records):
        by_person[r.person].append(idx)
    truth = {
        (m[x], m[y])
        for m in by_person.values()
        for x in range(len(m))
        for y in range(x + 1, len(m))
    }

    old = pairs_sharing({i: old_keys(ring, r) for i, r in enumerate(records)})
    ev = [
        dedupe.evidence(
            ring,
            identity_number=r.identity,
            first=r.first,
            middle=r.middle,
            second=r.second,
            birth_date=r.birth_date,
            birth_year=r.birth_year,
            phone=r.phone,
            commune=r.commune,
            province=r.province,
        )
        for r in records
    ]
    candidates = pairs_sharing({i: e.blocking_keys() for i, e in enumerate(ev)})
    new = {p for p in candidates if dedupe.should_flag(dedupe.score(ev[p[0]], ev[p[1]])[0])}

    def measure(flagged: set[tuple[int, int]]) -> tuple[int, int, float, float, int]:
        tp = len(flagged & truth)
        rows = len({i for p in flagged for i in p})
        return (
            len(flagged),
            tp,
            tp / len(flagged) if flagged else 1.0,
            tp / len(truth) if truth else 1.0,
            rows,
        )

    print(
        f"arrival: {len(records)} records, {len(truth)} true duplicate pairs "
        f"({n_dup} records repeated), seed {args.seed}, threshold {dedupe.FLAG_THRESHOLD}"
    )
    print(
        f"{'rule':<42} {'pairs flagged':>13} {'true':>6} {'precision':>9} {'recall':>7} {'rows flagged':>12}"
    )
    for name, flagged in (
        ("old: id, or name + birth year + province", old),
        ("candidates (blocking keys, before scoring)", candidates),
        ("new: scored evidence >= threshold", new),
    ):
        f, tp, p, r, rows = measure(flagged)
        print(f"{name:<42} {f:>13} {tp:>6} {p:>9.3f} {r:>7.3f} {rows:>12}")
    scores = {pair: dedupe.score(ev[pair[0]], ev[pair[1]])[0] for pair in candidates}
    for t in (2.0, 2.5, 2.8, 3.0, 4.0, 5.0):
        f, tp, p, r, rows = measure({pair for pair, s in scores.items() if s >= t})
        print(f"{'  threshold ' + str(t):<42} {f:>13} {tp:>6} {p:>9.3f} {r:>7.3f} {rows:>12}")


if __name__ == "__main__":
    main()
