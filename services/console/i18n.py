"""Languages of the console: Vietnamese first, English second.

Every word on screen comes from the gettext catalogs in `locales/<lang>/LC_MESSAGES/console.po`, read with
Babel at start (no compile step). Plain strings are looked up by their English text; a picklist value is
looked up by its key with the list's name as message context (`pgettext("stage", "verify")`), so a raw key
such as `social_protection` or `open:verify` is never shown. Dates are dd/mm/yyyy in Asia/Ho_Chi_Minh (the
GLOSSARY's formats), deadlines relative ("còn 2 ngày", "quá hạn 3 giờ")."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from vietnam_provinces import Province, ProvinceCode

LOCALES = Path(__file__).parent / "locales"
LANGS = ("vi", "en")
DEFAULT_LANG = "vi"
LANG_CHOICES = (("vi", "Tiếng Việt"), ("en", "English"))  # each language named in itself
TZ = ZoneInfo("Asia/Ho_Chi_Minh")
DOMAIN = "console"
EN_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@cache
def translations(lang: str) -> Translations:
    """The catalog of `lang`, read from its .po file and compiled in memory once per process."""
    with open(LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    buf = io.BytesIO()
    write_mo(buf, catalog, use_fuzzy=False)
    buf.seek(0)
    return Translations(buf, domain=DOMAIN)


def catalog_ids(lang: str) -> set[tuple[str | None, str]]:
    """(context, msgid) of every message of a catalog (the catalog test checks both languages hold all)."""
    with open(LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po", "rb") as po:
        catalog = read_po(po, locale=lang, domain=DOMAIN)
    return {(m.context, str(m.id)) for m in catalog if m.id and m.string}


def pick_lang(value: str | None) -> str:
    return value if value in LANGS else DEFAULT_LANG


@cache
def province_names() -> dict[str, str]:
    """Province code (two digits) -> official Vietnamese name, from the `vietnam-provinces` package."""
    return {f"{int(c):02d}": Province.from_code(c).name for c in ProvinceCode}


@dataclass(frozen=True)
class Lang:
    """The translator and formatters of one request's language; passed to every template."""

    code: str

    @property
    def tr(self) -> Translations:
        return translations(self.code)

    def _(self, text: str, **kw: Any) -> str:
        out = self.tr.gettext(text)
        return out.format(**kw) if kw else out

    def label(self, context: str, key: Any) -> str:
        """The catalog's label of a picklist value; a value missing from the catalog shows as a dash with
        the list's name, never as its raw key."""
        if key is None or key == "":
            return "—"
        k = str(getattr(key, "value", key))
        if (
            f"{context}\x04{k}" not in self.tr._catalog
        ):  # gettext keys a context's message as "ctx\x04id"
            return self._("(unlabelled value)")
        return str(self.tr.pgettext(context, k))

    def province(self, code: str | None) -> str:
        if not code:
            return "—"
        if code == "*":
            return self._("Whole country")
        name = province_names().get(code)
        return name if name is not None else self._("(unknown province)")

    # ---- dates: stored UTC, shown in Vietnam time ---------------------------------------------
    def date(self, value: datetime | date | str | None) -> str:
        d = _as_local(value)
        if d is None:
            return "—"
        if self.code == "vi":
            return d.strftime("%d/%m/%Y")
        return f"{d.day} {EN_MONTHS[d.month - 1]} {d.year}"

    def datetime(self, value: datetime | str | None) -> str:
        d = _as_local(value)
        if d is None:
            return "—"
        if not isinstance(d, datetime):
            return self.date(d)
        return f"{d.strftime('%H:%M')}, {self.date(d)}"

    def due(self, value: dt.datetime | str | None, now: dt.datetime | None = None) -> str:
        """GLOSSARY §8: under 48 h in hours, else days (rounded down); overdue likewise."""
        d = _as_local(value)
        if not isinstance(d, datetime):
            return "—"
        delta = d - (now or datetime.now(UTC))
        late = delta < timedelta(0)
        span = -delta if late else delta
        hours = int(span.total_seconds() // 3600)
        if hours < 48:
            if late:
                return (
                    self._("{n} hours overdue", n=max(hours, 1))
                    if hours >= 1
                    else self._("Under 1 hour overdue")
                )
            return (
                self._("Due in {n} hours", n=hours) if hours >= 1 else self._("Due in under 1 hour")
            )
        days = hours // 24
        return self._("{n} days overdue", n=days) if late else self._("Due in {n} days", n=days)

    def overdue(self, value: dt.datetime | str | None, now: dt.datetime | None = None) -> bool:
        d = _as_local(value)
        return isinstance(d, datetime) and d < (now or datetime.now(UTC))

    def number(self, value: float | int | None, digits: int = 0) -> str:
        if value is None:
            return "—"
        text = f"{value:,.{digits}f}"
        return (
            text.replace(",", "\0").replace(".", ",").replace("\0", ".")
            if self.code == "vi"
            else text
        )

    def percent(self, value: float | None) -> str:
        return "—" if value is None else f"{self.number(value * 100, 1)}%"


def _as_local(value: datetime | date | str | None) -> datetime | date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value
        try:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            try:
                return date.fromisoformat(text)
            except ValueError:
                return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(TZ)
    return value
