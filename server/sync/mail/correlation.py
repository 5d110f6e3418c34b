"""Correlation keys: how a new email finds the tracked email it answers (pure, no lookups).

Dynamics users know the order: In-Reply-To / References, then the tracking token in the
subject ("CRM:0001234"), then the conversation index (Outlook's Thread-Index header), then
optional smart matching on the normalized subject and the participants. This module turns
a ``MailMessage`` into that ordered list of ``(method, key)`` pairs; the engine looks each
key up in the database and stops at the first hit. The keys themselves (tokens,
conversation ids) are ``server.mailkeys``'s, the rules tracking stores them by.
"""
from __future__ import annotations

import re
from typing import Iterable

from server.mailkeys import (DEFAULT_TOKEN_PREFIX, decode_thread_index, find_token,
                             strip_reply_prefixes, strip_token)
from server.sync.mail.message import MailMessage

__all__ = [
    "correlation_keys",
    "normalize_subject",
    "smart_match_key",
]

IN_REPLY_TO = "in_reply_to"
REFERENCES = "references"
TRACKING_TOKEN = "tracking_token"
CONVERSATION_INDEX = "conversation_index"
SMART_MATCH = "smart_match"

# --------------------------------------------------------------------------- subjects

def normalize_subject(subject: str | None, prefix: str = DEFAULT_TOKEN_PREFIX) -> str:
    """Subject for matching: tokens and reply/forward prefixes (in every language
    ``mailkeys`` knows, nested and repeated) removed, casefolded."""
    text = strip_reply_prefixes(strip_token(subject or "", prefix))
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
