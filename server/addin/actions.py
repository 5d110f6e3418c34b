"""What the add-in's task pane does: search, quick create (records, tasks, phone calls),
the pane's side of tracking (``track``, ``mark_pending``, ``set_regarding``, ``untrack``; the
tracking itself is ``server.crm.services.tracking``, shared with the sync engine) and the
short-lived pane tokens the sign-in dialog hands to the pane. Creating and tracking go
through the record, activity and tracking services, which check create, append-to and write.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import selectinload

from server.addin.context import tracking_json
from server.addin.links import activity_url, organization, record_titles, record_url
from server.addin.payloads import Item
from server.crm.activities import Activity
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.crm.services import activity_actions as acts
from server.crm.services import records, titles
from server.crm.services import tracked, tracking
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_
from server.mailkeys import find_token
from server.security import authz, delegates, tokens
from server.security.authz import Principal
from server.security.models import ApiToken, User
from server.security.privileges import Depth

PANE_TOKEN_HOURS = 8
SEARCH_TYPES = ("account", "contact", "lead", "opportunity", "case")
QUICK_CREATE_TYPES = ("contact", "lead", "opportunity", "case")
QUICK_ACTIVITY_TYPES = ("task", "phone_call")


# -- search ------------------------------------------------------------------------------------

def _search_groups(p: Principal, kind: str) -> list[list]:
    """Columns searched, grouped by rank: name, email, number, anything else (readable
    fields only, so search never reveals a hidden field)."""
    rt = RECORD_TYPES[kind]
    shown = titles.title_parts(p, kind)  # the title as the user may see it ranks first
    name = [titles.title_column(p, kind)] if shown else []
    columns = {c.key: c for c in records.search_columns(p, rt)}
    email = [c for n, c in columns.items() if n in rt.email_fields]
    number = [c for n, c in columns.items() if n == rt.number_field]
    rest = [c for n, c in columns.items() if n not in (rt.title_field, *shown)
            and n not in rt.email_fields and n != rt.number_field]
    return [name, email, number, rest]


def _rank(groups: list[list], q: str):
    """0 = exact name ... 11 = contained in another field; 99 = no match."""
    low = q.lower()
    whens = []
    tests = (lambda c: func.lower(c) == low,
             lambda c: func.lower(c).startswith(low, autoescape=True),
             lambda c: func.lower(c).contains(low, autoescape=True))
    for m, test in enumerate(tests):
        for g, cols in enumerate(groups):
            if cols:
                whens.append((or_(*[test(c) for c in cols]), m * 4 + g))
    return case(*whens, else_=99)


def _detail(p: Principal, kind: str, row, names) -> str:
    """What tells same-named records apart: email, account, company, city, number, owner."""
    access = p.fields(kind)

    def read(name):
        return getattr(row, name, None) if access.can_read(name) else None

    parts: list[str | None] = []
    if kind == "contact":
        parts = [read("email1"), names.get(("account", read("parent_account_id"))), read("city")]
    elif kind == "account":
        parts = [read("email1"), read("city"), read("account_number")]
    elif kind == "lead":
        parts = [read("company_name"), read("email1")]
    elif kind in ("opportunity", "case"):
        parts = [read("ticket_number") if kind == "case" else None,
                 names.get(("account", read("customer_account_id"))) or
                 names.get(("contact", read("customer_contact_id")))]
    owner = row.owner_name
    parts.append(f"Owner: {owner}" if owner else None)
    return " · ".join(x for x in parts if x)


def search(p: Principal, q: str, types: Iterable[str] = SEARCH_TYPES, limit: int = 20) -> list[dict]:
    """Records the user may read matching ``q``, ranked exact > prefix > contains and name >
    email > number, read-scoped in SQL (one query per type, one per referenced type)."""
    q = q.strip()
    if not q:
        raise Invalid(N_("Type something to search for."), {"q": N_("Required.")})
    found = []
    for kind in types:
        if p.depth(kind, "read") == Depth.NONE:
            continue
        rt = RECORD_TYPES[kind]
        rank = _rank(_search_groups(p, kind), q).label("rank")
        title = titles.title_column(p, kind)  # hidden parts sort nothing
        rows = db.session.execute(
            select(rt.model, rank)
            .where(authz.scope(p, rt.model, "read"), rt.model.is_active.is_(True), rank < 99)
            .options(selectinload(rt.model.owner_team))
            .order_by(rank, title, rt.model.id).limit(limit)).unique().all()
        found += [(r, kind, row) for row, r in rows]
    found.sort(key=lambda x: (x[0], SEARCH_TYPES.index(x[1]), (records.title(p, x[2]) or "").lower()))
    found = found[:limit]
    wanted: dict[str, set[int]] = {"account": set(), "contact": set()}
    for _, kind, row in found:
        for column, ref in (("parent_account_id", "account"), ("customer_account_id", "account"),
                            ("customer_contact_id", "contact")):
            if getattr(row, column, None) and p.fields(kind).can_read(column):
                wanted[ref].add(getattr(row, column))
    names = record_titles(p, wanted)
    return [{"type": kind, "id": row.id, "name": records.title(p, row),
             "detail": _detail(p, kind, row, names), "url": record_url(kind, row.id)}
            for _, kind, row in found]


# -- quick create ------------------------------------------------------------------------------

def quick_create(p: Principal, kind: str, fields: dict[str, Any],
                 set_regarding_for: str | None = None,
                 new_account: dict[str, str] | None = None) -> dict[str, Any]:
    """Create a contact, lead, opportunity or case from the pane (the record services
    validate and check the create privilege); optionally make the item regarding it.
    ``new_account`` (a contact only): ``{"name", "website"}`` of an account created with it
    as its parent, in the same transaction (create on accounts is checked too)."""
    if kind not in QUICK_CREATE_TYPES:
        raise NotFound(N_("Records of this type cannot be created from the add-in."))
    rt = RECORD_TYPES[kind]
    if p.depth(kind, "create") == Depth.NONE:
        raise Forbidden(N_("You may not create %(records)s.") % {"records": rt.nouns})
    if new_account is not None:
        if kind != "contact":
            raise Invalid(N_("Only a new contact can come with a new account."), {"new_account": N_("Not for this type.")})
        try:
            account = records.create(p, RECORD_TYPES["account"], new_account)
        except Invalid as exc:  # its field messages, under new_account.
            raise Invalid(exc.message, {f"new_account.{k}": v for k, v in exc.fields.items()}) from None
        fields = {**fields, "parent_account_id": account.id}
    record = records.create(p, rt, fields)
    out: dict[str, Any] = {"record": {"type": kind, "id": record.id,
                                      "name": records.title(p, record),
                                      "url": record_url(kind, record.id)},
                           "tracking": None}
    if set_regarding_for:
        out["tracking"] = set_regarding(p, set_regarding_for, (kind, record.id), missing_ok=True)
    return out


def quick_activity(p: Principal, kind: str, fields: dict[str, Any],
                   regarding: tuple[str, int] | None) -> dict[str, Any]:
    """A task or phone call, optionally regarding a record (``fields`` already parsed:
    subject, description, scheduled_end, phone_number)."""
    if kind == "task":
        if "phone_number" in fields:
            raise Invalid(N_("Some fields are not valid."), {"fields.phone_number": N_("Tasks have no phone number.")})
        activity = acts.create_task(p, regarding, subject=fields.get("subject") or "",
                                    description=fields.get("description"),
                                    due=fields.get("scheduled_end"))
    elif kind == "phone_call":
        activity = acts.create_phone_call(p, regarding, subject=fields.get("subject") or "",
                                          description=fields.get("description"),
                                          due=fields.get("scheduled_end"),
                                          phone_number=fields.get("phone_number"))
    else:
        raise NotFound(N_("Activities of this type cannot be created from the add-in."))
    return {"activity": {"id": activity.id, "type": activity.activity_type,
                         "subject": activity.subject, "url": activity_url(activity.id)}}


# -- tracking ----------------------------------------------------------------------------------

def _party(person) -> tuple[str, str] | None:
    return (person.name, person.address) if person else None


def email_content(item: Item, org: Organization) -> tracking.EmailContent:
    """What tracking needs from the pane's item and content."""
    h = item.headers
    token = find_token(item.subject, org.tracking_token_prefix) if org.use_tracking_token else None
    return tracking.EmailContent(
        message_id=item.internet_message_id or (h.message_id if h else None),
        subject=item.subject, from_=_party(item.from_),
        to=[_party(x) for x in item.to], cc=[_party(x) for x in item.cc],
        html_body=item.html_body, text_body=item.text_body,
        sent_on=h.date if h else None,
        in_reply_to=h.in_reply_to if h else None,
        references=list(h.references) if h else [],
        conversation_index=h.thread_index if h else None,
        tracking_token=token,
        attachments=[tracking.AttachmentContent(a.name, a.content_type, a.content, a.size,
                                                a.content_id, a.is_inline)
                     for a in item.attachments])


def appointment_content(item: Item) -> tracking.AppointmentContent:
    return tracking.AppointmentContent(
        uid=item.identity, subject=item.subject, organizer=_party(item.organizer),
        required=[_party(x) for x in item.required_attendees],
        optional=[_party(x) for x in item.optional_attendees],
        start=item.start, end=item.end, location=item.location,
        html_body=item.html_body, text_body=item.text_body)


def track(p: Principal, item: Item, regarding: tuple[str, int] | None) -> dict[str, Any]:
    """Track the item. With its content the activity is created at once (idempotent by
    Message-ID); without it (compose, or content the client could not read) a pending
    request is recorded for the pane after sending or for server-side sync. An item of
    someone else's mailbox (a shared folder or mailbox) is tracked for its owner."""
    authz.require_named(p, "track_email")
    owner = delegates.acting_for(p.user, item.mailbox_owner)
    if owner is not None:
        return _track_for(p, owner, item, regarding)
    org = organization()
    if item.type == "appointment":
        if not item.identity:
            raise Invalid(N_("Some fields are not valid."), {"item.item_id": N_("The meeting's id is needed.")})
        if item.mode == "compose":
            return mark_pending(p, item, regarding)
        appt, _ = tracking.track_appointment(p, appointment_content(item), regarding=regarding)
        return {"tracking": tracking_json(p, tracked.tracking_status(
            p, appt.global_object_id, item_type="appointment"))}
    if item.mode == "compose" or not item.has_content:
        reason = None if item.mode == "compose" else (
            "The add-in could not read this email's content; it is tracked when server-side "
            "synchronization sees it.")
        return mark_pending(p, item, regarding, reason=reason)
    content = email_content(item, org)
    # The user chose this regarding: it wins over the one a copy already in the CRM has (an
    # email untracked and tracked again, or tracked by a colleague), as for a meeting.
    email, _ = tracking.track_email(p, content, regarding=regarding, regarding_wins=True)
    return {"tracking": tracking_json(p, tracked.tracking_status(p, email.message_id))}


def _track_for(p: Principal, owner: User, item: Item,
               regarding: tuple[str, int] | None) -> dict[str, Any]:
    """An assistant tracks an email of ``owner``'s mailbox, which ``owner`` allowed: the
    email is ``owner``'s activity, tracked with ``owner``'s privileges (as server-side sync
    would), linked where the assistant may link it; the assistant is recorded as who
    created (or last changed) it."""
    if item.type != "message" or item.mode != "read" or not item.has_content:
        raise Invalid(N_("In someone else's mailbox the add-in tracks the emails you read, with their content."),
                      {"item.mailbox_owner": "Open a received or sent email to track it."})
    regarding = tracking.check_regarding(p, regarding)
    op = authz.principal(owner)
    email, created = tracking.track_email(op, email_content(item, organization()), regarding=regarding,
                                          regarding_wins=True)
    if created:
        email.created_by_id = p.user_id
    email.modified_by_id = p.user_id
    db.session.flush()
    return {"tracking": tracking_json(p, tracked.tracking_status(op, email.message_id))}


def mark_pending(p: Principal, item: Item, regarding: tuple[str, int] | None, *,
                 reason: str | None = None) -> dict[str, Any]:
    """Compose: "track this when it is sent" (a tracking token for the subject when the org
    uses them). The request is found again by the item's id or by that token."""
    org = organization()
    identity = item.identity
    existing = None
    if not identity and org.use_tracking_token:
        existing = tracked.own_request(p, token=find_token(item.subject, org.tracking_token_prefix))
    if existing is not None:
        req = existing
        authz.require_named(p, "track_email")
        regarding = tracking.check_regarding(p, regarding)
        req.set_regarding(*(regarding or (None, None)))
        req.status, req.reason = "pending", reason
        db.session.flush()
    else:
        req = tracking.request_tracking(p, identity, subject=item.subject, regarding=regarding,
                                        conversation_id=item.conversation_id,
                                        item_type="appointment" if item.type == "appointment" else "email",
                                        reason=reason,
                                        starts_on=item.start if item.type == "appointment" else None)
    status = tracked.TrackingStatus("pending", None, req.regarding_ref, req.reason)
    return {"tracking": tracking_json(p, status), "tracking_token": req.tracking_token}


def _tracked_activity(p: Principal, identity: str):
    status = tracked.tracking_status(p, identity, item_type="email")
    if status.activity_id is None:
        status = tracked.tracking_status(p, identity, item_type="appointment")
    activity = db.session.get(Activity, status.activity_id) if status.activity_id else None
    return activity, tracked.own_request(p, identity=identity)


def set_regarding(p: Principal, identity: str, regarding: tuple[str, int] | None, *,
                  missing_ok: bool = False) -> dict[str, Any] | None:
    """Change what a tracked item (or a pending request) is regarding."""
    activity, req = _tracked_activity(p, identity)
    if activity is not None:
        tracking.set_regarding(p, activity, regarding)
        status = tracked.TrackingStatus("tracked", activity.id, activity.regarding_ref)
    elif req is not None and req.status in ("pending", "failed"):
        req = tracking.request_tracking(p, req.internet_message_id, subject=req.subject,
                                        regarding=regarding, conversation_id=req.conversation_id,
                                        item_type=req.item_type, reason=req.reason)
        status = tracked.TrackingStatus(req.status, None, req.regarding_ref, req.reason)
    elif missing_ok:
        return tracking_json(p, tracked.NOT_TRACKED)
    else:
        raise NotFound(N_("This item is not tracked."))
    return tracking_json(p, status)


def untrack(p: Principal, identity: str, delete_copy: bool) -> dict[str, Any]:
    """Untrack: the CRM copy is deleted only when asked and the user owns it (and holds
    delete); otherwise only the user's link to it is removed and the record stays."""
    is_meeting = tracked.find_tracked(p, identity, "appointment") is not None
    deleted = tracking.untrack(p, identity, delete_copy=delete_copy,
                               item_type="appointment" if is_meeting else "email")
    return {"tracking": tracking_json(p, tracked.NOT_TRACKED), "deleted": deleted}


# -- pane tokens -------------------------------------------------------------------------------

def issue_pane_token(user: User, device: str | None = None) -> tuple[str, datetime]:
    """A short-lived (8 hours), revocable pane token for the sign-in dialog to hand to the
    pane: ``(secret, expires_on)``. ``device``: a digest naming the device (the dialog's
    device cookie); the user's earlier pane token of that device is replaced, so signing in
    again adds no token. The secret is never stored; the caller commits. Forbidden when the
    user may not use the add-in."""
    p = authz.principal(user)
    if not user.is_active:
        raise Forbidden(N_("This account is disabled."))
    authz.require_named(p, "use_outlook_addin")
    # The user's old pane tokens that expired more than a day ago are of no further use; nor
    # is the one this device had before.
    stale = ApiToken.expires_on < utcnow() - timedelta(days=1)
    db.session.execute(ApiToken.__table__.delete().where(
        ApiToken.user_id == user.id, ApiToken.kind == "pane",
        or_(stale, ApiToken.device == device) if device else stale))
    row, secret = tokens.issue(user, "Outlook add-in", days=PANE_TOKEN_HOURS / 24, kind="pane")
    row.device = device
    return secret, row.expires_on


def revoke_pane_token(row: ApiToken) -> None:
    if row.kind == "pane":
        tokens.revoke(row)
        db.session.flush()
