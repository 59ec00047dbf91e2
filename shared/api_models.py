"""Building blocks of every service's request models and parameters: strict input, the optimistic version,
bounded text, bounded integers and ids, and the one check for characters PostgreSQL cannot store.

`Reason` and `Ref` are the workflow contract's own types (shared/contract.py), re-exported here so a
service's models.py imports its boundary types from one place. Declare a new endpoint's parameters with the
types below (`Limit`, `Offset`, `IdPath`, `IdQuery`, `Version`, ...) and it is bounded like every other one:
out-of-range values and empty ids are a 422 naming the field, never a 500 from the database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Path, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from shared.contract import CaseState, Reason, Ref
from shared.domain import AgencyRole, CaseStatus, Stage, TraffickingStatus

# ---- characters PostgreSQL cannot store ------------------------------------------------------------
# U+0000 is refused by PostgreSQL in text/jsonb; a lone surrogate (U+D800..U+DFFF, which JSON's "\ud800" can
# carry) is not valid Unicode and cannot be encoded as UTF-8 by asyncpg (nor rendered in a JSON response).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TYPE = "unstorable_character"


def unstorable_reason(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (U+0000), which cannot be stored"
    return (
        f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not valid Unicode text"
    )


def find_unstorable(
    value: Any, loc: tuple[int | str, ...] = ()
) -> Iterator[tuple[tuple[int | str, ...], str]]:
    """(loc, reason) of every string in `value` (JSON-like: dicts, lists, strings), keys included, that
    cannot be stored."""
    if isinstance(value, str):
        reason = unstorable_reason(value)
        if reason is not None:
            yield loc, reason
    elif isinstance(value, dict):
        for key, item in value.items():
            key_loc = (*loc, safe_text(key) if isinstance(key, str) else str(key))
            if isinstance(key, str) and (reason := unstorable_reason(key)) is not None:
                yield key_loc, f"field name {reason}"
            yield from find_unstorable(item, key_loc)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from find_unstorable(item, (*loc, index))


def safe_text(text: str) -> str:
    """`text` with lone surrogates written as \\udXXX escapes, so that an error message can carry it."""
    return (
        text.encode("utf-8", "backslashreplace").decode("utf-8")
        if _UNSTORABLE.search(text)
        else text
    )


def unstorable_error(loc: tuple[int | str, ...], reason: str) -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(UNSTORABLE_TYPE, reason), loc=loc, input="")


class StorableText(BaseModel):
    """A request body model whose every string, at any depth (nested models, lists, free-form dicts, keys),
    can be stored: a NUL or a lone surrogate is a 422 whose `loc` names the field. Checked once on the raw
    input before the fields are validated (the outermost model sees the whole body, so the `loc` is full)."""

    @model_validator(mode="before")
    @classmethod
    def _storable_text(cls, data: Any) -> Any:
        errors = [unstorable_error(loc, reason) for loc, reason in find_unstorable(data)]
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return data


class In(StorableText):
    """A request body: unknown fields are errors, surrounding whitespace is dropped, text is storable."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- bounded values -----------------------------------------------------------------------------
INT32_MAX = 2**31 - 1  # PostgreSQL integer
BIGINT_MAX = 2**63 - 1  # PostgreSQL bigint
MAX_OFFSET = 1_000_000

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=4000)]
ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"
Id = Annotated[
    str, Field(min_length=1, max_length=64, pattern=ID_PATTERN)
]  # = Ref: an opaque row or case id
Version = Annotated[int, Field(ge=0, le=INT32_MAX)]
Amount = Annotated[int, Field(ge=0, le=BIGINT_MAX)]

# query and path parameters (FastAPI): one definition each, imported by every service
Limit = Annotated[int, Query(ge=1, le=200, description="page size")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="rows to skip")]
IdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=ID_PATTERN)]
IdQuery = Annotated[str | None, Query(min_length=1, max_length=64, pattern=ID_PATTERN)]


class Versioned(In):
    expected_version: Version | None = Field(
        default=None, description="the case version you read; 409 if the case moved on since"
    )


class StageOwnerAction(Versioned):
    """A request that acts for the agency owning the case's current stage (claim, assign, decide, hand off,
    follow up, close). A supervisor of another agency may send it only as an explicit override."""

    override_reason: Reason | None = Field(
        default=None,
        description="supervisors of another agency than the stage's owner: why you act on its "
        "stage (required then, 403 without it; recorded in the audit log as an "
        "override). No personal data.",
        examples=[
            "police unit unreachable for 10 days; provincial steering committee instruction 12/2026"
        ],
    )

    def command_fields(self) -> dict[str, Any]:
        """What every stage-owner command carries besides the actor and its own fields."""
        return {"expected_version": self.expected_version, "override_reason": self.override_reason}


# ---- responses --------------------------------------------------------------------------------------
ItemT = TypeVar("ItemT")


class Page(BaseModel, Generic[ItemT]):
    """One page of a list: every list endpoint answers with a subclass of this, named for its items
    (`class EvidencePage(MaskedPage[EvidenceOut])`), so the OpenAPI schema keeps a readable name and the
    page fields are declared once."""

    items: list[ItemT]
    total: int
    limit: int
    offset: int


class MaskedPage(Page[ItemT], Generic[ItemT]):
    """A page of personal or sensitive records: `masked` says whether they came back masked."""

    masked: bool = Field(
        default=False,
        description="true: personal data is masked (oversight role without "
        "break_glass_reason); every read is in the access log",
    )

    @classmethod
    def of(
        cls, items: list[Any], *, total: int, limit: int, offset: int, masked: bool, **extra: Any
    ) -> Self:
        """The page, each item replaced by its `.masked()` form when the reader sees it masked."""
        shown = [i.masked() for i in items] if masked else items
        return cls(items=shown, total=total, limit=limit, offset=offset, masked=masked, **extra)


def action_errors(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """The one error table of case endpoints (OpenAPI `responses`); a service may word an entry for its
    own rules: `action_errors(e403="wrong role, agency, jurisdiction or missing consent")`."""
    table = {
        401: "no or invalid bearer token",
        403: "wrong role, agency or jurisdiction",
        404: "case not found",
        409: "stale version or wrong stage",
        422: "invalid input (the detail names the field)",
    }
    for key, text in descriptions.items():
        table[int(key.removeprefix("e"))] = text
    return {code: {"description": text} for code, text in table.items()}


class CaseView(BaseModel):
    """What every action endpoint answers with: the case's non-personal state after the action (what the
    workflow returned). The same model in every service, so a client reads one shape."""

    case_id: str
    version: int
    stage: Stage
    status: CaseStatus
    owner_agency: AgencyRole
    assignee: str | None
    deadline_at: datetime | None
    deadline_source: str | None = Field(
        default=None,
        description="where the current deadline comes from: the policy entry and its legal citation "
        "(or local_practice)",
    )
    trafficking_status: TraffickingStatus
    participants: list[AgencyRole]
    services_delivered: int
    escalation_level: int = Field(
        default=0,
        description="0 = not escalated; 1 and up = how far up the ladder the current deadline has gone",
    )
    province: str | None = Field(
        default=None, description="the province that holds the case now (jurisdiction)"
    )

    @classmethod
    def of(cls, s: CaseState) -> CaseView:
        return cls(
            case_id=s.case_id,
            version=s.version,
            stage=s.stage,
            status=s.status,
            owner_agency=s.owner_agency,
            assignee=s.assignee,
            deadline_at=s.deadline.due_at if s.deadline else None,
            deadline_source=s.deadline.source if s.deadline else None,
            trafficking_status=s.trafficking_status,
            participants=list(s.participants),
            services_delivered=s.services_delivered,
            escalation_level=s.escalation_level,
            province=s.province,
        )


__all__ = [
    "BIGINT_MAX",
    "ID_PATTERN",
    "INT32_MAX",
    "MAX_OFFSET",
    "UNSTORABLE_TYPE",
    "Amount",
    "CaseView",
    "Id",
    "IdPath",
    "IdQuery",
    "In",
    "Limit",
    "LongText",
    "MaskedPage",
    "Offset",
    "Page",
    "Reason",
    "Ref",
    "ShortText",
    "StageOwnerAction",
    "StorableText",
    "Version",
    "Versioned",
    "action_errors",
    "find_unstorable",
    "safe_text",
    "unstorable_error",
    "unstorable_reason",
]
