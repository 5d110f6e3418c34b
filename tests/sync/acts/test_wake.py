"""A change people make to an appointment, contact or task in a request wakes the mailboxes
that sync it (``server.sync.acts.wake``): those linked to the record, and those of the users
whose filter takes it (owner, attendee); not others, not for changes made outside a request
nor for the sync's own; and a worker running in the process syncs it at once, not at its
next poll (against Radicale)."""
from __future__ import annotations

import threading
import time

from sqlalchemy import select, update

from server.crm.activities import Appointment
from server.crm.models import Contact
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.models import ItemLink, Mailbox
from server.sync.workers import scheduler
from tests.sync.acts.conftest import RadicaleSide


def _mailbox(user) -> Mailbox:
    box = Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                  incoming_method="none", outgoing_method="none",
                  acts_method="server_side_sync", email_approved=True, enabled=True,
                  owning_business_unit_id=user.business_unit_id)
    db.session.add(box)
    db.session.commit()
    return box


def _flagged() -> set[str]:
    """The addresses of the mailboxes asked for; the flags are cleared."""
    db.session.expire_all()
    found = set(db.session.scalars(select(Mailbox.email_address).where(
        Mailbox.sync_requested.is_(True))))
    db.session.execute(update(Mailbox).values(sync_requested=False))
    db.session.commit()
    return found


def _link(box: Mailbox, contact_id: int) -> None:
    db.session.add(ItemLink(mailbox_id=box.id, kind="contact", ref=f"/c/{contact_id}.vcf",
                            collection_key="/c/", contact_id=contact_id, tracked=True,
                            origin="server"))
    db.session.commit()


def test_a_contact_changed_through_the_api_wakes_the_mailboxes_that_sync_it(
        make_user, api_client, woken):
    ann, bob, carl = (make_user(f"{n}@contoso.test") for n in ("ann", "bob", "carl"))
    boxes = {u.id: _mailbox(u) for u in (ann, bob, carl)}
    api = api_client(ann)
    r = api.post("/api/v1/contacts", json={"first_name": "Dana", "last_name": "Dale"})
    assert r.status_code == 201
    contact_id = r.get_json()["id"]
    assert _flagged() == {"ann@contoso.test"}  # her filter, "Contacts I own", takes it
    assert woken
    _link(boxes[bob.id], contact_id)  # Bob tracked it from his own address book
    woken.clear()
    assert api.patch(f"/api/v1/contacts/{contact_id}",
                     json={"job_title": "Buyer"}).status_code == 200
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}
    assert woken
    _link(boxes[ann.id], contact_id)
    r = api.post(f"/api/v1/contacts/{contact_id}/assign",
                 json={"owner": {"type": "user", "id": carl.id}})
    assert r.status_code == 200, r.get_json()
    # Ann's copy leaves her filter, Bob's link stays, Carl's filter takes it now.
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test", "carl@contoso.test"}
    api_carl = api_client(carl)
    assert api_carl.delete(f"/api/v1/contacts/{contact_id}").status_code == 204
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}  # whose links it had
    woken.clear()
    r = api.get("/api/v1/contacts")  # reading changes nothing
    assert r.status_code == 200 and _flagged() == set() and not woken


def test_an_appointment_wakes_its_attendees_mailboxes_and_no_other(make_user, api_client):
    ann, bob, carl = (make_user(f"{n}@contoso.test") for n in ("ann", "bob", "carl"))
    for user in (ann, bob, carl):
        _mailbox(user)
    carl_box = db.session.scalar(select(Mailbox).where(Mailbox.user_id == carl.id))
    carl_box.acts_method = "none"  # syncs mail only
    db.session.commit()
    r = api_client(ann).post("/api/v1/activities", json={
        "type": "appointment", "subject": "Pricing",
        "scheduled_start": "2030-01-07T09:00:00Z", "scheduled_end": "2030-01-07T10:00:00Z",
        "parties": [{"role": "organizer", "record": {"type": "user", "id": ann.id}},
                    {"role": "required", "record": {"type": "user", "id": bob.id}},
                    {"role": "required", "record": {"type": "user", "id": carl.id}}]})
    assert r.status_code == 201, r.get_json()
    # "My appointments" takes those one attends: Bob's; Carl's mailbox syncs no items.
    assert _flagged() == {"ann@contoso.test", "bob@contoso.test"}
    assert db.session.get(Appointment, r.get_json()["id"]) is not None


def _ann_syncing(radicale, make_user, first: str, last: str):
    """(side, Ann, her mailbox on Radicale, a contact of hers named so)."""
    if not radicale.running:
        radicale.start()
    side = RadicaleSide(radicale)
    ann = make_user("ann@contoso.test")
    box = side.mailbox(ann)
    contact = Contact(first_name=first, last_name=last, full_name=f"{first} {last}",
                      owner_user_id=ann.id, owning_business_unit_id=ann.business_unit_id)
    db.session.add(contact)
    db.session.commit()
    return side, ann, box, contact


def test_changes_outside_a_request_and_the_syncs_own_wake_nothing(app, radicale, make_user,
                                                                 woken):
    # Made outside a request (the command line, an import).
    side, ann, box, contact = _ann_syncing(radicale, make_user, "Eve", "Ede")
    assert _flagged() == set()
    sync_items(box.id)
    with side.client(ann) as client:
        book = side.server(client, "contact")
        [card] = book.items().values()
        book.put(card.data.replace("FN:Eve Ede", "FN:Eve Ede\r\nTITLE:Chief"), card.uid)
    with app.test_request_context():
        sync_items(box.id)  # even in a request: the sync's own change wakes nothing
    db.session.refresh(contact)
    assert contact.job_title == "Chief"
    assert _flagged() == set() and not woken


def test_a_running_worker_syncs_a_change_at_once_not_at_its_next_poll(
        app, radicale, make_user, api_client):
    """The worker polls once an hour here: only the wake brings the change out in time."""
    from server.sync.workers.worker import run_worker
    side, ann, box, contact = _ann_syncing(radicale, make_user, "Finn", "Fay")
    app.config["REGARDING_SYNC_POLL_SECONDS"] = 3600
    stop, out = threading.Event(), {}
    worker = threading.Thread(target=lambda: out.setdefault("stats", run_worker(
        app, worker_id="wake-test", concurrency=1, stop_event=stop, push=False)))
    worker.start()
    try:
        def on_server(text: str) -> bool:
            with side.client(ann) as client:
                return any(text in i.data for i in side.server(client, "contact")
                           .items().values())
        _wait(lambda: on_server("FN:Finn Fay"))  # the first run: it was due
        _wait(lambda: _idle(box.id))
        r = api_client(ann).patch(f"/api/v1/contacts/{contact.id}",
                                           json={"job_title": "Chief buyer"})
        assert r.status_code == 200
        _wait(lambda: on_server("TITLE:Chief buyer"))
    finally:
        stop.set()
        scheduler.wake_local()  # out of its hour-long wait, to see the stop
        worker.join(60)
    assert out["stats"].claimed == 2  # at the start, and when woken


def _idle(mailbox_id: int) -> bool:
    db.session.expire_all()
    box = db.session.get(Mailbox, mailbox_id)
    db.session.rollback()
    return box.lease_owner is None and box.acts_status == "success"


def _wait(check, limit: float = 120) -> None:
    """Until ``check()`` holds (the limit only ends a test that would otherwise hang)."""
    ends = time.monotonic() + limit
    while not check():
        assert time.monotonic() < ends, "not reached"
        time.sleep(0.2)
