"""Temporal activities that touch the oversight schema; run by the oversight process's worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.runtime import Runtime
from shared.temporal import OVERSIGHT_TASK_QUEUE

TASK_QUEUE = OVERSIGHT_TASK_QUEUE


def build_activities(runtime: Runtime) -> list[Callable[..., Any]]:
    return []
