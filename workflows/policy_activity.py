"""The local activity that reads the policy file and resolves it for a new case. It runs on the
workflow worker; its result is recorded in history, so replay never re-reads the file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from temporalio import activity

from shared.config import get_settings
from workflows.policy import CasePolicy, Policy, PolicyRequest, load_policy, resolve_policy


@lru_cache(maxsize=4)
def _policy(path: str, mtime: float) -> Policy:
    return load_policy(Path(path))


def current_policy(path: Path | None = None) -> Policy:
    p = path or get_settings().policy_file
    return _policy(str(p), p.stat().st_mtime)


@activity.defn(name="resolve_case_policy")
def resolve_case_policy(req: PolicyRequest) -> CasePolicy:
    return resolve_policy(current_policy(), req)
