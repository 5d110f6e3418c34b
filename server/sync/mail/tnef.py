"""Outlook's TNEF (``application/ms-tnef``, the ``winmail.dat`` attachment): the files and
the body locked inside it, read with the ``tnefparse`` package. Pure: bytes in, values out.

Outlook and Exchange send rich-text mail as TNEF; a mail client without a TNEF reader sees
one opaque ``winmail.dat``. ``read`` returns its attachments (an embedded message or
appointment as the TNEF it is, named ``.dat``), its HTML or plain body and its RTF body as a
file (``body.rtf``). When the RTF is all there is, the HTML or text Outlook encapsulated in
it (``\\fromhtml1``, ``\\fromtext``) is taken out with ``RTFDE``; other RTF (what Outlook
writes for rich text typed in Outlook) is read as plain text with ``striprtf``. A stream that
is a meeting, or an embedded appointment, also gives its meeting as a ``.ics`` file
(``tnef_meeting``). A TNEF stream that cannot be read is noted in ``defects`` and left as it
is.
"""
from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field

from RTFDE.deencapsulate import DeEncapsulator
from striprtf.striprtf import rtf_to_text
from tnefparse.tnef import TNEF

from server.sync.mail.charsets import decode_bytes
from server.sync.mail.tnef_meeting import calendar_of

__all__ = ["DecodedFile", "Tnef", "read"]

MAX_TNEF_FILES = 200


@dataclass(frozen=True)
class DecodedFile:
    """A file found inside a container (TNEF, an Outlook .msg)."""

    filename: str
    content_type: str
    content: bytes = field(repr=False)


@dataclass(frozen=True)
class Tnef:
    """What a TNEF stream holds."""

    attachments: list[DecodedFile]
    html: str
    text: str


def _text(value: object, codepage: str | None) -> str:
    if isinstance(value, str):
        return value.rstrip("\x00")
    if isinstance(value, bytes):
        try:
            return value.decode(codepage or "cp1252").rstrip("\x00")
        except (LookupError, UnicodeDecodeError):
            return value.decode("cp1252", "replace").rstrip("\x00")
    return ""


def _content_type(filename: str) -> str:
    return mimetypes.guess_type(filename, strict=False)[0] or "application/octet-stream"


def read(data: bytes, defects: list[str]) -> Tnef | None:
    """The files and bodies of a TNEF stream; None (noted in ``defects``) if unreadable."""
    try:
        tnef = TNEF(data, do_checksum=False)
    except Exception as exc:  # tnefparse raises ValueError, IndexError, struct errors...
        defects.append(f"a winmail.dat (TNEF) attachment could not be read ({type(exc).__name__}); "
                       "it was kept as it is")
        return None
    files: list[DecodedFile] = []
    for number, item in enumerate(tnef.attachments[:MAX_TNEF_FILES], start=1):
        try:
            name = _text(item.long_filename(), tnef.codepage) or f"attachment-{number}.dat"
        except Exception:  # a name in an unknown code page
            name = f"attachment-{number}.dat"
        content = bytes(item.data or b"")
        files.append(DecodedFile(name, _content_type(name), content))
        embedded = getattr(item, "embed", None)  # an embedded message or appointment
        meeting = _meeting(embedded, defects) if embedded is not None else None
        if meeting is not None:
            files.append(DecodedFile(f"{name.rsplit('.', 1)[0]}.ics", "text/calendar", meeting))
    meeting = _meeting(tnef, defects)
    if meeting is not None:
        files.append(DecodedFile("meeting.ics", "text/calendar", meeting))
    html, text = _text(tnef.htmlbody, tnef.codepage), _text(tnef.body, tnef.codepage)
    rtf = tnef.rtfbody if tnef.has_body() else None
    if rtf:
        files.append(DecodedFile("body.rtf", "application/rtf", bytes(rtf)))
        if not html and not text:
            html, text = _encapsulated(bytes(rtf), defects)
    return Tnef(files, html, text)


def _meeting(tnef: TNEF, defects: list[str]) -> bytes | None:
    try:
        return calendar_of(tnef)
    except Exception as exc:  # a property of a shape the MS-OXTNEF reading did not expect
        defects.append(f"the meeting in a winmail.dat could not be read ({type(exc).__name__})")
        return None


def _encapsulated(rtf: bytes, defects: list[str]) -> tuple[str, str]:
    """(html, text) that Outlook encapsulated in an RTF body; ("", "") for other RTF."""
    try:
        rtf_body = DeEncapsulator(rtf.rstrip(b"\x00"))
        rtf_body.deencapsulate()
    except Exception:  # plain RTF (not encapsulated) or broken: read as text
        return "", _plain(rtf, defects)
    if rtf_body.content_type == "html":
        return decode_bytes(bytes(rtf_body.html), None, defects, "winmail.dat body"), ""
    return "", decode_bytes(bytes(rtf_body.text or b""), None, defects, "winmail.dat body")


def _plain(rtf: bytes, defects: list[str]) -> str:
    """The text of RTF that encapsulates nothing; the body.rtf file stays beside it."""
    try:
        source = rtf.rstrip(b"\x00").decode("latin-1")  # RTF is 7-bit; escapes carry the rest
        text = rtf_to_text(source, errors="replace").strip()
    except Exception:  # striprtf raises on some broken control words
        text = ""
    if not text:
        defects.append("the winmail.dat body is RTF that could not be read; it is kept as body.rtf")
    return text
