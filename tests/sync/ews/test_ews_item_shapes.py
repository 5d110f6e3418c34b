"""Hypothesis round trips of the EWS item store's pure mapping: an Outlook event (single or
a series of any pattern and range), contact or task in Graph's shape, set on exchangelib's
CalendarItem, Contact or Task as the store writes it and read back as the store reads it,
gives the same fields (what Exchange cannot hold aside: a relative monthly or yearly rule
is on one day or a day group; a contact has at most three email addresses and two business
and two home phones)."""
from __future__ import annotations

from exchangelib import CalendarItem, Contact, Task
from hypothesis import given, settings
from hypothesis import strategies as st

from server.sync.connectors.ews_items import (contact_fields, contact_shape, event_fields,
                                              event_shape, task_fields, task_shape)
from tests.sync.graph.test_item_translation import COMPARED, _normal, contacts, events, tasks


def _exchange_can_hold(event: dict) -> bool:
    pattern = (event.get("recurrence") or {}).get("pattern") or {}
    days = pattern.get("daysOfWeek") or []
    return not (pattern.get("type", "").startswith("relative") and len(days) > 1)


@settings(max_examples=100, deadline=None)
@given(events().filter(_exchange_can_hold))
def test_an_event_round_trips_through_a_calendar_item(event):
    item = CalendarItem(id=event["id"], uid=event["iCalUId"], **event_fields(event))
    back = event_shape(item)
    wanted = _normal(event)
    wanted["organizer"] = None  # Exchange sets the organizer: it is not written
    if wanted["recurrence"] and wanted["recurrence"]["pattern"]["type"].endswith("Yearly"):
        wanted["recurrence"]["pattern"]["interval"] = 1  # Exchange's yearly rules have none
    got = _normal(back)
    got["organizer"] = None
    for side in (got, wanted):  # Exchange keeps required, optional and resources apart
        side["attendees"] = sorted(side["attendees"], key=lambda a: (a["type"], str(a)))
    if not event.get("body"):
        got["body"] = None
    assert {k: got[k] for k in COMPARED} == {k: wanted[k] for k in COMPARED}


@settings(max_examples=100, deadline=None)
@given(contacts())
def test_a_contact_round_trips_through_an_exchange_contact(contact):
    back = contact_shape(Contact(id=contact["id"], **contact_fields(contact)))
    wanted = dict(contact)
    wanted["emailAddresses"] = wanted["emailAddresses"][:3]
    wanted["businessPhones"] = wanted["businessPhones"][:2]
    wanted["homePhones"] = wanted["homePhones"][:2]
    for field in ("title", "businessAddress", "homeAddress", "otherAddress"):
        wanted.pop(field)
        back.pop(field, None)
    assert {k: back.get(k) for k in wanted} == wanted


@settings(max_examples=100, deadline=None)
@given(tasks())
def test_a_task_round_trips_through_an_exchange_task(task):
    back = task_shape(Task(id=task["id"], **task_fields(task)))
    for field in ("completedDateTime", "reminderDateTime", "isReminderOn"):
        task.pop(field, None)
        back.pop(field, None)
    if not task["body"]["content"]:
        task.pop("body")
    assert back == {k: v for k, v in task.items() if v is not None}
