"""Strict parsing of what the task pane sends to the add-in API (see the add-in API contract):
the item as Office.js describes it, its content on Track, regarding references, quick-create
fields. Unknown fields and wrong types are errors with a message per field path
(``item.to[3].address``); text is stripped of control characters (NUL included, which
PostgreSQL refuses) and capped; attachments are base64-decoded, and those over the
organization's size limit are kept as metadata only. Pure: no database, no Flask.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from email.parser import HeaderParser
from email.utils import parsedate_to_datetime
from typing import Any, Callable

from server.crm.activities import REGARDING_TYPES
from server.crm.values import LINE_BREAK, SINGLE_LINE
from server.errors import Invalid
from server.i18n import N_

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NUL = re.compile(r"\x00")

SUBJECT_MAX = 400
NAME_MAX = 200
ADDRESS_MAX = 320
MESSAGE_ID_MAX = 998
ID_MAX = 1000  # Exchange item and conversation ids
UID_MAX = 400  # an iCalendar UID, as appointments keep it
LOCATION_MAX = 200
RECIPIENTS_MAX = 1000  # per role
ATTACHMENTS_MAX = 250
HEADERS_MAX = 256 * 1024

ITEM_KEYS = ("type", "mode", "internet_message_id", "conversation_id", "item_id", "subject",
             "from", "to", "cc", "organizer", "required_attendees", "optional_attendees",
             "start", "end", "location", "user_address", "mailbox_owner", "ical_uid")
CONTENT_KEYS = ("html_body", "text_body", "internet_headers", "attachments")
ATTACHMENT_KEYS = ("name", "content_type", "size", "content_base64", "content_id", "is_inline")


@dataclass(frozen=True)
class Person:
    name: str
    address: str


@dataclass(frozen=True)
class AttachmentIn:
    name: str
    content_type: str
    size: int
    content: bytes | None  # None: not sent, or over the size limit (metadata only)
    content_id: str | None = None
    is_inline: bool = False


@dataclass(frozen=True)
class Headers:
    """What the internet headers tell that Office.js does not."""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    thread_index: str | None = None
    date: datetime | None = None


@dataclass(frozen=True)
class Item:
    type: str  # message appointment
    mode: str  # read compose
    internet_message_id: str | None = None
    conversation_id: str | None = None
    item_id: str | None = None
    # A meeting's iCalendar UID: sent by a host that knows it, else found by the server
    # (server.sync.acts.meetings) from the item id, the mailbox's store or the CRM.
    ical_uid: str | None = None
    subject: str = ""
    from_: Person | None = None
    to: tuple[Person, ...] = ()
    cc: tuple[Person, ...] = ()
    organizer: Person | None = None
    required_attendees: tuple[Person, ...] = ()
    optional_attendees: tuple[Person, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    location: str | None = None
    user_address: str | None = None
    # A shared folder or mailbox: its owner's address (getSharedPropertiesAsync), when not the user's
    mailbox_owner: str | None = None
    # Content, sent on Track only
    html_body: str | None = None
    text_body: str | None = None
    headers: Headers | None = None
    attachments: tuple[AttachmentIn, ...] = ()
    has_content: bool = False

    @property
    def identity(self) -> str | None:
        """What the item is known by: its Message-ID; a meeting by its iCalendar UID (one
        appointment per meeting, as the sync keys it), else by its item id."""
        if self.type == "appointment":
            return self.ical_uid or self.internet_message_id or self.item_id
        return self.internet_message_id


class Errors:
    """Field errors collected while parsing, keyed by path."""

    def __init__(self):
        self.fields: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        self.fields.setdefault(path, message)

    def raise_if_any(self) -> None:
        if self.fields:
            raise Invalid(N_("Some fields are not valid."), dict(list(self.fields.items())[:50]))


_MISSING = object()


def mapping(raw: Any, path: str, allowed: tuple[str, ...], errors: Errors) -> dict | None:
    if not isinstance(raw, dict):
        errors.add(path or "body", N_("Expected an object."))
        return None
    for key in raw:
        if key not in allowed:
            errors.add(f"{path}.{key}" if path else key, N_("Unknown field."))
    return raw


def text(raw: Any, path: str, errors: Errors, *, cap: int | None = None, limit: int | None = None,
         required: bool = False, multiline: bool = False) -> str | None:
    """A string: ``cap`` truncates (subjects, names), ``limit`` rejects (identifiers)."""
    if raw is None or raw is _MISSING:
        if required:
            errors.add(path, N_("This field is required."))
        return None
    if not isinstance(raw, str):
        errors.add(path, N_("Must be text."))
        return None
    value = _NUL.sub("", raw) if multiline else _CONTROL.sub("", raw).strip()
    if not multiline and LINE_BREAK.search(value):
        errors.add(path, SINGLE_LINE)
        return None
    if limit is not None and len(value) > limit:
        errors.add(path, N_("At most %(count)s characters.") % {"count": limit})
        return None
    if cap is not None:
        value = value[:cap]
    if required and not value:
        errors.add(path, N_("This field is required."))
    return value


def choice(raw: Any, path: str, choices: tuple[str, ...], errors: Errors) -> str | None:
    if raw not in choices:
        errors.add(path, N_("Must be one of: %(choices)s.") % {"choices": ', '.join(choices)})
        return None
    return raw


def boolean(raw: Any, path: str, errors: Errors, default: bool = False) -> bool:
    if raw is _MISSING:
        return default
    if not isinstance(raw, bool):
        errors.add(path, N_("Must be true or false."))
        return default
    return raw


def when(raw: Any, path: str, errors: Errors) -> datetime | None:
    if raw is None or raw is _MISSING:
        return None
    if not isinstance(raw, str):
        errors.add(path, N_("Must be a date and time (ISO 8601)."))
        return None
    try:
        value = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        errors.add(path, N_("Must be a date and time (ISO 8601)."))
        return None
    if value.tzinfo is None:
        errors.add(path, N_("Include a time zone (for example 2025-01-31T09:00:00Z)."))
        return None
    return value


def person(raw: Any, path: str, errors: Errors) -> Person | None:
    if raw is None or raw is _MISSING:
        return None
    obj = mapping(raw, path, ("name", "address"), errors)
    if obj is None:
        return None
    name = text(obj.get("name", _MISSING), f"{path}.name", errors, cap=NAME_MAX) or ""
    # Addresses are kept as given (Exchange may give X.500 forms): they are data, resolution
    # decides what they match.
    address = text(obj.get("address", _MISSING), f"{path}.address", errors, limit=ADDRESS_MAX) or ""
    if not name and not address and "address" in obj:
        errors.add(f"{path}.address", N_("An address or a name is needed."))
    return Person(name, address)


def people(raw: Any, path: str, errors: Errors) -> tuple[Person, ...]:
    if raw is None or raw is _MISSING:
        return ()
    if not isinstance(raw, list):
        errors.add(path, N_("Expected a list."))
        return ()
    if len(raw) > RECIPIENTS_MAX:
        errors.add(path, N_("At most %(count)s people.") % {"count": RECIPIENTS_MAX})
        return ()
    out = [person(x, f"{path}[{i}]", errors) for i, x in enumerate(raw)]
    return tuple(x for x in out if x is not None)


def parse_headers(raw: str | None) -> Headers | None:
    """The few internet headers tracking uses, from the pane's ``getAllInternetHeadersAsync``."""
    if not raw:
        return None
    msg = HeaderParser().parsestr(raw[:HEADERS_MAX])

    def one(name: str) -> str | None:
        value = msg.get(name)
        return _CONTROL.sub("", str(value)).strip()[:MESSAGE_ID_MAX] or None if value else None

    date = None
    if msg.get("Date"):
        try:
            date = parsedate_to_datetime(str(msg["Date"]))
            date = date if date.tzinfo else None
        except (TypeError, ValueError, IndexError):
            date = None
    refs = tuple(re.findall(r"<[^<>\s]+>", str(msg.get("References") or "")))[:100]
    return Headers(message_id=one("Message-ID"), in_reply_to=one("In-Reply-To"),
                   references=refs, thread_index=one("Thread-Index"), date=date)


def attachment(raw: Any, path: str, errors: Errors, max_bytes: int) -> AttachmentIn | None:
    obj = mapping(raw, path, ATTACHMENT_KEYS, errors)
    if obj is None:
        return None
    name = text(obj.get("name", _MISSING), f"{path}.name", errors, cap=255) or "attachment"
    ctype = text(obj.get("content_type", _MISSING), f"{path}.content_type", errors, cap=200)
    size = obj.get("size", 0)
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        errors.add(f"{path}.size", N_("Must be a whole number of bytes."))
        size = 0
    content = None
    encoded = obj.get("content_base64")
    if encoded is not None:
        if not isinstance(encoded, str):
            errors.add(f"{path}.content_base64", N_("Must be base64 text."))
        elif len(encoded) * 3 // 4 - 2 <= max_bytes and size <= max_bytes:
            try:
                content = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                errors.add(f"{path}.content_base64", N_("Not valid base64."))
            if content is not None and len(content) > max_bytes:
                content = None  # over the limit: metadata only
        # else: over the organization's limit, kept as metadata without decoding it
    cid = text(obj.get("content_id", _MISSING), f"{path}.content_id", errors, cap=300)
    inline = boolean(obj.get("is_inline", _MISSING), f"{path}.is_inline", errors)
    return AttachmentIn(name=name, content_type=ctype or "application/octet-stream",
                        size=len(content) if content is not None else size, content=content,
                        content_id=cid or None, is_inline=inline)


def item(raw: Any, errors: Errors, *, path: str = "item", with_content: bool = False,
         max_attachment_bytes: int = 0) -> Item | None:
    """The item description; with ``with_content`` also its body, headers and attachments."""
    allowed = ITEM_KEYS + (CONTENT_KEYS if with_content else ())
    obj = mapping(raw, path, allowed, errors)
    if obj is None:
        return None
    g: Callable[[str], Any] = lambda k: obj.get(k, _MISSING)  # noqa: E731
    kind = choice(obj.get("type"), f"{path}.type", ("message", "appointment"), errors)
    mode = choice(obj.get("mode"), f"{path}.mode", ("read", "compose"), errors)
    values: dict[str, Any] = dict(
        type=kind or "message", mode=mode or "read",
        internet_message_id=text(g("internet_message_id"), f"{path}.internet_message_id", errors,
                                 limit=MESSAGE_ID_MAX) or None,
        conversation_id=text(g("conversation_id"), f"{path}.conversation_id", errors, limit=ID_MAX) or None,
        item_id=text(g("item_id"), f"{path}.item_id", errors, limit=ID_MAX) or None,
        ical_uid=text(g("ical_uid"), f"{path}.ical_uid", errors, limit=UID_MAX) or None,
        subject=text(g("subject"), f"{path}.subject", errors, cap=SUBJECT_MAX) or "",
        from_=person(g("from"), f"{path}.from", errors),
        to=people(g("to"), f"{path}.to", errors),
        cc=people(g("cc"), f"{path}.cc", errors),
        organizer=person(g("organizer"), f"{path}.organizer", errors),
        required_attendees=people(g("required_attendees"), f"{path}.required_attendees", errors),
        optional_attendees=people(g("optional_attendees"), f"{path}.optional_attendees", errors),
        start=when(g("start"), f"{path}.start", errors),
        end=when(g("end"), f"{path}.end", errors),
        location=text(g("location"), f"{path}.location", errors, cap=LOCATION_MAX) or None,
        user_address=text(g("user_address"), f"{path}.user_address", errors, limit=ADDRESS_MAX) or None,
        mailbox_owner=text(g("mailbox_owner"), f"{path}.mailbox_owner", errors, limit=ADDRESS_MAX) or None,
    )
    if with_content:
        html = text(g("html_body"), f"{path}.html_body", errors, multiline=True)
        plain = text(g("text_body"), f"{path}.text_body", errors, multiline=True)
        raw_headers = text(g("internet_headers"), f"{path}.internet_headers", errors, multiline=True)
        atts: list[AttachmentIn] = []
        raw_atts = g("attachments")
        if raw_atts not in (None, _MISSING):
            if not isinstance(raw_atts, list):
                errors.add(f"{path}.attachments", N_("Expected a list."))
            elif len(raw_atts) > ATTACHMENTS_MAX:
                errors.add(f"{path}.attachments", N_("At most %(count)s attachments.") % {"count": ATTACHMENTS_MAX})
            else:
                for i, a in enumerate(raw_atts):
                    parsed = attachment(a, f"{path}.attachments[{i}]", errors, max_attachment_bytes)
                    if parsed is not None:
                        atts.append(parsed)
        values.update(html_body=html or None, text_body=plain or None,
                      headers=parse_headers(raw_headers), attachments=tuple(atts),
                      has_content=html is not None or plain is not None)
    return Item(**values)


def regarding(raw: Any, path: str, errors: Errors) -> tuple[str, int] | None:
    """``{"type": ..., "id": ...}`` or null."""
    if raw is None or raw is _MISSING:
        return None
    obj = mapping(raw, path, ("type", "id"), errors)
    if obj is None:
        return None
    kind = choice(obj.get("type"), f"{path}.type", REGARDING_TYPES, errors)
    ident = positive_int(obj.get("id"), f"{path}.id", errors)
    return (kind, ident) if kind and ident else None


def positive_int(raw: Any, path: str, errors: Errors) -> int | None:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 < raw < 2**31:
        errors.add(path, N_("Must be a positive whole number."))
        return None
    return raw


def body(raw: Any, allowed: tuple[str, ...], errors: Errors) -> dict:
    """The top-level object of a request, unknown keys reported."""
    return mapping(raw, "", allowed, errors) or {}


MISSING = _MISSING
