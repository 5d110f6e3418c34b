"""iCalendar TEXT values (RFC 5545 3.3.11) written and read without corruption: the one
place every path that parses or writes iCalendar with the ``icalendar`` package goes through
(CalDAV items, Graph and EWS translation, TNEF meetings, invitations in mail).

icalendar 7.3's own escaper turns the two characters ``\\N`` into a newline before escaping
(``C:\\Notes`` comes back as ``C:`` newline ``otes``), and it writes an ``X-ALT-DESC`` with
a newline not at all. So:

- ``escape``/``unescape`` do the RFC's escaping in one pass each (a regex with one
  alternation): backslash, semicolon, comma and line breaks (CRLF, LF, a lone CR) out;
  ``\\\\``, ``\\;``, ``\\,``, ``\\n``, ``\\N`` in, any other backslash left as it is.
- ``Text`` is a ``vText`` whose ``to_ical`` is ``escape``, and which reads its value from
  the raw content line with ``unescape`` (icalendar's parser asks a value type for
  ``get_value_from_content_line``); ``Categories`` is ``vCategory`` written the same way.
- ``parse`` reads with a types factory of our own where TEXT (and ``X-ALT-DESC``) is
  ``Text``; ``serialize`` first retypes every TEXT value still in icalendar's classes (added
  with ``component.add`` or parsed elsewhere) as ours. No icalendar function is patched:
  other users of the package in the process keep its behaviour.
"""
from __future__ import annotations

import re

from icalendar import Calendar
from icalendar.caselessdict import CaselessDict
from icalendar.prop import TypesFactory, vCalAddress, vCategory, vText, vUnknown

__all__ = ["Categories", "Text", "escape", "parse", "person", "serialize", "unescape"]

_SPECIAL = re.compile(r"\r\n|[\\;,\n\r]")
_ESCAPED = {"\\": "\\\\", ";": "\\;", ",": "\\,", "\r\n": "\\n", "\n": "\\n", "\r": "\\n"}
_ESCAPE_SEQUENCE = re.compile(r"\\([\\;,nN])")
# Microsoft's TEXT properties icalendar does not know (it would keep them as UNKNOWN, raw).
TEXT_EXTENSIONS = ("x-alt-desc",)


def escape(text: str) -> str:
    """A TEXT value as written in a content line."""
    return _SPECIAL.sub(lambda m: _ESCAPED[m.group()], text)


def unescape(text: str) -> str:
    """A TEXT value as written in a content line, read back."""
    return _ESCAPE_SEQUENCE.sub(lambda m: "\n" if m.group(1) in "nN" else m.group(1), text)


class Text(vText):
    """A TEXT property value escaped and read by the RFC."""

    __slots__ = ()

    def to_ical(self) -> bytes:
        return escape(str(self)).encode(self.encoding)

    @classmethod
    def get_value_from_content_line(cls, line) -> str:
        return unescape(line.raw_parts()[2])


class Categories(vCategory):
    """CATEGORIES, each name escaped by the RFC (icalendar splits and reads them itself,
    on unescaped commas, in one pass)."""

    def to_ical(self) -> bytes:
        return ",".join(escape(str(c)) for c in self.cats).encode()


TYPES = TypesFactory()
TYPES["text"] = Text
TYPES["categories"] = Categories
TYPES.types_map = CaselessDict({**TypesFactory.types_map,
                                **{name: "text" for name in TEXT_EXTENSIONS}})


class _Reader(Calendar):
    """Calendar parsing with our types; the components it gives are icalendar's own."""

    types_factory = TYPES


def parse(text: str | bytes) -> Calendar:
    """An iCalendar object read with TEXT values unescaped by the RFC (``ValueError`` when
    it is not iCalendar)."""
    return _Reader.from_ical(text)


def _ours(name: str, value):
    if isinstance(value, list):
        return [_ours(name, v) for v in value]
    if type(value) is vText or (type(value) is vUnknown and name.lower() in TEXT_EXTENSIONS):
        return Text(str(value), params=value.params)
    if type(value) is vCategory:
        return Categories([str(c) for c in value.cats], params=value.params)
    return value


def serialize(component) -> bytes:
    """A component (a VCALENDAR, usually) as iCalendar bytes, every TEXT value escaped by
    the RFC whichever way it was added."""
    for part in component.walk():
        for name, value in list(part.items()):
            retyped = _ours(name, value)
            if retyped is not value:
                part[name] = retyped
    return component.to_ical()


def person(address: str, name: str | None = None) -> vCalAddress:
    """An ORGANIZER or ATTENDEE value: ``mailto:`` the address, the name as CN (a parameter,
    not TEXT: icalendar leaves a name with a backslash unquoted, then reads a trailing one
    back wrong, so such a name is quoted too)."""
    found = vCalAddress(f"mailto:{address}")
    if name:
        found.params["CN"] = name
        found.params.quote_also = {**found.params.quote_also, "CN": " '\\"}
    return found
