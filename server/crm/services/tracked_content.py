"""What is tracked: an email, its attachments or a meeting as the Outlook add-in or the sync
engine hands it to tracking (``server.crm.services.tracking``), and an email's identity (its
normalized Message-ID, else a hash of its content)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from server.mailkeys import normalize_message_id

__all__ = ["AppointmentContent", "AttachmentContent", "EmailContent", "Party"]


@dataclass(frozen=True)
class AttachmentContent:
    filename: str
    content_type: str
    content: bytes | None  # None: the client could not send it (metadata only)
    size: int
    content_id: str | None = None
    inline: bool = False
    sha256: str | None = None  # hex digest of content when the sync engine's parse pool
    # computed it on another core (never from a client); None: computed here


Party = tuple[str, str]  # (display name, address)


@dataclass(frozen=True)
class EmailContent:
    """An email as the pane or the sync engine hands it to tracking."""
    message_id: str | None
    subject: str
    from_: Party | None
    to: list[Party] = field(default_factory=list)
    cc: list[Party] = field(default_factory=list)
    bcc: list[Party] = field(default_factory=list)
    html_body: str | None = None  # unsanitized: tracking sanitizes it
    html_sanitized: str | None = None  # html_body through sanitize_html already, when the
    # sync engine's parse pool did it on another core (never from a client)
    text_body: str | None = None
    sent_on: datetime | None = None
    received_on: datetime | None = None
    in_reply_to: str | None = None
    references: list[str] = field(default_factory=list)
    conversation_index: str | None = None
    tracking_token: str | None = None
    attachments: list[AttachmentContent] = field(default_factory=list)
    content_hash: str | None = None  # identity when there is no Message-ID

    @property
    def identity(self) -> str:
        mid = normalize_message_id(self.message_id)
        if mid:
            return mid
        if self.content_hash:
            return f"sha256:{self.content_hash}"
        digest = hashlib.sha256("\x1f".join([
            self.subject, (self.from_ or ("", ""))[1], str(self.sent_on or ""),
            self.text_body or self.html_body or ""]).encode()).hexdigest()
        return f"sha256:{digest}"


@dataclass(frozen=True)
class AppointmentContent:
    uid: str  # iCalendar UID / Outlook global object id: the meeting's identity
    subject: str
    organizer: Party | None
    required: list[Party] = field(default_factory=list)
    optional: list[Party] = field(default_factory=list)
    start: datetime | None = None
    end: datetime | None = None
    location: str | None = None
    html_body: str | None = None
    text_body: str | None = None
    is_all_day: bool = False
