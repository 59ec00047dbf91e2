"""The OpenAPI document of every service, as a client sees it, and the committed copy it is compared with
(tests/unit/test_openapi_unchanged.py). A change to an endpoint's contract is then a deliberate act:

    .venv/bin/python -m tests.helpers.openapi --write     # after changing an endpoint on purpose
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

API_SERVICES = ("intake", "verification", "support", "oversight", "notifications")
SNAPSHOTS = Path(__file__).resolve().parent.parent / "unit" / "openapi"


def document(service: str) -> dict[str, Any]:
    from shared.config import Settings

    settings = Settings()
    if service == "notifications":
        from services.notifications.__main__ import build_app as build_notifications
        from services.notifications.settings import NotificationSettings

        app = build_notifications(settings, NotificationSettings())
    else:
        from nrm.service import build_app

        app = build_app(service, settings)
    doc: dict[str, Any] = app.openapi()
    return doc


def snapshot_path(service: str) -> Path:
    return SNAPSHOTS / f"{service}.json"


def _canonical(node: Any) -> Any:
    """The order of a schema's `required` names means nothing; sorted, a refactoring that only reorders
    fields (a subclass of Page) is no change."""
    if isinstance(node, dict):
        return {
            k: sorted(v) if k == "required" and isinstance(v, list) else _canonical(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_canonical(v) for v in node]
    return node


def render(doc: dict[str, Any]) -> str:
    return json.dumps(_canonical(doc), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def main() -> int:
    if "--write" not in sys.argv[1:]:
        print(__doc__)
        return 2
    SNAPSHOTS.mkdir(parents=True, exist_ok=True)
    for service in API_SERVICES:
        snapshot_path(service).write_text(render(document(service)), encoding="utf-8")
        print(f"wrote {snapshot_path(service)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
