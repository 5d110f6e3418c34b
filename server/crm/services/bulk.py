"""New ORM objects of one mapped class inserted in a few Core statements, and persistent
afterwards as if the ORM had flushed them (the sync engine's batches of tracked emails).

``insert_new(objects)``: every column of every table of the class (a joined-inheritance
chain, the base table first) gets a value: what the object holds, else the column's
default, which the object then holds too. Ids are taken first: on PostgreSQL from the id
column's sequence (one query); on SQLite the first object is inserted alone, which gives
its id and the database's write lock until the transaction ends, and when that id is the
table's highest (SQLite gives a new row the highest id plus one) the next ids are free.
Then one executemany per table (insertmanyvalues batches). The objects enter the session as
persistent, their relationships unloaded. As with a flush, a rollback (of the transaction
or of a savepoint around the insert) takes them out of the session again.

No ORM flush events run for these rows: it is for classes whose flush has no listeners
(activities); a class with a server-side default is refused (the value would be unknown).
Privilege and field-security checks are the caller's, before it calls this.
"""
from __future__ import annotations

from sqlalchemy import event, func, insert, inspect, select, text
from sqlalchemy.orm import Session, make_transient_to_detached

from server.db import db

__all__ = ["insert_new"]


def insert_new(objects: list) -> None:
    """Insert new (transient) objects of one mapped class; they become persistent."""
    if not objects:
        return
    mapper = inspect(type(objects[0]))
    tables = list(dict.fromkeys(m.local_table for m in reversed(list(mapper.iterate_to_root()))))
    key = mapper.get_property_by_column(tables[0].c.id).key
    for obj in objects:
        _fill(mapper, tables, obj, key)
    rest = objects
    if db.session.get_bind().dialect.name == "postgresql":
        sequence = text("SELECT nextval(pg_get_serial_sequence(:table, 'id')::regclass) "
                        "FROM generate_series(1, :n)")
        ids = db.session.scalars(sequence, {"table": tables[0].name, "n": len(objects)}).all()
        for obj, new_id in zip(objects, ids):
            setattr(obj, key, new_id)
    else:
        first = _insert_alone(mapper, tables, objects[0], key)
        if db.session.scalar(select(func.max(tables[0].c.id))) == first:
            rest = objects[1:]
            for offset, obj in enumerate(rest, 1):
                setattr(obj, key, first + offset)
        else:  # (ids not free after it: one at a time)
            for obj in objects[1:]:
                _insert_alone(mapper, tables, obj, key)
            rest = []
    connection = db.session.connection()
    for table in tables:
        if rest:
            connection.execute(insert(table), [_row(mapper, table, obj) for obj in rest])
    for obj in objects:
        make_transient_to_detached(obj)
        db.session.add(obj)
    session = db.session()  # (the scoped session's own)
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_INSERTED, []).append((transaction, objects))


_INSERTED = "bulk_inserted"  # session.info: (transaction, objects) inserted in it


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction) -> None:
    """Objects inserted in the transaction just rolled back (or in one inside it) leave the
    session, as the ORM's own inserts do: their rows are gone, their ids free again."""
    inserted = session.info.get(_INSERTED)
    if not inserted:
        return
    kept = []
    for transaction, objects in inserted:
        inside = transaction
        while inside is not None and inside is not previous_transaction:
            inside = inside.parent
        if inside is None:
            kept.append((transaction, objects))
            continue
        for obj in objects:
            if obj in session:
                session.expunge(obj)
    session.info[_INSERTED] = kept


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    session.info.pop(_INSERTED, None)


def _fill(mapper, tables, obj, key: str) -> None:
    """Give the object every column's value (the column default where it has none)."""
    if mapper.polymorphic_on is not None:
        setattr(obj, mapper.get_property_by_column(mapper.polymorphic_on).key,
                mapper.polymorphic_identity)
    for table in tables:
        for column in table.columns:
            name = mapper.get_property_by_column(column).key
            if name == key or name in obj.__dict__:
                continue
            if column.server_default is not None:
                raise ValueError(f"{table.name}.{column.name} has a server-side default")
            default = column.default
            value = None if default is None else \
                default.arg(None) if default.is_callable else default.arg
            setattr(obj, name, value)


def _row(mapper, table, obj) -> dict:
    return {column.key: obj.__dict__.get(mapper.get_property_by_column(column).key)
            for column in table.columns}


def _insert_alone(mapper, tables, obj, key: str) -> int:
    """Insert one object's rows (the base table gives its id); returns the id."""
    base, *others = tables
    row = _row(mapper, base, obj)
    row.pop("id", None)
    new_id = db.session.execute(insert(base).values(**row)).inserted_primary_key[0]
    setattr(obj, key, new_id)
    for table in others:
        db.session.execute(insert(table).values(**_row(mapper, table, obj)))
    return new_id
