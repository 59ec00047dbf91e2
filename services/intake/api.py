"""HTTP API of the intake service."""

from __future__ import annotations

from fastapi import APIRouter

DESCRIPTION = "NRM intake service."
router = APIRouter()
