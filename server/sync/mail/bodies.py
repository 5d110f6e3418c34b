"""The bodies and attachments of a message: walking its MIME tree, transfer decoding
(base64, quoted-printable, uuencode), text in its charset, and safe attachment filenames.

Text/plain and text/html parts are the body unless they are attachments (an
``attachment`` disposition, or a filename without a disposition); every other leaf is an
attachment, ``message/*`` parts included (kept as sent). Outlook's TNEF (``winmail.dat``)
is unpacked by ``server.sync.mail.tnef``: its files join the attachments beside the
original. Attachments carry their Content-ID as written; ``message.parse`` normalizes it.
"""
from __future__ import annotations

import binascii
import quopri
import re
import unicodedata
from dataclasses import dataclass, field

from server.sync.mail import tnef
from server.sync.mail.charsets import decode_bytes
from server.sync.mail.headers import (b64decode, clean_line, decode_words, main_value, param,
                                      part_header)
from server.sync.mail.mime import Part

__all__ = ["MAX_FILENAME_BYTES", "MAX_MIME_DEPTH", "REPORT_TYPES", "Attachment", "Bodies",
           "read_bodies", "safe_filename"]

MAX_MIME_DEPTH = 30

REPORT_TYPES = frozenset({
    "message/delivery-status", "message/global-delivery-status",
    "message/disposition-notification", "message/global-disposition-notification",
    "message/feedback-report",
})


@dataclass(frozen=True)
class Attachment:
    """A file carried by the message (inline images included, with ``inline=True``)."""

    filename: str
    content_type: str
    size: int
    content: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False


# --------------------------------------------------------------------------- filenames

_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "text/csv": ".csv",
    "image/png": ".png", "image/jpeg": ".jpg", "image/jpg": ".jpg", "image/gif": ".gif",
    "image/bmp": ".bmp", "image/webp": ".webp", "image/tiff": ".tif", "image/svg+xml": ".svg",
    "application/pdf": ".pdf", "application/zip": ".zip", "application/x-gzip": ".gz",
    "application/msword": ".doc", "application/ms-tnef": ".dat",
    "application/pkcs7-signature": ".p7s", "application/x-pkcs7-signature": ".p7s",
    "application/pgp-signature": ".asc", "message/rfc822": ".eml", "message/global": ".eml",
    "message/delivery-status": ".txt", "message/disposition-notification": ".txt",
    "text/rfc822-headers": ".txt",
}
_REPORT_NAMES = {
    "message/delivery-status": "delivery-status.txt",
    "message/global-delivery-status": "delivery-status.txt",
    "message/disposition-notification": "disposition-notification.txt",
    "text/rfc822-headers": "original-headers.txt",
}
_WINDOWS_RESERVED = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)),
                               *(f"lpt{i}" for i in range(1, 10))})
MAX_FILENAME_BYTES = 200


def safe_filename(name: str | None, fallback: str = "attachment") -> str:
    """A filename safe to store and offer for download: no paths, controls or reserved names."""
    text = unicodedata.normalize("NFC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    # Control and format characters go, including U+202E which can disguise "exe" as "txt".
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")
    text = re.sub(r'[<>:"|?*]', "_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    if not text:
        return fallback
    stem, dot, ext = text.rpartition(".")
    if not dot:
        stem, ext = text, ""
    if stem.lower() in _WINDOWS_RESERVED:
        text = "_" + text
    if len(text.encode("utf-8")) > MAX_FILENAME_BYTES:
        # Shorten the stem and keep the extension; an extension too long to keep is cut
        # with the rest (a loop dropping stem characters never ended on one).
        extension = f".{ext}" if ext else ""
        room = MAX_FILENAME_BYTES - len(extension.encode("utf-8"))
        text = (_clip_utf8(stem, room) + extension if room >= MAX_FILENAME_BYTES // 2
                else _clip_utf8(text, MAX_FILENAME_BYTES))
    return text


def _clip_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` that is at most ``limit`` bytes in UTF-8."""
    return text.encode("utf-8")[:limit].decode("utf-8", "ignore")


# --------------------------------------------------------------------------- bodies

_KNOWN_CTE = frozenset({"7bit", "8bit", "binary", "base64", "quoted-printable",
                        "x-uuencode", "uuencode", "x-uue", ""})


_CTE_ALIASES = {"7-bit": "7bit", "8bits": "8bit", "8-bit": "8bit", "base-64": "base64"}


def _cte(part: Part, hint: str | None, defects: list[str]) -> str:
    raw = part_header(part, "content-transfer-encoding", hint)
    cte = re.sub(r"[\s_]+", "-", (raw or "").split(";", 1)[0].strip().strip('"').lower())
    cte = _CTE_ALIASES.get(cte, cte)
    if cte not in _KNOWN_CTE:
        defects.append(f"unknown Content-Transfer-Encoding {raw.strip()!r}; the content was used as-is"
                       if raw else "unknown Content-Transfer-Encoding")
        return "8bit"
    return cte


def _uudecode(data: bytes) -> bytes:
    out = bytearray()
    started = False
    for line in data.splitlines():
        if not started:
            started = line.startswith(b"begin ")
            continue
        if line.strip() in (b"end", b"`") or not line.strip():
            if line.strip() == b"end":
                break
            continue
        try:
            out += binascii.a2b_uu(line)
        except binascii.Error:
            length = ((line[0] - 32) & 63) * 4 // 3 if line else 0
            try:
                out += binascii.a2b_uu(line[:length])
            except binascii.Error:
                continue
    return bytes(out)


def _payload_bytes(part: Part, hint: str | None, defects: list[str]) -> bytes:
    """The part's content as sent, with our own lenient transfer decoding."""
    raw = part.body
    cte = _cte(part, hint, defects)
    if cte == "base64":
        return b64decode(raw)
    if cte == "quoted-printable":
        return quopri.decodestring(raw)
    if cte in ("x-uuencode", "uuencode", "x-uue"):
        return _uudecode(raw)
    return raw


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _part_text(part: Part, hint: str | None, defects: list[str], ctype: str) -> str:
    data = _payload_bytes(part, hint, defects)
    charset = param(part_header(part, "content-type", hint), "charset", defects)
    text = decode_bytes(data, charset, defects, f"{ctype} body")
    if "\x00" in text:
        defects.append("NUL characters were removed from the body")
        text = text.replace("\x00", "")
    return _normalize_newlines(text)


@dataclass
class _BodyState:
    hint: str | None
    defects: list[str]
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    is_report: bool = False
    tnef_bodies: list[tnef.Tnef] = field(default_factory=list)  # used when there is no other


def _walk(part: Part, state: _BodyState, depth: int = 0) -> None:
    if depth > MAX_MIME_DEPTH:
        state.defects.append("MIME parts are nested too deeply; the deepest were skipped")
        return
    ctype = part.content_type
    if ctype == "multipart/report" or ctype in REPORT_TYPES:
        state.is_report = True
    if ctype.startswith("multipart/") and part.children is None:
        ctype = "text/plain"  # its boundary was not found: read it as one text
    if ctype.startswith("message/") or part.children is None:
        try:
            _leaf(part, ctype, state)
        except Exception as exc:  # one bad part must not lose the whole message
            state.defects.append(f"a {ctype} part could not be read ({type(exc).__name__}); "
                                 "it was skipped")
        return
    for sub in part.children:
        _walk(sub, state, depth + 1)


def _leaf(part: Part, ctype: str, state: _BodyState) -> None:
    hint, defects = state.hint, state.defects
    disposition_header = part_header(part, "content-disposition", hint)
    type_header = part_header(part, "content-type", hint)
    disposition = main_value(disposition_header) or None
    filename = param(disposition_header, "filename", defects) or param(type_header, "name", defects)
    # What mail clients show: a text part is body text unless it is an attachment, or a
    # file without a disposition; an inline text part is body text even when it is named.
    if ctype in ("text/plain", "text/html") and (
            disposition == "inline" or (disposition != "attachment" and not filename)):
        (state.texts if ctype == "text/plain" else state.htmls).append(
            _part_text(part, hint, defects, ctype))
        return
    attachment = _attachment(part, ctype, disposition, filename, state)
    state.attachments.append(attachment)
    if ctype == "application/ms-tnef" or attachment.filename.lower() == "winmail.dat":
        _unpack_tnef(attachment, state)


def _unpack_tnef(attachment: Attachment, state: _BodyState) -> None:
    """Outlook's rich-text wrapper: its files join the attachments (the original stays),
    its body is the body when the message has none of its own."""
    decoded = tnef.read(attachment.content, state.defects)
    if decoded is None:
        return
    for item in decoded.attachments:
        number = len(state.attachments) + 1
        state.attachments.append(Attachment(
            filename=safe_filename(item.filename, f"attachment-{number}.bin"),
            content_type=item.content_type, size=len(item.content), content=item.content))
    state.tnef_bodies.append(decoded)


def _attachment(part: Part, ctype: str, disposition: str | None, filename: str | None,
                state: _BodyState) -> Attachment:
    hint, defects = state.hint, state.defects
    # An attached message keeps its bytes as sent (decoded if it was wrongly encoded).
    content = _payload_bytes(part, hint, defects)
    content_id = (part_header(part, "content-id", hint) or "").strip() or None
    if not filename:
        location = part_header(part, "content-location", hint)
        filename = location.strip().rsplit("/", 1)[-1] if location and location.strip() else None
    if not filename and ctype in ("message/rfc822", "message/global") and part.children:
        subject = part_header(part.children[0], "subject", hint)
        subject = clean_line(decode_words(subject, defects, "attached message's subject")) \
            if subject else None
        filename = f"{subject}.eml" if subject else None
    number = len(state.attachments) + 1
    fallback = _REPORT_NAMES.get(ctype) or f"attachment-{number}{_EXTENSIONS.get(ctype, '.bin')}"
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return Attachment(filename=safe_filename(filename, fallback), content_type=ctype,
                      size=len(content), content=content, content_id=content_id, inline=inline)


@dataclass(frozen=True)
class Bodies:
    """What the walk found: the text and HTML bodies, the attachments, whether it is a report."""

    text: str
    html: str
    attachments: list[Attachment]
    is_report: bool


def read_bodies(root: Part, hint: str | None, defects: list[str]) -> Bodies:
    """The bodies and attachments of the MIME tree under ``root``."""
    state = _BodyState(hint=hint, defects=defects)
    _walk(root, state)
    if not state.texts and not state.htmls:  # a TNEF body only stands in for a missing one
        for decoded in state.tnef_bodies[:1]:
            state.texts += [_normalize_newlines(decoded.text)] if decoded.text else []
            state.htmls += [_normalize_newlines(decoded.html)] if decoded.html else []
    return Bodies("\n".join(state.texts), "\n".join(state.htmls), state.attachments,
                  state.is_report)
