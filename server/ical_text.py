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
  with ``component.add`` or parsed elsewhere) as ours, its line breaks as the text will read
  back (LF: TEXT has one kind), so a component once serialized reads as its text parsed
  does (the Graph connector hands the core both: ``Item.parsed``). No icalendar function is
  patched: other users of the package in the process keep its behaviour.

``serialize`` folds the content lines itself where there is nothing to fold (icalendar
folds every line character by character: most of what writing an event cost).
"""
from __future__ import annotations

import re

from icalendar import Calendar
from icalendar.caselessdict import CaselessDict
from icalendar.parser import Contentline
from icalendar.prop import TypesFactory, vCalAddress, vCategory, vText, vUnknown

__all__ = ["Categories", "Text", "escape", "fold", "parse", "person", "serialize",
           "unescape"]

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


_BREAK = re.compile(r"\r\n?")


def _lines(text: str) -> str:
    """A TEXT value as it reads back: its line breaks as LF."""
    return _BREAK.sub("\n", text) if "\r" in text else text


def _ours(name: str, value):
    if isinstance(value, list):
        return [_ours(name, v) for v in value]
    if type(value) is vText or (type(value) is vUnknown and name.lower() in TEXT_EXTENSIONS):
        return Text(_lines(str(value)), params=value.params)
    if type(value) is vCategory:
        return Categories([_lines(str(c)) for c in value.cats], params=value.params)
    return value


def _content_lines(component):
    """The content lines of a component and its subcomponents, as icalendar writes them; a
    value without parameters, most of them, written here (icalendar's ``Contentline``
    quotes parameters: only those go through it)."""
    for name, value in component.property_items():
        if isinstance(value, bytes):  # BEGIN and END: a component's name
            yield f"{name}:{value.decode()}"
        elif getattr(value, "params", True) or not hasattr(value, "to_ical"):
            yield component.content_line(name, value)
        else:
            written = value.to_ical()  # bytes, or (some of icalendar's types) str
            yield f"{name}:{written.decode() if isinstance(written, bytes) else written}"


def _folded(line: str) -> bytes:
    """A content line folded as icalendar folds it (at 75 octets): a short ASCII line, most
    of them, as it is."""
    return line.encode() if len(line) < 75 and line.isascii() else Contentline(line).to_ical()


def serialize(component) -> bytes:
    """A component (a VCALENDAR, usually) as iCalendar bytes, every TEXT value escaped by
    the RFC whichever way it was added (icalendar's ``to_ical``, the lines folded by
    ``_folded``)."""
    for part in component.walk():
        for name, value in list(part.items()):
            retyped = _ours(name, value)
            if retyped is not value:
                part[name] = retyped
    return b"\r\n".join(_folded(line) for line in _content_lines(component)) + b"\r\n"


def fold(line: str) -> str:
    """A content line written by hand (vCard) folded, RFC 6350 3.2 and RFC 5545 3.1: lines
    over 75 octets, never inside a UTF-8 sequence."""
    encoded = line.encode()
    if len(encoded) <= 75:
        return line
    chunks, current = [], ""
    for char in line:
        limit = 75 if not chunks else 74
        if len((current + char).encode()) > limit:
            chunks.append(current)
            current = char
        else:
            current += char
    chunks.append(current)
    return "\r\n ".join(chunks)


def person(address: str, name: str | None = None) -> vCalAddress:
    """An ORGANIZER or ATTENDEE value: ``mailto:`` the address, the name as CN (a parameter,
    not TEXT: icalendar leaves a name with a backslash unquoted, then reads a trailing one
    back wrong, so such a name is quoted too)."""
    found = vCalAddress(f"mailto:{address}")
    if name:
        found.params["CN"] = _lines(name)  # as it reads back
        found.params.quote_also = {**found.params.quote_also, "CN": " '\\"}
    return found
