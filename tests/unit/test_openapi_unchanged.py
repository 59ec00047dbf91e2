"""Every service's OpenAPI document equals its committed copy (tests/unit/openapi/<service>.json): a
refactoring that changes a path, a parameter, a bound, a schema or a description fails here. Changing a
contract on purpose: `python -m tests.helpers.openapi --write`, and the diff shows what clients see."""

from __future__ import annotations

import json

import pytest

from tests.helpers.openapi import API_SERVICES, document, render, snapshot_path


@pytest.mark.parametrize("service", API_SERVICES)
def test_openapi_document_is_the_committed_one(service: str) -> None:
    committed = json.loads(snapshot_path(service).read_text(encoding="utf-8"))
    now = json.loads(render(document(service)))
    changed = sorted(
        set(now["paths"]) ^ set(committed["paths"])
        | {
            p
            for p in set(now["paths"]) & set(committed["paths"])
            if now["paths"][p] != committed["paths"][p]
        }
    )
    schemas_now, schemas_then = now["components"]["schemas"], committed["components"]["schemas"]
    changed_schemas = sorted(
        set(schemas_now) ^ set(schemas_then)
        | {s for s in set(schemas_now) & set(schemas_then) if schemas_now[s] != schemas_then[s]}
    )
    assert (changed, changed_schemas) == ([], []), "contract changed: paths and schemas listed"
    assert now == committed
