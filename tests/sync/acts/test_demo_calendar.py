"""The demo organization's calendar (README, "Try it"): Sam's mailbox syncs appointments
with a folder of iCalendar files beside its Maildir; the first sync brings the tracked
meeting in (its attendee resolved to the demo contact) and leaves the untracked one out,
saying why; an .ics file dropped in later arrives too, and Sam's CRM meetings go out to
the folder. The folder store keeps versions like a server (a stale write is a conflict)."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment
from server.db import db
from server.demo import seed
from server.sync.acts.run import sync_items
from server.sync.connectors.base import Account, ItemConflict
from server.sync.connectors.ics_folder import FolderItemStore
from server.sync.demo import DEMO_USER
from server.sync.models import ItemLink, Mailbox
from tests.sync.acts.conftest import event

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def test_the_demo_calendar_brings_an_appointment_with_the_first_sync(app):
    summary = seed()
    db.session.commit()
    box = db.session.scalar(select(Mailbox).where(Mailbox.email_address == DEMO_USER))
    assert box.acts_method == "server_side_sync" and "calendar" in summary
    folder = Path(app.instance_path) / "maildir" / DEMO_USER / "items" / "calendar"
    assert sorted(p.name for p in folder.iterdir()) == [
        "demo-dentist@contoso.example.ics", "demo-pricing-call@contoso.example.ics"]
    result = sync_items(box.id)
    assert box.acts_status == "success", box.acts_message
    [call] = db.session.scalars(select(Appointment).where(
        Appointment.global_object_id == "demo-pricing-call@contoso.example")).all()
    assert (call.subject, call.location, call.owner_user_id) == ("Pricing call", "Teams",
                                                                 box.user_id)
    attendee = next(p for p in call.parties if p.role == "required")
    assert attendee.contact_id is not None  # the demo contact, resolved
    assert db.session.scalar(select(Appointment.id).where(
        Appointment.global_object_id == "demo-dentist@contoso.example")) is None
    why = db.session.scalar(select(ItemLink.reason).where(
        ItemLink.uid == "demo-dentist@contoso.example"))
    assert "Tracked to Regarding" in why
    assert result.created == 1 and result.pushed > 0  # Sam's CRM meetings went out
    assert len(list(folder.glob("*.ics"))) > 2
    # README: an .ics file dropped into the folder arrives with the next sync.
    (folder / "dropped.ics").write_text(event("dropped@x", "Dropped in", TRACKED))
    assert sync_items(box.id).created == 1
    assert db.session.scalar(select(Appointment.subject).where(
        Appointment.global_object_id == "dropped@x")) == "Dropped in"
    assert seed() and sync_items(box.id).created == 0  # seeding again adds nothing


def test_the_folder_store_refuses_a_stale_write(tmp_path):
    with FolderItemStore(Account("sam@contoso.test", root=str(tmp_path))) as store:
        [calendar] = store.collections("appointment")
        first = store.put(calendar, event("v@x", "One"))
        assert first.ref == "v@x.ics" and first.uid == "v@x"
        with pytest.raises(ItemConflict):  # a second item of that UID
            store.put(calendar, event("v@x", "Again"))
        second = store.put(calendar, event("v@x", "Two, longer"), first.ref, first.etag)
        with pytest.raises(ItemConflict):  # written over a version read before
            store.put(calendar, event("v@x", "Three"), first.ref, first.etag)
        changes = store.changes(calendar, None)
        assert [(i.ref, i.etag) for i in changes.items] == [(second.ref, second.etag)]
        assert store.changes(calendar, changes.cursor).items == []
        store.delete(calendar, second.ref, second.etag)
        assert store.changes(calendar, changes.cursor).removed == ["v@x.ics"]
