"""Temporal activities that touch the support schema; run by the support process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.runtime import Runtime
from shared.temporal import SUPPORT_TASK_QUEUE

TASK_QUEUE = SUPPORT_TASK_QUEUE


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    return []
