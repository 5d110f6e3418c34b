"""Correlation keys: how a new email finds the tracked email it answers (pure, no lookups).

Dynamics users know the order: In-Reply-To / References, then the tracking token in the
subject ("CRM:0001234"), then the conversation index (Outlook's Thread-Index header), then
optional smart matching on the normalized subject and the participants. This module turns
a ``MailMessage`` into that ordered list of ``(method, key)`` pairs; the engine looks each
key up in the database and stops at the first hit.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable

from server.sync.mail.message import MailMessage

__all__ = [
    "DEFAULT_TOKEN_PREFIX",
    "ThreadIndex",
    "add_token",
    "conversation_id",
    "correlation_keys",
    "decode_thread_index",
    "find_token",
    "make_token",
    "normalize_subject",
    "smart_match_key",
    "strip_token",
]

DEFAULT_TOKEN_PREFIX = "CRM:"
DEFAULT_TOKEN_DIGITS = 7

IN_REPLY_TO = "in_reply_to"
REFERENCES = "references"
TRACKING_TOKEN = "tracking_token"
CONVERSATION_INDEX = "conversation_index"
SMART_MATCH = "smart_match"

# --------------------------------------------------------------------------- tracking token


def make_token(number: int, prefix: str = DEFAULT_TOKEN_PREFIX,
               digits: int = DEFAULT_TOKEN_DIGITS) -> str:
    """``make_token(1234)`` -> ``'CRM:0001234'``."""
    if number < 0:
        raise ValueError("a tracking token number cannot be negative")
    return f"{prefix}{number:0{digits}d}"


def _token_pattern(prefix: str) -> re.Pattern[str]:
    # Not preceded by a word character, so "XCRM:1" is no token; digits taken greedily.
    return re.compile(rf"(?<!\w){re.escape(prefix)}(\d+)(?!\d)", re.IGNORECASE)


def find_token(subject: str | None, prefix: str = DEFAULT_TOKEN_PREFIX) -> str | None:
    """The tracking token in a subject, canonical (``prefix`` + digits), or None."""
    if not subject:
        return None
    match = _token_pattern(prefix).search(subject)
    return f"{prefix}{match.group(1)}" if match else None


def strip_token(subject: str, prefix: str = DEFAULT_TOKEN_PREFIX) -> str:
    """The subject without tracking tokens (with their brackets, if any)."""
    pattern = _token_pattern(prefix).pattern
    text = re.sub(rf"[\[(]\s*{pattern}\s*[\])]", " ", subject, flags=re.IGNORECASE)
    text = re.sub(pattern, " ", text, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", text).strip()


def add_token(subject: str, token: str, prefix: str = DEFAULT_TOKEN_PREFIX) -> str:
    """Append the token to the subject, as Dynamics does; replaces a different old token."""
    current = find_token(subject, prefix)
    if current == token:
        return subject
    base = strip_token(subject, prefix) if current else subject.strip()
    return f"{base} {token}" if base else token


# --------------------------------------------------------------------------- Thread-Index

THREAD_INDEX_HEADER_BYTES = 22
THREAD_INDEX_CHILD_BYTES = 5
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class ThreadIndex:
    """Outlook's conversation index: a 22-byte header plus one 5-byte block per reply."""

    conversation_guid: bytes
    created: datetime | None
    child_blocks: int

    @property
    def conversation_id(self) -> str:
        """The conversation GUID bytes as lowercase hex: the same in every reply."""
        return self.conversation_guid.hex()


def decode_thread_index(value: str | None) -> ThreadIndex | None:
    """Decode a Thread-Index header (base64); None if absent or malformed."""
    if not value:
        return None
    compact = re.sub(r"\s+", "", value)
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    extra = len(data) - THREAD_INDEX_HEADER_BYTES
    if extra < 0 or extra % THREAD_INDEX_CHILD_BYTES:
        return None
    return ThreadIndex(conversation_guid=data[6:22], created=_filetime(data[:6]),
                       child_blocks=extra // THREAD_INDEX_CHILD_BYTES)


def _filetime(six_bytes: bytes) -> datetime | None:
    """The header's first 6 bytes are the top of a FILETIME (100 ns ticks since 1601)."""
    ticks = int.from_bytes(six_bytes, "big") << 16
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=ticks // 10)
    except OverflowError:
        return None


def conversation_id(thread_index: str | None) -> str | None:
    """The conversation GUID (hex) of a Thread-Index header, or None."""
    decoded = decode_thread_index(thread_index)
    return decoded.conversation_id if decoded else None


# --------------------------------------------------------------------------- subjects

# Reply and forward prefixes in the languages Outlook and other clients write them:
# RE/FW/FWD (en), AW/WG (de), SV (sv, da, no), TR (fr), RV (es), VS (fi), ANTW (nl),
# optionally counted ("RE[2]:", "Re(3):") and with a full-width colon.
_PREFIX = re.compile(r"^\s*(?:re|fwd?|aw|wg|sv|tr|rv|vs|antw)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*",
                     re.IGNORECASE)


def normalize_subject(subject: str | None, prefix: str = DEFAULT_TOKEN_PREFIX) -> str:
    """Subject for matching: reply/forward prefixes (repeated) and tokens removed, casefolded."""
    text = strip_token(subject or "", prefix)
    while True:
        stripped = _PREFIX.sub("", text, count=1)
        if stripped == text:
            break
        text = stripped
    return re.sub(r"\s+", " ", text).strip().casefold()


def smart_match_key(subject: str | None, addresses: Iterable[str],
                    prefix: str = DEFAULT_TOKEN_PREFIX) -> str | None:
    """Key for smart matching: normalized subject + sorted participant addresses.

    The engine computes the same key for stored activities, so equal keys mean "same
    conversation". No key for an empty subject: that would match unrelated mail.
    """
    normalized = normalize_subject(subject, prefix)
    if not normalized:
        return None
    people = sorted({address.strip().lower() for address in addresses if address})
    return f"{normalized}|{','.join(people)}"


# --------------------------------------------------------------------------- keys


def correlation_keys(msg: MailMessage, *, prefix: str = DEFAULT_TOKEN_PREFIX,
                     smart_matching: bool = False) -> list[tuple[str, str]]:
    """Ordered ``(method, key)`` pairs to look up: first hit wins."""
    keys: list[tuple[str, str]] = []
    own = msg.message_id
    if msg.in_reply_to and msg.in_reply_to != own:
        keys.append((IN_REPLY_TO, msg.in_reply_to))
    for reference in reversed(msg.references):  # the nearest ancestor is listed last
        if reference != own and (REFERENCES, reference) not in keys and reference != msg.in_reply_to:
            keys.append((REFERENCES, reference))
    token = find_token(msg.subject, prefix)
    if token:
        keys.append((TRACKING_TOKEN, token))
    index = decode_thread_index(msg.thread_index)
    if index and index.child_blocks:  # a conversation starter has no parent to find
        keys.append((CONVERSATION_INDEX, index.conversation_id))
    if smart_matching:
        key = smart_match_key(msg.subject, (a.address for a in msg.participants), prefix)
        if key:
            keys.append((SMART_MATCH, key))
    return keys
