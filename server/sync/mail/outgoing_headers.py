"""The extra headers an outgoing email may carry beyond the ones the send path writes
itself (From, To, Subject, Message-ID, In-Reply-To, References...): RFC 3834's
``Auto-Submitted`` and Microsoft's ``X-Auto-Response-Suppress``, which an acknowledgement
needs so auto-responders leave it alone, and other ``X-`` headers. Pure: an email's
``Email.internet_headers`` are checked when it is sent and again when its MIME is written,
so a bad header fails that email with a clear reason and never reaches the wire.

The one path for every protocol is the MIME message the send path builds
(``server.sync.engine.outgoing.build_mime``): SMTP sends it as it is, EWS gives it as the
item's MIME content, and Microsoft Graph makes its draft from it (``POST /messages`` with
the MIME). Graph's JSON ``internetMessageHeaders`` would take only headers whose name starts
with ``x-``, so ``Auto-Submitted`` could not go that way at all: it reaches Exchange in the
MIME, where X-Auto-Response-Suppress becomes the message's PidTagAutoResponseSuppress
([MS-OXCMAIL]), the property Exchange's own auto-replies and out-of-office answers honour.
"""
from __future__ import annotations

import re

__all__ = ["ACKNOWLEDGEMENT_HEADERS", "checked_headers"]

# The headers an acknowledgement is sent with (RFC 3834 section 5; Microsoft's
# [MS-OXCMAIL] 2.2.3.2.14: "All" suppresses every automatic answer).
ACKNOWLEDGEMENT_HEADERS = (("Auto-Submitted", "auto-replied"),
                           ("X-Auto-Response-Suppress", "All"))

ALLOWED = {"auto-submitted": "Auto-Submitted", "x-auto-response-suppress": "X-Auto-Response-Suppress"}
RESERVED = ("x-ms-exchange-", "x-microsoft-exchange-")  # Exchange's own, never ours to set
MAX_HEADERS = 10
MAX_VALUE = 900  # one header line stays under RFC 5322's 998 characters
_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # printable ASCII, no colon or space
_VALUE = re.compile(r"^[\x20-\x7e]*$")  # printable ASCII on one line


def checked_headers(pairs) -> tuple[tuple[str, str], ...]:
    """``[[name, value], ...]`` as (name, value) pairs, each name once; raises ValueError
    saying which header is refused and why (a header the send path writes itself, one that
    is neither allowed nor ``X-``, a line break or non-ASCII in a value, too many)."""
    out: dict[str, tuple[str, str]] = {}
    for pair in pairs or ():
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 \
                or not all(isinstance(p, str) for p in pair):
            raise ValueError(f"A header must be a name and a value, not {pair!r}.")
        name, value = pair[0].strip(), pair[1].strip()
        if not _NAME.match(name):
            raise ValueError(f"{name!r} is not a header name.")
        key = name.lower()
        if key not in ALLOWED and (not key.startswith("x-") or key.startswith(RESERVED)):
            raise ValueError(f"The header {name} cannot be added to an email (only "
                             f"{', '.join(ALLOWED.values())} and X- headers can).")
        if not _VALUE.match(value) or len(value) > MAX_VALUE:
            raise ValueError(f"The value of {name} must be printable ASCII on one line, at "
                             f"most {MAX_VALUE} characters.")
        if key in out:
            raise ValueError(f"The header {name} is given twice.")
        out[key] = (ALLOWED.get(key, name), value)
    if len(out) > MAX_HEADERS:
        raise ValueError(f"An email can carry at most {MAX_HEADERS} extra headers.")
    return tuple(out.values())
