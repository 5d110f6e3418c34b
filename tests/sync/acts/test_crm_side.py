"""What the CRM side of an appointment sync keeps and sends, against every store: an
attendee added or removed in the CRM (a party, not a field of the appointment's row) reaches
the calendar; a field both sides changed keeps the losing value on the record's history,
shown on its page."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select

from server.crm.activities import ActivityParty, Appointment
from server.crm.history import RecordHistory
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.items.calendar import read_event, write_event
from tests.sync.acts.conftest import event

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def _attendees(store_item) -> set[str]:
    return {p["address"] for p in read_event(store_item.data)["parties"]
            if p["role"] != "organizer"}


def test_an_attendee_added_in_the_crm_reaches_the_calendar(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    meeting = Appointment(subject="Pricing", owner_user_id=ann.id,
                          owning_business_unit_id=ann.business_unit_id,
                          occurred_on=datetime(2030, 1, 7, 9, tzinfo=timezone.utc),
                          scheduled_start=datetime(2030, 1, 7, 9, tzinfo=timezone.utc),
                          scheduled_end=datetime(2030, 1, 7, 10, tzinfo=timezone.utc))
    meeting.parties = [ActivityParty(role="organizer", address=ann.email, user_id=ann.id),
                       ActivityParty(role="required", address="bob@fabrikam.test")]
    db.session.add(meeting)
    db.session.commit()
    sync_items(box.id)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        [item] = calendar.items().values()
        assert _attendees(item) == {"bob@fabrikam.test"}
        # Only the parties change: the appointment's own row is not written by the user.
        meeting.parties.append(ActivityParty(role="required", address="carol@fabrikam.test"))
        db.session.commit()
        assert sync_items(box.id).pushed == 1
        [item] = calendar.items().values()
        assert _attendees(item) == {"bob@fabrikam.test", "carol@fabrikam.test"}
        bob = next(p for p in meeting.parties if p.address == "bob@fabrikam.test")
        db.session.delete(bob)  # removed from the meeting, by the party row alone
        db.session.commit()
        assert sync_items(box.id).pushed == 1
        [item] = calendar.items().values()
        assert _attendees(item) == {"carol@fabrikam.test"}
        assert sync_items(box.id).pushed == 0  # in step: nothing more goes out


def test_a_conflict_keeps_the_losing_value_on_the_history(store, make_user, signin):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        calendar.put(event("h@x", "Plan", TRACKED + "LOCATION:Room 1\r\n"), "h@x")
        sync_items(box.id)
        [meeting] = db.session.scalars(select(Appointment)).all()
        meeting.subject = "Plan (CRM)"
        db.session.commit()
        calendar.put(event("h@x", "Plan (phone)", TRACKED + "LOCATION:Room 1\r\n",
                           stamp="20991231T000000Z"), "h@x")
        sync_items(box.id)
    db.session.refresh(meeting)
    assert meeting.subject == "Plan (phone)"
    [entry] = db.session.scalars(select(RecordHistory)).all()
    assert (entry.activity_id, entry.field, entry.lost_value, entry.kept_value,
            entry.lost_side, entry.user_id) == (meeting.id, "subject", "Plan (CRM)",
                                                "Plan (phone)", "crm", ann.id)
    assert "ann@contoso.test" in entry.source
    page = signin(ann).get(f"/activities/{meeting.id}").get_data(as_text=True)
    assert "History" in page and "“Plan (CRM)”" in page and "“Plan (phone)”" in page
    db.session.delete(meeting)  # the history goes with its record
    db.session.commit()
    assert db.session.scalars(select(RecordHistory)).all() == []


def test_a_windows_path_in_a_meeting_comes_back_as_it_went(store, make_user):
    """A location and notes holding backslashes (a share, a drive path, ``\\N``) reach the
    calendar and come back unchanged after the user edits the meeting there."""
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    place, notes = "\\\\fileserver\\New folder", "C:\\Notes\\new; see \\N, then\nline two"
    meeting = Appointment(subject="Pricing", owner_user_id=ann.id, location=place,
                          description=notes, owning_business_unit_id=ann.business_unit_id,
                          occurred_on=datetime(2030, 1, 7, 9, tzinfo=timezone.utc),
                          scheduled_start=datetime(2030, 1, 7, 9, tzinfo=timezone.utc),
                          scheduled_end=datetime(2030, 1, 7, 10, tzinfo=timezone.utc))
    meeting.parties = [ActivityParty(role="organizer", address=ann.email, user_id=ann.id)]
    db.session.add(meeting)
    db.session.commit()
    sync_items(box.id)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        [(uid, item)] = calendar.items().items()
        values = read_event(item.data)
        assert (values["location"], values["description"]) == (place, notes)
        calendar.put(write_event({**values, "subject": "Pricing, again"}, item.uid,
                                 base=item.data), uid)
    sync_items(box.id)
    db.session.refresh(meeting)
    assert (meeting.subject, meeting.location, meeting.description) == ("Pricing, again", place, notes)
