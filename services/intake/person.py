"""The person record: what is encrypted, how the age band is computed, how a row becomes a view.

PII columns are written with `ring.encrypt_field(value, "persons.<column>")`, the column name bound
as associated data, so a ciphertext moved to another column does not decrypt."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from shared.access import mask
from shared.crypto import KeyRing
from shared.domain import AgeBand

from .models import OpenCaseRequest, PersonIdentity, PersonReport

# HTCDS field -> encrypted column of intake.persons
PII_COLUMNS: dict[str, str] = {
    "prs_FirstName": "first_name",
    "prs_MiddleName": "middle_name",
    "prs_SecondName": "second_name",
    "prs_IdentityNumber": "identity_number",
    "prs_MobilePhone": "mobile_phone",
    "prs_HomePhone": "home_phone",
    "prs_Email": "email",
    "prs_MailingStreet": "mailing_street",
    "prs_MailingCity": "mailing_city",
    "prs_MailingState": "mailing_state",
    "prs_MailingPostalCode": "mailing_postal_code",
}
ENCRYPTED_COLUMNS: tuple[str, ...] = (
    *PII_COLUMNS.values(),
    "birthdate",
    "birth_year",
    "victim_context",
    "trafficking_events",
)
# prs_Salutation travels inside the encrypted victim_context JSON (no column of its own).
_SALUTATION_KEY = "prs_Salutation"


def age_years(born: date, on: date) -> int:
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def age_band(
    *, birthdate: date | None, birth_year: int | None, estimated_age: int | None, on: date
) -> AgeBand:
    """Exact birth date first; with a birth year only, the younger possible age (presumption of
    minority when in doubt); then the estimated age; else unknown. Thresholds 16 and 18 (DOMAIN §4)."""
    if birthdate is not None:
        age: int | None = age_years(birthdate, on)
    elif birth_year is not None:
        age = on.year - birth_year - 1
    elif estimated_age is not None:
        age = estimated_age
    else:
        age = None
    if age is None:
        return AgeBand.unknown
    if age < 16:
        return AgeBand.under_16
    if age < 18:
        return AgeBand.age_16_17
    return AgeBand.adult


def birth_year_of(req: OpenCaseRequest) -> int | None:
    p = req.person
    if p.prs_Birthdate is not None:
        return p.prs_Birthdate.year
    return p.birth_year


def encrypt_person(ring: KeyRing, req: OpenCaseRequest, person_id: str) -> dict[str, Any]:
    """The encrypted column values of intake.persons for this request, each bound to its column and to the
    person's row (a ciphertext copied into another person's row does not decrypt)."""
    p = req.person
    out: dict[str, Any] = {}
    for field, column in PII_COLUMNS.items():
        out[column] = ring.encrypt_field(getattr(p, field), f"persons.{column}", row=person_id)
    out["birthdate"] = ring.encrypt_field(
        p.prs_Birthdate.isoformat() if p.prs_Birthdate else None, "persons.birthdate", row=person_id
    )
    year = birth_year_of(req)
    out["birth_year"] = ring.encrypt_field(
        str(year) if year is not None else None, "persons.birth_year", row=person_id
    )
    victim = (
        req.victim.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        if req.victim
        else {}
    )
    if p.prs_Salutation:
        victim[_SALUTATION_KEY] = p.prs_Salutation
    out["victim_context"] = ring.encrypt_field(
        json.dumps(victim, ensure_ascii=False), "persons.victim_context", row=person_id
    )
    events = [e.model_dump(mode="json", exclude_none=True) for e in req.events]
    out["trafficking_events"] = ring.encrypt_field(
        json.dumps(events, ensure_ascii=False), "persons.trafficking_events", row=person_id
    )
    return out


def decrypt_person(ring: KeyRing, row: Any) -> dict[str, Any]:
    """All PII of a persons row in clear, keyed by HTCDS names (None when erased/unknown)."""
    out: dict[str, Any] = {}
    for field, column in PII_COLUMNS.items():
        out[field] = ring.decrypt_field(row[column], f"persons.{column}", row=row["person_id"])
    out["prs_Birthdate"] = ring.decrypt_field(
        row["birthdate"], "persons.birthdate", row=row["person_id"]
    )
    out["birth_year"] = ring.decrypt_field(
        row["birth_year"], "persons.birth_year", row=row["person_id"]
    )
    victim_json = ring.decrypt_field(
        row["victim_context"], "persons.victim_context", row=row["person_id"]
    )
    victim: dict[str, Any] = json.loads(victim_json) if victim_json else {}
    out["prs_Salutation"] = victim.pop(_SALUTATION_KEY, None)
    out["victim"] = victim
    events_json = ring.decrypt_field(
        row["trafficking_events"], "persons.trafficking_events", row=row["person_id"]
    )
    out["events"] = json.loads(events_json) if events_json else []
    return out


def _m(value: str | None, masked: bool) -> str | None:
    return mask(value) if masked else value


def identity_view(clear: dict[str, Any], row: Any, masked: bool) -> PersonIdentity:
    text_fields = [*PII_COLUMNS, "prs_Birthdate", "birth_year", "prs_Salutation"]
    values = {f: _m(clear.get(f), masked) for f in text_fields}
    return PersonIdentity(
        **values,
        estimated_age=row["estimated_age"],
        age_band=AgeBand(row["age_band"]),
        prs_Gender=row["gender"],
        prs_Deceased=row["deceased"],
        prs_MaritalStatus=row["marital_status"],
        prs_NumberOfChildren=row["number_of_children"],
        prs_PrimaryLanguage=row["primary_language"],
        prs_SecondaryLanguage=row["secondary_language"],
        prs_HighestLevelOfEducation=row["education"],
        prs_Citizenship=list(row["citizenship"] or []),
        no_documents=row["no_documents"],
        prs_MailingCountry=row["mailing_country"],
        vic_AgreementToManagePersonalData=row["agreement_to_manage_data"],
    )


_VICTIM_TEXT = (
    "vic_LocationOfRecruitment",
    "vic_LocationOfExploitation",
    "vic_DetailsOfVulnerabilities",
)
_EVENT_TEXT = ("hte_Street", "hte_City", "hte_State", "hte_PostalCode", "hte_Description")


def report_view(
    clear: dict[str, Any], summary: str | None, details: str | None, masked: bool
) -> PersonReport:
    victim = dict(clear["victim"])
    events = [dict(e) for e in clear["events"]]
    if masked:
        for k in _VICTIM_TEXT:
            if victim.get(k):
                victim[k] = mask(victim[k])
        for e in events:
            for k in _EVENT_TEXT:
                if e.get(k):
                    e[k] = mask(e[k])
            for k in ("hte_Latitude", "hte_Longitude"):
                e.pop(k, None)
    return PersonReport(
        victim=victim,
        events=events,
        summary=_m(summary, masked),
        cas_IncomingReferralDetails=_m(details, masked),
    )
