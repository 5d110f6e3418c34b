"""Builders of Outlook's own file formats for tests: TNEF streams (``winmail.dat``) written
object by object as MS-OXTNEF lays them out, and ``.msg`` files written with extract-msg's
own OLE writer (MS-OXMSG storages and streams). Real files, made here, so no sample from
elsewhere is needed."""
from __future__ import annotations

import io
import struct
import uuid
from datetime import datetime, timezone

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


# MAPI property types and the meeting's properties (MS-OXPROPS, MS-OXOCAL).
PT_BOOLEAN, PT_LONG, PT_UNICODE, PT_SYSTIME, PT_OBJECT = 0x000B, 0x0003, 0x001F, 0x0040, 0x000D
PSETID_APPOINTMENT = uuid.UUID("00062002-0000-0000-C000-000000000046")
PSETID_MEETING = uuid.UUID("6ED8DA90-450B-101B-98DA-00AA003F1305")
IMESSAGE_SIG = b"\x07\x03\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00\x46"


def _filetime(moment: datetime) -> int:
    return int((moment - datetime(1601, 1, 1, tzinfo=timezone.utc)).total_seconds() * 10**7)


def _mapi(props: list[tuple]) -> bytes:
    """MAPI properties as TNEF carries them: (type, tag, value) or (type, named, value) with
    named = (property set, LID)."""
    out = struct.pack("<I", len(props))
    for kind, tag, value in props:
        if isinstance(tag, tuple):
            out += struct.pack("<HH", kind, 0x8000) + tag[0].bytes_le + struct.pack("<II", 0, tag[1])
        else:
            out += struct.pack("<HH", kind, tag)
        if kind == PT_BOOLEAN:
            out += struct.pack("<HH", int(value), 0)
        elif kind == PT_LONG:
            out += struct.pack("<i", value)
        elif kind == PT_SYSTIME:
            out += struct.pack("<Q", _filetime(value))
        else:  # variable length: one value, its length, padded to 4
            data = value.encode("utf-16-le") + b"\0\0" if kind == PT_UNICODE else value
            out += struct.pack("<II", 1, len(data)) + data + b"\0" * (-len(data) % 4)
    return out


def _tnef_date(moment: datetime) -> bytes:
    return struct.pack("<7H", moment.year, moment.month, moment.day, moment.hour, moment.minute,
                       moment.second, moment.isoweekday() % 7)


def meeting_tnef(message_class: str, subject: str, start: datetime, end: datetime,
                 global_id: bytes, location: str = "", all_day: bool = False,
                 organizer: tuple[str, str] | None = None,
                 attendees: list[tuple[str, str, int]] = (),
                 embedded: bytes | None = None) -> bytes:
    """A TNEF stream that is a meeting (Exchange's meeting request, cancellation...) or an
    appointment; attendees are (name, address, recipient type 1 required / 2 optional).
    ``embedded``: another such stream attached as an embedded item, as Outlook attaches an
    appointment to a mail."""
    out = struct.pack("<IH", TNEF.TNEF_SIGNATURE, 0x1234)
    out += _object(LEVEL_MESSAGE, TNEF.ATTTNEFVERSION, 0x0008, struct.pack("<I", 0x00010000))
    out += _object(LEVEL_MESSAGE, TNEF.ATTOEMCODEPAGE, 0x0006, struct.pack("<II", 1252, 0))
    if organizer is not None:
        name, email = organizer[0].encode() + b"\0", b"SMTP:" + organizer[1].encode() + b"\0"
        out += _object(LEVEL_MESSAGE, TNEF.ATTFROM, 0x0000,
                       struct.pack("<HHHH", 4, 8 + len(name) + len(email), len(name), len(email))
                       + name + email)
    out += _object(LEVEL_MESSAGE, TNEF.ATTSUBJECT, 0x0001, subject.encode("cp1252") + b"\0")
    out += _object(LEVEL_MESSAGE, TNEF.ATTMESSAGECLASS, 0x0001, message_class.encode() + b"\0")
    out += _object(LEVEL_MESSAGE, TNEF.ATTDATESTART, 0x0003, _tnef_date(start))
    out += _object(LEVEL_MESSAGE, TNEF.ATTDATEEND, 0x0003, _tnef_date(end))
    if attendees:
        rows = struct.pack("<I", len(attendees)) + b"".join(_mapi([
            (PT_UNICODE, 0x3001, name), (PT_UNICODE, 0x3002, "SMTP"), (PT_UNICODE, 0x3003, address),
            (PT_UNICODE, 0x39FE, address), (PT_LONG, 0x0C15, kind)]) for name, address, kind in attendees)
        out += _object(LEVEL_MESSAGE, TNEF.ATTRECIPTABLE, 0x0006, rows)
    out += _object(LEVEL_MESSAGE, TNEF.ATTMAPIPROPS, 0x0006, _mapi([
        (PT_UNICODE, (PSETID_APPOINTMENT, 0x8208), location),
        (PT_SYSTIME, (PSETID_APPOINTMENT, 0x820D), start),
        (PT_SYSTIME, (PSETID_APPOINTMENT, 0x820E), end),
        (PT_BOOLEAN, (PSETID_APPOINTMENT, 0x8215), all_day),
        (PT_BINARY, (PSETID_MEETING, 0x0003), global_id),
    ]))
    if embedded is not None:
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHRENDDATA, 0x0006, b"\x01\x00" + b"\xff" * 12)
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHTITLE, 0x0001, b"Appointment\0")
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHMENT, 0x0006, _mapi([
            (PT_LONG, 0x3705, 5), (PT_OBJECT, 0x3701, IMESSAGE_SIG + embedded)]))
        out += _object(LEVEL_ATTACHMENT, TNEF.ATTATTACHMODIFYDATE, 0x0003, _tnef_date(start))
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
