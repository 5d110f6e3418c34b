"""Appointments, contacts and tasks synced both ways, as users meet it, against every store
(``store`` params): create, update and delete each way; a recurring series with a changed
and a cancelled occurrence; one appointment for the organizer's and an attendee's copies;
conflicting edits resolved by the field directions; a filter change; category removal
untracks; no privilege, no sync (and the mailbox says why); a refused sign-in or access
taken away, nothing synced (and the mailbox says why); untracked items stay out. On
Exchange the scenario's client is Outlook: items are named by what the server gave them
(``Server.uid``), and where Exchange keeps less (To Do: a status, a due day) the
scenario checks what it does keep."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from dateutil.rrule import rrulestr
from sqlalchemy import func, select

from server.crm.activities import Appointment, Task
from server.crm.models import Contact
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.connectors.base import ConnectorError
from server.sync.items.calendar import read_event
from server.sync.models import Alert, FieldDirection, ItemLink, SyncFilter
from tests.sync.acts.conftest import event

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def appointments(**where) -> list[Appointment]:
    return db.session.scalars(select(Appointment).filter_by(**where)).all()


def test_a_tracked_event_comes_in_and_an_untracked_one_stays_out(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        calendar.put(event("in@x", "Quarterly review", TRACKED + "LOCATION:Room 4\r\n"), "in@x")
        calendar.put(event("out@x", "Dentist"), "out@x")
    result = sync_items(box.id)
    [meeting] = appointments()
    assert (meeting.subject, meeting.location, meeting.global_object_id) == \
        ("Quarterly review", "Room 4", calendar.uid("in@x"))
    assert meeting.owner_user_id == ann.id and meeting.categories is None
    assert result.created == 1 and result.not_tracked == 1
    why = db.session.scalar(select(ItemLink.reason).where(ItemLink.uid == calendar.uid("out@x")))
    assert "Tracked to Regarding" in why
    assert box.acts_status == "success"
    assert sync_items(box.id).read == 0  # nothing changed: nothing read again


def test_changes_and_deletes_go_both_ways(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
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


SERIES = ("RRULE:FREQ=WEEKLY;COUNT=6\r\nEXDATE:20300112T100000Z\r\n" + TRACKED)
OVERRIDE = ("BEGIN:VEVENT\r\nUID:s@x\r\nDTSTAMP:20250101T000000Z\r\n"
            "RECURRENCE-ID:20300119T100000Z\r\nDTSTART:20300119T140000Z\r\n"
            "DTEND:20300119T150000Z\r\nSUMMARY:Weekly (afternoon this time)\r\nEND:VEVENT\r\n")


def occurrences(series: Appointment) -> list[datetime]:
    start = series.scheduled_start.replace(tzinfo=timezone.utc)
    return list(rrulestr(series.recurrence_rule, dtstart=start))


def test_a_series_with_a_changed_and_a_cancelled_occurrence(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        text = event("s@x", "Weekly", SERIES).replace("END:VCALENDAR", OVERRIDE + "END:VCALENDAR")
        calendar.put(text, "s@x")
        sync_items(box.id)
        [series] = appointments()
        first = datetime(2030, 1, 5, 10, tzinfo=timezone.utc)  # however the server spells it:
        assert occurrences(series) == [first + timedelta(weeks=n) for n in range(6)]
        assert series.recurrence_exceptions["exdates"] == ["2030-01-12T10:00:00Z"]
        [moved] = series.recurrence_exceptions["overrides"]
        assert (moved["recurrence_id"], moved["start"], moved["subject"]) == (
            "2030-01-19T10:00:00Z", "2030-01-19T14:00:00Z", "Weekly (afternoon this time)")
        # The CRM cancels another occurrence: the server gets the EXDATE, keeps the override.
        series.recurrence_exceptions = dict(series.recurrence_exceptions, exdates=[
            "2030-01-12T10:00:00Z", "2030-01-26T10:00:00Z"])
        db.session.commit()
        sync_items(box.id)
        back = read_event(calendar.items()["s@x"].data)
        assert back["recurrence_exceptions"]["exdates"] == ["2030-01-12T10:00:00Z",
                                                            "2030-01-26T10:00:00Z"]
        assert back["recurrence_exceptions"]["overrides"] == [moved]


def test_organizer_and_attendee_copies_are_one_appointment(store, make_user):
    ann, bob = make_user("ann@contoso.test"), make_user("bob@contoso.test")
    ann_box, bob_box = store.mailbox(ann), store.mailbox(bob)
    people = ("ORGANIZER;CN=Ann:mailto:ann@contoso.test\r\n"
              "ATTENDEE;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:bob@contoso.test\r\n"
              "ATTENDEE;PARTSTAT=NEEDS-ACTION;ROLE=OPT-PARTICIPANT:mailto:carol@fabrikam.test\r\n")
    with store.client(ann) as client:
        store.server(client, "appointment").put(event("meet@x", "Pricing", TRACKED + people),
                                                "meet@x")
    with store.client(bob) as client:  # bob's copy, as his calendar app keeps it: untracked
        store.server(client, "appointment").put(event("meet@x", "Pricing", people), "meet@x")
    sync_items(bob_box.id)
    assert appointments() == []  # bob did not track it, and the CRM does not know it yet
    sync_items(ann_box.id)
    sync_items(bob_box.id)
    [meeting] = appointments()
    parties = {(p.role, p.address): (p.user_id, p.response) for p in meeting.parties}
    assert parties == {("organizer", "ann@contoso.test"): (ann.id, None),
                       ("required", "bob@contoso.test"): (bob.id, "accepted"),
                       ("optional", "carol@fabrikam.test"): (None, "needs-action")}
    assert db.session.scalar(select(func.count(ItemLink.id)).where(
        ItemLink.activity_id == meeting.id)) == 2


def test_conflicting_edits_follow_the_field_directions(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    db.session.add(FieldDirection(kind="appointment", field="location", direction="to_crm"))
    db.session.commit()
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        calendar.put(event("c@x", "Plan", TRACKED + "LOCATION:Room 1\r\n"), "c@x")
        sync_items(box.id)
        [meeting] = appointments()
        meeting.subject, meeting.location = "Plan (CRM)", "Room CRM"
        db.session.commit()
        # The server's edit is the later one (its DTSTAMP): it wins the two-way subject;
        # the location goes to the CRM only, so the server's is taken whoever is later.
        calendar.put(event("c@x", "Plan (phone)", TRACKED + "LOCATION:Room phone\r\n",
                           stamp="20991231T000000Z"), "c@x")
        sync_items(box.id)
        db.session.refresh(meeting)
        assert (meeting.subject, meeting.location) == ("Plan (phone)", "Room phone")
        [alert] = db.session.scalars(select(Alert).where(Alert.code == "item_conflict")).all()
        assert '"Plan (CRM)"' in alert.message and "Subject" in alert.message
        # Now the CRM's edit is the later one: its subject goes out, the server's is lost.
        meeting.subject = "Plan (CRM again)"
        db.session.commit()
        calendar.put(event("c@x", "Plan (old phone)", TRACKED + "LOCATION:Room phone\r\n",
                           stamp="20250101T000000Z"), "c@x")
        sync_items(box.id)
        db.session.refresh(meeting)
        assert meeting.subject == "Plan (CRM again)"
        assert read_event(calendar.items()["c@x"].data)["subject"] == "Plan (CRM again)"
        lost = db.session.scalars(select(Alert.message).where(Alert.code == "item_conflict")
                                  .order_by(Alert.id)).all()[-1]
        assert '"Plan (old phone)"' in lost and "mail server" in lost


def test_removing_the_category_untracks_and_keeps_the_record(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        calendar.put(event("u@x", "Demo", TRACKED), "u@x")
        sync_items(box.id)
        calendar.put(event("u@x", "Demo (renamed)", "", stamp="20250103T000000Z"), "u@x")
        sync_items(box.id)
        [kept] = appointments()
        assert kept.subject == "Demo"  # untracked: later changes no longer come in
        link = db.session.scalar(select(ItemLink).where(ItemLink.uid == calendar.uid("u@x")))
        assert not link.tracked and "untracked" in link.reason
        assert "u@x" in calendar.items()  # and the CRM does not take it off the server


def test_records_leaving_the_filter_leave_the_server_not_the_crm(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    for subject in ("Keep me", "Internal only"):
        db.session.add(Task(subject=subject, owner_user_id=ann.id,
                            owning_business_unit_id=ann.business_unit_id,
                            occurred_on=datetime(2030, 1, 1, tzinfo=timezone.utc)))
    db.session.commit()
    sync_items(box.id)
    with store.client(ann) as client:
        tasks = store.server(client, "task")
        assert {i.data.count("SUMMARY:") for i in tasks.items().values()} == {1}
        assert len(tasks.items()) == 2
        db.session.add(SyncFilter(user_id=ann.id, kind="task", name="Not internal",
                                  owner="me", conditions=[["subject", "ne", "Internal only"]]))
        db.session.commit()
        sync_items(box.id)
        [left] = tasks.items().values()
        assert "Keep me" in left.data
    assert db.session.scalar(select(func.count(Task.id))) == 2


def test_without_the_privilege_nothing_syncs_and_the_mailbox_says_why(store, make_user):
    ann = make_user("ann@contoso.test", roles=("Customer Service Representative",))
    box = store.mailbox(ann)
    db.session.add(Contact(first_name="Carol", last_name="Cole", full_name="Carol Cole",
                           owner_user_id=ann.id, owning_business_unit_id=ann.business_unit_id))
    db.session.commit()
    result = sync_items(box.id)
    assert "Sync contacts" in result.skipped_kinds["contact"]
    assert "does not have" in box.acts_message and "contacts" in box.acts_message
    with store.client(ann) as client:
        assert store.server(client, "contact").items() == {}


def test_contacts_go_both_ways(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    db.session.add(Contact(first_name="Carol", last_name="Cole", full_name="Carol Cole",
                           email1="carol@fabrikam.test", job_title="Buyer",
                           owner_user_id=ann.id, owning_business_unit_id=ann.business_unit_id))
    db.session.commit()
    sync_items(box.id)
    with store.client(ann) as client:
        book = store.server(client, "contact")
        [card] = book.items().values()
        assert "FN:Carol Cole" in card.data and "Tracked to Regarding" in card.data
        book.put(card.data.replace("TITLE:Buyer", "TITLE:Head of buying")
                 .replace("END:VCARD", "TEL;TYPE=cell:+47 900 00 000\r\nEND:VCARD"), card.uid)
        book.put("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:new@x\r\nFN:Dan Dale\r\nN:Dale;Dan;;;\r\n"
                 "CATEGORIES:Tracked to Regarding\r\nORG:Fabrikam\r\nEND:VCARD\r\n", "new@x")
    sync_items(box.id)
    carol = db.session.scalar(select(Contact).where(Contact.last_name == "Cole"))
    assert (carol.job_title, carol.mobile_phone) == ("Head of buying", "+47 900 00 000")
    dan = db.session.scalar(select(Contact).where(Contact.last_name == "Dale"))
    assert (dan.first_name, dan.company_name, dan.owner_user_id) == ("Dan", "Fabrikam", ann.id)


def test_test_and_enable_reports_the_items_direction_apart(store, make_user):
    """A password the server refuses (Radicale, EWS), or on Graph a client secret Entra ID
    refuses: Test & Enable says so, leaves the mailbox off, and nothing syncs."""
    from server.sync.admin.testing import test_and_enable
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann, enabled=False)
    result = test_and_enable(box)
    assert result.enabled and result.acts.ok and result.incoming is None
    assert "calendar" in result.acts.message and box.acts_status == "success"
    with store.client(ann) as client:
        store.server(client, "appointment").put(event("t@x", "Tracked", TRACKED), "t@x")
    store.spoil_sign_in(box)
    refused = test_and_enable(box)
    assert not refused.enabled and not refused.acts.ok
    assert (refused.acts.code, store.refused in box.acts_message) == (store.refused_code, True)
    assert not box.acts_enabled
    box.enabled = box.acts_enabled = True  # as if they were on: a sync is refused too
    db.session.commit()
    with pytest.raises(ConnectorError):
        sync_items(box.id)
    assert appointments() == [] and store.refused in box.acts_message


def test_access_taken_away_is_reported_and_nothing_syncs(store, make_user):
    """Exchange: the app's consent to calendars revoked (Graph), or the account no longer
    allowed in the calendar folder (EWS): the mailbox says what to grant; nothing syncs."""
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        store.server(client, "appointment").put(event("t@x", "Tracked", TRACKED), "t@x")
    words = store.take_calendar_access_away(ann)
    with pytest.raises(ConnectorError) as refused:
        sync_items(box.id)
    assert refused.value.severity == "auth" and words in box.acts_message
    assert box.acts_status == "failure" and appointments() == []


def test_the_dashboard_says_why_an_item_was_not_synced(store, make_user, signin):
    ann = make_user("ann@contoso.test", roles=("Sales Manager",))
    box = store.mailbox(ann)
    with store.client(ann) as client:
        store.server(client, "appointment").put(event("why@x", "Dentist visit"), "why@x")
    sync_items(box.id)
    page = signin(ann).get(f"/admin/sync/decisions?mailbox={box.id}&q=dentist")
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "Dentist visit" in text and "Not synced" in text
    assert "no &#34;Tracked to Regarding&#34; category" in text


def test_tasks_go_both_ways(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    todo = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other client//EN\r\nBEGIN:VTODO\r\n"
            "UID:t1@x\r\nDTSTAMP:20250101T000000Z\r\nSUMMARY:Send the quote\r\n"
            "DUE:20300110T170000Z\r\nPRIORITY:1\r\nSTATUS:IN-PROCESS\r\nPERCENT-COMPLETE:40\r\n"
            f"{TRACKED}END:VTODO\r\nEND:VCALENDAR\r\n")
    with store.client(ann) as client:
        tasks = store.server(client, "task")
        tasks.put(todo, "t1@x")
        sync_items(box.id)
        [task] = db.session.scalars(select(Task)).all()
        # Microsoft To Do keeps a status, not a percent: its "in progress" reads as half done
        assert (task.subject, task.priority, task.task_status, task.percent_complete) == \
            ("Send the quote", "high", "in_progress", 40 if store.keeps_percent else 50)
        # To Do keeps the day a task is due, not the hour
        due = datetime(2030, 1, 10, 17 if store.keeps_due_time else 0, tzinfo=timezone.utc)
        assert task.scheduled_end == due
        task.percent_complete = 70  # more done, still in progress: To Do cannot say how much
        db.session.commit()
        sync_items(box.id)
        text = tasks.items()["t1@x"].data
        assert "STATUS:IN-PROCESS" in text
        assert f"PERCENT-COMPLETE:{70 if store.keeps_percent else 50}" in text
        task.state, task.task_status, task.percent_complete = "completed", "completed", 100
        task.actual_end = datetime(2030, 1, 9, 12, tzinfo=timezone.utc)
        db.session.commit()
        sync_items(box.id)
        text = tasks.items()["t1@x"].data
    assert "STATUS:COMPLETED" in text and "PERCENT-COMPLETE:100" in text
    # Exchange Server dates a task's completion itself (CompleteDate is read-only in EWS)
    assert ("COMPLETED:20300109T120000Z" if store.dates_completion else "COMPLETED:") in text
