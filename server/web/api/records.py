"""REST endpoints for CRM records, one set per record type of the registry:
``/api/v1/{accounts,contacts,leads,opportunities,cases,queues}`` with list (filters, search,
sort, keyset paging), get, create, update, delete, assign, share, shares, activate,
deactivate and the activity timeline. Every call goes through ``server.crm.services.records``.
"""
from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from typing import Any

from flask import Blueprint, jsonify, url_for
from sqlalchemy import and_, func, or_, select
from sqlalchemy.exc import IntegrityError

from server.crm.services import records as record_services
from server.crm.services import search
from server.crm.services import timeline as timelines
from server.crm.registry import RECORD_TYPES, Field, RecordType
from server.db import db
from server.errors import Conflict
from server.i18n import N_, message_of
from server.security import authz
from server.crm.values import parse_value
from server.security.models import RecordShare
from server.web.api.common import (ID, MAX_ID, check_timeline_cursor, decode_cursor, encode_cursor,
                                   fits, invalid, json_body, load_principal, page_size,
                                   parse_bool_arg, parse_int, principal, query_args,
                                   reject_unknown)
from server.web.serialize import (ACTIVITY_TYPES, activities_json, record_json, records_json,
                                  shares_json)

LIST_PARAMS = {"q", "active", "sort", "page_size", "cursor", "count", "owner_user_id",
               "owner_team_id"}
# Audit and state fields: shown, never written through create or update.
READ_ONLY = {"id": N_("Read-only."), "type": N_("Read-only."), "owning_business_unit_id": N_("Read-only."),
             "created_on": N_("Read-only."), "modified_on": N_("Read-only."), "created_by": N_("Read-only."),
             "modified_by": N_("Read-only."), "full_name": N_("Set first_name and last_name instead."),
             "is_active": N_("Use POST .../activate or .../deactivate."),
             "owner": N_("Use POST .../assign.")}
AUDIT_SORTS = {"id": "int", "created_on": "datetime", "modified_on": "datetime"}
MAX_QUERY = 200


def collection(rt: RecordType) -> str:
    """The URL name of a record type: its plural (``opportunities``)."""
    return rt.plural.lower().replace(" ", "_")  # a data key: English


# -- listing -----------------------------------------------------------------------------------

def _filter_clause(rt: RecordType, f: Field, raw: str):
    column = getattr(rt.model, f.name)
    try:
        value = parse_value(dataclasses.replace(f, required=False), raw)
    except ValueError as exc:
        raise invalid({f.name: message_of(exc)}, N_("Some query parameters are not valid.")) from None
    if value is None:
        return column.is_(None)
    if f.kind in ("str", "email", "phone", "url", "text"):
        return func.lower(column) == value.lower()
    return column == value


def _search_clause(rt: RecordType, p, q: str):
    if len(q) > MAX_QUERY:
        raise invalid({"q": N_("At most %(count)s characters.", count=MAX_QUERY)})
    return search.search_condition(p, rt, q)


def _sortable(rt: RecordType, p) -> dict[str, str]:
    """Sort key → value kind, for the fields this reader may read whole (long text
    excluded; a name made from a hidden field is no sort key: its order would reveal it)."""
    out = dict(AUDIT_SORTS)
    out.update({f.name: ("int" if f.kind == "ref" else f.kind)
                for f in record_services.visible_fields(p, rt) if f.kind != "text"})
    if rt.title_field in record_services.readable_names(p, rt):
        out[rt.title_field] = "str"
    return out


def _cursor_value(kind: str, value: Any) -> Any:
    """A cursor's JSON value back to the column's Python type (ValueError when odd)."""
    if value is None:
        return None
    if kind in ("int",):
        if isinstance(value, bool) or not isinstance(value, int) or not fits(value):
            raise ValueError
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError
        return value
    if not isinstance(value, str):
        raise ValueError
    if kind == "decimal":
        return Decimal(value)
    if kind == "date":
        return date.fromisoformat(value)
    if kind == "datetime":
        return datetime.fromisoformat(value)
    return value


def _to_cursor(value: Any) -> Any:
    if isinstance(value, (datetime, date, Decimal)):
        return value.isoformat() if not isinstance(value, Decimal) else str(value)
    return value


def _keyset(column, id_column, desc: bool, value: Any, last_id: int):
    """Rows after (value, last_id) in the order: non-null values, then nulls; id breaks ties."""
    after_id = id_column < last_id if desc else id_column > last_id
    if value is None:
        return and_(column.is_(None), after_id)
    beyond = column < value if desc else column > value
    return or_(column.is_(None),
               and_(column.is_not(None), or_(beyond, and_(column == value, after_id))))


def list_records(rt: RecordType):
    p = principal()
    args = query_args(LIST_PARAMS | set(rt.field_names))
    model = rt.model
    access = p.fields(rt.name)
    query = select(model).where(authz.scope(p, model, "read"))
    for name in set(args) & set(rt.field_names):
        if not access.can_read(name):
            raise invalid({name: N_("This field is secured; you may not filter on it.")})
        query = query.where(_filter_clause(rt, rt.field(name), args[name]))
    for name in ("owner_user_id", "owner_team_id"):
        if name in args:
            query = query.where(getattr(model, name) == parse_int(args[name], name))
    active = args.get("active", "true").lower()
    if active not in ("true", "false", "all"):
        raise invalid({"active": N_("Must be true, false or all.")})
    if active != "all":
        query = query.where(model.is_active.is_(active == "true"))
    if args.get("q", "").strip():
        query = query.where(_search_clause(rt, p, args["q"]))

    sortable = _sortable(rt, p)
    # By name when the reader may read it (a secured first_name hides a contact's full_name),
    # else by id: a default that never refuses the request.
    sort = args.get("sort") or (rt.title_field if rt.title_field in sortable else "id")
    key, desc = sort.lstrip("-"), sort.startswith("-")
    if key not in sortable:
        raise invalid({"sort": N_("Sort by one of: %(choices)s (prefix - to reverse).",
                                  choices=", ".join(sorted(sortable)))})
    column = getattr(model, key)
    total = None
    if parse_bool_arg(args, "count"):
        total = db.session.scalar(select(func.count()).select_from(query.subquery()))
    if args.get("cursor"):
        payload = decode_cursor(args["cursor"])
        try:
            if len(payload) != 3 or payload[0] != sort or not isinstance(payload[2], int) \
                    or isinstance(payload[2], bool) or not fits(payload[2]):
                raise ValueError
            value = _cursor_value(sortable[key], payload[1])
        except (ValueError, TypeError, ArithmeticError):
            raise invalid({"cursor": N_("Not a valid cursor for this sort.")}) from None
        query = query.where(_keyset(column, model.id, desc, value, payload[2]))
    limit = page_size(args)
    order = [column.is_(None)] if key != "id" else []
    order += [column.desc(), model.id.desc()] if desc else [column.asc(), model.id.asc()]
    rows = list(db.session.scalars(query.order_by(*order).limit(limit + 1)).unique())
    more = len(rows) > limit
    rows = rows[:limit]
    body: dict[str, Any] = {"items": records_json(p, rt, rows), "next": None}
    if more:
        last = rows[-1]
        body["next"] = encode_cursor([sort, _to_cursor(getattr(last, key)), last.id])
    if total is not None:
        body["total"] = total
    return jsonify(body)


# -- one record --------------------------------------------------------------------------------

def _load(rt: RecordType, record_id: int):
    return record_services.get(principal(), rt.name, record_id)


def _unique_columns(rt: RecordType) -> list[str]:
    table = rt.model.__table__
    return [f.name for f in rt.fields if f.name in table.c and table.c[f.name].unique]


@contextmanager
def _conflicts(rt: RecordType, data: dict[str, Any]):
    """A unique value already in use (a case number, a queue name) becomes a 409."""
    try:
        yield
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        fields = {}
        for name in _unique_columns(rt):
            value = data.get(name)
            if isinstance(value, str) and db.session.scalar(
                    select(rt.model.id).where(getattr(rt.model, name) == value.strip())):
                fields[name] = N_("This “%(field)s” is already used.", field=rt.field(name).label)
        raise Conflict(N_("This conflicts with an existing record."), fields) from None


def _check_input(rt: RecordType, data: dict[str, Any], allow: set[str] = frozenset()) -> None:
    """Unknown and read-only names, empty values for columns that must have one, and ref ids
    no table can hold: all reported at once, before anything reaches the database."""
    errors = {k: READ_ONLY.get(k, N_("Unknown field.")) for k in data
              if k not in allow and (k in READ_ONLY or rt.field(k) is None)}
    columns = rt.model.__table__.c
    for f in rt.fields:
        value = data.get(f.name)
        if f.name in data and not f.required and f.name in columns \
                and not columns[f.name].nullable and (value is None or value == ""):
            errors[f.name] = N_("This field cannot be empty.")
        digits = value.strip().lstrip("-") if isinstance(value, str) else ""
        if f.kind == "ref" and digits.isascii() and digits.isdigit():
            value = int(value)
        if f.kind == "ref" and isinstance(value, int) and not isinstance(value, bool) \
                and not -MAX_ID <= value <= MAX_ID:
            errors[f.name] = N_("No such %(kind)s.", kind=RECORD_TYPES[f.ref].noun)
    if errors:
        raise invalid(errors)


def get_record(rt: RecordType, record_id: int):
    return jsonify(record_json(principal(), _load(rt, record_id)))


def create_record(rt: RecordType):
    p = principal()
    data = json_body()
    _check_input(rt, data, allow={"owner"})
    owner = load_principal(p, data.pop("owner"), "owner") if data.get("owner") is not None else None
    data.pop("owner", None)
    with _conflicts(rt, data):
        record = record_services.create(p, rt, data, owner=owner)
    response = jsonify(record_json(p, record))
    response.status_code = 201
    response.headers["Location"] = url_for(f"api.{rt.name}_get", record_id=record.id)
    return response


def update_record(rt: RecordType, record_id: int):
    p = principal()
    record = _load(rt, record_id)
    data = json_body()
    _check_input(rt, data)
    with _conflicts(rt, data):
        record_services.update(p, record, data)
    return jsonify(record_json(p, record))


def delete_record(rt: RecordType, record_id: int):
    record = _load(rt, record_id)
    record_services.delete(principal(), record)
    db.session.commit()
    return "", 204


def assign_record(rt: RecordType, record_id: int):
    p = principal()
    record = _load(rt, record_id)
    data = json_body()
    reject_unknown(data, {"owner"})
    if data.get("owner") is None:
        raise invalid({"owner": N_("This field is required.")})
    record_services.assign(p, record, load_principal(p, data["owner"], "owner"))
    db.session.commit()
    return jsonify(record_json(p, record))


def share_record(rt: RecordType, record_id: int):
    p = principal()
    record = _load(rt, record_id)
    data = json_body()
    reject_unknown(data, {"principal", "rights"})
    errors = {name: N_("This field is required.") for name in ("principal", "rights")
              if name not in data}
    rights = data.get("rights")
    if "rights" in data and (not isinstance(rights, list)
                             or not all(isinstance(r, str) for r in rights)):
        errors["rights"] = N_("A list of: %(choices)s.", choices=", ".join(record_services.SHARE_RIGHTS))
    if errors:
        raise invalid(errors)
    who = load_principal(p, data["principal"], "principal")
    row = record_services.share(p, record, who, set(rights))
    db.session.commit()
    if row is None:
        return "", 204
    return jsonify(shares_json(p, [row])[0])


def record_shares(rt: RecordType, record_id: int):
    """Who the record is shared with: for those who may share it, as on the record's page."""
    p = principal()
    record = record_services.get(p, rt.name, record_id, "share")
    query_args(set())
    rows = db.session.scalars(select(RecordShare).where(
        RecordShare.table_name == rt.name, RecordShare.record_id == record.id)
        .order_by(RecordShare.id))
    return jsonify({"items": shares_json(p, rows)})


def set_active(rt: RecordType, record_id: int, active: bool):
    p = principal()
    record = _load(rt, record_id)
    reject_unknown(json_body(optional=True), ())
    record_services.set_active(p, record, active)
    db.session.commit()
    return jsonify(record_json(p, record))


def record_timeline(rt: RecordType, record_id: int):
    p = principal()
    record = _load(rt, record_id)
    args = query_args({"cursor", "page_size", "type", "related"}, multi={"type"})
    cursor = args.get("cursor")
    if cursor:
        check_timeline_cursor(cursor)
    types = tuple(t for raw in args.get("type", []) for t in raw.split(",") if t)
    unknown = [t for t in types if t not in ACTIVITY_TYPES]
    if unknown:
        raise invalid({"type": N_("Activity types are: %(choices)s.", choices=", ".join(ACTIVITY_TYPES))})
    page = timelines.timeline(p, rt.name, record.id, cursor=cursor, limit=page_size(args),
                              types=types or None, related=parse_bool_arg(args, "related"))
    return jsonify({"items": activities_json(p, page.items), "next": page.next_cursor})


# -- routes ------------------------------------------------------------------------------------

def register(bp: Blueprint) -> None:
    """One set of routes per record type; endpoint names are ``api.<type>_<action>``."""
    for rt in RECORD_TYPES.values():
        base, one = f"/{collection(rt)}", f"/{collection(rt)}/<{ID}:record_id>"
        rules = [
            (base, "list", list_records, ["GET"]),
            (base, "create", create_record, ["POST"]),
            (one, "get", get_record, ["GET"]),
            (one, "update", update_record, ["PATCH"]),
            (one, "delete", delete_record, ["DELETE"]),
            (one + "/assign", "assign", assign_record, ["POST"]),
            (one + "/share", "share", share_record, ["POST"]),
            (one + "/shares", "shares", record_shares, ["GET"]),
            (one + "/activate", "activate", partial(set_active, active=True), ["POST"]),
            (one + "/deactivate", "deactivate", partial(set_active, active=False), ["POST"]),
            (one + "/timeline", "timeline", record_timeline, ["GET"]),
        ]
        for rule, action, view, methods in rules:
            bp.add_url_rule(rule, f"{rt.name}_{action}", partial(view, rt), methods=methods)

