"""vCard (RFC 6350 4.0, 2426 3.0) <-> CRM contact field values.

``read_contact(text)`` gives a contact's values from vCard 3.0 or 4.0; ``write_contact``
writes 4.0 over ``base`` (the server's last text), replacing the properties the CRM holds
and keeping the others (photos, social profiles, a client's X- properties). A small reader
of our own: content lines are simple (RFC 6350 3.3), and it reads thousands of cards a second
where a general parser reads hundreds. Values are escaped and read as iCalendar TEXT is
(RFC 6350 3.4 and RFC 5545 3.3.11 agree: ``ical_text``)."""
from __future__ import annotations

import re
from datetime import date

from server.ical_text import escape as _escape
from server.ical_text import fold
from server.ical_text import unescape as _unescape

# Properties the CRM holds: written from its values, the base's copies replaced.
OWNED = {"FN", "N", "TITLE", "ORG", "EMAIL", "TEL", "ADR", "BDAY", "URL", "NOTE", "UID",
         "VERSION", "PRODID", "REV", "CATEGORIES"}
_PARAM = re.compile(r';([^=;:]+)=((?:"[^"]*"|[^;:])*)')


class BadCard(ValueError):
    """Text that is not a vCard we can read."""


def _unfold(text: str) -> list[str]:
    """Content lines, unfolded; only CR and LF end a line (a value may hold U+2028)."""
    return [line for line in re.split(r"\r\n|\n|\r", re.sub(r"\r?\n[ \t]", "", text)) if line]


def _split(line: str) -> tuple[str, dict[str, set[str]], str]:
    """(NAME, {PARAM: values}, raw value) of one content line, groups dropped."""
    head, value, in_quotes = "", "", False
    for index, char in enumerate(line):
        if char == '"':
            in_quotes = not in_quotes
        elif char == ":" and not in_quotes:
            head, value = line[:index], line[index + 1:]
            break
    else:
        raise BadCard(f"a line without a value: {line[:40]!r}")
    name, _, params_text = head.partition(";")
    params: dict[str, set[str]] = {}
    for key, raw in _PARAM.findall(";" + params_text if params_text else ""):
        values = {v.strip('"').lower() for v in raw.split(",")}
        params.setdefault(key.upper(), set()).update(values)
    for bare in params_text.split(";") if params_text else []:  # 3.0: TEL;WORK;VOICE:...
        if bare and "=" not in bare:
            params.setdefault("TYPE", set()).add(bare.lower())
    return name.rpartition(".")[2].upper(), params, value


def _parts(value: str, separator: str = ";") -> list[str]:
    """The ;-separated parts of a structured value (N, ADR, ORG), or the ,-separated ones
    of a list (CATEGORIES), unescaped."""
    parts, current, escaped = [], "", False
    for char in value:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == separator:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current + ("\\" if escaped else ""))
    return [_unescape(p) for p in parts]


def read_contact(text: str) -> dict:
    """A contact's values from one vCard."""
    lines = _unfold(text)
    if not any(line.upper().startswith("BEGIN:VCARD") for line in lines):
        raise BadCard("no VCARD in the item")
    props: list[tuple[str, dict, str]] = [_split(line) for line in lines if line.strip()]
    first = {}
    for name, params, value in props:
        first.setdefault(name, (params, value))
    n = _parts(first["N"][1]) + [""] * 5 if "N" in first else [""] * 5
    full = _unescape(first["FN"][1]) if "FN" in first else ""
    last, given = n[0] or "", n[1] or None
    if not last:  # a card with only a formatted name: its last word is the last name
        given_part, _, last = full.rpartition(" ")
        given = given or given_part or None
    values = {"first_name": given, "last_name": last or full or "(no name)",
              "full_name": full or " ".join(p for p in (given, last) if p) or "(no name)",
              "job_title": _value(first, "TITLE"),
              "company_name": _parts(first["ORG"][1])[0] or None if "ORG" in first else None,
              "website": _value(first, "URL"), "description": _value(first, "NOTE"),
              "birthday": _birthday(first.get("BDAY", ({}, ""))[1])}
    emails = [_unescape(v).strip() for name, _, v in props if name == "EMAIL" and v.strip()]
    for index in range(3):
        values[f"email{index + 1}"] = emails[index] if index < len(emails) else None
    values.update(_phones(props))
    values.update(_address(props))
    return values


def _value(first: dict, name: str) -> str | None:
    return _unescape(first[name][1]).strip() or None if name in first else None


def _birthday(value: str) -> date | None:
    digits = value.strip().replace("-", "")[:8]
    try:
        return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        return None


def _phones(props) -> dict:
    found = {"phone": None, "mobile_phone": None, "home_phone": None}
    others = []
    for name, params, value in props:
        if name != "TEL" or not value.strip():
            continue
        types = params.get("TYPE", set())
        number = _unescape(value).strip().removeprefix("tel:")
        slot = ("mobile_phone" if "cell" in types else "home_phone" if "home" in types
                else "phone" if "work" in types or not types - {"voice", "pref"} else None)
        if slot and found[slot] is None:
            found[slot] = number
        else:
            others.append(number)
    if found["phone"] is None and others:
        found["phone"] = others[0]
    return found


def _address(props) -> dict:
    addresses = [(params.get("TYPE", set()), _parts(value) + [""] * 7)
                 for name, params, value in props if name == "ADR"]
    if not addresses:
        return {"street": None, "city": None, "state_province": None, "postal_code": None,
                "country": None}
    _, parts = next((a for a in addresses if "work" in a[0]), addresses[0])
    return {"street": parts[2] or None, "city": parts[3] or None,
            "state_province": parts[4] or None, "postal_code": parts[5] or None,
            "country": parts[6] or None}


def write_contact(values: dict, uid: str, base: str | None = None,
                  categories: list[str] | None = None) -> str:
    """vCard 4.0 text of a contact, written over ``base``; ``categories``: the card's
    categories (the CRM keeps none of its own; the sync marks the cards it tracks)."""
    kept = []
    if base:
        for line in _unfold(base):
            if not line.strip() or line.upper().startswith(("BEGIN:VCARD", "END:VCARD")):
                continue
            try:
                name = _split(line)[0]
            except BadCard:
                continue
            if name not in OWNED:
                kept.append(line)
    lines = ["BEGIN:VCARD", "VERSION:4.0", "PRODID:-//Regarding CRM//EN", f"UID:{uid}",
             f"FN:{_escape(values.get('full_name') or '')}",
             "N:" + ";".join(_escape(values.get(k) or "")
                             for k in ("last_name", "first_name")) + ";;;"]
    simple = (("TITLE", "job_title"), ("URL", "website"), ("NOTE", "description"))
    lines += [f"{prop}:{_escape(values[key])}" for prop, key in simple if values.get(key)]
    if values.get("company_name"):
        lines.append(f"ORG:{_escape(values['company_name'])}")
    lines += [f"EMAIL;TYPE=work{';PREF=1' if i == 1 else ''}:{_escape(values[f'email{i}'])}"
              for i in (1, 2, 3) if values.get(f"email{i}")]
    for key, kind in (("phone", "work,voice"), ("mobile_phone", "cell,voice"),
                      ("home_phone", "home,voice")):
        if values.get(key):
            lines.append(f'TEL;TYPE="{kind}":{_escape(values[key])}')
    address = [values.get(k) or "" for k in ("street", "city", "state_province",
                                             "postal_code", "country")]
    if any(address):
        lines.append("ADR;TYPE=work:;;" + ";".join(_escape(a) for a in address))
    if values.get("birthday"):
        lines.append(f"BDAY:{values['birthday'].strftime('%Y%m%d')}")
    if categories:
        lines.append("CATEGORIES:" + ",".join(_escape(c) for c in categories))
    lines += kept
    lines.append("END:VCARD")
    return "".join(fold(line) + "\r\n" for line in lines)


def categories_of(text: str) -> list[str]:
    """The CATEGORIES of a vCard or of an iCalendar item's first component (unescaped)."""
    for line in _unfold(text):
        if line.upper().startswith(("CATEGORIES:", "CATEGORIES;")):
            value = _split(line)[2]
            return [c.strip() for c in _parts(value, ",") if c.strip()]
    return []
