"""The languages the product speaks and their gettext catalogs, shared by the pages, the
mail the server writes and the pane (pure: no request, no database; which language a
request is served in is ``server.web.languages``').

Catalogs live as ``.po`` files under ``server/translations`` (the only source); they are
compiled to ``.mo`` in the instance folder when the application starts and a ``.po`` is
newer than its ``.mo``, so an edited translation needs no build step. ``flask --app server
translate`` extracts, updates, checks and compiles them.
"""
from __future__ import annotations

from functools import lru_cache
from gettext import c2py
from pathlib import Path
from zoneinfo import available_timezones

from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["CATALOGS", "LANGUAGES", "Message", "N_", "message_of", "catalog_gaps", "check_choice", "compile_catalogs",
           "language_of", "locale_of", "pane_catalog", "time_zones", "translate"]

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
        partial = mo.with_suffix(".mo.partial")
        with partial.open("wb") as out:
            write_mo(out, catalog, use_fuzzy=False)
        partial.replace(mo)  # atomic: workers starting together never read half a file
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
