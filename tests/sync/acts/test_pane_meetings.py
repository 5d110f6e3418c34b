"""A meeting tracked from the Outlook pane is the appointment the item sync sees (its
iCalendar UID), found from the pane's item id through the mailbox's store (the Graph fake),
from the invitation email the CRM tracked (Dovecot's mail, Radicale's calendar) or by
organizer, start and subject (Radicale, where Outlook's ids mean nothing); and a
meeting tracked in compose mode is taken in by the sync when it appears, sent, with the
regarding chosen in the pane, without the pane opened again."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.activities import Appointment
from server.crm.models import Account
from server.crm.services.tracked import TrackRequest
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.models import ItemLink
from tests.addin.addin_world import meeting, person
from tests.sync.acts.conftest import RadicaleSide, Server, event

ORGANIZER = "ORGANIZER;CN=Ann:mailto:ann@contoso.test\r\n"


@pytest.fixture
def pane(app, api_client):
    return lambda user: api_client(user, kind="pane")


def _ok(response, status=200) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_json()


def _account(user) -> Account:
    account = Account(name="Fabrikam", owner_user_id=user.id,
                      owning_business_unit_id=user.business_unit_id)
    db.session.add(account)
    db.session.commit()
    return account


def _pane_item(**overrides) -> dict:
    return meeting(**{"subject": "Pricing", "start": "2030-01-05T10:00:00Z",
                      "end": "2030-01-05T11:00:00Z", "location": None,
                      "organizer": person("ann@contoso.test", "Ann"),
                      "required_attendees": [], "optional_attendees": [], **overrides})


@pytest.fixture
def radicale_side(radicale):
    if not radicale.running:
        radicale.start()
    return RadicaleSide(radicale)


def test_a_meeting_tracked_while_composed_is_tracked_when_it_appears(radicale_side, make_user,
                                                                     pane):
    ann = make_user("ann@contoso.test")
    box = radicale_side.mailbox(ann)
    fabrikam = _account(ann)
    # Compose mode: not sent, no UID anywhere; the pane records the wish.
    answer = _ok(pane(ann).post("/api/addin/pending", json={
        "item": _pane_item(mode="compose", item_id="AAMkDraft1"),
        "regarding": {"type": "account", "id": fabrikam.id}}))
    assert answer["tracking"]["status"] == "pending"
    with radicale_side.client(ann) as client:  # sent: Outlook writes it, with its own UID
        Server(client, "appointment").put(event("sent@x", "Pricing", ORGANIZER), "sent@x")
        Server(client, "appointment").put(event("other@x", "Dentist"), "other@x")
    result = sync_items(box.id)
    [taken] = db.session.scalars(select(Appointment)).all()
    assert (taken.global_object_id, taken.regarding_ref) == ("sent@x", ("account", fabrikam.id))
    assert result.created == 1 and result.not_tracked == 1
    request = db.session.scalar(select(TrackRequest))
    assert (request.status, request.activity_id, request.internet_message_id) == (
        "done", taken.id, "sent@x")
    # The pane opened on the sent meeting (read mode, Outlook's id of it): the same one.
    context = _ok(pane(ann).post("/api/addin/context", json={
        "item": _pane_item(item_id="AAMkSent2")}))
    assert context["tracking"]["status"] == "tracked" and context["ical_uid"] == "sent@x"
    # From now the pane names it by that UID (Set regarding, Untrack).
    _ok(pane(ann).put("/api/addin/regarding", json={"ical_uid": "sent@x", "regarding": None}))
    db.session.refresh(taken)
    assert taken.regarding_ref is None
    _ok(pane(ann).post("/api/addin/track", json={"item": _pane_item(item_id="AAMkSent2"),
                                                 "regarding": None}))
    assert db.session.scalars(select(Appointment.id)).all() == [taken.id]


@pytest.fixture
def graph_side(app):
    from server.sync.connectors.graph_client import forget_limits
    from server.sync.engine import oauth
    from tests.fakes.graph import FakeGraph
    from tests.sync.acts.conftest import GraphSide
    fake = FakeGraph().start()
    oauth.forget_tokens()
    forget_limits()
    yield GraphSide(fake)
    fake.close()
    oauth.forget_tokens()


def test_a_meeting_tracked_in_read_mode_is_keyed_by_its_uid(graph_side, make_user, pane):
    ann = make_user("ann@contoso.test")
    box = graph_side.mailbox(ann)
    fabrikam = _account(ann)
    with graph_side.client(ann) as client:
        calendar = Server(client, "appointment")
        stored = calendar.store.put(calendar.collection, event("x@x", "Pricing", ORGANIZER))
    # Office.js gives the EWS form of the id; Graph keys the event by its REST form.
    ews_id = stored.ref.replace("-", "/").replace("_", "+")
    item = _pane_item(item_id=ews_id)
    _ok(pane(ann).post("/api/addin/track", json={
        "item": item, "regarding": {"type": "account", "id": fabrikam.id}}))
    [tracked] = db.session.scalars(select(Appointment)).all()
    assert tracked.global_object_id == stored.uid != ews_id  # Exchange's iCalUId
    sync_items(box.id)  # the sync sees the same meeting: no second appointment
    db.session.expire_all()
    assert db.session.scalars(select(Appointment.id)).all() == [tracked.id]
    link = db.session.scalar(select(ItemLink).where(ItemLink.uid == stored.uid))
    assert link.activity_id == tracked.id and link.tracked
    # Set regarding / untrack by the pane's id reach the same appointment.
    _ok(pane(ann).put("/api/addin/regarding", json={"item_id": ews_id, "regarding": None}))
    db.session.refresh(tracked)
    assert tracked.regarding_ref is None


INVITATION = (
    "From: Ann <ann@contoso.test>\r\nTo: {to}\r\nSubject: Pricing\r\n"
    "Message-ID: <invite1@contoso.test>\r\nDate: Mon, 01 Jan 2030 09:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
    "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAnn invites you to Pricing.\r\n"
    "--b\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\n\r\n"
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Contoso//EN\r\nMETHOD:REQUEST\r\n"
    "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20300101T090000Z\r\n"
    "DTSTART:20300105T100000Z\r\nDTEND:20300105T110000Z\r\nSUMMARY:Pricing\r\n"
    "ORGANIZER;CN=Ann:mailto:ann@contoso.test\r\n"
    "ATTENDEE;CN=Bob;PARTSTAT=NEEDS-ACTION:mailto:{to}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    "--b--\r\n")


@pytest.mark.parametrize("storage", ["db", "disk"])
def test_a_meeting_whose_invitation_the_crm_has_is_keyed_by_the_uid_in_it(
        app, radicale_side, dovecot, mail_user, make_user, pane, storage):
    """Mail over IMAP (Dovecot), the calendar on CalDAV (Radicale): Outlook's ids mean
    nothing to either, but the invitation the mail sync tracked carries the UID in its
    text/calendar part. The pane's meeting is found by its invitation's Message-ID before
    organizer, start and subject (here another meeting has all three). The invitation's
    file is read where the CRM keeps attachments: the database or the instance folder."""
    app.config["REGARDING_ATTACHMENT_STORAGE"] = storage
    from server.sync.engine.run import sync_mailbox
    from tests.sync import world as w
    bob = make_user("bob@contoso.test")
    fabrikam = _account(bob)
    uid = "040000008200E00074C5B7101A82E00800000000-invite1@contoso.test"
    store = w.ImapStore(dovecot, mail_user)
    inbox = w.store_mailbox(store, bob, tracking_option="all")
    store.deliver(INVITATION.format(to=store.address, uid=uid).encode())
    assert sync_mailbox(inbox.id).status == "success"
    [invitation] = w.emails()
    assert invitation.message_id == "invite1@contoso.test"
    [ics] = invitation.attachments
    assert ics.content_type == "text/calendar" and bool(ics.storage_path) == (storage == "disk")
    calendar_box = radicale_side.mailbox(bob)
    # Another meeting of Ann's at the same time with the same subject, tracked before.
    _ok(pane(bob).post("/api/addin/track", json={
        "item": _pane_item(item_id="AAMkDecoy", ical_uid="decoy@x"), "regarding": None}))
    # Read mode on the meeting: Office.js gives Outlook's item id and the invitation's id.
    item = _pane_item(item_id="AAMkInvite1", internet_message_id="<invite1@contoso.test>")
    context = _ok(pane(bob).post("/api/addin/context", json={"item": item}))
    assert context["ical_uid"] == uid and context["tracking"]["status"] == "not_tracked"
    _ok(pane(bob).post("/api/addin/track", json={
        "item": item, "regarding": {"type": "account", "id": fabrikam.id}}))
    tracked = db.session.scalar(select(Appointment).where(Appointment.global_object_id == uid))
    assert tracked is not None and tracked.regarding_ref == ("account", fabrikam.id)
    # Bob's calendar app accepted it: the event in Radicale has the invitation's UID, and
    # the item sync takes it for the meeting tracked, not a second one.
    with radicale_side.client(bob) as client:
        Server(client, "appointment").put(event(uid, "Pricing", ORGANIZER), uid)
    sync_items(calendar_box.id)
    db.session.expire_all()
    assert sorted(db.session.scalars(select(Appointment.global_object_id))) == sorted(
        ["decoy@x", uid])
    link = db.session.scalar(select(ItemLink).where(ItemLink.uid == uid))
    assert link.activity_id == tracked.id and link.tracked
