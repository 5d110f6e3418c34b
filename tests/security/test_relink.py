"""Vulnerability 2 of issue 11: tracking an item someone else tracked must not re-link their
activity unless the caller may (write and append on the activity, append to on the record).
Every path is tried: the add-in's Track (email and meeting), a pending request completed by
someone else's later Track, REST, and a real sync of a Maildir folder tracked to the
attacker's own record. The victim's activity keeps its regarding and ``modified_by``, the
attacker learns no activity id, and the refusal says why; a user who may re-link does, and is
recorded as the one who changed it.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.services import tracked, tracking
from server.crm.activities import Appointment, Email
from server.db import db
from server.security.bootstrap import create_user
from server.sync.engine.run import sync_mailbox
from tests.addin import addin_world as aw
from tests.addin.addin_world import meeting, message
from tests.sync import world as w

pytestmark = pytest.mark.both_databases

HEADERS = ("Message-ID: {mid}\r\nDate: Tue, 04 Mar 2025 10:00:00 +0000\r\n"
           "Subject: Widgets order\r\n\r\n")


@pytest.fixture
def world(app):
    return aw.build()


@pytest.fixture
def pane(app, api_client):
    return lambda user: api_client(user, kind="pane")


def with_content(item: dict) -> dict:
    mid = item.get("internet_message_id")
    return {**item, "html_body": "<p>Please send 200 widgets.</p>", "text_body": None,
            "internet_headers": HEADERS.format(mid=mid) if mid else None, "attachments": []}


def as_bob(item: dict) -> dict:
    return {**item, "user_address": "bob@contoso.test", "to": [aw.person("bob@contoso.test")]}


def the_email(mid: str) -> Email:
    return db.session.scalar(select(Email).where(Email.message_id == mid))


def refused(response) -> dict:
    assert response.status_code == 403, response.get_data(as_text=True)[:500]
    body = response.get_json()["error"]
    assert "may not change what it is regarding" in body["message"]
    return body


def no_id_of(activity, response) -> None:
    """Nothing in the answer names the other user's activity: no ``activity_id`` or ``id``
    of it, no link to it."""
    def walk(value):
        if isinstance(value, dict):
            for key, inner in value.items():
                assert not (key in ("activity_id", "id") and inner == activity.id), (key, value)
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)
        elif isinstance(value, str):
            assert not value.rstrip("/").endswith(f"/{activity.id}"), value
    walk(response.get_json())


def test_add_in_track_does_not_relink_an_email_tracked_in_another_unit(world, pane):
    ann, bob = pane(world.ann), pane(world.bob)
    item = message(internet_message_id="<m1@fabrikam.test>")
    assert ann.post("/api/addin/track", json={"item": with_content(item)}).status_code == 200
    victim = the_email("m1@fabrikam.test")
    assert victim.regarding_ref is None
    r = bob.post("/api/addin/track", json={"item": with_content(as_bob(item)),
                                           "regarding": {"type": "contact", "id": world.dave.id}})
    refused(r)
    no_id_of(victim, r)
    db.session.expire_all()
    assert victim.regarding_ref is None and victim.modified_by_id == world.ann.id
    # bob's own view is as before: not tracked, nothing about ann's activity
    ctx = bob.post("/api/addin/context", json={"item": as_bob(item)})
    assert ctx.get_json()["tracking"]["status"] == "not_tracked"
    no_id_of(victim, ctx)


def test_a_pending_request_is_not_completed_into_someone_elses_activity(world, pane):
    ann, bob = pane(world.ann), pane(world.bob)
    item = message(internet_message_id="<m2@fabrikam.test>")
    pending = bob.post("/api/addin/pending", json={
        "item": as_bob(item), "regarding": {"type": "contact", "id": world.dave.id}})
    assert pending.status_code == 200, pending.get_data(as_text=True)
    assert ann.post("/api/addin/track", json={"item": with_content(item)}).status_code == 200
    victim = the_email("m2@fabrikam.test")
    db.session.expire_all()
    assert victim.regarding_ref is None and victim.modified_by_id == world.ann.id
    req = db.session.scalar(select(tracked.TrackRequest).where(
        tracked.TrackRequest.user_id == world.bob.id))
    assert req.status == "failed" and req.activity_id is None
    assert "may not change what it is regarding" in req.reason
    ctx = bob.post("/api/addin/context", json={"item": as_bob(item)})
    status = ctx.get_json()["tracking"]
    assert status["status"] == "failed" and status["activity_id"] is None
    no_id_of(victim, ctx)


def test_add_in_track_does_not_relink_a_meeting_tracked_in_another_unit(world, pane):
    ann, bob = pane(world.ann), pane(world.bob)
    item = with_content(meeting())
    item["internet_headers"] = None
    assert ann.post("/api/addin/track", json={"item": item}).status_code == 200
    appt = db.session.scalar(select(Appointment))
    r = bob.post("/api/addin/track", json={"item": as_bob(item),
                                           "regarding": {"type": "contact", "id": world.dave.id}})
    refused(r)
    no_id_of(appt, r)
    # tracking it without a regarding changes nothing and names nothing bob may not read
    again = bob.post("/api/addin/track", json={"item": as_bob(item)})
    assert again.status_code == 200 and again.get_json()["tracking"]["activity_id"] is None
    no_id_of(appt, again)
    db.session.expire_all()
    assert appt.regarding_ref is None and appt.modified_by_id == world.ann.id


def test_rest_does_not_relink_an_email_tracked_in_another_unit(world, pane, api_client):
    ann = pane(world.ann)
    item = message(internet_message_id="<m3@fabrikam.test>")
    assert ann.post("/api/addin/track", json={"item": with_content(item)}).status_code == 200
    victim = the_email("m3@fabrikam.test")
    api = api_client(world.bob)
    r = api.post("/api/v1/activities", json={
        "type": "email", "direction": "incoming", "subject": "Widgets order",
        "message_id": "<m3@fabrikam.test>", "received_on": "2025-03-04T10:00:00Z",
        "text_body": "x", "regarding": {"type": "contact", "id": world.dave.id},
        "parties": [{"role": "from", "address": "carol@fabrikam.test"}]})
    assert r.status_code in (403, 409), r.get_data(as_text=True)
    no_id_of(victim, r)
    assert api.put(f"/api/v1/activities/{victim.id}/regarding",
                   json={"regarding": {"type": "contact", "id": world.dave.id}}).status_code == 404
    db.session.expire_all()
    assert victim.regarding_ref is None and victim.modified_by_id == world.ann.id


def test_a_user_who_may_relink_does_and_is_recorded(world, pane, api_client):
    manager = create_user("mia@contoso.test", "Mia Manager", unit=world.ann.business_unit,
                          roles=["Sales Manager"])
    db.session.commit()
    item = message(internet_message_id="<m4@fabrikam.test>")
    assert pane(world.ann).post("/api/addin/track", json={"item": with_content(item)}).status_code == 200
    mine = {**item, "user_address": "mia@contoso.test"}
    r = pane(manager).post("/api/addin/track", json={
        "item": with_content(mine), "regarding": {"type": "account", "id": world.fabrikam.id}})
    assert r.status_code == 200, r.get_data(as_text=True)
    email = the_email("m4@fabrikam.test")
    assert r.get_json()["tracking"]["activity_id"] == email.id
    db.session.expire_all()
    assert email.regarding_ref == ("account", world.fabrikam.id)
    assert email.modified_by_id == manager.id and email.owner_user_id == world.ann.id


def test_a_folder_tracked_to_ones_own_record_does_not_relink_anothers_email(app, make_user,
                                                                           make_unit, tmp_path):
    """Through a real sync: Mallory (another unit) drops a message with the Message-ID of
    Bob's tracked email into her Maildir folder tracked to her own account."""
    crm = w.build_crm(make_user)
    victim = w.track_earlier(crm, mid="secret@org.example")
    before = victim.regarding_ref
    mallory = make_user("mallory@org.example", name="Mallory M", unit=make_unit("Elsewhere"))
    hers = w.record(mallory, "account", name="Mallory's account")
    store = w.MaildirStore(tmp_path / "store", "mallory@org.example")
    box = w.store_mailbox(store, mallory, tracking_option="none")
    store.create_folder("INBOX/Mine")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Mine"], "INBOX/Mine", ("account", hers.id))
    db.session.commit()
    store.deliver(w.raw(sender="bob@org.example", to="mallory@org.example", subject="Quote",
                        mid="secret@org.example"), "INBOX/Mine")
    result = sync_mailbox(box.id)
    assert result.status == "success"
    db.session.expire_all()
    assert victim.regarding_ref == before and victim.modified_by_id == crm.bob.id
    row = w.decision(box, "secret@org.example")
    assert not row.tracked and row.activity_id is None
    assert "may not change what it is regarding" in row.reason
    assert str(victim.id) not in row.reason
