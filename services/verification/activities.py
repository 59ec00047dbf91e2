"""Temporal activities that touch the verification schema; run by the verification process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.runtime import Runtime
from shared.temporal import VERIFICATION_TASK_QUEUE

TASK_QUEUE = VERIFICATION_TASK_QUEUE


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    return []
