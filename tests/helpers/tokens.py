"""One way to be somebody in a test: a dev token (signed with the test key ring) as a Bearer header, and
the same person as the workflow's Actor. Caseworker unless other roles are given; the user id defaults to
`<agency>-1`, so two calls for the same agency are the same person."""

from __future__ import annotations

from shared.auth import mint_token
from shared.contract import Actor
from shared.crypto import KeyRing
from shared.domain import AgencyRole, Role

PROVINCE = "01"  # Hà Nội


def bearer(
    ring: KeyRing,
    agency: AgencyRole = AgencyRole.police,
    *roles: Role,
    user: str | None = None,
    province: str = PROVINCE,
    display_name: str = "",
) -> dict[str, str]:
    token = mint_token(
        ring,
        user_id=user or f"{agency.value}-1",
        roles=list(roles or (Role.caseworker,)),
        agency=agency,
        province=province,
        display_name=display_name,
    )
    return {"Authorization": f"Bearer {token}"}


def wf_actor(
    agency: AgencyRole, *roles: Role, user: str | None = None, province: str = PROVINCE
) -> Actor:
    return Actor(
        user_id=user or f"{agency.value}-1",
        agency=agency,
        roles=frozenset(roles or (Role.caseworker,)),
        province=province,
    )
