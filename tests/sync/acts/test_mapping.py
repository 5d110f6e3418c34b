"""iCalendar and vCard <-> CRM values: generated appointments (series with cancelled and
changed occurrences, all-day, time zones, attendees with answers, reminders, show-as,
sensitivity, categories), tasks and contacts come back as they went; text from other clients
(vCard 3.0, DURATION, floating times) is read; what the CRM does not hold survives a write."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.items.calendar import read_event, read_task, write_event, write_task
from server.sync.items.fields import encode
from server.sync.items.vcard import read_contact, write_contact

# Text as users type it: letters, digits, punctuation the formats escape (, ; \ and newlines).
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zl", "Zp"),
                             include_characters="\n,;\\:\""), min_size=1, max_size=40) \
    .map(str.strip).filter(bool)
MAYBE = st.none() | TEXT
WORD = st.text("abcdefghijklmnopqrstuvwxyz ", min_size=1, max_size=12).map(str.strip).filter(bool)
MOMENT = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2035, 12, 31)) \
    .map(lambda d: d.replace(second=0, microsecond=0, tzinfo=timezone.utc))
ZONES = st.sampled_from([None, "Europe/Berlin", "America/New_York", "Asia/Kolkata", "UTC"])
ADDRESS = st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.test", fullmatch=True)


@st.composite
def appointments(draw):
    all_day = draw(st.booleans())
    start = draw(MOMENT)
    if all_day:
        start = start.replace(hour=0, minute=0)
    end = start + (timedelta(days=draw(st.integers(1, 3))) if all_day
                   else timedelta(minutes=draw(st.integers(0, 600))))
    rule = draw(st.sampled_from([None, "FREQ=DAILY;COUNT=5", "FREQ=WEEKLY;BYDAY=MO,WE",
                                 "FREQ=MONTHLY;INTERVAL=2;UNTIL=20361231T000000Z"]))
    exceptions = None
    if rule:
        step = timedelta(days=1)
        moved = step if all_day else timedelta(hours=1)  # an all-day occurrence moves by days
        exdates = sorted({start + step * n for n in draw(st.sets(st.integers(1, 4), max_size=2))})
        overrides = [{"recurrence_id": start + step * n, "start": start + step * n + moved,
                      "end": end + step * n + moved, "subject": draw(TEXT),
                      "location": draw(MAYBE), "description": None,
                      "state": draw(st.sampled_from(["open", "canceled"]))}
                     for n in sorted(draw(st.sets(st.integers(5, 8), max_size=2)))]
        exceptions = encode({"e": {"exdates": exdates, "overrides": overrides}})["e"]
    organizer = [{"role": "organizer", "address": draw(ADDRESS), "name": draw(st.none() | WORD),
                  "response": None}] if draw(st.booleans()) else []
    attendees = [{"role": draw(st.sampled_from(["required", "optional"])), "address": address,
                  "name": draw(st.none() | WORD),
                  "response": draw(st.sampled_from(["needs-action", "accepted", "declined",
                                                    "tentative"]))}
                 for address in draw(st.lists(ADDRESS, max_size=3, unique=True))]
    return {"subject": draw(TEXT), "location": draw(MAYBE), "description": draw(MAYBE),
            "scheduled_start": start, "scheduled_end": end, "is_all_day": all_day,
            "time_zone": None if all_day else draw(ZONES), "recurrence_rule": rule,
            "recurrence_exceptions": exceptions,
            "reminder_minutes": draw(st.none() | st.integers(0, 2880)),
            "show_as": draw(st.sampled_from(["free", "tentative", "busy", "oof"])),
            "sensitivity": draw(st.sampled_from(["normal", "private", "confidential"])),
            "categories": draw(st.none() | st.lists(WORD, min_size=1, max_size=3, unique=True)
                               .map(",".join)),
            "state": draw(st.sampled_from(["open", "canceled"])),
            "parties": organizer + attendees}


@settings(max_examples=150, deadline=None)
@given(appointments())
def test_appointments_come_back_as_they_went(values):
    text = write_event(values, "uid-1@test")
    back = read_event(text)
    expected = dict(values, time_zone=values["time_zone"] if values["time_zone"] != "UTC"
                    else None)  # UTC is no zone of its own
    assert encode(back) == encode(expected)
    assert read_event(write_event(back, "uid-1@test", base=text)) == back


@st.composite
def tasks(draw):
    state = draw(st.sampled_from(["open", "completed", "canceled"]))
    status = ("completed" if state == "completed" else "not_started" if state == "canceled"
              else draw(st.sampled_from(["not_started", "in_progress"])))
    return {"subject": draw(TEXT), "description": draw(MAYBE),
            "scheduled_start": draw(st.none() | MOMENT), "scheduled_end": draw(st.none() | MOMENT),
            "task_status": status, "percent_complete": draw(st.integers(0, 100)),
            "priority": draw(st.sampled_from(["high", "normal", "low"])), "state": state,
            "actual_end": draw(MOMENT) if state == "completed" else None,
            "reminder_minutes": draw(st.none() | st.integers(0, 600)),
            "sensitivity": draw(st.sampled_from(["normal", "private", "confidential"])),
            "categories": draw(st.none() | WORD)}


@settings(max_examples=100, deadline=None)
@given(tasks())
def test_tasks_come_back_as_they_went(values):
    assert read_task(write_task(values, "t@test")) == values


PHONE = st.from_regex(r"\+?[0-9][0-9 ]{3,14}[0-9]", fullmatch=True)


@st.composite
def contacts(draw):
    first, last = draw(st.none() | TEXT), draw(TEXT)
    emails = draw(st.lists(ADDRESS, max_size=3, unique=True))
    return {"first_name": first, "last_name": last,
            "full_name": " ".join(p for p in (first, last) if p),
            "job_title": draw(MAYBE), "company_name": draw(MAYBE),
            **{f"email{i + 1}": emails[i] if i < len(emails) else None for i in range(3)},
            "phone": draw(st.none() | PHONE), "mobile_phone": draw(st.none() | PHONE),
            "home_phone": draw(st.none() | PHONE), "street": draw(MAYBE), "city": draw(MAYBE),
            "state_province": draw(MAYBE), "postal_code": draw(st.none() | WORD),
            "country": draw(MAYBE),
            "birthday": draw(st.none() | st.dates(date(1900, 1, 1), date(2030, 12, 31))),
            "website": draw(st.none() | st.just("https://example.test/a")),
            "description": draw(MAYBE)}


@settings(max_examples=200, deadline=None)
@given(contacts())
def test_contacts_come_back_as_they_went(values):
    text = write_contact(values, "c@test")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    assert read_contact(text) == values


def test_a_vcard_3_from_another_client_is_read():
    card = ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Dr. Ann Lee\r\nN:Lee;Ann;;Dr.;\r\n"
            "ORG:Contoso Ltd;Sales\r\nTITLE:Buyer\r\nitem1.EMAIL;TYPE=INTERNET:ann@contoso.test\r\n"
            "TEL;TYPE=CELL:+47 900 00 000\r\nTEL;WORK;VOICE:+47 22 00 00 00\r\n"
            "ADR;TYPE=HOME:;;Main St 1;Oslo;;0150;Norway\r\nBDAY:1980-02-29\r\n"
            "NOTE:Met at the fair\\, twice\r\nPHOTO;ENCODING=b;TYPE=JPEG:AAAA\r\nEND:VCARD\r\n")
    values = read_contact(card)
    assert (values["first_name"], values["last_name"], values["company_name"]) == \
        ("Ann", "Lee", "Contoso Ltd")
    assert (values["mobile_phone"], values["phone"], values["city"], values["birthday"]) == \
        ("+47 900 00 000", "+47 22 00 00 00", "Oslo", date(1980, 2, 29))
    assert values["description"] == "Met at the fair, twice"
    rewritten = write_contact(dict(values, job_title="Chief buyer"), "c1", base=card)
    assert "PHOTO;ENCODING=b;TYPE=JPEG:AAAA" in rewritten  # what the CRM does not hold stays
    assert read_contact(rewritten)["job_title"] == "Chief buyer"


def test_an_event_with_duration_and_floating_time_is_read():
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:f@x\r\n"
            "DTSTAMP:20240101T000000Z\r\nDTSTART:20240105T100000\r\nDURATION:PT90M\r\n"
            "SUMMARY:Floating\r\nX-CLIENT-THING:keep me\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    values = read_event(text)
    assert values["scheduled_start"] == datetime(2024, 1, 5, 10, tzinfo=timezone.utc)
    assert values["scheduled_end"] - values["scheduled_start"] == timedelta(minutes=90)
    written = write_event(dict(values, subject="Renamed"), "f@x", base=text)
    assert "X-CLIENT-THING:keep me" in written and read_event(written)["subject"] == "Renamed"
