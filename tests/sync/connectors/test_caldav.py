"""The CalDAV/CardDAV item store against a real Radicale: discovery (and a first collection
made where an account has none), incremental changes by sync token, writes with If-Match,
conflicts, deletes, an expired token, refused passwords and a server without
sync-collection."""
from __future__ import annotations

import pytest

from server.sync.connectors import item_store
from server.sync.connectors.base import (Account, Collection, ConnectorError, ItemConflict)
from server.sync.connectors.caldav import CalDavStore, uid_of

EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
         "DTSTAMP:20240101T000000Z\r\nDTSTART:20240105T100000Z\r\nDTEND:20240105T110000Z\r\n"
         "SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
CARD = ("BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\n"
        "END:VCARD\r\n")


def account(radicale, user, password=None) -> Account:
    return Account(f"{user.username}@example.com", host=radicale.host, port=radicale.port,
                   security="none", username=user.username,
                   password=password or user.password)


def test_registry_names_the_store():
    assert item_store("caldav") is CalDavStore
    with pytest.raises(ConnectorError):
        item_store("gopher")


def test_discovery_makes_one_collection_per_kind(radicale, radicale_user):
    with CalDavStore(account(radicale, radicale_user)) as store:
        found = {kind: store.collections(kind) for kind in ("appointment", "task", "contact")}
    for kind, collections in found.items():
        assert len(collections) == 1 and collections[0].default and collections[0].kind == kind
        assert {"changes", "write"} <= collections[0].features
    with CalDavStore(account(radicale, radicale_user)) as store:  # found again, not made twice
        assert store.collections("appointment") == found["appointment"]


@pytest.mark.parametrize("kind,template,field", [("appointment", EVENT, "summary"),
                                                 ("contact", CARD, "name")])
def test_create_change_delete_by_sync_token(radicale, radicale_user, kind, template, field):
    with CalDavStore(account(radicale, radicale_user)) as store:
        collection = store.collections(kind)[0]
        first = store.changes(collection, None)
        assert first.items == [] and first.cursor
        created = store.put(collection, template.format(uid="u-1@test", **{field: "One"}))
        assert created.uid == "u-1@test" and created.etag
        seen = store.changes(collection, first.cursor)
        assert [(i.ref, i.etag, i.uid) for i in seen.items] == [(created.ref, created.etag,
                                                                  "u-1@test")]
        assert "One" in seen.items[0].data
        changed = store.put(collection, template.format(uid="u-1@test", **{field: "Two"}),
                            created.ref, created.etag)
        assert changed.etag != created.etag
        with pytest.raises(ItemConflict) as conflict:  # the old version is gone
            store.put(collection, template.format(uid="u-1@test", **{field: "Three"}),
                      created.ref, created.etag)
        assert conflict.value.ref == created.ref
        again = store.changes(collection, seen.cursor)
        assert [i.etag for i in again.items] == [changed.etag] and "Two" in again.items[0].data
        with pytest.raises(ItemConflict):
            store.delete(collection, created.ref, created.etag)
        store.delete(collection, created.ref, changed.etag)
        store.delete(collection, created.ref)  # gone already: no error
        gone = store.changes(collection, again.cursor)
        assert gone.items == [] and gone.removed == [created.ref]
        assert store.changes(collection, gone.cursor).removed == []


def test_a_refused_token_reads_everything_again(radicale, radicale_user):
    with CalDavStore(account(radicale, radicale_user)) as store:
        collection = store.collections("appointment")[0]
        store.put(collection, EVENT.format(uid="kept@test", summary="Kept"))
        changes = store.changes(collection, "http://radicale.org/ns/sync/not-a-token")
        assert changes.reset and [i.uid for i in changes.items] == ["kept@test"]


def test_tasks_and_events_of_one_calendar_are_told_apart(radicale, radicale_user):
    with CalDavStore(account(radicale, radicale_user)) as store:
        events = store.collections("appointment")[0]
        store.put(events, EVENT.format(uid="e@test", summary="Event"))
        store.put(events, EVENT.replace("VEVENT", "VTODO").format(uid="t@test", summary="Todo"))
        as_tasks = Collection(events.key, events.name, "task", features=events.features)
        assert [i.uid for i in store.changes(events, None).items] == ["e@test"]
        assert [i.uid for i in store.changes(as_tasks, None).items] == ["t@test"]


def test_wrong_password_is_an_auth_error(radicale, radicale_user):
    with pytest.raises(ConnectorError) as refused:
        with CalDavStore(account(radicale, radicale_user, "wrong")) as store:
            store.collections("appointment")
    assert refused.value.severity == "auth" and radicale_user.username in refused.value.message


def test_a_collection_without_sync_collection_is_refused_with_advice(radicale, radicale_user):
    with CalDavStore(account(radicale, radicale_user)) as store:
        found = store.collections("appointment")[0]
        plain = Collection(found.key, found.name, found.kind, features=frozenset({"write"}))
        with pytest.raises(ConnectorError) as refused:
            store.changes(plain, None)
    assert refused.value.code == "no_sync_collection" and "RFC 6578" in refused.value.message


def test_a_stopped_server_is_a_transient_error(make_radicale_user_on_private):
    radicale, user = make_radicale_user_on_private
    with CalDavStore(account(radicale, user)) as store:
        collection = store.collections("contact")[0]
        radicale.stop()
        with pytest.raises(ConnectorError) as lost:
            store.changes(collection, None)
    assert lost.value.severity == "mailbox" and lost.value.retry_after


@pytest.fixture
def make_radicale_user_on_private(tmp_path):
    from tests.servers.radicale_server import RadicaleServer
    with RadicaleServer(tmp_path / "dav") as radicale:
        yield radicale, radicale.add_user("solo", "pw-solo")


def test_uid_of_reads_folded_lines():
    assert uid_of("BEGIN:VCARD\r\nUID:abc\r\n def\r\nEND:VCARD\r\n") == "abcdef"
    assert uid_of("BEGIN:VCARD\r\nFN:x\r\nEND:VCARD\r\n") is None
