"""Microsoft Graph events and to-do tasks as iCalendar, and back: the pure translation the
Graph item store (``graph_items``) uses, no HTTP here.

**Events.** One VCALENDAR per series: the series master (or single instance) as a VEVENT
whose UID is Graph's ``iCalUId``; each changed occurrence (``exceptionOccurrences``) as a
VEVENT with the same UID and a RECURRENCE-ID (its ``originalStart``); each cancelled
occurrence (``cancelledOccurrences``, ``OID.{id}.{yyyy-mm-dd}``) as an EXDATE at the
series' start time that day. Times are read in UTC (the store asks ``Prefer:
outlook.timezone="UTC"``) and written in UTC, whatever TZID the iCalendar text had; an
all-day event is a DATE. ``patternedRecurrence`` <-> RRULE: daily, weekly (BYDAY, WKST),
absolute/relative monthly (BYMONTHDAY / BYDAY with BYSETPOS), absolute/relative yearly
(the same with BYMONTH); ranges ``endDate`` (UNTIL), ``numbered`` (COUNT), ``noEnd``. An
RRULE Outlook cannot hold (hourly, BYHOUR, several BYMONTHDAY...) is ``Unrepresentable``.

Fields: subject SUMMARY, body DESCRIPTION (an HTML body also as X-ALT-DESC;FMTTYPE=
text/html, which wins when written back), location LOCATION, organizer ORGANIZER,
attendees ATTENDEE (ROLE from ``type``, PARTSTAT from ``status.response``), ``showAs``
TRANSP and X-MICROSOFT-CDO-BUSYSTATUS, ``sensitivity`` CLASS (``personal`` as
X-PERSONAL), ``importance`` PRIORITY (1, 5, 9), categories CATEGORIES, the reminder a
DISPLAY VALARM ``-PT{n}M``, ``isCancelled`` STATUS:CANCELLED.

**Tasks.** A todoTask as one VTODO whose UID is the task's id (Graph keeps no UID of its
own): title SUMMARY, body DESCRIPTION, ``startDateTime`` DTSTART and ``dueDateTime`` DUE
(dates), ``status`` STATUS and PERCENT-COMPLETE (notStarted NEEDS-ACTION 0, inProgress and
waitingOnOthers IN-PROCESS 50, completed COMPLETED 100, deferred NEEDS-ACTION), completed
COMPLETED, importance PRIORITY, categories, the reminder an absolute VALARM.
"""
from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

from dateutil.rrule import rrulestr
from icalendar import Alarm, Calendar, Event, Todo, vCalAddress

from server.ical_text import parse, person, serialize

PRODID = "-//Regarding//Microsoft Graph//EN"
DAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
BYDAY = {d: d[:2].upper() for d in DAYS}
DAY_OF = {v: k for k, v in BYDAY.items()}
INDEX = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
INDEX_OF = {v: k for k, v in INDEX.items()}
PARTSTAT = {"accepted": "ACCEPTED", "declined": "DECLINED",
            "tentativelyAccepted": "TENTATIVE", "organizer": "ACCEPTED",
            "none": "NEEDS-ACTION", "notResponded": "NEEDS-ACTION"}
RESPONSE = {"ACCEPTED": "accepted", "DECLINED": "declined", "TENTATIVE": "tentativelyAccepted",
            "NEEDS-ACTION": "notResponded"}
ROLE = {"required": "REQ-PARTICIPANT", "optional": "OPT-PARTICIPANT",
        "resource": "NON-PARTICIPANT"}
ATTENDEE_TYPE = {v: k for k, v in ROLE.items()} | {"CHAIR": "required"}
CLASS = {"normal": "PUBLIC", "private": "PRIVATE", "confidential": "CONFIDENTIAL",
         "personal": "X-PERSONAL"}
SENSITIVITY = {v: k for k, v in CLASS.items()}
BUSY = {"free": "FREE", "tentative": "TENTATIVE", "busy": "BUSY", "oof": "OOF",
        "workingElsewhere": "WORKINGELSEWHERE", "unknown": "BUSY"}
SHOW_AS = {v: k for k, v in BUSY.items() if k != "unknown"}
PRIORITY = {"high": 1, "normal": 5, "low": 9}
TASK_STATUS = {"notStarted": ("NEEDS-ACTION", 0), "inProgress": ("IN-PROCESS", 50),
               "waitingOnOthers": ("IN-PROCESS", 50), "completed": ("COMPLETED", 100),
               "deferred": ("NEEDS-ACTION", 0)}


class Unrepresentable(ValueError):
    """iCalendar that Outlook cannot hold (an RRULE beyond patternedRecurrence)."""


# --------------------------------------------------------------------------- times

def graph_time(value: dict | None) -> datetime | None:
    """A Graph ``dateTimeTimeZone`` read in UTC ("2024-05-01T09:00:00.0000000") as aware."""
    if not value or not value.get("dateTime"):
        return None
    text = str(value["dateTime"])[:19]
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=timezone.utc)


def to_graph_time(value: datetime | date) -> dict:
    if not isinstance(value, datetime):
        value = datetime.combine(value, time())
    elif value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _utc(value) -> datetime | date:
    """An iCalendar value as a UTC datetime (floating times taken as UTC), or a date."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value


def _text(component, name: str) -> str | None:
    value = component.get(name)
    return None if value is None else str(value)


def _categories(component) -> list[str]:
    found = component.get("CATEGORIES")
    if found is None:
        return []
    return [str(cat) for prop in (found if isinstance(found, list) else [found])
            for cat in prop.cats]


def _calendar() -> Calendar:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    return cal


def _body(component, item: dict) -> None:
    body = item.get("body") or {}
    content = body.get("content") or ""
    if not content:
        return
    if body.get("contentType") == "html":
        component.add("x-alt-desc", content, parameters={"FMTTYPE": "text/html"})
        content = _plain(content)
    component.add("description", content)


def _plain(html: str) -> str:
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", "", html)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"&nbsp;", " ", text).replace("&lt;", "<").replace("&gt;", ">") \
        .replace("&amp;", "&").strip()


def _read_body(component) -> dict | None:
    alt = component.get("X-ALT-DESC")
    if alt is not None and str(alt.params.get("FMTTYPE", "")).lower() == "text/html":
        return {"contentType": "html", "content": str(alt)}
    text = _text(component, "DESCRIPTION")
    return {"contentType": "text", "content": text} if text is not None else None


# --------------------------------------------------------------------------- recurrence

def rrule_of(recurrence: dict, start: datetime | date, all_day: bool) -> dict:
    """A Graph ``patternedRecurrence`` as the parts of an RRULE."""
    pattern, span = recurrence.get("pattern") or {}, recurrence.get("range") or {}
    kind = pattern.get("type")
    rule: dict = {"INTERVAL": [int(pattern.get("interval") or 1)]}
    days = [BYDAY[d] for d in pattern.get("daysOfWeek") or []]
    if kind == "daily":
        rule["FREQ"] = ["DAILY"]
    elif kind == "weekly":
        rule["FREQ"], rule["BYDAY"] = ["WEEKLY"], days
        rule["WKST"] = [BYDAY[pattern.get("firstDayOfWeek") or "sunday"]]
    elif kind in ("absoluteMonthly", "absoluteYearly"):
        rule["FREQ"] = ["MONTHLY" if kind == "absoluteMonthly" else "YEARLY"]
        rule["BYMONTHDAY"] = [int(pattern.get("dayOfMonth") or start.day)]
    elif kind in ("relativeMonthly", "relativeYearly"):
        rule["FREQ"] = ["MONTHLY" if kind == "relativeMonthly" else "YEARLY"]
        rule["BYDAY"], rule["BYSETPOS"] = days, [INDEX[pattern.get("index") or "first"]]
    else:
        raise Unrepresentable(f"unknown recurrence pattern {kind!r}")
    if kind.endswith("Yearly"):
        rule["BYMONTH"] = [int(pattern.get("month") or start.month)]
    if span.get("type") == "numbered":
        rule["COUNT"] = [int(span.get("numberOfOccurrences") or 1)]
    elif span.get("type") == "endDate" and span.get("endDate"):
        end = date.fromisoformat(span["endDate"])
        rule["UNTIL"] = [end if all_day else
                         datetime.combine(end, time(23, 59, 59), tzinfo=timezone.utc)]
    return rule


def recurrence_of(rule: dict, start: datetime | date) -> dict:
    """An RRULE (icalendar's ``vRecur``) as a Graph ``patternedRecurrence``."""
    rule = {k.upper(): v if isinstance(v, list) else [v] for k, v in rule.items()}
    freq = str(rule.get("FREQ", [""])[0]).upper()
    allowed = {"FREQ", "INTERVAL", "BYDAY", "WKST", "BYMONTHDAY", "BYSETPOS", "BYMONTH",
               "COUNT", "UNTIL"}
    if set(rule) - allowed or freq not in ("DAILY", "WEEKLY", "MONTHLY", "YEARLY"):
        raise Unrepresentable(f"Outlook cannot repeat an event by {sorted(set(rule) - allowed) or freq}")
    pattern: dict = {"interval": int(rule.get("INTERVAL", [1])[0])}
    days, setpos = [], rule.get("BYSETPOS")
    for value in rule.get("BYDAY", []):
        match = re.fullmatch(r"([+-]?\d)?([A-Z]{2})", str(value).upper())
        if not match or match.group(2) not in DAY_OF:
            raise Unrepresentable(f"BYDAY={value}")
        if match.group(1):
            if setpos and int(setpos[0]) != int(match.group(1)):
                raise Unrepresentable(f"BYDAY={value} with BYSETPOS")
            setpos = [int(match.group(1))]
        days.append(DAY_OF[match.group(2)])
    if len(rule.get("BYMONTHDAY", [])) > 1 or len(rule.get("BYMONTH", [])) > 1 or \
            (setpos and (len(setpos) > 1 or int(setpos[0]) not in INDEX_OF)):
        raise Unrepresentable("more than one month, day of month or position")
    if freq == "DAILY" and not days:
        pattern["type"] = "daily"
    elif freq in ("DAILY", "WEEKLY"):
        if freq == "DAILY" and pattern["interval"] != 1:
            raise Unrepresentable("a daily rule on some days with an interval")
        pattern["type"], pattern["daysOfWeek"] = "weekly", days or [DAYS[start.weekday()]]
        pattern["firstDayOfWeek"] = DAY_OF.get(str(rule.get("WKST", ["SU"])[0]).upper(), "sunday")
    else:
        yearly = freq == "YEARLY"
        if yearly:
            pattern["month"] = int(rule.get("BYMONTH", [start.month])[0])
        if days:
            pattern["type"] = "relativeYearly" if yearly else "relativeMonthly"
            pattern["daysOfWeek"] = days
            pattern["index"] = INDEX_OF[int(setpos[0]) if setpos else 1]
        else:
            pattern["type"] = "absoluteYearly" if yearly else "absoluteMonthly"
            pattern["dayOfMonth"] = int(rule.get("BYMONTHDAY", [start.day])[0])
    first = start.date() if isinstance(start, datetime) else start
    span: dict = {"type": "noEnd", "startDate": first.isoformat(), "recurrenceTimeZone": "UTC"}
    if "COUNT" in rule:
        span["type"], span["numberOfOccurrences"] = "numbered", int(rule["COUNT"][0])
    elif "UNTIL" in rule:
        until = rule["UNTIL"][0]
        until = _utc(until).date() if isinstance(until, datetime) else until
        span["type"], span["endDate"] = "endDate", until.isoformat()
    return {"pattern": pattern, "range": span}


# --------------------------------------------------------------------------- events

def _event_component(item: dict, uid: str) -> Event:
    event = Event()
    event.add("uid", uid)
    all_day = bool(item.get("isAllDay"))
    start, end = graph_time(item.get("start")), graph_time(item.get("end"))
    if start is not None:
        event.add("dtstart", start.date() if all_day else start)
    if end is not None:
        event.add("dtend", end.date() if all_day else end)
    if item.get("lastModifiedDateTime"):
        event.add("dtstamp", datetime.fromisoformat(item["lastModifiedDateTime"].replace("Z", "+00:00")))
    if item.get("subject") is not None:
        event.add("summary", item["subject"])
    _body(event, item)
    place = (item.get("location") or {}).get("displayName")
    if place:
        event.add("location", place)
    organizer = ((item.get("organizer") or {}).get("emailAddress") or {})
    if organizer.get("address"):
        event.add("organizer", _address(organizer))
    for attendee in item.get("attendees") or []:
        email = attendee.get("emailAddress") or {}
        if not email.get("address"):
            continue
        address = _address(email)
        address.params["ROLE"] = ROLE.get(attendee.get("type") or "required", "REQ-PARTICIPANT")
        if attendee.get("type") == "resource":
            address.params["CUTYPE"] = "RESOURCE"
        response = ((attendee.get("status") or {}).get("response")) or "none"
        address.params["PARTSTAT"] = PARTSTAT.get(response, "NEEDS-ACTION")
        event.add("attendee", address, encode=0)
    show_as = item.get("showAs")
    if show_as:
        event.add("transp", "TRANSPARENT" if show_as == "free" else "OPAQUE")
        event.add("x-microsoft-cdo-busystatus", BUSY.get(show_as, "BUSY"))
    if item.get("sensitivity"):
        event.add("class", CLASS.get(item["sensitivity"], "PUBLIC"))
    if item.get("importance"):
        event.add("priority", PRIORITY.get(item["importance"], 5))
    if item.get("categories"):
        event.add("categories", list(item["categories"]))
    if item.get("isCancelled"):
        event.add("status", "CANCELLED")
    if item.get("isReminderOn") and item.get("reminderMinutesBeforeStart") is not None:
        _add_alarm(event, timedelta(minutes=-int(item["reminderMinutesBeforeStart"])))
    return event


def _address(email: dict) -> vCalAddress:
    return person(email["address"], email.get("name"))


def cancelled_dates(master: dict) -> list[date]:
    """The days of a series' cancelled occurrences (``OID.{id}.{yyyy-mm-dd}``)."""
    out = []
    for value in master.get("cancelledOccurrences") or []:
        match = re.search(r"(\d{4}-\d{2}-\d{2})$", str(value))
        if match:
            out.append(date.fromisoformat(match.group(1)))
    return sorted(set(out))


def event_to_ical(master: dict) -> str:
    """A Graph event (single instance or series master, with ``exceptionOccurrences`` and
    ``cancelledOccurrences`` when a series) as iCalendar text."""
    return event_calendar(master)[0]


def event_calendar(master: dict) -> tuple[str, Calendar]:
    """A Graph event as iCalendar text and the calendar it was serialized from (which reads
    as the text parsed does: ``ical_text.serialize``)."""
    uid = master.get("iCalUId") or master["id"]
    cal = _calendar()
    event = _event_component(master, uid)
    start = graph_time(master.get("start"))
    all_day = bool(master.get("isAllDay"))
    if master.get("recurrence") and start is not None:
        event.add("rrule", rrule_of(master["recurrence"], start, all_day))
        days = cancelled_dates(master)
        if days:
            event.add("exdate", [day if all_day else datetime.combine(day, start.timetz())
                                 for day in days])
    cal.add_component(event)
    for exception in master.get("exceptionOccurrences") or []:
        original = exception.get("originalStart")
        if not original:
            continue
        component = _event_component(exception, uid)
        when = datetime.fromisoformat(original.replace("Z", "+00:00")).astimezone(timezone.utc)
        component.add("recurrence-id", when.date() if all_day else when)
        cal.add_component(component)
    return serialize(cal).decode(), cal


def _event_json(event) -> dict:
    start, end = event.get("DTSTART"), event.get("DTEND")
    start_value = _utc(start.dt) if start is not None else None
    all_day = start_value is not None and not isinstance(start_value, datetime)
    item: dict = {"isAllDay": all_day}
    if start_value is not None:
        item["start"] = to_graph_time(start_value)
        if end is not None:
            end_value = _utc(end.dt)
        elif event.get("DURATION") is not None:
            end_value = start_value + event["DURATION"].dt
        else:
            end_value = start_value + (timedelta(days=1) if all_day else timedelta())
        item["end"] = to_graph_time(end_value)
    item["subject"] = _text(event, "SUMMARY") or ""
    body = _read_body(event)
    if body is not None:
        item["body"] = body
    item["location"] = {"displayName": _text(event, "LOCATION") or ""}
    organizer = event.get("ORGANIZER")
    if organizer is not None:
        item["organizer"] = {"emailAddress": _email(organizer)}
    attendees = event.get("ATTENDEE") or []
    item["attendees"] = []
    for attendee in attendees if isinstance(attendees, list) else [attendees]:
        email = _email(attendee)
        if not email.get("address"):
            continue
        kind = "resource" if str(attendee.params.get("CUTYPE", "")).upper() == "RESOURCE" else \
            ATTENDEE_TYPE.get(str(attendee.params.get("ROLE", "REQ-PARTICIPANT")).upper(), "required")
        response = RESPONSE.get(str(attendee.params.get("PARTSTAT", "NEEDS-ACTION")).upper(),
                                "notResponded")
        item["attendees"].append({"type": kind, "emailAddress": email,
                                  "status": {"response": response}})
    busy = _text(event, "X-MICROSOFT-CDO-BUSYSTATUS")
    transp = (_text(event, "TRANSP") or "OPAQUE").upper()
    item["showAs"] = SHOW_AS.get((busy or "").upper()) or ("free" if transp == "TRANSPARENT" else "busy")
    item["sensitivity"] = SENSITIVITY.get((_text(event, "CLASS") or "PUBLIC").upper(), "normal")
    if event.get("PRIORITY") is not None:
        item["importance"] = _importance(event)
    item["categories"] = _categories(event)
    before = _trigger(event, timedelta)
    item["isReminderOn"] = before is not None
    if before is not None:
        item["reminderMinutesBeforeStart"] = max(0, int(-before.total_seconds() // 60))
    return item


def _importance(component) -> str:
    value = int(component.get("PRIORITY") or 0)
    return "high" if 1 <= value <= 4 else "low" if value >= 6 else "normal"


def _trigger(component, kind: type):
    """The TRIGGER of a component's first alarm whose trigger is a ``kind`` (timedelta:
    relative, datetime: absolute), or None."""
    for alarm in component.walk("VALARM"):
        trigger = alarm.get("TRIGGER")
        if trigger is not None and isinstance(trigger.dt, kind):
            return trigger.dt
    return None


def _add_alarm(component, trigger) -> None:
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("description", "Reminder")
    alarm.add("trigger", trigger)
    component.add_component(alarm)


def _email(address) -> dict:
    value = str(address)
    out = {"address": value[7:] if value.lower().startswith("mailto:") else value}
    if address.params.get("CN"):
        out["name"] = str(address.params["CN"])
    return out


def ical_to_event(text: str) -> tuple[dict, list[tuple[datetime | date, dict]], list[datetime | date]]:
    """iCalendar text as (the Graph event to write, with ``recurrence`` when a series;
    its overridden occurrences as (RECURRENCE-ID in UTC, event fields); the EXDATEs in UTC).
    ``ValueError`` when it holds no VEVENT; ``Unrepresentable`` for an RRULE Outlook lacks."""
    cal = parse(text)
    events = cal.walk("VEVENT")
    masters = [e for e in events if e.get("RECURRENCE-ID") is None]
    if not masters:
        raise ValueError("the iCalendar text holds no VEVENT")
    master = masters[0]
    item = _event_json(master)
    uid = _text(master, "UID")
    if uid:
        item["transactionId"] = uid[:255]
    exdates: list = []
    rule = master.get("RRULE")
    if rule is not None:
        start = _utc(master["DTSTART"].dt)
        item["recurrence"] = recurrence_of(dict(rule), start)
        found = master.get("EXDATE") or []
        for entry in found if isinstance(found, list) else [found]:
            exdates.extend(_utc(d.dt) for d in entry.dts)
    overrides = [(_utc(e["RECURRENCE-ID"].dt), _event_json(e)) for e in events
                 if e.get("RECURRENCE-ID") is not None]
    return item, overrides, sorted(exdates, key=str)


def occurrence_numbers(text: str, moments: list) -> dict:
    """The 1-based position of each of ``moments`` (RECURRENCE-IDs or EXDATEs in UTC, as
    ``ical_to_event`` gives them) among the series' occurrences as its RRULE makes them
    (what EWS calls an occurrence's InstanceIndex); a moment that is no occurrence is left
    out."""
    master = next(e for e in parse(text).walk("VEVENT")
                  if e.get("RECURRENCE-ID") is None)
    start = _utc(master["DTSTART"].dt)
    all_day = not isinstance(start, datetime)
    first = datetime.combine(start, time()) if all_day else start
    rule = rrulestr(master["RRULE"].to_ical().decode(), dtstart=first)
    wanted = {(datetime.combine(m, time()) if not isinstance(m, datetime) else m): m
              for m in moments}
    last = max(wanted, default=first)
    found = {}
    for number, when in enumerate(rule, start=1):
        if when > last or number > 5000:
            break
        if when in wanted:
            found[wanted[when]] = number
    return found


def ical_uid(text: str) -> str | None:
    for component in parse(text).walk():
        if component.name in ("VEVENT", "VTODO") and component.get("UID") is not None:
            return str(component["UID"])
    return None


# --------------------------------------------------------------------------- tasks

def task_to_ical(task: dict, percent: int | None = None) -> str:
    """``percent``: the percent complete where the server keeps one (Exchange Server's
    tasks); else it is read from the status (To Do keeps none)."""
    cal = _calendar()
    todo = Todo()
    todo.add("uid", task["id"])
    todo.add("summary", task.get("title") or "")
    _body(todo, task)
    for name, field in (("dtstart", "startDateTime"), ("due", "dueDateTime")):
        value = graph_time(task.get(field))
        if value is not None:
            todo.add(name, value.date())
    status, said = TASK_STATUS.get(task.get("status") or "notStarted", ("NEEDS-ACTION", 0))
    todo.add("status", status)
    todo.add("percent-complete", said if percent is None else percent)
    completed = graph_time(task.get("completedDateTime"))
    if completed is not None:
        todo.add("completed", completed)
    if task.get("importance"):
        todo.add("priority", PRIORITY.get(task["importance"], 5))
    if task.get("categories"):
        todo.add("categories", list(task["categories"]))
    reminder = graph_time(task.get("reminderDateTime"))
    if task.get("isReminderOn") and reminder is not None:
        _add_alarm(todo, reminder)
    cal.add_component(todo)
    return serialize(cal).decode()


def ical_to_task(text: str) -> dict:
    """iCalendar text (one VTODO) as the Graph todoTask fields to write."""
    todos = parse(text).walk("VTODO")
    if not todos:
        raise ValueError("the iCalendar text holds no VTODO")
    todo = todos[0]
    task: dict = {"title": _text(todo, "SUMMARY") or ""}
    body = _read_body(todo)
    task["body"] = body or {"contentType": "text", "content": ""}
    for name, field in (("DTSTART", "startDateTime"), ("DUE", "dueDateTime")):
        value = todo.get(name)
        task[field] = to_graph_time(_day(value.dt)) if value is not None else None
    status = (_text(todo, "STATUS") or "").upper()
    percent = int(todo.get("PERCENT-COMPLETE") or 0)
    if status == "COMPLETED" or percent >= 100:
        task["status"] = "completed"
    elif status == "IN-PROCESS" or percent > 0:
        task["status"] = "inProgress"
    else:
        task["status"] = "notStarted"
    completed = todo.get("COMPLETED")
    if completed is not None and task["status"] == "completed":
        task["completedDateTime"] = to_graph_time(_utc(completed.dt))
    task["importance"] = _importance(todo)
    task["categories"] = _categories(todo)
    when = _trigger(todo, datetime)
    task["isReminderOn"] = when is not None
    if when is not None:
        task["reminderDateTime"] = to_graph_time(_utc(when))
    return task


def task_percent(text: str) -> int | None:
    """A VTODO's PERCENT-COMPLETE (None: it says none), for a server that keeps it
    (Exchange Server's tasks)."""
    todos = parse(text).walk("VTODO")
    said = todos[0].get("PERCENT-COMPLETE") if todos else None
    return None if said is None else min(100, max(0, int(said)))


def _day(value) -> date:
    return _utc(value).date() if isinstance(value, datetime) else value
