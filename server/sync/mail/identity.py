"""The identity of mail without a usable Message-ID: a SHA-256 content hash.

Two different messages must not share one: the hash covers the sender, the date, the
subject, the body, every recipient (with its role) and every attachment (name, type and a
hash of its bytes). ``legacy_content_hash`` is the hash mail tracked before recipients and
attachments counted is stored under (sender, date, subject and body only): the engine looks
it up so that such mail, synced again, is recognized and not tracked twice.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Content", "content_hash", "legacy_content_hash"]


@dataclass(frozen=True)
class Content:
    """What the hash reads from a parsed message."""

    raw: bytes
    sender: str
    date: datetime | None
    date_raw: str | None
    subject: str
    body: str
    recipients: tuple[tuple[str, str], ...]  # (role, address)
    attachments: tuple[tuple[str, str, bytes], ...]  # (filename, content type, content)


def _body(body: str) -> str:
    lines = body.replace("\r\n", "\n").replace("\r", "\n").strip().split("\n")
    return "\n".join(line.rstrip() for line in lines)


def _fields(content: Content) -> list[str]:
    when = content.date.isoformat() if content.date else (content.date_raw or "").strip()
    return [content.sender, when, content.subject, _body(content.body)]


def _digest(fields: Iterable[str]) -> str:
    return hashlib.sha256("\x1f".join(fields).encode("utf-8", "surrogatepass")).hexdigest()


def content_hash(content: Content) -> str:
    """The identity hash: the message's text, recipients and attachments."""
    recipients = sorted(f"{role}:{address}" for role, address in content.recipients)
    attachments = sorted(f"{name}\x1e{ctype}\x1e{hashlib.sha256(data).hexdigest()}"
                         for name, ctype, data in content.attachments)
    fields = _fields(content)
    if not any(fields) and not recipients and not attachments:
        return hashlib.sha256(content.raw).hexdigest()
    return _digest([*fields, "\x1d".join(recipients), "\x1d".join(attachments)])


def legacy_content_hash(content: Content) -> str:
    """The hash mail was tracked under before recipients and attachments counted."""
    fields = _fields(content)
    if not any(fields):
        return hashlib.sha256(content.raw).hexdigest()
    return _digest(fields)
