"""The Graph item store (appointments, contacts, tasks) against the fake Graph service:
collections, initial reads in pages, writes both ways, changes since a cursor, a recurring
series with a changed and a cancelled occurrence, conflicts, a connection dropped mid-read,
expired delta links, missing permissions, batched writes and subscriptions."""
from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from icalendar import Calendar
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from server.sync.connectors.base import Account, ConnectorError, ItemConflict
from server.sync.connectors.graph_items import GraphItemStore
from tests.servers.ports import LOOPBACK
from tests.sync.graph.conftest import _Quiet
from tests.sync.item_stores import (CARD, KINDS, NEW, START, create_update_delete, default,
                                    event_text, read_all)

ADDRESS = "bob@org.example"
WEEKLY = {"pattern": {"type": "weekly", "interval": 1, "firstDayOfWeek": "sunday",
                      "daysOfWeek": [START.strftime("%A").lower()]},
          "range": {"type": "numbered", "numberOfOccurrences": 6,
                    "startDate": START.date().isoformat(), "recurrenceTimeZone": "UTC"}}


def account(graph, **settings) -> Account:
    return Account(address=ADDRESS, settings=graph.profile_settings(**settings),
                   token_provider=lambda fresh=False: graph._token("app", graph.app_roles)["access_token"])


@pytest.fixture
def box(graph):
    return graph.add_mailbox(ADDRESS)


def test_collections_of_each_kind(graph, box):
    graph.add_collection(ADDRESS, "event", "Projects")
    graph.add_collection(ADDRESS, "contact", "Customers")
    graph.add_collection(ADDRESS, "task", "Deals")
    with GraphItemStore(account(graph)) as store:
        found = {kind: {(c.name, c.default) for c in store.collections(kind)} for kind in KINDS}
    assert found == {"appointment": {("Calendar", True), ("Projects", False)},
                     "contact": {("Contacts", True), ("Customers", False)},
                     "task": {("Tasks", True), ("Deals", False)}}


def test_initial_read_in_pages_one_item_per_series(graph, box):
    graph.seed_items(ADDRESS, events=30, contacts=23, tasks=4, recurring=0.1)
    with GraphItemStore(account(graph)) as store:
        events, removed, _ = read_all(store, default(store, "appointment"), limit=7)
        contacts, _, _ = read_all(store, default(store, "contact"), limit=7)
        tasks, _, _ = read_all(store, default(store, "task"), limit=3)
    assert len(events) == 30 and not removed
    assert len({i.uid for i in events.values()}) == 30
    series = [i for i in events.values() if "RRULE" in i.data]
    assert len(series) == 3
    assert all(i.data.count("RECURRENCE-ID") == 1 and "EXDATE" in i.data for i in series)
    assert len(contacts) == 23 and len(tasks) == 4
    assert all(i.etag for i in [*events.values(), *contacts.values(), *tasks.values()])


@pytest.mark.parametrize("kind", KINDS)
def test_create_update_delete_and_changes_since_a_cursor(graph, box, kind):
    with GraphItemStore(account(graph)) as store:
        create_update_delete(store, kind)
    assert graph.box(ADDRESS).items == {}


def test_a_change_made_in_outlook_arrives(graph, box):
    contact = graph.add_contact(ADDRESS, givenName="Ann", surname="Lee", displayName="Ann Lee")
    with GraphItemStore(account(graph)) as store:
        collection = default(store, "contact")
        _, _, cursor = read_all(store, collection)
        graph.update_item(ADDRESS, contact, jobTitle="Buyer")
        items, _, _ = read_all(store, collection, cursor)
    assert "TITLE:Buyer" in items[contact].data


def _components(text: str) -> dict:
    """A series' VEVENTs by RECURRENCE-ID (None: the master), without the stamps that change."""
    out = {}
    for event in Calendar.from_ical(text).walk("VEVENT"):
        rid = event.get("RECURRENCE-ID")
        out[rid.dt if rid is not None else None] = {
            k: event[k].to_ical() if hasattr(event[k], "to_ical") else str(event[k])
            for k in event if k not in ("UID", "DTSTAMP")}
    return out


def test_recurring_series_with_a_changed_and_a_cancelled_occurrence_round_trips(graph, box):
    series = graph.add_event(ADDRESS, "Weekly review", START, recurrence=WEEKLY)
    graph.change_occurrence(ADDRESS, series, (START + timedelta(days=7)).date(),
                            subject="Weekly review (moved)",
                            start={"dateTime": f"{START + timedelta(days=7, hours=2):%Y-%m-%dT%H:%M:%S}.0000000", "timeZone": "UTC"},
                            end={"dateTime": f"{START + timedelta(days=7, hours=3):%Y-%m-%dT%H:%M:%S}.0000000", "timeZone": "UTC"})
    graph.cancel_occurrence(ADDRESS, series, (START + timedelta(days=14)).date())
    with GraphItemStore(account(graph)) as store:
        calendar = default(store, "appointment")
        items, _, _ = read_all(store, calendar)
        read = items[series]
        text = read.data
        assert "RRULE:FREQ=WEEKLY;COUNT=6" in text
        assert f"EXDATE:{START + timedelta(days=14):%Y%m%dT%H%M%SZ}" in text
        assert f"RECURRENCE-ID:{START + timedelta(days=7):%Y%m%dT%H%M%SZ}" in text
        # the same series written as a new event comes back the same
        copy = store.put(calendar, text.replace(read.uid, "copy-" + read.uid))
        assert _components(copy.data) == _components(text)
        made = graph.item(ADDRESS, copy.ref)
        assert made.cancelled == {(START + timedelta(days=14)).date().isoformat()}
        assert made.exceptions[(START + timedelta(days=7)).date().isoformat()]["subject"] == \
            "Weekly review (moved)"
        # and a second cancelled occurrence written from the CRM reaches Outlook
        later = START + timedelta(days=21)
        more = text.replace(f"EXDATE:{START + timedelta(days=14):%Y%m%dT%H%M%SZ}",
                            f"EXDATE:{START + timedelta(days=14):%Y%m%dT%H%M%SZ},"
                            f"{later:%Y%m%dT%H%M%SZ}")
        store.put(calendar, more, series, read.etag)
    assert graph.item(ADDRESS, series).cancelled == {
        (START + timedelta(days=14)).date().isoformat(), later.date().isoformat()}


def test_a_create_repeated_after_a_lost_answer_makes_one_event(graph, box):
    with GraphItemStore(account(graph)) as store:
        calendar = default(store, "appointment")
        first = store.put(calendar, NEW["appointment"])
        again = store.put(calendar, NEW["appointment"])
    assert again.ref == first.ref and len(graph.box(ADDRESS).items) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_over_a_newer_version_is_a_conflict(graph, box, kind):
    with GraphItemStore(account(graph)) as store:
        collection = default(store, kind)
        created = store.put(collection, NEW[kind])
        graph.update_item(ADDRESS, created.ref, categories=["Changed in Outlook"])
        with pytest.raises(ItemConflict) as caught:
            store.put(collection, NEW[kind], created.ref, created.etag)
        assert caught.value.ref == created.ref
        with pytest.raises(ItemConflict):
            store.delete(collection, created.ref, created.etag)
    assert graph.item(ADDRESS, created.ref).fields["categories"] == ["Changed in Outlook"]


def test_a_dropped_connection_mid_read_loses_nothing(graph, box):
    graph.seed_items(ADDRESS, events=24, recurring=0.25)
    with GraphItemStore(account(graph)) as store:
        calendar = default(store, "appointment")
        first = store.changes(calendar, None, 5)
        graph.drop_requests = 1
        with pytest.raises(ConnectorError) as caught:
            store.changes(calendar, first.cursor, 5)
        assert caught.value.code == "connection_lost"
    with GraphItemStore(account(graph)) as store:  # the next sync, from the stored cursor
        rest, _, _ = read_all(store, calendar, first.cursor, limit=5)
    refs = {i.ref for i in first.items} | set(rest)
    assert refs == set(graph.box(ADDRESS).items)


def test_an_expired_delta_link_starts_over_and_says_so(graph, box):
    graph.seed_items(ADDRESS, contacts=12)
    with GraphItemStore(account(graph)) as store:
        folder = default(store, "contact")
        _, _, cursor = read_all(store, folder)
        graph.expire_delta_tokens()
        changes = store.changes(folder, cursor)
    assert changes.reset and len(changes.items) == 12 and not changes.more


@pytest.mark.parametrize("kind, role, wanted", [
    ("appointment", "Calendars.ReadWrite", "Calendars.ReadWrite"),
    ("contact", "Contacts.ReadWrite", "Contacts.ReadWrite"),
    ("task", "Tasks.ReadWrite.All", "Tasks.ReadWrite.All")])
def test_a_missing_permission_is_named(graph, box, kind, role, wanted):
    graph.app_roles = tuple(r for r in graph.app_roles if r != role)
    with GraphItemStore(account(graph)) as store, pytest.raises(ConnectorError) as caught:
        store.collections(kind)
    assert caught.value.severity == "auth" and wanted in caught.value.message
    assert "admin consent" in caught.value.message


def test_many_writes_go_in_batches_and_reading_costs_few_requests(graph, box):
    cards = [CARD.replace("c1", f"c{n}").replace("Ann Lee", f"Person {n}") for n in range(45)]
    with GraphItemStore(account(graph)) as store:
        folder = default(store, "contact")
        before = graph.stats["http"]
        written = store.put_many(folder, [(card, None, None) for card in cards])
        assert graph.stats["http"] - before == 3  # 45 creates: $batch requests of 20
        assert all(not isinstance(w, Exception) for w in written)
        stale = written[0]
        graph.update_item(ADDRESS, stale.ref, jobTitle="Buyer")
        again = store.put_many(folder, [(cards[0], stale.ref, stale.etag),
                                        (cards[1], written[1].ref, written[1].etag)])
        assert isinstance(again[0], ItemConflict) and not isinstance(again[1], Exception)
        graph.seed_items(ADDRESS, events=100, recurring=0.1)
        before = graph.stats["http"]
        events, _, _ = read_all(store, default(store, "appointment"))
        requests = graph.stats["http"] - before
    print(f"\nGraph: {requests} HTTP requests for {len(events)} events (10% series)")
    assert len(events) == 100 and requests <= 3  # delta pages of 500, the series in a $batch


def test_subscriptions_for_each_kind_are_notified(graph, box):
    posted = []

    def app(environ, start_response):
        request = Request(environ)
        if "validationToken" in request.args:
            return Response(request.args["validationToken"], 200,
                            content_type="text/plain")(environ, start_response)
        posted.append(request.get_json())
        return Response("", 202)(environ, start_response)

    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://{LOOPBACK}:{server.server_port}/notify"
    try:
        with GraphItemStore(account(graph)) as store:
            subscribed = {}
            for kind in KINDS:
                collection = default(store, kind)
                store.changes(collection, None)
                sub = store.create_subscription(collection.key, url, f"state-{kind}",
                                                datetime.now(timezone.utc) + timedelta(days=6))
                subscribed[sub["id"]] = kind
            renewed = store.renew_subscription(sub["id"], datetime.now(timezone.utc) + timedelta(days=2))
            assert renewed["id"] == sub["id"]
        graph.add_event(ADDRESS, "Call", START)
        graph.add_contact(ADDRESS, displayName="Ann Lee")
        graph.add_task(ADDRESS, "Follow up")
        graph.wait_for_deliveries()
        with GraphItemStore(account(graph)) as store:
            store.delete_subscription(sub["id"])
            store.delete_subscription(sub["id"])  # gone already is no error
    finally:
        server.shutdown()
        server.server_close()
    states = sorted(n["value"][0]["clientState"] for n in posted)
    assert states == ["state-appointment", "state-contact", "state-task"]
    assert len(graph.subscriptions) == 2


def test_an_rrule_outlook_cannot_hold_is_refused_for_that_item(graph, box):
    hourly = event_text("h1", "Every hour", extra="RRULE:FREQ=HOURLY;COUNT=3\r\n")
    with GraphItemStore(account(graph)) as store, pytest.raises(ConnectorError) as caught:
        store.put(default(store, "appointment"), hourly)
    assert caught.value.code == "item_unrepresentable" and caught.value.severity == "message"
    assert graph.box(ADDRESS).items == {}


def test_all_day_event_stays_all_day(graph, box):
    day = date.today() + timedelta(days=3)
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:ad\r\n"
            f"DTSTART;VALUE=DATE:{day:%Y%m%d}\r\nDTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}\r\n"
            "SUMMARY:Fair\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    with GraphItemStore(account(graph)) as store:
        made = store.put(default(store, "appointment"), text)
    assert f"DTSTART;VALUE=DATE:{day:%Y%m%d}" in made.data
    assert graph.item(ADDRESS, made.ref).fields["isAllDay"] is True
