"""Calendar invitations carried by mail (``text/calendar``, iCalendar METHOD REQUEST,
CANCEL, REPLY...): the meeting they describe, read with the ``icalendar`` package. Pure:
bytes in, values out; anything unreadable gives None.

The email keeps the ``.ics`` as an attachment; its page shows the meeting (title, time,
organizer, attendees) read from it here, and offers to track it as an appointment.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timezone

from server.ical_text import parse

__all__ = ["Attendee", "Meeting", "read"]

CALENDAR_TYPES = frozenset({"text/calendar", "application/ics", "text/x-vcalendar"})
MAX_ATTENDEES = 500


@dataclass(frozen=True)
class Attendee:
    name: str
    address: str
    role: str = "required"  # required, optional (RFC 5545 ROLE), organizer
    response: str = ""  # accepted, declined, tentative, needs-action


@dataclass(frozen=True)
class Meeting:
    """One event of an invitation."""

    method: str  # REQUEST, CANCEL, REPLY, PUBLISH... ("" when absent)
    uid: str
    title: str
    start: datetime | None
    end: datetime | None
    all_day: bool
    location: str
    organizer: Attendee | None
    attendees: list[Attendee] = field(default_factory=list)
    cancelled: bool = False


def _address(value: object) -> str:
    text = str(value or "").strip()
    return text[7:] if text.lower().startswith("mailto:") else text


def _person(prop, role: str) -> Attendee | None:
    if prop is None:
        return None
    params = prop.params
    address = _address(prop).lower()
    response = str(params.get("PARTSTAT", "")).lower()
    if role != "organizer":
        optional = str(params.get("ROLE", "")).upper() == "OPT-PARTICIPANT"
        role = "optional" if optional else "required"
    return Attendee(str(params.get("CN", "")).strip().strip('"'), address, role, response)


def _moment(prop) -> tuple[datetime | None, bool]:
    value = prop.dt if prop is not None else None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc), False
    if isinstance(value, date):
        return datetime.combine(value, time(), tzinfo=timezone.utc), True
    return None, False


def read(data: bytes) -> Meeting | None:
    """The first event of an iCalendar object, or None when there is none to read."""
    try:
        calendar = parse(data.decode("utf-8", "replace"))
        event = next(iter(calendar.walk("VEVENT")), None)
        if event is None:
            return None
        method = str(calendar.get("METHOD", "")).upper()
        start, all_day = _moment(event.get("DTSTART"))
        end, _ = _moment(event.get("DTEND"))
        attendees = event.get("ATTENDEE", [])
        attendees = attendees if isinstance(attendees, list) else [attendees]
        people = [p for p in (_person(a, "attendee") for a in attendees[:MAX_ATTENDEES]) if p and p.address]
        return Meeting(
            method=method, uid=str(event.get("UID", "")).strip(),
            title=str(event.get("SUMMARY", "")).strip(), start=start, end=end, all_day=all_day,
            location=str(event.get("LOCATION", "")).strip(),
            organizer=_person(event.get("ORGANIZER"), "organizer"), attendees=people,
            cancelled=method == "CANCEL" or str(event.get("STATUS", "")).upper() == "CANCELLED")
    except Exception:  # icalendar raises ValueError, KeyError, TypeError on broken input
        return None
