"""The meeting inside an Outlook TNEF stream, as the iCalendar object Outlook would have sent.
Pure: a parsed ``tnefparse`` TNEF in, iCalendar bytes (or None) out.

Exchange sends a meeting request, update, cancellation or response to some recipients as
TNEF (message class ``IPM.Schedule.Meeting.*``), and Outlook embeds appointments
(``IPM.Appointment``) in rich-text mail. Either way no ``text/calendar`` part exists, so the
meeting would stay locked in ``winmail.dat``. Its properties (MS-OXTNEF, MS-OXOCAL) are
turned into one VEVENT here; the email then carries it as a ``.ics`` attachment and is
shown and tracked as a meeting exactly like a mail client's invitation
(``server/sync/mail/invitations.py``).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from icalendar import Calendar, Event, vCalAddress

from server.ical_text import person, serialize

__all__ = ["MEETING_CLASSES", "calendar_of"]

# Message classes (case-insensitive prefixes) that are a meeting, and the iTIP method each is.
MEETING_CLASSES = (
    ("ipm.schedule.meeting.request", "REQUEST"),
    ("ipm.schedule.meeting.canceled", "CANCEL"),
    ("ipm.schedule.meeting.resp", "REPLY"),
    ("ipm.appointment", "PUBLISH"),
)
PSETID_APPOINTMENT = uuid.UUID("00062002-0000-0000-C000-000000000046")
PSETID_MEETING = uuid.UUID("6ED8DA90-450B-101B-98DA-00AA003F1305")
# Named properties: (property set, LID) -> our name.
NAMED = {
    (PSETID_APPOINTMENT, 0x8208): "location",
    (PSETID_APPOINTMENT, 0x820D): "start",  # PidLidAppointmentStartWhole
    (PSETID_APPOINTMENT, 0x820E): "end",  # PidLidAppointmentEndWhole
    (PSETID_APPOINTMENT, 0x8215): "all_day",  # PidLidAppointmentSubType
    (PSETID_MEETING, 0x0003): "global_object_id",  # PidLidGlobalObjectId
    (PSETID_MEETING, 0x0023): "clean_global_object_id",  # PidLidCleanGlobalObjectId
}
ATT_SUBJECT, ATT_MESSAGE_CLASS, ATT_FROM = 0x8004, 0x8008, 0x8000
ATT_DATE_START, ATT_DATE_END, ATT_RECIPIENTS = 0x0006, 0x0007, 0x9004
PID_DISPLAY_NAME, PID_EMAIL_ADDRESS, PID_SMTP_ADDRESS = 0x3001, 0x3003, 0x39FE
PID_RECIPIENT_TYPE, PID_ADDRESS_TYPE = 0x0C15, 0x3002
MAX_ATTENDEES = 500


def _method(message_class: str) -> str | None:
    lowered = message_class.lower()
    return next((method for prefix, method in MEETING_CLASSES if lowered.startswith(prefix)), None)


def _named(tnef) -> dict[str, object]:
    found: dict[str, object] = {}
    for prop in tnef.mapiprops:
        key = NAMED.get((getattr(prop, "guid", None), getattr(prop, "guid_prop", None)))
        if key is not None and key not in found:
            try:
                found[key] = _whole(prop.raw_data) if key.endswith("global_object_id") else prop.data
            except Exception:  # a value of a type tnefparse cannot read: leave it out
                continue
    return found


VCAL_UID = b"vCal-Uid\x01\x00\x00\x00"


def _whole(chunks: list[bytes]) -> bytes | None:
    """A global object id as stored: tnefparse pads it to 4 bytes (and ``.data`` strips its
    trailing zeros), but its own size field (MS-OXOCAL 2.2.1.27) says where it ends."""
    raw = chunks[0] if chunks else b""
    if len(raw) < 40:
        return raw.rstrip(b"\x00") or None
    return raw[:40 + int.from_bytes(raw[36:40], "little")]


def _uid(global_id: bytes) -> str:
    """The iCalendar UID of a meeting: the organizer's own UID when the meeting came from
    iCalendar (Outlook keeps it after a "vCal-Uid" marker), else the global object id in
    hexadecimal, as Outlook writes it when it exports the meeting."""
    if VCAL_UID in global_id:
        return global_id.split(VCAL_UID, 1)[1].split(b"\x00", 1)[0].decode("utf-8", "replace")
    return global_id.hex().upper()


def _utc(value: object) -> datetime | None:
    """TNEF dates are UTC without a zone (tnefparse gives naive datetimes)."""
    if not isinstance(value, datetime) or value.year < 1900:
        return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("cp1252", "replace")
    return str(value or "").replace("\x00", "").strip()


def _address(name: str, address: str) -> vCalAddress | None:
    address = address.strip()
    if "@" not in address:  # an Exchange X.500 address with no SMTP form: not a person to mail
        return None
    return person(address, name)


def _recipient(row: list) -> tuple[str, str, int]:
    values: dict[int, object] = {}
    for prop in row:
        try:
            values.setdefault(prop.name, prop.data)
        except Exception:
            continue
    address = _text(values.get(PID_SMTP_ADDRESS))
    if not address and _text(values.get(PID_ADDRESS_TYPE)).upper() == "SMTP":
        address = _text(values.get(PID_EMAIL_ADDRESS))
    kind = values.get(PID_RECIPIENT_TYPE)
    return _text(values.get(PID_DISPLAY_NAME)), address, kind if isinstance(kind, int) else 1


def calendar_of(tnef) -> bytes | None:
    """The meeting a TNEF stream is, as iCalendar bytes; None when it is not a meeting or
    lacks what a meeting needs (an identity and a start)."""
    props = {obj.name: obj.data for obj in tnef.msgprops}
    method = _method(_text(props.get(ATT_MESSAGE_CLASS)))
    if method is None:
        return None
    named = _named(tnef)
    identity = named.get("clean_global_object_id") or named.get("global_object_id")
    start = _utc(named.get("start")) or _utc(props.get(ATT_DATE_START))
    end = _utc(named.get("end")) or _utc(props.get(ATT_DATE_END))
    if not isinstance(identity, bytes) or not identity or start is None:
        return None
    event = Event()
    event.add("uid", _uid(identity))
    event.add("summary", _text(props.get(ATT_SUBJECT)))
    if named.get("all_day") is True:
        event.add("dtstart", start.date())
        if end is not None and end.date() > start.date():
            event.add("dtend", end.date())
    else:
        event.add("dtstart", start)
        if end is not None and end >= start:
            event.add("dtend", end)
    location = _text(named.get("location"))
    if location:
        event.add("location", location)
    sender = props.get(ATT_FROM)
    if isinstance(sender, tuple) and len(sender) == 3:
        organizer = _address(_text(sender[0]), _text(sender[2]))
        if organizer is not None:
            event.add("organizer", organizer)
    rows = props.get(ATT_RECIPIENTS)
    for row in (rows if isinstance(rows, list) else [])[:MAX_ATTENDEES]:
        name, address, kind = _recipient(row)
        attendee = _address(name, address)
        if attendee is not None and kind in (1, 2):
            attendee.params["ROLE"] = "REQ-PARTICIPANT" if kind == 1 else "OPT-PARTICIPANT"
            event.add("attendee", attendee)
    if method == "CANCEL":
        event.add("status", "CANCELLED")
    calendar = Calendar()
    calendar.add("prodid", "-//Regarding//TNEF meeting//EN")
    calendar.add("version", "2.0")
    calendar.add("method", method)
    calendar.add_component(event)
    return serialize(calendar)
