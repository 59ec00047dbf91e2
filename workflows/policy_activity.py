"""The local activity that reads the policy file and resolves it for a new case. It runs on the
workflow worker; its result is recorded in history, so replay never re-reads the file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from temporalio import activity

from shared.config import get_settings
from shared.contract import CaseFacts
from shared.policy import CasePolicy, Policy, PolicyRequest, load_policy, resolve_policy


@lru_cache(maxsize=4)
def _policy(path: str, mtime: float) -> Policy:
    return load_policy(Path(path))


def current_policy(path: Path | None = None) -> Policy:
    p = path or get_settings().policy_file
    return _policy(str(p), p.stat().st_mtime)


@activity.defn(name="resolve_case_policy")
def resolve_case_policy(req: PolicyRequest) -> CasePolicy:
    return resolve_policy(current_policy(), req)


def case_policy_for(facts: CaseFacts, path: Path | None = None) -> CasePolicy:
    """The policy of a new case, resolved by whoever starts it (intake, from the committed row) exactly as
    the `resolve_case_policy` local activity would: passed in CaseInput.policy, the case's first workflow
    task runs no local activity and records no marker. Pure given the policy file (read once per change)."""
    return resolve_policy(
        current_policy(path),
        PolicyRequest(
            province=facts.province,
            categories=facts.categories,
            channel=facts.channel,
            opener=facts.opened_by.agency,
        ),
    )
