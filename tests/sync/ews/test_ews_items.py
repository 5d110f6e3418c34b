"""The EWS item store (appointments, contacts, tasks) against the fake Exchange endpoint,
mirroring the Graph item store's tests: collections, initial reads in pages, writes both
ways, changes since a cursor, a recurring series with a changed and a cancelled occurrence,
conflicts, a connection dropped mid-read, an invalid sync state, access denied."""
from __future__ import annotations

from datetime import timedelta

import pytest

from server.sync.connectors.base import ConnectorError, ItemConflict
from server.sync.connectors.ews_items import EwsItemStore
from tests.sync.ews.conftest import BOB, ews_account
from tests.sync.item_stores import (KINDS, NEW, START, create_update_delete, default, event_text,
                                    read_all)

FOLDERS = {"appointment": "calendar", "contact": "contacts", "task": "tasks"}
WEEKLY = f"RRULE:FREQ=WEEKLY;COUNT=6;BYDAY={START.strftime('%a')[:2].upper()}\r\n"


@pytest.fixture
def account(exchange):
    return ews_account(exchange, exchange_version="Exchange2016")


def test_collections_of_each_kind(exchange, account):
    exchange.create_folder(BOB, "Calendar/Projects", folder_class="IPF.Appointment")
    exchange.create_folder(BOB, "Customers", folder_class="IPF.Contact")
    exchange.create_folder(BOB, "Deals", folder_class="IPF.Task")
    with EwsItemStore(account) as store:
        found = {kind: {(c.name, c.default) for c in store.collections(kind)} for kind in KINDS}
    assert found == {"appointment": {("Calendar", True), ("Projects", False)},
                     "contact": {("Contacts", True), ("Customers", False)},
                     "task": {("Tasks", True), ("Deals", False)}}


@pytest.mark.parametrize("kind", KINDS)
def test_create_update_delete_and_changes_since_a_cursor(exchange, account, kind):
    with EwsItemStore(account) as store:
        create_update_delete(store, kind)
    assert exchange.records_in(BOB, FOLDERS[kind]) == []


def test_initial_read_in_pages(exchange, account):
    with EwsItemStore(account) as store:
        folder = default(store, "contact")
        for n in range(12):
            store.put(folder, NEW["contact"].replace("Ann Lee", f"Person {n}"))
        first = store.changes(folder, None, 5)
        items, _, _ = read_all(store, folder, limit=5)
    assert first.more and len(first.items) == 5
    assert len(items) == 12 and all(i.etag for i in items.values())


def test_a_change_made_in_outlook_arrives(exchange, account):
    with EwsItemStore(account) as store:
        folder = default(store, "contact")
        made = store.put(folder, NEW["contact"])
        _, _, cursor = read_all(store, folder)
        exchange.set_field(BOB, made.ref, "JobTitle", "Buyer")
        items, _, _ = read_all(store, folder, cursor)
    assert "TITLE:Buyer" in items[made.ref].data


def test_recurring_series_with_a_changed_and_a_cancelled_occurrence(exchange, account):
    with EwsItemStore(account) as store:
        calendar = default(store, "appointment")
        series = store.put(calendar, event_text("series-1", "Weekly review", extra=WEEKLY))
        assert "RRULE:FREQ=WEEKLY;COUNT=6" in series.data and series.uid == "series-1"
        _, _, cursor = read_all(store, calendar)
        moved = START + timedelta(days=7)
        exchange.modify_occurrence(BOB, series.ref, moved, "Weekly review (moved)",
                                   moved + timedelta(hours=2), moved + timedelta(hours=3))
        exchange.delete_occurrence(BOB, series.ref, START + timedelta(days=14))
        items, _, _ = read_all(store, calendar, cursor)
        text = items[series.ref].data
        assert f"EXDATE:{START + timedelta(days=14):%Y%m%dT%H%M%SZ}" in text
        assert f"RECURRENCE-ID:{moved:%Y%m%dT%H%M%SZ}" in text
        assert "SUMMARY:Weekly review (moved)" in text
        # the series changed in the CRM keeps Exchange's occurrences as they are
        renamed = store.put(calendar, text.replace("SUMMARY:Weekly review\r\n",
                                                   "SUMMARY:Weekly review 2\r\n"),
                            series.ref, items[series.ref].etag)
    assert "SUMMARY:Weekly review 2" in renamed.data and "RECURRENCE-ID" in renamed.data


@pytest.mark.parametrize("kind", KINDS)
def test_a_write_over_a_newer_version_is_a_conflict(exchange, account, kind):
    with EwsItemStore(account) as store:
        collection = default(store, kind)
        created = store.put(collection, NEW[kind])
        exchange.set_field(BOB, created.ref, "Categories", "")
        with pytest.raises(ItemConflict) as caught:
            store.put(collection, NEW[kind], created.ref, created.etag)
    assert caught.value.ref == created.ref


def test_a_dropped_connection_mid_read_loses_nothing(exchange, account):
    with EwsItemStore(account) as store:
        folder = default(store, "contact")
        made = {store.put(folder, NEW["contact"].replace("Ann Lee", f"Person {n}")).ref
                for n in range(9)}
        first = store.changes(folder, None, 4)
        exchange.drop_requests = 1
        with pytest.raises(ConnectorError) as caught:
            store.changes(folder, first.cursor, 4)
        assert caught.value.code == "connection_lost"
    with EwsItemStore(account) as store:
        rest, _, _ = read_all(store, folder, first.cursor, limit=4)
    assert {i.ref for i in first.items} | set(rest) == made


def test_an_invalid_sync_state_starts_over_and_says_so(exchange, account):
    with EwsItemStore(account) as store:
        folder = default(store, "task")
        store.put(folder, NEW["task"])
        _, _, cursor = read_all(store, folder)
        exchange.state_generation += 1
        changes = store.changes(folder, cursor)
    assert changes.reset and len(changes.items) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_access_denied_names_the_folder(exchange, account, kind):
    exchange.denied = {FOLDERS[kind]}
    with EwsItemStore(account) as store, pytest.raises(ConnectorError) as caught:
        store.collections(kind)
    noun = {"appointment": "calendar", "contact": "contacts", "task": "tasks"}[kind]
    assert caught.value.severity == "auth" and f"the {noun} folder" in caught.value.message


def test_an_rrule_exchange_cannot_hold_is_refused_for_that_item(exchange, account):
    hourly = event_text("h1", "Every hour", extra="RRULE:FREQ=HOURLY;COUNT=3\r\n")
    with EwsItemStore(account) as store, pytest.raises(ConnectorError) as caught:
        store.put(default(store, "appointment"), hourly)
    assert caught.value.code == "item_unrepresentable"
    assert exchange.records_in(BOB, "calendar") == []


def test_waiting_hears_of_a_change_made_in_outlook(exchange, account):
    with EwsItemStore(account) as store:
        folder = default(store, "contact")
        made = store.put(folder, NEW["contact"])
        read_all(store, folder)
        assert store.wait_for_changes([folder], 0.2) == set()
        exchange.set_field(BOB, made.ref, "JobTitle", "Buyer")
        assert store.wait_for_changes([folder], 10) == {folder.key}


def test_occurrences_changed_and_cancelled_in_the_crm_reach_exchange(exchange, account):
    moved, dropped = START + timedelta(days=7), START + timedelta(days=21)
    override = ("END:VEVENT\r\nBEGIN:VEVENT\r\nUID:series-2\r\n"
                f"RECURRENCE-ID:{moved:%Y%m%dT%H%M%SZ}\r\n"
                f"DTSTART:{moved + timedelta(hours=3):%Y%m%dT%H%M%SZ}\r\n"
                f"DTEND:{moved + timedelta(hours=4):%Y%m%dT%H%M%SZ}\r\n"
                "SUMMARY:Review (later)\r\n")
    text = event_text("series-2", "Review", extra=WEEKLY + f"EXDATE:{dropped:%Y%m%dT%H%M%SZ}\r\n"
                      + override)
    with EwsItemStore(account) as store:
        calendar = default(store, "appointment")
        made = store.put(calendar, text)
        again = store.put(calendar, made.data, made.ref, made.etag)  # written twice: no change
    master = exchange.record(BOB, made.ref)
    assert master.deleted == [f"{dropped:%Y-%m-%dT%H:%M:%SZ}"]
    assert [start for _, start in master.modified] == [f"{moved:%Y-%m-%dT%H:%M:%SZ}"]
    occurrence = exchange.mailbox(BOB).occurrences[master.modified[0][0]]
    assert occurrence.fields["Subject"].text == "Review (later)"
    for item in (made, again):
        assert f"EXDATE:{dropped:%Y%m%dT%H%M%SZ}" in item.data
        assert f"RECURRENCE-ID:{moved:%Y%m%dT%H%M%SZ}" in item.data
        assert f"DTSTART:{moved + timedelta(hours=3):%Y%m%dT%H%M%SZ}" in item.data


def test_all_day_event_stays_all_day(exchange, account):
    day = (START + timedelta(days=1)).date()
    text = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:ad\r\n"
            f"DTSTART;VALUE=DATE:{day:%Y%m%d}\r\nDTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}\r\n"
            "SUMMARY:Fair\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    with EwsItemStore(account) as store:
        made = store.put(default(store, "appointment"), text)
    assert f"DTSTART;VALUE=DATE:{day:%Y%m%d}" in made.data
    assert f"DTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}" in made.data
