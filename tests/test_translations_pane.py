"""The pane's strings are all wrapped for translation, extracted into the catalogs and served.

* A scan of the pane's code (``addin/js/**/*.js`` and the sign-in dialog's ``addin/signin.js``, tokenized with Babel's own JavaScript lexer,
  the one ``flask --app server translate extract`` reads it with) fails on a string literal
  with words in it that reaches the screen without ``_()``: assigned to ``textContent``,
  ``innerText``, ``title`` or ``placeholder``, set as an ``aria-label``/``title``/``placeholder``
  attribute, given as a visible attribute or option of the DOM helpers (``text``, ``title``,
  ``aria-label``, ``label``, ``hint``, ``message``...), or passed to a helper that shows it
  (``h``'s children, ``button``, ``badge``, ``section``, ``banner``, ``toast``, ``perform``...,
  the errors the pane shows). It lists every one as ``file:line``.
* ``addin/taskpane.html``'s own words are those the pane translates when it starts (a ``_()``
  in ``addin/js``); the product's name is a name, and a ``<noscript>`` cannot be translated.
* Extraction with the project's options finds every ``_()`` of the pane, and
  ``pane_catalog`` / ``/addin/strings/<language>.json`` serve the pane's strings of a
  catalog and none of the pages' only.
"""
from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.jslexer import tokenize, unquote_string
from babel.messages.pofile import read_po, write_po

from server import i18n
from server.i18n import EXTRACT_OPTIONS, ROOT

ADDIN = ROOT / "addin"
# Words that are names, not language: the product and its mark.
NAMES = {"Regarding", "R"}
# Helpers that put an argument on the screen: {name: the visible arguments (None: from this one on)}.
SHOWN_ARGS = {
    "h": (2, None), "append": (1, None), "button": (0,), "iconButton": (0,), "badge": (0,), "section": (0,),
    "panelHeader": (0,), "banner": (0,), "spinner": (0,), "crmLink": (1,), "toast": (0,), "announce": (0,),
    "perform": (0,), "mailboxCall": (0,), "showSignIn": (0,), "NeedsSignIn": (0,), "OfficeError": (1,),
    "ApiError": (2,), "Error": (0,), "createTextNode": (0,), "say": (0,),
}
# Object keys whose value is shown: the DOM helpers' attributes and the views' options.
SHOWN_KEYS = {"text", "title", "aria-label", "placeholder", "alt", "label", "hint", "message", "purpose",
              "error", "status", "aria-description", "aria-roledescription", "aria-valuetext"}
SHOWN_PROPERTIES = {"textContent", "innerText", "title", "placeholder", "ariaLabel", "innerHTML", "value"}
SHOWN_ATTRIBUTES = {"aria-label", "title", "placeholder", "alt", "aria-description"}
NOT_CALLS = {"if", "for", "while", "switch", "catch", "function", "return", "typeof", "await"}
# A literal compared is a code, not words (Babel's lexer reads "===" as "==", "=").
COMPARISONS = {"==", "!="}
LETTER = re.compile(r"[^\W\d_]")


@dataclass
class Frame:
    bracket: str
    call: str | None = None  # the function called, for "(" of a call; "[]" for an index
    arg: int = 0
    key: str | None = None  # the object property whose value this is, for "{"
    expect_key: bool = True
    args: list = field(default_factory=list)  # literal arguments seen (setAttribute's name)


def _words(token) -> str | None:
    """The text of a string or template literal outside ``${...}``, if it has words."""
    if token.type == "template_string":
        text = re.sub(r"\$\{[^}]*\}", "", token.value[1:-1])
    else:
        text = unquote_string(token.value)
    return text if LETTER.search(text) and text.strip() not in NAMES else None


def _shown(frames: list[Frame], prev: list) -> bool:
    """Whether a literal at this point reaches the screen."""
    if len(prev) >= 3 and prev[-1].value == "=" and prev[-2].value in SHOWN_PROPERTIES and prev[-3].value == ".":
        return True
    for frame in reversed(frames):
        if frame.bracket == "{":
            return frame.key in SHOWN_KEYS
        if frame.call == "[]":
            return False
        if frame.bracket == "(" and frame.call:
            if frame.call in ("_", "ngettext"):
                return False
            if frame.call == "setAttribute":
                return frame.arg == 1 and bool(frame.args) and frame.args[0] in SHOWN_ATTRIBUTES
            shown = SHOWN_ARGS.get(frame.call)
            if shown is None:
                return False
            return frame.arg in shown or (len(shown) == 2 and shown[1] is None and frame.arg >= shown[0])
        # a grouping parenthesis or an array: look at what holds it
    return False


def unwrapped_strings(path: Path, root: Path = ROOT) -> list[str]:
    """``file:line: "text"`` for every shown literal of a pane module that is not in ``_()``."""
    source = path.read_text(encoding="utf-8")
    frames: list[Frame] = []
    prev: list = []
    found = []
    candidate = None  # a shown literal, unless the next token compares it
    for token in tokenize(source, jsx=False, dotted=False, template_string=True, lineno=1):
        if token.type in ("linecomment", "multilinecomment"):
            continue
        value = token.value
        if candidate and value not in COMPARISONS:
            found.append(candidate)
        candidate = None
        if token.type == "operator" and value in ("(", "[", "{"):
            call = None
            if value == "(" and prev and prev[-1].type == "name" and prev[-1].value not in NOT_CALLS:
                call = prev[-1].value
            elif value == "[" and prev and (prev[-1].value in (")", "]") or (
                    prev[-1].type == "name" and prev[-1].value not in NOT_CALLS)):
                call = "[]"
            frames.append(Frame(value, call=call))
        elif token.type == "operator" and value in (")", "]", "}"):
            if frames:
                frames.pop()
        elif token.type == "operator" and value == "," and frames:
            frames[-1].arg += 1
            frames[-1].key, frames[-1].expect_key = None, True
        elif (token.type == "operator" and value == ":" and frames and frames[-1].bracket == "{"
              and frames[-1].expect_key and prev and prev[-1].type in ("name", "string")):
            frames[-1].key = prev[-1].value if prev[-1].type == "name" else unquote_string(prev[-1].value)
            frames[-1].expect_key = False
        elif token.type in ("string", "template_string"):
            if frames and frames[-1].bracket == "(" and token.type == "string":
                frames[-1].args.append(unquote_string(value))
            text = _words(token)
            compared = bool(prev) and (prev[-1].value in COMPARISONS or (
                prev[-1].value == "=" and len(prev) > 1 and prev[-2].value in COMPARISONS))
            if text and _shown(frames, prev) and not compared:
                candidate = f"{path.relative_to(root)}:{token.lineno}: {text.strip()!r}"
        prev = (prev + [token])[-3:]
    return found + ([candidate] if candidate else [])


def pane_modules() -> list[Path]:
    """The pane's modules and the sign-in dialog's script (it speaks with the pane's words)."""
    return sorted((ADDIN / "js").rglob("*.js")) + [ADDIN / "signin.js"]


def wrapped_in_js() -> set[str]:
    """Every literal the pane's modules give ``_()``."""
    out = set()
    for path in pane_modules():
        tokens = [t for t in tokenize(path.read_text(encoding="utf-8"), jsx=False, dotted=False,
                                      template_string=True, lineno=1)
                  if t.type not in ("linecomment", "multilinecomment")]
        for a, b, c in zip(tokens, tokens[1:], tokens[2:]):
            if a.type == "name" and a.value == "_" and b.value == "(" and c.type == "string":
                out.add(unquote_string(c.value))
    return out


class _PageWords(HTMLParser):
    """taskpane.html's visible text and labelling attributes, with their lines."""

    def __init__(self):
        super().__init__()
        self.skipping: list[str] = []
        self.words: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("noscript", "script", "style", "title"):
            self.skipping.append(tag)
        for name, value in attrs:
            if name in SHOWN_ATTRIBUTES and value and LETTER.search(value):
                self.words.append((self.getpos()[0], value))

    def handle_endtag(self, tag):
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data):
        if not self.skipping and LETTER.search(data):
            self.words.append((self.getpos()[0], data.strip()))


def test_every_shown_pane_string_is_wrapped_for_translation():
    found = [line for path in pane_modules() for line in unwrapped_strings(path)]
    assert found == [], "pane strings shown without _():\n" + "\n".join(found)


def test_the_scan_finds_what_is_not_wrapped(tmp_path):
    """The scan is not blind: a copy of a view with its words unwrapped in each of the ways
    a string reaches the screen is refused, line by line."""
    view = tmp_path / "addin" / "js" / "views" / "sample.js"
    view.parent.mkdir(parents=True)
    view.write_text("\n".join([
        'import { h } from "../dom.js";',
        'const a = h("p", {}, "Plain child");',
        'const b = h("p", { title: "A title", class: "not-shown" }, _("Wrapped"));',
        'button(busy ? "Saving…" : _("Save"), go);',
        'el.textContent = "Assigned";',
        'el.setAttribute("aria-label", "An attribute");',
        'field({ name: "x", label: cond ? _("Fine") : "Not fine" });',
        'h("p", {}, `Shown ${x} template`, " · ", "R", [a, b].join(", "));',
        'throw new NeedsSignIn("An error the pane shows");',
        'const c = h("ul", {}, [h("li", {}, "In an array")]);',
    ]), encoding="utf-8")
    found = unwrapped_strings(view, root=tmp_path)
    lines = [int(f.split(":")[1]) for f in found]
    assert lines == [2, 3, 4, 5, 6, 7, 8, 9, 10], found
    assert found[0] == "addin/js/views/sample.js:2: 'Plain child'"


def test_the_pages_own_words_are_translated_when_the_pane_starts():
    parser = _PageWords()
    parser.feed((ADDIN / "taskpane.html").read_text(encoding="utf-8"))
    wrapped = wrapped_in_js()
    missing = [f"addin/taskpane.html:{line}: {text!r}" for line, text in parser.words
               if text not in NAMES and text not in wrapped]
    assert missing == [], "words of taskpane.html no _() in addin/js translates:\n" + "\n".join(missing)
    assert parser.words  # the page has words of its own, and the scan read them


def extracted(target: Path) -> Catalog:
    """What ``flask --app server translate extract`` finds now (into ``target``)."""
    pot = target / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", *EXTRACT_OPTIONS,
                    "-o", str(pot), "."], cwd=ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        return read_po(f)


def marked_catalogs(target: Path, languages=("cs",)) -> Path:
    """Catalogs (under ``target``) with every string the code marks "translated" as
    ``«English»`` (a plural entry's forms numbered: ``«singular» 0``, ``1``...), to use in
    place of the shipped ones (``server.i18n.CATALOGS``)."""
    catalog = extracted(target)
    for language in languages:
        locale = i18n.LANGUAGES[language][0]
        po = target / "catalogs" / locale / "LC_MESSAGES" / "messages.po"
        po.parent.mkdir(parents=True, exist_ok=True)
        marked = Catalog(locale=locale)
        for m in catalog:
            if m.id and isinstance(m.id, str):
                marked.add(m.id, f"«{m.id}»", locations=m.locations)
            elif m.id:
                marked.add(m.id, tuple(f"«{m.id[0]}» {i}" for i in range(marked.num_plurals)), locations=m.locations)
        with po.open("wb") as f:
            write_po(f, marked)
    return target / "catalogs"


def test_extraction_finds_every_pane_string_and_the_pane_is_served_only_its_own(tmp_path, monkeypatch, app):
    catalog = extracted(tmp_path)
    pane = {m.id for m in catalog if m.id and any(path.startswith("addin/") for path, _ in m.locations)}
    assert wrapped_in_js() - pane == set()
    assert ("%(count)s result", "%(count)s results") in pane  # ngettext: one entry, both forms
    monkeypatch.setattr(i18n, "CATALOGS", marked_catalogs(tmp_path))
    served = i18n.pane_catalog("cs")
    assert set(served) == {m if isinstance(m, str) else m[0] for m in pane} and served["Track"] == "«Track»"
    # A plural one by the plural categories Intl.PluralRules names (1 one, 2-4 few, 5 other).
    assert served["%(count)s result"] == {"one": "«%(count)s result» 0", "few": "«%(count)s result» 1",
                                          "other": "«%(count)s result» 2"}
    assert i18n.translate("cs", "%(count)s result") == "%(count)s result"  # not a plain string
    pages_only = {m.id for m in catalog if m.id and isinstance(m.id, str)} - pane
    assert pages_only and not pages_only & set(served)
    response = app.test_client().get("/addin/strings/cs.json")
    assert response.status_code == 200 and response.get_json() == served
    again = app.test_client().get("/addin/strings/cs.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_mail_and_pane_take_a_plural_form_where_gettext_does(tmp_path, monkeypatch):
    """``plural_of`` (mail) reads a plural entry's forms where the pane does
    (``pane_catalog``, by plural category), and for every count picks the form the compiled
    catalog's own Plural-Forms rule picks (Czech: three forms, Slovenian: four)."""
    import gettext

    from babel import Locale

    monkeypatch.setattr(i18n, "CATALOGS", marked_catalogs(tmp_path, ("cs", "sl")))
    compiled = tmp_path / "mo"
    i18n.compile_catalogs(compiled)
    singular, plural = "%(count)s result", "%(count)s results"
    for language in ("cs", "sl"):
        locale = i18n.LANGUAGES[language][0]
        with (compiled / locale / "LC_MESSAGES" / "messages.mo").open("rb") as f:
            compiled_catalog = gettext.GNUTranslations(f)
        served = i18n.pane_catalog(language)[singular]
        category = Locale.parse(locale).plural_form
        ngettext = i18n.plural_of(language)
        seen = set()
        for n in range(0, 250):
            form = ngettext(singular, plural, n)
            assert form == compiled_catalog.ngettext(singular, plural, n) == served[category(n)]
            seen.add(form)
        assert len(seen) == len(served) == (3 if language == "cs" else 4)
    assert i18n.plural_of("en")(singular, plural, 2) == plural
    assert i18n.plural_of("xx")(singular, plural, 1) == singular  # a language not spoken
