"""Attachment bytes as the pages and the REST API serve them: read from the row or from the
instance folder (``storage_path`` is relative to it; never a file outside it), and answered
so that a browser cannot run them from our origin: images of a few plain types show inline;
everything else is a download (``Content-Disposition: attachment``), keeping its type only
when that is an inert document type, else ``application/octet-stream``. With ``nosniff`` an
uploaded ``text/javascript``, CSS or HTML file is then no same-origin script, style or page.
"""
from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, current_app

from server.crm.activities import Attachment

# Shown by browsers as what they are, without running anything (no SVG: it is a document).
SAFE_INLINE_TYPES = frozenset({"image/png", "image/gif", "image/jpeg", "image/webp", "image/bmp"})
# Downloads that keep their type: documents no browser runs as script, style or page.
DOCUMENT_TYPES = frozenset({"text/plain", "text/csv", "text/calendar", "message/rfc822",
                            "application/pdf", "application/zip", "application/msword",
                            "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
                            "application/octet-stream"})
_OFFICE_TYPE = re.compile(r"^application/vnd\.(?:openxmlformats-officedocument|oasis\.opendocument)"
                          r"\.[a-z0-9.+-]+$")
ATTACHMENT_CSP = "default-src 'none'; sandbox"
_NOT_ASCII_NAME = re.compile(r"[^A-Za-z0-9._ -]")



def served_type(content_type: str | None) -> str:
    """The type we answer with: the attachment's own when it is an inline image or an
    inert document type, else ``application/octet-stream``."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind in SAFE_INLINE_TYPES or kind in DOCUMENT_TYPES or _OFFICE_TYPE.match(kind):
        return kind
    return "application/octet-stream"


def download_response(att: Attachment, data: bytes) -> Response:
    """The attachment as an HTTP response: a safe type inline, anything else a download;
    never sniffed, sandboxed if opened, never cached."""
    kind = served_type(att.content_type)
    response = current_app.response_class(data, mimetype=kind)
    disposition = "inline" if kind in SAFE_INLINE_TYPES else "attachment"
    response.headers["Content-Disposition"] = f"{disposition}; {_filename(att)}"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = ATTACHMENT_CSP
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _filename(att: Attachment) -> str:
    """An ASCII fallback name and the UTF-8 name (RFC 6266), no control characters."""
    name = "".join(c for c in (att.filename or "") if c.isprintable()) or f"attachment-{att.id}"
    ascii_name = _NOT_ASCII_NAME.sub("_", name)[:150] or "attachment"
    return f"filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
