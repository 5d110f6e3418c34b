"""Header values of a message: unfolding and cleaning, RFC 2047 encoded words, MIME
parameters (RFC 2231 included), dates, and the repair of header sections the stdlib's
parser would give up on half way. Pure: values in, values out; problems are listed in the
caller's ``defects``.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from email import utils as email_utils
from urllib.parse import unquote_to_bytes

from server.sync.mail.charsets import decode_bytes, fix_surrogates, repair_raw, unfold
from server.sync.mail.mime import Part

__all__ = ["HeaderMap", "Headers", "b64decode", "boundary_of", "charset_hint", "clean_line",
           "decode_words", "main_value", "param", "parse_date", "part_header",
           "repair_header_section", "text_header"]

UTC = timezone.utc


class HeaderMap(Mapping[str, str]):
    """A small read-only, case-insensitive mapping of header name -> decoded value."""

    __slots__ = ("_data",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._data = {name.lower(): value for name, value in pairs}

    def __getitem__(self, key: str) -> str:
        return self._data[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._data

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._data.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"HeaderMap({self._data!r})"


# --------------------------------------------------------------------------- text helpers

_WS = re.compile(r"[ \t\r\n\f\v]+")


_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_line(text: str) -> str:
    """One line of header text: no control characters, whitespace runs collapsed."""
    text = _WS.sub(" ", text)
    if text.isascii():  # the common case: only C0 controls and DEL to drop
        return _ASCII_CONTROL.sub("", text).strip()
    text = "".join(ch for ch in text
                   if unicodedata.category(ch) not in ("Cc", "Cs") and ch != "\ufeff")
    return text.strip()


# --------------------------------------------------------------------------- RFC 2047

_ENCODED_WORD = re.compile(r"=\?([^?\s*]+)(?:\*[^?\s]*)?\?([bBqQ])\?([^?\s]*)\?=")


def b64decode(data: bytes) -> bytes:
    """Lenient base64: ignore junk characters, repair the padding."""
    if b"=" not in data.rstrip(b" \t\r\n="):
        # binascii skips line breaks and junk itself; it stops at the first padding and
        # rejects a broken last group, so only the clean common case is decoded here.
        try:
            return binascii.a2b_base64(data)
        except (binascii.Error, ValueError):
            pass
    # Padding inside the data ends a chunk: some encoders pad every line or write
    # several padded chunks one after the other. Each chunk is decoded on its own.
    return b"".join(_b64_chunk(chunk) for chunk in re.sub(rb"[^A-Za-z0-9+/=]", b"", data).split(b"="))


def _b64_chunk(data: bytes) -> bytes:
    cleaned = data[: len(data) - (len(data) % 4 == 1)]
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return base64.b64decode(cleaned)
    except (binascii.Error, ValueError):
        return b""


def _encoded_word_bytes(encoding: str, payload: str) -> bytes:
    # Raw 8-bit bytes inside a word (surrogate-escaped) are the word's own: its charset
    # decodes them, as the stdlib does.
    data = payload.encode("utf-8", "surrogateescape")
    if encoding.lower() == "b":
        return b64decode(data)
    return binascii.a2b_qp(data, header=True)


def decode_words(value: str, defects: list[str] | None = None, what: str = "header") -> str:
    """Decode RFC 2047 encoded words in unstructured text.

    Adjacent words in the same charset are joined before decoding, so a multibyte character
    split across two words (common in long Japanese subjects) survives.
    """
    if "=?" not in value:
        return value
    out: list[str] = []
    pending = bytearray()
    pending_charset = ""

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset:
            out.append(decode_bytes(bytes(pending), pending_charset, defects, what))
        pending, pending_charset = bytearray(), ""

    position = 0
    for match in _ENCODED_WORD.finditer(value):
        between = value[position:match.start()]
        if not (pending_charset and between.strip() == ""):
            flush()
            out.append(between)
        charset = match.group(1)
        if pending_charset and charset.lower() != pending_charset.lower():
            flush()
        pending += _encoded_word_bytes(match.group(2), match.group(3))
        pending_charset = charset
        position = match.end()
    flush()
    out.append(value[position:])
    return "".join(out)

# --------------------------------------------------------------------------- header access

class Headers:
    """The message's top-level headers, repaired (8-bit bytes decoded) and unfolded. Plain
    ASCII values are unfolded when first read: most of a message's headers (Received, DKIM)
    are never read."""

    def __init__(self, part: Part, hint: str | None, defects: list[str]) -> None:
        self.hint = hint
        self.defects = defects
        self.names: list[str] = []  # lower case, in order, repeated as they repeat
        self._values: dict[str, list[str]] = {}
        for name, value in part.headers:
            text = value if isinstance(value, str) else str(value)
            if not text.isascii():
                text, guessed = repair_raw(text, hint)
                if guessed:
                    defects.append(f"the {name} header has raw 8-bit characters that are not "
                                   "UTF-8; their charset was guessed")
            key = str(name).strip().lower()
            self.names.append(key)
            self._values.setdefault(key, []).append(text)

    def all(self, name: str) -> list[str]:
        return [unfold(value) for value in self._values.get(name, ())]

    def first(self, name: str) -> str | None:
        values = self._values.get(name)
        return unfold(values[0]) if values else None

def text_header(headers: Headers, name: str, defects: list[str]) -> str | None:
    value = headers.first(name)
    if value is None:
        return None
    return clean_line(fix_surrogates(decode_words(value, defects, f"{name} header"), headers.hint))

def parse_date(raw: str | None, defects: list[str]) -> datetime | None:
    if raw is None or not raw.strip():
        defects.append("the message has no Date header" if raw is None else "the Date header is empty")
        return None
    try:
        parsed = email_utils.parsedate_to_datetime(raw.strip())
    except Exception:  # ValueError, TypeError, IndexError, OverflowError across versions
        parsed = None
    if parsed is None:
        defects.append(f"the Date header could not be read: {raw.strip()[:80]!r}")
        return None
    if parsed.tzinfo is None:
        defects.append("the Date header has no valid time zone; UTC was assumed")
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        defects.append(f"the Date header is out of range: {raw.strip()[:80]!r}")
        return None


# --------------------------------------------------------------------------- MIME params

def part_header(part: Part, name: str, hint: str | None) -> str | None:
    value = part.header(name)
    return repair_raw(value, hint)[0] if value is not None else None


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value.strip('"')


_QUOTED_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')


def _top_level(header_value: str, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    """Matches of a parameter pattern that do not start inside a quoted string
    (``x="a;boundary=z"`` names no boundary)."""
    spans = [m.span() for m in _QUOTED_STRING.finditer(header_value)]
    starts = [start for start, _ in spans]
    found = []
    for match in pattern.finditer(header_value):
        index = bisect.bisect_right(starts, match.start()) - 1
        if index < 0 or match.start() >= spans[index][1]:
            found.append(match)
    return found


def _rfc2231_param(header_value: str, pname: str, defects: list[str]) -> str | None:
    """RFC 2231 ``name*=charset'lang'%xx`` and ``name*0*=`` continuations, decoded."""
    pattern = re.compile(rf'(?:^|;)\s*{re.escape(pname)}\*(\d+)?(\*)?\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)',
                         re.IGNORECASE)
    segments = sorted(((int(m.group(1) or 0), bool(m.group(2)) or m.group(1) is None,
                        _unquote(m.group(3))) for m in _top_level(header_value, pattern)),
                      key=lambda seg: seg[0])
    if not segments:
        return None
    charset = ""
    data = bytearray()
    for index, encoded, text in segments:
        if index == 0 and encoded and text.count("'") >= 2:
            charset, _, text = text.split("'", 2)
        if encoded:
            data += unquote_to_bytes(text)
        else:
            data += text.encode("utf-8")
    return decode_bytes(bytes(data), charset or "utf-8", defects, f"{pname} parameter")


def param(header_value: str | None, pname: str, defects: list[str]) -> str | None:
    """A MIME parameter, tolerating unquoted spaces and RFC 2047 words inside."""
    if not header_value:
        return None
    extended = _rfc2231_param(header_value, pname, defects)
    if extended:
        return extended
    pattern = re.compile(rf'(?:^|;)\s*{re.escape(pname)}\s*=\s*("(?:[^"\\]|\\.)*"?|[^;]*)',
                         re.IGNORECASE)
    match = next(iter(_top_level(header_value, pattern)), None)
    if not match:
        return None
    value = _unquote(match.group(1))
    if "=?" in value:
        value = decode_words(value, defects, f"{pname} parameter")
    return value or None


def main_value(header_value: str | None) -> str:
    return (header_value or "").split(";", 1)[0].strip().strip('"').lower()

_CHARSET = re.compile(r'charset\s*=\s*"?([A-Za-z0-9_.:+-]+)', re.IGNORECASE)


def charset_hint(root: Part) -> str | None:
    """The first charset named anywhere in the MIME tree: the best guess for raw 8-bit headers."""
    for part in root.walk():
        for key, value in part.headers:
            if key.lower() == "content-type":
                match = _CHARSET.search(value)
                if match:
                    return match.group(1)
    return None


# --------------------------------------------------------------------------- header repair

_FIELD_LINE = re.compile(rb"^[!-9;-~]+:")
_HEADER_END = re.compile(rb"(?:\r\n|\n|\r(?!\n))(?:\r\n|\n|\r)")
_OBS_FIELD = re.compile(rb"^([!-9;-~]+)[ \t]+:")


def _is_header_line(line: bytes) -> bool:
    return bool(_FIELD_LINE.match(line) or _OBS_FIELD.match(line)) or line[:1] in (b" ", b"\t")


def repair_header_section(raw: bytes, defects: list[str]) -> bytes:
    """Fix header sections the stdlib parser would give up on half way.

    RFC 2822's obsolete syntax allows space before the colon ("Subject  : hi"); a stray
    non-header line between headers would otherwise push every later header into the body.
    Only the lines up to the first blank one matter. A line starting with "--" (a MIME
    delimiter) is never a header line: it starts the body, however the section before it
    ended (a line of spaces, as some mailers write, reads as the stdlib reads it).
    """
    end = _HEADER_END.search(raw)
    rest = raw[end.end():] if end else b""
    lines = (raw[:end.end()] if end else raw).splitlines(keepends=True)
    out: list[bytes] = []
    changed = False
    for index, line in enumerate(lines):
        bare = line.rstrip(b"\r\n")
        if not bare or bare.startswith(b"--"):
            out.extend(lines[index:])
            break
        obsolete = _OBS_FIELD.match(bare)
        if obsolete:
            out.append(obsolete.group(1) + b":" + line[obsolete.end():])
            changed = True
        elif _is_header_line(bare) or (index == 0 and bare.startswith(b"From ")):
            out.append(line)
        elif _stray_line(lines, index):
            defects.append("a malformed header line was dropped: "
                           f"{bare[:60].decode('latin-1')!r}")
            changed = True
        else:
            out.extend(lines[index:])
            break
    return b"".join(out) + rest if changed else raw


def _stray_line(lines: list[bytes], index: int) -> bool:
    """Is the non-header line at ``index`` followed by more headers (so it is junk)?"""
    following = [line.rstrip(b"\r\n") for line in lines[index + 1:index + 40]]
    if not following or not following[0] or not _is_header_line(following[0]):
        return False
    for line in following:
        if not line:
            return False
        if _FIELD_LINE.match(line) or _OBS_FIELD.match(line):
            return True
        if not _is_header_line(line):
            return False
    return False


def boundary_of(content_type: str | None) -> str | None:
    """The boundary parameter of a Content-Type value, read leniently (unquoted
    boundaries holding "=" are common). Trailing blanks go, as the stdlib drops them;
    leading ones are part of a quoted boundary (RFC 2046)."""
    boundary = param(content_type, "boundary", [])
    return boundary.rstrip() if boundary else None
