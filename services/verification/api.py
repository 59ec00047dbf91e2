"""HTTP API of the verification service."""

from __future__ import annotations

from fastapi import APIRouter

DESCRIPTION = "NRM verification service."
router = APIRouter()
