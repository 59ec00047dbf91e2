"""Forms: from posted fields to an API request body, and from an API's refusal back to messages beside the
fields (the GOV.UK pattern: an error summary at the top, each message next to its field).

Field names are the API body's own paths (`person.prs_FirstName`, `evidence.0.source`), so a 422's `loc`
names the field directly. Values go to the API as typed (numbers as text): the API validates them, the
console only drops empty fields."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from services.console.client import ApiError
from services.console.i18n import Lang

# (regex on the API's English message, message id in the catalogs); first match wins
KNOWN_MESSAGES: tuple[tuple[str, str], ...] = (
    (r"is not one of the 34 province codes", "Choose a province from the list"),
    (r"is not one of the 3,321 commune", "Commune code not found: 5 digits, e.g. 00070"),
    (r"commune \S+ is not in province", "This commune is not in the chosen province"),
    (
        r"birth_year is in the future|birth date is in the future",
        "The year of birth is in the future",
    ),
    (r"birth_year disagrees", "The year of birth does not match the date of birth"),
    (r"date is in the future", "The date is in the future"),
    (r"required when rejecting", "Give a reason when you reject"),
    (r"granted consent needs its document", "A granted consent needs its document"),
    (r"data_sharing consent names the agency", "Choose the agency the consent covers"),
    (r"only data_sharing consent names an agency", "Only consent to share data names an agency"),
    (r"at least one evidence item", "Identifying a victim needs at least one evidence item"),
    (
        r"at least one measure",
        "Choose at least one measure, or record that protection was declined",
    ),
    (r"needs the person's written refusal", "A declined protection needs the written refusal"),
    (r"must be empty when protection is declined", "No measures when protection is declined"),
    (r"appears twice", "A value is chosen twice"),
    (r"not entitled|is not entitled|not for", "The person is not entitled to this support"),
    (r"required for", "Required for this type"),
    (r"has no support plan", "Write a support plan first"),
    (r"case by case", "Granted case by case: a supervisor approves it with a reason"),
)
TYPE_MESSAGES: dict[str, str] = {
    "missing": "Enter a value",
    "string_too_short": "Too short: at least {n} characters",
    "string_too_long": "Too long: at most {n} characters",
    "too_short": "Choose at least {n}",
    "too_long": "Too many: at most {n}",
    "int_parsing": "Enter a whole number",
    "int_type": "Enter a whole number",
    "float_parsing": "Enter a number",
    "greater_than_equal": "Must be {n} or more",
    "greater_than": "Must be more than {n}",
    "less_than_equal": "Must be {n} or less",
    "less_than": "Must be less than {n}",
    "enum": "Choose a value from the list",
    "literal_error": "Choose a value from the list",
    "date_parsing": "Enter a real date",
    "date_from_datetime_parsing": "Enter a real date",
    "datetime_parsing": "Enter a real date and time",
    "datetime_from_date_parsing": "Enter a real date and time",
    "timezone_aware": "Enter a real date and time",
    "string_pattern_mismatch": "Not in the expected format",
    "bool_parsing": "Choose yes or no",
    "extra_forbidden": "This field is not accepted",
    "time_delta_parsing": "Enter a number of days",
}


@dataclass
class FormErrors:
    """Messages by field name, in form order for the summary; `general` for what names no field."""

    by_field: dict[str, str] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)
    prefix: str = ""  # field ids are f-<prefix><name>: several forms on one page have a "reason"
    detail: str | None = None  # the API's own words (English) for a refusal that names no field

    def __bool__(self) -> bool:
        return bool(self.by_field or self.general)

    def get(self, name: str) -> str | None:
        return self.by_field.get(name)


def translate_error(t: Lang, err: dict[str, Any]) -> str:
    msg, kind = str(err.get("msg", "")), str(err.get("type", ""))
    if kind in TYPE_MESSAGES:
        n = re.search(r"(-?\d[\d,.]*)", msg)
        return t._(TYPE_MESSAGES[kind], n=n.group(1).rstrip(".,") if n else "")
    for pattern, message in KNOWN_MESSAGES:
        if re.search(pattern, msg):
            return t._(message)
    return t._("Invalid value")


def _field_of(loc: list[Any], msg: str, names: list[str]) -> str | None:
    """The form field a 422 location points at: the longest prefix of the location that is a field of the
    form; a model-level "Value error, <field>: ..." points at that field."""
    path = [str(p) for p in loc if p != "body"]
    m = re.match(r"(?:Value error, )?([A-Za-z_][\w.]*): ", msg)
    if m:
        path = [*path, *m.group(1).split(".")]
    for end in range(len(path), 0, -1):
        name = ".".join(path[:end])
        if name in names:
            return name
    return None


def errors_from(t: Lang, exc: ApiError, names: list[str], prefix: str = "") -> FormErrors:
    """Map an API refusal onto the form's fields (names in form order)."""
    out = FormErrors(prefix=prefix)
    for err in exc.field_errors:
        name = _field_of(list(err.get("loc", [])), str(err.get("msg", "")), names)
        text = translate_error(t, err)
        if name is None:
            out.general.append(text)
        elif name not in out.by_field:
            out.by_field[name] = text
    if not exc.field_errors:
        out.general.append(refusal_message(t, exc))
        out.detail = api_detail(exc)
    ordered = {n: out.by_field[n] for n in names if n in out.by_field}
    out.by_field = ordered
    return out


def refusal_message(t: Lang, exc: ApiError) -> str:
    """A headline in the user's language for a refusal that names no field."""
    if exc.stale:
        return t._("Someone else has just changed this case; reload it")
    return {
        401: t._("Your sign-in has expired; sign in again"),
        403: t._("You may not do this on this case"),
        404: t._("Not found"),
        409: t._("The case does not allow this now"),
        422: t._("The request was not accepted"),
    }.get(exc.status, t._("The system could not complete this; try again"))


def send_failed(
    t: Lang, exc: ApiError, form: FormData, names: list[str], prefix: str = ""
) -> tuple[FormErrors, dict[str, str] | None]:
    """The errors to show for a form the API did not take, and what the form must carry when it is sent
    again (`resend`, or None).

    A 503 means the service, or the case's workflow behind it, did not answer in time: the action may still
    be applied. Sent again under a new Idempotency-Key it could be applied twice (a second rescue plan, a
    second consent), so the form shown again keeps the key and the version the user acted on, and the API
    completes the first send (or applies it once) instead. Any other refusal applied nothing (the API freed
    the key): no resend, and the form is shown against the case as it is now."""
    errors = errors_from(t, exc, names, prefix)
    key = text(form, "idem")
    if exc.status != 503 or not key:
        return errors, None
    errors.by_field = {}
    errors.general = [
        t._(
            "Not confirmed in time: it may already be done. Check the case, then send this form again unchanged"
        )
    ]
    return errors, {"idem": key, "expected_version": text(form, "expected_version") or ""}


def api_detail(exc: ApiError) -> str | None:
    """The API's own explanation (English, ids only) shown under the headline, for a refusal naming no field."""
    if exc.field_errors or exc.stale:
        return None
    return exc.detail if isinstance(exc.detail, str) else None


# ---- building request bodies ------------------------------------------------------------------
def text(form: FormData, name: str) -> str | None:
    v = form.get(name)
    if v is None or not isinstance(v, str):
        return None
    v = v.strip()
    return v or None


def many(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str) and v.strip()]


def yes_no(form: FormData, name: str) -> bool | None:
    v = text(form, name)
    return {"yes": True, "no": False}.get(v or "")


def version(form: FormData) -> int | None:
    v = text(form, "expected_version")
    return int(v) if v and v.isdigit() else None


def put(body: dict[str, Any], path: str, value: Any) -> None:
    """body["a"]["b"] = value for path "a.b"; nothing for an empty value."""
    if value is None or value == [] or value == "":
        return
    parts = path.split(".")
    cur = body
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def values_of(form: FormData) -> dict[str, Any]:
    """What the user typed, to show the form again after a refusal."""
    out: dict[str, Any] = {}
    for k in form:
        vals = [v for v in form.getlist(k) if isinstance(v, str)]
        out[k] = vals if len(vals) > 1 or k.endswith("[]") else (vals[0] if vals else "")
    return out
