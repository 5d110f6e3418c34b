"""Outlook's own formats, read by the pure modules of ``server.sync.mail``: TNEF
(``winmail.dat``) unpacked beside the original, calendar invitations read into a meeting,
and ``.msg`` files rewritten as RFC 5322 for ``parse``. Files are generated (hypothesis)
with the builders of ``tests.sync.outlook_files``."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar, Event, vCalAddress

from server.sync.mail import invitations
from server.sync.mail.bodies import safe_filename
from server.sync.mail.message import parse
from server.sync.mail.msgfile import MsgFileError, to_rfc822

from . import outlook_files
from .conftest import build_raw
from .test_mime_equivalence import PROPERTY

NAMES = st.text(alphabet="abcdefghij XYZ_-0123456789", min_size=1, max_size=14).map(str.strip).filter(bool)
FILES = st.lists(st.tuples(NAMES.map(lambda n: n + ".pdf"), st.binary(min_size=1, max_size=200)), max_size=3)
TEXT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ABC.,!?0123456789", min_size=1, max_size=60).map(str.strip).filter(bool)


def _with_parts(*parts: bytes) -> bytes:
    body = b"".join(b"--b\r\n" + part + b"\r\n" for part in parts) + b"--b--\r\n"
    return build_raw(body, extra=[("MIME-Version", "1.0"), ("Content-Type", "multipart/mixed; boundary=b")])


def _winmail(data: bytes) -> bytes:
    return (b"Content-Type: application/ms-tnef; name=\"winmail.dat\"\r\nContent-Transfer-Encoding: base64\r\n"
            b"Content-Disposition: attachment; filename=\"winmail.dat\"\r\n\r\n" + base64.encodebytes(data))


# --------------------------------------------------------------------------- TNEF

@PROPERTY
@given(FILES, st.one_of(st.none(), TEXT), st.one_of(st.none(), TEXT), st.booleans())
def test_tnef_files_and_body_are_unpacked_beside_the_original(files, body, html, own_text):
    data = outlook_files.tnef(body=body, html=f"<p>{html}</p>" if html else None, files=files)
    parts = ([b"Content-Type: text/plain\r\n\r\nThe message's own text."] if own_text else []) + [_winmail(data)]
    msg = parse(_with_parts(*parts))
    original, *decoded = msg.attachments
    assert (original.filename, original.content) == ("winmail.dat", data)
    assert [(a.filename, a.content) for a in decoded] == [(safe_filename(n), c) for n, c in files]
    if own_text:  # the message's own body wins
        assert msg.text_body == "The message's own text." and msg.html_body == ""
    else:
        assert msg.text_body == (body or "") and msg.html_body == (f"<p>{html}</p>" if html else "")


ENCAPSULATED_HTML = (rb"{\rtf1\ansi\ansicpg1252\fromhtml1 \deff0{\fonttbl{\f0\fswiss Arial;}}"
                     rb"{\*\htmltag64 <html>}{\*\htmltag64 <body>}Hello {\*\htmltag84 <b>}bold"
                     rb"{\*\htmltag92 </b>}\par{\*\htmltag72 </body>}{\*\htmltag72 </html>}}")
ENCAPSULATED_TEXT = rb"{\rtf1\ansi\ansicpg1252\fromtext \deff0{\fonttbl{\f0\fswiss Arial;}}Plain words\par second}"


@pytest.mark.parametrize("rtf, html, text", [
    (ENCAPSULATED_HTML, "<html><body>Hello <b>bold</b>\n</body></html>", ""),
    (ENCAPSULATED_TEXT, "", "Plain words\nsecond"),
    (rb"{\rtf1\ansi RTF that encapsulates nothing}", "", "RTF that encapsulates nothing"),
])
def test_an_rtf_only_tnef_gives_the_body_outlook_encapsulated(rtf, html, text):
    msg = parse(_with_parts(_winmail(outlook_files.tnef(rtf=rtf))))
    assert (msg.html_body, msg.text_body) == (html, text)
    assert [a.filename for a in msg.attachments] == ["winmail.dat", "body.rtf"]
    assert msg.attachments[1].content.rstrip(b"\x00") == rtf  # decompressed, as written
    assert not any("RTF" in d for d in msg.defects)


def _rtf_escaped(text: str) -> str:
    """Text as Outlook writes it in RTF: cp1252 characters as \\'hh, others as \\uN?."""
    out = []
    for char in text:
        if char in "\\{}":
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\par\n")
        elif ord(char) < 128:
            out.append(char)
        else:
            try:
                out.append("\\'%02x" % char.encode("cp1252")[0])
            except UnicodeEncodeError:
                code = ord(char)
                out.append("\\u%d?" % (code - 65536 if code > 32767 else code))
    return "".join(out)


PLAIN_RTF_TEXT = st.text(st.characters(codec="utf-16", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                                       max_codepoint=0xFFFF) | st.just("\n"), min_size=1, max_size=60)


@PROPERTY
@given(PLAIN_RTF_TEXT.filter(lambda t: t.strip()))
def test_rtf_that_encapsulates_nothing_is_read_as_its_text(text):
    """What Outlook writes for rich text typed in Outlook (no \\fromhtml or \\fromtext): the
    body is its text, whatever characters it holds; body.rtf stays beside it."""
    rtf = ("{\\rtf1\\ansi\\ansicpg1252\\deff0{\\fonttbl{\\f0\\fswiss Arial;}}"
           "{\\colortbl;\\red0\\green0\\blue0;}\\f0\\fs20 " + _rtf_escaped(text) + "}").encode("ascii")
    msg = parse(_with_parts(_winmail(outlook_files.tnef(rtf=rtf))))
    assert msg.text_body.strip() == text.strip() and msg.html_body == ""
    assert [a.filename for a in msg.attachments] == ["winmail.dat", "body.rtf"]


def test_a_broken_tnef_is_kept_as_it_is_with_a_defect():
    msg = parse(_with_parts(_winmail(b"not a TNEF stream at all")))
    assert [a.filename for a in msg.attachments] == ["winmail.dat"]
    assert any("TNEF" in d for d in msg.defects)


# --------------------------------------------------------------------------- TNEF meetings

MEETING_CLASSES = st.sampled_from([("IPM.Schedule.Meeting.Request", "REQUEST"),
                                   ("IPM.Schedule.Meeting.Canceled", "CANCEL"),
                                   ("IPM.Appointment", "PUBLISH")])
OUTLOOK_CLASS_ID = bytes.fromhex("040000008200E00074C5B7101A82E008")


def _global_id(data: bytes) -> bytes:
    """A PidLidGlobalObjectId (MS-OXOCAL): class id, instance date, creation time, reserved,
    the data's size, the data."""
    return OUTLOOK_CLASS_ID + bytes(4) + bytes(range(8)) + bytes(8) + len(data).to_bytes(4, "little") + data


# Outlook's own ids (random data, trailing zeros included) and ones kept from an iCalendar
# organizer (the UID after a "vCal-Uid" marker): (global object id, the UID it stands for).
GLOBAL_IDS = st.one_of(
    st.binary(min_size=1, max_size=40).map(lambda d: (_global_id(d), _global_id(d).hex().upper())),
    st.from_regex(r"[A-Za-z0-9@.\-]{1,40}", fullmatch=True).map(
        lambda uid: (_global_id(b"vCal-Uid\x01\x00\x00\x00" + uid.encode() + b"\x00"), uid)))
ATTENDEES = st.lists(st.tuples(NAMES, st.sampled_from(["bob@org.example", "carl@partner.example",
                                                       "dora@partner.example"]), st.sampled_from([1, 2])),
                     max_size=3, unique_by=lambda a: a[1])


@PROPERTY
@given(MEETING_CLASSES, TEXT, st.integers(0, 10**7), st.integers(1, 600), GLOBAL_IDS,
       st.one_of(st.just(""), TEXT), ATTENDEES, st.booleans())
def test_a_meeting_sent_as_tnef_reads_as_the_invitation_it_is(kind, title, offset, minutes, global_id,
                                                               location, attendees, embedded):
    """Exchange's meeting request or cancellation in a winmail.dat, or an appointment Outlook
    embedded in a mail, gives the email a .ics of that meeting: shown and tracked like any
    invitation (its UID the global object id in hexadecimal, as Outlook writes it)."""
    start = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=offset)
    end = start + timedelta(minutes=minutes)
    message_class, method = kind
    meeting_stream = outlook_files.meeting_tnef(
        message_class, title, start, end, global_id[0], location=location,
        organizer=("Ann Customer", "ann@customer.example"), attendees=attendees)
    data = (outlook_files.meeting_tnef("IPM.Note", "Have a look", start, end, b"", embedded=meeting_stream)
            if embedded else meeting_stream)
    msg = parse(_with_parts(_winmail(data)))
    calendars = [a for a in msg.attachments if a.content_type == "text/calendar"]
    assert len(calendars) == 1 and calendars[0].filename.endswith(".ics")
    meeting = invitations.read(calendars[0].content)
    assert (meeting.method, meeting.uid) == (method, global_id[1])
    assert (meeting.title, meeting.start, meeting.end, meeting.location) == (title, start, end, location)
    assert meeting.cancelled == (method == "CANCEL")
    assert (meeting.organizer.name, meeting.organizer.address) == ("Ann Customer", "ann@customer.example")
    assert [(a.name, a.address, a.role) for a in meeting.attendees] == [
        (name, address, "required" if kind == 1 else "optional") for name, address, kind in attendees]
    assert not msg.defects


def test_a_tnef_that_is_no_meeting_or_lacks_its_identity_gives_no_calendar():
    moment = datetime(2024, 3, 5, 10, tzinfo=timezone.utc)
    for data in (outlook_files.meeting_tnef("IPM.Note", "Just mail", moment, moment, b"\x04id"),
                 outlook_files.meeting_tnef("IPM.Schedule.Meeting.Request", "No id", moment, moment, b"")):
        msg = parse(_with_parts(_winmail(data)))
        assert [a.filename for a in msg.attachments] == ["winmail.dat"]


# --------------------------------------------------------------------------- invitations

PEOPLE = st.lists(st.tuples(NAMES, st.sampled_from(["ann@customer.example", "bob@org.example",
                                                    "carl@partner.example"]), st.booleans()),
                  max_size=3, unique_by=lambda p: p[1])


@PROPERTY
@given(TEXT, st.integers(0, 10**7), st.integers(1, 600), PEOPLE,
       st.sampled_from(["REQUEST", "CANCEL", "REPLY"]), st.one_of(st.none(), TEXT))
def test_an_invitation_reads_as_the_meeting_it_describes(title, offset, minutes, people, method, location):
    start = datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=offset)
    calendar = Calendar()
    calendar.add("prodid", "-//test//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    event = Event()
    event.add("uid", "meet-1@customer.example")
    event.add("summary", title)
    event.add("dtstart", start)
    event.add("dtend", start + timedelta(minutes=minutes))
    if location:
        event.add("location", location)
    organizer = vCalAddress("mailto:ann@customer.example")
    organizer.params["cn"] = "Ann Customer"
    event.add("organizer", organizer)
    for name, address, optional in people:
        attendee = vCalAddress(f"mailto:{address}")
        attendee.params["cn"] = name
        attendee.params["role"] = "OPT-PARTICIPANT" if optional else "REQ-PARTICIPANT"
        event.add("attendee", attendee)
    calendar.add_component(event)
    meeting = invitations.read(calendar.to_ical())
    assert meeting is not None and meeting.method == method and meeting.uid == "meet-1@customer.example"
    assert (meeting.title, meeting.start, meeting.end) == (title, start, start + timedelta(minutes=minutes))
    assert meeting.location == (location or "") and meeting.cancelled == (method == "CANCEL")
    assert (meeting.organizer.name, meeting.organizer.address) == ("Ann Customer", "ann@customer.example")
    assert [(a.name, a.address, a.role) for a in meeting.attendees] == [
        (name, address, "optional" if optional else "required") for name, address, optional in people]


def test_an_all_day_meeting_and_what_is_not_a_calendar():
    ics = (b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:d1\r\nSUMMARY:Fair\r\nDTSTART;VALUE=DATE:20240306\r\n"
           b"END:VEVENT\r\nEND:VCALENDAR\r\n")
    meeting = invitations.read(ics)
    assert meeting.all_day and meeting.start == datetime(2024, 3, 6, tzinfo=timezone.utc)
    assert invitations.read(b"not a calendar") is None
    assert invitations.read(b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n") is None


# --------------------------------------------------------------------------- .msg files

ADDRESSES = st.sampled_from(["bob@org.example", "carl@partner.example", "dora@partner.example"])


@PROPERTY
@given(TEXT, TEXT, st.lists(st.tuples(st.sampled_from([1, 2]), NAMES, ADDRESSES), min_size=1, max_size=3,
                            unique_by=lambda r: r[2]), FILES, st.booleans())
def test_a_msg_file_reads_as_the_mail_it_holds(subject, body, recipients, files, received):
    headers = ("From: Ann Customer <ann@customer.example>\r\nMessage-ID: <q1@customer.example>\r\n"
               "Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n\r\n") if received else None
    data = outlook_files.msg(subject, body, headers, sender=("Ann Customer", "ann@customer.example"),
                             recipients=recipients, files=files)
    msg = parse(to_rfc822(data))
    assert msg.subject == " ".join(subject.split()) and msg.text_body.strip() == body
    assert msg.from_.address == "ann@customer.example"
    assert [a.address for a in msg.to] == [a for kind, _, a in recipients if kind == 1]
    assert [a.address for a in msg.cc] == [a for kind, _, a in recipients if kind == 2]
    assert [(a.filename, a.content) for a in msg.attachments] == [(safe_filename(n), c) for n, c in files]
    assert msg.message_id == ("q1@customer.example" if received else None)


@pytest.mark.parametrize("data", [b"", b"From: a@b\r\n\r\nnot OLE", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 600])
def test_what_is_no_msg_file_is_refused(data):
    with pytest.raises(MsgFileError):
        to_rfc822(data)
