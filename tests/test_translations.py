"""The shipped catalogs: every string the code marks for translation is in every language's
catalog, translated and settled (no fuzzy entry), with the same placeholders; and the
catalogs follow the code (a string marked since the last ``flask translate extract`` and
``update`` fails here, naming the command to run)."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from babel.messages.pofile import read_po

from server.i18n import CATALOGS, EXTRACT_OPTIONS, LANGUAGES, ROOT, catalog_gaps

SPOKEN = [code for code in LANGUAGES if code != "en"]
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w*)\}")


def _catalog(code: str):
    locale = LANGUAGES[code][0]
    with (CATALOGS / locale / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


@pytest.mark.parametrize("code", SPOKEN)
def test_every_string_is_translated_and_settled(code):
    assert catalog_gaps(code) == []


@pytest.mark.parametrize("code", SPOKEN)
def test_translations_keep_the_placeholders(code):
    for message in _catalog(code):
        if message.id and isinstance(message.id, str):
            assert sorted(PLACEHOLDER.findall(message.string)) == sorted(PLACEHOLDER.findall(message.id)), message.id


def test_the_catalogs_follow_the_code(tmp_path):
    """Extract afresh: the strings marked in the code are exactly the catalogs' strings."""
    pot = tmp_path / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract",
                    *EXTRACT_OPTIONS, "-o", str(pot), "."],
                   cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        marked = {m.id for m in read_po(f) if m.id}
    for code in SPOKEN:
        shipped = {m.id for m in _catalog(code) if m.id}
        assert marked - shipped == set(), (
            f"{code}: strings marked but not in the catalog: run `flask --app server translate "
            "extract` and `... translate update`, then translate them")
        assert shipped - marked == set(), f"{code}: the catalog holds strings no code uses"
