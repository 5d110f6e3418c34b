"""The pull half of an item sync: a collection's changes since its cursor, taken into the
CRM. Only tracked items come in (the "Tracked to Regarding" category, a tracked collection,
a UID the CRM knows: one appointment per meeting whoever's calendar it comes from, or a
meeting the user asked the Outlook pane to track before sending it: ``meetings``); each
field is merged by its direction; each batch is one transaction, the cursor stored with the
last, so a crash repeats work and the repeat finds the items' versions already stored.
Items deleted on the server go from the CRM when the mailbox's user owns them and no other
mailbox syncs them; removing the category untracks."""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from server.crm.history import RecordHistory
from server.db import db
from server.i18n import N_
from server.security import authz
from server.sync.acts import marks, meetings, records
from server.sync.connectors.base import Collection, Item, ItemStore
from server.sync.items import calendar, vcard
from server.sync.items.fields import FIELDS, encode, label, to_json
from server.sync.items.merge import merge
from server.sync.mail.decision import TRACKED_CATEGORY
from server.sync.models import Alert, FolderRule, ItemCursor, ItemLink, Mailbox

BATCH = 200
READERS = {"appointment": calendar.read_event, "task": calendar.read_task,
           "contact": vcard.read_contact}
NOT_TRACKED = N_('not tracked: it has no "%(category)s" category, its calendar or address book '
                 "is not a tracked folder, and the CRM has no record of its UID") % {
                     "category": TRACKED_CATEGORY}


@dataclass
class ActsResult:
    read: int = 0
    created: int = 0
    updated: int = 0
    deleted: int = 0
    pushed: int = 0
    conflicts: int = 0
    not_tracked: int = 0
    failed: int = 0
    skipped_kinds: dict[str, str] = field(default_factory=dict)  # kind -> why not synced

    @property
    def summary(self) -> str:
        parts = [f"{self.read} read, {self.created} created, {self.updated} updated, "
                 f"{self.deleted} deleted in the CRM, {self.pushed} written to the server"]
        parts += [f"{kind}s not synced: {why}" for kind, why in self.skipped_kinds.items()]
        return "; ".join(parts)


@dataclass
class Run:
    mailbox: Mailbox
    principal: authz.Principal
    store: ItemStore
    kind: str
    directions: dict
    result: ActsResult
    tracked_keys: dict[str, FolderRule]
    cache: dict = field(default_factory=dict)  # resolved addresses, accounts by name



def _cursor(run: Run, collection: Collection) -> ItemCursor:
    state = db.session.scalar(select(ItemCursor).where(
        ItemCursor.mailbox_id == run.mailbox.id, ItemCursor.kind == run.kind,
        ItemCursor.collection_key == collection.key))
    if state is None:
        state = ItemCursor(mailbox_id=run.mailbox.id, kind=run.kind,
                           collection_key=collection.key, collection_name=collection.name)
        db.session.add(state)
        db.session.commit()
    return state


def pull(run: Run, collection: Collection, limit: int) -> None:
    state = _cursor(run, collection)
    seen: set[str] = set()
    reset = False
    while True:
        changes = run.store.changes(collection, state.cursor, limit)
        reset = reset or changes.reset
        seen.update(i.ref for i in changes.items)
        batch = max(1, min(BATCH, limit))  # the worker's batch size: one transaction each
        for start in range(0, len(changes.items), batch):
            take_once(run, collection, changes.items[start:start + batch])
            if start + batch < len(changes.items):
                db.session.commit()
        removed = list(changes.removed)
        if reset and not changes.more:  # everything was read again: what was not is gone
            removed += db.session.scalars(select(ItemLink.ref).where(
                ItemLink.mailbox_id == run.mailbox.id, ItemLink.kind == run.kind,
                ItemLink.collection_key == collection.key, ItemLink.ref.not_in(seen))).all()
        _removed(run, removed)
        state.cursor = changes.cursor
        db.session.commit()  # the cursor with the last batch it covers
        if not changes.more:
            return


def take_once(run: Run, collection: Collection, items: list[Item]) -> None:
    """``take``, written out (flushed), on a session with nothing else pending (a batch is a
    transaction of its own). Where another worker stored a record of one of these UIDs
    meanwhile (the organizer's and an attendee's calendars synced at once: the database
    keeps one appointment per UID), the batch is rolled back and taken again, which now
    finds that record and links it."""
    counts = replace(run.result)
    try:
        take(run, collection, items)
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        run.result.__dict__.update(counts.__dict__)
        take(run, collection, items)
        db.session.flush()


def read(kind: str, data: str, parsed=None) -> tuple[dict, list[str]]:
    """(CRM values, the item's categories) of a store's text (read from ``parsed`` where the
    store gave the calendar it wrote the text from: ``Item.parsed``)."""
    values = READERS[kind](data if parsed is None else parsed)
    if kind == "contact":
        return values, vcard.categories_of(data)
    found = [c for c in (values.get("categories") or "").split(",") if c]
    values["categories"] = ",".join(c for c in found if c.casefold()
                                    != TRACKED_CATEGORY.casefold()) or None
    return values, found


def tracked(categories: list[str]) -> bool:
    return any(c.casefold() == TRACKED_CATEGORY.casefold() for c in categories)


def take(run: Run, collection: Collection, items: list[Item], again: bool = False) -> None:
    """Take changed items into the CRM (``again``: items read before, looked at once more:
    the CRM learnt their UID since)."""
    kind, result = run.kind, run.result
    links = {link.ref: link for link in db.session.scalars(select(ItemLink).where(
        ItemLink.mailbox_id == run.mailbox.id, ItemLink.kind == kind,
        ItemLink.ref.in_([i.ref for i in items])))}
    known = records.by_uid(kind, [i.uid for i in items if i.uid and (
        i.ref not in links or links[i.ref].record_id is None)])
    parsed: dict[str, tuple[dict, list[str]] | ValueError] = {}
    for item in items:
        link = links.get(item.ref)
        if link is not None and link.etag and link.etag == item.etag and not again:
            continue  # our own write, or a repeat after a crash
        try:
            parsed[item.ref] = read(kind, item.data, item.parsed)
        except ValueError as exc:
            parsed[item.ref] = exc
    records.prepare(run.cache, kind, [p[0] for p in parsed.values() if isinstance(p, tuple)],
                    run.mailbox.user)
    requests = meetings.pending_for(run.mailbox.user_id) if kind == "appointment" and \
        parsed else []
    with db.session.no_autoflush:  # one flush for the batch, at its commit
        for item in items:
            if item.ref in parsed:
                _take_one(run, collection, item, links.get(item.ref), parsed[item.ref], known,
                          requests)


def _take_one(run: Run, collection: Collection, item: Item, link: ItemLink | None,
              parsed, known: dict, requests: list) -> None:
    kind, result = run.kind, run.result
    result.read += 1
    if isinstance(parsed, ValueError):
        result.failed += 1
        store_link(run, collection, item, link, None, tracked=False,
                   reason=N_("not synced: the server's text cannot be read (%(problem)s)")
                   % {"problem": parsed})
        return
    values, categories = parsed
    if link is not None and link.tracked and link.record_id is None:
        return  # deleted in the CRM: the push deletes it from the server
    was_tracked = link is not None and link.tracked and link.server_data is not None \
        and tracked(read(kind, link.server_data)[1])
    if was_tracked and not tracked(categories) and link.origin == "server":
        _untrack(run, link, item)
        return
    record = _record_of(link) if link is not None and (
        link.tracked or tracked(categories)) else None
    rule = run.tracked_keys.get(collection.key)
    # The pane's request to track this meeting, made before it was sent.
    request = meetings.request_of(requests, item, values) if requests else None
    if record is None:
        record = known.get(item.uid) if item.uid else None
        if record is None and not (tracked(categories) or rule or request):
            result.not_tracked += 1
            store_link(run, collection, item, link, None, tracked=False, reason=NOT_TRACKED)
            return
    synced = link.synced_values if link is not None and link.record_id else None
    before = _server_values(kind, link.server_data) if synced is not None else None
    if record is None:
        record = records.new_record(kind, run.mailbox.user, item.uid or str(uuid.uuid4()))
        db.session.add(record)
        if item.uid:
            known[item.uid] = record  # a second copy in this batch is the same record
        if rule is not None and kind != "contact" and rule.regarding_ref:
            record.set_regarding(*rule.regarding_ref)
        result.created += 1
        crm = {name: None for name in FIELDS[kind]}
    else:
        result.updated += 1
        crm = records.values_of(record, kind)
    server_newer = _server_time(item.data) >= (record.modified_on or _EPOCH)
    merged = merge(kind, crm, synced, values, before, run.directions, server_newer)
    if merged.to_crm:
        records.apply(record, kind, values, list(merged.to_crm), run.mailbox.user,
                      run.cache)
    if request is not None:
        meetings.honour(request, record, item.uid)
    final = encode(records.values_of(record, kind))
    for name in merged.to_server:  # the server still holds its own: pushed next
        final[name] = encode({name: values.get(name)})[name]
    if merged.lost:
        result.conflicts += 1
        _conflict_alert(run, record, kind, merged.lost)
        _conflict_history(run, record, kind, merged.lost, crm, values)
    stored = store_link(run, collection, item, link, record, tracked=True, reason=N_("synced"),
                        synced=final)
    if record in db.session.new or merged.to_crm:
        # Changed by this sync: in step with its link (else the push looks at every record
        # an initial sync made, to find nothing to send).
        record.modified_on = stored.synced_on
    if merged.to_server:  # the CRM's values go out at the push, whenever it changed them
        stored.synced_on = _EPOCH


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _server_values(kind: str, data: str | None) -> dict | None:
    if not data:
        return None
    try:
        return read(kind, data)[0]
    except ValueError:
        return None


def _server_time(data: str) -> datetime:
    """When the server's copy was last changed (LAST-MODIFIED, DTSTAMP, REV), else now."""
    for line in data.replace("\r\n ", "").splitlines():
        name, _, value = line.partition(":")
        if name.split(";")[0].upper() in ("LAST-MODIFIED", "REV", "DTSTAMP"):
            digits = value.strip().replace("-", "").replace(":", "")
            try:
                return datetime.strptime(digits[:15], "%Y%m%dT%H%M%S").replace(
                    tzinfo=timezone.utc)
            except ValueError:
                continue
    return datetime.now(timezone.utc)


def _record_of(link: ItemLink):
    model = records.MODELS[link.kind]
    return db.session.get(model, link.record_id) if link.record_id else None


def store_link(run: Run, collection: Collection, item: Item, link: ItemLink | None, record,
               *, tracked: bool, reason: str, synced: dict | None = None,
               origin: str = "server") -> ItemLink:
    if link is None:
        link = ItemLink(mailbox_id=run.mailbox.id, kind=run.kind, ref=item.ref, origin=origin)
        db.session.add(link)
    link.collection_key, link.etag, link.uid = collection.key, item.etag, item.uid
    link.tracked, link.reason = tracked, reason
    link.server_data = item.data
    link.synced_values = synced
    link.synced_on = datetime.now(timezone.utc)
    if record is not None:  # by relationship: the record may not be flushed yet
        if run.kind == "contact":
            link.contact = record
        else:
            link.activity = record
    return link


def _untrack(run: Run, link: ItemLink, item: Item) -> None:
    """The "Tracked to Regarding" category was taken off: the link to the regarding goes,
    the CRM record stays (as the pane's untrack)."""
    record = _record_of(link)
    if record is not None and run.kind != "contact":
        record.set_regarding(None, None)
    # The record stays linked, untracked: the push neither writes it again nor takes it
    # back; the category put back tracks it again.
    link.tracked, link.etag, link.server_data = False, item.etag, item.data
    link.synced_values = None
    link.reason = N_('untracked: the "%(category)s" category was removed in the mail client') % {
        "category": TRACKED_CATEGORY}


def _removed(run: Run, refs: list[str]) -> None:
    """Items deleted on the server: the CRM record goes too when the mailbox's user owns it
    and no other mailbox syncs it; else only the link goes."""
    if not refs:
        return
    links = db.session.scalars(select(ItemLink).where(
        ItemLink.mailbox_id == run.mailbox.id, ItemLink.kind == run.kind,
        ItemLink.ref.in_(refs))).all()
    if links:  # records that stay may now lack an item: the next push reads everything
        marks.forget(run.mailbox.id, run.kind)
    for link in links:
        record = _record_of(link) if link.tracked else None
        if record is not None and record.owner_user_id == run.mailbox.user_id and \
                authz.can(run.principal, "delete", record) and not _linked_elsewhere(link):
            db.session.delete(record)
            run.result.deleted += 1
        db.session.delete(link)


def _linked_elsewhere(link: ItemLink) -> bool:
    column = ItemLink.contact_id if link.kind == "contact" else ItemLink.activity_id
    return db.session.scalar(select(ItemLink.id).where(
        column == link.record_id, ItemLink.id != link.id, ItemLink.tracked.is_(True))
        .limit(1)) is not None


def shown(value) -> str | None:
    """A field's value in words for people (its JSON form; parties as their addresses)."""
    value = to_json(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        return "; ".join(f'{v.get("role")}: {v.get("address")}' for v in value)
    return json.dumps(value, sort_keys=True)


def _conflict_history(run: Run, record, kind: str, lost: list, crm: dict,
                      server: dict) -> None:
    """The value each lost field held, on the record's history (``RecordHistory``), beside
    the value that replaced it."""
    source = f"server-side sync of {run.mailbox.email_address}"
    for name, value, side in lost:
        kept = server.get(name) if side == "crm" else crm.get(name)
        entry = RecordHistory(field=name, lost_value=shown(value), kept_value=shown(kept),
                              lost_side=side, source=source[:400],
                              user_id=run.mailbox.user_id)
        if kind == "contact":
            entry.contact = record
        else:
            entry.activity = record
        db.session.add(entry)


def _conflict_alert(run: Run, record, kind: str, lost: list) -> None:
    title = getattr(record, "subject", None) or getattr(record, "full_name", "")
    words = "; ".join(f'{label(name)}: the {"CRM" if side == "crm" else "mail server"}\'s '
                      f'"{encode({name: value})[name]}" was replaced by the later change'
                      for name, value, side in lost)
    db.session.add(Alert(severity="information", code="item_conflict",
                         mailbox_id=run.mailbox.id, user_id=run.mailbox.user_id,
                         message=f'The {kind} "{title}" (#{record.id}) was changed in the CRM '
                                 f"and on the mail server: {words}."))
