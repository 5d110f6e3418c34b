"""Reading IMAP answers: ``UID FETCH`` with imaplib alone and its response read with a few
patterns (``uid_fetch``), IMAP date-times, UID sets, and message flags as categories."""
from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from server.sync.connectors.common import keyword_to_category, newsworthy


def text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def categories(flags: Iterable) -> tuple[str, ...]:
    return tuple(keyword_to_category(text(f)) for f in flags or () if not text(f).startswith("\\"))


def flags_newsworthy(flags: Iterable) -> bool:
    return newsworthy(text(f) for f in flags or ())


def only_ours(flags: Iterable, ours: str | None) -> bool:
    """Whether the only keyword on a message is the one this session wrote to it."""
    if ours is None:
        return False
    return {text(f) for f in flags or () if newsworthy([text(f)])} <= {ours}


@dataclass
class Fetched:
    raw: bytes | None = None
    flags: tuple[bytes, ...] = ()
    arrived_on: datetime | None = None
    size: int | None = None


_FETCH_ITEM = re.compile(rb'UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]*)"|RFC822\.SIZE (\d+)')
_FETCH_SEQ = re.compile(rb"(\d+) \(")
_INTERNALDATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m.encode(): n for n, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}


def internaldate(stamp: bytes) -> datetime | None:
    """An IMAP date-time ("22-Nov-2026 17:13:04 +0100") in UTC."""
    match = _INTERNALDATE.fullmatch(stamp)
    if match is None or match.group(2).lower() not in _MONTHS:
        return None
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == b"-" else 1)
    try:
        moment = datetime(int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute),
                          int(second), tzinfo=timezone(offset))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc)


def uid_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, Fetched]:
    """``UID FETCH uids (items)`` with imaplib alone, the response read with a few patterns:
    imapclient's general response parser cost twice the reading itself. At most one literal
    per message (the body section); a response without a UID (an unsolicited flag change)
    is left out."""
    imap.untagged_responses.pop("FETCH", None)
    typ, data = imap.uid("FETCH", ",".join(map(str, uids)), f"({items})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH failed: {text(data[0]) if data and data[0] else typ}")
    found: dict[int, Fetched] = {}
    current: Fetched | None = None
    for entry in data:
        if entry is None:
            continue
        head, literal = entry if isinstance(entry, tuple) else (entry, None)
        if _FETCH_SEQ.match(head):  # a new message's response (else: its rest after a literal)
            current = Fetched()
        elif current is None:
            continue
        for match in _FETCH_ITEM.finditer(head):
            number, flags, date, size = match.groups()
            if number is not None:
                found[int(number)] = current
            elif flags is not None:
                current.flags = tuple(flags.split())
            elif date is not None:
                current.arrived_on = internaldate(date)
            elif size is not None:
                current.size = int(size)
        if literal is not None:
            current.raw = bytes(literal)
    return found


def uid_set(text: str, upto: int) -> list[int]:
    """``"1:3,7"`` -> [1, 2, 3, 7], ignoring UIDs above ``upto``."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            continue
        first, last = sorted((int(low), int(high or low)))
        out.extend(range(first, min(last, upto) + 1))
    return out
