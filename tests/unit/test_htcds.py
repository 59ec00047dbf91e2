"""The HTCDS loader: multi-line picklist cells, code standards, errors naming field and values."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.intake import htcds


def test_picklists_parsed_from_multiline_cells() -> None:
    f = htcds.fields()
    assert len(f) == 83
    assert htcds.picklist("prs_Gender") == (
        "Feminine",
        "Masculine",
        "TransgenderFeminine",
        "TransgenderMasculine",
        "NonConforming",
        "NonSpecifiedUnknown",
    )
    assert "DebtBondage" in htcds.picklist(
        "vic_MethodsOfControl"
    )  # trailing space in the CSV is stripped
    assert "" not in htcds.picklist("spl_Type")
    assert htcds.field("vic_TypeOfExploitation").multiselect
    assert not htcds.field("prs_Gender").multiselect
    assert htcds.field("prs_Citizenship").code_standard == "ISO 3166"
    assert htcds.field("prs_PrimaryLanguage").code_standard == "ISO 639"


def test_check_values() -> None:
    assert htcds.check("prs_Gender", "Feminine") == "Feminine"
    assert htcds.check("vic_TypeOfExploitation", ["ForcedLabour", "Other"]) == [
        "ForcedLabour",
        "Other",
    ]
    assert htcds.check("prs_Citizenship", ["vn"]) == ["VN"]
    with pytest.raises(htcds.PicklistError) as err:
        htcds.check("prs_Gender", "Male")
    assert "prs_Gender" in str(err.value) and "NonSpecifiedUnknown" in str(err.value)
    with pytest.raises(htcds.PicklistError):
        htcds.check("prs_Gender", ["Feminine"])  # not a multiselect
    with pytest.raises(htcds.PicklistError):
        htcds.check("prs_Citizenship", ["Viet Nam"])
    with pytest.raises(KeyError):
        htcds.check("prs_Nickname", "x")


def test_csv_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert htcds.csv_path() == htcds.PACKAGED_CSV
    # the bundled copy is the standard itself (the reference copy in docs/)
    standard = htcds.REPO_ROOT / "docs" / "reference" / "standards" / "htcds" / "fields.csv"
    assert htcds.PACKAGED_CSV.read_bytes() == standard.read_bytes()
    small = tmp_path / "f.csv"
    small.write_text(
        "Section,Status,Core,Field Name including Prefix,Field Type,Value Names (if picklist),Description\n"
        'Person,DRAFT,Core,prs_Gender,Picklist,"A\nB",\n'
    )
    monkeypatch.setenv("NRM_HTCDS_FIELDS", str(small))
    assert htcds.csv_path() == small
    assert htcds.parse(small)["prs_Gender"].values == ("A", "B")
