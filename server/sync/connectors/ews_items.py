"""Appointments, contacts and tasks of one Exchange Server mailbox over EWS (``EwsItemStore``,
an ``ItemStore``, through exchangelib and the session of ``ews_session``).

Exchange's items are put in the shape Microsoft Graph gives the same Outlook items (an
event, contact or todoTask as JSON) and written as iCalendar and vCard by ``graph_ical``
and ``graph_vcard``, so the two Exchange stores say everything the same way.

**Collections**: the mailbox's folders of class IPF.Appointment, IPF.Contact and IPF.Task
(FindFolder below ``msgfolderroot``); the distinguished calendar, contacts and tasks
folders are the defaults. **Reading**: SyncFolderItems per folder (the cursor is JSON
``{"state": <SyncState>}``; an invalid state starts over and says ``reset``), then GetItem
for what was created or changed; a recurring master's modified occurrences are read too
(RECURRENCE-ID) and its deleted occurrences are EXDATEs. The etag is the ChangeKey; the
UID of an appointment is its ``UID``, of a contact or task its item id.

**Writing**: CreateItem (no invitations sent: the CRM writes the organizer's copy only)
and UpdateItem with the ChangeKey the caller read and ``NeverOverwrite``, so a newer
version on the server is ``ErrorIrresolvableConflict`` -> ``ItemConflict``; DeleteItem
(gone already is no error). A series' pattern is written, then the occurrences the CRM changed
(RECURRENCE-ID: UpdateItem) or cancelled (EXDATE: DeleteItem), each reached by its
position in the series (OccurrenceItemId's InstanceIndex, counted from the RRULE).

**Access**: ErrorAccessDenied on a first call says which folder the account may not open.
**Push**: ``wait_for_changes`` streams notifications for the collections (else polls
SyncFolderItems), as the EWS mail connector does (``ews_stream.Watching``); the push watcher
opens the store on the mail connector's session (``on_session``) and waits there, mail
folders and collections in one subscription.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

from exchangelib import CalendarItem, Contact, EWSDate, EWSDateTime, HTMLBody, Task
from exchangelib import Body as TextBody
from exchangelib.errors import (ErrorAccessDenied, ErrorCalendarOccurrenceIsDeletedFromRecurrence,
                                ErrorInvalidSyncStateData, ErrorIrresolvableConflict,
                                ErrorItemNotFound)
from exchangelib.folders import FolderCollection
from exchangelib.folders.base import Folder as EwsFolder
from exchangelib.folders.known_folders import Calendar, Contacts, MsgFolderRoot, Tasks
from exchangelib.indexed_properties import EmailAddress, PhoneNumber, PhysicalAddress
from exchangelib.properties import Attendee, DistinguishedFolderId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.recurrence import (AbsoluteMonthlyPattern, AbsoluteYearlyPattern, DailyPattern,
                                    EndDatePattern, NoEndPattern, NumberedPattern, Recurrence,
                                    RelativeMonthlyPattern, RelativeYearlyPattern, WeeklyPattern)
from exchangelib.services import SyncFolderItems

from server.sync.connectors.base import (Collection, ConnectorError, Item, ItemChanges,
                                         ItemConflict, ItemStore)
from server.sync.connectors.common import pack_cursor, unpack_cursor
from server.sync.connectors.ews_session import EwsSession
from server.sync.connectors.ews_session import utc as _utc
from server.sync.connectors.ews_stream import Watching
from server.sync.connectors.graph_ical import (DAYS, Unrepresentable, event_to_ical, graph_time,
                                               ical_to_event, ical_to_task, ical_uid,
                                               occurrence_numbers, task_percent, task_to_ical,
                                               to_graph_time)
from server.sync.connectors.graph_vcard import contact_to_vcard, vcard_to_contact

FOLDER_CLASS = {"appointment": "IPF.Appointment", "contact": "IPF.Contact", "task": "IPF.Task"}
DEFAULTS = {"appointment": ("calendar", Calendar), "contact": ("contacts", Contacts),
            "task": ("tasks", Tasks)}
MODELS = {"appointment": CalendarItem, "contact": Contact, "task": Task}
RESPONSES = {"Accept": "accepted", "Decline": "declined", "Tentative": "tentativelyAccepted",
             "Organizer": "organizer", "Unknown": "notResponded", "NoResponseReceived": "notResponded"}
RESPONSE_OF = {"accepted": "Accept", "declined": "Decline", "tentativelyAccepted": "Tentative",
               "organizer": "Organizer"}
FREE_BUSY = {"Free": "free", "Tentative": "tentative", "Busy": "busy", "OOF": "oof",
             "WorkingElsewhere": "workingElsewhere", "NoData": "unknown"}
TASK_STATUS = {"NotStarted": "notStarted", "InProgress": "inProgress", "Completed": "completed",
               "WaitingOnOthers": "waitingOnOthers", "Deferred": "deferred"}
INDEXES = {"First": "first", "Second": "second", "Third": "third", "Fourth": "fourth",
           "Last": "last"}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
GROUPS = {"Day": DAYS, "Weekday": DAYS[:5], "WeekendDay": DAYS[5:]}
PHONES = (("businessPhones", ("BusinessPhone", "BusinessPhone2")),
          ("homePhones", ("HomePhone", "HomePhone2")))
ADDRESSES = {"Business": "businessAddress", "Home": "homeAddress", "Other": "otherAddress"}
ADDRESS_FIELDS = (("street", "street"), ("city", "city"), ("state", "state"),
                  ("zipcode", "postalCode"), ("country", "countryOrRegion"))
GET_BATCH = 50
OCCURRENCE_FIELDS = ("subject", "body", "start", "end", "location", "legacy_free_busy_status",
                     "sensitivity", "importance", "categories", "reminder_is_set",
                     "reminder_minutes_before_start")


# --------------------------------------------------------------------------- EWS -> Graph shape

def _day_name(value) -> str:
    """exchangelib keeps a weekday as its name or its ISO number (Monday 1)."""
    return DAYS[int(value) - 1] if str(value).isdigit() else str(value).lower()


def _body(body) -> dict | None:
    if not body:
        return None
    return {"contentType": "html" if isinstance(body, HTMLBody) else "text", "content": str(body)}


def _address(mailbox) -> dict:
    return {"address": mailbox.email_address or "", **({"name": mailbox.name} if mailbox.name else {})}


def recurrence_shape(recurrence) -> dict:
    """An exchangelib ``Recurrence`` as a Graph ``patternedRecurrence``."""
    pattern, boundary = recurrence.pattern, recurrence.boundary
    out: dict = {"interval": int(getattr(pattern, "interval", None) or 1)}
    if isinstance(pattern, DailyPattern):
        out["type"] = "daily"
    elif isinstance(pattern, WeeklyPattern):
        out["type"] = "weekly"
        out["daysOfWeek"] = [_day_name(d) for d in pattern.weekdays]
        out["firstDayOfWeek"] = _day_name(pattern.first_day_of_week)
    elif isinstance(pattern, (AbsoluteMonthlyPattern, AbsoluteYearlyPattern)):
        out["type"] = "absoluteMonthly" if isinstance(pattern, AbsoluteMonthlyPattern) else "absoluteYearly"
        out["dayOfMonth"] = int(pattern.day_of_month)
    else:
        out["type"] = "relativeMonthly" if isinstance(pattern, RelativeMonthlyPattern) else "relativeYearly"
        out["daysOfWeek"] = GROUPS.get(str(pattern.weekday), [_day_name(pattern.weekday)])
        out["index"] = INDEXES[str(pattern.week_number)]
    if out["type"].endswith("Yearly"):
        out["month"] = MONTHS.index(str(pattern.month)) + 1
        out["interval"] = 1
    start = boundary.start
    span: dict = {"type": "noEnd", "startDate": start.isoformat()[:10], "recurrenceTimeZone": "UTC"}
    if isinstance(boundary, NumberedPattern):
        span["type"], span["numberOfOccurrences"] = "numbered", int(boundary.number)
    elif isinstance(boundary, EndDatePattern):
        span["type"], span["endDate"] = "endDate", boundary.end.isoformat()[:10]
    return {"pattern": out, "range": span}


def event_shape(item, exceptions: list | None = None) -> dict:
    """A CalendarItem (with its modified occurrences, read whole) in Graph's event shape."""
    all_day = bool(item.is_all_day)
    event: dict = {"id": item.id, "iCalUId": item.uid or item.id, "subject": item.subject or "",
                   "isAllDay": all_day, "location": {"displayName": item.location or ""},
                   "categories": list(item.categories or []),
                   "showAs": FREE_BUSY.get(str(item.legacy_free_busy_status), "busy"),
                   "sensitivity": str(item.sensitivity or "Normal").lower(),
                   "importance": str(item.importance or "Normal").lower(),
                   "isReminderOn": bool(item.reminder_is_set),
                   "isCancelled": bool(getattr(item, "is_cancelled", False))}
    if item.last_modified_time:  # when it was last changed: the DTSTAMP a merge weighs
        event["lastModifiedDateTime"] = _utc(item.last_modified_time).isoformat().replace(
            "+00:00", "Z")
    for name, value in (("start", item.start), ("end", item.end)):
        if isinstance(value, datetime):
            event[name] = to_graph_time(_utc(value))
        elif isinstance(value, date):  # all day: exchangelib's end date is the last day
            event[name] = to_graph_time(value + timedelta(days=1) if name == "end" else value)
    if item.reminder_is_set:
        event["reminderMinutesBeforeStart"] = int(item.reminder_minutes_before_start or 0)
    body = _body(item.body)
    if body:
        event["body"] = body
    if item.organizer is not None and item.organizer.email_address:
        event["organizer"] = {"emailAddress": _address(item.organizer)}
    event["attendees"] = [
        {"type": kind, "emailAddress": _address(a.mailbox),
         "status": {"response": RESPONSES.get(str(a.response_type), "notResponded")}}
        for kind, people in (("required", item.required_attendees),
                             ("optional", item.optional_attendees), ("resource", item.resources))
        for a in people or [] if a.mailbox is not None and a.mailbox.email_address]
    if item.recurrence is not None:
        event["recurrence"] = recurrence_shape(item.recurrence)
        event["cancelledOccurrences"] = [
            f"OID.{item.id}.{_utc(d.start).date().isoformat()}"
            for d in item.deleted_occurrences or [] if d.start is not None]
        event["exceptionOccurrences"] = []
        originals = {o.id: o.original_start for o in item.modified_occurrences or []}
        for occurrence in exceptions or []:
            shaped = event_shape(occurrence)
            original = _utc(originals.get(occurrence.id) or occurrence.original_start)
            if original is not None:
                shaped["originalStart"] = original.strftime("%Y-%m-%dT%H:%M:%SZ")
                event["exceptionOccurrences"].append(shaped)
    return event


def contact_shape(item) -> dict:
    contact: dict = {"id": item.id, "displayName": item.display_name or "",
                     "givenName": item.given_name or "", "surname": item.surname or "",
                     "middleName": item.middle_name or "", "generation": item.generation or "",
                     "nickName": item.nickname or "", "companyName": item.company_name or "",
                     "department": item.department or "", "jobTitle": item.job_title or "",
                     "categories": list(item.categories or []),
                     "personalNotes": str(item.body or "")}
    contact["emailAddresses"] = [{"address": e.email, "name": e.email}
                                 for e in sorted(item.email_addresses or [], key=lambda e: e.label)
                                 if e.email]
    phones = {p.label: p.phone_number for p in item.phone_numbers or [] if p.phone_number}
    for field, labels in PHONES:
        contact[field] = [phones[label] for label in labels if label in phones]
    contact["mobilePhone"] = phones.get("MobilePhone", "")
    for address in item.physical_addresses or []:
        if address.label in ADDRESSES:
            contact[ADDRESSES[address.label]] = {graph: getattr(address, ours) or ""
                                                 for ours, graph in ADDRESS_FIELDS}
    if item.birthday:
        contact["birthday"] = f"{item.birthday.isoformat()[:10]}T11:59:00Z"
    return contact


def task_shape(item) -> dict:
    task: dict = {"id": item.id, "title": item.subject or "",
                  "status": TASK_STATUS.get(str(item.status), "notStarted"),
                  "importance": str(item.importance or "Normal").lower(),
                  "categories": list(item.categories or []),
                  "isReminderOn": bool(item.reminder_is_set)}
    body = _body(item.body)
    if body:
        task["body"] = body
    for field, value in (("startDateTime", item.start_date), ("dueDateTime", item.due_date)):
        if value:
            task[field] = to_graph_time(date.fromisoformat(value.isoformat()[:10]))
    if item.complete_date:
        task["completedDateTime"] = to_graph_time(_utc(item.complete_date))
    if item.reminder_is_set and item.reminder_due_by:
        task["reminderDateTime"] = to_graph_time(_utc(item.reminder_due_by))
    return task


# --------------------------------------------------------------------------- Graph shape -> EWS

def _ews_time(value: dict | None, all_day: bool, end: bool = False):
    """A Graph time as exchangelib takes it: a date for an all-day event (its end the last
    day, where Graph's end is the day after), else a datetime in UTC."""
    when = graph_time(value)
    if when is None:
        return None
    if not all_day:
        return EWSDateTime.from_datetime(when)
    day = when.date() - timedelta(days=1) if end else when.date()
    return EWSDate(day.year, day.month, day.day)


def _ews_body(body: dict | None):
    if not body:
        return TextBody("")
    return HTMLBody(body["content"]) if body.get("contentType") == "html" else TextBody(body["content"])


def ews_recurrence(shape: dict) -> Recurrence:
    pattern, span = shape["pattern"], shape["range"]
    kind, interval = pattern["type"], int(pattern.get("interval") or 1)
    days = [d.capitalize() for d in pattern.get("daysOfWeek") or []]
    group = next((name for name, members in GROUPS.items()
                  if [d.capitalize() for d in members] == sorted(days, key=lambda d: DAYS.index(d.lower()))),
                 None)
    if kind.startswith("relative") and len(days) > 1 and group is None:
        raise Unrepresentable("a monthly or yearly rule on several days of the week")
    index = {v: k for k, v in INDEXES.items()}.get(pattern.get("index") or "first")
    if kind == "daily":
        made = DailyPattern(interval=interval)
    elif kind == "weekly":
        made = WeeklyPattern(interval=interval, weekdays=days,
                             first_day_of_week=(pattern.get("firstDayOfWeek") or "sunday").capitalize())
    elif kind == "absoluteMonthly":
        made = AbsoluteMonthlyPattern(interval=interval, day_of_month=int(pattern["dayOfMonth"]))
    elif kind == "relativeMonthly":
        made = RelativeMonthlyPattern(interval=interval, weekday=group or days[0], week_number=index)
    elif kind == "absoluteYearly":
        made = AbsoluteYearlyPattern(day_of_month=int(pattern["dayOfMonth"]),
                                     month=MONTHS[int(pattern["month"]) - 1])
    else:
        made = RelativeYearlyPattern(weekday=group or days[0], week_number=index,
                                     month=MONTHS[int(pattern["month"]) - 1])
    start = EWSDate.fromisoformat(span["startDate"])
    if span["type"] == "numbered":
        boundary = NumberedPattern(start=start, number=int(span["numberOfOccurrences"]))
    elif span["type"] == "endDate":
        boundary = EndDatePattern(start=start, end=EWSDate.fromisoformat(span["endDate"]))
    else:
        boundary = NoEndPattern(start=start)
    return Recurrence(pattern=made, boundary=boundary)


def _attendees(event: dict, kind: str) -> list:
    return [Attendee(mailbox=EwsMailbox(email_address=a["emailAddress"]["address"],
                                        name=a["emailAddress"].get("name")),
                     response_type=RESPONSE_OF.get(a["status"]["response"], "Unknown"))
            for a in event.get("attendees") or [] if a.get("type") == kind]


def event_fields(event: dict) -> dict:
    """A Graph-shaped event (``ical_to_event``) as CalendarItem field values."""
    all_day = bool(event.get("isAllDay"))
    fields = {"subject": event.get("subject") or "", "body": _ews_body(event.get("body")),
              "start": _ews_time(event.get("start"), all_day),
              "end": _ews_time(event.get("end"), all_day, end=True), "is_all_day": all_day,
              "location": (event.get("location") or {}).get("displayName") or None,
              "legacy_free_busy_status": {v: k for k, v in FREE_BUSY.items()}.get(
                  event.get("showAs") or "busy", "Busy"),
              "sensitivity": (event.get("sensitivity") or "normal").capitalize(),
              "importance": (event.get("importance") or "normal").capitalize(),
              "categories": list(event.get("categories") or []) or None,
              "reminder_is_set": bool(event.get("isReminderOn")),
              "reminder_minutes_before_start": int(event.get("reminderMinutesBeforeStart") or 0),
              "required_attendees": _attendees(event, "required") or None,
              "optional_attendees": _attendees(event, "optional") or None,
              "resources": _attendees(event, "resource") or None,
              "recurrence": ews_recurrence(event["recurrence"]) if event.get("recurrence") else None}
    return fields


def contact_fields(contact: dict) -> dict:
    phones = []
    for field, labels in PHONES:
        phones += [PhoneNumber(label=label, phone_number=number)
                   for label, number in zip(labels, contact.get(field) or [])]
    if contact.get("mobilePhone"):
        phones.append(PhoneNumber(label="MobilePhone", phone_number=contact["mobilePhone"]))
    addresses = [PhysicalAddress(label=label, **{ours: (contact.get(graph) or {}).get(theirs) or None
                                                 for ours, theirs in ADDRESS_FIELDS})
                 for label, graph in ADDRESSES.items() if any((contact.get(graph) or {}).values())]
    birthday = contact.get("birthday")
    return {"display_name": contact.get("displayName") or " ", "given_name": contact.get("givenName") or None,
            "surname": contact.get("surname") or None, "middle_name": contact.get("middleName") or None,
            "generation": contact.get("generation") or None, "nickname": contact.get("nickName") or None,
            "company_name": contact.get("companyName") or None,
            "department": contact.get("department") or None, "job_title": contact.get("jobTitle") or None,
            "email_addresses": [EmailAddress(label=f"EmailAddress{n + 1}", email=e["address"])
                                for n, e in enumerate((contact.get("emailAddresses") or [])[:3])] or None,
            "phone_numbers": phones or None, "physical_addresses": addresses or None,
            "birthday": EWSDate.fromisoformat(birthday[:10]) if birthday else None,
            "body": TextBody(contact["personalNotes"]) if contact.get("personalNotes") else None,
            "categories": list(contact.get("categories") or []) or None}


def task_fields(task: dict, percent: int | None = None) -> dict:
    """``percent``: the VTODO's percent complete (else the status says it)."""
    def day(value):
        when = graph_time(value)
        return EWSDate(when.year, when.month, when.day) if when else None
    status = {v: k for k, v in TASK_STATUS.items()}.get(task.get("status") or "notStarted")
    return {"subject": task.get("title") or "", "body": _ews_body(task.get("body")),
            "start_date": day(task.get("startDateTime")), "due_date": day(task.get("dueDateTime")),
            "status": status, "importance": (task.get("importance") or "normal").capitalize(),
            "categories": list(task.get("categories") or []) or None,
            "percent_complete": Decimal(100 if status == "Completed" else percent if percent
                                        is not None else 50 if status == "InProgress" else 0)}


# --------------------------------------------------------------------------- the store

class EwsItemStore(Watching, EwsSession, ItemStore):
    """``with EwsItemStore(account) as store: ...``: one mailbox's appointments, contacts and
    tasks over EWS."""

    def __init__(self, account):
        super().__init__(account)
        self._kinds: dict[str, str] = {}  # folder id -> kind, for folders listed
        self._states: dict[str, str] = {}  # key -> the last SyncState read in this session

    @classmethod
    def on_session(cls, session: EwsSession) -> EwsItemStore:
        """A store on another open session of the same mailbox (the EWS mail connector's, for
        the push watcher): its reads go through that connection and leave their states in
        that session, whose ``wait_for_changes`` then covers the collections too. It is not
        entered or closed: the session is."""
        store = cls(session.account)
        store._client, store._states = session.client, session._states
        return store

    @contextmanager
    def _guard(self, what: str, kind: str | None = None):
        try:
            with self._errors(what):
                yield
        except ConnectorError as error:
            if error.code == "access_denied" and kind:
                noun = {"appointment": "calendar", "contact": "contacts", "task": "tasks"}[kind]
                raise ConnectorError("access_denied", f"{self.where} denied access to the {noun} "
                                     f"folder of {self.account.address}: give the account "
                                     f"(or the impersonating service account) rights on it "
                                     f"(Add-MailboxFolderPermission, or full access).",
                                     severity="auth") from None
            raise

    def _folder(self, collection: Collection) -> EwsFolder:
        return EwsFolder(id=collection.key, root=self._root())

    def collections(self, kind: str) -> list[Collection]:
        if kind not in FOLDER_CLASS:
            raise ValueError(f"unknown item kind {kind!r}")
        name, cls = DEFAULTS[kind]
        with self._guard(f"listing {name}", kind):
            ews = self.ews
            wanted = cls(_distinguished_id=DistinguishedFolderId(id=name, mailbox=self._mailbox()),
                         root=self._root())
            (default,) = FolderCollection(account=ews, folders=[wanted]).get_folders(
                additional_fields=set())
            if isinstance(default, Exception):
                if isinstance(default, ErrorAccessDenied):
                    raise default
                default = None
            root = MsgFolderRoot(_distinguished_id=DistinguishedFolderId(
                id="msgfolderroot", mailbox=self._mailbox()), root=self._root())
            rows = [f for f in FolderCollection(account=ews, folders=[root]).find_folders(
                depth="Deep") if not isinstance(f, Exception)
                and (f.folder_class or "").startswith(FOLDER_CLASS[kind])]
        default_id = default.id if default is not None else None
        features = frozenset({"changes", "write", "push"} if self.settings.get("streaming", True)
                             else {"changes", "write"})
        found = [Collection(key=f.id, name=f.name or name.capitalize(), kind=kind,
                            default=f.id == default_id, features=features)
                 for f in rows]
        self._kinds.update({c.key: kind for c in found})
        return sorted(found, key=lambda c: (not c.default, c.name.casefold()))

    # -- reading --------------------------------------------------------------------------

    def _sync(self, folder: EwsFolder, state: str | None, limit: int):
        service = SyncFolderItems(account=self.ews)
        changes = list(service.call(folder=folder, shape="IdOnly", additional_fields=set(),
                                    sync_state=state, ignore=None, max_changes_returned=limit,
                                    sync_scope=None))
        return changes, service.sync_state, bool(service.includes_last_item_in_range)

    def changes(self, collection: Collection, cursor: str | None, limit: int = 500) -> ItemChanges:
        limit = max(1, min(limit, 512))
        data = unpack_cursor(cursor)
        state = data.get("state") if data else None
        reset = cursor is not None and not state
        folder = self._folder(collection)
        with self._guard(f"reading {collection.name}", collection.kind):
            try:
                changes, new_state, last = self._sync(folder, state, limit)
            except ErrorInvalidSyncStateData:
                reset, state = True, None
                changes, new_state, last = self._sync(folder, None, limit)
            removed = [item.id for kind, item in changes if kind == "delete"]
            wanted = list(dict.fromkeys(item.id for kind, item in changes
                                        if kind in ("create", "update")))
            items = self._read(collection, wanted)
        self._states[collection.key] = new_state or state
        return ItemChanges(items=items, cursor=pack_cursor({"state": new_state or state}),
                           removed=removed, more=not last and new_state != state, reset=reset)

    def _fetch(self, ids: list[str]) -> list:
        found = []
        for start in range(0, len(ids), GET_BATCH):
            found.extend(r for r in self.ews.fetch(ids=[(i, None) for i in ids[start:start + GET_BATCH]])
                         if not isinstance(r, (ErrorItemNotFound, Exception)))
        return found

    def _read(self, collection: Collection, ids: list[str]) -> list[Item]:
        rows = [r for r in self._fetch(ids) if isinstance(r, MODELS[collection.kind])]
        if collection.kind == "contact":
            return [Item(ref=r.id, etag=r.changekey, data=contact_to_vcard(contact_shape(r)),
                         uid=r.id) for r in rows]
        if collection.kind == "task":
            return [Item(ref=r.id, etag=r.changekey, uid=r.id, data=task_to_ical(
                task_shape(r), None if r.percent_complete is None else int(r.percent_complete)))
                for r in rows]
        occurrence_ids = [o.id for r in rows for o in r.modified_occurrences or []]
        occurrences = {o.id: o for o in self._fetch(occurrence_ids)} if occurrence_ids else {}
        items = []
        for row in rows:
            exceptions = [occurrences[o.id] for o in row.modified_occurrences or []
                          if o.id in occurrences]
            items.append(Item(ref=row.id, etag=row.changekey,
                              data=event_to_ical(event_shape(row, exceptions)),
                              uid=row.uid or row.id))
        return items

    def meeting_uid(self, item_id: str) -> str | None:
        """The calendar item's UID (the Outlook pane's id is the EWS item id)."""
        with self._guard("reading the meeting the Outlook pane shows", "appointment"):
            rows = [r for r in self._fetch([item_id]) if isinstance(r, CalendarItem)]
        return (rows[0].uid or None) if rows else None

    # -- writing --------------------------------------------------------------------------

    def _fields(self, collection: Collection, data: str) -> dict:
        try:
            if collection.kind == "appointment":
                return event_fields(ical_to_event(data)[0])
            if collection.kind == "contact":
                return contact_fields(vcard_to_contact(data))
            return task_fields(ical_to_task(data), task_percent(data))
        except Unrepresentable as exc:
            raise ConnectorError("item_unrepresentable", f"Exchange cannot hold this item: "
                                 f"{exc}.", severity="message") from None
        except Exception as exc:  # icalendar and vobject raise many kinds on broken text
            raise ConnectorError("item_unreadable", f"The item's text could not be read "
                                 f"({type(exc).__name__}).", severity="message") from None

    def put(self, collection: Collection, data: str, ref: str | None = None,
            etag: str | None = None) -> Item:
        fields = self._fields(collection, data)
        model = MODELS[collection.kind]
        extra = {"send_meeting_invitations": "SendToNone"} if collection.kind == "appointment" else {}
        with self._guard(f"writing an item in {collection.name}", collection.kind):
            if ref is None:
                if collection.kind == "appointment":
                    uid = ical_uid(data)
                    if uid:
                        fields["uid"] = uid
                item = model(account=self.ews, folder=self._folder(collection),
                             **{k: v for k, v in fields.items() if v is not None})
                item.save(**extra)
            else:
                item = model(account=self.ews, folder=self._folder(collection), id=ref,
                             changekey=etag, **fields)
                names = [name for name in fields if not (name == "recurrence" and fields[name] is None)]
                try:
                    item.save(update_fields=names, conflict_resolution="NeverOverwrite", **extra)
                except ErrorIrresolvableConflict:
                    raise ItemConflict(ref) from None
                except ErrorItemNotFound:
                    raise ItemConflict(ref, "the item was deleted on the server") from None
            if collection.kind == "appointment":
                self._write_occurrences(item, data)
            items = self._read(collection, [item.id])
        if not items:
            raise ItemConflict(item.id, "the item was deleted on the server")
        return items[0]

    def _write_occurrences(self, master: CalendarItem, data: str) -> None:
        """The occurrences a series' text changes (RECURRENCE-ID) or cancels (EXDATE),
        written on the occurrences Exchange numbers as the RRULE does (InstanceIndex); one
        Exchange no longer has (deleted already) is left as it is."""
        event, overrides, exdates = ical_to_event(data)
        if not event.get("recurrence") or not (overrides or exdates):
            return
        numbers = occurrence_numbers(data, [when for when, _ in overrides] + list(exdates))
        for when, fields in overrides:
            if when not in numbers:
                continue
            try:
                occurrence = master.occurrence(numbers[when])
                occurrence.refresh()
            except (ErrorItemNotFound, ErrorCalendarOccurrenceIsDeletedFromRecurrence):
                continue
            values = {k: v for k, v in event_fields(fields).items()
                      if k in OCCURRENCE_FIELDS and v is not None}
            for name, value in values.items():
                setattr(occurrence, name, value)
            occurrence.save(update_fields=list(values), send_meeting_invitations="SendToNone")
        for day in exdates:
            if day not in numbers:
                continue
            try:
                master.occurrence(numbers[day]).delete(send_meeting_cancellations="SendToNone")
            except (ErrorItemNotFound, ErrorCalendarOccurrenceIsDeletedFromRecurrence):
                continue

    def delete(self, collection: Collection, ref: str, etag: str | None = None) -> None:
        model = MODELS[collection.kind]
        extra = {"send_meeting_cancellations": "SendToNone"} if collection.kind == "appointment" \
            else {"affected_task_occurrences": "AllOccurrences"} if collection.kind == "task" else {}
        with self._guard(f"deleting an item in {collection.name}", collection.kind):
            try:
                model(account=self.ews, id=ref, changekey=etag).delete(**extra)
            except ErrorItemNotFound:
                pass
