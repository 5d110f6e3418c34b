"""Lists of records for pages: a record type's list (state filter, search, sort, page), the
choices of a form's link fields, the records pointing at a record, a record's shares, and the
titles of linked records, loaded once per page with one query per record type.

Every query is scoped by ``authz.scope`` in SQL and field security is applied: a column,
sort or search the reader may not read is not offered, and an unreadable linked record has no
title (pages show it as restricted).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from server.crm.registry import RECORD_TYPES, Field, RecordType
from server.crm.services.records import visible_fields
from server.crm.services.search import search_condition
from server.crm.services.titles import Refs, Titles, link_refs, title_column, titles
from server.db import db
from server.security import authz
from server.security.authz import Principal
from server.security.models import RecordShare
from server.security.privileges import Depth

STATES = ("active", "inactive", "all")
LOOKUP_LIMIT = 300
RELATED_LIMIT = 10
# What points at a record: record type -> (other type, its link column)
RELATED = {"account": (("contact", "parent_account_id"), ("opportunity", "customer_account_id"),
                       ("case", "customer_account_id")),
           "contact": (("opportunity", "customer_contact_id"), ("case", "customer_contact_id"))}

@dataclass
class RecordList:
    """One page of a record type's list, as the reader may see it."""
    rows: list
    columns: list[Field]  # besides the title
    titles: Titles
    sort_choices: list[tuple[str, str]]
    q: str
    state: str
    sort: str
    direction: str
    page: int
    pages: int
    total: int
    can_create: bool


def record_list(p: Principal, rt: RecordType, *, q: str = "", state: str = "active",
                sort: str = "", direction: str = "asc", page: int = 1,
                size: int = 25) -> RecordList:
    """A page of the records of ``rt`` that ``p`` may read. Unknown states and sorts fall
    back to the defaults (active records, by title)."""
    authz.require_table(p, rt.name, "read")
    model = rt.model
    columns = [f for f in visible_fields(p, rt) if f.list and f.name != rt.title_field]
    q = (q or "").strip()[:200]
    state = state if state in STATES else "active"
    sortable = {rt.title_field, "modified_on", *(f.name for f in columns if f.kind != "ref")}
    sort = sort if sort in sortable else rt.title_field
    direction = "desc" if direction == "desc" else "asc"
    page = max(1, page)
    conditions = [authz.scope(p, model, "read")]
    if state != "all":
        conditions.append(model.is_active.is_(state == "active"))
    if q:
        conditions.append(search_condition(p, rt, q))
    total = db.session.scalar(select(func.count()).select_from(model).where(*conditions))
    # The title sorts as the reader sees it: a hidden part of a name would show in the order.
    column = title_column(p, rt.name) if sort == rt.title_field else getattr(model, sort)
    order = (column.desc(), model.id.desc()) if direction == "desc" else (column.asc(), model.id)
    rows = db.session.scalars(
        select(model).where(*conditions).options(selectinload(model.owner_team))
        .order_by(*order).offset((page - 1) * size).limit(size)).all()
    sort_choices = ([(rt.title_field, "Name")]
                    + [(f.name, f.label) for f in columns if f.name in sortable]
                    + [("modified_on", "Modified")])
    return RecordList(list(rows), columns, titles(p, link_refs(rows, columns)), sort_choices,
                      q, state, sort, direction, page, max(1, -(-total // size)), total,
                      p.depth(rt.name, "create") > Depth.NONE)


class Related(NamedTuple):
    """Active records of one type that point at a record."""
    rt: RecordType
    column: str
    rows: list  # (id, title)
    more: bool
    can_create: bool  # the reader may create one linked to the record


def related(p: Principal, rt: RecordType, record) -> list[Related]:
    """Short lists of records that point at ``record`` (an account's contacts, opportunities
    and cases; a contact's opportunities and cases), read-scoped, one query each."""
    out = []
    for kind, column in RELATED.get(rt.name, ()):
        other = RECORD_TYPES[kind]
        if p.depth(kind, "read") == Depth.NONE or not p.fields(kind).can_read(column):
            continue
        rows = db.session.execute(
            select(other.model.id, title_column(p, other.name))
            .where(getattr(other.model, column) == record.id, other.model.is_active.is_(True),
                   authz.scope(p, other.model, "read"))
            .order_by(title_column(p, other.name)).limit(RELATED_LIMIT + 1)).all()
        out.append(Related(other, column, rows[:RELATED_LIMIT], len(rows) > RELATED_LIMIT,
                           p.depth(kind, "create") > Depth.NONE
                           and p.fields(kind).can_create(column)))
    return out


def shares(record) -> list[RecordShare]:
    """Who a record is shared with, users and teams loaded."""
    return list(db.session.scalars(
        select(RecordShare).where(RecordShare.table_name == authz.table_of(record),
                                  RecordShare.record_id == record.id)
        .options(selectinload(RecordShare.user), selectinload(RecordShare.team))
        .order_by(RecordShare.id)))


@dataclass
class FormLinks:
    choices: dict[str, tuple[list, bool]]  # link field -> ((id, title) rows, more than shown)
    titles: Titles  # of the records the form's link fields hold


def form_links(p: Principal, rt: RecordType, editable: list[Field], chosen: Refs,
               record=None) -> FormLinks:
    """What a record form needs for its link fields: for each ``editable`` one, active
    records ``p`` may read and link to (never the record itself, so an account cannot become
    its own parent); and the titles of the ``chosen`` ones."""
    choices = {}
    for f in editable:
        if f.kind != "ref":
            continue
        other = RECORD_TYPES[f.ref]
        conditions = [other.model.is_active.is_(True), authz.scope(p, other.model, "read"),
                      authz.scope(p, other.model, "append_to")]
        if record is not None and other is rt:
            conditions.append(other.model.id != record.id)
        rows = db.session.execute(
            select(other.model.id, title_column(p, other.name)).where(*conditions)
            .order_by(title_column(p, other.name)).limit(LOOKUP_LIMIT + 1)).all()
        choices[f.name] = (rows[:LOOKUP_LIMIT], len(rows) > LOOKUP_LIMIT)
    return FormLinks(choices, titles(p, chosen))
