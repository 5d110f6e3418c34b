"""Builders of Outlook's own file formats for tests: TNEF streams (``winmail.dat``) written
object by object as MS-OXTNEF lays them out, and ``.msg`` files written with extract-msg's
own OLE writer (MS-OXMSG storages and streams). Real files, made here, so no sample from
elsewhere is needed."""
from __future__ import annotations

import io
import struct

import compressed_rtf
from extract_msg.ole_writer import OleWriter
from tnefparse.tnef import TNEF

LEVEL_MESSAGE, LEVEL_ATTACHMENT = 1, 2
PT_BINARY, MAPI_BODY_HTML, MAPI_RTF_COMPRESSED = 0x0102, 0x1013, 0x1009


def _object(level: int, name: int, kind: int, data: bytes) -> bytes:
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", sum(data) & 0xFFFF)


def _mapi_binary(prop: int, data: bytes) -> bytes:
    padded = data + b"\0" * (-len(data) % 4)
    return struct.pack("<IHHII", 1, PT_BINARY, prop, 1, len(data)) + padded


def tnef(body: str | None = None, html: str | None = None,
         files: list[tuple[str, bytes]] = (), rtf: bytes | None = None) -> bytes:
    """A TNEF stream with a plain body, an HTML body and an RTF body (MAPI properties, the
    RTF compressed as Outlook does) and attached files."""
    out = struct.pack("<IH", TNEF.TNEF_SIGNATURE, 0x1234)
    out += _object(LEVEL_MESSAGE, TNEF.ATTTNEFVERSION, 0x0008, struct.pack("<I", 0x00010000))
    out += _object(LEVEL_MESSAGE, TNEF.ATTOEMCODEPAGE, 0x0006, struct.pack("<II", 1252, 0))
    if body is not None:
        out += _object(LEVEL_MESSAGE, TNEF.ATTBODY, 0x0002, body.encode("cp1252") + b"\0")
    if html is not None:
        out += _object(LEVEL_MESSAGE, TNEF.ATTMAPIPROPS, 0x0006, _mapi_binary(MAPI_BODY_HTML, html.encode()))
    if rtf is not None:
        out += _object(LEVEL_MESSAGE, TNEF.ATTMAPIPROPS, 0x0006,
                       _mapi_binary(MAPI_RTF_COMPRESSED, compressed_rtf.compress(rtf, compressed=True)))
    for name, content in files:
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHRENDDATA, 0x0006, b"\x01\x00" + b"\xff" * 12)
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHTITLE, 0x0001, name.encode("cp1252") + b"\0")
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHDATA, 0x0006, content)
        # Outlook ends an attachment with its dates (tnefparse reads no object under 13 bytes last)
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHMODIFYDATE, 0x0003,
                       struct.pack("<7H", 2024, 3, 5, 10, 0, 0, 2))
    return out


def _utf16(text: str) -> bytes:
    return text.encode("utf-16-le")


def _properties(entries: list[tuple[int, int]], counts: tuple[int, int] | None = None) -> bytes:
    head = b"\0" * 8
    if counts is not None:  # the message's own stream: next ids and counts
        head += struct.pack("<IIII", *counts, *counts) + b"\0" * 8
    return head + b"".join(struct.pack("<IIQ", tag, 6, value) for tag, value in entries)


def msg(subject: str, body: str, headers: str | None, sender: tuple[str, str] | None = None,
        recipients: list[tuple[int, str, str]] = (), files: list[tuple[str, bytes]] = ()) -> bytes:
    """An Outlook message: ``recipients`` as (1 To / 2 Cc / 3 Bcc, name, address); ``headers``
    the transport headers Outlook keeps for mail it received (None: none)."""
    writer = OleWriter()
    if sender is not None:
        writer.addEntry("__substg1.0_0C1A001F", _utf16(sender[0]))
        writer.addEntry("__substg1.0_0C1F001F", _utf16(sender[1]))
        writer.addEntry("__substg1.0_5D01001F", _utf16(sender[1]))
    writer.addEntry("__substg1.0_001A001F", _utf16("IPM.Note"))
    writer.addEntry("__substg1.0_0037001F", _utf16(subject))
    writer.addEntry("__substg1.0_1000001F", _utf16(body))
    if headers is not None:
        writer.addEntry("__substg1.0_007D001F", _utf16(headers))
    writer.addEntry("__nameid_version1.0", storage=True)
    for stream in ("00020102", "00030102", "00040102"):
        writer.addEntry(f"__nameid_version1.0/__substg1.0_{stream}", b"")
    writer.addEntry("__properties_version1.0", _properties([], (len(recipients), len(files))))
    for number, (kind, name, address) in enumerate(recipients):
        base = f"__recip_version1.0_#{number:08X}"
        writer.addEntry(base, storage=True)
        writer.addEntry(f"{base}/__substg1.0_3001001F", _utf16(name))
        writer.addEntry(f"{base}/__substg1.0_3003001F", _utf16(address))
        writer.addEntry(f"{base}/__substg1.0_39FE001F", _utf16(address))
        writer.addEntry(f"{base}/__properties_version1.0", _properties([(0x0C150003, kind)]))
    for number, (name, content) in enumerate(files):
        base = f"__attach_version1.0_#{number:08X}"
        writer.addEntry(base, storage=True)
        writer.addEntry(f"{base}/__substg1.0_3707001F", _utf16(name))
        writer.addEntry(f"{base}/__substg1.0_3001001F", _utf16(name))
        writer.addEntry(f"{base}/__substg1.0_37010102", content)
        writer.addEntry(f"{base}/__properties_version1.0", _properties([(0x37050003, 1)]))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
