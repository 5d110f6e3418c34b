"""The add-in's context call and what it is made of: everything the task pane shows for an
email or meeting in one round trip — the parties resolved to CRM records with their cards,
the item's tracking status and regarding, related data (open opportunities and cases, recent
activities) for the first external person or the regarding record, what the user may do, and
the language the pane speaks when Outlook's own is not one the product does. A constant number of queries however many recipients the item has.

Privileges: every record shown is read-scoped in SQL (a record the user may not read is not
shown: its address appears unresolved, as ``records.visible_matches`` states); cards and lists
obey field security (a hidden field is null).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import String, bindparam, case, cast, func, literal, null, select, union_all
from sqlalchemy.orm import aliased

from server.addin.links import activity_url, iso, money, record_titles, record_url, ref_json
from server.addin.payloads import Item
from server.crm.activities import Activity
from server.crm.models import Account, Case, Contact, Lead, Opportunity, Organization, Queue
from server.crm.registry import RECORD_TYPES
from server.crm.services import titles
from server.crm.services import timeline as timelines
from server.crm.services import tracked
from server.crm.services.resolution import Match, normalized, resolve
from server.db import cached_statement, in_values, select_rows
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_, language_of
from server.mailkeys import find_token
from server.security import authz, delegates, stamp
from server.security.authz import Principal
from server.security.models import Team, User
from server.security.privileges import Depth

CARD_MODELS = {"user": User, "contact": Contact, "account": Account, "lead": Lead, "queue": Queue}
EXTERNAL = ("contact", "account", "lead")  # people and organizations outside the company
RELATED_TYPES = ("account", "contact", "lead", "opportunity", "case")
OPEN_CASE_STATUSES = ("in_progress", "on_hold", "waiting")
RELATED_LIMIT = 10
RECENT_LIMIT = 5


# -- organization settings the pane reads ----------------------------------------------------

ORG_SETTINGS = ("resolve_inactive_records", "unresolve_ambiguous_addresses", "attachment_max_bytes",
                "use_tracking_token", "tracking_token_prefix", "default_language")


def _org_settings():
    """The organization's settings the context call reads (a row, not an entity), as this
    process kept them for the request's security stamp (``server.security.stamp``)."""
    return stamp.kept("pane org", (1,), _load_org_settings)[1]


def _load_org_settings(_keys) -> dict:
    query = cached_statement(("org",), lambda: select(*(getattr(Organization, c) for c in ORG_SETTINGS))
                             .where(Organization.id == 1), prepared=True)
    return {1: select_rows(query).one()}


# -- who the user is and what they may do ------------------------------------------------------

def user_json(p: Principal) -> dict[str, Any]:
    return {"id": p.user.id, "name": p.user.full_name, "email": p.user.email}


def pane_language(p: Principal, org) -> str:
    """The language for a pane whose Outlook speaks one the product does not: the user's own
    setting, else the organization's default, else English."""
    return language_of(p.user.language) or language_of(org.default_language) or "en"


def _may_create(p: Principal, model) -> bool:
    return authz.can_create(p, model, p.business_unit_id, p.user_id)


def capabilities(p: Principal) -> dict[str, bool]:
    can_activity = _may_create(p, Activity)
    return {"track": p.has("track_email") and can_activity,
            "create_account": _may_create(p, Account),
            "create_contact": _may_create(p, Contact),
            "create_lead": _may_create(p, Lead),
            "create_opportunity": _may_create(p, Opportunity),
            "create_case": _may_create(p, Case),
            "create_task": can_activity,
            "create_phone_call": can_activity}


def org_json(org) -> dict[str, Any]:
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


# What a card shows, per record type: the column behind each slot of the card (missing: null).
CARD_SLOTS = ("job_title", "company_name", "email1", "email2", "email3", "phone", "mobile_phone",
              "parent_account_id")
EMAIL_SLOTS = ("email1", "email2", "email3")
CARD_COLUMNS = {
    "user": {"job_title": "job_title", "email1": "email", "phone": "phone"},
    "contact": {s: s for s in CARD_SLOTS if s != "company_name"},
    "account": {s: s for s in ("email1", "email2", "email3", "phone", "parent_account_id")},
    "lead": {s: s for s in ("job_title", "company_name", "email1", "email2", "email3", "phone")},
    "queue": {"email1": "email"},
}
OwnerUser = aliased(User, name="owner_user")
ParentAccount = aliased(Account, name="parent_account")




# Names of related rows are scalar subqueries, not joins: PostgreSQL plans the card query
# in half the time (bench/README.md).

def _account_name(p: Principal, column):
    """The name of the account ``column`` names if the user may read it, else null."""
    return (select(ParentAccount.name)
            .where(ParentAccount.id == column, authz.scope(p, ParentAccount, "read"))
            .scalar_subquery())


def _owner_name(model):
    """The owning user's or team's name."""
    return func.coalesce(
        select(OwnerUser.full_name).where(OwnerUser.id == model.owner_user_id).scalar_subquery(),
        select(Team.name).where(Team.id == model.owner_team_id).scalar_subquery())


def _card_select(p: Principal, kind: str):
    """The card columns of the matched records of one type (ids: ``<kind>_ids``), whether the
    user may read each, the owner's name and the readable parent account's name: only the
    columns shown."""
    model, columns = CARD_MODELS[kind], CARD_COLUMNS[kind]
    values = [(getattr(model, columns[s]) if s in columns else null()).label(s) for s in CARD_SLOTS]
    readable = case((authz.scope(p, model, "read"), True), else_=False)
    owned = kind != "user"
    parent_name = (_account_name(p, model.parent_account_id) if "parent_account_id" in columns
                   else null())
    return (select(literal(kind).label("kind"), model.id.label("id"),
                   titles.title_column(p, kind, model).label("name"),
                   (model.owner_user_id if owned else null()).label("owner_user_id"),
                   model.is_active.label("is_active"), readable.label("readable"), *values,
                   parent_name.label("parent_name"),
                   (_owner_name(model) if owned else null()).label("owner_name"))
            .where(in_values(model.id, f"{kind}_ids")))


def _cards_select(p: Principal, kinds: tuple[str, ...]):
    branches = [_card_select(p, kind) for kind in kinds]
    return branches[0] if len(branches) == 1 else union_all(*branches)


class CardLoader:
    """Loads resolution's matches with their card columns in one statement (a UNION ALL of
    one branch per record type) and keeps the rows of the records the user may read."""

    def __init__(self, p: Principal):
        self.p = p
        self.rows: dict[tuple[str, int], Any] = {}

    def __call__(self, by_kind: dict[str, set[int]]) -> dict[str, dict[int, Match]]:
        kinds = tuple(sorted(by_kind))
        key = ("cards", kinds, self.p.scope_key, tuple(titles.title_parts(self.p, k) for k in kinds))
        query = cached_statement(key, lambda: _cards_select(self.p, kinds), prepared=True)
        out: dict[str, dict[int, Match]] = {kind: {} for kind in by_kind}
        for row in select_rows(query, {f"{k}_ids": list(ids) for k, ids in by_kind.items()}).all():
            out[row.kind][row.id] = Match(row.kind, row.id, row.name,
                                          row.owner_user_id if row.kind != "user" else None,
                                          bool(row.is_active))
            if row.readable:
                self.rows[(row.kind, row.id)] = row
        return out

    @property
    def titles(self) -> dict[tuple[str, int], str]:
        return {key: row.name for key, row in self.rows.items()}

    def subject(self, kind: str, record_id: int) -> Subject | None:
        """The related-data subject from its card row, when it has one."""
        row = self.rows.get((kind, record_id))
        if row is None or kind not in RELATED_TYPES:
            return None
        return _subject_from(self.p, kind, record_id, row.name, row.parent_account_id,
                             row.parent_name)


def _card(p: Principal, row) -> dict[str, Any]:
    """A card from its row: hidden fields (field security) are null."""
    kind = row.kind
    if kind == "user":
        return {"job_title": row.job_title, "account": None, "company": None,
                "email": row.email1, "phone": row.phone, "owner": None}
    access, columns = p.fields(kind), CARD_COLUMNS[kind]

    def read(slot: str):
        column = columns.get(slot)
        return getattr(row, slot) if column and access.can_read(column) else None

    account = None
    parent_id = read("parent_account_id")
    if parent_id and row.parent_name is not None:
        account = {"id": parent_id, "name": row.parent_name, "url": record_url("account", parent_id)}
    return {"job_title": read("job_title"), "account": account, "company": read("company_name"),
            "email": next((v for v in (read(e) for e in EMAIL_SLOTS) if v), None),
            "phone": read("phone") or read("mobile_phone"), "owner": row.owner_name or None}


def _carries(p: Principal, row, address: str) -> bool:
    """Whether ``address`` is in a field of the matched record the user may read: resolution
    never reveals a hidden address (``records.visible_matches`` states the rule)."""
    if row.kind == "user":
        return True
    access, columns = p.fields(row.kind), CARD_COLUMNS[row.kind]
    return any(getattr(row, slot) and normalized(getattr(row, slot)) == normalized(address)
               for slot in EMAIL_SLOTS if slot in columns and access.can_read(columns[slot]))


def _match_json(p: Principal, row) -> dict[str, Any]:
    return {"type": row.kind, "id": row.id, "name": row.name,
            "url": record_url(row.kind, row.id) if row.kind != "user" else None,
            "card": _card(p, row)}


def parties(p: Principal, item: Item, org,
            loader: CardLoader | None = None) -> list[dict[str, Any]]:
    """Everyone on the item with the records their address resolves to (best first), only
    those the user may read; the user themself is ``self``. The card rows stay in ``loader``."""
    loader = loader or CardLoader(p)
    own = {normalized(p.user.email), normalized(item.user_address)} - {None}
    roles = _roles(item)
    addresses = [person.address for _, person in roles
                 if person.address and normalized(person.address) not in own]
    matches = resolve(list(dict.fromkeys(addresses)), user_id=p.user_id, org=org,
                      load=loader) if addresses else {}
    cards = {key: _match_json(p, row) for key, row in loader.rows.items()}
    out = []
    for role, person in roles:
        entry = {"role": role, "name": person.name, "address": person.address}
        if person.address and normalized(person.address) in own:
            entry.update(status="self", matches=[])
        else:
            found = [cards[(m.record_type, m.record_id)] for m in matches.get(person.address, ())
                     if (m.record_type, m.record_id) in cards
                     and _carries(p, loader.rows[(m.record_type, m.record_id)], person.address)]
            entry.update(status="resolved" if found else "unresolved", matches=found)
        out.append(entry)
    return out


# -- related data ------------------------------------------------------------------------------

def _empty_related() -> dict[str, Any]:
    return {"for": None, "parent_account": None, "open_opportunities": [], "open_cases": [],
            "recent_activities": []}


def _readable(p: Principal, kind: str, column: str) -> bool:
    return p.depth(kind, "read") > Depth.NONE and p.fields(kind).can_read(column)


def _customer_column(p: Principal, list_kind: str, about: tuple[str, int] | None) -> str | None:
    """The column of ``list_kind`` (opportunity, case) naming the customer ``about``, if the
    user may read that link."""
    column = {"account": "customer_account_id", "contact": "customer_contact_id"}.get(
        about[0] if about else None)
    return column if column and _readable(p, list_kind, column) else None


@dataclass(frozen=True)
class Subject:
    """The record related data is shown for, as far as the user may read it: its account
    (parent, or an opportunity's or case's customer account) and the customer whose
    opportunities and cases are listed."""
    kind: str
    id: int
    name: str
    parent_id: int | None = None
    parent_name: str | None = None
    about: tuple[str, int] | None = None


def _subject_from(p: Principal, kind: str, record_id: int, name: str, parent_id, parent_name,
                  customer_contact_id=None) -> Subject:
    """Field security on the links (a hidden link is not followed)."""
    access = p.fields(kind)
    about: tuple[str, int] | None = (kind, record_id)
    if kind in ("contact", "account"):
        parent_id = parent_id if access.can_read("parent_account_id") else None
    elif kind in ("opportunity", "case"):
        about = None
        if parent_id and access.can_read("customer_account_id"):
            about = ("account", parent_id)
        elif customer_contact_id and access.can_read("customer_contact_id"):
            about, parent_id = ("contact", customer_contact_id), None
        else:
            parent_id = None
    else:
        parent_id = None
    return Subject(kind, record_id, name, parent_id, parent_name if parent_id else None, about)


def _subject(p: Principal, kind: str, record_id: int) -> Subject:
    """One statement: the record if the user may read it (NotFound otherwise), its title and
    its account's id, and that account's name if the user may read it."""
    query = cached_statement(("subject", kind, p.scope_key, titles.title_parts(p, kind)),
                       lambda: _subject_select(p, kind))
    row = select_rows(query, {"record_id": record_id}).first()
    if row is None:
        raise NotFound()
    return _subject_from(p, kind, row[0], row[1], row[2], row[4], row[3])


def _subject_select(p: Principal, kind: str):
    model = RECORD_TYPES[kind].model
    account = (model.parent_account_id if kind in ("contact", "account")
               else model.customer_account_id if kind in ("opportunity", "case") else null())
    contact = model.customer_contact_id if kind in ("opportunity", "case") else null()
    return (select(model.id, titles.title_column(p, kind), account.label("account"),
                   contact.label("contact"), _account_name(p, account) if kind != "lead" else null())
            .where(model.id == bindparam("record_id"), authz.scope(p, model, "read")))


def related(p: Principal, kind: str, record_id: int, *, known: Subject | None = None) -> dict[str, Any]:
    """What the pane shows about one record: its account, open opportunities and cases of it
    (or of its customer), and its latest activities (``known``: the record as already loaded
    for a card)."""
    if kind not in RELATED_TYPES:
        raise Invalid(N_("Related data is shown for accounts, contacts, leads, opportunities "
                         "and cases."), {"type": N_("Unsupported record type.")})
    subject = known or _subject(p, kind, record_id)
    out = _empty_related()
    out["for"] = {"type": kind, "id": subject.id, "name": subject.name,
                  "url": record_url(kind, subject.id)}
    if subject.parent_name is not None:
        out["parent_account"] = {"type": "account", "id": subject.parent_id,
                                 "name": subject.parent_name,
                                 "url": record_url("account", subject.parent_id)}
    out.update(_lists(p, subject))
    return out


LIST_COLUMNS = ("list", "id", "title", "value", "code", "status", "at")


def _list_branch(name: str, *columns):
    """A SELECT of one list's columns, labelled as in ``LIST_COLUMNS`` (the nulls typed:
    PostgreSQL takes an untyped null out of a subquery as text)."""
    nulls = {"value": Opportunity.estimated_value.type, "code": String(), "status": String()}
    return select(*(cast(null(), nulls[label]).label(label) if column is None else column.label(label)
                    for label, column in zip(LIST_COLUMNS, (literal(name), *columns))))


def _lists_select(p: Principal, subject_kind: str, opportunities: str | None, cases: str | None,
                  activities: bool):
    """One branch per list the user may see (bind parameters: the subject's ``subject_id``,
    its customer's ``customer_id``). Branches are subqueries because SQLite allows ORDER
    BY/LIMIT only there."""
    subject_id, customer_id = bindparam("subject_id"), bindparam("customer_id")
    branches = []
    if opportunities:
        query = (_list_branch("opportunity", Opportunity.id, Opportunity.name,
                              Opportunity.estimated_value, None, Opportunity.status,
                              Opportunity.modified_on)
                 .where(getattr(Opportunity, opportunities) == customer_id,
                        Opportunity.status == "open", Opportunity.is_active.is_(True),
                        authz.scope(p, Opportunity, "read"))
                 .order_by(Opportunity.modified_on.desc(), Opportunity.id.desc()).limit(RELATED_LIMIT))
        if subject_kind == "opportunity":
            query = query.where(Opportunity.id != subject_id)
        branches.append(query)
    if cases:
        query = (_list_branch("case", Case.id, Case.title, None, Case.ticket_number, Case.status,
                              Case.modified_on)
                 .where(getattr(Case, cases) == customer_id, Case.status.in_(OPEN_CASE_STATUSES),
                        Case.is_active.is_(True), authz.scope(p, Case, "read"))
                 .order_by(Case.modified_on.desc(), Case.id.desc()).limit(RELATED_LIMIT))
        if subject_kind == "case":
            query = query.where(Case.id != subject_id)
        branches.append(query)
    if activities:
        ids = timelines.page_ids(p, subject_kind, subject_id, limit=RECENT_LIMIT)
        branches.append(_list_branch("activity", Activity.id, Activity.subject, None,
                                     Activity.activity_type, None, Activity.occurred_on)
                        .where(Activity.id.in_(ids)))
    branches = [select(*b.subquery().c) for b in branches]
    return branches[0] if len(branches) == 1 else union_all(*branches)


def _lists(p: Principal, subject: Subject) -> dict[str, list[dict]]:
    """Open opportunities and cases of the subject's customer and its last activities, in one
    statement, with field security."""
    shape = (subject.kind, _customer_column(p, "opportunity", subject.about),
             _customer_column(p, "case", subject.about), p.depth("activity", "read") > Depth.NONE)
    rows: dict[str, list] = {"opportunity": [], "case": [], "activity": []}
    if any(shape[1:]):
        query = cached_statement(("lists", *shape, p.scope_key), lambda: _lists_select(p, *shape))
        params = {"subject_id": subject.id, "customer_id": subject.about[1] if subject.about else None}
        for row in select_rows(query, params).all():
            rows[row[0]].append(row)
    for found in rows.values():  # newest first, as each branch is ordered
        found.sort(key=lambda r: (r[6], r[1]), reverse=True)
    opp, case_, act = p.fields("opportunity"), p.fields("case"), p.fields("activity")
    return {
        "open_opportunities": [
            {"id": i, "name": title, "url": record_url("opportunity", i),
             "estimated_value": money(value) if opp.can_read("estimated_value") else None,
             "status": status if opp.can_read("status") else None}
            for _, i, title, value, _, status, _ in rows["opportunity"]],
        "open_cases": [
            {"id": i, "title": title, "url": record_url("case", i),
             "ticket_number": code if case_.can_read("ticket_number") else None,
             "status": status if case_.can_read("status") else None}
            for _, i, title, _, code, status, _ in rows["case"]],
        "recent_activities": [
            {"id": i, "type": code, "subject": title if act.can_read("subject") else None,
             "occurred_on": iso(at), "url": activity_url(i)}
            for _, i, title, _, code, _, at in rows["activity"]],
    }


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

def status_of(p: Principal, item: Item, org) -> tracked.TrackingStatus:
    """Whether the item is tracked (and what it is regarding) as this user sees it."""
    token = find_token(item.subject, org.tracking_token_prefix) if org.use_tracking_token else None
    return tracked.tracking_status(p, item.identity, item_type=item.type if item.type == "appointment" else "email",
                                   token=token)


def tracking_json(p: Principal, status: tracked.TrackingStatus,
                  known: dict[tuple[str, int], str] | None = None) -> dict[str, Any]:
    """``known``: titles of records the user may read, already loaded (the cards)."""
    ref, regarding, activity_id = None, status.regarding, status.activity_id
    if regarding:
        kind, ident = regarding
        ref = ref_json(kind, ident, known if known and regarding in known else record_titles(p, {kind: {ident}}))
    return {"status": status.status, "activity_id": activity_id, "regarding": ref,
            "reason": status.reason, "url": activity_url(activity_id) if activity_id else None,
            "copy_url": activity_url(status.copy_id) if status.copy_id else None}


# -- the context call --------------------------------------------------------------------------

def shared_mailbox(p: Principal, item: Item) -> tuple[Principal, dict[str, Any] | None]:
    """For an item of someone else's mailbox: whose tracking status the pane shows (the
    owner's, when they allowed the user to track for them) and what the pane says about it."""
    try:
        owner = delegates.acting_for(p.user, item.mailbox_owner)
    except Forbidden as exc:
        return p, {"owner": item.mailbox_owner, "name": None, "allowed": False, "message": exc.message}
    if owner is None:
        return p, None
    return authz.principal(owner), {"owner": owner.email, "name": owner.full_name, "allowed": True,
                                    "message": None}


def context(p: Principal, item: Item) -> dict[str, Any]:
    """Everything the pane shows for one item, in one call."""
    org = _org_settings()
    cards = CardLoader(p)
    party_list = parties(p, item, org, cards)
    tracker, shared = shared_mailbox(p, item)
    status = tracking_json(p, status_of(tracker, item, org), known=cards.titles)
    subject = _related_subject(party_list, status["regarding"])
    return {"user": user_json(p), "parties": party_list, "tracking": status,
            "related": related(p, *subject, known=cards.subject(*subject)) if subject
            else _empty_related(),
            "can": capabilities(p), "org": org_json(org), "shared_mailbox": shared,
            "language": pane_language(p, org)}
