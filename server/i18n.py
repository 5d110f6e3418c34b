"""The languages the product speaks and their gettext catalogs, shared by the pages, the
mail the server writes and the pane (pure: no request, no database; which language a
request is served in is ``server.web.languages``').

Catalogs live as ``.po`` files under ``server/translations`` (the only source); they are
compiled to ``.mo`` in the instance folder when the application starts and a ``.po`` is
newer than its ``.mo``, so an edited translation needs no build step. ``flask --app server
translate`` extracts, updates, checks and compiles them.
"""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable
from datetime import date, datetime, timezone, tzinfo
from functools import lru_cache
from gettext import c2py
from pathlib import Path
from zoneinfo import ZoneInfo, available_timezones

from babel import Locale
from babel.dates import format_skeleton
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["CATALOGS", "LANGUAGES", "N_", "catalog_gaps", "check_choice", "compile_catalogs",
           "format_moment", "language_of", "locale_of", "Message", "message_of",
           "pane_catalog", "plural_of", "time_zones", "translate", "translate_stored"]

# Language code (as the user setting and Accept-Language give it) -> (catalog locale, name
# in that language). English is the source language: its catalog is the identity.
LANGUAGES: dict[str, tuple[str, str]] = {
    "en": ("en", "English"),
    "cs": ("cs", "Čeština"),
    "zh": ("zh_Hans", "简体中文"),
    "sv": ("sv", "Svenska"),
    "sl": ("sl", "Slovenščina"),
    "hu": ("hu", "Magyar"),
}
ROOT = Path(__file__).resolve().parent.parent  # the project: babel.cfg says what is scanned
CATALOGS = Path(__file__).with_name("translations")
DOMAIN = "messages"
# ``pybabel extract`` options, run in ROOT (so locations read "addin/...", "server/..."):
# babel.cfg says which files; _l and N_ mark strings translated later.
EXTRACT_OPTIONS = ("-F", "babel.cfg", "-k", "_l", "-k", "N_", "--no-wrap", "--sort-by-file",
                   "--ignore-dirs", ".* _* node_modules instance tests bench", "--project",
                   "Regarding")


def language_of(value: str | None) -> str | None:
    """One of LANGUAGES' codes for a tag such as ``zh-CN``, ``cs_CZ`` or ``sv``; None for a
    language the product does not speak."""
    if not value:
        return None
    primary = value.replace("_", "-").split("-", 1)[0].strip().lower()
    if primary == "zh":  # Simplified Chinese only: Traditional (zh-TW, zh-Hant) is not here
        rest = value.replace("_", "-").lower()
        return None if any(t in rest for t in ("-tw", "-hk", "-mo", "-hant")) else "zh"
    return primary if primary in LANGUAGES else None


def compile_catalogs(target: Path) -> list[Path]:
    """Compile every ``.po`` newer than its ``.mo`` into ``target``; the ``.mo`` written."""
    written = []
    for po in sorted(CATALOGS.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = target / po.relative_to(CATALOGS).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        mo.parent.mkdir(parents=True, exist_ok=True)
        with po.open("rb") as source:
            catalog = read_po(source, locale=po.parts[-3])
        # A file of this process's own, then renamed: workers starting together each write
        # theirs and never read half of another's (the last rename wins; all are the same).
        partial = mo.with_name(f"{mo.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        try:
            with partial.open("wb") as out:
                write_mo(out, catalog, use_fuzzy=False)
            partial.replace(mo)
        finally:
            partial.unlink(missing_ok=True)
        written.append(mo)
    return written


def _po(language: str) -> Path:
    return CATALOGS / LANGUAGES[language][0] / "LC_MESSAGES" / f"{DOMAIN}.po"


def _by_category(catalog, forms: tuple[str, ...]) -> dict[str, str]:
    """A plural entry's forms by CLDR plural category (what Intl.PluralRules names in the
    pane) rather than by the catalog's Plural-Forms index: each category's first whole
    number tells which form it takes."""
    index, category = c2py(catalog.plural_expr), Locale.parse(catalog.locale).plural_form
    out: dict[str, str] = {}
    for n in range(200):
        out.setdefault(category(n), forms[min(index(n), len(forms) - 1)])
    return out


@lru_cache(maxsize=16)
def _messages(po: Path, _version: int) -> dict[str, tuple[str | dict[str, str], frozenset[str]]]:
    """{English: (translation, the files it is used in)} of one catalog: translated and
    settled strings only (no fuzzy ones); a plural entry under its singular, its forms by
    plural category."""
    with po.open("rb") as source:
        catalog = read_po(source, locale=po.parts[-3])
    out: dict[str, tuple[str | dict[str, str], frozenset[str]]] = {}
    for m in catalog:
        if not m.id or m.fuzzy:
            continue
        files = frozenset(path for path, _ in m.locations)
        if isinstance(m.id, str) and m.string and isinstance(m.string, str):
            out[m.id] = (m.string, files)
        elif isinstance(m.id, tuple) and isinstance(m.string, tuple) and all(m.string):
            out[m.id[0]] = (_by_category(catalog, m.string), files)
    return out


def _catalog(language: str) -> dict[str, tuple[str | dict[str, str], frozenset[str]]]:
    po = _po(language)
    if language == "en" or not po.exists():
        return {}
    return _messages(po, po.stat().st_mtime_ns)  # read again when the catalog changes


def translate(language: str, text: str) -> str:
    """``text`` in ``language`` from its catalog, outside any request (manifests, files);
    ``text`` itself in English or while it is not translated."""
    found = _catalog(language).get(text)
    return found[0] if found and isinstance(found[0], str) else text


@lru_cache(maxsize=len(LANGUAGES))
def _plural_category(language: str) -> Callable[[int], str]:
    """The CLDR plural category of a count in ``language`` (what ``_by_category`` files a
    plural entry's forms under, and Intl.PluralRules gives in the pane)."""
    return Locale.parse(LANGUAGES[language][0]).plural_form


def plural_of(language: str) -> Callable[[str, str, int], str]:
    """``ngettext`` for ``language`` outside any request (mail): ``ngettext(singular,
    plural, n)`` gives the form the language uses for ``n`` (call it ``ngettext`` so the
    catalogs find the strings). The forms are the catalog's as the pane reads them, by
    plural category: mail and pane choose the same one."""
    def ngettext(singular: str, plural: str, n: int) -> str:
        found = _catalog(language).get(singular) if language in LANGUAGES else None
        if found and isinstance(found[0], dict):
            forms = found[0]
            form = forms.get(_plural_category(language)(n)) or forms.get("other")
            if form:
                return form
        return singular if n == 1 else plural
    return ngettext


PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
# Where one stored sentence ends and the next begins: ". " (or "? ", "! ") before a capital.
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+(?=[A-Z\"(])")


@lru_cache(maxsize=16)
def _patterns(po: Path, _version: int, language: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """The catalog's translated strings with named placeholders as patterns that read the
    values back out of the English text they made: (pattern, translation), the most
    specific (the most fixed text) first. A string of placeholders alone is no pattern."""
    found = []
    for text, (string, _) in _messages(po, _version).items():
        if not isinstance(string, str):  # a plural entry: no stored sentence is made from one
            continue
        names = PLACEHOLDER.findall(text)
        fixed = PLACEHOLDER.sub("", text)
        if not names or len(set(names)) != len(names) or sum(c.isalpha() for c in fixed) < 4:
            continue
        parts = PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
        regex = "".join(re.escape(part.replace("%%", "%")) if i % 2 == 0 else f"(?P<{part}>.+?)"
                        for i, part in enumerate(parts))
        found.append((len(fixed), re.compile(regex, re.S), string))
    found.sort(key=lambda item: -item[0])
    return tuple((pattern, string) for _, pattern, string in found)


def _stored_one(language: str, text: str, depth: int) -> str | None:
    """One stored string translated: a catalog string as it is, or one made from a catalog
    string with placeholders (its values translated as stored text too); None when neither."""
    catalog = _catalog(language)
    if text in catalog and isinstance(catalog[text][0], str):
        return catalog[text][0]
    if depth > 2 or not catalog:
        return None
    po = _po(language)
    for pattern, string in _patterns(po, po.stat().st_mtime_ns, language):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        values = {name: _stored(language, value, depth + 1)
                  for name, value in match.groupdict().items()}
        try:
            return string % values
        except (KeyError, ValueError, TypeError):  # a translation with broken placeholders
            return None
    return None


def _stored(language: str, text: str, depth: int) -> str:
    whole = _stored_one(language, text, depth)
    if whole is not None:
        return whole
    # Sentences stored together ("... tracked. It is set regarding ..."): the longest
    # leading run of sentences that one catalog string made, then the rest the same way.
    cuts = [m.start() for m in _SENTENCE_END.finditer(text)]
    for cut in reversed(cuts):
        head = _stored_one(language, text[:cut], depth)
        if head is not None:
            return f"{head} {_stored(language, text[cut:].lstrip(), depth)}"
    if cuts:
        return f"{text[:cuts[0]]} {_stored(language, text[cuts[0]:].lstrip(), depth)}"
    return text


def translate_stored(language: str, text: str | None) -> str:
    """A sentence the server stored in English (a decision's reason, an alert, a test
    result) in ``language``: the stored text is a catalog string, or was made from one with
    ``%(name)s`` placeholders (``N_("... %(folder)s ...") % values``), or is several such
    sentences one after another. What no catalog string made stays as it is, so rows
    stored before a string was marked still read."""
    if not text or language == "en" or language not in LANGUAGES:
        return text or ""
    return _stored(language, text, 0)


def pane_catalog(language: str) -> dict[str, str | dict[str, str]]:
    """The translations the pane uses (strings used under ``addin/``) for ``language``:
    {English: translation}, a plural one {singular: {plural category: form}}; empty for
    English."""
    return {text: string for text, (string, files) in _catalog(language).items()
            if any(path.startswith("addin/") for path in files)}


class Message(str):
    """A message written in English for people, kept with its source text and values so the
    web layer shows it in the reader's language (``server.web.languages.localize``): the
    string itself is the English text (logs, tests); ``source`` is the catalog entry."""

    source: str
    values: dict

    def __new__(cls, source: str, values: dict | None = None):
        values = dict(values or {})
        message = super().__new__(cls, source % values if values else source)
        message.source, message.values = source, values
        return message


def N_(text: str, **values) -> Message:  # noqa: N802 - gettext's "mark, translate later"
    """Marks ``text`` for the catalogs where it is translated later: at display by the web
    layer (a floor below it cannot import Flask-Babel) or by ``translate``. Values fill
    ``%(name)s`` placeholders, so a translation may put them in its own order."""
    return Message(text, values)


def message_of(exc: Exception) -> str:
    """The message an exception was raised with, still a ``Message`` when it was marked."""
    return exc.args[0] if exc.args and isinstance(exc.args[0], str) else str(exc)


def catalog_gaps(language: str) -> list[str]:
    """The strings of a language's catalog that are untranslated or fuzzy (its catalog
    missing: every string of messages.pot)."""
    locale, po = LANGUAGES[language][0], _po(language)
    source = po if po.exists() else CATALOGS / f"{DOMAIN}.pot"
    if not source.exists():
        return []
    with source.open("rb") as f:
        catalog = read_po(f, locale=locale)
    gaps = []
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(strings):
            gaps.append(message.id if isinstance(message.id, str) else message.id[0])
    return gaps


@lru_cache(maxsize=1)
def time_zones() -> tuple[str, ...]:
    """The IANA time zone names a user or the organization may choose, sorted."""
    return tuple(sorted(zone for zone in available_timezones()
                        if "/" in zone and not zone.startswith(("Etc/", "SystemV/", "posix/", "right/")))
                 + ["UTC"])


def check_choice(language: str | None, time_zone: str | None) -> dict[str, str]:
    """Problems with a chosen language and time zone ({field: message}); empty is allowed."""
    errors = {}
    if language and language not in LANGUAGES:
        errors["language"] = N_("Choose one of the listed languages.")
    if time_zone and time_zone not in time_zones():
        errors["time_zone"] = N_("Choose a time zone from the list, such as Europe/Prague.")
    return errors


def locale_of(language: str | None) -> str:
    """The catalog locale for a language code (English for one the product does not speak):
    ``with flask_babel.force_locale(locale_of(user.language)):`` writes mail in it."""
    return LANGUAGES[language_of(language) or "en"][0]


# What each kind of time shows: (date skeleton or None, with the time of day). The locale
# orders the fields, writes the month and uses its own clock (12 or 24 hours).
KINDS = {"datetime": ("yMMMd", True), "date": ("yMMMd", False), "recent": ("MMMd", True),
         "time": (None, True)}


def format_moment(moment: datetime | date, locale: Locale | str, zone: tzinfo | str | None,
                  kind: str = "datetime") -> str:
    """A stored time (UTC, naive or aware) written the locale's way in the time zone ``zone``
    (a date alone stays that date): for pages (the ``local`` filter) and mail."""
    locale = Locale.parse(locale) if isinstance(locale, str) else locale
    if isinstance(zone, str):
        zone = ZoneInfo(zone) if zone in time_zones() else timezone.utc
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        moment = aware.astimezone(zone or timezone.utc)
    elif kind != "date":
        kind = "date"
    day_skeleton, with_time = KINDS[kind]
    day = format_skeleton(day_skeleton, moment, locale=locale) if day_skeleton else ""
    if not with_time:
        return day
    clock = "hm" if "h" in locale.time_formats["short"].pattern else "Hm"
    time_of_day = format_skeleton(clock, moment, locale=locale)
    if not day:
        return time_of_day
    return str(locale.datetime_formats["medium"]).replace("{1}", day).replace("{0}", time_of_day)
