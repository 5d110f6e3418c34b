"""Finding records: what a search matches (only fields the reader may read, so a search
never reveals a secured field; pages and the REST API share it), the home page (search
across record types, the reader's open activities, what they changed last) and the records
an activity may be made regarding. Every query is scoped by ``authz.scope`` in SQL.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import false, func, literal, or_, select, union_all

from server.crm.activities import REGARDING_TYPES, Email
from server.crm.registry import RECORD_TYPES, RecordType
from server.crm.services.activity_actions import AnyActivity
from server.crm.services.records import search_columns
from server.crm.services.titles import regarding_refs, title_column, titles
from server.db import db
from server.security import authz
from server.security.authz import Principal
from server.security.privileges import Depth

SEARCH_LIMIT = 8  # hits per record type on the home page
CANDIDATE_LIMIT = 5  # records per type offered as an activity's regarding
HOME_LIMIT = 10  # open activities, recently changed records


def search_condition(p: Principal, rt: RecordType, q: str):
    """``q`` in any of the record type's search fields the reader may read, ignoring case
    (``%`` and ``_`` match themselves): ``records.search_columns`` (a person's full name
    only when both parts are readable, else the readable part: no hidden value is an
    oracle). Nothing readable matches nothing."""
    columns = search_columns(p, rt)
    return or_(*(column.icontains(q.strip(), autoescape=True) for column in columns)) \
        if columns else false()


def readable_types(p: Principal) -> list[RecordType]:
    return [rt for rt in RECORD_TYPES.values() if p.depth(rt.name, "read") > Depth.NONE]


class Hits(NamedTuple):
    """The records of one type a search found: each with what tells it apart."""
    rt: RecordType
    rows: list  # (record, [number, first email, phone])
    more: bool  # more than shown


@dataclass
class Home:
    q: str
    results: list[Hits]
    my_activities: list
    recent: list  # (kind, id, title, at) rows
    titles: dict[tuple[str, int], str]  # of what the activities are regarding


def home(p: Principal, q: str = "") -> Home:
    """The home page: a search across the record types ``p`` may read (when ``q`` is
    given), their open activities and email drafts, soonest due first, and the records they
    changed last."""
    q = (q or "").strip()[:200]
    readable = readable_types(p)
    results = [hits for rt in readable if q and (hits := _search(p, rt, q))]
    mine = _open_activities(p)
    return Home(q, results, mine, _recent_records(p, readable),
                titles(p, regarding_refs(mine)))


def _search(p: Principal, rt: RecordType, q: str) -> Hits | None:
    rows = db.session.scalars(
        select(rt.model).where(authz.scope(p, rt.model, "read"), search_condition(p, rt, q))
        .order_by(rt.model.is_active.desc(), title_column(p, rt.name), rt.model.id)
        .limit(SEARCH_LIMIT + 1)).all()
    if not rows:
        return None
    return Hits(rt, [(r, _details(p, rt, r)) for r in rows[:SEARCH_LIMIT]],
                len(rows) > SEARCH_LIMIT)


def _details(p: Principal, rt: RecordType, record) -> list[str]:
    """What tells search hits apart (number, first email, phone), fields the user may read."""
    access = p.fields(rt.name)
    names = [rt.number_field, *rt.email_fields[:1], "phone"]
    return [str(getattr(record, n)) for n in names
            if n and rt.field(n) and access.can_read(n) and getattr(record, n, None)]


def _open_activities(p: Principal) -> list:
    """``p``'s open activities (of emails, their drafts), soonest due first."""
    return list(db.session.scalars(
        select(AnyActivity)
        .where(AnyActivity.owner_user_id == p.user_id, AnyActivity.state == "open",
               or_(AnyActivity.activity_type != "email",
                   AnyActivity.id.in_(select(Email.id).where(Email.status == "draft"))))
        .order_by(func.coalesce(AnyActivity.scheduled_end, AnyActivity.occurred_on).asc(),
                  AnyActivity.id)
        .limit(HOME_LIMIT)))


def _recent_records(p: Principal, readable: list[RecordType]) -> list:
    """Records ``p`` changed last, all types in one query."""
    parts = [select(literal(rt.name).label("kind"), rt.model.id.label("id"),
                    title_column(p, rt.name).label("title"), rt.model.modified_on.label("at"))
             .where(rt.model.modified_by_id == p.user_id, authz.scope(p, rt.model, "read"))
             for rt in readable]
    if not parts:
        return []
    u = union_all(*parts).subquery()
    return list(db.session.execute(select(u).order_by(u.c.at.desc()).limit(HOME_LIMIT)))


def regarding_candidates(p: Principal, q: str) -> list[tuple[RecordType, list]]:
    """Active records matching ``q`` that ``p`` may read and link activities to, a few of
    each regarding type: (record type, (id, title) rows)."""
    out = []
    for kind in REGARDING_TYPES:
        rt = RECORD_TYPES[kind]
        if p.depth(kind, "read") == Depth.NONE:
            continue
        rows = db.session.execute(
            select(rt.model.id, title_column(p, rt.name))
            .where(authz.scope(p, rt.model, "read"), authz.scope(p, rt.model, "append_to"),
                   rt.model.is_active.is_(True), search_condition(p, rt, q))
            .order_by(title_column(p, rt.name)).limit(CANDIDATE_LIMIT)).all()
        if rows:
            out.append((rt, rows))
    return out
