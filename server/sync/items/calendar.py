"""iCalendar (RFC 5545) <-> CRM appointment and task field values.

``read_event(text)`` / ``read_task(text)`` give the values of the VCALENDAR's series (its
VEVENT without RECURRENCE-ID) or VTODO (from its text, or from the calendar a store built
the text from: ``Item.parsed``); ``write_event(values, uid, base)`` /
``write_task(...)`` give the text to store, written over ``base`` (the server's last text)
so what the CRM does not hold (X- properties, attachments, conference data, the server's
own VTIMEZONEs) is kept. Times are aware UTC datetimes with the zone's name beside them
(``time_zone``); an all-day appointment starts and ends at UTC midnight of its dates.
A series keeps its RRULE and, in ``recurrence_exceptions``, its cancelled occurrences
(EXDATE) and changed ones (the overriding VEVENTs' own fields)."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from server.sync.items.fields import from_json, to_json
from server.ical_text import parse, person, serialize

PRODID = "-//Regarding CRM//EN"
SHOW_AS = {"FREE": "free", "TENTATIVE": "tentative", "BUSY": "busy", "OOF": "oof",
           "WORKINGELSEWHERE": "free"}
CLASSES = {"PUBLIC": "normal", "PRIVATE": "private", "CONFIDENTIAL": "confidential"}
RESPONSES = ("needs-action", "accepted", "declined", "tentative", "delegated")
TASK_STATUS = {"NEEDS-ACTION": "not_started", "IN-PROCESS": "in_progress",
               "COMPLETED": "completed", "CANCELLED": "not_started"}
UTC_NAMES = {None, "UTC", "Etc/UTC", "GMT", "Etc/GMT", "Z"}
OVERRIDE_FIELDS = ("subject", "location", "description", "start", "end", "state")


class BadItem(ValueError):
    """Text that is not a calendar item we can read (quarantined with its reason)."""


def _parse(text: str | icalendar.Calendar, component: str):
    """The calendar of ``text`` (or ``text`` itself, already read) and its components of
    the kind."""
    if isinstance(text, icalendar.Calendar):
        calendar = text
    else:
        try:
            calendar = parse(text)
        except ValueError as exc:
            raise BadItem(f"not iCalendar: {exc}") from exc
    found = [c for c in calendar.walk(component)]
    if not found:
        raise BadItem(f"no {component} in the item")
    return calendar, found


def _utc(value, zone_name: str | None = None) -> tuple[datetime | None, bool, str | None]:
    """(aware UTC datetime, all day, zone name) of a DTSTART-like value."""
    if value is None:
        return None, False, None
    if isinstance(value, datetime):
        if value.tzinfo is None:  # floating: read in the item's zone if any, else UTC
            value = value.replace(tzinfo=_zone(zone_name) or timezone.utc)
        key = getattr(value.tzinfo, "key", None)
        return value.astimezone(timezone.utc), False, None if key in UTC_NAMES else key
    if isinstance(value, date):
        return datetime.combine(value, time(), timezone.utc), True, None
    return None, False, None


def _zone(name: str | None):
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _dt(component, name: str):
    prop = component.get(name)
    return getattr(prop, "dt", None)


def _text(component, name: str) -> str | None:
    value = component.get(name)
    return str(value) if value not in (None, "") else None


def _categories(component) -> str | None:
    found = component.get("CATEGORIES")
    if found is None:
        return None
    lists = found if isinstance(found, list) else [found]
    names = [str(c) for cats in lists for c in getattr(cats, "cats", [cats])]
    return ",".join(n.strip() for n in names if n.strip()) or None


def _reminder(component) -> int | None:
    for alarm in component.walk("VALARM"):
        trigger = alarm.get("TRIGGER")
        delta = getattr(trigger, "dt", None)
        if isinstance(delta, timedelta) and delta <= timedelta(0):
            return int(-delta.total_seconds() // 60)
    return None


def _show_as(component) -> str:
    busy = _text(component, "X-MICROSOFT-CDO-BUSYSTATUS")
    if busy and busy.upper() in SHOW_AS:
        return SHOW_AS[busy.upper()]
    return "free" if (_text(component, "TRANSP") or "").upper() == "TRANSPARENT" else "busy"


def _address(value) -> str | None:
    text = str(value or "")
    return text[7:] if text.lower().startswith("mailto:") else (text or None)


def _parties(event) -> list[dict]:
    parties = []
    organizer = event.get("ORGANIZER")
    if organizer is not None:
        parties.append({"role": "organizer", "address": _address(organizer),
                        "name": organizer.params.get("CN"), "response": None})
    attendees = event.get("ATTENDEE") or []
    for attendee in attendees if isinstance(attendees, list) else [attendees]:
        role = "optional" if attendee.params.get("ROLE", "").upper() in (
            "OPT-PARTICIPANT", "NON-PARTICIPANT") else "required"
        response = (attendee.params.get("PARTSTAT") or "needs-action").lower()
        parties.append({"role": role, "address": _address(attendee),
                        "name": attendee.params.get("CN"),
                        "response": response if response in RESPONSES else "needs-action"})
    return parties


def read_event(text: str | icalendar.Calendar) -> dict:
    """The appointment values of a VCALENDAR holding one event series (its text, or the
    calendar a store built it from)."""
    _, events = _parse(text, "VEVENT")
    master = next((e for e in events if e.get("RECURRENCE-ID") is None), events[0])
    start, all_day, zone = _utc(_dt(master, "DTSTART"))
    end = _utc(_dt(master, "DTEND"))[0]
    if end is None and start is not None:
        duration = _dt(master, "DURATION")
        end = start + duration if isinstance(duration, timedelta) else \
            start + (timedelta(days=1) if all_day else timedelta(0))
    rule = master.get("RRULE")
    values = {
        "subject": _text(master, "SUMMARY") or "", "location": _text(master, "LOCATION"),
        "description": _text(master, "DESCRIPTION"), "scheduled_start": start,
        "scheduled_end": end, "is_all_day": all_day, "time_zone": zone,
        "recurrence_rule": canonical_rule(rule.to_ical().decode()) if rule is not None else None,
        "recurrence_exceptions": _exceptions(master, events) if rule is not None else None,
        "reminder_minutes": _reminder(master), "show_as": _show_as(master),
        "sensitivity": CLASSES.get((_text(master, "CLASS") or "PUBLIC").upper(), "private"),
        "categories": _categories(master),
        "state": "canceled" if (_text(master, "STATUS") or "").upper() == "CANCELLED" else "open",
        "parties": _parties(master),
    }
    return values


def canonical_rule(rule: str) -> str:
    """An RRULE value in one order (FREQ first, the other parts sorted), so the same rule
    written by two clients compares equal."""
    parts = [p for p in rule.strip().split(";") if p]
    return ";".join(sorted(parts, key=lambda p: (not p.upper().startswith("FREQ="), p)))


def _exceptions(master, events) -> dict:
    exdates = []
    found = master.get("EXDATE")
    for dates in found if isinstance(found, list) else [found] if found is not None else []:
        exdates += [to_json(_utc(d.dt)[0]) for d in dates.dts]
    overrides = []
    for event in events:
        if event is master or event.get("RECURRENCE-ID") is None:
            continue
        start, _, _ = _utc(_dt(event, "DTSTART"))
        end = _utc(_dt(event, "DTEND"))[0]
        overrides.append({
            "recurrence_id": to_json(_utc(_dt(event, "RECURRENCE-ID"))[0]),
            "start": to_json(start), "end": to_json(end),
            "subject": _text(event, "SUMMARY") or "", "location": _text(event, "LOCATION"),
            "description": _text(event, "DESCRIPTION"),
            "state": "canceled" if (_text(event, "STATUS") or "").upper() == "CANCELLED"
            else "open"})
    overrides.sort(key=lambda o: o["recurrence_id"])
    return {"exdates": sorted(exdates), "overrides": overrides}


def read_task(text: str | icalendar.Calendar) -> dict:
    """The task values of a VCALENDAR holding one VTODO (its text, or its calendar)."""
    _, todos = _parse(text, "VTODO")
    todo = todos[0]
    status = (_text(todo, "STATUS") or "NEEDS-ACTION").upper()
    percent = todo.get("PERCENT-COMPLETE")
    priority = int(todo.get("PRIORITY") or 0)
    completed = _utc(_dt(todo, "COMPLETED"))[0]
    return {
        "subject": _text(todo, "SUMMARY") or "", "description": _text(todo, "DESCRIPTION"),
        "scheduled_start": _utc(_dt(todo, "DTSTART"))[0],
        "scheduled_end": _utc(_dt(todo, "DUE"))[0],
        "task_status": TASK_STATUS.get(status, "not_started"),
        "percent_complete": min(100, max(0, int(percent))) if percent is not None else
        (100 if status == "COMPLETED" else 0),
        "priority": "high" if 1 <= priority <= 4 else "low" if priority >= 6 else "normal",
        "state": "completed" if status == "COMPLETED" else
        "canceled" if status == "CANCELLED" else "open",
        "actual_end": completed, "reminder_minutes": _reminder(todo),
        "sensitivity": CLASSES.get((_text(todo, "CLASS") or "PUBLIC").upper(), "private"),
        "categories": _categories(todo),
    }


# ------------------------------------------------------------------------------ writing

def _calendar(base: str | None, component: str):
    """The base text's calendar and its components of the kind, or a new calendar."""
    if base:
        try:
            calendar = parse(base)
            return calendar, [c for c in calendar.walk(component)]
        except ValueError:
            pass
    calendar = icalendar.Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    return calendar, []


def _set(component, name: str, value, **params) -> None:
    component.pop(name, None)
    if value not in (None, ""):
        component.add(name, value, parameters=params or None)


def _when(value: datetime | None, all_day: bool, zone: str | None):
    if value is None:
        return None
    if all_day:
        return value.astimezone(timezone.utc).date()
    local = _zone(zone)
    return value.astimezone(local) if local else value.astimezone(timezone.utc)


def _alarm(component, minutes: int | None) -> None:
    component.subcomponents = [c for c in component.subcomponents if c.name != "VALARM"]
    if minutes is not None:
        alarm = icalendar.Alarm()
        alarm.add("action", "DISPLAY")
        alarm.add("description", "Reminder")
        alarm.add("trigger", timedelta(minutes=-minutes))
        component.add_component(alarm)


def _common(component, values: dict) -> None:
    _set(component, "SUMMARY", values.get("subject"))
    _set(component, "DESCRIPTION", values.get("description"))
    sensitivity = {v: k for k, v in CLASSES.items()}.get(values.get("sensitivity") or "normal")
    _set(component, "CLASS", sensitivity)
    component.pop("CATEGORIES", None)
    if values.get("categories"):
        component.add("categories", [c for c in values["categories"].split(",") if c])
    _alarm(component, values.get("reminder_minutes"))
    _set(component, "DTSTAMP", datetime.now(timezone.utc).replace(microsecond=0))


def write_event(values: dict, uid: str, base: str | None = None) -> str:
    """The iCalendar text of an appointment's series, written over ``base``."""
    calendar, events = _calendar(base, "VEVENT")
    master = next((e for e in events if e.get("RECURRENCE-ID") is None), None)
    if master is None:
        master = icalendar.Event()
        calendar.add_component(master)
    calendar.subcomponents = [c for c in calendar.subcomponents
                              if c.name != "VEVENT" or c is master]
    all_day, zone = bool(values.get("is_all_day")), values.get("time_zone")
    _set(master, "UID", uid)
    _common(master, values)
    _set(master, "LOCATION", values.get("location"))
    _set(master, "DTSTART", _when(values.get("scheduled_start"), all_day, zone))
    master.pop("DURATION", None)
    _set(master, "DTEND", _when(values.get("scheduled_end"), all_day, zone))
    show_as = values.get("show_as") or "busy"
    _set(master, "TRANSP", "TRANSPARENT" if show_as == "free" else "OPAQUE")
    _set(master, "X-MICROSOFT-CDO-BUSYSTATUS", show_as.upper())
    _set(master, "STATUS", "CANCELLED" if values.get("state") == "canceled" else "CONFIRMED")
    _write_parties(master, values.get("parties") or [])
    _write_series(calendar, master, values, uid, all_day, zone)
    if zone and _zone(zone) and not all_day:
        calendar.add_missing_timezones()
    return serialize(calendar).decode()


def _write_parties(event, parties: list[dict]) -> None:
    event.pop("ORGANIZER", None)
    event.pop("ATTENDEE", None)
    for party in parties:
        if not party.get("address"):
            continue
        someone = person(party["address"], party.get("name"))
        if party["role"] == "organizer":
            event.add("organizer", someone)
            continue
        someone.params["ROLE"] = "OPT-PARTICIPANT" if party["role"] == "optional" else "REQ-PARTICIPANT"
        someone.params["PARTSTAT"] = (party.get("response") or "needs-action").upper()
        event.add("attendee", someone)


def _write_series(calendar, master, values: dict, uid: str, all_day: bool,
                  zone: str | None) -> None:
    master.pop("RRULE", None)
    master.pop("EXDATE", None)
    rule = values.get("recurrence_rule")
    if not rule:
        return
    master.add("rrule", icalendar.vRecur.from_ical(rule))
    exceptions = values.get("recurrence_exceptions") or {}
    exdates = [_when(from_json("scheduled_start", d), all_day, zone)
               for d in exceptions.get("exdates") or []]
    if exdates:
        master.add("exdate", exdates)
    for override in exceptions.get("overrides") or []:
        event = icalendar.Event()
        event.add("uid", uid)
        event.add("recurrence-id", _when(from_json("scheduled_start", override["recurrence_id"]),
                                         all_day, zone))
        for name, key in (("DTSTART", "start"), ("DTEND", "end")):
            _set(event, name, _when(from_json("scheduled_start", override.get(key)), all_day,
                                    zone))
        _set(event, "SUMMARY", override.get("subject"))
        _set(event, "LOCATION", override.get("location"))
        _set(event, "DESCRIPTION", override.get("description"))
        _set(event, "STATUS", "CANCELLED" if override.get("state") == "canceled" else "CONFIRMED")
        _set(event, "DTSTAMP", datetime.now(timezone.utc).replace(microsecond=0))
        calendar.add_component(event)


def write_task(values: dict, uid: str, base: str | None = None) -> str:
    """The iCalendar text of a task, written over ``base``."""
    calendar, todos = _calendar(base, "VTODO")
    todo = todos[0] if todos else None
    if todo is None:
        todo = icalendar.Todo()
        calendar.add_component(todo)
    _set(todo, "UID", uid)
    _common(todo, values)
    _set(todo, "DTSTART", _when(values.get("scheduled_start"), False, None))
    _set(todo, "DUE", _when(values.get("scheduled_end"), False, None))
    state, status = values.get("state"), values.get("task_status")
    ical_status = ("CANCELLED" if state == "canceled" else
                   "COMPLETED" if state == "completed" or status == "completed" else
                   "IN-PROCESS" if status == "in_progress" else "NEEDS-ACTION")
    _set(todo, "STATUS", ical_status)
    _set(todo, "PERCENT-COMPLETE", values.get("percent_complete"))
    priority = {"high": 1, "normal": 5, "low": 9}.get(values.get("priority") or "normal", 5)
    _set(todo, "PRIORITY", priority)
    _set(todo, "COMPLETED", _when(values.get("actual_end"), False, None)
         if ical_status == "COMPLETED" else None)
    return serialize(calendar).decode()
