"""PostgreSQL's cursors describe a result only when asked (``server.db.described_on_demand``):
what they describe is what psycopg's own cursor does, for every kind of result and after
the cursor has moved on; SQLAlchemy, which keeps a statement's result metadata, makes no
column description on the statement's later runs."""
from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import select, text

from server.db import db, described_on_demand
from server.security.models import User

pytestmark = pytest.mark.both_databases

STATEMENTS = (
    "SELECT 1 AS one, 'x'::varchar(20) AS name, now() AS at, NULL::numeric(10, 2) AS amount, "
    "ARRAY[1, 2] AS ids, '{}'::jsonb AS doc",
    "SELECT",  # a result with rows but no columns
    'SELECT id, email FROM "user" WHERE false',
    "CREATE TEMPORARY TABLE scratch (a int)",  # no rows
    "INSERT INTO scratch VALUES (1), (2)",
    "INSERT INTO scratch VALUES (3) RETURNING a, a * 2 AS twice",
)


def _pg(db_backend):
    if db_backend != "postgresql":
        pytest.skip("psycopg's cursor")
    return db.session.connection().connection.dbapi_connection


def _same(mine, theirs):
    if theirs is None:
        return mine is None

    def seen(description):
        return [(*column, column.type_display) for column in description]
    return mine is not None and len(mine) == len(theirs) and seen(mine) == seen(theirs)


def test_the_engine_uses_the_cursor(app, db_backend):
    connection = _pg(db_backend)
    assert connection.cursor_factory is described_on_demand()
    assert isinstance(connection.cursor(), psycopg.RawCursor)


def test_each_kind_of_result_is_described_as_psycopg_does(app, db_backend):
    connection = _pg(db_backend)
    mine, theirs = connection.cursor(), psycopg.RawCursor(connection)
    kept = []
    for statement in STATEMENTS:
        mine.execute(statement)
        theirs.execute(statement.replace("scratch", "scratch2"))
        assert _same(mine.description, theirs.description), statement
        kept.append((mine.description, theirs.description))
    # Read only after the cursor has run every other statement: each still the one it was.
    mine.execute("SELECT 2 AS other")
    for (first, expected), statement in zip(kept, STATEMENTS):
        assert _same(first, expected), statement
    first = kept[0][0]
    assert first[1].name == "name" and first[-1].name == "doc"
    assert [c.name for c in first[1:3]] == ["name", "at"]
    db.session.rollback()


def test_sqlalchemy_reads_rows_and_keys_through_it(app, db_backend, make_user):
    _pg(db_backend)
    user = make_user("pat@contoso.test")
    row = db.session.execute(text('SELECT id, email AS address FROM "user" WHERE id = :id'),
                             {"id": user.id}).one()
    assert (row.id, row.address) == (user.id, "pat@contoso.test")
    assert db.session.execute(text("SELECT")).all() == [()]


def test_a_statement_run_again_describes_nothing(app, db_backend, make_user, monkeypatch):
    _pg(db_backend)
    user = make_user("pat@contoso.test")
    query = select(User.id, User.email).where(User.id == user.id)
    assert db.session.execute(query).one() == (user.id, "pat@contoso.test")  # metadata kept
    made = []
    original = psycopg.Column.__init__

    def counted(self, *args):
        made.append(1)
        original(self, *args)
    monkeypatch.setattr(psycopg.Column, "__init__", counted)
    for _ in range(3):
        assert db.session.execute(query).one() == (user.id, "pat@contoso.test")
    assert made == []
