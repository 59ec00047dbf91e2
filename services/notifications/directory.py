"""The agency directory: who stands behind "supervisor", "agency_head", "steering_committee", an agency role,
or "assignee", in a province. A small YAML file in production (`NRM_NOTIFY_DIRECTORY_FILE`); in development
a generated sample (every province, every agency role, addresses at nrm.example).

Format:

    provinces:
      "20":
        steering_committee: [{id: bcd138-20, email: bcd138@langson.example, phone: "+84205...", language: vi}]
        agencies:
          police:
            desk: [{id: police-20, email: ...}]          # the agency's duty desk (an agency role recipient)
            supervisor: [{id: ..., email: ...}]
            agency_head: [{id: ..., email: ...}]
          social_protection:
            names:                                     # optional: the body's own name, by date
              - {vi: "Sở Lao động – Thương binh và Xã hội tỉnh Lạng Sơn", to: "2025-03-01"}
              - {vi: "Sở Y tế tỉnh Lạng Sơn", en: "Lang Son Department of Health", from: "2025-03-01"}
    users:                                             # named people (assignees), by their token's user id
      u-123: {email: ..., phone: ..., language: en}

Every contact belongs to a group (`desk:police:20`, `supervisor:police:20`, `agency_head:police:20`,
`steering_committee:20`, `user:<id>`): the console's inbox lists a group's items to the people the group
stands for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from shared.agencies import Lang, body_on
from shared.contract import VN_PROVINCE_CODES
from shared.domain import AgencyRole

GROUP_ROLES = ("desk", "supervisor", "agency_head")


@dataclass(frozen=True)
class Contact:
    id: str
    group: str
    province: str | None
    email: str | None = None
    phone: str | None = None
    language: str = "vi"

    @property
    def is_person(self) -> bool:
        return self.group.startswith("user:")


class Directory:
    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data

    @classmethod
    def load(cls, path: Path | None) -> Directory:
        if path is None:
            return cls(sample_directory())
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict) or "provinces" not in raw:
            raise ValueError(f"{path}: an agency directory has a 'provinces' mapping")
        return cls(raw)

    def _contacts(self, entries: Any, group: str, province: str | None) -> list[Contact]:
        out = []
        for e in entries or []:
            out.append(
                Contact(
                    id=str(e["id"]),
                    group=group,
                    province=province,
                    email=e.get("email"),
                    phone=e.get("phone"),
                    language=str(e.get("language", "vi")),
                )
            )
        return out

    def group(self, role: str, province: str, agency: str | None) -> list[Contact]:
        prov = (self.data.get("provinces") or {}).get(province) or {}
        if role == "steering_committee":
            return self._contacts(
                prov.get("steering_committee"), f"steering_committee:{province}", province
            )
        if agency is None:
            return []
        entries = ((prov.get("agencies") or {}).get(agency) or {}).get(role)
        return self._contacts(entries, f"{role}:{agency}:{province}", province)

    def agency_name(self, province: str, agency: str, on: date, lang: Lang = "vi") -> str:
        """The body that holds the role in the province on that day: the directory's own name for it
        (e.g. "Sở Y tế tỉnh Lạng Sơn") when it gives one for that date, else the role's body from
        shared/agencies.py (the 2025 reorganisation moved social protection to health, ...)."""
        entry = (
            ((self.data.get("provinces") or {}).get(province) or {}).get("agencies", {}).get(agency)
        )
        for named in (entry or {}).get("names") or []:
            since = named.get("from")
            until = named.get("to")
            if (since is None or date.fromisoformat(str(since)) <= on) and (
                until is None or on < date.fromisoformat(str(until))
            ):
                return str(named.get(lang) or named["vi"])
        return body_on(AgencyRole(agency), on).name(lang)

    def user(self, user_id: str, province: str | None) -> Contact | None:
        e = (self.data.get("users") or {}).get(user_id)
        if e is None:
            return None
        return Contact(
            id=user_id,
            group=f"user:{user_id}",
            province=province,
            email=e.get("email"),
            phone=e.get("phone"),
            language=str(e.get("language", "vi")),
        )


def sample_directory() -> dict[str, Any]:
    """Development only: one desk, one supervisor and one head per agency role and province, and a
    steering committee per province, at nrm.example (nrm up's mail sink keeps what is sent to them)."""
    provinces: dict[str, Any] = {}
    for code in sorted(VN_PROVINCE_CODES):
        agencies = {}
        for n, agency in enumerate(AgencyRole):
            agencies[agency.value] = {
                role: [
                    {
                        "id": f"{role}:{agency.value}:{code}",
                        "email": f"{role}.{agency.value}.{code}@nrm.example",
                        "phone": f"+849{code}{n:02d}{i}000",
                        "language": "vi",
                    }
                ]
                for i, role in enumerate(GROUP_ROLES)
            }
        provinces[code] = {
            "agencies": agencies,
            "steering_committee": [
                {
                    "id": f"steering_committee:{code}",
                    "email": f"bcd138.{code}@nrm.example",
                    "phone": f"+849{code}999000",
                    "language": "vi",
                }
            ],
        }
    return {"provinces": provinces, "users": {}}


def resolve(
    directory: Directory,
    recipients: list[str],
    *,
    province: str | None,
    owner_agency: str | None,
    assignee: str | None,
) -> list[Contact]:
    """The contacts a notification's recipients stand for, each once (first mention wins).

    - "assignee": the assignee's own contact (directory `users`), else the owner agency's desk;
    - "supervisor" / "agency_head": of the owner agency, or of the agency addressed beside it in the same
      province ("social_protection@40" next to "supervisor@40" in a transfer), in the case's province or
      the one after "@";
    - "steering_committee": the province's Ban Chỉ đạo 138;
    - an agency role: that agency's desk."""
    agency_in: dict[str, str] = {}
    parsed: list[tuple[str, str | None]] = []
    roles = {"assignee", "supervisor", "agency_head", "steering_committee"}
    for r in recipients:
        name, _, prov = r.partition("@")
        p = prov or province
        parsed.append((name, p))
        if name not in roles and p is not None:
            agency_in.setdefault(p, name)
    out: dict[str, Contact] = {}
    for name, p in parsed:
        if p is None:
            continue
        found: list[Contact] = []
        if name == "assignee":
            person = directory.user(assignee, p) if assignee else None
            found = [person] if person else directory.group("desk", p, owner_agency)
        elif name in ("supervisor", "agency_head"):
            agency = agency_in.get(p) if p != province else None
            found = directory.group(name, p, agency or owner_agency)
        elif name == "steering_committee":
            found = directory.group("steering_committee", p, None)
        else:
            found = directory.group("desk", p, name)
        for c in found:
            out.setdefault(c.id, c)
    return list(out.values())
