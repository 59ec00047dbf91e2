"""Every reason a person types into a command is split out of the audit event (encrypted, erasable)."""

from __future__ import annotations

import json

from services.oversight.audit_log import join_free_text, split_free_text


def test_override_and_consent_override_reasons_are_split_out_of_the_event() -> None:
    canary = "CANARY chị Hoa, 0912345678"
    data = {
        "handoff_id": "h1",
        "to_agency": "legal_aid",
        "consent_override_reason": canary,
        "override": {"by_agency": "commune", "owner_agency": "police", "reason": canary},
        "decision": {"override_reason": canary, "status": "ActualVictimOfTrafficking"},
    }
    reason, kept, state, texts = split_free_text(canary, data, {"stage": "identify"})
    stored = json.dumps([reason, kept, state], ensure_ascii=False)
    assert "CANARY" not in stored
    assert texts == [canary] * 4
    assert (
        kept["to_agency"] == "legal_aid"
        and kept["decision"]["status"] == "ActualVictimOfTrafficking"
    )
    assert join_free_text(kept, texts) == data
    assert join_free_text(kept, None)["consent_override_reason"] == "[erased]"
