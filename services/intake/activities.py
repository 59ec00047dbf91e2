"""Temporal activities that touch the intake schema; run by the intake process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.runtime import Runtime
from shared.temporal import INTAKE_TASK_QUEUE

TASK_QUEUE = INTAKE_TASK_QUEUE


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    return []
