"""``server.bulk.insert_rows`` stores what one ``INSERT`` given the same rows stores: on
PostgreSQL it writes them with ``COPY`` (issue 17 goal 2), so every kind of value the sync
writes that way (text with tabs, newlines and backslashes, JSON, aware datetimes in any
zone, booleans, NULLs) and the defaults of columns a row leaves out are compared with the
INSERT's own rows, on both databases; and ``in_values`` matches as ``IN`` does."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (JSON, Boolean, Column, Integer, MetaData, String, Table, Text, event,
                        insert, select)

from server.bulk import insert_rows
from server.db import UTCDateTime, db, utcnow

pytestmark = pytest.mark.both_databases

metadata = MetaData()


def _table(name: str) -> Table:
    return Table(name, metadata,
                 Column("id", Integer, primary_key=True),
                 Column("label", String(200)),
                 Column("body", Text),
                 Column("flag", Boolean),
                 Column("count", Integer),
                 Column("hits", JSON, default=list),
                 Column("kind", String(20), default="plain"),
                 Column("at", UTCDateTime()),
                 Column("stamped", UTCDateTime(), default=utcnow))


BY_COPY, BY_INSERT = _table("copy_rows_a"), _table("copy_rows_b")

text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=40)
json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**31, 2**31) | text,
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(text, inner, max_size=3), max_leaves=8)
aware = st.builds(lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
                  st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2200, 1, 1)),
                  st.integers(-14 * 60, 14 * 60))
row = st.fixed_dictionaries({
    "label": st.none() | text | st.sampled_from(["a\tb", "line\nnext", "back\\slash", "\\N", ""]),
    "body": st.none() | text,
    "flag": st.none() | st.booleans(),
    "count": st.none() | st.integers(-2**31, 2**31 - 1),
    "hits": st.lists(json_values, max_size=3),
    "at": st.none() | aware,
})


@pytest.fixture
def tables(app):
    metadata.create_all(db.engine)
    yield
    db.session.rollback()
    metadata.drop_all(db.engine)


def _stored(table: Table) -> list[tuple]:
    return [tuple(r) for r in db.session.execute(
        select(*[c for c in table.columns if c.key != "id"]).order_by(table.c.id))]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=st.lists(row, min_size=1, max_size=12), full=st.booleans())
def test_the_rows_stored_are_those_an_insert_stores(tables, rows, full):
    if full:  # every column given, the defaulted ones too
        rows = [{**r, "kind": "given", "stamped": r["at"] or utcnow()} for r in rows]
    connection = db.session.connection()
    for table in (BY_COPY, BY_INSERT):
        connection.execute(table.delete())
    before = utcnow()
    insert_rows(connection, BY_COPY, rows)
    connection.execute(insert(BY_INSERT), rows)
    by_copy, by_insert = _stored(BY_COPY), _stored(BY_INSERT)
    assert len(by_copy) == len(rows)
    stamped = list(BY_COPY.columns.keys()).index("stamped") - 1  # (the id is not selected)
    if full:
        assert by_copy == by_insert
    else:  # the defaults: the same scalar, the function called for the COPY's rows too
        assert [r[:stamped] for r in by_copy] == [r[:stamped] for r in by_insert]
        assert all(r[stamped] >= before.replace(microsecond=0) - timedelta(seconds=1)
                   for r in by_copy)
        assert all(r[list(BY_COPY.columns.keys()).index("kind") - 1] == "plain" for r in by_copy)
    db.session.rollback()


def test_postgresql_writes_them_with_copy_and_listeners_see_it(tables):
    seen: list[str] = []

    def statement(conn, cursor, text_, parameters, context, executemany):
        seen.append(text_)
    event.listen(db.engine, "before_cursor_execute", statement)
    try:
        insert_rows(db.session.connection(), BY_COPY, [{"label": "x", "hits": [1]}] * 3)
    finally:
        event.remove(db.engine, "before_cursor_execute", statement)
    assert [text_.split()[0] for text_ in seen] == \
        ["COPY" if db.engine.dialect.name == "postgresql" else "INSERT"]
    if db.engine.dialect.name == "postgresql":  # every column's type has a binary form
        assert seen[0].endswith("FROM STDIN (FORMAT BINARY)")
    assert [r[0] for r in _stored(BY_COPY)] == ["x"] * 3


def test_a_value_the_binary_form_does_not_take_goes_in_text(tables):
    """A number for a text column: INSERT's cast takes it, and so does the COPY, in the text
    form for that call."""
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    rows = [{"label": 5, "body": "x", "count": 7}, {"label": "six", "body": None, "count": None}]
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        insert_rows(db.session.connection(), BY_COPY, rows)
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    db.session.connection().execute(insert(BY_INSERT), rows)
    if db.engine.dialect.name == "postgresql":
        assert seen[0].endswith("FROM STDIN")
    label = list(BY_COPY.columns.keys()).index("label") - 1
    assert [r[label] for r in _stored(BY_COPY)] == [r[label] for r in _stored(BY_INSERT)] \
        == ["5", "six"]
    db.session.rollback()


@pytest.mark.parametrize("count", [2**31, -2**31 - 1, 2**63])
def test_an_integer_out_of_range_is_refused_as_insert_refuses_it(tables, count):
    """Never stored wrapped round (psycopg's binary form of an int4 would): refused as
    INSERT refuses it on PostgreSQL; on SQLite, whose integers are 64-bit, stored alike."""
    from sqlalchemy.exc import DBAPIError
    rows = [{"label": "big", "count": count}, {"label": "small", "count": 1}]
    outcomes = []
    for write in (lambda: insert_rows(db.session.connection(), BY_COPY, rows),
                  lambda: db.session.connection().execute(insert(BY_INSERT), rows)):
        try:
            with db.session.begin_nested():
                write()
            outcomes.append("stored")
        except (DBAPIError, OverflowError):
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1], outcomes
    if outcomes[0] == "stored":
        count_at = list(BY_COPY.columns.keys()).index("count") - 1
        assert [r[count_at] for r in _stored(BY_COPY)] == [r[count_at] for r in _stored(BY_INSERT)]
    db.session.rollback()


def test_a_naive_time_is_read_as_insert_reads_it(app):
    """A time without a zone for a column with one: the COPY (then in the text form) stores
    what INSERT stores, both reading it in the session's zone."""
    from sqlalchemy import DateTime
    timed = [Table(f"copy_rows_timed_{n}", metadata, Column("id", Integer, primary_key=True),
                   Column("at", DateTime(timezone=True))) for n in "ab"]
    for table in timed:
        table.create(db.engine)
    try:
        rows = [{"at": datetime(2026, 3, 1, 12, 30)}, {"at": None},
                {"at": datetime(2026, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))}]
        insert_rows(db.session.connection(), timed[0], rows)
        db.session.connection().execute(insert(timed[1]), rows)
        stored = [[r[0] for r in db.session.execute(select(t.c.at).order_by(t.c.id))]
                  for t in timed]
        assert stored[0] == stored[1]
        db.session.rollback()
    finally:
        for table in timed:
            table.drop(db.engine)
            metadata.remove(table)


def test_the_tables_the_sync_copies_go_in_binary(app, db_backend):
    if db_backend != "postgresql":
        pytest.skip("COPY is PostgreSQL's")
    from server.bulk import _binary_types
    from server.crm.activities import Activity, ActivityParty, Email
    from server.sync.models import MessageDecision
    for table in (Activity.__table__, Email.__table__, ActivityParty.__table__,
                  MessageDecision.__table__):
        assert _binary_types(list(table.columns), db.engine.dialect, []) is not None, table.name


def test_a_column_without_a_binary_form_copies_as_text(app, db_backend):
    """An array (or any type psycopg has no binary form for by that name) makes the whole
    COPY text, and the rows are stored all the same."""
    if db_backend != "postgresql":
        pytest.skip("arrays and COPY are PostgreSQL's")
    from sqlalchemy import ARRAY
    listed = Table("copy_rows_listed", metadata, Column("id", Integer, primary_key=True),
                   Column("name", String(20)), Column("ids", ARRAY(Integer)))
    listed.create(db.engine)
    seen: list[str] = []
    listener = lambda *args: seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        rows = [{"name": "a\tb", "ids": [1, 2]}, {"name": None, "ids": None},
                {"name": "c", "ids": []}]
        insert_rows(db.session.connection(), listed, rows)
        assert seen[0].endswith("FROM STDIN")
        assert [tuple(r) for r in db.session.execute(
            select(listed.c.name, listed.c.ids).order_by(listed.c.id))] == \
            [("a\tb", [1, 2]), (None, None), ("c", [])]
        db.session.rollback()
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
        listed.drop(db.engine)
        metadata.remove(listed)


def test_a_lookup_by_many_values_matches_as_in_does(tables):
    """``in_values`` (an array on PostgreSQL) does not cut a value longer than the column
    to a prefix that would match a stored value, as a cast to ``VARCHAR(n)[]`` would."""
    from server.db import in_values
    short = Table("copy_rows_short", metadata, Column("id", Integer, primary_key=True),
                  Column("code", String(6)))
    short.create(db.engine)
    try:
        connection = db.session.connection()
        connection.execute(insert(short), [{"code": "abcdef"}, {"code": "abc"}])
        query = select(short.c.code).where(in_values(short.c.code, "codes")).order_by(short.c.code)
        assert connection.execute(query, {"codes": ["abcdefgh", "abc"]}).scalars().all() == ["abc"]
        assert connection.execute(query, {"codes": ["abcdef"]}).scalars().all() == ["abcdef"]
        db.session.rollback()
    finally:
        short.drop(db.engine)
        metadata.remove(short)
