"""iCalendar TEXT and vCard values with backslashes, semicolons, commas and line breaks come
back as they went, through every writer and reader pair (``server.ical_text``):
a Windows path such as ``C:\\Notes`` once came back as ``C:`` and a newline."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st
from icalendar import Calendar, Event

from server.sync.connectors.graph_ical import event_to_ical, ical_to_event, ical_to_task, task_to_ical, to_graph_time
from server import ical_text
from server.sync.items import calendar, vcard
from server.sync.mail import invitations

# Text rich in what escaping is about, besides any other character.
TRICKY = st.sampled_from(["\\", "N", "n", ";", ",", ":", "\r", "\n", "\r\n", "\\N", "\\n", '"', " "])
# (icalendar drops a U+FEFF, taking it for a byte order mark: not an escaping matter.)
TEXT = st.lists(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\ufeff") | TRICKY,
                min_size=1, max_size=40).map("".join)
# A category is one name in a list: no line break, and (in the CRM, which keeps them as one
# comma-joined string) no comma.
NAME = st.lists(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"),
                              blacklist_characters=",\ufeff") | st.sampled_from(["\\", "N", ";", ":", "\\N"]),
                min_size=1, max_size=20).map("".join).map(str.strip).filter(bool)
PATHS = ["\\\\fileserver\\New folder", "C:\\Notes", "\\N", "a\\\\N", "x\\", "\\n;\\,"]
START = datetime(2030, 1, 7, 9, tzinfo=timezone.utc)
END = datetime(2030, 1, 7, 10, tzinfo=timezone.utc)


def lines(text: str) -> str:
    """What a TEXT value holds once read: its line breaks as LF (TEXT has one kind)."""
    return re.sub(r"\r\n?", "\n", text)


@given(TEXT)
def test_escaping_is_undone_by_unescaping(text):
    escaped = ical_text.escape(text)
    assert "\r" not in escaped and "\n" not in escaped
    assert re.fullmatch(r"(?:[^\\;,]|\\[\\;,n])*", escaped)
    assert ical_text.unescape(escaped) == lines(text)


def test_unknown_escapes_are_left_as_they_are():
    assert ical_text.unescape(r"a\:b\q\\N\N") == "a\\:b\\q\\N\n"


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT, st.lists(NAME, max_size=3))
def test_text_added_with_icalendar_survives_serialize_and_parse(summary, place, html, names):
    cal, event = Calendar(), Event()
    event.add("summary", summary)
    event.add("location", place)
    event.add("x-alt-desc", html, parameters={"FMTTYPE": "text/html"})
    if names:
        event.add("categories", names)
    cal.add_component(event)
    text = ical_text.serialize(cal)
    back = ical_text.parse(text).walk("VEVENT")[0]
    assert (str(back["SUMMARY"]), str(back["LOCATION"]), str(back["X-ALT-DESC"])) == \
        (lines(summary), lines(place), lines(html))
    assert [str(c) for c in back["CATEGORIES"].cats] == names if names else "CATEGORIES" not in back
    assert ical_text.serialize(ical_text.parse(text)) == text  # read and written again: the same
    assert text == cal.to_ical()  # folded as icalendar folds (its lines short or long)
    assert (str(event["SUMMARY"]), str(event["X-ALT-DESC"])) == (lines(summary), lines(html))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(["a", "é", "€", "😀", ";", "\\", " "]), min_size=60, max_size=90)
       .map("".join))
def test_long_lines_are_folded_as_icalendar_folds_them(summary):
    """Around the 75-octet fold, in characters of one to four octets; with parameters and a
    VTIMEZONE (values icalendar writes as str) too."""
    cal, event = Calendar(), Event()
    event.add("summary", summary)
    event.add("attendee", ical_text.person("a@example.com", summary))
    event.add("dtstart", datetime(2030, 3, 31, 9, tzinfo=ZoneInfo("Europe/Berlin")))
    cal.add_component(event)
    cal.add_missing_timezones()
    text = ical_text.serialize(cal)
    assert text == cal.to_ical()
    assert str(ical_text.parse(text).walk("VEVENT")[0]["SUMMARY"]) == summary


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT, st.lists(NAME, max_size=3))
def test_a_graph_event_keeps_its_text(subject, place, body, names):
    event = {"id": "AAMkE1", "iCalUId": "uid-1", "subject": subject, "isAllDay": False,
             "start": to_graph_time(START), "end": to_graph_time(END),
             "location": {"displayName": place}, "categories": names,
             "body": {"contentType": "text", "content": body}}
    back, _, _ = ical_to_event(event_to_ical(event))
    assert (back["subject"], back["location"]["displayName"], back["body"]["content"],
            back["categories"]) == (lines(subject), lines(place), lines(body), names)
    html = {**event, "body": {"contentType": "html", "content": f"<p>{body}</p>"}}
    assert ical_to_event(event_to_ical(html))[0]["body"] == {
        "contentType": "html", "content": f"<p>{lines(body)}</p>"}


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, st.lists(NAME, max_size=3))
def test_a_graph_task_keeps_its_text(title, body, names):
    task = {"id": "AAMkT1", "title": title, "body": {"contentType": "text", "content": body},
            "status": "notStarted", "categories": names}
    back = ical_to_task(task_to_ical(task))
    assert (back["title"], back["body"]["content"], back["categories"]) == \
        (lines(title), lines(body), names)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT, st.lists(NAME, max_size=3, unique=True))
def test_a_caldav_event_keeps_its_text_and_its_changed_occurrence_too(subject, place, notes, names):
    override = {"recurrence_id": "2030-01-14T09:00:00Z", "start": "2030-01-14T10:00:00Z",
                "end": "2030-01-14T11:00:00Z", "subject": subject, "location": place,
                "description": notes, "state": "open"}
    values = {"subject": subject, "location": place, "description": notes,
              "scheduled_start": START, "scheduled_end": END, "categories": ",".join(names),
              "recurrence_rule": "FREQ=WEEKLY;COUNT=5",
              "recurrence_exceptions": {"exdates": [], "overrides": [override]},
              "parties": [{"role": "organizer", "address": "ann@contoso.test", "name": place}]}
    text = calendar.write_event(values, "uid-1")
    back = calendar.read_event(text)
    assert (back["subject"], back["location"], back["description"]) == \
        (lines(subject), lines(place), lines(notes))
    assert back["categories"] == (",".join(names) or None)
    [again] = back["recurrence_exceptions"]["overrides"]
    assert (again["subject"], again["location"], again["description"]) == \
        (lines(subject), lines(place), lines(notes))
    # Written over its own text (the server's copy): what it kept is not spoiled either.
    assert calendar.read_event(calendar.write_event(back, "uid-1", base=text))["location"] == lines(place)


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT)
def test_a_caldav_task_keeps_its_text(subject, notes):
    back = calendar.read_task(calendar.write_task({"subject": subject, "description": notes}, "t-1"))
    assert (back["subject"], back["description"]) == (lines(subject), lines(notes))


@settings(max_examples=200, deadline=None)
@given(TEXT, TEXT, TEXT, TEXT, st.lists(NAME, max_size=3))
def test_a_vcard_contact_keeps_its_text(last, company, notes, street, names):
    values = {"first_name": "Ann", "last_name": last, "full_name": f"Ann {last}",
              "company_name": company, "description": notes, "street": street,
              "city": "C:\\Notes"}
    text = vcard.write_contact(values, "c-1", categories=names)
    back = vcard.read_contact(text)
    assert back["full_name"] == lines(f"Ann {last}")
    assert back["last_name"] == lines(last)
    # NOTE is read stripped, the parts of ORG and ADR as they are
    assert back["description"] == (lines(notes).strip() or None)
    for key in ("company_name", "street", "city"):
        assert back[key] == lines(values[key]), key
    assert vcard.categories_of(text) == names


def test_a_tnef_meeting_and_an_invitation_keep_a_windows_path():
    from tests.sync import outlook_files
    import tnefparse
    from server.sync.mail.tnef_meeting import calendar_of
    for place in PATHS:
        stream = outlook_files.meeting_tnef("IPM.Schedule.Meeting.Request", place, START, END,
                                            b"\x04id", location=place)
        meeting = invitations.read(calendar_of(tnefparse.TNEF(stream)))
        assert (meeting.title, meeting.location) == (place, place)


def test_every_icalendar_text_goes_through_ical_text():
    """No module parses or writes a calendar with icalendar's own TEXT escaping."""
    root = Path(calendar.__file__).parents[2]
    for path in root.rglob("*.py"):
        if path.name == "ical_text.py":
            continue
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"Calendar\.from_ical|(?:cal|calendar|event|todo)\.to_ical\(", source), path
