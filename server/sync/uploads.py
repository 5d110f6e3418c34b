"""Mail files a user drops on a record (``.eml``, Outlook ``.msg``) or posts to the REST
API: read as sync reads mail (``message.parse``; a .msg through ``mail.msgfile``) and
tracked through ``crm.tracking`` with the uploader's own privileges, regarding the record.
The same message synced or dropped again is the same email: its identity is the one sync
gives it (``engine.content.identity_of``).
"""
from __future__ import annotations

from server.crm.services import tracking
from server.crm.activities import Email
from server.crm.services.tracking import AttachmentContent, EmailContent
from server.errors import Invalid
from server.security.authz import Principal
from server.sync.engine.content import identity_of
from server.sync.mail import correlation
from server.sync.mail.bodies import safe_filename
from server.sync.mail.message import MessageError, parse
from server.sync.mail.msgfile import OLE_SIGNATURE, MsgFileError, to_rfc822

__all__ = ["MAX_MAIL_FILE", "track_mail_file"]

MAX_MAIL_FILE = 25 * 1024 * 1024
MAIL_FILE_SUFFIXES = (".eml", ".msg")
MSG_TYPE = "application/vnd.ms-outlook"


def _party(address) -> tuple[str, str]:
    return address.name, address.address


def track_mail_file(p: Principal, data: bytes, filename: str,
                    regarding: tuple[str, int] | None) -> tuple[Email, bool]:
    """Track the email in ``data`` (an .eml or .msg file); returns ``(email, created)``."""
    if not filename.lower().endswith(MAIL_FILE_SUFFIXES):
        raise Invalid("Only .eml and .msg files can be tracked.", {"file": "Not an .eml or .msg file."})
    if not data:
        raise Invalid("The file is empty.", {"file": "Empty."})
    if len(data) > MAX_MAIL_FILE:
        raise Invalid("The file is too large.", {"file": f"At most {MAX_MAIL_FILE // 2**20} MB."})
    outlook = data.startswith(OLE_SIGNATURE)
    try:
        msg = parse(to_rfc822(data) if outlook else data)
    except (MessageError, MsgFileError) as exc:
        reason = exc.reason if isinstance(exc, MessageError) else str(exc)
        raise Invalid(f"The file is not an email: {reason}", {"file": reason}) from exc
    sender = msg.from_ or msg.sender
    identity = identity_of(msg)  # as sync stores it (an unusable Message-ID, an earlier hash)
    hashed = identity.startswith("sha256:")
    content = EmailContent(
        message_id=None if hashed else identity, subject=msg.subject, from_=_party(sender) if sender else None,
        to=[_party(a) for a in msg.to], cc=[_party(a) for a in msg.cc],
        bcc=[_party(a) for a in msg.bcc], html_body=msg.html_body or None,
        text_body=msg.text_body or None, sent_on=msg.date, received_on=msg.date,
        in_reply_to=msg.in_reply_to, references=list(msg.references),
        conversation_index=msg.thread_index, tracking_token=correlation.find_token(msg.subject),
        attachments=[AttachmentContent(a.filename, a.content_type, a.content, a.size,
                                       a.content_id, a.inline) for a in msg.attachments]
        # the .msg itself too, to open in Outlook: the rewrite leaves RTF and MAPI out
        + ([AttachmentContent(safe_filename(filename), MSG_TYPE, data, len(data))] if outlook else []),
        content_hash=identity.removeprefix("sha256:") if hashed else None)
    return tracking.track_email(p, content, regarding=regarding)
