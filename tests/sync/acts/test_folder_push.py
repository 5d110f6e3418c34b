"""Push for the folder of .ics files beside a Maildir (the demo's calendar): a worker with
push on watches the mailbox's calendar, tasks and contacts folders in the same inotify as its
mail, so an .ics file dropped in, or written over in place by an editor, reaches the CRM long
before the mailbox's next scheduled run (an hour away)."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment
from server.db import db
from server.sync.acts.run import sync_items
from tests.sync import world as w
from tests.sync.acts.conftest import event
from tests.sync.test_push import (PushWorker, brought_by_push_alone, park, push_runs,
                                  wait_at_rest, watching)
from tests.waiting import until

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


@pytest.mark.usefixtures("hour_long_schedule")
def test_an_ics_file_dropped_or_edited_in_place_arrives_by_push(app, crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="none",
                          acts_method="server_side_sync")
    calendar = store.root / "items" / "calendar"
    sync_items(box.id)  # the folders made, Bob's CRM calendar (empty) written out
    park(box)
    worker = PushWorker(app)
    try:
        watching(box)
        wait_at_rest(box)
        before = push_runs(box)
        (calendar / "call.ics").write_text(event("call@x", "Pricing call", TRACKED))
        until(lambda: db.session.scalar(select(Appointment.id).where(
            Appointment.subject == "Pricing call")), "the dropped file in the CRM",
            session=db.session)
        until(lambda: push_runs(box) > before, "a push run recorded", session=db.session)
        wait_at_rest(box)
        before = push_runs(box)
        with open(calendar / "call.ics", "w") as edited:  # in place: no new directory entry
            edited.write(event("call@x", "Pricing call (moved)", TRACKED,
                               stamp="20250102T000000Z"))
        until(lambda: db.session.scalar(select(Appointment.id).where(
            Appointment.subject == "Pricing call (moved)")), "the edit in the CRM",
            session=db.session)
        until(lambda: push_runs(box) > before, "a push run recorded", session=db.session)
    finally:
        worker.close()
    brought_by_push_alone(box)
