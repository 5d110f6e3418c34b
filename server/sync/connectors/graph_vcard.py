"""Microsoft Graph contacts as vCard 4.0 and back: the pure translation the Graph item store
(``graph_items``) uses, written line by line (thousands of cards a second, where ``vobject``
writes hundreds) and read with ``vobject`` (vCard 3.0 too).

The vCard's UID is the contact's id (Graph keeps no UID of its own). Fields: FN
``displayName``; N surname, given, middle name, title, generation; NICKNAME ``nickName``;
ORG ``companyName`` and ``department``; TITLE ``jobTitle``; EMAIL ``emailAddresses`` (their
names as the CN parameter is not vCard's: an address's name is dropped); TEL with TYPE
work (``businessPhones``), home (``homePhones``) and cell (``mobilePhone``); ADR with TYPE
work, home and other (``businessAddress``, ``homeAddress``, ``otherAddress``); BDAY
``birthday`` (a date); NOTE ``personalNotes``; CATEGORIES ``categories``.
"""
from __future__ import annotations

from datetime import date

import vobject

from server.ical_text import escape, fold

ADDRESSES = {"work": "businessAddress", "home": "homeAddress", "other": "otherAddress"}
PHONES = {"work": "businessPhones", "home": "homePhones"}
ADDRESS_FIELDS = (("street", "street"), ("city", "city"), ("region", "state"),
                  ("code", "postalCode"), ("country", "countryOrRegion"))


def contact_to_vcard(contact: dict) -> str:
    """A Graph contact as vCard 4.0 text, written line by line (``ical_text``'s escaping and
    folding)."""
    name = contact.get("displayName") or " ".join(
        filter(None, (contact.get("givenName"), contact.get("surname")))) or \
        next((e.get("address") for e in contact.get("emailAddresses") or [] if e.get("address")), "")
    lines = ["BEGIN:VCARD", "VERSION:4.0", f"UID:{contact['id']}",
             f"FN:{escape(name or '')}",
             "N:" + _structured(contact.get(k) for k in ("surname", "givenName", "middleName",
                                                         "title", "generation"))]
    if contact.get("nickName"):
        lines.append(f"NICKNAME:{escape(contact['nickName'])}")
    if contact.get("companyName") or contact.get("department"):
        lines.append("ORG:" + _structured([contact.get("companyName"), *(
            [contact["department"]] if contact.get("department") else [])]))
    if contact.get("jobTitle"):
        lines.append(f"TITLE:{escape(contact['jobTitle'])}")
    lines += [f"EMAIL:{escape(e['address'])}" for e in contact.get("emailAddresses") or []
              if e.get("address")]
    for kind, field in PHONES.items():
        lines += [f"TEL;TYPE={kind}:{escape(n)}" for n in contact.get(field) or [] if n]
    if contact.get("mobilePhone"):
        lines.append(f"TEL;TYPE=cell:{escape(contact['mobilePhone'])}")
    for kind, field in ADDRESSES.items():
        address = contact.get(field) or {}
        if any(address.get(graph) for _, graph in ADDRESS_FIELDS):
            lines.append(f"ADR;TYPE={kind}:;;" + _structured(
                address.get(graph) for _, graph in ADDRESS_FIELDS))
    if contact.get("birthday"):
        lines.append("BDAY:" + str(contact["birthday"])[:10].replace("-", ""))
    if contact.get("personalNotes"):
        lines.append(f"NOTE:{escape(contact['personalNotes'])}")
    if contact.get("categories"):
        lines.append("CATEGORIES:" + ",".join(escape(c) for c in contact["categories"]))
    lines.append("END:VCARD")
    return "".join(fold(line) + "\r\n" for line in lines)


def _structured(parts) -> str:
    """The ;-separated parts of N, ORG or ADR, each escaped."""
    return ";".join(escape(part or "") for part in parts)


def _types(line) -> set[str]:
    found = set()
    for value in line.params.get("TYPE", []):
        found.update(v.strip().lower() for v in str(value).split(","))
    return found


def _lines(card, name: str) -> list:
    return list(card.contents.get(name, []))


def vcard_to_contact(text: str) -> dict:
    """vCard text as the Graph contact fields to write (every field this module maps, empty
    ones included, so a PATCH clears what the card no longer has)."""
    card = vobject.readOne(text)
    contact: dict = {}
    names = _lines(card, "n")
    n = names[0].value if names else vobject.vcard.Name()
    for ours, graph in (("family", "surname"), ("given", "givenName"),
                        ("additional", "middleName"), ("prefix", "title"),
                        ("suffix", "generation")):
        value = getattr(n, ours, "")
        contact[graph] = " ".join(value) if isinstance(value, list) else (value or "")
    fns = _lines(card, "fn")
    contact["displayName"] = fns[0].value if fns else \
        " ".join(filter(None, (contact["givenName"], contact["surname"])))
    nick = _lines(card, "nickname")
    contact["nickName"] = str(nick[0].value) if nick else ""
    org = _lines(card, "org")
    parts = org[0].value if org else []
    parts = parts if isinstance(parts, list) else [parts]
    contact["companyName"] = parts[0] if parts else ""
    contact["department"] = parts[1] if len(parts) > 1 else ""
    title = _lines(card, "title")
    contact["jobTitle"] = title[0].value if title else ""
    contact["emailAddresses"] = [{"address": line.value, "name": line.value}
                                 for line in _lines(card, "email") if line.value]
    contact["businessPhones"], contact["homePhones"], contact["mobilePhone"] = [], [], ""
    for line in _lines(card, "tel"):
        number = str(line.value).removeprefix("tel:")
        types = _types(line)
        if "cell" in types and not contact["mobilePhone"]:
            contact["mobilePhone"] = number
        elif "home" in types:
            contact["homePhones"].append(number)
        else:
            contact["businessPhones"].append(number)
    for field in ADDRESSES.values():
        contact[field] = {}
    for line in _lines(card, "adr"):
        types = _types(line)
        kind = next((k for k in ADDRESSES if k in types), "work")
        if contact[ADDRESSES[kind]]:
            continue
        value = line.value
        contact[ADDRESSES[kind]] = {graph: _joined(getattr(value, ours, ""))
                                    for ours, graph in ADDRESS_FIELDS}
    bday = _lines(card, "bday")
    contact["birthday"] = _birthday(str(bday[0].value)) if bday else None
    note = _lines(card, "note")
    contact["personalNotes"] = note[0].value if note else ""
    contact["categories"] = [c for line in _lines(card, "categories")
                             for c in (line.value if isinstance(line.value, list) else [line.value])]
    return contact


def _joined(value) -> str:
    return "\n".join(value) if isinstance(value, list) else (value or "")


def _birthday(text: str) -> str | None:
    """A vCard BDAY (``19800501``, ``1980-05-01``, ``--0501`` without a year) as Graph's
    DateTimeOffset, noon UTC as Outlook keeps it; None where there is no year."""
    digits = text.replace("-", "")[:8]
    if len(digits) < 8 or not digits.isdigit():
        return None
    day = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    return f"{day.isoformat()}T11:59:00Z"
