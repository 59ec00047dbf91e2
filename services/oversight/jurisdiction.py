"""Which province an oversight caller looks at: their own, any (national users and admins), and for
reports to the steering committee, whether the report leaves the caller's jurisdiction (then its figures
are disclosure-controlled, see reports.py)."""

from __future__ import annotations

from shared.auth import Principal
from shared.domain import Role


class OutsideJurisdiction(Exception):
    """The caller may not look at that province; the message names the field and why (an HTTP 403)."""


def _national(p: Principal) -> bool:
    return p.national or Role.admin in p.roles


def province_of(p: Principal, province: str | None) -> str | None:
    """The province the caller looks at. National users and admins: the one asked for (None = all);
    others: their own, and asking for another is refused."""
    if _national(p):
        return None if province in (None, "*") else province
    if province is not None and province != p.province:
        raise OutsideJurisdiction(
            f"province: {province} is outside your jurisdiction ({p.province})"
        )
    return p.province


def report_province(p: Principal, province: str | None) -> str | None:
    """The province a report covers (None = national). Any province may be asked for (reports are
    aggregates; outside the caller's own they are disclosure-controlled), the national report only by a
    national user or an admin."""
    prov = province if province not in (None, "*") else (None if p.national else p.province)
    if prov is None and not _national(p):
        raise OutsideJurisdiction("province: national reports need a national user")
    return prov


def report_leaves_jurisdiction(p: Principal, prov: str | None, external: bool) -> bool:
    """Whether the report leaves the caller's jurisdiction: asked as external, or about another province
    (or the national report for a provincial user)."""
    return external or p.province != (prov or "*")
