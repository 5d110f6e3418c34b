"""Upgrades lose nothing: a database built at the revision before the newest one and filled
with the demo organization upgrades to the newest, on SQLite and on PostgreSQL, and every
row and every value it held is still there.

The demo is loaded by today's code, so it is loaded into a database at the newest revision
first and copied, column by column that both revisions have, into the older database: the
older database then holds what a real one at that revision would. A revision that drops
or renames a column fails here until it says, in a test of its own, where the data went.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, select, text

from tests.conftest import make_config
from tests.test_migrations import _keep_logging, fresh_postgresql  # noqa: F401

MIGRATIONS = Path(__file__).resolve().parent.parent / "server" / "migrations"


def _steps(count: int) -> list[tuple[str, str]]:
    """The newest ``count`` revisions, each with the one before it, newest first."""
    script = ScriptDirectory(str(MIGRATIONS))
    steps, revision = [], script.get_revision(script.get_current_head())
    while revision is not None and isinstance(revision.down_revision, str) and len(steps) < count:
        steps.append((revision.revision, revision.down_revision))
        revision = script.get_revision(revision.down_revision)
    return steps


# Every recent revision on SQLite (whose ALTER rebuilds tables), the newest on PostgreSQL too.
CASES = ([("sqlite", *step) for step in _steps(5)]
         + [("postgresql", *step) for step in _steps(1)])


def _app(url: str, tmp_path: Path, name: str):
    from server import create_app
    folder = tmp_path / name
    folder.mkdir()
    return create_app(make_config(url, folder))


def _run(app, *args: str) -> None:
    with app.app_context():  # as the flask command runs every command
        result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, (args, result.output, result.exception)


def copy_demo(url: str, tmp_path: Path) -> dict[str, tuple[list[str], list[dict]]]:
    """The demo organization, loaded by today's code into a database at the newest revision,
    copied into the database at ``url`` (at an older revision), column by column that both
    have; {table: (its columns copied, its rows as that database holds them)}."""
    source_url = f"sqlite:///{tmp_path / 'demo.db'}"
    source_app = _app(source_url, tmp_path, "source")
    _run(source_app, "db", "upgrade")
    _run(source_app, "seed-demo")
    source, target = create_engine(source_url), create_engine(url)
    try:
        new, old = MetaData(), MetaData()
        new.reflect(source)
        old.reflect(target)
        held: dict[str, tuple[list[str], list]] = {}
        with target.begin() as conn:
            for table in old.sorted_tables:
                if table.name == "alembic_version" or table.name not in new.tables:
                    continue
                columns = [c.name for c in table.columns if c.name in new.tables[table.name].c]
                missing = [c.name for c in table.columns if c.name not in columns
                           and not c.nullable and c.server_default is None]
                assert not missing, (f"{table.name}.{missing} is gone at the head: say where "
                                     "its data went in a test of that revision")
                with source.connect() as read:
                    rows = [dict(r._mapping) for r in read.execute(
                        select(*(new.tables[table.name].c[c] for c in columns)))]
                if rows:
                    conn.execute(table.insert(), rows)
                held[table.name] = (columns, rows)
            if target.dialect.name == "postgresql":  # ids were given: each sequence past them
                for table in old.sorted_tables:
                    if "id" in table.c and held.get(table.name, ([], []))[1]:
                        conn.execute(text(
                            f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', 'id'), "
                            f"(SELECT max(id) FROM \"{table.name}\"))"))
        assert sum(len(rows) for _, rows in held.values()) > 100, "the demo filled too little"
        # What the older database holds, as its triggers left it (from 0017 on, the rows
        # copied into the stamp's tables changed the organization's security stamp).
        with target.connect() as conn:
            for name, (columns, _) in held.items():
                table = old.tables[name]
                held[name] = (columns, [dict(r._mapping) for r in conn.execute(
                    select(*(table.c[c] for c in columns)))])
        return held
    finally:
        source.dispose()
        target.dispose()


@pytest.mark.parametrize("database, head, previous", CASES)
def test_a_demo_database_at_the_previous_revision_upgrades_whole(database, head, previous,
                                                                 tmp_path, request):
    # An empty database at the revision before, filled with what that revision can hold.
    url = (f"sqlite:///{tmp_path / 'old.db'}" if database == "sqlite"
           else request.getfixturevalue("fresh_postgresql"))
    app = _app(url, tmp_path, "target")
    _run(app, "db", "upgrade", previous)
    held = copy_demo(url, tmp_path)
    _run(app, "db", "upgrade", head)
    target = create_engine(url)
    try:
        upgraded = MetaData()
        upgraded.reflect(target)
        with target.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
        for name, (columns, rows) in held.items():
            table = upgraded.tables[name]
            lost = [c for c in columns if c not in table.c]
            assert not lost, f"{name} lost columns {lost} at {head}"
            with target.connect() as conn:
                after = conn.execute(select(*(table.c[c] for c in columns))).all()
            assert len(after) == len(rows), f"{name}: {len(rows)} rows before, {len(after)} after"
            now = sorted(_key(tuple(r)) for r in after)
            before = sorted(_key(tuple(r[c] for c in columns)) for r in rows)
            changed = [{c: (old, new) for c, old, new in zip(columns, b, a) if old != new}
                       for b, a in zip(before, now) if a != b]
            assert not changed, f"{name} changed at {head}: {changed[:3]}"
    finally:
        target.dispose()


def _key(row: tuple) -> tuple:
    """A row as both databases give it back, comparable and sortable (SQLite and PostgreSQL
    differ in the time zone of naive times, in JSON key order and in binary types only)."""
    return tuple(repr(_normal(v)) for v in row)


def _normal(value):
    if getattr(value, "tzinfo", None) is not None:
        return value.replace(tzinfo=None)
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, memoryview):
        return bytes(value)
    return value
