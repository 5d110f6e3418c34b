"""Outlook's TNEF (``application/ms-tnef``, the ``winmail.dat`` attachment): the files and
the body locked inside it, read with the ``tnefparse`` package. Pure: bytes in, values out.

Outlook and Exchange send rich-text mail as TNEF; a mail client without a TNEF reader sees
one opaque ``winmail.dat``. ``read`` returns its attachments (an embedded message or
appointment as the TNEF it is, named ``.dat``), its HTML or plain body and its RTF body,
the RTF as a file (``body.rtf``) since nothing here renders RTF. A TNEF stream that cannot
be read is noted in ``defects`` and left as it is.
"""
from __future__ import annotations

import mimetypes
from dataclasses import dataclass, field

from tnefparse.tnef import TNEF

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
    rtf = tnef.rtfbody if tnef.has_body() else None
    if rtf:
        files.append(DecodedFile("body.rtf", "application/rtf", bytes(rtf)))
    return Tnef(files, _text(tnef.htmlbody, tnef.codepage), _text(tnef.body, tnef.codepage))
