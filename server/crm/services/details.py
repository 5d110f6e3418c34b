"""What one record's page and one activity's page show, each gathered by one call: the record's
readable fields, a page of its activity timeline, its history (values a sync conflict replaced), the titles of what it links to, what the
reader may do with it, its shares and the records pointing at it; an activity with its parties
by role, inline images and regarding candidates; and an attachment's content, which is read
from the row or from the instance folder (never outside it).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import undefer

from server.crm.activities import REGARDING_TYPES, Activity, Attachment, Email
from server.crm.history import RecordHistory
from server.crm.html import inline_image_url
from server.crm.models import Contact
from server.crm.registry import Field, RecordType
from server.crm.services import records
from server.crm.services.activity_actions import get_activity
from server.crm.services.lists import Related, related, shares
from server.crm.services.search import regarding_candidates
from server.crm.services.timeline import Page, timeline
from server.crm.services.titles import Titles, link_refs, refs, regarding_refs, titles
from server.db import db
from server.errors import NotFound
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal

RECORD_ACTIONS = ("write", "delete", "assign", "share", "append_to")
INLINE_IMAGE_MAX = 1024 * 1024  # bigger inline images are not put into the page


@dataclass
class RecordPage:
    record: object
    fields: list[Field]  # readable ones
    timeline: Page
    titles: Titles  # of linked records and of what the timeline's activities are regarding
    can: dict[str, bool]  # RECORD_ACTIONS
    can_add_activity: bool
    shares: list  # only for a reader who may share the record
    related: list[Related]
    history: list[RecordHistory] = field(default_factory=list)


def record_page(p: Principal, rt: RecordType, record_id: int, *,
                types: tuple[str, ...] | None = None, cursor: str | None = None,
                limit: int = 25, roll_up: bool | None = None) -> RecordPage:
    """One record ``p`` may read with a page of its timeline (NotFound otherwise);
    ``roll_up``: with its related records' activities (None: the type's default)."""
    record = records.get(p, rt.name, record_id)
    visible = records.visible_fields(p, rt)
    page = timeline(p, rt.name, record.id, cursor=cursor, types=types or None, limit=limit,
                    related=roll_up)
    can = {action: authz.can(p, action, record) for action in RECORD_ACTIONS}
    can_add = (rt.name in REGARDING_TYPES and can["append_to"]
               and authz.can_create(p, Activity, p.business_unit_id, p.user_id))
    return RecordPage(record, visible, page,
                      titles(p, refs(link_refs([record], visible), regarding_refs(page.items))),
                      can, can_add, shares(record) if can["share"] else [],
                      related(p, rt, record), history(p, record))


@dataclass
class ActivityPage:
    activity: Activity
    roles: dict[str, list]  # party role -> parties
    titles: Titles  # of what it is regarding
    can_write: bool
    inline_images: dict[str, str] = field(default_factory=dict)  # content id -> data: URL
    candidates: list = field(default_factory=list)  # (record type, (id, title) rows)
    history: list[RecordHistory] = field(default_factory=list)


def activity_page(p: Principal, activity_id: int, *, with_images: bool = False,
                  rq: str = "") -> ActivityPage:
    """One activity ``p`` may read (NotFound otherwise), with an email's inline images when
    asked for, and records matching ``rq`` it could be made regarding when ``p`` may write
    it."""
    activity = get_activity(p, activity_id)
    roles: dict[str, list] = {}
    for party in activity.parties:
        roles.setdefault(party.role, []).append(party)
    can_write = authz.can(p, "write", activity)
    rq = (rq or "").strip()[:200]
    out = ActivityPage(activity, roles, titles(p, regarding_refs([activity])), can_write,
                       candidates=regarding_candidates(p, rq) if rq and can_write else [],
                       history=history(p, activity))
    if with_images and isinstance(activity, Email) and activity.html_body:
        out.inline_images = _inline_images(activity)
    return out


def history(p: Principal, record, limit: int = 50) -> list[RecordHistory]:
    """The record's history (an activity's or a contact's), newest first; entries of a
    field the reader may not read are left out."""
    if isinstance(record, Contact):
        column = RecordHistory.contact_id
    elif isinstance(record, Activity):
        column = RecordHistory.activity_id
    else:
        return []
    access = p.fields(authz.table_of(type(record)))
    rows = db.session.scalars(select(RecordHistory).where(column == record.id)
                              .order_by(RecordHistory.id.desc()).limit(limit))
    return [row for row in rows if row.field == "parties" or access.can_read(row.field)]


def _inline_images(email: Email) -> dict[str, str]:
    """The email's images referenced by Content-ID, up to ``INLINE_IMAGE_MAX`` each, as
    ``data:`` URLs built from an allow-listed type only (``html.inline_image_url``)."""
    out = {}
    for att in db.session.scalars(
            select(Attachment).where(Attachment.activity_id == email.id,
                                     Attachment.content_id.is_not(None))
            .options(undefer(Attachment.content))):
        if not att.content_omitted and att.size <= INLINE_IMAGE_MAX:
            data = attachment_bytes(att)
            url = inline_image_url(att.content_type, data) if data is not None else None
            if url:
                out[att.content_id.strip("<>")] = url
    return out


def attachment(p: Principal, activity_id: int, attachment_id: int) -> tuple[Attachment, bytes]:
    """An attachment of an activity ``p`` may read, with its content; NotFound (saying why
    when the activity is readable) otherwise."""
    activity = db.session.get(Activity, activity_id)
    if activity is None:
        raise NotFound()
    authz.require(p, "read", activity)
    att = db.session.scalar(select(Attachment).where(
        Attachment.id == attachment_id, Attachment.activity_id == activity.id)
        .options(undefer(Attachment.content)))
    if att is None:
        raise NotFound()
    if att.content_omitted:
        raise NotFound(N_("This attachment was over the size limit; only its name was kept."))
    data = attachment_bytes(att)
    if data is None:
        raise NotFound(N_("The attachment's content is not available."))
    return att, data


def attachment_bytes(att: Attachment) -> bytes | None:
    """An attachment's content from the row, or from its file under the instance folder
    (``storage_path`` is relative to it; never a file outside it); None when neither is
    there."""
    if att.content is not None:
        return att.content
    if not att.storage_path:
        return None
    base = Path(current_app.instance_path).resolve()
    path = (base / att.storage_path).resolve()
    if path.is_relative_to(base) and path.is_file():
        return path.read_bytes()
    return None
