"""The Outlook pane's meetings as the item sync knows them: one appointment per meeting.

Office.js gives a meeting's item id, not its iCalendar UID (no host has it in read mode), so
the server finds the UID (``meeting_uid``), in this order:

1. what the item sync read from the user's mailbox already (the ``item_link`` of that id:
   Graph keys events by the REST form of the pane's id, EWS by the id itself);
2. the mailbox's item store, asked now (Graph: the event's ``iCalUId``);
3. the invitation the CRM has as an email (the pane gives the meeting's
   ``internetMessageId``, the invitation's Message-ID): the UID in its ``text/calendar``
   part, which the mail sync keeps as an attachment (a TNEF meeting's too). This is where a
   mailbox read over IMAP, POP3 or Maildir with its calendar on CalDAV finds it;
4. the CRM's one appointment with the same organizer, start and subject.

Where none answers, the meeting stays known by its item id. A meeting tracked in compose
mode (not sent yet: no UID anywhere) leaves a pending track request with its subject and
start; the item sync's pull takes the meeting in when it appears, with the request's
regarding (``pending_for`` / ``honour``), as server-side sync honours email's requests."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime

from sqlalchemy import exists, func, select
from sqlalchemy.orm import undefer

from server.addin.payloads import Item as PaneItem
from server.crm.activities import ActivityParty, Appointment, Attachment, Email
from server.crm.services.details import attachment_bytes
from server.crm.services.tracked import TrackRequest, find_tracked
from server.db import db, utcnow
from server.security import authz
from server.security.models import User
from server.sync import connectors
from server.sync.connectors.base import ConnectorError, Item, ItemStore
from server.sync.connectors.graph_items import rest_id
from server.sync.engine import accounts
from server.sync.mail.invitations import CALENDAR_TYPES, Meeting, read
from server.sync.models import ItemLink, Mailbox

log = logging.getLogger(__name__)


def with_uid(user: User, item: PaneItem | None) -> PaneItem | None:
    """The pane's item with its meeting's UID where it can be found (``meeting_uid``)."""
    if item is None or item.type != "appointment" or item.ical_uid or not item.item_id:
        return item
    uid = meeting_uid(user, item.item_id, subject=item.subject, start=item.start,
                      organizer=item.organizer.address if item.organizer else None,
                      internet_message_id=item.internet_message_id)
    return replace(item, ical_uid=uid) if uid else item


def meeting_uid(user: User, item_id: str, *, subject: str | None = None,
                start: datetime | None = None, organizer: str | None = None,
                internet_message_id: str | None = None) -> str | None:
    ids = sorted({item_id, rest_id(item_id)})
    found = db.session.scalar(select(ItemLink.uid).join(Mailbox, Mailbox.id == ItemLink.mailbox_id)
                              .where(Mailbox.user_id == user.id, ItemLink.kind == "appointment",
                                     ItemLink.ref.in_(ids), ItemLink.uid.is_not(None)).limit(1))
    return (found or _from_store(user, item_id) or _from_invitation(user, internet_message_id)
            or _same_meeting(subject, start, organizer))


def _from_store(user: User, item_id: str) -> str | None:
    mailbox = db.session.scalar(select(Mailbox).where(
        Mailbox.user_id == user.id, Mailbox.syncs_items,
        Mailbox.enabled.is_(True)).order_by(Mailbox.id).limit(1))
    if mailbox is None:
        return None
    try:
        store = connectors.item_store(accounts.items_protocol(mailbox))
        if store.meeting_uid is ItemStore.meeting_uid:  # the store cannot tell (CalDAV)
            return None
        with store(accounts.items_account(mailbox)) as opened:
            return opened.meeting_uid(item_id)
    except (ConnectorError, ValueError) as exc:  # the pane still works, by the item id
        log.info("meeting UID not read from mailbox %s: %s", mailbox.id, exc)
        return None


def meeting_of(email) -> Meeting | None:
    """The meeting of the first calendar part of a tracked email (kept as an attachment,
    in the database or on disk), if any."""
    if not isinstance(email, Email):
        return None
    found = db.session.scalars(
        select(Attachment).where(Attachment.activity_id == email.id,
                                 Attachment.content_type.in_(CALENDAR_TYPES))
        .options(undefer(Attachment.content)).order_by(Attachment.id).limit(1)).first()
    data = attachment_bytes(found) if found is not None else None
    return read(data) if data else None


def _from_invitation(user: User, internet_message_id: str | None) -> str | None:
    """The UID in the invitation the CRM tracked under this Message-ID, where the user may
    read that email (the pane's internetMessageId of a meeting is its invitation's)."""
    email = find_tracked(authz.principal(user), internet_message_id) if internet_message_id \
        else None
    meeting = meeting_of(email) if email is not None else None
    return meeting.uid if meeting is not None and meeting.uid else None


def _same_meeting(subject: str | None, start: datetime | None,
                  organizer: str | None) -> str | None:
    """The UID of the one appointment with this start, subject and organizer."""
    if not subject or start is None:
        return None
    query = select(Appointment.global_object_id).where(
        Appointment.scheduled_start == start, Appointment.subject == subject,
        Appointment.global_object_id.is_not(None))
    if organizer:
        query = query.where(exists().where(
            ActivityParty.activity_id == Appointment.id, ActivityParty.role == "organizer",
            func.lower(ActivityParty.address) == organizer.lower()))
    found = db.session.scalars(query.limit(2)).all()
    return found[0] if len(found) == 1 else None


def pending_for(user_id: int) -> list[TrackRequest]:
    """The user's pending requests to track a meeting (from the pane, in compose mode)."""
    return list(db.session.scalars(select(TrackRequest).where(
        TrackRequest.user_id == user_id, TrackRequest.item_type == "appointment",
        TrackRequest.status == "pending").order_by(TrackRequest.id)))


def request_of(requests: list[TrackRequest], item: Item, values: dict) -> TrackRequest | None:
    """The pending request this calendar item answers: by its UID or id, else by the
    subject and start the pane saw."""
    keys = {item.uid, item.ref, item.ref.rstrip("/").rsplit("/", 1)[-1]} - {None}
    for request in requests:
        if request.status == "pending" and request.internet_message_id in keys:
            return request
    for request in requests:
        if request.status == "pending" and request.subject and request.starts_on and \
                request.subject == values.get("subject") and \
                request.starts_on == values.get("scheduled_start"):
            return request
    return None


def honour(request: TrackRequest, record: Appointment, uid: str | None) -> None:
    """The request is done: the meeting is tracked, regarding what the pane chose (where it
    is regarding nothing yet), and the request is known by the meeting's UID from now."""
    if request.regarding_ref and record.regarding_ref is None:
        record.set_regarding(*request.regarding_ref)
    request.status, request.completed_on, request.reason = "done", utcnow(), None
    request.activity = record
    if uid and uid != request.internet_message_id and db.session.scalar(
            select(TrackRequest.id).where(TrackRequest.user_id == request.user_id,
                                          TrackRequest.internet_message_id == uid)) is None:
        request.internet_message_id = uid
