"""The HTCDS data standard (standards/htcds/fields.csv): field names, types and picklists.

Usable by every service: `fields()` maps each HTCDS field name (`prs_Gender`, `vic_TypeOfExploitation`,
...) to its spec; `check(field, value)` raises `PicklistError` naming the field and the allowed values.

Where the CSV comes from: `NRM_HTCDS_FIELDS` if set, else the copy shipped with the intake package
(`services/intake/htcds_fields.csv`, the same file as docs/reference/standards/htcds/fields.csv).
Multi-line picklist cells are parsed with the csv module.

National extensions (`NATIONAL`): values Vietnam needs that the standard's picklists lack, accepted beside the
standard's values. Each names the standard value it exports as (`nearest`) and the details it may carry; an
HTCDS export holds the nearest value and keeps the national value and its details in the NRM extension
(`x_nrm`), so a round trip through HTCDS restores them (`to_standard` / `from_standard`)."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from shared.config import REPO_ROOT

PACKAGED_CSV = REPO_ROOT / "services" / "intake" / "htcds_fields.csv"

# Cells that describe a code standard instead of listing values.
_ISO_LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z]{2})?$")
_ISO_COUNTRY = re.compile(r"^[A-Za-z]{2,3}$")


class PicklistError(ValueError):
    """A value outside a field's picklist. The message names the field and the allowed values."""

    def __init__(self, field: str, value: object, allowed: Iterable[str] | str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed if isinstance(allowed, str) else list(allowed)
        shown = self.allowed if isinstance(self.allowed, str) else ", ".join(self.allowed)
        super().__init__(f"{field}: {value!r} is not allowed; allowed values: {shown}")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    section: str
    field_type: str
    core: bool
    values: tuple[str, ...]  # picklist values; empty for free fields and code standards
    code_standard: str | None  # "ISO 639" / "ISO 3166" when the cell names a standard
    description: str

    @property
    def prefix(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def multiselect(self) -> bool:
        return self.field_type.lower().startswith("multiselect")

    @property
    def is_picklist(self) -> bool:
        return bool(self.values) or self.code_standard is not None

    def check_one(self, value: str) -> str:
        if self.values:
            if value not in self.values:
                raise PicklistError(self.name, value, self.values)
            return value
        if self.code_standard == "ISO 639":
            if not _ISO_LANGUAGE.match(value):
                raise PicklistError(self.name, value, "an ISO 639 language code, e.g. vie, vi, eng")
            return value.lower()
        if self.code_standard == "ISO 3166":
            if not _ISO_COUNTRY.match(value):
                raise PicklistError(self.name, value, "an ISO 3166 country code, e.g. VN, KH, CN")
            return value.upper()
        return value

    def check(self, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list):
            if not self.multiselect:
                raise PicklistError(
                    self.name, value, "a single value (this is not a multiselect field)"
                )
            return [self.check_one(v) for v in value]
        return self.check_one(value)


def csv_path() -> Path:
    env = os.environ.get("NRM_HTCDS_FIELDS")
    if env:
        return Path(env)
    return PACKAGED_CSV


def parse(path: Path) -> dict[str, FieldSpec]:
    out: dict[str, FieldSpec] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name = (row.get("Field Name including Prefix") or "").strip()
            if not name:
                continue
            cell = row.get("Value Names (if picklist)") or ""
            standard = None
            values: tuple[str, ...] = ()
            if "ISO 639" in cell:
                standard = "ISO 639"
            elif "ISO 3166" in cell:
                standard = "ISO 3166"
            else:
                values = tuple(v.strip() for v in cell.splitlines() if v.strip())
            out[name] = FieldSpec(
                name=name,
                section=" ".join((row.get("Section") or "").replace("-", " ").split()),
                field_type=(row.get("Field Type") or "").strip(),
                core=(row.get("Core") or "").strip() == "Core",
                values=values,
                code_standard=standard,
                description=(row.get("Description") or "").strip(),
            )
    return out


@dataclass(frozen=True)
class NationalValue:
    """A value added to a standard picklist for Vietnam, exported to HTCDS as `nearest`."""

    field: str
    value: str
    nearest: str
    details: tuple[str, ...]
    label_vi: str
    label_en: str
    why: str


NATIONAL: tuple[NationalValue, ...] = (
    NationalValue(
        field="vic_TypeOfExploitation",
        value="ForcedCriminality",
        nearest="ForcedLabour",
        details=("online_scam_compound", "drug_production_or_trafficking", "other"),
        label_vi="Bị ép buộc thực hiện hành vi phạm tội",
        label_en="Forced criminality",
        why="people held in online-scam compounds (Cambodia, Myanmar, Laos) and forced to defraud others; HTCDS has "
        "no value for it; the ILO counts forced criminal activity as forced labour, so it exports as "
        "ForcedLabour with the national value and its detail kept in x_nrm",
    ),
)
DETAIL_LABELS: dict[str, tuple[str, str]] = {
    "online_scam_compound": ("Cơ sở lừa đảo trực tuyến", "Online-scam compound"),
    "drug_production_or_trafficking": (
        "Sản xuất, vận chuyển ma túy",
        "Drug production or trafficking",
    ),
    "other": ("Khác", "Other"),
}


def national(name: str) -> dict[str, NationalValue]:
    """The national extension values of a field, by value."""
    return {n.value: n for n in NATIONAL if n.field == name}


def _with_national(specs: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
    out = dict(specs)
    for n in NATIONAL:
        spec = out.get(n.field)
        if spec is None or n.nearest not in spec.values:
            raise ValueError(
                f"national value {n.value}: {n.field} has no standard value {n.nearest}"
            )
        if n.value not in spec.values:
            out[n.field] = FieldSpec(
                spec.name,
                spec.section,
                spec.field_type,
                spec.core,
                (*spec.values, n.value),
                spec.code_standard,
                spec.description,
            )
    return out


def standard_values(name: str) -> tuple[str, ...]:
    """The field's picklist as the standard has it (without national extensions)."""
    ext = national(name)
    return tuple(v for v in field(name).values if v not in ext)


def to_standard(name: str, values: list[str]) -> tuple[list[str], list[str]]:
    """(the values as HTCDS has them, the full national list to keep in the extension: empty when it holds no
    national value). Order kept, no repeats."""
    ext = national(name)
    std: list[str] = []
    for v in values:
        s = ext[v].nearest if v in ext else v
        if s not in std:
            std.append(s)
    return std, (list(values) if any(v in ext for v in values) else [])


def from_standard(name: str, values: list[str], kept: list[str]) -> list[str]:
    """Undo `to_standard`: the national list kept in the extension, when it still exports to exactly these
    standard values (a record edited outside NRM keeps its standard values)."""
    if kept and sorted(to_standard(name, kept)[0]) == sorted(values):
        return list(kept)
    return list(values)


@lru_cache(maxsize=1)
def fields() -> dict[str, FieldSpec]:
    """The standard's fields, national extension values added to their picklists."""
    return _with_national(parse(csv_path()))


def field(name: str) -> FieldSpec:
    spec = fields().get(name)
    if spec is None:
        raise KeyError(f"{name} is not an HTCDS field")
    return spec


def picklist(name: str) -> tuple[str, ...]:
    return field(name).values


def check(name: str, value: str | list[str]) -> str | list[str]:
    """Validate a value (or a multiselect list) against the field's picklist; returns it normalised."""
    return field(name).check(value)
