"""HTTP API of the support service."""

from __future__ import annotations

from fastapi import APIRouter

DESCRIPTION = "NRM support service."
router = APIRouter()
