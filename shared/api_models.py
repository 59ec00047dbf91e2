"""Building blocks of every service's request models: strict input, the optimistic version, bounded text.

`Reason` and `Ref` are the workflow contract's own types (workflows/models.py), re-exported here so a
service's models.py imports its boundary types from one place."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from workflows.models import Reason, Ref

ShortText = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(min_length=1, max_length=4000)]


class In(BaseModel):
    """A request body: unknown fields are errors, surrounding whitespace is dropped."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Versioned(In):
    expected_version: int | None = Field(
        default=None, ge=0, description="the case version you read; 409 if the case moved on since")


class StageOwnerAction(Versioned):
    """A request that acts for the agency owning the case's current stage (claim, assign, decide, hand off,
    follow up, close). A supervisor of another agency may send it only as an explicit override."""

    override_reason: Reason | None = Field(
        default=None, description="supervisors of another agency than the stage's owner: why you act on its "
                                  "stage (required then, 403 without it; recorded in the audit log as an "
                                  "override). No personal data.",
        examples=["police unit unreachable for 10 days; provincial steering committee instruction 12/2026"])


__all__ = ["In", "LongText", "Reason", "Ref", "ShortText", "StageOwnerAction", "Versioned"]
