"""The push half of an item sync: what the CRM changed goes to the mail server.

- a synced record deleted in the CRM is deleted from the server;
- a record the synchronization filter put on the server and no longer takes is removed
  from the server (never from the CRM); items the user tracked from the mail side stay;
- a changed record's fields that go to the server are written over the server's last text,
  with the version read: a conflict re-reads the collection (which merges both sides by
  their directions) and writes once more;
- a record the filter takes that the server does not have yet is created in the
  collection the store calls the default, marked "Tracked to Regarding"; where the server
  names it itself (Exchange), the record takes that UID.

A push reads the filter's whole selection and every link the first time, and whenever what
decides the selection besides the records changed (``marks``); else only the records changed
since the last complete push, the links of deleted records and those a pull left to write:
a run where nothing changed costs a few indexed queries whatever the number of items."""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import or_, select

from server.db import db, utcnow
from server.i18n import N_
from server.sync.acts import filters, marks, records
from server.sync.acts.pull import BATCH, Run, pull, read, take
from server.sync.connectors.base import Collection, Item, ItemConflict
from server.sync.items import calendar, vcard
from server.sync.items.fields import FIELDS, direction, encode
from server.sync.mail.decision import TRACKED_CATEGORY
from server.sync.models import ItemLink

WRITERS = {"appointment": calendar.write_event, "task": calendar.write_task}


def push(run: Run, default: Collection | None, collections: list[Collection],
         limit: int) -> None:
    """``default``: where new items go (None: the store has nowhere to put them; they wait).
    Reads only the records changed since the last complete push while the filter's other
    inputs are unchanged (``marks``), else the filter's whole selection."""
    kind, model = run.kind, records.MODELS[run.kind]
    by_key = {c.key: c for c in collections}
    started = utcnow()
    rule = filters.rule_for(run.principal.user_id, kind)
    key = marks.filter_key(run.principal, kind, rule, collections)
    work = _work(run, model, filters.selected(run.principal, kind, rule),
                 marks.since(run.mailbox.id, kind, key))
    conflicts = run.result.conflicts
    written = 0
    for link in work.links:
        collection = by_key.get(link.collection_key)
        if collection is None:
            continue
        gone = link.record_id is None
        left = not gone and link.origin == "crm" and link.record_id not in work.selected
        if gone or left:
            _delete(run, collection, link)
            written += 1
        elif link.id in work.touched and _changed(run, link):
            _write(run, collection, link, limit)
            written += 1
        if written and written % BATCH == 0:
            db.session.commit()
    waiting = work.waiting
    for record_id in waiting if default is not None else ():
        record = db.session.get(model, record_id)
        if not _adopt(run, by_key, record):
            _create(run, default, record)
        written += 1
        if written % BATCH == 0:
            db.session.commit()
    # Everything went out (no conflict left for a later run, nothing waiting for a place
    # on the server): the next push may start from here.
    if run.result.conflicts == conflicts and (default is not None or not waiting):
        marks.advance(run.mailbox.id, kind, key, started)
    db.session.commit()


@dataclass
class _Work:
    links: list[ItemLink]  # the tracked links to look at
    selected: set[int]  # their records the filter takes
    touched: set[int]  # links whose record changed since it was last synced
    waiting: list[int]  # records the filter takes that have no link of the mailbox yet


_PENDING = datetime(1970, 1, 2, tzinfo=timezone.utc)  # a pull's "the CRM's values go out"


def _work(run: Run, model, chosen, since: datetime | None) -> _Work:
    """What a push looks at: everything (``since`` None), or the links of records changed
    since then, of records deleted, and of those a pull left for the push to write."""
    column = ItemLink.contact_id if run.kind == "contact" else ItemLink.activity_id
    mine = (ItemLink.mailbox_id == run.mailbox.id, ItemLink.kind == run.kind,
            ItemLink.tracked.is_(True))
    newer = model.modified_on > ItemLink.synced_on
    if since is None:
        links = db.session.scalars(select(ItemLink).where(*mine)).all()
        selected = set(db.session.scalars(select(model.id).where(chosen)))
        touched = set(db.session.scalars(select(ItemLink.id).join(
            model, model.id == column).where(*mine, newer)))
        linked = set(db.session.scalars(select(column).where(*mine[:2])))
        return _Work(links, selected, touched, sorted(selected - linked))
    # Each step reads by an index whatever the planner prefers: the records changed since
    # (by modified_on), then their links and whether the filter takes them (by id).
    recent = db.session.scalars(select(model.id).where(model.modified_on > since)).all()
    selected: set[int] = set()
    linked: set[int] = set()
    wanted: set[int] = set()  # links to write, or of records that left the filter
    touched: set[int] = set()
    for ids in _chunks(recent):
        selected.update(db.session.scalars(select(model.id).where(chosen, model.id.in_(ids))))
        for link_id, record_id, tracked, origin, is_newer in db.session.execute(
                select(ItemLink.id, column, ItemLink.tracked, ItemLink.origin, newer)
                .join(model, model.id == column).where(*mine[:2], column.in_(ids))):
            linked.add(record_id)
            if tracked and (is_newer or (origin == "crm" and record_id not in selected)):
                wanted.add(link_id)
                touched.update([link_id] if is_newer else [])
    waiting = sorted(selected - linked)
    # Deleted records' links, and those a pull left for the push to write.
    links = {link.id: link for link in db.session.scalars(select(ItemLink).where(
        *mine, or_(column.is_(None), ItemLink.synced_on <= _PENDING)))}
    pending = sorted({link.record_id for link in links.values()} - {None})
    touched.update(link.id for link in links.values() if link.record_id is not None)
    for ids in _chunks(pending):
        selected.update(db.session.scalars(select(model.id).where(chosen, model.id.in_(ids))))
    for ids in _chunks(sorted(wanted - links.keys())):
        links.update((link.id, link) for link in db.session.scalars(
            select(ItemLink).where(ItemLink.id.in_(ids))))
    return _Work([links[k] for k in sorted(links)], selected, touched, waiting)


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _delete(run: Run, collection: Collection, link: ItemLink) -> None:
    try:
        run.store.delete(collection, link.ref, link.etag)
    except ItemConflict:
        run.store.delete(collection, link.ref)  # changed there since: the CRM's word stands
    db.session.delete(link)
    run.result.pushed += 1


def _changed(run: Run, link: ItemLink) -> bool:
    record = records.MODELS[run.kind]
    found = db.session.get(record, link.record_id)
    if found is None or link.synced_values is None:
        return False
    return bool(_outgoing(run, encode(records.values_of(found, run.kind)), link.synced_values))


def _outgoing(run: Run, now: dict, synced: dict) -> list[str]:
    return [name for name in FIELDS[run.kind]
            if direction(run.kind, name, run.directions) in ("to_server", "both")
            and now.get(name) != synced.get(name)]


def _text(run: Run, record, uid: str, base: str | None) -> str:
    """The record as the server will hold it: the CRM's values for the fields that go to the
    server, the server's own for the rest, the tracked category among its categories."""
    values = records.values_of(record, run.kind)
    if base:
        server = read(run.kind, base)[0]
        for name in FIELDS[run.kind]:
            if direction(run.kind, name, run.directions) not in ("to_server", "both"):
                values[name] = server.get(name, values[name])
    if run.kind == "contact":
        others = [c for c in (vcard.categories_of(base) if base else [])
                  if c.casefold() != TRACKED_CATEGORY.casefold()]
        return vcard.write_contact(values, uid, base, categories=others + [TRACKED_CATEGORY])
    values["categories"] = ",".join(filter(None, [values.get("categories"), TRACKED_CATEGORY]))
    return WRITERS[run.kind](values, uid, base)


def _write(run: Run, collection: Collection, link: ItemLink, limit: int,
           retried: bool = False) -> None:
    record = db.session.get(records.MODELS[run.kind], link.record_id)
    uid = records.uid_of(record, run.kind) or link.uid
    text = _text(run, record, uid, link.server_data)
    try:
        item = run.store.put(collection, text, link.ref, link.etag)
    except ItemConflict:
        run.result.conflicts += 1
        db.session.commit()  # what was written so far is on the server: keep it
        pull(run, collection, limit)  # merges the server's change by the field directions
        fresh = db.session.get(ItemLink, link.id)
        if not retried and fresh is not None and fresh.tracked and fresh.record_id and \
                _changed(run, fresh):
            _write(run, collection, fresh, limit, retried=True)
        return
    _stored(run, link, item, record)


def _stored(run: Run, link: ItemLink, item, record) -> None:
    link.etag, link.server_data, link.uid = item.etag, item.data, item.uid
    link.synced_values = encode(records.values_of(record, run.kind))
    link.synced_on = datetime.now(timezone.utc)
    link.reason = N_("synced")
    run.result.pushed += 1


def _adopt(run: Run, by_key: dict[str, Collection], record) -> bool:
    """The server has the record's item already, not taken in (an attendee's copy of a
    meeting another mailbox brought in): take it now, rather than write a second copy."""
    uid = records.uid_of(record, run.kind)
    found = db.session.scalar(select(ItemLink).where(
        ItemLink.mailbox_id == run.mailbox.id, ItemLink.kind == run.kind, ItemLink.uid == uid,
        ItemLink.tracked.is_(False), ItemLink.activity_id.is_(None),
        ItemLink.contact_id.is_(None))) if uid else None
    if found is None or found.collection_key not in by_key or not found.server_data:
        return False
    take(run, by_key[found.collection_key],
         [Item(found.ref, found.etag, found.server_data, found.uid)], again=True)
    return True


def _create(run: Run, collection: Collection, record) -> None:
    uid = records.uid_of(record, run.kind)
    minted = not uid
    if minted:
        uid = f"{uuid.uuid4()}@regarding"
        setattr(record, records.UID_COLUMNS[run.kind], uid)
    try:
        item = run.store.put(collection, _text(run, record, uid, None))
    except ItemConflict:  # the server has an item of this UID already: the next pull links it
        return
    if minted and item.uid and item.uid != uid:
        # The server named the item itself (Exchange gives an event its own iCalUId, a
        # contact or task its id): that is the record's identity now, the one every other
        # mailbox's copy of it carries.
        setattr(record, records.UID_COLUMNS[run.kind], item.uid)
    link = ItemLink(mailbox_id=run.mailbox.id, kind=run.kind, ref=item.ref, origin="crm",
                    collection_key=collection.key, tracked=True)
    if run.kind == "contact":
        link.contact = record
    else:
        link.activity = record
    db.session.add(link)
    _stored(run, link, item, record)
    if minted:  # the UID written is the push's own change: in step with its link
        record.modified_on = link.synced_on
