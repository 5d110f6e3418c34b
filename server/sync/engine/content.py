"""A parsed message as the CRM keeps it: its identity (the normalized Message-ID, else a
content hash; mail first stored under the older hash keeps that one), its text made safe for every database, and the ``EmailContent`` that
``crm.tracking`` takes (attachments over the mailbox's limit as metadata only).
"""
from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select

from server.crm.activities import Email
from server.crm.services.tracking import AttachmentContent, EmailContent
from server.db import db
from server.mailkeys import find_token, normalize_message_id
from server.sync.connectors.base import FetchedMessage
from server.sync.engine.context import MailboxRun
from server.sync.mail.decision import Direction, as_utc
from server.sync.mail.message import MailMessage
from server.sync.models import MessageDecision

__all__ = ["aware", "clean", "identity_of", "to_content"]

MAX_IDENTITY = 900  # longer Message-IDs (there are such) are identified by content hash

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean(text: str | None) -> str | None:
    """Text safe for every database: no NUL, no lone surrogates."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "")
    if text.isascii():  # (known without reading it) no surrogate: nothing to encode
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def identity_of(msg: MailMessage) -> str:
    """The email's identity as tracking stores it: the normalized Message-ID, or a content
    hash when there is none (or it is too long or holds control characters)."""
    mid = _usable_message_id(msg)
    if mid:
        return mid
    identity, legacy = f"sha256:{msg.content_hash}", f"sha256:{msg.legacy_content_hash}"
    # Mail seen before the hash covered recipients and attachments keeps its identity.
    for column, key in ((Email.message_id, Email.id), (MessageDecision.identity, MessageDecision.id)):
        if db.session.scalar(select(key).where(column == legacy).limit(1)) is not None:
            return legacy
    return identity


def _usable_message_id(msg: MailMessage) -> str | None:
    mid = normalize_message_id(msg.message_id)
    if not mid or len(mid) > MAX_IDENTITY or _CONTROL.search(mid) or clean(mid) != mid:
        return None
    return mid


def aware(moment: datetime | None) -> datetime | None:
    """A time with its zone (naive times are UTC), or None."""
    return None if moment is None else as_utc(moment)


def _party(address) -> tuple[str, str]:
    return clean(address.name) or "", address.address


def to_content(ctx: MailboxRun, msg: MailMessage, fetched: FetchedMessage,
               direction: Direction, safe_html: str | None = None,
               digests: tuple[str, ...] = ()) -> EmailContent:
    """A parsed message as tracking takes it; attachments over the limit as metadata only.
    ``safe_html``: the message's HTML as the parse pool sanitized it (used when the HTML
    needed no cleaning for the database, so it is what tracking would sanitize);
    ``digests``: the SHA-256 of each attachment, as the parse pool computed them."""
    sender = msg.from_ or msg.sender
    attachments = [AttachmentContent(
        filename=clean(a.filename) or "attachment", content_type=a.content_type,
        content=a.content if a.size <= ctx.attachment_limit else None, size=a.size,
        content_id=clean(a.content_id), inline=a.inline, sha256=digest)
        for a, digest in zip(msg.attachments, digests or [None] * len(msg.attachments))]
    incoming = direction is Direction.INCOMING
    message_id = _usable_message_id(msg)
    html = clean(msg.html_body) or None
    return EmailContent(
        message_id=message_id, subject=clean(msg.subject) or "",
        from_=_party(sender) if sender else None,
        to=[_party(a) for a in msg.to], cc=[_party(a) for a in msg.cc],
        bcc=[_party(a) for a in msg.bcc],
        html_body=html, html_sanitized=safe_html if html is msg.html_body else None,
        text_body=clean(msg.text_body) or None,
        sent_on=aware(msg.date),
        received_on=aware(fetched.arrived_on or msg.date) if incoming else None,
        in_reply_to=msg.in_reply_to, references=list(msg.references),
        conversation_index=msg.thread_index if msg.thread_index and len(msg.thread_index) <= 400
        else None,
        tracking_token=find_token(msg.subject, ctx.org.tracking_token_prefix),
        attachments=attachments,
        content_hash=None if message_id else identity_of(msg).removeprefix("sha256:"))
