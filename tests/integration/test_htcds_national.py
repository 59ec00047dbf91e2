"""Issue 15 item 10: forced criminality in online-scam compounds, a national extension of HTCDS's
vic_TypeOfExploitation, exported as its nearest HTCDS value with the detail kept in x_nrm; round trip."""

from __future__ import annotations

from typing import Any

from services.intake import htcds
from shared.crypto import KeyRing
from tests.helpers.intake_stack import A, intake_app, open_body


def test_national_value_in_the_picklist_and_its_standard_form() -> None:
    assert "ForcedCriminality" in htcds.picklist("vic_TypeOfExploitation")
    assert "ForcedCriminality" not in htcds.standard_values("vic_TypeOfExploitation")
    assert htcds.check("vic_TypeOfExploitation", ["ForcedCriminality"]) == ["ForcedCriminality"]
    assert htcds.to_standard("vic_TypeOfExploitation", ["ForcedCriminality", "ForcedMarriage"]) == (
        ["ForcedLabour", "ForcedMarriage"],
        ["ForcedCriminality", "ForcedMarriage"],
    )
    # with forced labour given in its own right the export holds it once, and the round trip keeps both
    std, kept = htcds.to_standard("vic_TypeOfExploitation", ["ForcedLabour", "ForcedCriminality"])
    assert std == ["ForcedLabour"] and htcds.from_standard("vic_TypeOfExploitation", std, kept) == [
        "ForcedLabour",
        "ForcedCriminality",
    ]
    # standard values only: nothing kept; a record edited outside NRM keeps its standard values
    assert htcds.to_standard("vic_TypeOfExploitation", ["Servitude"]) == (["Servitude"], [])
    assert htcds.from_standard("vic_TypeOfExploitation", ["Servitude"], ["ForcedCriminality"]) == [
        "Servitude"
    ]
    # the extension names a value the standard has, and Vietnamese labels
    n = htcds.national("vic_TypeOfExploitation")["ForcedCriminality"]
    assert n.nearest in htcds.standard_values("vic_TypeOfExploitation")
    assert n.label_vi == "Bị ép buộc thực hiện hành vi phạm tội"
    assert htcds.DETAIL_LABELS["online_scam_compound"][0] == "Cơ sở lừa đảo trực tuyến"


async def test_scam_compound_round_trip_through_htcds(
    ts_env: Any, db_pool: Any, db_url: str, ring: KeyRing, task_queue: str
) -> None:
    async with intake_app(ts_env, db_pool, db_url, ring, task_queue) as it:
        victim = {
            "vic_TypeOfExploitation": ["ForcedCriminality", "ForcedMarriage"],
            "nrm_ExploitationDetail": ["online_scam_compound"],
        }
        body = open_body(victim=victim, events=[{"hte_Type": "Exploitation", "hte_Country": "KH"}])
        opened = await it.open(body)
        assert opened.status_code == 201, opened.text
        case_id = opened.json()["case_id"]
        r = await it.http.get(f"/cases/{case_id}/htcds", headers=it.auth())
        assert r.status_code == 200, r.text
        rec = r.json()
        # HTCDS sees only its own values; the national value and its detail stay in the NRM extension
        assert rec["vic_TypeOfExploitation"] == ["ForcedLabour", "ForcedMarriage"]
        assert "nrm_ExploitationDetail" not in rec
        assert rec["x_nrm"]["vic_TypeOfExploitation"] == ["ForcedCriminality", "ForcedMarriage"]
        assert rec["x_nrm"]["exploitation_detail"] == ["online_scam_compound"]
        for v in rec["vic_TypeOfExploitation"]:
            assert v in htcds.standard_values("vic_TypeOfExploitation")

        imp = await it.http.post(
            "/cases/import/htcds", json=rec, headers=it.auth(A.social_protection, user="sp-1")
        )
        assert imp.status_code == 201, imp.text
        new_id = imp.json()["case_id"]
        back = (
            await it.http.get(
                f"/cases/{new_id}/htcds", headers=it.auth(A.social_protection, user="sp-1")
            )
        ).json()
        assert back["vic_TypeOfExploitation"] == ["ForcedLabour", "ForcedMarriage"]
        assert back["x_nrm"]["vic_TypeOfExploitation"] == ["ForcedCriminality", "ForcedMarriage"]
        assert back["x_nrm"]["exploitation_detail"] == ["online_scam_compound"]

        # a detail without forced criminality is refused, naming the field
        bad = await it.open(
            open_body(
                victim={
                    "vic_TypeOfExploitation": ["ForcedMarriage"],
                    "nrm_ExploitationDetail": ["online_scam_compound"],
                }
            )
        )
        assert bad.status_code == 422 and "nrm_ExploitationDetail" in bad.text
        unknown = await it.open(
            open_body(
                victim={
                    "vic_TypeOfExploitation": ["ForcedCriminality"],
                    "nrm_ExploitationDetail": ["casino"],
                }
            )
        )
        assert unknown.status_code == 422 and "nrm_ExploitationDetail" in unknown.text
