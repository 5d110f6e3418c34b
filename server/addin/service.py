"""The services behind the add-in API: everything the task pane shows and does for an email or
meeting, as plain functions taking a Principal and returning the JSON-ready shapes of the
add-in API contract.

* ``context``: one round trip — the parties resolved to CRM records with their cards, the
  item's tracking status and regarding, related data (open opportunities and cases, recent
  activities) for the first external person or the regarding record, what the user may do.
  A constant number of queries however many recipients the item has.
* ``related``, ``search``, ``quick_create``, ``quick_activity``.
* ``track``, ``mark_pending``, ``set_regarding``, ``untrack``: the pane's side of tracking;
  the tracking itself is ``server.crm.tracking`` (shared with the sync engine).
* ``issue_pane_token``: the short-lived token the sign-in dialog hands to the pane.

Privileges: every record shown is read-scoped in SQL (a record the user may not read is not
shown: its address appears unresolved); cards and lists obey field security (a hidden field is
null); creating and tracking go through the record, activity and tracking services, which
check create, append-to and write.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Iterable

from flask import current_app, url_for
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import selectinload

from server.addin.payloads import Item
from server.sync.threading import find_token
from server.crm import activity_services as acts
from server.crm import records
from server.crm import timeline as timelines
from server.crm import tracking
from server.crm.activities import Activity
from server.crm.addresses import normalize
from server.crm.models import Account, Case, Contact, Lead, Opportunity, Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.crm.resolution import resolve
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound
from server.security import authz, tokens
from server.security.authz import Principal
from server.security.models import ApiToken, User
from server.security.privileges import Depth

PANE_TOKEN_HOURS = 8
CARD_MODELS = {"user": User, "contact": Contact, "account": Account, "lead": Lead, "queue": Queue}
EXTERNAL = ("contact", "account", "lead")  # people and organizations outside the company
RELATED_TYPES = ("account", "contact", "lead", "opportunity", "case")
SEARCH_TYPES = ("account", "contact", "lead", "opportunity", "case")
QUICK_CREATE_TYPES = ("contact", "lead", "opportunity", "case")
QUICK_ACTIVITY_TYPES = ("task", "phone_call")
OPEN_CASE_STATUSES = ("in_progress", "on_hold", "waiting")
RELATED_LIMIT = 10
RECENT_LIMIT = 5


# -- links -------------------------------------------------------------------------------------

def _url(endpoint: str, **values) -> str | None:
    """A link into the CRM's pages (None when the pages are not installed)."""
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, **values)


def record_url(kind: str, record_id: int) -> str | None:
    return _url("pages.record_detail", type_name=kind, record_id=record_id) \
        if kind in RECORD_TYPES else None


def activity_url(activity_id: int) -> str | None:
    return _url("pages.activity_detail", activity_id=activity_id)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _money(value) -> str | None:
    return str(value) if value is not None else None


def _org() -> Organization:
    return db.session.get(Organization, 1)


def _titles(p: Principal, wanted: dict[str, set[int]]) -> dict[tuple[str, int], str]:
    """Titles of records the user may read, one query per type."""
    out: dict[tuple[str, int], str] = {}
    for kind, ids in wanted.items():
        ids = {i for i in ids if i is not None}
        if not ids:
            continue
        rt = RECORD_TYPES[kind]
        title = getattr(rt.model, rt.title_field)
        rows = db.session.execute(select(rt.model.id, title).where(
            rt.model.id.in_(ids), authz.scope(p, rt.model, "read")))
        out.update({(kind, i): t for i, t in rows})
    return out


def _ref(kind: str, record_id: int, titles: dict[tuple[str, int], str]) -> dict[str, Any]:
    """``{"type", "id", "name", "url"}``; name and url are null when the user may not read it."""
    name = titles.get((kind, record_id))
    return {"type": kind, "id": record_id, "name": name,
            "url": record_url(kind, record_id) if name is not None else None}


# -- who the user is and what they may do ------------------------------------------------------

def user_json(p: Principal) -> dict[str, Any]:
    return {"id": p.user.id, "name": p.user.full_name, "email": p.user.email}


def _may_create(p: Principal, model) -> bool:
    return authz.can_create(p, model, p.business_unit_id, p.user_id)


def capabilities(p: Principal) -> dict[str, bool]:
    can_activity = _may_create(p, Activity)
    return {"track": p.has("track_email") and can_activity,
            "create_contact": _may_create(p, Contact),
            "create_lead": _may_create(p, Lead),
            "create_opportunity": _may_create(p, Opportunity),
            "create_case": _may_create(p, Case),
            "create_task": can_activity,
            "create_phone_call": can_activity}


def org_json(org: Organization) -> dict[str, Any]:
    return {"use_tracking_token": org.use_tracking_token,
            "tracking_token_prefix": org.tracking_token_prefix,
            "attachment_max_bytes": org.attachment_max_bytes}


# -- parties and cards -------------------------------------------------------------------------

def _roles(item: Item) -> list[tuple[str, Any]]:
    """(role, person) for everyone on the item, in the order the pane lists them."""
    out = [("from", item.from_)] if item.from_ else []
    out += [("to", x) for x in item.to] + [("cc", x) for x in item.cc]
    out += [("organizer", item.organizer)] if item.organizer else []
    out += [("required", x) for x in item.required_attendees]
    out += [("optional", x) for x in item.optional_attendees]
    return out


def _load_cards(p: Principal, wanted: dict[str, set[int]]) -> dict[tuple[str, int], dict]:
    """Match entries (with cards) of the records the user may read: one query per record
    type plus one for the accounts the cards name."""
    rows: dict[tuple[str, int], Any] = {}
    for kind, ids in wanted.items():
        model = CARD_MODELS[kind]
        query = select(model).where(model.id.in_(ids), authz.scope(p, model, "read"))
        if kind != "user":
            query = query.options(selectinload(model.owner_team))
        for row in db.session.scalars(query).unique():
            rows[(kind, row.id)] = row
    parents = {row.parent_account_id for (kind, _), row in rows.items()
               if kind in ("contact", "account") and row.parent_account_id
               and p.fields(kind).can_read("parent_account_id")}
    titles = _titles(p, {"account": parents})
    return {key: _match_json(p, key[0], row, titles) for key, row in rows.items()}


def _card(p: Principal, kind: str, row, titles) -> dict[str, Any]:
    if kind == "user":
        return {"job_title": row.job_title, "account": None, "company": None,
                "email": row.email, "phone": row.phone, "owner": None}
    access = p.fields(kind)

    def read(name: str):
        return getattr(row, name, None) if access.can_read(name) else None

    emails = ("email",) if kind == "queue" else ("email1", "email2", "email3")
    account = None
    parent_id = read("parent_account_id")
    if parent_id and ("account", parent_id) in titles:
        account = _ref("account", parent_id, titles)
        account.pop("type")
    return {"job_title": read("job_title"), "account": account, "company": read("company_name"),
            "email": next((v for v in (read(e) for e in emails) if v), None),
            "phone": read("phone") or read("mobile_phone"), "owner": row.owner_name or None}


def _match_json(p: Principal, kind: str, row, titles) -> dict[str, Any]:
    name = row.full_name if kind in ("user", "contact", "lead") else row.name
    return {"type": kind, "id": row.id, "name": name,
            "url": record_url(kind, row.id) if kind != "user" else None,
            "card": _card(p, kind, row, titles)}


def parties(p: Principal, item: Item, org: Organization) -> list[dict[str, Any]]:
    """Everyone on the item with the records their address resolves to (best first), only
    those the user may read; the user themself is ``self``."""
    own = {normalize(p.user.email), normalize(item.user_address)} - {None}
    roles = _roles(item)
    addresses = [person.address for _, person in roles
                 if person.address and normalize(person.address) not in own]
    matches = resolve(list(dict.fromkeys(addresses)), user_id=p.user_id, org=org) if addresses else {}
    wanted: dict[str, set[int]] = {}
    for found in matches.values():
        for m in found:
            wanted.setdefault(m.record_type, set()).add(m.record_id)
    cards = _load_cards(p, wanted)
    out = []
    for role, person in roles:
        entry = {"role": role, "name": person.name, "address": person.address}
        if person.address and normalize(person.address) in own:
            entry.update(status="self", matches=[])
        else:
            found = [cards[(m.record_type, m.record_id)] for m in matches.get(person.address, ())
                     if (m.record_type, m.record_id) in cards]
            entry.update(status="resolved" if found else "unresolved", matches=found)
        out.append(entry)
    return out


# -- related data ------------------------------------------------------------------------------

def _empty_related() -> dict[str, Any]:
    return {"for": None, "parent_account": None, "open_opportunities": [], "open_cases": [],
            "recent_activities": []}


def _readable(p: Principal, kind: str, column: str) -> bool:
    return p.depth(kind, "read") > Depth.NONE and p.fields(kind).can_read(column)


def _customer_condition(p: Principal, model, kind: str, ident: int, kind_name: str):
    """``model``'s rows whose customer is (kind, ident), if the user may read that link."""
    column = {"account": "customer_account_id", "contact": "customer_contact_id"}.get(kind)
    if column is None or not _readable(p, kind_name, column):
        return None
    return getattr(model, column) == ident


def related(p: Principal, kind: str, record_id: int) -> dict[str, Any]:
    """What the pane shows about one record: its account, open opportunities and cases of it
    (or of its customer), and its latest activities."""
    if kind not in RELATED_TYPES:
        raise Invalid("Related data is shown for accounts, contacts, leads, opportunities "
                      "and cases.", {"type": "Unsupported record type."})
    rt = RECORD_TYPES[kind]
    record = db.session.get(rt.model, record_id)  # often already loaded for a card
    if record is None or not authz.can(p, "read", record):
        raise NotFound()
    access = p.fields(kind)
    parent_id = customer = None
    if kind in ("contact", "account") and access.can_read("parent_account_id"):
        parent_id = record.parent_account_id
    if kind in ("opportunity", "case"):
        if access.can_read("customer_account_id") and record.customer_account_id:
            customer = ("account", record.customer_account_id)
            parent_id = record.customer_account_id
        elif access.can_read("customer_contact_id") and record.customer_contact_id:
            customer = ("contact", record.customer_contact_id)
    about = customer if kind in ("opportunity", "case") else (kind, record.id)
    titles = _titles(p, {"account": {parent_id} if parent_id else set()})
    out = _empty_related()
    out["for"] = {"type": kind, "id": record.id, "name": getattr(record, rt.title_field),
                  "url": record_url(kind, record.id)}
    if parent_id and ("account", parent_id) in titles:
        out["parent_account"] = _ref("account", parent_id, titles)
    if about is not None:
        out["open_opportunities"] = _open_opportunities(p, about, exclude=record if kind == "opportunity" else None)
        out["open_cases"] = _open_cases(p, about, exclude=record if kind == "case" else None)
    out["recent_activities"] = _recent_activities(p, kind, record.id)
    return out


def _open_opportunities(p: Principal, about: tuple[str, int], exclude=None) -> list[dict]:
    cond = _customer_condition(p, Opportunity, *about, "opportunity")
    if cond is None:
        return []
    query = (select(Opportunity).where(cond, Opportunity.status == "open",
                                       Opportunity.is_active.is_(True),
                                       authz.scope(p, Opportunity, "read"))
             .order_by(Opportunity.modified_on.desc(), Opportunity.id.desc()).limit(RELATED_LIMIT))
    if exclude is not None:
        query = query.where(Opportunity.id != exclude.id)
    access = p.fields("opportunity")
    return [{"id": o.id, "name": o.name, "url": record_url("opportunity", o.id),
             "estimated_value": _money(o.estimated_value) if access.can_read("estimated_value") else None,
             "status": o.status if access.can_read("status") else None}
            for o in db.session.scalars(query).unique()]


def _open_cases(p: Principal, about: tuple[str, int], exclude=None) -> list[dict]:
    cond = _customer_condition(p, Case, *about, "case")
    if cond is None:
        return []
    query = (select(Case).where(cond, Case.status.in_(OPEN_CASE_STATUSES), Case.is_active.is_(True),
                                authz.scope(p, Case, "read"))
             .order_by(Case.modified_on.desc(), Case.id.desc()).limit(RELATED_LIMIT))
    if exclude is not None:
        query = query.where(Case.id != exclude.id)
    access = p.fields("case")
    return [{"id": c.id, "title": c.title, "url": record_url("case", c.id),
             "ticket_number": c.ticket_number if access.can_read("ticket_number") else None,
             "status": c.status if access.can_read("status") else None}
            for c in db.session.scalars(query).unique()]


def _recent_activities(p: Principal, kind: str, record_id: int) -> list[dict]:
    if p.depth("activity", "read") == Depth.NONE:
        return []
    page = timelines.timeline(p, kind, record_id, limit=RECENT_LIMIT)
    access = p.fields("activity")
    return [{"id": a.id, "type": a.activity_type,
             "subject": a.subject if access.can_read("subject") else None,
             "occurred_on": _iso(a.occurred_on), "url": activity_url(a.id)} for a in page.items]


def _related_subject(party_list: list[dict], regarding: dict | None) -> tuple[str, int] | None:
    """The regarding record when tracked (and readable), else the first external person."""
    if regarding and regarding["name"] is not None and regarding["type"] in RELATED_TYPES:
        return regarding["type"], regarding["id"]
    for party in party_list:
        if party["status"] != "resolved":
            continue
        first = party["matches"][0]
        if first["type"] in EXTERNAL:
            return first["type"], first["id"]
    return None


# -- tracking status ---------------------------------------------------------------------------

def status_of(p: Principal, item: Item, org: Organization) -> tracking.TrackingStatus:
    """Whether the item is tracked (and what it is regarding) as this user sees it."""
    token = find_token(item.subject, org.tracking_token_prefix) if org.use_tracking_token else None
    return tracking.tracking_status(p, item.identity, item_type=item.type if item.type == "appointment" else "email",
                                    token=token)


def tracking_json(p: Principal, status: tracking.TrackingStatus) -> dict[str, Any]:
    regarding = None
    if status.regarding:
        kind, ident = status.regarding
        regarding = _ref(kind, ident, _titles(p, {kind: {ident}}))
    activity = status.activity
    return {"status": status.status, "activity_id": activity.id if activity else None,
            "regarding": regarding, "reason": status.reason,
            "url": activity_url(activity.id) if activity else None}


# -- the context call --------------------------------------------------------------------------

def context(p: Principal, item: Item) -> dict[str, Any]:
    """Everything the pane shows for one item, in one call."""
    org = _org()
    party_list = parties(p, item, org)
    status = tracking_json(p, status_of(p, item, org))
    subject = _related_subject(party_list, status["regarding"])
    return {"user": user_json(p), "parties": party_list, "tracking": status,
            "related": related(p, *subject) if subject else _empty_related(),
            "can": capabilities(p), "org": org_json(org)}


# -- search ------------------------------------------------------------------------------------

def _search_groups(p: Principal, kind: str) -> list[list]:
    """Columns searched, grouped by rank: name, email, number, anything else (readable
    fields only, so search never reveals a hidden field)."""
    rt = RECORD_TYPES[kind]
    access = p.fields(kind)
    readable = [n for n in rt.search_fields if access.can_read(n)]
    name = [getattr(rt.model, rt.title_field)]
    email = [getattr(rt.model, n) for n in readable if n in rt.email_fields]
    number = [getattr(rt.model, n) for n in readable if n == rt.number_field]
    rest = [getattr(rt.model, n) for n in readable
            if n != rt.title_field and n not in rt.email_fields and n != rt.number_field]
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


def _detail(p: Principal, kind: str, row, titles) -> str:
    """What tells same-named records apart: email, account, company, city, number, owner."""
    access = p.fields(kind)

    def read(name):
        return getattr(row, name, None) if access.can_read(name) else None

    parts: list[str | None] = []
    if kind == "contact":
        parts = [read("email1"), titles.get(("account", read("parent_account_id"))), read("city")]
    elif kind == "account":
        parts = [read("email1"), read("city"), read("account_number")]
    elif kind == "lead":
        parts = [read("company_name"), read("email1")]
    elif kind in ("opportunity", "case"):
        parts = [read("ticket_number") if kind == "case" else None,
                 titles.get(("account", read("customer_account_id"))) or
                 titles.get(("contact", read("customer_contact_id")))]
    owner = row.owner_name
    parts.append(f"Owner: {owner}" if owner else None)
    return " · ".join(x for x in parts if x)


def search(p: Principal, q: str, types: Iterable[str] = SEARCH_TYPES, limit: int = 20) -> list[dict]:
    """Records the user may read matching ``q``, ranked exact > prefix > contains and name >
    email > number, read-scoped in SQL (one query per type, one per referenced type)."""
    q = q.strip()
    if not q:
        raise Invalid("Type something to search for.", {"q": "Required."})
    found = []
    for kind in types:
        if p.depth(kind, "read") == Depth.NONE:
            continue
        rt = RECORD_TYPES[kind]
        rank = _rank(_search_groups(p, kind), q).label("rank")
        title = getattr(rt.model, rt.title_field)
        rows = db.session.execute(
            select(rt.model, rank)
            .where(authz.scope(p, rt.model, "read"), rt.model.is_active.is_(True), rank < 99)
            .options(selectinload(rt.model.owner_team))
            .order_by(rank, title, rt.model.id).limit(limit)).unique().all()
        found += [(r, kind, row) for row, r in rows]
    found.sort(key=lambda x: (x[0], SEARCH_TYPES.index(x[1]), getattr(x[2], RECORD_TYPES[x[1]].title_field).lower()))
    found = found[:limit]
    wanted: dict[str, set[int]] = {"account": set(), "contact": set()}
    for _, kind, row in found:
        for column, ref in (("parent_account_id", "account"), ("customer_account_id", "account"),
                            ("customer_contact_id", "contact")):
            if getattr(row, column, None) and p.fields(kind).can_read(column):
                wanted[ref].add(getattr(row, column))
    titles = _titles(p, wanted)
    return [{"type": kind, "id": row.id, "name": getattr(row, RECORD_TYPES[kind].title_field),
             "detail": _detail(p, kind, row, titles), "url": record_url(kind, row.id)}
            for _, kind, row in found]


# -- quick create ------------------------------------------------------------------------------

def quick_create(p: Principal, kind: str, fields: dict[str, Any],
                 set_regarding_for: str | None = None) -> dict[str, Any]:
    """Create a contact, lead, opportunity or case from the pane (the record services
    validate and check the create privilege); optionally make the item regarding it."""
    if kind not in QUICK_CREATE_TYPES:
        raise NotFound("Records of this type cannot be created from the add-in.")
    rt = RECORD_TYPES[kind]
    if p.depth(kind, "create") == Depth.NONE:
        raise Forbidden(f"You may not create {rt.plural.lower()}.")
    record = records.create(p, rt, fields)
    out: dict[str, Any] = {"record": {"type": kind, "id": record.id,
                                      "name": getattr(record, rt.title_field),
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
            raise Invalid("Some fields are not valid.", {"fields.phone_number": "Tasks have no phone number."})
        activity = acts.create_task(p, regarding, subject=fields.get("subject") or "",
                                    description=fields.get("description"),
                                    due=fields.get("scheduled_end"))
    elif kind == "phone_call":
        activity = acts.create_phone_call(p, regarding, subject=fields.get("subject") or "",
                                          description=fields.get("description"),
                                          due=fields.get("scheduled_end"),
                                          phone_number=fields.get("phone_number"))
    else:
        raise NotFound("Activities of this type cannot be created from the add-in.")
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
    request is recorded for the pane after sending or for server-side sync."""
    authz.require_named(p, "track_email")
    org = _org()
    if item.type == "appointment":
        if not item.identity:
            raise Invalid("Some fields are not valid.", {"item.item_id": "The meeting's id is needed."})
        if item.mode == "compose":
            return mark_pending(p, item, regarding)
        appt, _ = tracking.track_appointment(p, appointment_content(item), regarding=regarding)
        return {"tracking": tracking_json(p, tracking.TrackingStatus("tracked", appt, appt.regarding_ref))}
    if item.mode == "compose" or not item.has_content:
        reason = None if item.mode == "compose" else (
            "The add-in could not read this email's content; it is tracked when server-side "
            "synchronization sees it.")
        return mark_pending(p, item, regarding, reason=reason)
    content = email_content(item, org)
    email, _ = tracking.track_email(p, content, regarding=regarding)
    return {"tracking": tracking_json(p, tracking.tracking_status(p, email.message_id))}


def mark_pending(p: Principal, item: Item, regarding: tuple[str, int] | None, *,
                 reason: str | None = None) -> dict[str, Any]:
    """Compose: "track this when it is sent" (a tracking token for the subject when the org
    uses them). The request is found again by the item's id or by that token."""
    org = _org()
    identity = item.identity
    existing = None
    if not identity and org.use_tracking_token:
        existing = tracking.own_request(p, token=find_token(item.subject, org.tracking_token_prefix))
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
                                        reason=reason)
    status = tracking.TrackingStatus("pending", None, req.regarding_ref, req.reason)
    return {"tracking": tracking_json(p, status), "tracking_token": req.tracking_token}


def _tracked_activity(p: Principal, identity: str):
    status = tracking.tracking_status(p, identity, item_type="email")
    if status.activity is None:
        status = tracking.tracking_status(p, identity, item_type="appointment")
    return status.activity, tracking.own_request(p, identity=identity)


def set_regarding(p: Principal, identity: str, regarding: tuple[str, int] | None, *,
                  missing_ok: bool = False) -> dict[str, Any] | None:
    """Change what a tracked item (or a pending request) is regarding."""
    activity, req = _tracked_activity(p, identity)
    if activity is not None:
        tracking.set_regarding(p, activity, regarding)
        status = tracking.TrackingStatus("tracked", activity, activity.regarding_ref)
    elif req is not None and req.status in ("pending", "failed"):
        req = tracking.request_tracking(p, req.internet_message_id, subject=req.subject,
                                        regarding=regarding, conversation_id=req.conversation_id,
                                        item_type=req.item_type, reason=req.reason)
        status = tracking.TrackingStatus(req.status, None, req.regarding_ref, req.reason)
    elif missing_ok:
        return tracking_json(p, tracking.TrackingStatus("not_tracked"))
    else:
        raise NotFound("This item is not tracked.")
    return tracking_json(p, status)


def untrack(p: Principal, identity: str, delete_copy: bool) -> dict[str, Any]:
    """Untrack: the CRM copy is deleted only when asked and the user owns it (and holds
    delete); otherwise only the user's link to it is removed and the record stays."""
    is_meeting = tracking.find_tracked(p, identity, "appointment") is not None
    deleted = tracking.untrack(p, identity, delete_copy=delete_copy,
                               item_type="appointment" if is_meeting else "email")
    return {"tracking": tracking_json(p, tracking.TrackingStatus("not_tracked")), "deleted": deleted}


# -- pane tokens -------------------------------------------------------------------------------

def issue_pane_token(user: User) -> tuple[str, datetime]:
    """A short-lived (8 hours), revocable pane token for the sign-in dialog to hand to the
    pane: ``(secret, expires_on)``. The secret is never stored; the caller commits. Forbidden
    when the user may not use the add-in."""
    p = authz.principal(user)
    if not user.is_active:
        raise Forbidden("This account is disabled.")
    authz.require_named(p, "use_outlook_addin")
    # The user's old pane tokens that expired more than a day ago are of no further use.
    db.session.execute(ApiToken.__table__.delete().where(
        ApiToken.user_id == user.id, ApiToken.kind == "pane",
        ApiToken.expires_on < utcnow() - timedelta(days=1)))
    row, secret = tokens.issue(user, "Outlook add-in", days=PANE_TOKEN_HOURS / 24, kind="pane")
    return secret, row.expires_on


def revoke_pane_token(row: ApiToken) -> None:
    if row.kind == "pane":
        tokens.revoke(row)
        db.session.flush()
