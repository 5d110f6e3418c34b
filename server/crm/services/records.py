"""Record services: validate, create, update, deactivate, delete, assign and share any record
type, with privilege, depth and field security checked here for pages, API and add-in alike.
"""
from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import select

from server.crm.registry import RECORD_TYPES, RecordType, type_of
from server.crm.values import parse_value
from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound
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
        raise ValueError(f"No such {RECORD_TYPES[f.ref].label.lower()}.")
    if p is not None and not authz.can(p, "append_to", record):
        raise ValueError(f"You may not link records to this {RECORD_TYPES[f.ref].label.lower()}.")
    return value


def validate(rt: RecordType, data: dict[str, Any], p: Principal | None, *,
             creating: bool) -> dict[str, Any]:
    """Parse ``data`` against the record type's fields: unknown fields, wrong types and
    secured fields the user may not set are errors; nothing is written."""
    if not isinstance(data, dict):
        raise Invalid("Expected an object with field values.")
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    access = p.fields(rt.name) if p is not None else None
    for name, raw in data.items():
        f = rt.field(name)
        if f is None:
            errors[name] = "Unknown field."
            continue
        if access is not None and not (access.can_create(name) if creating else access.can_update(name)):
            errors[name] = "This field is secured; you may not set it."
            continue
        try:
            clean[name] = _clean_value(f, raw, p)
        except ValueError as exc:
            errors[name] = str(exc)
    if creating:
        for f in rt.fields:
            if f.required and f.name not in data and f.name not in errors:
                errors[f.name] = "This field is required."
    if errors:
        raise Invalid("Some fields are not valid.", errors)
    return clean


def _check_customer(rt: RecordType, values: dict[str, Any]) -> None:
    """Checked before anything is written, so a refused change leaves the record as it was."""
    if rt.name in ("opportunity", "case") and values.get("customer_account_id") \
            and values.get("customer_contact_id"):
        raise Invalid("A customer is an account or a contact, not both.",
                      {"customer_contact_id": "Choose an account or a contact, not both."})


def _require_append(p: Principal, rt: RecordType, record, links: list[str]) -> None:
    """Linking a record to another needs append on it (and append-to on the other, which
    ``validate`` checks), as in Dynamics."""
    if links and not authz.can(p, "append", record):
        raise Forbidden(f"You may not link this {rt.label.lower()} to other records.")


def _derive(rt: RecordType, record) -> None:
    if hasattr(record, "full_name") and hasattr(record, "last_name"):
        record.full_name = " ".join(x for x in (record.first_name, record.last_name) if x) or "(no name)"
    if rt.name == "case" and not record.ticket_number:
        record.ticket_number = f"CAS-{secrets.randbelow(10**5):05d}-{secrets.token_hex(3).upper()}"


def _set_owner(record, owner) -> None:
    if isinstance(owner, User):
        record.owner_user_id, record.owner_team_id = owner.id, None
    elif isinstance(owner, Team):
        record.owner_user_id, record.owner_team_id = None, owner.id
    else:
        raise Invalid("An owner is a user or a team.")
    record.owning_business_unit_id = owner.business_unit_id


def create(p: Principal, rt: RecordType, data: dict[str, Any], owner=None):
    owner = owner or p.user
    clean = validate(rt, data, p, creating=True)
    _check_customer(rt, clean)
    if isinstance(owner, User) and not owner.is_active:
        raise Invalid("Records cannot be owned by an inactive user.")
    if not authz.can_create(p, rt.model, owner.business_unit_id,
                            owner.id if isinstance(owner, User) else None,
                            owner_team_id=owner.id if isinstance(owner, Team) else None):
        raise Forbidden(f"You may not create {rt.plural.lower()}" +
                        (" for this owner." if owner is not p.user else "."))
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
        raise Invalid("Records cannot be assigned to an inactive user.")
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
        raise Invalid("Unknown access rights.", {"rights": ", ".join(sorted(unknown))})
    rights = set(rights) | {"read"} if rights else set()
    for right in rights:
        if not authz.can(p, right, record):
            raise Forbidden(f"You cannot share {right.replace('_', ' ')} access you do not have.")
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


def readable_addresses(p: Principal, kind: str, record) -> list[str]:
    """The email addresses of a user or record the principal may read: a secured address
    field they may not read is never suggested, prefilled or written to."""
    if kind == "user":
        return [record.email] if record.email else []
    access = p.fields(kind)
    return [value for f in RECORD_TYPES[kind].fields
            if f.kind == "email" and access.can_read(f.name)
            and (value := getattr(record, f.name))]


def get(p: Principal, type_name: str, record_id: int, privilege: str = "read"):
    rt = RECORD_TYPES.get(type_name)
    if rt is None:
        raise NotFound()
    return authz.get(p, rt.model, record_id, privilege)
