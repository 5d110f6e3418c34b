"""Leases: a row that one worker holds for a while, written in its ``lease_owner`` and
``lease_expires_on`` columns. The sync scheduler leases mailboxes (``workers.scheduler``)
and bulk jobs lease their items (``admin.jobs``) the same way:

* a lease is *free* when it has no owner or its expiry has passed (a dead worker's rows
  come back by themselves);
* candidates are read ``FOR UPDATE SKIP LOCKED`` on PostgreSQL (``locked``), so workers
  claiming at the same moment take disjoint rows without waiting for each other; SQLite has
  one writer at a time;
* ``take`` writes the owner and expiry on the rows still free and returns those held;
  ``renew`` pushes back the expiry of the owner's rows; ``give_back`` clears them.

Each function works inside the caller's transaction; ``committed`` ends it (rolled back on
any error, so no row lock outlives a failed claim).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update

from server.db import cached_statement, db

__all__ = ["committed", "free", "give_back", "give_back_row", "locked", "renew", "take"]

OWNER_LENGTH = 120


def free(model, now: datetime):
    """The rows of ``model`` that nobody holds at ``now``."""
    return or_(model.lease_owner.is_(None), model.lease_expires_on.is_(None),
               model.lease_expires_on <= now)


def locked(query, **options):
    """``query`` reading candidates to lease: on PostgreSQL their rows are locked and rows
    another worker is claiming are skipped (``options``: ``key_share``, ``of``)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(skip_locked=True, **options)
    return query


def _bound(model, values: dict) -> dict:
    """``values`` as bind parameters (``v_<column>``), typed as their columns."""
    return {key: bindparam(f"v_{key}", type_=getattr(model, key).type) for key in values}


def _params(values: dict) -> dict:
    return {f"v_{key}": value for key, value in values.items()}


def take(model, owner: str, ids: list[int], now: datetime, seconds: int,
         **values) -> tuple[set[int], datetime]:
    """Lease the rows ``ids`` that are still free to ``owner`` for ``seconds`` (with
    ``values`` written too); returns the ids held and the expiry."""
    owner, expires = owner[:OWNER_LENGTH], now + timedelta(seconds=seconds)
    if not ids:
        return set(), expires
    # Built once per model and shape (a claim a second per worker built it every time).
    statement = cached_statement(
        ("lease take", model.__tablename__, *sorted(values)), lambda: (
            update(model).where(model.id.in_(bindparam("ids", expanding=True)),
                                free(model, bindparam("now", type_=model.lease_expires_on.type)))
            .values(lease_owner=bindparam("owner", type_=model.lease_owner.type),
                    lease_expires_on=bindparam("expires", type_=model.lease_expires_on.type),
                    **_bound(model, values))
            .execution_options(synchronize_session=False)))
    done = db.session.execute(statement, {"ids": list(ids), "now": now, "owner": owner,
                                          "expires": expires, **_params(values)})
    if done.rowcount == len(ids):
        return set(ids), expires
    # Only possible without row locks (SQLite): keep what we hold.
    return set(db.session.scalars(select(model.id).where(
        model.id.in_(ids), model.lease_owner == owner, model.lease_expires_on == expires))), \
        expires


def renew(model, owner: str, ids: Iterable[int], now: datetime, seconds: int) -> set[int]:
    """Push back the expiry of ``owner``'s leases on ``ids``; the ids still held (a lease
    that expired and was taken over is lost)."""
    ids, owner = list(ids), owner[:OWNER_LENGTH]
    if not ids:
        return set()
    db.session.execute(update(model).where(model.id.in_(ids), model.lease_owner == owner)
                       .values(lease_expires_on=now + timedelta(seconds=seconds))
                       .execution_options(synchronize_session=False))
    return set(db.session.scalars(select(model.id).where(model.id.in_(ids),
                                                         model.lease_owner == owner)))


def give_back(model, owner: str | None, *conditions, **values) -> int:
    """Clear the leases of ``owner`` (None: anyone's) on the rows ``conditions`` pick, with
    ``values`` written too; how many."""
    query = update(model).where(model.lease_owner.is_not(None), *conditions)
    if owner is not None:
        query = query.where(model.lease_owner == owner[:OWNER_LENGTH])
    done = db.session.execute(query.values(lease_owner=None, lease_expires_on=None, **values)
                              .execution_options(synchronize_session=False))
    return done.rowcount


def give_back_row(model, owner: str, row_id: int, **values) -> bool:
    """``give_back`` of one row (a sync run's end): the statement is built once per model
    and the columns of ``values``. Whether ``owner`` still held it."""
    statement = cached_statement(
        ("lease give back", model.__tablename__, *sorted(values)), lambda: (
            update(model).where(model.lease_owner.is_not(None), model.id == bindparam("row_id"),
                                model.lease_owner == bindparam("owner",
                                                               type_=model.lease_owner.type))
            .values(lease_owner=None, lease_expires_on=None, **_bound(model, values))
            .execution_options(synchronize_session=False)))
    done = db.session.execute(statement, {"row_id": row_id, "owner": owner[:OWNER_LENGTH],
                                          **_params(values)})
    return done.rowcount == 1


@contextmanager
def committed() -> Iterator[None]:
    """The lease's transaction: committed at the end, rolled back on any error."""
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
