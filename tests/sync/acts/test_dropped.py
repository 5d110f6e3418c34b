"""A server whose connection drops in the middle of a sync. CalDAV (a proxy cuts the
answer): the run fails with a transient error and writes nothing half; the next run takes
everything in once, and after a later drop reads only what changed since the stored token.
Exchange (Graph, EWS: the connection breaks at a page of the calendar's changes): the pages
before it are in with the cursor that covers them, and the next run reads the rest once."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from server.crm.activities import Appointment
from server.db import db
from server.sync.acts.run import sync_items
from server.sync.connectors.base import ConnectorError
from server.sync.models import EmailServerProfile, ItemCursor
from tests.servers.counting_proxy import CountingProxy
from tests.sync.acts.conftest import Server, event

TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def count() -> int:
    return db.session.scalar(select(func.count(Appointment.id)))


def test_a_dropped_connection_writes_nothing_half_and_resumes_from_the_token(store, make_user):
    if store.name != "radicale":
        pytest.skip("the proxy cuts HTTP to a server running here")
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = Server(client, "appointment")
        for n in range(150):
            calendar.store.put(calendar.collection, event(f"e{n}@x", f"Meeting {n}", TRACKED))
    with CountingProxy(store.radicale.host, store.radicale.port) as proxy:
        through = EmailServerProfile(name="Radicale through a proxy", incoming_protocol="caldav",
                                     incoming_host=proxy.host, incoming_port=proxy.port,
                                     incoming_security="none", settings={"timeout": 10},
                                     owning_business_unit_id=box.owning_business_unit_id)
        db.session.add(through)
        db.session.flush()
        box.acts_profile_id = through.id
        db.session.commit()
        proxy.drop_after(4_000)  # in the middle of the collection's (gzipped) answer
        with pytest.raises(ConnectorError) as dropped:
            sync_items(box.id)
        assert dropped.value.severity == "mailbox" and proxy.dropped == 1
        db.session.rollback()
        assert count() == 0 and box.acts_status == "failure"
        assert sync_items(box.id).created == 150 and count() == 150
        with store.client(ann) as client:
            calendar = Server(client, "appointment")
            items = calendar.items()
            for n in range(5):
                calendar.store.put(calendar.collection, event(
                    f"e{n}@x", f"Meeting {n} (moved)", TRACKED, stamp="20250105T000000Z"),
                    items[f"e{n}@x"].ref, items[f"e{n}@x"].etag)
        token = db.session.scalar(select(ItemCursor.cursor).where(
            ItemCursor.mailbox_id == box.id, ItemCursor.kind == "appointment"))
        proxy.drop_after(600)  # early in the run, before anything is taken in
        with pytest.raises(ConnectorError):
            sync_items(box.id)
        db.session.rollback()
        assert db.session.scalar(select(ItemCursor.cursor).where(
            ItemCursor.mailbox_id == box.id, ItemCursor.kind == "appointment")) == token
        result = sync_items(box.id)
    assert result.read == 5 and result.created == 0 and count() == 150
    moved = db.session.scalars(select(Appointment.subject).where(
        Appointment.subject.like("%(moved)"))).all()
    assert len(moved) == 5


def test_exchange_dropping_the_connection_mid_sync_resumes_from_the_cursor(store, make_user):
    ann = make_user("ann@contoso.test")
    box = store.mailbox(ann)
    with store.client(ann) as client:
        calendar = store.server(client, "appointment")
        for n in range(120):
            calendar.store.put(calendar.collection, event(f"e{n}@x", f"Meeting {n}", TRACKED))
    store.drop_connection_at(page=3)
    with pytest.raises(ConnectorError) as dropped:
        sync_items(box.id, limit=50)
    assert dropped.value.severity == "mailbox"
    db.session.rollback()
    assert count() == 100 and box.acts_status == "failure"  # two pages, each whole
    result = sync_items(box.id, limit=50)
    assert (result.read, result.created, count()) == (20, 20, 120)
    assert len(set(db.session.scalars(select(Appointment.global_object_id)))) == 120
