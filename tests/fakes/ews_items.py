"""The fake EWS endpoint's calendar items, contacts and tasks (``FakeEwsItems``, mixed into
``tests.fakes.ews.FakeExchange``), with the shapes Microsoft documents ("EWS reference for
Exchange": CreateItem, GetItem, UpdateItem with SetItemField / DeleteItemField and
IndexedFieldURI, DeleteItem, CalendarItem, Contact, Task, ModifiedOccurrences,
DeletedOccurrences, ErrorIrresolvableConflict):

* each mailbox has the distinguished ``calendar``, ``contacts`` and ``tasks`` folders (of
  class IPF.Appointment, IPF.Contact, IPF.Task); ``create_folder(..., folder_class=...)``
  makes more;
* an item keeps the property elements it was written with (as exchangelib sends them) and
  answers them back with its ItemId, ChangeKey, ItemClass and, for a calendar item, its
  CalendarItemType, UID, Organizer and the occurrences a test changed or deleted
  (``modify_occurrence``, ``delete_occurrence``, as Outlook would);
* UpdateItem with ``ConflictResolution="NeverOverwrite"`` and a ChangeKey that is no longer
  the item's answers ErrorIrresolvableConflict; every write gives a new ChangeKey and is
  logged for SyncFolderItems as the mail is;
* ``send_invitation`` delivers a meeting to its attendees' mailboxes, as Outlook's meeting
  request would; a task's CompleteDate is set when it becomes Completed; ``LastModifiedTime`` is the time of the last change by ``clock``;
* ``denied`` holds distinguished folder names whose folders answer ErrorAccessDenied.
"""
from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from xml.sax.saxutils import escape, quoteattr

from dateutil import rrule

T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
ITEM_FOLDERS = {"calendar": ("Calendar", "IPF.Appointment"),
                "contacts": ("Contacts", "IPF.Contact"), "tasks": ("Tasks", "IPF.Task")}
ITEM_CLASS = {"CalendarItem": "IPM.Appointment", "Contact": "IPM.Contact", "Task": "IPM.Task"}
DEFAULT_FOLDER = {"CalendarItem": "calendar", "Contact": "contacts", "Task": "tasks"}
PATTERNS = {"DailyRecurrence": rrule.DAILY, "WeeklyRecurrence": rrule.WEEKLY,
            "AbsoluteMonthlyRecurrence": rrule.MONTHLY, "RelativeMonthlyRecurrence": rrule.MONTHLY,
            "AbsoluteYearlyRecurrence": rrule.YEARLY, "RelativeYearlyRecurrence": rrule.YEARLY}
WEEKDAYS = {"Monday": rrule.MO, "Tuesday": rrule.TU, "Wednesday": rrule.WE, "Thursday": rrule.TH,
            "Friday": rrule.FR, "Saturday": rrule.SA, "Sunday": rrule.SU}
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
ET.register_namespace("t", T)
ET.register_namespace("m", M)


def _q(tag: str, ns: str = T) -> str:
    return f"{{{ns}}}{tag}"


def _local(elem) -> str:
    return elem.tag.rpartition("}")[2]


@dataclass
class FakeRecord:
    """A calendar item, contact or task: its property elements by tag."""
    id: str
    folder: str | None  # None: an occurrence (reached only through its master)
    tag: str  # CalendarItem Contact Task
    fields: dict[str, ET.Element] = field(default_factory=dict)
    changekey: str = field(default_factory=lambda: secrets.token_hex(6))
    uid: str = field(default_factory=lambda: "040000008200E00074C5B7101A82E008" + secrets.token_hex(16))
    modified: list[tuple[str, str]] = field(default_factory=list)  # (occurrence id, original start)
    deleted: list[str] = field(default_factory=list)  # starts of deleted occurrences
    master: str | None = None  # an occurrence's series
    original: str | None = None  # an occurrence's original start
    last_modified: datetime = field(default_factory=lambda: datetime.now(timezone.utc))


def _text(tag: str, value: str) -> ET.Element:
    elem = ET.Element(_q(tag))
    elem.text = value
    return elem


class FakeEwsItems:
    """Item operations for ``FakeExchange`` (which provides ``lock``, ``mailbox``, ``_folder_ids``)."""

    denied: set[str]
    # Exchange's clock for LastModifiedTime (None: the real time); tests set it to order an
    # edit made in Outlook before or after one made in the CRM.
    clock: datetime | None = None

    def now(self) -> datetime:
        return self.clock or datetime.now(timezone.utc)

    def _add_item_folders(self, box) -> None:
        for distinguished, (name, folder_class) in ITEM_FOLDERS.items():
            box._add(name, box.root.id, distinguished).folder_class = folder_class

    def _check_access(self, box, folder) -> None:
        from tests.fakes.ews import Fault
        if folder.distinguished in self.denied:
            raise Fault("ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    # -- what tests do ------------------------------------------------------------------

    def record(self, address: str, item_id: str) -> FakeRecord:
        return self.mailbox(address).items[item_id]

    def records_in(self, address: str, folder: str) -> list[FakeRecord]:
        box = self.mailbox(address)
        target = box.folder(folder)
        return [i for i in box.items.values() if isinstance(i, FakeRecord) and i.folder == target.id]

    def set_field(self, address: str, item_id: str, tag: str, value: str) -> None:
        """A change made in Outlook: one property element set to a text value."""
        with self.lock:
            box = self.mailbox(address)
            record = box.items[item_id]
            record.fields[tag] = _text(tag, value)
            self._touched(box, record)

    def modify_occurrence(self, address: str, master_id: str, original_start: datetime,
                          subject: str, start: datetime, end: datetime) -> str:
        with self.lock:
            box = self.mailbox(address)
            master = box.items[master_id]
            occurrence = FakeRecord(id=_new_id(), folder=None, tag="CalendarItem", uid=master.uid,
                                    master=master.id, original=_stamp(original_start))
            occurrence.fields = {k: v for k, v in master.fields.items() if k != "Recurrence"}
            occurrence.fields.update(Subject=_text("Subject", subject),
                                     Start=_text("Start", _stamp(start)),
                                     End=_text("End", _stamp(end)))
            box.occurrences[occurrence.id] = occurrence
            master.modified.append((occurrence.id, _stamp(original_start)))
            self._touched(box, master)
            return occurrence.id

    def delete_occurrence(self, address: str, master_id: str, start: datetime) -> None:
        with self.lock:
            box = self.mailbox(address)
            master = box.items[master_id]
            master.deleted.append(_stamp(start))
            self._touched(box, master)

    def send_invitation(self, address: str, item_id: str) -> list[str]:
        """Outlook sending a meeting's invitation (the CRM's writes send none): each
        attendee with a mailbox here gets a copy in their calendar, with the same UID, the
        sender as organizer and none of the sender's categories. The copies' ids."""
        with self.lock:
            box = self.mailbox(address)
            meeting = box.items[item_id]
            made = []
            for kind in ("RequiredAttendees", "OptionalAttendees"):
                for email in meeting.fields[kind].iter(_q("EmailAddress")) \
                        if kind in meeting.fields else ():
                    other = self.mailboxes.get((email.text or "").lower())
                    if other is None or other is box:
                        continue
                    folder = other.folder("calendar")
                    copy = FakeRecord(id=_new_id(), folder=folder.id, tag="CalendarItem",
                                      uid=meeting.uid, last_modified=self.now())
                    copy.fields = {k: v for k, v in meeting.fields.items() if k != "Categories"}
                    copy.fields["Organizer"] = ET.fromstring(
                        f"<t:Organizer xmlns:t={quoteattr(T)}><t:Mailbox><t:EmailAddress>"
                        f"{escape(box.address)}</t:EmailAddress></t:Mailbox></t:Organizer>")
                    other.items[copy.id] = copy
                    other.note(folder.id, "create", copy.id)
                    made.append(copy.id)
            return made

    # -- occurrences ----------------------------------------------------------------------

    def _resolve(self, box, elem) -> FakeRecord | None:
        """The record an ItemId or OccurrenceItemId names (an occurrence reached by its
        InstanceIndex is made on first use, as Exchange shows every occurrence)."""
        from tests.fakes.ews import Fault
        if _local(elem) != "OccurrenceItemId":
            return self._find_record(box, elem.get("Id"))
        master = box.items.get(elem.get("RecurringMasterId"))
        if not isinstance(master, FakeRecord) or "Recurrence" not in master.fields:
            return None
        starts = series_starts(master)
        index = int(elem.get("InstanceIndex"))
        if not 1 <= index <= len(starts):
            raise Fault("ErrorCalendarOccurrenceIndexIsOutOfRecurrenceRange",
                        "The occurrence index is out of the recurrence range.")
        original = _stamp(starts[index - 1])
        if original in master.deleted:
            raise Fault("ErrorCalendarOccurrenceIsDeletedFromRecurrence",
                        "The occurrence has been deleted from the recurrence.")
        found = next((box.occurrences[i] for i, start in master.modified if start == original), None)
        if found is None:
            found = next((o for o in box.occurrences.values()
                          if o.master == master.id and o.original == original), None)
        if found is None:
            length = _parse(master.fields["End"].text) - _parse(master.fields["Start"].text)
            found = FakeRecord(id=_new_id(), folder=None, tag="CalendarItem", uid=master.uid,
                               master=master.id, original=original)
            found.fields = {k: v for k, v in master.fields.items() if k != "Recurrence"}
            found.fields.update(Start=_text("Start", original),
                                End=_text("End", _stamp(starts[index - 1] + length)))
            box.occurrences[found.id] = found
        return found

    def _occurrence_changed(self, box, occurrence: FakeRecord, deleted: bool = False) -> None:
        master = box.items[occurrence.master]
        master.modified = [(i, start) for i, start in master.modified if i != occurrence.id]
        if deleted:
            master.deleted.append(occurrence.original)
            box.occurrences.pop(occurrence.id, None)
        else:
            master.modified.append((occurrence.id, occurrence.original))
        self._touched(box, master)

    def _completion(self, record: FakeRecord) -> None:
        """A task's CompleteDate (read-only in EWS): Exchange sets it when the task becomes
        Completed, and drops it when it no longer is."""
        if record.tag != "Task":
            return
        status = record.fields.get("Status")
        if status is None or status.text != "Completed":
            record.fields.pop("CompleteDate", None)
        elif "CompleteDate" not in record.fields:
            record.fields["CompleteDate"] = _text("CompleteDate", _stamp(self.now()))

    def _touched(self, box, record: FakeRecord) -> None:
        record.changekey = secrets.token_hex(6)
        record.last_modified = self.now()
        box.note(record.folder, "update", record.id)

    # -- XML ----------------------------------------------------------------------------

    def _record_xml(self, box, record: FakeRecord, id_only: bool = False) -> str:
        ident = f"<t:ItemId Id={quoteattr(record.id)} ChangeKey={quoteattr(record.changekey)}/>"
        if id_only:
            return f"<t:{record.tag}>{ident}</t:{record.tag}>"
        parts = [ident, f"<t:ItemClass>{ITEM_CLASS[record.tag]}</t:ItemClass>",
                 f"<t:LastModifiedTime>{_stamp(record.last_modified)}</t:LastModifiedTime>"]
        parts += [ET.tostring(elem, encoding="unicode") for elem in record.fields.values()]
        if record.tag == "CalendarItem":
            kind = "Exception" if record.folder is None else \
                "RecurringMaster" if "Recurrence" in record.fields else "Single"
            parts.append(f"<t:UID>{escape(record.uid)}</t:UID>" if "UID" not in record.fields else "")
            parts.append(f"<t:CalendarItemType>{kind}</t:CalendarItemType>")
            if "Organizer" not in record.fields:
                parts.append(f"<t:Organizer><t:Mailbox><t:EmailAddress>{escape(box.address)}"
                             "</t:EmailAddress></t:Mailbox></t:Organizer>")
            if record.modified:
                parts.append("<t:ModifiedOccurrences>" + "".join(
                    f"<t:Occurrence><t:ItemId Id={quoteattr(i)} ChangeKey=\"0\"/>"
                    f"<t:Start>{box.occurrences[i].fields['Start'].text}</t:Start>"
                    f"<t:End>{box.occurrences[i].fields['End'].text}</t:End>"
                    f"<t:OriginalStart>{start}</t:OriginalStart></t:Occurrence>"
                    for i, start in record.modified) + "</t:ModifiedOccurrences>")
            if record.deleted:
                parts.append("<t:DeletedOccurrences>" + "".join(
                    f"<t:DeletedOccurrence><t:Start>{start}</t:Start></t:DeletedOccurrence>"
                    for start in record.deleted) + "</t:DeletedOccurrences>")
        return f"<t:{record.tag}>{''.join(parts)}</t:{record.tag}>"

    # -- operations -----------------------------------------------------------------------

    def _find_record(self, box, item_id: str) -> FakeRecord | None:
        found = box.items.get(item_id) or box.occurrences.get(item_id)
        return found if isinstance(found, FakeRecord) else None

    def _create_records(self, box, request) -> str:
        from tests.fakes.ews import Fault, _success
        saved = request.find(_q("SavedItemFolderId", M))
        parts = []
        for elem in request.find(_q("Items", M)):
            tag = _local(elem)
            if saved is not None:
                (folder,) = self._folder_ids(box, saved)
                if isinstance(folder, Fault):
                    raise folder
            else:
                folder = box.folder(DEFAULT_FOLDER[tag])
            self._check_access(box, folder)
            record = FakeRecord(id=_new_id(), folder=folder.id, tag=tag,
                                last_modified=self.now())
            for child in elem:
                if _local(child) == "UID":
                    record.uid = child.text or record.uid
                else:
                    record.fields[_local(child)] = _canonical(child)
            self._completion(record)
            box.items[record.id] = record
            box.note(folder.id, "create", record.id)
            parts.append(_success("CreateItem", f"<m:Items>{self._record_xml(box, record, True)}"
                                                "</m:Items>"))
        return "".join(parts)

    def _update_record(self, box, record: FakeRecord, change, resolution: str) -> str:
        from tests.fakes.ews import Fault
        ident = change.find(_q("ItemId"))
        if resolution == "NeverOverwrite" and ident.get("ChangeKey") and \
                ident.get("ChangeKey") != record.changekey:
            raise Fault("ErrorIrresolvableConflict", "The send or update operation could not be "
                        "performed because the change key passed in the request does not "
                        "match the current change key for the item.")
        for update in change.find(_q("Updates")):
            uri = update.find(_q("FieldURI"))
            indexed = update.find(_q("IndexedFieldURI"))
            if _local(update) == "DeleteItemField":
                self._delete_field(record, uri, indexed)
                continue
            (value,) = list(update.find(_q(record.tag)))
            self._set_field(record, value)
        self._completion(record)
        if record.master is not None:
            record.changekey = secrets.token_hex(6)
            self._occurrence_changed(box, record)
        else:
            self._touched(box, record)
        return f"<m:Items>{self._record_xml(box, record, True)}</m:Items>" \
               "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"

    @staticmethod
    def _set_field(record: FakeRecord, value) -> None:
        tag = _local(value)
        value = _canonical(value)
        entries = value.findall(_q("Entry"))
        stored = record.fields.get(tag)
        if not entries or stored is None:
            record.fields[tag] = value
            return
        for entry in entries:
            old = next((e for e in stored.findall(_q("Entry")) if e.get("Key") == entry.get("Key")), None)
            if old is None or not list(entry):
                if old is not None:
                    stored.remove(old)
                stored.append(entry)
                continue
            for child in entry:
                for same in old.findall(child.tag):
                    old.remove(same)
                old.append(child)

    @staticmethod
    def _delete_field(record: FakeRecord, uri, indexed) -> None:
        if indexed is None:
            name = uri.get("FieldURI").split(":")[1]
            record.fields.pop(name, None)
            return
        parts = indexed.get("FieldURI").split(":")
        tag = {"EmailAddress": "EmailAddresses", "PhoneNumber": "PhoneNumbers",
               "PhysicalAddress": "PhysicalAddresses", "ImAddress": "ImAddresses"}[parts[1]]
        stored = record.fields.get(tag)
        if stored is None:
            return
        for entry in stored.findall(_q("Entry")):
            if entry.get("Key") != indexed.get("FieldIndex"):
                continue
            if len(parts) > 2:
                for child in entry.findall(_q(parts[2])):
                    entry.remove(child)
            if len(parts) == 2 or not list(entry):
                stored.remove(entry)
        if not list(stored):
            record.fields.pop(tag)

    def _op_DeleteItem(self, box, request) -> str:
        from tests.fakes.ews import Fault, _error_message, _success
        parts = []
        for elem in request.find(_q("ItemIds", M)):
            try:
                record = self._resolve(box, elem)
            except Fault as fault:
                parts.append(_error_message("DeleteItem", fault))
                continue
            if record is not None and record.master is not None:
                self._occurrence_changed(box, record, deleted=True)
                parts.append(_success("DeleteItem", ""))
                continue
            record = box.items.pop(elem.get("Id"), None)
            if record is None:
                parts.append(_error_message("DeleteItem", Fault(
                    "ErrorItemNotFound", "The specified object was not found in the store.")))
                continue
            box.note(record.folder, "delete", record.id)
            parts.append(_success("DeleteItem", ""))
        return "".join(parts)


def _canonical(elem):
    """An xs:boolean as Exchange answers it ("true"/"false"), whichever form was sent."""
    if elem.text in ("1", "0") and not list(elem) and _local(elem).startswith(("Is", "Reminder")) \
            and _local(elem) != "ReminderMinutesBeforeStart":
        elem.text = "true" if elem.text == "1" else "false"
    return elem


def _new_id() -> str:
    from tests.fakes.ews import _new_id as new
    return new()


def _stamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).astimezone(timezone.utc)


def series_starts(master: FakeRecord, most: int = 1000) -> list[datetime]:
    """The occurrence starts of a series from its Recurrence element (the fake's own reading
    of EWS's pattern and range elements, through dateutil)."""
    start = _parse(master.fields["Start"].text)
    elems = {_local(e): e for e in master.fields["Recurrence"]}
    pattern = next(e for name, e in elems.items() if name in PATTERNS)
    kind = _local(pattern)

    def value(name: str):
        return pattern.findtext(_q(name))

    kw: dict = {"interval": int(value("Interval") or 1)}
    days = [WEEKDAYS[d] for d in (value("DaysOfWeek") or "").split() if d in WEEKDAYS]
    freq = PATTERNS[kind]
    if kind == "WeeklyRecurrence":
        kw["byweekday"] = days
        kw["wkst"] = WEEKDAYS.get(value("FirstDayOfWeek") or "Sunday")
    if kind.startswith("Absolute"):
        kw["bymonthday"] = int(value("DayOfMonth"))
    if kind.startswith("Relative"):
        kw["byweekday"] = days
        kw["bysetpos"] = {"First": 1, "Second": 2, "Third": 3, "Fourth": 4, "Last": -1}[
            value("DayOfWeekIndex")]
    if kind.endswith("YearlyRecurrence"):
        kw["bymonth"] = MONTHS.index(value("Month")) + 1
        kw["interval"] = 1
    if "NumberedRecurrence" in elems:
        kw["count"] = int(elems["NumberedRecurrence"].findtext(_q("NumberOfOccurrences")))
    elif "EndDateRecurrence" in elems:
        end = elems["EndDateRecurrence"].findtext(_q("EndDate"))[:10]
        kw["until"] = datetime.fromisoformat(end + "T23:59:59+00:00")
    else:
        kw["count"] = most
    return list(rrule.rrule(freq, dtstart=start, **kw))[:most]
