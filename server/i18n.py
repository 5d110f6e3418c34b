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
from pathlib import Path
from zoneinfo import available_timezones

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

__all__ = ["CATALOGS", "LANGUAGES", "catalog_gaps", "check_choice", "compile_catalogs",
           "language_of", "locale_of", "pane_catalog", "time_zones"]

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


def pane_catalog(language: str) -> dict[str, str]:
    """The translations the pane uses (messages whose location is under ``addin/``), for
    ``language``: {English: translation}; empty for English. Read once per catalog change."""
    po = CATALOGS / LANGUAGES[language][0] / "LC_MESSAGES" / f"{DOMAIN}.po"
    if language == "en" or not po.exists():
        return {}
    return _pane_catalog(po, po.stat().st_mtime_ns)


@lru_cache(maxsize=16)
def _pane_catalog(po: Path, _version: int) -> dict[str, str]:
    with po.open("rb") as source:
        catalog = read_po(source, locale=po.parts[-3])
    return {m.id: m.string for m in catalog if m.id and isinstance(m.id, str) and m.string
            and not m.fuzzy and any(path.startswith("addin/") for path, _ in m.locations)}


def catalog_gaps(language: str) -> list[str]:
    """The strings of a language's catalog that are untranslated or fuzzy (its catalog
    missing: every string of messages.pot)."""
    locale = LANGUAGES[language][0]
    po = CATALOGS / locale / "LC_MESSAGES" / f"{DOMAIN}.po"
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
        errors["language"] = "Choose one of the listed languages."
    if time_zone and time_zone not in time_zones():
        errors["time_zone"] = "Choose a time zone from the list, such as Europe/Prague."
    return errors


def locale_of(language: str | None) -> str:
    """The catalog locale for a language code (English for one the product does not speak):
    ``with flask_babel.force_locale(locale_of(user.language)):`` writes mail in it."""
    return LANGUAGES[language_of(language) or "en"][0]
