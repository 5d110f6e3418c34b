"""Appointments, contacts and tasks of one Exchange Online mailbox over Microsoft Graph
(``GraphItemStore``, an ``ItemStore``); the translation to iCalendar and vCard is in
``graph_ical`` and ``graph_vcard``, HTTP, tokens, limits and batches in ``graph_client``.

**Collections.** Calendars (``/calendars``), contact folders (the default one, key
``contacts``, and ``/contactFolders``) and To Do lists (``/todo/lists``); keys are Graph ids.

**Reading.** Each collection is read with a delta query (its cursor is the
``@odata.nextLink`` of a round in progress, else its ``@odata.deltaLink``; one that expired,
410 or ``SyncStateNotFound``, starts over and says ``reset``):

* calendars with ``/calendars/{id}/calendarView/delta`` (Graph v1.0's event delta; the
  unbounded ``/events/delta`` is beta only) over a window from ``graph_calendar_days_back``
  (365) days ago to ``graph_calendar_days_ahead`` (730) days ahead, fixed when a round
  starts (a reset moves it). A page holds single instances, series masters, occurrences and
  exceptions; every series it touches is read whole (``/events/{id}`` with
  ``exceptionOccurrences`` expanded and ``cancelledOccurrences``), 20 to a ``$batch``, and
  is one item whose ref is the series master's id. Times come in UTC (``Prefer:
  outlook.timezone="UTC"``); the UID is ``iCalUId``.
* contacts with ``/contacts/delta`` (the default folder: it answers, though Microsoft
  documents only the per-folder form) or ``/contactFolders/{id}/contacts/delta``, to-do
  tasks with ``/todo/lists/{id}/tasks/delta``; their UID is their id.

``@removed`` entries are reported as removed refs.

**Writing.** A create is a POST (an event carries its iCalendar UID as ``transactionId``,
so a create repeated after a lost answer makes no second event; Graph gives the event its
own ``iCalUId``, returned on the item; the organizer is not written: Exchange makes the
mailbox the organizer). A replace is a PATCH with ``If-Match`` on the
``@odata.etag`` the caller read; a delete a DELETE with it. 412 raises ``ItemConflict``. A
series' changed occurrences (RECURRENCE-ID) are PATCHed and its EXDATEs DELETEd on the
occurrences ``/events/{id}/instances`` lists. ``put_many`` writes many simple items in
``$batch`` requests of 20.

**Permissions.** A 403 on a mailbox's first call says which permission to grant:
Calendars.ReadWrite, Contacts.ReadWrite or Tasks.ReadWrite (application:
Tasks.ReadWrite.All). **Push**: subscriptions as the mail connector makes them
(``Subscriptions``; ``synced`` holds what was read: each contact folder and To Do list by
its key, the calendars together as ``EVENTS``), on the resources Microsoft documents for
change notifications: ``users/{id}/events`` (every calendar; there is no per-calendar
form), ``users/{id}/contacts`` or ``contactFolders/{id}/contacts``, and
``todo/lists/{id}/tasks`` (which lives at most 4,230 minutes).
"""
from __future__ import annotations

import logging
from datetime import date, datetime, time, timedelta, timezone
from urllib.parse import quote, urlencode

from server.sync.connectors.base import (Account, Collection, ConnectorError, Item, ItemChanges,
                                         ItemConflict, ItemStore)
from server.sync.connectors.graph_client import (IMMUTABLE, GraphSession, GraphSubscriptions, Reply,
                                                 error_body, graph_timestamp)
from server.sync.connectors.graph_ical import (Unrepresentable, event_calendar, ical_to_event,
                                               ical_to_task, task_to_ical)
from server.sync.connectors.graph_vcard import contact_to_vcard, vcard_to_contact

log = logging.getLogger(__name__)

PAGE_MAX = 500
DEFAULT_CONTACTS = "contacts"
UTC_PREFER = 'outlook.timezone="UTC"'
EVENT_SELECT = ("subject,body,start,end,isAllDay,location,organizer,attendees,showAs,"
                "sensitivity,importance,categories,isReminderOn,reminderMinutesBeforeStart,"
                "isCancelled,iCalUId,recurrence,cancelledOccurrences,type,seriesMasterId,"
                "originalStart,lastModifiedDateTime")
EXCEPTION_SELECT = ("subject,body,start,end,isAllDay,location,attendees,showAs,sensitivity,"
                    "importance,categories,isReminderOn,reminderMinutesBeforeStart,isCancelled,"
                    "originalStart,type")
CONTACT_SELECT = ("displayName,givenName,surname,middleName,title,generation,nickName,"
                  "companyName,department,jobTitle,emailAddresses,businessPhones,homePhones,"
                  "mobilePhone,businessAddress,homeAddress,otherAddress,birthday,"
                  "personalNotes,categories")
EVENTS = "events"  # the subscription key for all of a mailbox's calendars
TASK_SUBSCRIPTION = timedelta(minutes=4200)  # Graph allows todoTask up to 4,230 minutes
PERMISSION = {"appointment": ("Calendars.ReadWrite", "Calendars.ReadWrite", "calendars"),
              "contact": ("Contacts.ReadWrite", "Contacts.ReadWrite", "contacts"),
              "task": ("Tasks.ReadWrite", "Tasks.ReadWrite.All", "tasks")}


def _q(value: str) -> str:
    return quote(value, safe="")


class GraphItemStore(GraphSession, ItemStore, GraphSubscriptions):
    """``with GraphItemStore(account) as store: ...``: one mailbox's appointments, contacts
    and tasks over Microsoft Graph."""

    def __init__(self, account: Account):
        super().__init__(account)
        self.synced: dict[str, Collection] = {}  # collections read (push upkeep)
        settings = account.settings or {}
        self.days_back = int(settings.get("graph_calendar_days_back", 365))
        self.days_ahead = int(settings.get("graph_calendar_days_ahead", 730))

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None and self.account.on_close is not None and self.synced:
                try:
                    self.account.on_close(self)
                except Exception as error:  # push upkeep never fails a sync
                    log.warning("graph items: subscription upkeep failed (%s)",
                                getattr(error, "code", type(error).__name__))
        finally:
            self.close()

    # -- errors ---------------------------------------------------------------------------

    def _error(self, reply: Reply, kind: str, what: str, scope: str = "folder") -> ConnectorError:
        """``graph_client``'s wording, but a plain 403 names the permission ``kind`` needs."""
        http = self.client
        code, detail = error_body(reply.body)
        if reply.status == 403 and "accesspolicy" not in (detail + code).replace(" ", "").lower():
            delegated, application, noun = PERMISSION[kind]
            said = f" ({detail})" if detail else ""
            if self.account.delegated:
                fix = (f"The mailbox's owner must connect it again from the add-in and consent "
                       f"to {delegated}.")
            else:
                fix = (f"An administrator must grant admin consent to the application "
                       f"permission {application} for the server profile's app in Microsoft "
                       f"Entra ID.")
            return ConnectorError(f"{noun}_consent_missing", f"Microsoft Graph denied access to "
                                  f"the {noun} of {self.account.address}{said}. {fix}",
                                  severity="auth")
        return http.error(reply, what, scope=scope)

    # -- collections ----------------------------------------------------------------------

    def _list(self, path: str, kind: str, what: str) -> list[dict]:
        http = self.client
        rows: list[dict] = []
        link: str | None = path
        while link:
            reply = http.call("GET", link, what=what)
            if not reply.ok:
                raise self._error(reply, kind, what, scope="mailbox")
            rows.extend(r for r in reply.json().get("value") or [] if r.get("id"))
            link = reply.json().get("@odata.nextLink")
        return rows

    def collections(self, kind: str) -> list[Collection]:
        user = self.client.user
        push = frozenset({"changes", "write", "push"})
        if kind == "appointment":
            rows = self._list(f"{user}/calendars?$top=100&$select=name,isDefaultCalendar,canEdit",
                              kind, "listing calendars")
            return [Collection(key=r["id"], name=str(r.get("name") or "Calendar"), kind=kind,
                               default=bool(r.get("isDefaultCalendar")),
                               features=push if r.get("canEdit", True) else frozenset({"changes", "push"}))
                    for r in rows]
        if kind == "contact":
            rows = self._list(f"{user}/contactFolders?$top=100&$select=displayName",
                              kind, "listing contact folders")
            return [Collection(key=DEFAULT_CONTACTS, name="Contacts", kind=kind, default=True,
                               features=push)] + \
                [Collection(key=r["id"], name=str(r.get("displayName") or r["id"]), kind=kind,
                            features=push) for r in rows]
        if kind == "task":
            rows = self._list(f"{user}/todo/lists?$top=100&$select=displayName,"
                              "wellknownListName", kind, "listing task lists")
            return [Collection(key=r["id"], name=str(r.get("displayName") or "Tasks"), kind=kind,
                               default=r.get("wellknownListName") == "defaultList",
                               features=push) for r in rows]
        raise ValueError(f"unknown item kind {kind!r}")

    def _base(self, collection: Collection) -> str:
        """Where a collection's items are created."""
        user = self.client.user
        if collection.kind == "appointment":
            return f"{user}/calendars/{_q(collection.key)}/events"
        if collection.kind == "contact":
            return f"{user}/contacts" if collection.key == DEFAULT_CONTACTS else \
                f"{user}/contactFolders/{_q(collection.key)}/contacts"
        return f"{user}/todo/lists/{_q(collection.key)}/tasks"

    def _item_path(self, collection: Collection, ref: str) -> str:
        user = self.client.user
        if collection.kind == "appointment":
            return f"{user}/events/{_q(ref)}"
        if collection.kind == "contact":
            return f"{user}/contacts/{_q(ref)}"
        return f"{user}/todo/lists/{_q(collection.key)}/tasks/{_q(ref)}"

    def _first_link(self, collection: Collection) -> str:
        user = self.client.user
        if collection.kind == "appointment":
            today = datetime.now(timezone.utc).date()
            window = {"startDateTime": _daygraph_time(today - timedelta(days=self.days_back)),
                      "endDateTime": _daygraph_time(today + timedelta(days=self.days_ahead))}
            return f"{user}/calendars/{_q(collection.key)}/calendarView/delta?{urlencode(window)}"
        if collection.kind == "contact":
            return f"{self._base(collection)}/delta?$select={CONTACT_SELECT}"
        return f"{self._base(collection)}/delta"

    # -- reading --------------------------------------------------------------------------

    def changes(self, collection: Collection, cursor: str | None, limit: int = 500) -> ItemChanges:
        http = self.client
        # For push upkeep: one subscription watches every calendar (``EVENTS``).
        self.synced[EVENTS if collection.kind == "appointment" else collection.key] = collection
        what = f"reading {collection.name}"
        first = self._first_link(collection)
        prefer = (f"{IMMUTABLE}, {UTC_PREFER}, "
                  f"odata.maxpagesize={max(1, min(limit, PAGE_MAX))}")
        page = http.delta_page(cursor, first, prefer, what,
                               lambda reply: self._error(reply, collection.kind, what))
        present, removed = page.rows, list(page.removed)
        if collection.kind == "appointment":
            items, gone = self._events(present, what)
            removed.extend(ref for ref in gone if ref not in removed)
        elif collection.kind == "contact":
            items = [Item(ref=r["id"], etag=r.get("@odata.etag"), data=contact_to_vcard(r),
                          uid=r["id"]) for r in present]
        else:
            items = [Item(ref=r["id"], etag=r.get("@odata.etag"), data=task_to_ical(r),
                          uid=r["id"]) for r in present]
        items = list({item.ref: item for item in items}.values())
        return ItemChanges(items=items, cursor=page.cursor, removed=removed, more=page.more,
                           reset=page.reset)

    def _events(self, rows: list[dict], what: str) -> tuple[list[Item], list[str]]:
        """Items for a delta page's events: single instances as they are, every series
        touched read whole; and the series that are gone."""
        items: list[Item] = []
        series: list[str] = []
        for row in rows:
            kind = row.get("type") or "singleInstance"
            if kind == "singleInstance":
                items.append(_event_item(row))
            else:
                master = row["id"] if kind == "seriesMaster" else row.get("seriesMasterId")
                if master and master not in series:
                    series.append(master)
        masters, gone = self._read_series(series, what)
        return items + [_event_item(m) for m in masters], gone

    def _read_series(self, ids: list[str], what: str) -> tuple[list[dict], list[str]]:
        http = self.client
        headers = {"Prefer": f"{IMMUTABLE}, {UTC_PREFER}"}
        batch = [{"method": "GET", "headers": headers,
                  "url": f"{http.user}/events/{_q(i)}?$select={EVENT_SELECT}"
                         f"&$expand=exceptionOccurrences($select={EXCEPTION_SELECT})"}
                 for i in ids]
        found, gone = [], []
        for event_id, reply in zip(ids, http.batch(batch, what=what) if batch else []):
            if reply.status == 404:
                gone.append(event_id)
            elif not reply.ok:
                raise self._error(reply, "appointment", what)
            else:
                found.append(reply.json())
        return found, gone

    def meeting_uid(self, item_id: str) -> str | None:
        """The event's ``iCalUId`` (the Outlook pane's id, in its REST form)."""
        http = self.client
        what = "reading the meeting the Outlook pane shows"
        reply = http.call("GET", f"{http.user}/events/{_q(rest_id(item_id))}?$select=iCalUId",
                          what=what)
        if reply.status in (400, 404):
            return None
        if not reply.ok:
            raise self._error(reply, "appointment", what)
        return reply.json().get("iCalUId") or None

    # -- writing --------------------------------------------------------------------------

    def _body_of(self, collection: Collection, data: str, create: bool) -> tuple[dict, list, list]:
        """The JSON to write and, for a series, its overrides and EXDATEs."""
        try:
            if collection.kind == "appointment":
                event, overrides, exdates = ical_to_event(data)
                event.pop("organizer", None)  # Exchange makes the mailbox the organizer
                if not create:
                    event.pop("transactionId", None)
                for _, fields in overrides:
                    fields.pop("organizer", None)
                return event, overrides, exdates
            if collection.kind == "contact":
                contact = vcard_to_contact(data)
                if create:
                    contact = {k: v for k, v in contact.items() if v not in ("", [], {}, None)}
                return contact, [], []
            return ical_to_task(data), [], []
        except Unrepresentable as exc:
            raise ConnectorError("item_unrepresentable", f"Outlook cannot hold this item: {exc}.",
                                 severity="message") from None
        except Exception as exc:  # icalendar and vobject raise many kinds on broken text
            raise ConnectorError("item_unreadable", f"The item's text could not be read "
                                 f"({type(exc).__name__}).", severity="message") from None

    def _request(self, collection: Collection, body: dict, ref: str | None,
                 etag: str | None) -> dict:
        if ref is None:
            return {"method": "POST", "url": self._base(collection), "body": body}
        headers = {"If-Match": etag} if etag else {}
        return {"method": "PATCH", "url": self._item_path(collection, ref), "body": body,
                "headers": headers}

    def _written(self, collection: Collection, reply: Reply, ref: str | None, what: str) -> dict:
        if reply.status == 412 or (ref is not None and reply.status == 404):
            raise ItemConflict(ref or "", "the item changed on the server" if reply.status == 412
                               else "the item was deleted on the server")
        if not reply.ok:
            raise self._error(reply, collection.kind, what, scope="message")
        return reply.json()

    def put(self, collection: Collection, data: str, ref: str | None = None,
            etag: str | None = None) -> Item:
        http = self.client
        what = f"writing an item in {collection.name}"
        body, overrides, exdates = self._body_of(collection, data, ref is None)
        request = self._request(collection, body, ref, etag)
        reply = http.call(request["method"], request["url"], what=what, json_body=body,
                          headers={**request.get("headers", {}), "Prefer": UTC_PREFER})
        written = self._written(collection, reply, ref, what)
        if collection.kind == "appointment":
            if body.get("recurrence") and (overrides or exdates):
                self._write_occurrences(written["id"], overrides, exdates, what)
            series, gone = self._read_series([written["id"]], what)
            if gone:
                raise ItemConflict(written["id"], "the item was deleted on the server")
            return _event_item(series[0])
        return self._item(collection, written)

    def put_many(self, collection: Collection, writes: list[tuple[str, str | None, str | None]]
                 ) -> list[Item | ConnectorError]:
        """Many ``put``s (``(data, ref, etag)``) in ``$batch`` requests of 20; each answer is
        the stored item or the error for that write (``ItemConflict`` on 412). A series with
        changed or cancelled occurrences is written alone, as ``put`` does."""
        http = self.client
        what = f"writing items in {collection.name}"
        out: list[Item | ConnectorError | None] = [None] * len(writes)
        batch, where = [], []
        for index, (data, ref, etag) in enumerate(writes):
            try:
                body, overrides, exdates = self._body_of(collection, data, ref is None)
            except ConnectorError as error:
                out[index] = error
                continue
            if overrides or exdates:
                try:
                    out[index] = self.put(collection, data, ref, etag)
                except ConnectorError as error:
                    out[index] = error
                continue
            request = self._request(collection, body, ref, etag)
            request["headers"] = {**request.get("headers", {}), "Prefer": UTC_PREFER}
            batch.append(request)
            where.append(index)
        replies = http.batch(batch, what=what) if batch else []
        series = []
        for index, reply in zip(where, replies):
            try:
                written = self._written(collection, reply, writes[index][1], what)
            except ConnectorError as error:
                out[index] = error
                continue
            if collection.kind == "appointment" and written.get("type") == "seriesMaster":
                series.append((index, written["id"]))
            else:
                out[index] = self._item(collection, written)
        if series:  # read back whole, for their exceptions and cancelled occurrences
            found, _ = self._read_series([i for _, i in series], what)
            by_id = {m["id"]: m for m in found}
            for index, event_id in series:
                out[index] = _event_item(by_id[event_id]) if event_id in by_id else \
                    ItemConflict(event_id, "the item was deleted on the server")
        return out  # type: ignore[return-value]

    def _item(self, collection: Collection, row: dict) -> Item:
        if collection.kind == "appointment":
            return _event_item(row)
        if collection.kind == "contact":
            return Item(ref=row["id"], etag=row.get("@odata.etag"), data=contact_to_vcard(row),
                        uid=row["id"])
        return Item(ref=row["id"], etag=row.get("@odata.etag"), data=task_to_ical(row),
                    uid=row["id"])

    def _write_occurrences(self, master_id: str, overrides: list, exdates: list,
                           what: str) -> None:
        """PATCH the occurrences a series overrides and DELETE those it cancels, found by
        their original start among the series' instances."""
        http = self.client
        days = [_as_datetime(when) for when, _ in overrides] + [_as_datetime(d) for d in exdates]
        window = {"startDateTime": graph_timestamp(min(days) - timedelta(days=1)),
                  "endDateTime": graph_timestamp(max(days) + timedelta(days=2)),
                  "$select": "originalStart,type,start"}
        reply = http.call("GET", f"{http.user}/events/{_q(master_id)}/instances?"
                          f"{urlencode(window)}", what=what,
                          headers={"Prefer": f"{IMMUTABLE}, {UTC_PREFER}"})
        if not reply.ok:
            raise self._error(reply, "appointment", what)
        by_start = {}
        for row in reply.json().get("value") or []:
            if row.get("originalStart"):
                by_start[_parse(row["originalStart"])] = row["id"]
        batch = []
        for when, fields in overrides:
            occurrence = by_start.get(_as_datetime(when))
            if occurrence:
                fields = {k: v for k, v in fields.items() if v not in ([], None)}
                batch.append({"method": "PATCH", "url": f"{http.user}/events/{_q(occurrence)}",
                              "body": fields, "headers": {"Prefer": UTC_PREFER}})
        for day in exdates:
            occurrence = by_start.get(_as_datetime(day))
            if occurrence:
                batch.append({"method": "DELETE", "url": f"{http.user}/events/{_q(occurrence)}"})
        for reply in http.batch(batch, what=what) if batch else []:
            if not reply.ok and reply.status != 404:
                raise self._error(reply, "appointment", what, scope="message")

    def delete(self, collection: Collection, ref: str, etag: str | None = None) -> None:
        http = self.client
        what = f"deleting an item in {collection.name}"
        reply = http.call("DELETE", self._item_path(collection, ref), what=what,
                          headers={"If-Match": etag} if etag else None)
        if reply.status == 412:
            raise ItemConflict(ref)
        if not reply.ok and reply.status != 404:
            raise self._error(reply, collection.kind, what, scope="message")

    # -- push -----------------------------------------------------------------------------

    def lifetime(self, key: str) -> timedelta:
        collection = self.synced.get(key)
        if collection is not None and collection.kind == "task":
            return TASK_SUBSCRIPTION
        return super().lifetime(key)

    def resource(self, key: str) -> str:
        """What a subscription watches, in the forms Microsoft documents for change
        notifications: all the mailbox's events (Graph has no per-calendar form), the
        default contact folder or one below it, one To Do list."""
        collection = self.synced.get(key)
        user = f"users/{self.account.address}"
        if key == EVENTS or collection is None or collection.kind == "appointment":
            return f"{user}/events"
        if collection.kind == "contact":
            return f"{user}/contacts" if key == DEFAULT_CONTACTS else \
                f"{user}/contactFolders/{key}/contacts"
        return f"{user}/todo/lists/{key}/tasks"


def rest_id(item_id: str) -> str:
    """An Outlook item id in the form REST and Graph use (Office.js' ``convertToRestId``:
    the EWS id's base64 made URL-safe)."""
    return item_id.replace("/", "-").replace("+", "_")


def _event_item(row: dict) -> Item:
    data, parsed = event_calendar(row)
    return Item(ref=row["id"], etag=row.get("@odata.etag"), data=data,
                uid=row.get("iCalUId") or row["id"], parsed=parsed)


def _daygraph_time(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


def _parse(text: str) -> datetime:
    value = datetime.fromisoformat(str(text).replace("Z", "+00:00")[:26].rstrip("+"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).replace(microsecond=0)


def _as_datetime(value) -> datetime:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(microsecond=0)
    return datetime.combine(value, time(), tzinfo=timezone.utc)
