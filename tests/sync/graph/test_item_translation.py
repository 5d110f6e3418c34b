"""Hypothesis round trips of the pure Graph translation: a Graph event (single or a series of
any pattern and range, with changed and cancelled occurrences), contact or to-do task
written as iCalendar or vCard and read back gives the same Graph fields; an RRULE Outlook
can hold survives the trip through patternedRecurrence; the calendar an event's text was
written from reads as that text does (the core reads it instead of parsing the text)."""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.connectors.graph_ical import (DAYS, INDEX, event_calendar, event_to_ical,
                                               ical_to_event, ical_to_task, recurrence_of,
                                               rrule_of, task_to_ical, to_graph_time)
from server.sync.connectors.graph_vcard import contact_to_vcard, vcard_to_contact
from server.sync.items import calendar

TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=30)
WORD = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
               max_size=20)
LINES = st.lists(TEXT, max_size=3).map("\n".join)
EMAIL = st.from_regex(r"[a-z][a-z0-9.]{0,10}@[a-z]{1,10}\.example", fullmatch=True)
WHEN = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=timezone.utc))


@st.composite
def recurrences(draw, start: datetime) -> dict:
    kind = draw(st.sampled_from(["daily", "weekly", "absoluteMonthly", "relativeMonthly",
                                 "absoluteYearly", "relativeYearly"]))
    pattern: dict = {"interval": draw(st.integers(1, 5)), "type": kind}
    if kind == "weekly":
        pattern["daysOfWeek"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7,
                                              unique=True))
        pattern["firstDayOfWeek"] = draw(st.sampled_from(DAYS))
    if kind.startswith("absolute"):
        pattern["dayOfMonth"] = draw(st.integers(1, 28))
    if kind.startswith("relative"):
        pattern["daysOfWeek"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=3,
                                              unique=True))
        pattern["index"] = draw(st.sampled_from(sorted(INDEX)))
    if kind.endswith("Yearly"):
        pattern["month"] = draw(st.integers(1, 12))
    span: dict = {"type": draw(st.sampled_from(["noEnd", "numbered", "endDate"])),
                  "startDate": start.date().isoformat(), "recurrenceTimeZone": "UTC"}
    if span["type"] == "numbered":
        span["numberOfOccurrences"] = draw(st.integers(1, 500))
    if span["type"] == "endDate":
        span["endDate"] = (start.date() + timedelta(days=draw(st.integers(0, 3000)))).isoformat()
    return {"pattern": pattern, "range": span}


@st.composite
def events(draw) -> dict:
    start = draw(WHEN)
    all_day = draw(st.booleans())
    if all_day:
        start = start.replace(hour=0, minute=0)
    length = timedelta(days=draw(st.integers(1, 3))) if all_day else \
        timedelta(minutes=draw(st.integers(0, 600)))
    event = {
        "id": "AAMkE" + draw(st.from_regex(r"[A-Za-z0-9]{8}", fullmatch=True)),
        "iCalUId": draw(st.from_regex(r"[A-Za-z0-9@.-]{1,40}", fullmatch=True)),
        "subject": draw(TEXT), "isAllDay": all_day,
        "start": to_graph_time(start), "end": to_graph_time(start + length),
        "location": {"displayName": draw(TEXT)},
        "attendees": [{"type": draw(st.sampled_from(["required", "optional", "resource"])),
                       "emailAddress": {"address": a, "name": draw(WORD)},
                       "status": {"response": draw(st.sampled_from(
                           ["accepted", "declined", "tentativelyAccepted", "notResponded"]))}}
                      for a in draw(st.lists(EMAIL, max_size=3, unique=True))],
        "showAs": draw(st.sampled_from(["free", "tentative", "busy", "oof", "workingElsewhere"])),
        "sensitivity": draw(st.sampled_from(["normal", "personal", "private", "confidential"])),
        "importance": draw(st.sampled_from(["low", "normal", "high"])),
        "categories": draw(st.lists(WORD, max_size=3)),
        "isReminderOn": draw(st.booleans()),
    }
    if event["isReminderOn"]:
        event["reminderMinutesBeforeStart"] = draw(st.integers(0, 20000))
    if draw(st.booleans()):
        event["organizer"] = {"emailAddress": {"address": draw(EMAIL), "name": draw(WORD)}}
    body = draw(LINES)
    if body:
        event["body"] = {"contentType": "text", "content": body}
    if draw(st.booleans()):
        event["recurrence"] = draw(recurrences(start))
    return event


COMPARED = ("subject", "isAllDay", "start", "end", "location", "attendees", "showAs",
            "sensitivity", "importance", "categories", "isReminderOn", "organizer", "body",
            "recurrence")


def _normal(event: dict) -> dict:
    out = {k: event.get(k) for k in COMPARED}
    if event.get("isReminderOn"):
        out["reminderMinutesBeforeStart"] = event["reminderMinutesBeforeStart"]
    if out["recurrence"]:
        out["recurrence"] = {"pattern": dict(sorted(out["recurrence"]["pattern"].items())),
                             "range": dict(sorted(out["recurrence"]["range"].items()))}
        if out["recurrence"]["pattern"]["type"] == "weekly":
            days = out["recurrence"]["pattern"]["daysOfWeek"]
            out["recurrence"]["pattern"]["daysOfWeek"] = sorted(days, key=DAYS.index)
    return out


# Text rich in what escaping and quoting are about: line breaks of every kind (a Graph body
# holds CRLF), quotes, backslashes, separators. (No other control character: icalendar reads
# a name that is a lone tab back as empty, whichever way the core reads it.)
TRICKY = st.lists(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff")
                  | st.sampled_from(["\r\n", "\r", "\n", '"', "\\", ";", ",", ":", "^", "\\N"]),
                  max_size=20).map("".join)


@settings(max_examples=80, deadline=None)
@given(events(), st.data())
def test_the_calendar_an_event_was_written_from_reads_as_its_text(event, data):
    """What the core reads from ``Item.parsed`` is what it would read from ``Item.data``:
    a series with changed and cancelled occurrences, any text in its fields and names."""
    start = datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(tzinfo=timezone.utc)
    event["subject"], event["location"]["displayName"] = data.draw(TRICKY), data.draw(TRICKY)
    event["body"] = {"contentType": data.draw(st.sampled_from(["text", "html"])),
                     "content": data.draw(TRICKY)}
    for attendee in event["attendees"]:  # (icalendar reads a backslash before a backslash,
        # comma, colon or semicolon in a parameter as an escape: a name with one loses it in
        # the text, as it always did)
        attendee["emailAddress"]["name"] = data.draw(TRICKY.filter(
            lambda n: not re.search(r"\\[\\,:;]", n)))
    event["categories"] = data.draw(st.lists(TRICKY.map(str.strip).filter(
        lambda c: c and "," not in c and "\r" not in c and "\n" not in c), max_size=3))
    if event.get("recurrence"):
        days = data.draw(st.lists(st.integers(1, 400), min_size=2, max_size=4, unique=True))
        event["cancelledOccurrences"] = [
            f"OID.{event['id']}.{(start + timedelta(days=d)).date().isoformat()}" for d in days[:1]]
        event["exceptionOccurrences"] = [
            {"id": f"occ{d}", "originalStart": (start + timedelta(days=d)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"), "subject": data.draw(TRICKY),
             "isAllDay": event["isAllDay"], "isCancelled": data.draw(st.booleans()),
             "start": to_graph_time(start + timedelta(days=d, hours=1)),
             "end": to_graph_time(start + timedelta(days=d, hours=2))} for d in days[1:]]
    text, built = event_calendar(event)
    assert text == event_to_ical(event)
    assert calendar.read_event(built) == calendar.read_event(text)


@settings(max_examples=150, deadline=None)
@given(events())
def test_an_event_round_trips_through_icalendar(event):
    text = event_to_ical(event)
    back, overrides, exdates = ical_to_event(text)
    assert _normal(back) == _normal(event)
    assert back["transactionId"] == event["iCalUId"] and not overrides and not exdates


@settings(max_examples=60, deadline=None)
@given(events(), st.data())
def test_a_series_keeps_its_changed_and_cancelled_occurrences(event, data):
    start = datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(tzinfo=timezone.utc)
    event["recurrence"] = data.draw(recurrences(start))
    days = data.draw(st.lists(st.integers(1, 400), min_size=1, max_size=4, unique=True))
    cancelled = [start + timedelta(days=d) for d in days[:2]]
    changed = [start + timedelta(days=d) for d in days[2:]]
    event["cancelledOccurrences"] = [f"OID.{event['id']}.{c.date().isoformat()}" for c in cancelled]
    event["exceptionOccurrences"] = [
        {"id": f"occ{n}", "originalStart": c.strftime("%Y-%m-%dT%H:%M:%SZ"),
         "subject": data.draw(TEXT), "isAllDay": event["isAllDay"],
         "start": to_graph_time(c + timedelta(hours=1)), "end": to_graph_time(c + timedelta(hours=2))}
        for n, c in enumerate(changed)]
    back, overrides, exdates = ical_to_event(event_to_ical(event))
    as_day = (lambda d: d.date()) if event["isAllDay"] else (lambda d: d)
    assert sorted(exdates, key=str) == sorted({as_day(c) for c in cancelled}, key=str)
    assert {str(when): fields["subject"] for when, fields in overrides} == \
        {str(as_day(c)): e["subject"] for c, e in zip(changed, event["exceptionOccurrences"])}


PHONE = st.from_regex(r"\+?[0-9][0-9 ]{2,14}[0-9]", fullmatch=True)
ADDRESS = st.fixed_dictionaries({"street": LINES, "city": TEXT, "state": TEXT,
                                 "postalCode": WORD, "countryOrRegion": TEXT})


@st.composite
def contacts(draw) -> dict:
    return {
        "id": "AAMkC" + draw(st.from_regex(r"[A-Za-z0-9]{8}", fullmatch=True)),
        "displayName": draw(WORD), "givenName": draw(TEXT), "surname": draw(TEXT),
        "middleName": draw(TEXT), "title": draw(TEXT), "generation": draw(TEXT),
        "nickName": draw(TEXT), "companyName": draw(TEXT), "department": draw(TEXT),
        "jobTitle": draw(TEXT),
        "emailAddresses": [{"address": a, "name": a} for a in draw(st.lists(EMAIL, max_size=3))],
        "businessPhones": draw(st.lists(PHONE, max_size=2)),
        "homePhones": draw(st.lists(PHONE, max_size=2)), "mobilePhone": draw(PHONE | st.just("")),
        "businessAddress": draw(ADDRESS), "homeAddress": draw(ADDRESS),
        "otherAddress": draw(ADDRESS),
        "birthday": draw(st.none() | st.dates(date(1900, 1, 1), date(2030, 1, 1)).map(
            lambda d: f"{d.isoformat()}T11:59:00Z")),
        "personalNotes": draw(LINES), "categories": draw(st.lists(WORD, max_size=3)),
    }


def _contact(contact: dict) -> dict:
    out = {k: v for k, v in contact.items() if k != "id"}
    if not out.get("companyName") and not out.get("department"):
        out["companyName"] = out["department"] = ""
    for field in ("businessAddress", "homeAddress", "otherAddress"):
        if not any(out[field].values()):
            out[field] = {}
    return out


@settings(max_examples=150, deadline=None)
@given(contacts())
def test_a_contact_round_trips_through_vcard(contact):
    assert _contact(vcard_to_contact(contact_to_vcard(contact))) == _contact(contact)


@st.composite
def tasks(draw) -> dict:
    task = {"id": "AAMkT" + draw(st.from_regex(r"[A-Za-z0-9]{8}", fullmatch=True)),
            "title": draw(TEXT), "body": {"contentType": "text", "content": draw(LINES)},
            "status": draw(st.sampled_from(["notStarted", "inProgress", "completed"])),
            "importance": draw(st.sampled_from(["low", "normal", "high"])),
            "categories": draw(st.lists(WORD, max_size=3)),
            "isReminderOn": draw(st.booleans())}
    for field in ("startDateTime", "dueDateTime"):
        day = draw(st.none() | st.dates(date(2000, 1, 1), date(2090, 1, 1)))
        task[field] = to_graph_time(day) if day else None
    if task["status"] == "completed":
        task["completedDateTime"] = to_graph_time(draw(WHEN))
    if task["isReminderOn"]:
        task["reminderDateTime"] = to_graph_time(draw(WHEN))
    return task


@settings(max_examples=150, deadline=None)
@given(tasks())
def test_a_task_round_trips_through_icalendar(task):
    back = ical_to_task(task_to_ical(task))
    assert back == {k: v for k, v in task.items() if k != "id"}


@settings(max_examples=150, deadline=None)
@given(WHEN, st.booleans(), st.data())
def test_an_outlook_pattern_round_trips_through_rrule(start, all_day, data):
    recurrence = data.draw(recurrences(start))
    rule = rrule_of(recurrence, start.date() if all_day else start, all_day)
    again = recurrence_of(rule, start.date() if all_day else start)
    if recurrence["pattern"]["type"] == "weekly":
        recurrence["pattern"]["daysOfWeek"].sort(key=DAYS.index)
        again["pattern"]["daysOfWeek"].sort(key=DAYS.index)
    assert again == recurrence


def test_a_name_with_a_backslash_keeps_it():
    """icalendar writes a bare parameter for a name without spaces and reads a trailing
    backslash in one as an escape: the name is quoted, so it comes back whole."""
    for name in ("\\", "Ann\\", "A\\B"):
        event = {"id": "AAMkE1", "iCalUId": "uid-1", "subject": "s", "isAllDay": False,
                 "start": to_graph_time(datetime(2030, 1, 5, 10, tzinfo=timezone.utc)),
                 "end": to_graph_time(datetime(2030, 1, 5, 11, tzinfo=timezone.utc)),
                 "organizer": {"emailAddress": {"address": "ann@example.com", "name": name}}}
        back, _, _ = ical_to_event(event_to_ical(event))
        assert back["organizer"] == event["organizer"]
