"""Address lists in headers, read as the stdlib reads them: the plain forms nearly all
mail uses by one pattern, anything else (comments, groups, encoded words, obsolete syntax)
by the stdlib's modern parser, and headers that parser finds malformed by a lenient
recovery. Pure; the addresses are normalized by the caller (``mailkeys.normalize_address``).
"""
from __future__ import annotations

import re
from email import errors as email_errors
from email import policy as email_policy
from email import utils as email_utils

from server.sync.mail.charsets import fix_surrogates
from server.sync.mail.headers import clean_line, decode_words

__all__ = ["MAX_PARSED_ADDRESS_HEADER", "clean_display_name", "header_label",
           "read_address_header"]

MAX_PARSED_ADDRESS_HEADER = 4096  # longer address headers are read leniently


def _split_top_level(value: str) -> list[str]:
    """Split an address list on commas outside quotes, angle brackets and comments."""
    parts: list[str] = []
    current: list[str] = []
    quoted, angle, comment, escaped = False, 0, 0, False
    for ch in value:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"' and not comment:
            quoted = not quoted
        elif not quoted:
            if ch == "(":
                comment += 1
            elif ch == ")" and comment:
                comment -= 1
            elif ch == "<" and not comment:
                angle += 1
            elif ch == ">" and angle and not comment:
                angle -= 1
            elif ch == "," and not angle and not comment:
                parts.append("".join(current))
                current = []
                continue
        current.append(ch)
    parts.append("".join(current))
    return parts


_ADDRESS_RUN = re.compile(r"[^\s<>\"',;()]+")


def _bare_addresses(text: str) -> list[str]:
    """Runs of address characters with an "@" inside: what the pattern
    ``run+@run+`` finds, without its backtracking (quadratic on a long run without "@")."""
    return [run for run in _ADDRESS_RUN.findall(text) if "@" in run[1:-1]]


def _lenient_addresses(value: str) -> list[tuple[str, str]]:
    """Pull (name, address) pairs out of a header the strict parser rejected."""
    found: list[tuple[str, str]] = []
    for element in _split_top_level(value):
        angle = re.search(r"<([^<>]*)>", element)
        if angle:
            name = element[:angle.start()].strip()
            name = name.split(":", 1)[1] if ":" in name and "@" not in name else name
            found.append((name.strip().strip('"').replace('\\"', '"'), angle.group(1)))
        else:
            tokens = _bare_addresses(element)
            if len(tokens) == 1:  # "Big Bug bb@bug.com": the words before are the name
                found.append((element.replace(tokens[0], "").strip().strip('"'), tokens[0]))
            else:
                found.extend(("", token) for token in tokens)
    return found


def clean_display_name(name: str, hint: str | None, defects: list[str]) -> str:
    if "=?" in name:
        name = decode_words(name, defects, "display name")
    name = clean_line(fix_surrogates(name, hint))
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1].strip()
    return name

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_PLAIN_ADDRESS = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PLAIN_ELEMENT = re.compile(
    rf"[ \t]*(?:(?:((?:[A-Za-z0-9!#$%&'*+/^_`{{|}}~-][A-Za-z0-9!#$%&'*+/^_`{{|}}~. -]*+)?)|\"([^\"\\=\r\n]*)\")[ \t]*"
    rf"<({_PLAIN_ADDRESS})>|({_PLAIN_ADDRESS}))[ \t]*(,|$)")


def _plain_addresses(value: str) -> list[tuple[str, str]] | None:
    """(name, address) pairs of an address list in the plain forms nearly all mail uses
    (``Name <a@b>``, ``"Last, First" <a@b>``, ``a@b``), read by one pattern; None for
    anything else (comments, groups, encoded words, 8-bit text, odd syntax), which the
    full parser reads. The pattern accepts nothing that parser would read differently."""
    if not value.isascii():
        return None
    pairs: list[tuple[str, str]] = []
    pos, end = 0, len(value)
    while True:
        match = _PLAIN_ELEMENT.match(value, pos)
        if match is None:
            return None
        phrase, quoted, angle, bare = match.groups()[:4]
        if bare is not None:
            pairs.append(("", bare))
        else:
            pairs.append(((quoted if quoted is not None else phrase).strip(), angle))
        pos = match.end()
        if pos >= end:
            return pairs if match.group(5) == "" else None


def header_label(name: str) -> str:
    return "-".join(part.capitalize() for part in name.split("-"))


def read_address_header(name: str, value: str, hint: str | None,
                        defects: list[str]) -> list[tuple[str, str]]:
    """(display name, address as written) pairs of one header: the plain pattern, else the
    stdlib's modern parser, else a lenient recovery. Display names are decoded and cleaned;
    the addresses are left for the caller to normalize."""
    pairs = _plain_addresses(value)
    invalid = False
    if pairs is None and len(value) > MAX_PARSED_ADDRESS_HEADER:
        pairs, invalid = [], True  # the modern parser takes quadratic time on some long values
    elif pairs is None:
        pairs, invalid = _parsed_addresses(name, value)
    if invalid:
        pairs = _compat_or_lenient(value)
        defects.append(f"the {header_label(name)} header is malformed; its addresses were "
                       "recovered leniently")
    return [(clean_display_name(display, hint, defects), fix_surrogates(spec, hint).strip())
            for display, spec in pairs if spec.strip() or display.strip()]


def _parsed_addresses(name: str, value: str) -> tuple[list[tuple[str, str]], bool]:
    """The stdlib's modern address parser: (pairs, whether it found the header invalid)."""
    pairs: list[tuple[str, str]] = []
    invalid = False
    try:
        parsed = email_policy.default.header_factory(name, value)
        pairs = [(a.display_name or "", a.addr_spec or "") for a in parsed.addresses]
        invalid = any(isinstance(d, email_errors.InvalidHeaderDefect) for d in parsed.defects)
    except Exception:  # the modern parser has choked on odd input before: fall back
        invalid = True
    return pairs, invalid


def _compat_or_lenient(value: str) -> list[tuple[str, str]]:
    lenient = _lenient_addresses(value)
    if lenient or len(value) > MAX_PARSED_ADDRESS_HEADER:  # compat32's parser is slow too
        return lenient
    try:
        return [(n, a) for n, a in email_utils.getaddresses([value]) if a]
    except Exception:
        return []
