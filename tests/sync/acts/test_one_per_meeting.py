"""One appointment per meeting, held by the database: two workers syncing the organizer's
and an attendee's calendars at the same moment (each its own thread and session, on SQLite
and on PostgreSQL, against Radicale) leave one appointment; the one that loses the race
re-reads and links the other's record."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import event, func, select

from server.crm.activities import Appointment
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.models import ItemLink
from tests.sync.acts.conftest import RadicaleSide, Server, event as ics

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"
PEOPLE = ("ORGANIZER;CN=Ann:mailto:ann@contoso.test\r\n"
          "ATTENDEE;PARTSTAT=ACCEPTED;ROLE=REQ-PARTICIPANT:mailto:bob@contoso.test\r\n")


@pytest.fixture
def side(radicale):
    if not radicale.running:
        radicale.start()
    return RadicaleSide(radicale)


def _in_thread(app, work) -> list:
    """Run ``work`` in a thread of its own, with its own app context (its own session),
    and wait for it; what it returned or raised comes back in a list."""
    out: list = []

    def run():
        with app.app_context():
            try:
                out.append(work())
            except Exception as exc:  # handed to the test, which re-raises it
                out.append(exc)
            finally:
                db.session.remove()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return out


@pytest.mark.both_databases
def test_two_workers_racing_on_one_meeting_make_one_appointment(app, side, make_user):
    ann, bob = make_user("ann@contoso.test"), make_user("bob@contoso.test")
    ann_box, bob_box = side.mailbox(ann).id, side.mailbox(bob).id
    for user in (ann, bob):  # both tracked the meeting in their own calendar app
        with side.client(user) as client:
            Server(client, "appointment").put(ics("race@x", "Pricing", TRACKED + PEOPLE),
                                              "race@x")
    db.session.commit()
    ann_result: list = []

    def bob_worker():
        session = db.session()
        raced = []

        @event.listens_for(session, "before_flush")
        def ann_first(flushing, _context, _instances):
            # Bob's worker read "no appointment of this UID" and is about to write its
            # own: Ann's worker, in another thread, writes and commits hers just now.
            if not raced and any(isinstance(o, Appointment) for o in flushing.new):
                raced.append(True)
                ann_result.extend(_in_thread(app, lambda: sync_items(ann_box)))
        result = sync_items(bob_box)
        return result, bool(raced)

    [outcome] = _in_thread(app, bob_worker)
    if isinstance(outcome, Exception):
        raise outcome
    bob_result, raced = outcome
    [ann_outcome] = ann_result
    if isinstance(ann_outcome, Exception):
        raise ann_outcome
    assert raced  # the race happened where it hurts
    db.session.expire_all()
    [meeting] = db.session.scalars(select(Appointment)).all()
    assert meeting.global_object_id == "race@x" and meeting.owner_user_id == ann.id
    assert (ann_outcome.created, bob_result.created, bob_result.updated) == (1, 0, 1)
    links = db.session.scalars(select(ItemLink).where(ItemLink.uid == "race@x")).all()
    assert {(link.mailbox_id, link.activity_id, link.tracked) for link in links} == {
        (ann_box, meeting.id, True), (bob_box, meeting.id, True)}
    assert db.session.scalar(select(func.count()).select_from(ItemLink)) == 2
