"""Every string a page shows is wrapped for translation: the templates' visible text, the
attributes people read (title, alt, placeholder, aria-label, data-label, a submit input's
value) and the prose literals inside Jinja expressions (a button label passed to a macro). A
failure lists file:line and the text to wrap in ``{{ _("...") }}`` or ``{% trans %}``."""
from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from jinja2 import Environment
from jinja2.lexer import TOKEN_NAME, TOKEN_OPERATOR, TOKEN_STRING

TEMPLATES = Path(__file__).resolve().parent.parent / "server" / "web" / "templates"
# Template folders not yet held to this (none: every template is).
PENDING: tuple[str, ...] = ()
# Text that stays as it is in every language: the product's name and its one-letter mark
# (alone, not in a sentence with values: "Regarding {{ record }}" is the domain word).
ALLOWED = {"Regarding", "R"}
# data-label: the column name a narrow screen shows beside each cell (CSS attr()).
READ_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "data-label"}
# An <input> of these types shows its value; a <button>'s value is form data, never shown.
SUBMIT_TYPES = {"submit", "button", "reset"}
# Elements whose text is never translated: scripts, styles, and commands shown as code.
SKIPPED = {"script", "style", "code"}
GETTEXT = {"_", "gettext", "ngettext", "pgettext", "npgettext"}
# Jinja comments, trans blocks (wrapped), and the remaining tags, in that order.
COMMENT = re.compile(r"\{#.*?#\}", re.S)
TRANS = re.compile(r"\{%-?\s*trans\b.*?\{%-?\s*endtrans\s*-?%\}", re.S)
VALUE = re.compile(r"\{\{.*?\}\}", re.S)
STATEMENT = re.compile(r"\{%.*?%\}", re.S)
# A literal that reads as words for people: a capitalized word ("Delete", "Draft email").
PROSE = re.compile(r"^[A-Z][a-z]|^\([a-z]+ ")  # also "(no subject)"
# Attributes a macro writes into the tag that calls it (aria-invalid="true" ...): markup.
ATTRIBUTE_TEXT = re.compile(r'^(\s*[\w-]+="[^"]*")+\s*$')


def _blank(match: re.Match, fill: str) -> str:
    """The matched text replaced by ``fill``, keeping its newlines (so lines still count)."""
    return fill + "\n" * match.group(0).count("\n")


class _TextFinder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[tuple[int, str]] = []
        self._skip = 0  # inside <script>, <style> or <code> (a command, not prose)

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED:
            self._skip += 1
        attributes = dict(attrs)
        for name, value in attrs:
            readable = name in READ_ATTRIBUTES or (
                name == "value" and tag == "input" and (attributes.get("type") or "") in SUBMIT_TYPES)
            if readable and value:
                self._check(value)

    def handle_endtag(self, tag):
        if tag in SKIPPED and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self._check(data)

    def _check(self, text):
        line = self.getpos()[0] + text[:len(text) - len(text.lstrip())].count("\n")
        words = " ".join(text.split())
        if ("\u00a4" not in words and set(re.findall(r"[^\W\d_]+", words)) <= ALLOWED
                or ATTRIBUTE_TEXT.match(words.replace("\u00a4", "x"))):
            return
        if any(c.isalpha() for c in words):
            self.found.append((line, words))


def _unwrapped_markup(source: str) -> list[tuple[int, str]]:
    """(line, text) of visible text and read attributes outside Jinja tags and trans blocks."""
    source = COMMENT.sub(lambda m: _blank(m, " "), source)
    source = TRANS.sub(lambda m: _blank(m, " "), source)
    source = STATEMENT.sub(lambda m: _blank(m, ""), source)
    source = VALUE.sub(lambda m: _blank(m, "\u00a4"), source)  # ¤: no letter, marks a value
    finder = _TextFinder()
    finder.feed(source)
    finder.close()
    return finder.found


def _unwrapped_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of prose string literals in Jinja tags that are not gettext arguments."""
    found = []
    calls: list[bool] = []  # per open parenthesis: is it a gettext call's
    previous = None
    for line, kind, value in Environment(extensions=["jinja2.ext.i18n"]).lex(source):
        if kind == TOKEN_OPERATOR and value in "([{":
            calls.append(previous is not None and previous[0] == TOKEN_NAME and previous[1] in GETTEXT)
        elif kind == TOKEN_OPERATOR and value in ")]}" and calls:
            calls.pop()
        elif (kind == TOKEN_STRING and PROSE.match(value[1:-1]) and not (calls and calls[-1])
              and not (previous and previous[1] in ("==", "!="))):  # compared: data, not prose
            found.append((line, value[1:-1]))  # lex() gives the literal with its quotes
        if kind not in ("whitespace",):
            previous = (kind, value)
    return found


def _templates():
    for path in sorted(TEMPLATES.rglob("*.html")):
        name = path.relative_to(TEMPLATES).as_posix()
        if not name.startswith(PENDING):
            yield name, path.read_text(encoding="utf-8")


def test_templates_wrap_every_visible_string():
    problems = [f"{name}:{line}: {text!r}"
                for name, source in _templates()
                for line, text in sorted(_unwrapped_markup(source) + _unwrapped_literals(source))]
    assert not problems, "strings not wrapped for translation:\n" + "\n".join(problems)


def test_the_checker_finds_what_it_should():
    """The finder itself: text, attributes and macro labels are caught; wrapped ones are not."""
    source = ('<p>Hello {{ name }}</p>\n<input type="submit" value="Save">\n'
              '<a title="{{ _("Open") }}" aria-label="Open it">{{ _("Open") }}</a>\n'
              '{% trans n=3 %}{{ n }} records{% endtrans %}\n'
              "{{ post_button(url, 'Delete', cls='small') }}{{ _('Fine') }}\n"
              '<span aria-hidden="true">&nbsp;·&nbsp;</span>{# A comment #}<b>Regarding</b>\n'
              '<td data-label="Name">{% if role == \'Sales Manager\' %}{{ _("Yes") }}{% endif %}</td>\n'
              '<button name="do" value="Approve">{{ _("Approve") }}</button>\n')
    assert _unwrapped_markup(source) == [(1, "Hello ¤"), (2, "Save"), (3, "Open it"), (7, "Name")]
    assert _unwrapped_literals(source) == [(5, "Delete")]


def test_record_and_activity_labels_are_marked():
    """Labels the pages show from Python tables (record types, their fields and choice values,
    activity types and fields) are marked with ``N_``, so they reach the catalogs and are
    shown translated; a plain string here would read English in every language."""
    from server.crm.registry import CHOICE_LABELS, RECORD_TYPES
    from server.i18n import Message
    from server.web.api.activity_writes import _ADDRESS, _NAME
    from server.web.pages import ACTIVITY_TYPES, NEW_ACTIVITY_KINDS
    from server.web.serialize import COMMON_ACTIVITY_FIELDS, ACTIVITY_TYPE_FIELDS
    unmarked = []
    for rt in RECORD_TYPES.values():
        labels = [rt.label, rt.plural, rt.noun, rt.nouns, *(f.label for f in rt.fields)]
        labels += [CHOICE_LABELS.get(c) for f in rt.fields for c in f.choices]
        unmarked += [f"{rt.name}: {label!r}" for label in labels if not isinstance(label, Message)]
    fields = [*COMMON_ACTIVITY_FIELDS, *(f for extra in ACTIVITY_TYPE_FIELDS.values() for f in extra),
              _ADDRESS, _NAME]
    unmarked += [f"activity field {f.name}: {f.label!r}" for f in fields if not isinstance(f.label, Message)]
    unmarked += [f"activity type {k}: {v!r}" for table in (ACTIVITY_TYPES, NEW_ACTIVITY_KINDS)
                 for k, v in table.items() if not isinstance(v, Message)]
    assert unmarked == []
