"""What the item stores' tests share (Graph and EWS, mirroring each other): texts to write,
reading a collection to the end of a round, and the create / update / delete scenario."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

START = (datetime.now(timezone.utc) + timedelta(days=2)).replace(hour=9, minute=0, second=0,
                                                                microsecond=0)
KINDS = ("appointment", "contact", "task")


def default(store, kind: str):
    return next(c for c in store.collections(kind) if c.default)


def read_all(store, collection, cursor=None, limit=500):
    """Every item and removal from ``cursor`` to the end of the round: (items, removed, cursor)."""
    items, removed = {}, []
    while True:
        changes = store.changes(collection, cursor, limit)
        items.update({i.ref: i for i in changes.items})
        removed.extend(changes.removed)
        cursor = changes.cursor
        if not changes.more:
            return items, removed, cursor


def event_text(uid: str, summary: str, start: datetime = START, extra: str = "") -> str:
    end = start + timedelta(hours=1)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\nDTEND:{end:%Y%m%dT%H%M%SZ}\r\n"
            f"SUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n")


CARD = ("BEGIN:VCARD\r\nVERSION:4.0\r\nUID:c1\r\nFN:Ann Lee\r\nN:Lee;Ann;;;\r\n"
        "EMAIL:ann@customer.example\r\nORG:Contoso\r\nEND:VCARD\r\n")
TODO = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VTODO\r\nUID:t1\r\n"
        "SUMMARY:Send the offer\r\nDUE;VALUE=DATE:20300105\r\nSTATUS:NEEDS-ACTION\r\n"
        "END:VTODO\r\nEND:VCALENDAR\r\n")
NEW = {"appointment": event_text("crm-1", "Kick-off"), "contact": CARD, "task": TODO}


def create_update_delete(store, kind: str) -> str:
    """Create, read since a cursor, update with the etag read, delete twice, read the removal:
    the ref of the item, gone at the end."""
    collection = default(store, kind)
    _, _, cursor = read_all(store, collection)
    created = store.put(collection, NEW[kind])
    items, removed, cursor = read_all(store, collection, cursor)
    assert list(items) == [created.ref] and not removed
    changed = NEW[kind].replace("Kick-off", "Kick-off moved").replace(
        "FN:Ann Lee", "FN:Ann Lee-Smith").replace("Send the offer", "Send the new offer")
    updated = store.put(collection, changed, created.ref, created.etag)
    assert updated.ref == created.ref and updated.etag != created.etag
    items, _, cursor = read_all(store, collection, cursor)
    assert any(word in items[created.ref].data
               for word in ("Kick-off moved", "Ann Lee-Smith", "Send the new offer"))
    store.delete(collection, created.ref, updated.etag)
    store.delete(collection, created.ref)  # gone already is no error
    items, removed, _ = read_all(store, collection, cursor)
    assert not items and removed == [created.ref]
    return created.ref
