"""Bulk writes, in as few statements as the database allows, the same rows either way.

``insert_rows``: rows that need no ids back (a wave's decision rows, an email's parties),
by one ``COPY`` on PostgreSQL, one executemany elsewhere. ``insert_objects``: new ORM
objects of one class (the sync's emails) with their ids, by one ``COPY`` per table on
PostgreSQL after their ids are taken from the sequence, a flush elsewhere. Why: the
PostgreSQL server parses and plans every multi-row ``INSERT`` the sync would send, and the
sync waits for it (bench/README.md, "Issue 17 goal 2").
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import event, insert, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, make_transient_to_detached

from server.db import cached_statement, db

__all__ = ["insert_objects", "insert_rows"]


def insert_rows(connection, table, rows: list[dict]) -> None:
    """Rows that need no ids back (a wave's decision rows, an email's parties) inserted in
    bulk on ``connection``: on PostgreSQL (psycopg) with one ``COPY ... FROM STDIN``, which
    the server neither parses nor plans per row or per VALUES list and writes with its
    multi-row heap insert; elsewhere one ``INSERT`` given every row (SQLite: one
    executemany; on PostgreSQL without psycopg, multi-row ``INSERT ... VALUES``). The same
    rows are stored either way: each value goes through its column type's bind processing,
    and a column a row leaves out gets its default as ``INSERT`` would (a scalar, or a
    Python function called per row; the server's own default when it has one). Every row
    names the same columns (as an executemany needs). 27 waves of 75 decision rows: the
    server's CPU 0.045 s as multi-row INSERTs, 0.015 s as COPY; this process's 0.030 and
    0.023 s (bench/README.md, "Issue 17 goal 2: COPY and one statement text per lookup")."""
    if not rows:
        return
    dialect = connection.dialect
    columns, defaults = _copy_columns(table, rows[0]) if dialect.driver == "psycopg" else (None, None)
    if columns is None:
        connection.execute(insert(table), rows)
        return
    processors = [(c.key, c.type._cached_bind_processor(dialect), defaults.get(c.key))
                  for c in columns]
    values = []
    for row in rows:
        written = []
        for key, process, default in processors:
            value = row[key] if default is None else default()
            written.append(process(value) if process is not None and value is not None
                           else value)
        values.append(written)
    types = _binary_types(columns, dialect, values)
    names = ", ".join(dialect.identifier_preparer.quote(c.name) for c in columns)
    statement = f"COPY {dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN" \
        + (" (FORMAT BINARY)" if types else "")
    cursor = connection.connection.cursor()
    # Listeners of the connection's statements (counts, the benches') see the COPY as one.
    events = connection._has_events or connection.engine._has_events
    if events:
        connection.dispatch.before_cursor_execute(connection, cursor, statement, (), None, False)
    try:
        with cursor.copy(statement) as copy:
            if types:
                copy.set_types(types)
            for row in values:
                copy.write_row(row)
        if events:
            connection.dispatch.after_cursor_execute(connection, cursor, statement, (), None,
                                                     False)
    except dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy raises for its own statements (an IntegrityError for a unique key
        # taken meanwhile, an OperationalError for a lost server), without the rows.
        raise DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error,
                                  hide_parameters=True, dialect=dialect) from exc
    finally:
        cursor.close()


# A PostgreSQL type (by psycopg's name for it) -> the Python values its binary form takes as
# the text form would. Any other type, or another value, and the COPY is in the text form:
# an int for a text column (which the text form and INSERT's cast accept), a naive time
# (which the text form reads in the session's zone), an integer out of the column's range
# (psycopg's binary form would wrap it round where the text form is refused by the server).
_BINARY = {"varchar": str, "text": str, "int2": int, "int4": int, "int8": int, "bool": bool,
           "bytea": (bytes, bytearray, memoryview), "timestamptz": datetime,
           "json": object}  # SQLAlchemy's JSON gives psycopg's ``Json``, binary too
_RANGE = {f"int{size}": (-2 ** (size * 8 - 1), 2 ** (size * 8 - 1) - 1) for size in (2, 4, 8)}
_binary: dict = {}


def _binary_types(columns, dialect, values: list[list]) -> list[str] | None:
    """The PostgreSQL types of ``columns`` for a binary ``COPY`` of ``values`` (psycopg's
    ``Copy.set_types``), or None for the text form. Binary, neither side escapes or parses
    a value's text: a sync batch's 200 emails of 40 KB took the server 33.7 ms of CPU
    instead of 50.5 and this process 6.2 ms instead of 17.3 (bench/copy_format.py)."""
    key = tuple(columns)
    if key not in _binary:
        from psycopg.postgres import types as known
        names = []
        for column in columns:
            try:
                name = column.type.compile(dialect=dialect).lower().split("(")[0].strip()
            except Exception:  # a type without DDL of its own
                name = ""
            info = known.get(name) if "[" not in name else None
            if info is None or info.name not in _BINARY:
                names = None
                break
            names.append(info.name)
        _binary[key] = names
    names = _binary[key]
    if names is None:
        return None
    for n, name in enumerate(names):
        taken = _BINARY[name]
        given = [row[n] for row in values if row[n] is not None]
        if taken is object or not given:
            continue
        if not all(isinstance(value, taken) for value in given):
            return None
        if name in _RANGE and not _RANGE[name][0] <= min(given) <= max(given) <= _RANGE[name][1]:
            return None
        if taken is datetime and any(value.tzinfo is None for value in given):
            return None
    return names


def insert_objects(objects: list) -> None:
    """New ORM objects of one class (not yet in the session) written at once, their ids
    set, and in the session as persistent objects. On PostgreSQL (psycopg) the ids come
    from the class's sequence in one statement (``nextval`` over ``generate_series``) and
    each of its tables (an email's: ``activity``, then ``email``) is written with one COPY
    (``insert_rows``): the server neither parses nor plans a multi-row ``INSERT ...
    RETURNING``, and the session's flush does not work through each object's state
    (bench/README.md, "Issue 17 goal 2: PostgreSQL ingest, emails by COPY"). Each object
    then holds every column's value (a column it left out gets its default, as INSERT
    would give it) and joins the session as if loaded (``make_transient_to_detached``);
    rolled back, it leaves the session again. Elsewhere, for one object (a flush writes it
    in as many round trips, without asking for its id first), and for a class whose rows
    need what only a flush gives (mapper insert events, a SQL or server default), they are
    added and flushed. Session flush listeners do not see them as new: for objects none of
    them looks for (the sync's emails: they look for parties, records with addresses, and
    the item sync's appointments, tasks and contacts)."""
    if not objects:
        return
    session = db.session()
    connection = session.connection()
    mapper = sa_inspect(type(objects[0]))
    plan = _copy_plan(mapper) if connection.dialect.driver == "psycopg" and len(objects) > 1 \
        else None
    if plan is None or any(not sa_inspect(o).transient or type(o) is not mapper.class_
                           for o in objects):
        session.add_all(objects)
        session.flush()
        return
    table = mapper.base_mapper.local_table
    ids = sorted(connection.execute(cached_statement(("ids from the sequence", table.name),
                                                     lambda: text(
        f"SELECT nextval(pg_get_serial_sequence('{table.name}', '{plan.id_column}')) "
        "FROM generate_series(1, :count)")), {"count": len(objects)}).scalars())
    for obj, new_id in zip(objects, ids):
        setattr(obj, plan.id_key, new_id)
    for table, columns in plan.tables:
        rows = []
        for obj in objects:
            state = obj.__dict__
            row = {}
            for column, key, default in columns:
                if key not in state:
                    setattr(obj, key, default() if default is not None else None)
                row[column] = state[key]
            rows.append(row)
        insert_rows(connection, table, rows)
    for obj in objects:
        make_transient_to_detached(obj)
    session.add_all(objects)
    # Rolled back with the savepoint or transaction they were written in, they leave the
    # session as new objects would (``_forget_rolled_back``).
    current = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_WRITTEN, []).append((current, objects))


_WRITTEN = "regarding_bulk_written"


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous) -> None:
    """Objects ``insert_objects`` wrote in the transaction or savepoint just rolled back
    (or in one inside it) are expunged: the session knows them as persistent, so the
    rollback alone would keep them, loaded, for rows that are not there."""
    written = session.info.get(_WRITTEN)
    if not written:
        return
    kept = []
    for transaction, objects in written:
        inside = transaction
        while inside is not None and inside is not previous:
            inside = inside.parent
        if inside is None:
            kept.append((transaction, objects))
            continue
        for obj in objects:
            if obj in session:
                session.expunge(obj)
    session.info[_WRITTEN] = kept


@event.listens_for(Session, "after_commit")
def _written_for_good(session: Session) -> None:
    session.info.pop(_WRITTEN, None)


class _CopyPlan:
    """How ``insert_objects`` writes a class's objects: its tables in order, each with
    (column key, attribute key, default function or None for NULL), and its id."""

    def __init__(self, tables: list, id_key: str, id_column: str) -> None:
        self.tables, self.id_key, self.id_column = tables, id_key, id_column


_copy_plans: dict = {}


def _copy_plan(mapper) -> _CopyPlan | None:
    if mapper in _copy_plans:
        return _copy_plans[mapper]
    plan = None
    base = mapper.base_mapper.local_table
    if not (mapper.dispatch.before_insert or mapper.dispatch.after_insert) \
            and len(base.primary_key.columns) == 1:
        tables = []
        for table in mapper.tables:
            columns = []
            for column in table.columns:
                default = _default_of(column)
                if default is False:
                    tables = None
                    break
                columns.append((column.key, mapper.get_property_by_column(column).key, default))
            if tables is None:
                break
            tables.append((table, columns))
        if tables is not None:
            id_column = base.primary_key.columns[0]
            plan = _CopyPlan(tables, mapper.get_property_by_column(id_column).key,
                             id_column.name)
    _copy_plans[mapper] = plan
    return plan


def _default_of(column):
    """A column's default on INSERT as a function of no arguments; None when it is NULL;
    False when only an INSERT can give it (a SQL expression, a sequence, a server default, a
    function of the execution context)."""
    if column.server_default is not None:
        return False
    columns, defaults = _copy_columns(column.table, {c.key: None for c in column.table.columns
                                                     if c is not column})
    if columns is None:
        return False
    return defaults.get(column.key)


def _copy_columns(table, row: dict):
    """The columns a COPY of rows like ``row`` names, and the defaults of those ``row``
    leaves out (column key -> a function giving the value), or (None, None) when a column
    left out has a default only ``INSERT`` can give (a SQL expression, a sequence, a
    function of the execution context)."""
    columns, defaults = [], {}
    for column in table.columns:
        if column.key in row:
            columns.append(column)
            continue
        default = column.default
        if default is None:
            continue  # NULL, or the server's default
        if getattr(default, "is_scalar", False):
            defaults[column.key] = lambda value=default.arg: value
        elif getattr(default, "is_callable", False) and hasattr(default.arg, "__wrapped__"):
            # A function of no arguments (SQLAlchemy wrapped it in one that takes the
            # execution context); one that reads the context is left to INSERT.
            defaults[column.key] = default.arg.__wrapped__
        else:
            return None, None
        columns.append(column)
    return columns, defaults
