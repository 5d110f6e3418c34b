"""Record services: validate, create, update, deactivate, delete, assign and share any record
type, with privilege, depth and field security checked here for pages, API and add-in alike.
"""
from __future__ import annotations

import secrets
from dataclasses import replace
from typing import Any

from sqlalchemy import literal, null, select, union_all

from server.crm.registry import (DERIVED, RECORD_TYPES, RecordType, choice_label, parts_of,
                                 type_of)
from server.crm.services.resolution import Match, normalized, resolve
from server.crm.services.titles import title_column
from server.crm.values import parse_value
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound
from server.i18n import N_, message_of
from server.security import authz
from server.security.authz import Principal
from server.security.models import RecordShare, Team, User

def _clean_value(f, raw: Any, p: Principal | None) -> Any:
    """One field's value parsed (``values.parse_value``); a reference must also exist, be
    readable and accept links from this user."""
    value = parse_value(f, raw)
    if f.kind != "ref" or value is None:
        return value
    target = RECORD_TYPES[f.ref].model
    record = db.session.get(target, value)
    if record is None or (p is not None and not authz.can(p, "read", record)):
        raise ValueError(N_("No such %(kind)s.", kind=RECORD_TYPES[f.ref].noun))
    if p is not None and not authz.can(p, "append_to", record):
        raise ValueError(N_("You may not link records to this %(kind)s.",
                            kind=RECORD_TYPES[f.ref].noun))
    return value


def validate(rt: RecordType, data: dict[str, Any], p: Principal | None, *,
             creating: bool) -> dict[str, Any]:
    """Parse ``data`` against the record type's fields: unknown fields, wrong types and
    secured fields the user may not set are errors; nothing is written."""
    if not isinstance(data, dict):
        raise Invalid(N_("Expected an object with field values."))
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    access = p.fields(rt.name) if p is not None else None
    for name, raw in data.items():
        f = rt.field(name)
        if f is None:
            errors[name] = N_("Unknown field.")
            continue
        if access is not None and not (access.can_create(name) if creating else access.can_update(name)):
            errors[name] = N_("This field is secured; you may not set it.")
            continue
        try:
            clean[name] = _clean_value(f, raw, p)
        except ValueError as exc:
            errors[name] = message_of(exc)
    if creating:
        for f in rt.fields:
            if f.required and f.name not in data and f.name not in errors:
                errors[f.name] = N_("This field is required.")
    if errors:
        raise Invalid(N_("Some fields are not valid."), errors)
    return clean


def _check_customer(rt: RecordType, values: dict[str, Any]) -> None:
    """Checked before anything is written, so a refused change leaves the record as it was."""
    if rt.name in ("opportunity", "case") and values.get("customer_account_id") \
            and values.get("customer_contact_id"):
        raise Invalid(N_("A customer is an account or a contact, not both."),
                      {"customer_contact_id": N_("Choose an account or a contact, not both.")})


def _require_append(p: Principal, rt: RecordType, record, links: list[str]) -> None:
    """Linking a record to another needs append on it (and append-to on the other, which
    ``validate`` checks), as in Dynamics."""
    if links and not authz.can(p, "append", record):
        raise Forbidden(N_("You may not link this %(kind)s to other records.", kind=rt.noun))


def _derive(rt: RecordType, record) -> None:
    if hasattr(record, "full_name") and hasattr(record, "last_name"):
        record.full_name = " ".join(x for x in (record.first_name, record.last_name) if x) or "(no name)"
    if rt.name == "case":
        if not record.ticket_number:
            record.ticket_number = new_case_number()
        # When it was resolved: a reply within a queue rule's window reopens it.
        if record.status == "resolved" and record.resolved_on is None:
            record.resolved_on = utcnow()
        elif record.status != "resolved":
            record.resolved_on = None


def new_case_number() -> str:
    """A case number as Dynamics writes them (``CAS-01234-1A2B3C``)."""
    return f"CAS-{secrets.randbelow(10**5):05d}-{secrets.token_hex(3).upper()}"


def _set_owner(record, owner) -> None:
    if isinstance(owner, User):
        record.owner_user_id, record.owner_team_id = owner.id, None
    elif isinstance(owner, Team):
        record.owner_user_id, record.owner_team_id = None, owner.id
    else:
        raise Invalid(N_("An owner is a user or a team."))
    record.owning_business_unit_id = owner.business_unit_id


def create(p: Principal, rt: RecordType, data: dict[str, Any], owner=None):
    owner = owner or p.user
    clean = validate(rt, data, p, creating=True)
    _check_customer(rt, clean)
    if isinstance(owner, User) and not owner.is_active:
        raise Invalid(N_("Records cannot be owned by an inactive user."))
    if not authz.can_create(p, rt.model, owner.business_unit_id,
                            owner.id if isinstance(owner, User) else None,
                            owner_team_id=owner.id if isinstance(owner, Team) else None):
        raise Forbidden(N_("You may not create %(records)s for this owner.", records=rt.nouns)
                        if owner is not p.user
                        else N_("You may not create %(records)s.", records=rt.nouns))
    record = rt.model(**clean)
    _set_owner(record, owner)
    _require_append(p, rt, record, [n for n, v in clean.items()
                                    if rt.field(n).kind == "ref" and v is not None])
    record.created_by_id = record.modified_by_id = p.user_id
    record.is_active = True
    _derive(rt, record)
    db.session.add(record)
    db.session.flush()
    return record


def update(p: Principal, record, data: dict[str, Any]):
    rt = type_of(record)
    authz.require(p, "write", record)
    clean = validate(rt, data, p, creating=False)
    _check_customer(rt, {**{n: getattr(record, n, None) for n in
                            ("customer_account_id", "customer_contact_id")}, **clean})
    _require_append(p, rt, record, [n for n, v in clean.items()
                                    if rt.field(n).kind == "ref" and v != getattr(record, n)])
    for name, value in clean.items():
        setattr(record, name, value)
    _derive(rt, record)
    record.modified_by_id = p.user_id
    record.modified_on = utcnow()
    db.session.flush()
    return record


def set_active(p: Principal, record, active: bool):
    authz.require(p, "write", record)
    record.is_active = active
    record.modified_by_id = p.user_id
    record.modified_on = utcnow()
    db.session.flush()
    return record


def delete(p: Principal, record) -> None:
    """Delete a record or an activity, and the shares that pointed at it."""
    authz.require(p, "delete", record)
    db.session.execute(RecordShare.__table__.delete().where(
        RecordShare.table_name == authz.table_of(record), RecordShare.record_id == record.id))
    db.session.delete(record)
    db.session.flush()


def assign(p: Principal, record, owner):
    """Give the record to another user or team (the assign privilege on it is needed, and
    the new owner must be active)."""
    authz.require(p, "assign", record)
    if isinstance(owner, User) and not owner.is_active:
        raise Invalid(N_("Records cannot be assigned to an inactive user."))
    _set_owner(record, owner)
    record.modified_by_id = p.user_id
    record.modified_on = utcnow()
    db.session.flush()
    return record


SHARE_RIGHTS = ("read", "write", "append", "append_to", "delete", "assign", "share")


def share(p: Principal, record, principal_obj, rights: set[str]) -> RecordShare | None:
    """Grant (or with empty ``rights`` revoke) access to one record. One may only share
    rights one holds, as in Dynamics; any right includes read (a record one cannot open
    cannot be written)."""
    authz.require(p, "share", record)
    unknown = set(rights) - set(SHARE_RIGHTS)
    if unknown:
        raise Invalid(N_("Unknown access rights."), {"rights": ", ".join(sorted(unknown))})
    rights = set(rights) | {"read"} if rights else set()
    for right in rights:
        if not authz.can(p, right, record):
            raise Forbidden(N_("You cannot share “%(right)s” access you do not have.",
                               right=choice_label(right)))
    table = authz.table_of(record)
    is_user = isinstance(principal_obj, User)
    row = db.session.scalar(select(RecordShare).where(
        RecordShare.table_name == table, RecordShare.record_id == record.id,
        (RecordShare.user_id if is_user else RecordShare.team_id) == principal_obj.id))
    if not rights:
        if row is not None:
            db.session.delete(row)
        db.session.flush()
        return None
    if row is None:
        row = RecordShare(table_name=table, record_id=record.id, granted_by_id=p.user_id,
                          **({"user_id": principal_obj.id} if is_user else {"team_id": principal_obj.id}))
        db.session.add(row)
    for right in SHARE_RIGHTS:
        setattr(row, authz.SHARE_FLAGS[right], right in rights)
    db.session.flush()
    return row


def visible_fields(p: Principal, rt: RecordType):
    """The record type's fields the principal may read (field security applied)."""
    access = p.fields(rt.name)
    return [f for f in rt.fields if access.can_read(f.name)]


def get(p: Principal, type_name: str, record_id: int, privilege: str = "read"):
    rt = RECORD_TYPES.get(type_name)
    if rt is None:
        raise NotFound()
    return authz.get(p, rt.model, record_id, privilege)


# -- what a principal may see of a record (field security on every path) ----------------------
#
# A secured field the reader may not read is never shown, and never through something made
# from it: a person's full name is made from first and last name, so a reader who may read
# only one of them sees only that one; searching or sorting by a hidden field (or a name made
# from it) would reveal its value bit by bit, so it is not offered. Pages, the API, the add-in,
# previews and defaults all go through these.

def readable_names(p: Principal, rt: RecordType) -> set[str]:
    """Names of the fields (and derived values) of ``rt`` whose value ``p`` may see whole:
    what may be shown, searched, filtered and sorted by."""
    access = p.fields(rt.name)
    names = {f.name for f in rt.fields if access.can_read(f.name)}
    names |= {d for d in DERIVED if parts_of(rt, d) != (d,) and set(parts_of(rt, d)) <= names}
    return names


def field_value(p: Principal, record, name: str) -> Any:
    """The value of field ``name`` of ``record`` as ``p`` may see it: None when it is secured
    and hidden; a derived value made of the parts ``p`` may read only (None when none)."""
    rt = type_of(record)
    access = p.fields(rt.name)
    parts = parts_of(rt, name)
    if parts == (name,):
        return getattr(record, name, None) if access.can_read(name) else None
    if all(access.can_read(n) for n in parts):
        return getattr(record, name, None)
    shown = [getattr(record, n) for n in parts if access.can_read(n) and getattr(record, n)]
    return " ".join(shown) or None


def title(p: Principal, record) -> str | None:
    """The record's title (name) as ``p`` may see it."""
    if isinstance(record, User):
        return record.full_name
    if isinstance(record, Team):
        return record.name
    return field_value(p, record, type_of(record).title_field)


def emails(p: Principal, record) -> list[str]:
    """The record's email addresses ``p`` may read, in field order."""
    if isinstance(record, User):
        return [record.email] if record.email else []
    rt = type_of(record)
    return [v for v in (field_value(p, record, n) for n in rt.email_fields) if v]


def search_columns(p: Principal, rt: RecordType, model=None) -> list:
    """The columns of ``rt``'s search fields ``p`` may search: a derived name only when
    every part is readable, else its readable parts (a hidden value is no search oracle)."""
    model = model or rt.model
    access = p.fields(rt.name)
    names: list[str] = []
    for name in rt.search_fields:
        parts = parts_of(rt, name)
        whole = all(access.can_read(n) for n in parts)
        names += [c for c in ((name,) if whole else parts)  # "full_name" itself is not secured
                  if access.can_read(c) and c not in names]
    return [getattr(model, n) for n in names]


# -- resolution as a principal sees it --------------------------------------------------------
#
# The rule (SECURITY.md, docs/api.md): an address resolves, for a reader, to the records they
# may read that carry it in a field they may read; they learn the record's type, id, title as
# they may see it (``title``) and whether it is active, nothing else. Any other record behind
# the address stays unseen: the address reads as unresolved (a party shows as its bare
# address). Pages, the API, the add-in and sync tracking (for the mailbox owner) follow it.

def visible_matches(p: Principal, found: dict[str, list[Match]]) -> dict[str, list[Match]]:
    """``resolve``'s answer as ``p`` may see it (the rule above), in one query: a branch per
    record type, each with the title and the email fields ``p`` may read."""
    by_kind: dict[str, set[int]] = {}
    for matches in found.values():
        for m in matches:
            by_kind.setdefault(m.record_type, set()).add(m.record_id)
    # The email fields ``p`` may read, for each kind whose email fields must carry the address.
    readable: dict[str, list] = {}
    for kind in by_kind:
        rt = RECORD_TYPES.get(kind)
        if rt is not None and rt.email_fields:
            access = p.fields(kind)
            readable[kind] = [getattr(rt.model, n) for n in rt.email_fields
                              if access.can_read(n)]
    width = max((len(columns) for columns in readable.values()), default=0)
    branches = []
    for kind, ids in by_kind.items():
        rt = RECORD_TYPES.get(kind)
        model = User if rt is None else rt.model
        emails = readable.get(kind, [])
        branches.append(select(
            literal(kind).label("kind"), model.id.label("id"),
            title_column(p, kind).label("name"),
            *(column.label(f"email{n}") for n, column in enumerate(
                emails + [null()] * (width - len(emails)))))
            .where(model.id.in_(ids), authz.scope(p, model, "read")))
    seen: dict[tuple[str, int], tuple[str | None, set[str] | None]] = {}
    if branches:
        for kind, record_id, name, *addresses in db.session.execute(
                branches[0] if len(branches) == 1 else union_all(*branches)):
            seen[(kind, record_id)] = (name, {normalized(a) for a in addresses if a}
                                       if kind in readable else None)
    out: dict[str, list[Match]] = {}
    for address, matches in found.items():
        out[address] = []
        for m in matches:
            name, addresses = seen.get((m.record_type, m.record_id), (None, set()))
            if addresses is None or normalized(address) in addresses:
                out[address].append(replace(m, name=name))
    return out


def resolve_for(p: Principal, addresses: list[str]) -> dict[str, list[Match]]:
    """``resolve`` for ``p`` (their own records first) as they may see it."""
    return visible_matches(p, resolve(addresses, user_id=p.user_id)) if addresses else {}
