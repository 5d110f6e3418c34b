"""Email keys: the one rule for each value an email is stored and looked up by (pure, no I/O).

A key stored under one rule and looked up under another misses, so tracking (``crm``), the
sync engine (``sync``) and the add-in (``addin``) all take their keys from here, and this
module imports nothing from the project:

* ``normalize_message_id``: a Message-ID (also References items, Content-ID) read as
  RFC 5322 writes it: the first ``<...>``, comments and folding whitespace removed, the
  domain lower-cased, the local part kept as it is (it is case-sensitive);
  ``in_reply_to_id`` the same for In-Reply-To, which may hold free text instead.
* ``normalize_address``: an email address for resolution and parties: display name,
  ``mailto:`` and angle brackets removed, lower-cased, the domain in IDNA ASCII form
  (IDNA 2008 with UTS 46, as mail clients and browsers write it); None for what cannot be
  an address.
* ``conversation_id``: the conversation GUID inside Outlook's Thread-Index header.
* tracking tokens (``make_token``, ``find_token``, ``strip_token``, ``add_token``): the
  ``CRM:0001234`` in a subject.
* ``strip_reply_prefixes``: a subject without the reply and forward prefixes mail clients
  write in their users' languages ("RE:", "AW:", "SV:", "Odp:", "PŘ:", "Vá:", "答复："...),
  however many and however nested, for comparing subjects and for answering without
  stacking prefixes.

Every normalization is idempotent: a normalized key normalizes to itself. The keys of one
message are asked for again and again (the sync engine's waves, correlation, tracking, the
parties), and the same addresses come back in many messages: the pure functions keep their
recent answers (``KEYS_KEPT``, ``ADDRESSES_KEPT``; every answer is immutable).
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache

import idna

__all__ = [
    "DEFAULT_TOKEN_PREFIX",
    "ThreadIndex",
    "add_token",
    "conversation_id",
    "decode_thread_index",
    "find_token",
    "in_reply_to_id",
    "make_token",
    "normalize_address",
    "strip_reply_prefixes",
    "normalize_message_id",
    "strip_token",
]

KEYS_KEPT = 4096  # recent answers each normalization keeps
ADDRESSES_KEPT = 20_000  # addresses: tens of microseconds each (IDNA, a scan for spaces)

# --------------------------------------------------------------------------- Message-ID

_MSG_ID = re.compile(r"<([^<>]*)>")
_COMMENT = re.compile(r"\([^()]*\)")
_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=KEYS_KEPT)
def normalize_message_id(value: str | None) -> str | None:
    """``' <ABC@Example.COM> (note)'`` -> ``'ABC@example.com'``; None when there is no id.

    The first ``<...>`` is the id (a header may carry a comment or a second id after it);
    comments (nested ones too) and whitespace inside are removed, as the obsolete syntax
    ``<1234 @ local(blah) .machine .example>`` needs."""
    if not value:
        return None
    match = _MSG_ID.search(value)
    text = match.group(1) if match else value
    while True:
        stripped = _COMMENT.sub("", text)
        if stripped == text:
            break
        text = stripped
    text = _WHITESPACE.sub("", text).strip("<>")
    if not text:
        return None
    local, at, domain = text.rpartition("@")
    return f"{local}@{domain.lower()}" if at and local else text


def in_reply_to_id(value: str | None) -> str | None:
    """The id an In-Reply-To header names: its first ``<...>``, or a bare ``local@domain``;
    None for the free text some old clients write there ("your message of Tuesday")."""
    if not value or not value.strip():
        return None
    if _MSG_ID.search(value):
        return normalize_message_id(value)
    token = value.strip()
    return normalize_message_id(token) if "@" in token and " " not in token else None


# --------------------------------------------------------------------------- addresses

_CONTROL = "\x00-\x1f\x7f"
_LOCAL_ATOM = re.compile(rf"^[^\s()<>\[\]:;@\\,\"{_CONTROL}]+$")
_LOCAL_QUOTED = re.compile(rf'^"[^"{_CONTROL}]*"$')
_DOMAIN = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
                     r"(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$")
_DOMAIN_LITERAL = re.compile(r"^\[[0-9a-z:.]+\]$")
_SOURCE_ROUTE = re.compile(r"^@[^:]*:")  # obsolete "@relay:user@host"


def _ascii_domain(domain: str) -> str | None:
    """IDNA 2008 (UTS 46, non-transitional: ``straße`` stays ``xn--strae-oqa``); the
    older IDNA 2003 for names it refuses (symbols, emoji) that mail still carries."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (ValueError, UnicodeError):
        pass
    try:
        return domain.encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        return None


def _bare(value: str) -> str:
    """The address inside ``'Ann <ann@x>'``, ``'<mailto:ann@x>'``, ``'@relay:ann@x'``."""
    text = value.strip()
    if text.endswith(">") and "<" in text:
        text = text[text.rindex("<") + 1:-1]
    while True:
        stripped = text.strip().strip("<>").strip()
        if stripped[:7].lower() == "mailto:":
            stripped = stripped[7:]
        if stripped == text:
            break
        text = stripped
    return _SOURCE_ROUTE.sub("", text)


@lru_cache(maxsize=ADDRESSES_KEPT)
def normalize_address(value: str | None) -> str | None:
    """``' John@EXAMPLE.com '``, ``'John <john@example.com>'``, ``'mailto:john@example.com'``
    -> ``'john@example.com'``; IDNA domains as punycode. None when the value is not a usable
    address (no local part or domain, whitespace or specials outside quotes, a bad domain).
    Dots are not policed: ``a..b@docomo.ne.jp`` is invalid by RFC 5322 and real all the same."""
    if not value:
        return None
    local, at, domain = _bare(value).rpartition("@")
    local, domain = local.strip().lower(), domain.strip().rstrip(".").lower()
    if not at or not local or not domain:
        return None
    if _LOCAL_QUOTED.match(local) and _LOCAL_ATOM.match(local[1:-1]):
        local = local[1:-1]  # '"ann"@x' is 'ann@x': quotes only where they are needed
    elif not (_LOCAL_ATOM.match(local) or _LOCAL_QUOTED.match(local)):
        return None
    ascii_domain = _ascii_domain(domain)
    if ascii_domain is None:
        return None
    ascii_domain = ascii_domain.lower()
    if not (_DOMAIN.match(ascii_domain) or _DOMAIN_LITERAL.match(ascii_domain)):
        return None
    return f"{local}@{ascii_domain}"


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


@lru_cache(maxsize=KEYS_KEPT)
def decode_thread_index(value: str | None) -> ThreadIndex | None:
    """Decode a Thread-Index header (base64; folding whitespace and missing padding are
    tolerated); None if absent or malformed (not base64, not 22 + 5n bytes)."""
    if not value:
        return None
    compact = _WHITESPACE.sub("", value)
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


# --------------------------------------------------------------------------- tracking token

DEFAULT_TOKEN_PREFIX = "CRM:"
DEFAULT_TOKEN_DIGITS = 7


def make_token(number: int, prefix: str = DEFAULT_TOKEN_PREFIX,
               digits: int = DEFAULT_TOKEN_DIGITS) -> str:
    """``make_token(1234)`` -> ``'CRM:0001234'``."""
    if number < 0:
        raise ValueError("a tracking token number cannot be negative")
    return f"{prefix}{number:0{digits}d}"


@lru_cache(maxsize=16)
def _token_pattern(prefix: str) -> re.Pattern[str]:
    # Not preceded by a word character, so "XCRM:1" is no token; digits taken greedily.
    return re.compile(rf"(?<!\w){re.escape(prefix)}(\d+)(?!\d)", re.IGNORECASE)


@lru_cache(maxsize=KEYS_KEPT)
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


# --------------------------------------------------------------------------- subject prefixes

# Reply and forward prefixes as mail clients write them in their users' languages (Outlook's
# localized forms first, then Thunderbird's and others'). One list for every comparison of
# subjects: correlation, smart matching, case updates and composing an answer.
REPLY_PREFIXES = {
    "en": ("re", "fw", "fwd"),
    "cs": ("odp", "př", "fw"),  # Odpověď, Předat
    "zh": ("回复", "答复", "转发", "回覆", "答覆", "轉寄", "轉發", "转寄"),
    "sv": ("sv", "vb"),  # Svar, Vidarebefordrat
    "sl": ("odg", "posr"),  # Odgovor, Posredovano
    "hu": ("vá", "vs", "tov", "továbbítás"),  # Válasz, Továbbítás
    "de": ("aw", "wg", "antw"),  # Antwort, Weitergeleitet
    "da": ("sv", "vs"),  # Svar, Videresendt
    "nb": ("sv", "vs", "vb"),
    "fi": ("vs", "vl"),  # Vastaus, Välitetty
    "is": ("sv", "fs"),  # Svar, Framsent
    "nl": ("antw", "doorst"),  # Antwoord, Doorsturen
    "fr": ("re", "tr"),  # Réponse, Transféré (not "Réf": English subjects start "Ref:" too)
    "it": ("r", "rif", "i"),  # Risposta/Riferimento, Inoltrato
    "es": ("re", "rv"),  # Respuesta, Reenviado
    "pt": ("res", "enc"),  # Resposta, Encaminhado
    "pl": ("odp", "pd"),  # Odpowiedź, Przekazanie dalej
    "tr": ("ynt", "ilt"),  # Yanıt, İlet (IGNORECASE matches the dotted capital İ)
    "lv": ("atb", "prd"),  # Atbilde, Pārsūtīts
    "el": ("απ", "σχετ", "πρθ"),
    "he": ("השב", "הועבר"),
    "ar": ("رد", "إعادة توجيه"),
    "ja": ("返信", "転送"),
    "ko": ("회신", "전달"),
}
# A prefix word, optionally counted ("RE[2]:", "Re(3):", "Re^2:"), then a colon (ASCII,
# full-width or small), with any spacing ("RE :", French style). Longest words first, so
# "fwd" is not read as "fw" + "d".
_PREFIX_WORDS = sorted({w.casefold() for words in REPLY_PREFIXES.values() for w in words},
                       key=len, reverse=True)
_REPLY_PREFIX = re.compile(
    r"^[\s\u3000]*(?:%s)[\s\u3000]*(?:\[\d+\]|\(\d+\)|\^\d+)?[\s\u3000]*[:\uff1a\ufe55][\s\u3000]*"
    % "|".join(re.escape(w) for w in _PREFIX_WORDS), re.IGNORECASE)
# Old clients forward as "[Fwd: subject]": the whole subject in brackets.
_BRACKETED = re.compile(r"^\s*\[\s*((?:%s)\s*[:\uff1a].*)\]\s*$" % "|".join(
    re.escape(w) for w in _PREFIX_WORDS), re.IGNORECASE | re.DOTALL)


def strip_reply_prefixes(subject: str | None) -> str:
    """The subject without its leading reply and forward prefixes, all of them (nested,
    repeated, counted, bracketed, in any listed language); the rest is kept as written."""
    text = (subject or "").strip()
    while True:
        bracketed = _BRACKETED.match(text)
        if bracketed:
            text = bracketed.group(1)
        stripped = _REPLY_PREFIX.sub("", text, count=1)
        if stripped == text:
            return text.strip()
        text = stripped
