"""HTTP API of the oversight service."""

from __future__ import annotations

from fastapi import APIRouter

DESCRIPTION = "NRM oversight service."
router = APIRouter()
