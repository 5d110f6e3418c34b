"""The fake Microsoft Graph's calendars, contacts and To Do lists (``FakeItems``, mixed into
``tests.fakes.graph.FakeGraph``), built from Microsoft's documented shapes (Graph v1.0
reference: calendar, event, event delta on a calendarView, instances, contactFolder,
contact, contact delta, todoTaskList, todoTask, todoTask delta, subscription):

* ``/users/{u}/calendars``; ``calendars/{id}/calendarView/delta?startDateTime&endDateTime``
  with pages (``Prefer: odata.maxpagesize``, default 10), ``@odata.nextLink`` /
  ``@odata.deltaLink`` and ``@removed`` rows. A page holds single instances, series masters,
  and each series' occurrences and exceptions inside the window (their ids are their own,
  with ``seriesMasterId``); cancelling an occurrence removes its row and changes the master
  (``cancelledOccurrences``, ``OID.{id}.{yyyy-mm-dd}``). ``events/{id}`` GET (``$expand=
  exceptionOccurrences``), PATCH (an occurrence PATCHed becomes an exception), DELETE (an
  occurrence deleted is cancelled); ``events/{id}/instances``; ``calendars/{id}/events``
  POST (``transactionId`` makes a repeated create return the first event).
* ``contactFolders``, ``contacts/delta`` (the default folder), ``contactFolders/{id}/
  contacts/delta``, ``contacts`` POST, ``contacts/{id}`` GET/PATCH/DELETE.
* ``todo/lists``, ``todo/lists/{id}/tasks/delta``, ``tasks`` POST, ``tasks/{id}``
  GET/PATCH/DELETE.
* An event created through the API gets the mailbox as its organizer, and each attendee
  with a mailbox in the fake gets a copy (same ``iCalUId``), as Exchange sends invitations.
  ``lastModifiedDateTime`` is the time of the last change by ``clock`` (a test may set it).
* Every item has an ``@odata.etag`` (``W/"n"``); a write with another ``If-Match`` answers
  412 ``ErrorIrresolvableConflict``. Roles: Calendars.ReadWrite, Contacts.ReadWrite,
  Tasks.ReadWrite.All (app) / Tasks.ReadWrite (delegated), else 403 ``ErrorAccessDenied``.
  An expired delta token (``expire_delta_tokens``) answers 410 ``SyncStateNotFound``.
* Subscriptions (made in ``tests.fakes.graph``) on the resources Microsoft documents for
  change notifications: ``events`` (every calendar of the mailbox; Graph takes none on one
  calendar), ``contacts`` (the default folder), ``contactFolders/{id}/contacts`` and
  ``todo/lists/{id}/tasks`` (at most 4,230 minutes): each creation, update and deletion of
  an item, by a test's helper or through the API, is posted to the subscription's URL with
  its ``clientState``, for the change types it asked for.

Tests act as Outlook would with ``add_event``, ``cancel_occurrence``, ``change_occurrence``,
``add_contact``, ``add_task``, ``update_item``, ``delete_item``; ``seed_items`` fills a
mailbox fast (for ``bench/act.py``); ``stats`` counts requests (``http``: on the wire, a
``$batch`` being one; ``batch_items``: inside batches).
"""
from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from urllib.parse import quote, unquote

from dateutil import rrule

from tests.fakes.graph_wire import _b64url, _error, _iso, _unb64url

ITEM_APP_ROLES = ("Calendars.ReadWrite", "Contacts.ReadWrite", "Tasks.ReadWrite.All")
NOT_FOUND = (404, "ErrorItemNotFound", "The specified object was not found in the store.")
CONFLICT = ("The send or update operation could not be performed because the change key "
            "passed in the request does not match the current change key for the item.")
ODATA_TYPE = {"event": "#microsoft.graph.event", "contact": "#microsoft.graph.contact",
              "task": "#microsoft.graph.todoTask"}
WEEKDAYS = {"monday": rrule.MO, "tuesday": rrule.TU, "wednesday": rrule.WE,
            "thursday": rrule.TH, "friday": rrule.FR, "saturday": rrule.SA, "sunday": rrule.SU}
INDEXES = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
ALL_EVENTS = "*events"  # what a subscription on users/{id}/events watches: every calendar


def item_role(rest: str, delegated: bool) -> str | None:
    """The permission a request path under ``/users/{u}`` needs, if it is about items."""
    if re.match(r"^/(calendars|events|calendarView)\b", rest):
        return "Calendars.ReadWrite"
    if re.match(r"^/(contacts|contactFolders)\b", rest):
        return "Contacts.ReadWrite"
    if rest.startswith("/todo/"):
        return "Tasks.ReadWrite" if delegated else "Tasks.ReadWrite.All"
    return None


@dataclass
class FakeCollection:
    id: str
    kind: str  # event contact task
    name: str
    default: bool = False


@dataclass
class FakeItem:
    id: str
    kind: str
    collection: str
    fields: dict
    version: int
    n: int
    created: datetime
    modified: datetime | None = None  # lastModifiedDateTime (``_item_changed`` sets it)
    exceptions: dict[str, dict] = field(default_factory=dict)  # yyyy-mm-dd -> fields
    cancelled: set[str] = field(default_factory=set)  # yyyy-mm-dd


def _utc(value: dict) -> datetime:
    return datetime.fromisoformat(str(value["dateTime"])[:19]).replace(tzinfo=timezone.utc)


def _graph_time(value: datetime) -> dict:
    return {"dateTime": value.strftime("%Y-%m-%dT%H:%M:%S.0000000"), "timeZone": "UTC"}


def _parse(text: str) -> datetime:
    text = str(text).replace("Z", "+00:00")
    value = datetime.fromisoformat(text[:19] + (text[-6:] if text[-6] in "+-" else ""))
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def occurrence_starts(fields: dict, until: datetime) -> list[datetime]:
    """A series' occurrence starts up to ``until``, from its patternedRecurrence (the fake's
    own reading of Microsoft's pattern types, through dateutil)."""
    start = _utc(fields["start"])
    pattern, span = fields["recurrence"]["pattern"], fields["recurrence"]["range"]
    kind, kw = pattern["type"], {"interval": int(pattern.get("interval") or 1)}
    days = [WEEKDAYS[d] for d in pattern.get("daysOfWeek") or []]
    if kind == "daily":
        freq = rrule.DAILY
    elif kind == "weekly":
        freq, kw["byweekday"] = rrule.WEEKLY, days
        kw["wkst"] = WEEKDAYS[pattern.get("firstDayOfWeek") or "sunday"]
    elif kind.startswith("absolute"):
        freq = rrule.MONTHLY if kind == "absoluteMonthly" else rrule.YEARLY
        kw["bymonthday"] = int(pattern["dayOfMonth"])
    else:
        freq = rrule.MONTHLY if kind == "relativeMonthly" else rrule.YEARLY
        kw["byweekday"], kw["bysetpos"] = days, INDEXES[pattern.get("index") or "first"]
    if kind.endswith("Yearly"):
        kw["bymonth"] = int(pattern["month"])
    if span["type"] == "numbered":
        kw["count"] = int(span["numberOfOccurrences"])
    elif span["type"] == "endDate":
        kw["until"] = datetime.fromisoformat(span["endDate"] + "T23:59:59+00:00")
    return [d for d in rrule.rrule(freq, dtstart=start, **kw).between(start, until, inc=True)]


class FakeItems:
    """Calendars, contacts and To Do lists for ``FakeGraph`` (which provides ``lock``,
    ``_seq``, ``_n``, ``_generation``, ``stats``, ``subscriptions``, ``_outbox``,
    ``graph_url``, ``tenant``, ``box``)."""

    _rounds: dict = {}
    # Exchange's clock for lastModifiedDateTime (None: the real time); tests set it to
    # order a server edit before or after one made in the CRM.
    clock: datetime | None = None

    def now(self) -> datetime:
        return self.clock or datetime.now(timezone.utc)

    # -- mailbox setup ------------------------------------------------------------------

    def _add_item_collections(self, box) -> None:
        self._collection(box, "event", "Calendar", default=True)
        self._collection(box, "contact", "Contacts", default=True)
        self._collection(box, "task", "Tasks", default=True)

    def _collection(self, box, kind: str, name: str, default: bool = False) -> str:
        prefix = {"event": "AAMkCalendar", "contact": "AAMkContacts", "task": "AAMkList"}[kind]
        found = FakeCollection(id=prefix + secrets.token_hex(10), kind=kind, name=name,
                               default=default)
        box.collections[found.id] = found
        return found.id

    def add_collection(self, address: str, kind: str, name: str) -> str:
        with self.lock:
            return self._collection(self.box(address), kind, name)

    def default_collection(self, address: str, kind: str) -> str:
        return next(c.id for c in self.box(address).collections.values()
                    if c.kind == kind and c.default)

    # -- what tests do ------------------------------------------------------------------

    def _new_item(self, box, kind: str, collection: str, fields: dict) -> FakeItem:
        n = next(self._n)
        prefix = {"event": "AAMkEvent", "contact": "AAMkContact", "task": "AAMkTask"}[kind]
        fields = dict(fields)
        if kind == "event":
            fields.setdefault("iCalUId", "040000008200E00074C5B7101A82E008" + secrets.token_hex(16))
            fields.setdefault("isAllDay", False)
        item = FakeItem(id=f"{prefix}{n:010d}", kind=kind, collection=collection, fields=fields,
                        version=next(self._seq), n=n, created=datetime.now(timezone.utc))
        box.items[item.id] = item
        self._item_changed(box, item, "created")
        return item

    def add_event(self, address: str, subject: str, start: datetime, minutes: int = 60,
                  calendar: str | None = None, **fields) -> str:
        """An event (``recurrence``: a patternedRecurrence makes it a series master)."""
        with self.lock:
            box = self.box(address)
            body = {"subject": subject, "start": _graph_time(start),
                    "end": _graph_time(start + timedelta(minutes=minutes)),
                    "organizer": _organizer(box), **fields}
            return self._new_item(box, "event", calendar or self.default_collection(address, "event"),
                                  body).id

    def add_contact(self, address: str, folder: str | None = None, **fields) -> str:
        with self.lock:
            box = self.box(address)
            return self._new_item(box, "contact", folder or self.default_collection(address, "contact"),
                                  fields).id

    def add_task(self, address: str, title: str, task_list: str | None = None, **fields) -> str:
        with self.lock:
            box = self.box(address)
            return self._new_item(box, "task", task_list or self.default_collection(address, "task"),
                                  {"title": title, "status": "notStarted", **fields}).id

    def item(self, address: str, item_id: str) -> FakeItem:
        return self.box(address).items[item_id]

    def items_in(self, address: str, collection: str) -> list[FakeItem]:
        return sorted((i for i in self.box(address).items.values() if i.collection == collection),
                      key=lambda i: i.n)

    def update_item(self, address: str, item_id: str, **fields) -> None:
        with self.lock:
            box = self.box(address)
            item = box.items[item_id]
            item.fields.update(fields)
            item.version = next(self._seq)
            self._item_changed(box, item, "updated")

    def delete_item(self, address: str, item_id: str) -> None:
        with self.lock:
            box = self.box(address)
            self._remove(box, box.items[item_id])

    def change_occurrence(self, address: str, master_id: str, day: date, **fields) -> None:
        """Outlook changing one occurrence of a series: it becomes an exception."""
        with self.lock:
            box = self.box(address)
            master = box.items[master_id]
            master.exceptions.setdefault(day.isoformat(), {}).update(fields)
            master.version = next(self._seq)
            self._item_changed(box, master, "updated")

    def cancel_occurrence(self, address: str, master_id: str, day: date) -> None:
        with self.lock:
            box = self.box(address)
            master = box.items[master_id]
            self._cancel(box, master, day.isoformat())

    def _cancel(self, box, master: FakeItem, day: str) -> None:
        master.cancelled.add(day)
        master.exceptions.pop(day, None)
        seq = next(self._seq)
        box.item_removals[master.collection].append((seq, self._occurrence_id(master, day)))
        master.version = next(self._seq)
        self._item_changed(box, master, "updated")

    def _remove(self, box, item: FakeItem) -> None:
        del box.items[item.id]
        seq = next(self._seq)
        box.item_removals[item.collection].append((seq, item.id))
        if item.fields.get("recurrence"):
            until = datetime.now(timezone.utc) + timedelta(days=3650)
            for start in occurrence_starts(item.fields, until):
                box.item_removals[item.collection].append(
                    (seq, self._occurrence_id(item, start.date().isoformat())))
        self._item_changed(box, item, "deleted")

    def seed_items(self, address: str, events: int = 0, contacts: int = 0, tasks: int = 0,
                   recurring: float = 0.1, start: datetime | None = None,
                   categories: tuple[str, ...] = ()) -> None:
        """Fill a mailbox fast (no HTTP): ``events`` in its calendar from ``start`` (default
        tomorrow 09:00 UTC), every ``1/recurring``-th a weekly series of 10 with one
        occurrence changed and one cancelled; ``contacts`` with names, an email, a phone and
        a company; ``tasks``; each event and contact with ``categories``."""
        first = start or (datetime.now(timezone.utc) + timedelta(days=1)).replace(
            hour=9, minute=0, second=0, microsecond=0)
        every = round(1 / recurring) if recurring else 0
        with self.lock:
            calendar = self.default_collection(address, "event")
            folder = self.default_collection(address, "contact")
            task_list = self.default_collection(address, "task")
            box = self.box(address)
            for i in range(events):
                when = first + timedelta(hours=i % 8, days=i // 8)
                fields = {"subject": f"Meeting {i}", "start": _graph_time(when),
                          "end": _graph_time(when + timedelta(minutes=30)),
                          "location": {"displayName": f"Room {i % 12}"},
                          "body": {"contentType": "text", "content": f"Agenda {i}"},
                          "attendees": [{"type": "required", "status": {"response": "none"},
                                         "emailAddress": {"address": f"guest{i}@customer.example",
                                                          "name": f"Guest {i}"}}],
                          "categories": list(categories)}
                series = every and i % every == 0
                if series:
                    fields["recurrence"] = {
                        "pattern": {"type": "weekly", "interval": 1, "firstDayOfWeek": "sunday",
                                    "daysOfWeek": [when.strftime("%A").lower()]},
                        "range": {"type": "numbered", "numberOfOccurrences": 10,
                                  "startDate": when.date().isoformat(), "recurrenceTimeZone": "UTC"}}
                item = self._new_item(box, "event", calendar, fields)
                if series:
                    moved = when + timedelta(days=7)
                    item.exceptions[moved.date().isoformat()] = {
                        "subject": f"Meeting {i} (moved)", "start": _graph_time(moved + timedelta(hours=1)),
                        "end": _graph_time(moved + timedelta(hours=1, minutes=30))}
                    item.cancelled.add((when + timedelta(days=14)).date().isoformat())
            for i in range(contacts):
                self._new_item(box, "contact", folder, {
                    "givenName": f"Given{i}", "surname": f"Surname{i}",
                    "displayName": f"Given{i} Surname{i}", "companyName": f"Company {i % 50}",
                    "emailAddresses": [{"address": f"person{i}@customer.example",
                                        "name": f"Given{i} Surname{i}"}],
                    "businessPhones": [f"+1 555 {i:07d}"], "categories": list(categories)})
            for i in range(tasks):
                self._new_item(box, "task", task_list, {"title": f"Task {i}", "status": "notStarted"})

    # -- JSON ---------------------------------------------------------------------------

    @staticmethod
    def _occurrence_id(master: FakeItem, day: str) -> str:
        return f"{master.id}OCC{day.replace('-', '')}"

    def _etag(self, version: int) -> str:
        return f'W/"DwAAABYAAAA{version:08d}"'

    def _item_json(self, item: FakeItem, expand: bool = False) -> dict:
        out = {"@odata.type": ODATA_TYPE[item.kind], "@odata.etag": self._etag(item.version),
               "id": item.id, "createdDateTime": _iso(item.created),
               "lastModifiedDateTime": _precise(item.modified or item.created)}
        out.update({k: v for k, v in item.fields.items() if k != "transactionId"})
        if item.kind == "contact":
            out["parentFolderId"] = item.collection
            out.setdefault("categories", [])
        if item.kind != "event":
            return out
        out["changeKey"] = f"DwAAABYAAAA{item.version:08d}"
        out["type"] = "seriesMaster" if item.fields.get("recurrence") else "singleInstance"
        out.setdefault("categories", [])
        out.setdefault("showAs", "busy")
        out.setdefault("sensitivity", "normal")
        out.setdefault("importance", "normal")
        if item.fields.get("recurrence"):
            out["cancelledOccurrences"] = [f"OID.{item.id}.{d}" for d in sorted(item.cancelled)]
            if expand:
                out["exceptionOccurrences"] = [
                    self._occurrence_json(item, start)
                    for start in self._starts(item, datetime.max.replace(tzinfo=timezone.utc))
                    if start.date().isoformat() in item.exceptions]
        return out

    def _starts(self, master: FakeItem, until: datetime) -> list[datetime]:
        until = min(until, _utc(master.fields["start"]) + timedelta(days=3650))
        return [s for s in occurrence_starts(master.fields, until)
                if s.date().isoformat() not in master.cancelled]

    def _start_of(self, master: FakeItem, day: str) -> datetime:
        far = datetime.max.replace(tzinfo=timezone.utc)
        return next(s for s in self._starts(master, far) if s.date().isoformat() == day)

    def _occurrence_json(self, master: FakeItem, start: datetime) -> dict:
        day = start.date().isoformat()
        length = _utc(master.fields["end"]) - _utc(master.fields["start"])
        changed = master.exceptions.get(day)
        out = {k: v for k, v in self._item_json(master).items()
               if k not in ("recurrence", "cancelledOccurrences", "exceptionOccurrences")}
        out.update({"id": self._occurrence_id(master, day), "seriesMasterId": master.id,
                    "type": "exception" if changed is not None else "occurrence",
                    "originalStart": _iso(start), "start": _graph_time(start),
                    "end": _graph_time(start + length), **(changed or {})})
        return out

    def _rows(self, item: FakeItem, window: tuple[datetime, datetime] | None) -> list[dict]:
        """What a calendarView delta shows of an item inside ``window``."""
        if item.kind != "event" or window is None:
            return [self._item_json(item)]
        low, high = window
        if not item.fields.get("recurrence"):
            start, end = _utc(item.fields["start"]), _utc(item.fields["end"])
            return [self._item_json(item)] if start < high and end > low else []
        rows = [self._occurrence_json(item, s) for s in self._starts(item, high)]
        rows = [r for r in rows if _utc(r["end"]) > low and _utc(r["start"]) < high]
        return [self._item_json(item)] + rows if rows else []

    # -- requests -----------------------------------------------------------------------

    def _items(self, method: str, box, rest: str, query: dict, headers: dict, data: bytes):
        """A request about items -> (status, headers, body); None when it is not one."""
        if rest == "/calendars" and method == "GET":
            return self._list_collections(box, "event")
        if rest == "/contactFolders" and method == "GET":
            return self._list_collections(box, "contact")
        if rest == "/todo/lists" and method == "GET":
            return self._list_collections(box, "task")
        match = re.match(r"^/calendars/([^/]+)/calendarView/delta$", rest)
        if match and method == "GET":
            return self._item_delta(box, unquote(match.group(1)), "event", query, headers)
        if rest == "/contacts/delta" and method == "GET":
            return self._item_delta(box, self.default_collection(box.address, "contact"),
                                    "contact", query, headers)
        match = re.match(r"^/contactFolders/([^/]+)/contacts/delta$", rest)
        if match and method == "GET":
            return self._item_delta(box, unquote(match.group(1)), "contact", query, headers)
        match = re.match(r"^/todo/lists/([^/]+)/tasks/delta$", rest)
        if match and method == "GET":
            return self._item_delta(box, unquote(match.group(1)), "task", query, headers)
        for pattern, kind in ((r"^/calendars/([^/]+)/events$", "event"),
                              (r"^/contactFolders/([^/]+)/contacts$", "contact"),
                              (r"^/todo/lists/([^/]+)/tasks$", "task")):
            match = re.match(pattern, rest)
            if match and method == "POST":
                return self._create(box, kind, unquote(match.group(1)), data)
        if rest == "/contacts" and method == "POST":
            return self._create(box, "contact", self.default_collection(box.address, "contact"), data)
        match = re.match(r"^/events/([^/]+)/instances$", rest)
        if match and method == "GET":
            return self._instances(box, unquote(match.group(1)), query)
        match = re.match(r"^/(?:events|contacts|todo/lists/[^/]+/tasks)/([^/]+)$", rest)
        if match:
            return self._one(method, box, unquote(match.group(1)), query, headers, data)
        return None

    def _list_collections(self, box, kind: str):
        rows = []
        for found in box.collections.values():
            if found.kind != kind or (kind == "contact" and found.default):
                continue  # /contactFolders lists the folders below the default one
            if kind == "event":
                rows.append({"id": found.id, "name": found.name, "isDefaultCalendar": found.default,
                             "canEdit": True, "changeKey": "AAAAAA=="})
            elif kind == "contact":
                rows.append({"id": found.id, "displayName": found.name, "parentFolderId":
                             self.default_collection(box.address, "contact")})
            else:
                rows.append({"id": found.id, "displayName": found.name, "isOwner": True,
                             "isShared": False, "wellknownListName":
                             "defaultList" if found.default else "none"})
        return 200, {}, {"value": rows}

    def _item_delta(self, box, collection: str, kind: str, query: dict, headers: dict):
        self.stats["item_delta"] += 1
        if collection not in box.collections or box.collections[collection].kind != kind:
            return _error(*NOT_FOUND)
        state = None
        for name in ("$skiptoken", "$deltatoken"):
            if name in query:
                state = _unb64url(query[name])
                if not state or state.get("c") != collection or state.get("g") != self._generation:
                    return _error(410, "SyncStateNotFound", "The sync state generation is not "
                                  "found or has expired.")
        window = None
        if kind == "event":
            if state is None:
                if "startDateTime" not in query or "endDateTime" not in query:
                    return _error(400, "ErrorInvalidParameter", "This request requires a time "
                                  "window specified by the query string parameters "
                                  "StartDateTime and EndDateTime.")
                window = [query["startDateTime"], query["endDateTime"]]
            else:
                window = state["w"]
        span = (_parse(window[0]), _parse(window[1])) if window else None
        page_size = 10
        match = re.search(r"odata\.maxpagesize=(\d+)", headers.get("Prefer", ""))
        if match:
            page_size = max(1, int(match.group(1)))
        if state is None or "t" not in state:
            since, snapshot, after = (state or {}).get("s", 0), next(self._seq), None
        else:
            since, snapshot, after = state["s"], state["t"], state.get("a")
        key = (box.address, collection, since, snapshot, tuple(window or ()))
        rows = self._rounds.get(key)
        if rows is None:  # a round's rows as of its snapshot, made once for all its pages
            rows = []
            for item in sorted((i for i in box.items.values() if i.collection == collection
                                and since < i.version <= snapshot), key=lambda i: (i.version, i.n)):
                rows.extend(((item.version, item.n, k), row)
                            for k, row in enumerate(self._rows(item, span)))
            self._rounds = {key: rows}  # the round being read (one at a time is plenty here)
        if after:
            rows = [r for r in rows if r[0] > tuple(after)]
        value = []
        if after is None and since:
            here = set(box.items)
            gone = dict.fromkeys(i for seq, i in box.item_removals.get(collection, [])
                                 if since < seq <= snapshot and i not in here)
            value.extend({"@odata.type": ODATA_TYPE[kind], "id": i,
                          "@removed": {"reason": "deleted"}} for i in gone)
        page = rows[:page_size]
        wanted = {s.strip() for s in query.get("$select", "").split(",") if s.strip()}
        for _, row in page:
            value.append({k: v for k, v in row.items() if not wanted or k in wanted
                          or k in ("id", "@odata.type", "@odata.etag")})
        base = f"{self.graph_url}/users/{quote(box.address)}" + {
            "event": f"/calendars/{collection}/calendarView/delta",
            "contact": f"/contactFolders/{collection}/contacts/delta",
            "task": f"/todo/lists/{collection}/tasks/delta"}[kind]
        body = {"@odata.context": f"{self.graph_url}/$metadata#Collection({kind})", "value": value}
        if len(rows) > len(page):
            token = {"c": collection, "g": self._generation, "s": since, "t": snapshot,
                     "a": list(page[-1][0]), "w": window}
            body["@odata.nextLink"] = f"{base}?$skiptoken={_b64url(token)}"
        else:
            token = {"c": collection, "g": self._generation, "s": snapshot, "w": window}
            body["@odata.deltaLink"] = f"{base}?$deltatoken={_b64url(token)}"
        return 200, {}, body

    def _create(self, box, kind: str, collection: str, data: bytes):
        if collection not in box.collections or box.collections[collection].kind != kind:
            return _error(*NOT_FOUND)
        fields = _json(data)
        if fields is None:
            return _error(400, "RequestBodyRead", "The request body is not valid JSON.")
        self.stats[f"create_{kind}"] += 1
        transaction = fields.get("transactionId")
        if transaction:
            for item in box.items.values():
                if item.collection == collection and item.fields.get("transactionId") == transaction:
                    return 201, {}, self._item_json(item)
        fields.pop("iCalUId", None)
        if kind == "event":  # Exchange makes the mailbox the organizer, and invites
            fields["organizer"] = _organizer(box)
        item = self._new_item(box, kind, collection, fields)
        if kind == "event":
            self._invite(box, item)
        return 201, {}, self._item_json(item)

    def _invite(self, box, event: FakeItem) -> None:
        """Exchange sending a new meeting's invitation: each attendee with a mailbox here
        gets a copy in their calendar (same iCalUId, their own id, none of the organizer's
        categories), as the Calendar Attendant puts it there."""
        for attendee in event.fields.get("attendees") or []:
            address = ((attendee.get("emailAddress") or {}).get("address") or "").lower()
            other = self.mailboxes.get(address)
            if other is None or other is box:
                continue
            copy = {k: v for k, v in event.fields.items() if k not in ("categories", "transactionId")}
            self._new_item(other, "event", self.default_collection(address, "event"), copy)


    def _find_item(self, box, item_id: str) -> tuple[FakeItem | None, str | None]:
        """The item, or the series and the day of one of its occurrences."""
        if item_id in box.items:
            return box.items[item_id], None
        match = re.match(r"^(.+)OCC(\d{8})$", item_id)
        master = box.items.get(match.group(1)) if match else None
        if master is None:
            return None, None
        day = f"{match.group(2)[:4]}-{match.group(2)[4:6]}-{match.group(2)[6:]}"
        starts = {s.date().isoformat() for s in self._starts(
            master, datetime.max.replace(tzinfo=timezone.utc))}
        return (master, day) if day in starts else (None, None)

    def _one(self, method: str, box, item_id: str, query: dict, headers: dict, data: bytes):
        item, day = self._find_item(box, item_id)
        if item is None:
            return _error(*NOT_FOUND)
        if method == "GET":
            if day is not None:
                return 200, {}, self._occurrence_json(item, self._start_of(item, day))
            return 200, {}, self._item_json(item, expand="exceptionOccurrences" in
                                            query.get("$expand", ""))
        wanted = next((v for k, v in headers.items() if k.lower() == "if-match"), None)
        if wanted and wanted != "*" and wanted != self._etag(item.version):
            self.stats["conflict"] += 1
            return _error(412, "ErrorIrresolvableConflict", CONFLICT)
        if method == "DELETE":
            self.stats[f"delete_{item.kind}"] += 1
            if day is not None:
                self._cancel(box, item, day)
            else:
                self._remove(box, item)
            return 204, {}, None
        if method != "PATCH":
            return _error(405, "ErrorInvalidRequest", "The OData request is not supported.")
        fields = _json(data)
        if fields is None:
            return _error(400, "RequestBodyRead", "The request body is not valid JSON.")
        self.stats[f"update_{item.kind}"] += 1
        fields.pop("iCalUId", None)
        if day is not None:
            item.exceptions.setdefault(day, {}).update(
                {k: v for k, v in fields.items() if k not in ("recurrence", "type")})
        else:
            if "recurrence" in fields and fields["recurrence"] != item.fields.get("recurrence"):
                item.exceptions.clear()  # Outlook: a changed pattern drops the exceptions
                item.cancelled.clear()
            item.fields.update(fields)
        item.version = next(self._seq)
        self._item_changed(box, item, "updated")
        if day is not None:
            start = self._start_of(item, day)
            return 200, {}, self._occurrence_json(item, start)
        return 200, {}, self._item_json(item)

    def _instances(self, box, master_id: str, query: dict):
        master = box.items.get(master_id)
        if master is None or not master.fields.get("recurrence"):
            return _error(*NOT_FOUND)
        try:
            low, high = _parse(query["startDateTime"]), _parse(query["endDateTime"])
        except (KeyError, ValueError):
            return _error(400, "ErrorInvalidParameter", "This request requires a time window "
                          "specified by the query string parameters StartDateTime and "
                          "EndDateTime.")
        rows = [self._occurrence_json(master, s) for s in self._starts(master, high)]
        rows = [r for r in rows if _utc(r["end"]) > low and _utc(r["start"]) < high]
        wanted = {s.strip() for s in query.get("$select", "").split(",") if s.strip()}
        if wanted:
            rows = [{k: v for k, v in r.items() if k in wanted or k in ("id", "@odata.etag")}
                    for r in rows]
        return 200, {}, {"value": rows}

    # -- subscriptions ------------------------------------------------------------------

    def _item_changed(self, box, item: FakeItem, change: str) -> None:
        item.modified = self.now()
        if not self.notifications_enabled:
            return
        now = datetime.now(timezone.utc)
        path = {"event": "Events", "contact": "Contacts", "task": "Tasks"}[item.kind]
        for sub in list(self.subscriptions.values()):
            watched = sub.folder_id == item.collection or (sub.folder_id == ALL_EVENTS
                                                            and item.kind == "event")
            if sub.mailbox != box.address or not watched or sub.expires <= now or \
                    change not in sub.change_types:
                continue
            resource = f"Users/{box.user_id}/{path}/{item.id}"
            entry = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                     "changeType": change, "clientState": sub.client_state, "resource": resource,
                     "resourceData": {"@odata.type": ODATA_TYPE[item.kind], "@odata.id": resource,
                                      "@odata.etag": self._etag(item.version), "id": item.id},
                     "tenantId": self.tenant}
            self._outbox.put(("notification", sub.notification_url, {"value": [entry]}))


def _organizer(box) -> dict:
    """An event made in a mailbox is organized by it (Exchange says so, whatever it is sent)."""
    return {"emailAddress": {"address": box.address, "name": box.address.split("@")[0]}}


def _precise(value: datetime) -> str:
    """A time as Graph writes lastModifiedDateTime: UTC, seven fractional digits."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _json(data: bytes) -> dict | None:
    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
