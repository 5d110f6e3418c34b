"""Outlook ``.msg`` files (saved from Outlook desktop and dragged around): read with the
``extract-msg`` package and rewritten as RFC 5322 bytes, so ``message.parse`` reads them as
it reads any mail. Pure: bytes in, bytes out (``extract-msg`` reads from memory).

A .msg holds the original transport headers when it came in by mail; they are kept (its
Message-ID above all, so a message tracked by sync and dropped again is one email). Its
recipients, bodies and attachments come from the .msg's own properties.
"""
from __future__ import annotations

import mimetypes
from email.message import EmailMessage
from email.policy import SMTP

import extract_msg

__all__ = ["MsgFileError", "OLE_SIGNATURE", "to_rfc822"]

OLE_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_KEPT = ("message-id", "date", "in-reply-to", "references", "thread-index", "thread-topic")


class MsgFileError(ValueError):
    """The bytes are not an Outlook message this reader can open."""


def _header(message, name: str) -> str | None:
    headers = message.header
    value = headers.get(name) if headers is not None else None
    return str(value).strip() if value else None


def to_rfc822(data: bytes) -> bytes:
    """The .msg as an RFC 5322 message (its attachments as MIME parts)."""
    if not data.startswith(OLE_SIGNATURE):
        raise MsgFileError("The file is not an Outlook .msg (no OLE signature).")
    try:
        message = extract_msg.openMsg(data, delayAttachments=False)
    except Exception as exc:  # extract-msg raises its own errors and OLE ones
        raise MsgFileError(f"The .msg file could not be read ({type(exc).__name__}).") from exc
    try:
        out = EmailMessage()
        for name in _KEPT:
            value = _header(message, name)
            if value:
                out[name] = value
        out["From"] = message.sender or ""
        for name, value in (("To", message.to), ("Cc", message.cc), ("Bcc", message.bcc)):
            if value:
                out[name] = value.replace(";", ",")
        out["Subject"] = message.subject or ""
        if "date" not in out and message.date:
            out["Date"] = message.date
        out.set_content(message.body or "")
        html = message.htmlBody
        if html:
            out.add_alternative(html.decode("utf-8", "replace") if isinstance(html, bytes) else html,
                                subtype="html")
        for attachment in message.attachments:
            content = attachment.data
            if not isinstance(content, bytes):
                continue  # an embedded message or an OLE object: not a file
            name = attachment.getFilename() or "attachment.bin"
            ctype = (mimetypes.guess_type(name)[0] or "application/octet-stream").split("/")
            out.add_attachment(content, maintype=ctype[0], subtype=ctype[1], filename=name)
        return out.as_bytes(policy=SMTP)
    except Exception as exc:
        raise MsgFileError(f"The .msg file could not be read ({type(exc).__name__}).") from exc
    finally:
        message.close()
