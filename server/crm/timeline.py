"""The activity timeline of a record: every activity regarding it or in which it is a party,
newest first, with keyset paging, filtered by the reader's privileges in SQL."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import selectinload, with_polymorphic

from server.crm.activities import PARTY_COLUMNS, REGARDING_COLUMNS, Activity, ActivityParty
from server.db import db
from server.security import authz
from server.security.authz import Principal

AnyActivity = with_polymorphic(Activity, "*")


@dataclass
class Page:
    items: list[Activity]
    next_cursor: str | None


def encode_cursor(activity: Activity) -> str:
    return f"{activity.occurred_on.timestamp():.6f}_{activity.id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    from datetime import timezone
    stamp, _, ident = cursor.partition("_")
    return datetime.fromtimestamp(float(stamp), timezone.utc), int(ident)


def about(record_type: str, record_id: int):
    """A condition on ``activity`` selecting what concerns one record."""
    parts = []
    if record_type in REGARDING_COLUMNS:
        parts.append(getattr(AnyActivity, REGARDING_COLUMNS[record_type]) == record_id)
    if record_type in PARTY_COLUMNS:
        party_col = getattr(ActivityParty, PARTY_COLUMNS[record_type])
        parts.append(AnyActivity.id.in_(select(ActivityParty.activity_id).where(party_col == record_id)))
    return or_(*parts)


def timeline(p: Principal, record_type: str, record_id: int, *, cursor: str | None = None,
             limit: int = 25, types: tuple[str, ...] | None = None) -> Page:
    query = (select(AnyActivity)
             .where(about(record_type, record_id), authz.scope(p, Activity, "read"))
             .options(selectinload(AnyActivity.parties))
             .order_by(AnyActivity.occurred_on.desc(), AnyActivity.id.desc())
             .limit(limit + 1))
    if types:
        query = query.where(AnyActivity.activity_type.in_(types))
    if cursor:
        try:
            at, ident = decode_cursor(cursor)
        except (ValueError, OverflowError):
            at, ident = None, None
        if at is not None:
            query = query.where(or_(AnyActivity.occurred_on < at,
                                    and_(AnyActivity.occurred_on == at, AnyActivity.id < ident)))
    items = list(db.session.scalars(query).unique())
    more = len(items) > limit
    items = items[:limit]
    return Page(items, encode_cursor(items[-1]) if more and items else None)
