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


__all__ = ["In", "LongText", "Reason", "Ref", "ShortText", "Versioned"]
