"""Migrations: ``flask --app server db upgrade`` builds a fresh SQLite file and a fresh
PostgreSQL database, and Alembic's autogenerate then finds no difference between the models
and what the migrations built (a model change without its migration fails here)."""
from __future__ import annotations

import logging
import uuid
from pprint import pformat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from server.db import db
from tests.conftest import PG_ADMIN_URL, make_config


@pytest.fixture(autouse=True)
def _keep_logging():
    """The migration environment runs logging.fileConfig (alembic.ini), which would disable
    the loggers every other test relies on; put them back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            logger.disabled = False


@pytest.fixture
def fresh_postgresql():
    """An empty PostgreSQL database of its own (not the suite's, which create_all fills)."""
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"regarding_migrate_{uuid.uuid4().hex[:10]}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def upgrade_and_compare(url: str, tmp_path):
    from server import create_app

    app = create_app(make_config(url, tmp_path))
    result = app.test_cli_runner().invoke(args=["db", "upgrade"])
    assert result.exit_code == 0, (result.output, result.exception)
    with app.app_context():
        try:
            with db.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
                context = MigrationContext.configure(conn, opts={"compare_type": True})
                diff = compare_metadata(context, db.metadata)
                diff += partial_index_differences(conn)
        finally:
            db.engine.dispose()
    return tables, version, diff


def _index_conditions(conn) -> dict[str, str | None]:
    """Each index's WHERE condition as the database keeps it (None: every row)."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(text("SELECT indexname, indexdef FROM pg_indexes "
                                 "WHERE schemaname = current_schema()"))
    else:
        rows = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                 "AND sql IS NOT NULL"))
    out = {}
    for name, sql in rows:
        where = sql.partition(" WHERE ")[2]
        out[name] = where.strip("() ").lower() or None
    return out


def partial_index_differences(conn) -> list:
    """("index condition", name, the models', the database's) for each index of the models
    whose WHERE differs from the database's (compared without parentheses and case)."""
    found, out = _index_conditions(conn), []
    for table in db.metadata.tables.values():
        for index in table.indexes:
            where = index.dialect_options[conn.dialect.name].get("where")
            wanted = str(where).strip("() ").lower() if where is not None else None
            if index.name in found and found[index.name] != wanted:
                out.append(("index condition", index.name, wanted, found[index.name]))
    return out


def describe(diff) -> str:
    missing = sorted(d[1].name for d in diff if isinstance(d, tuple) and d[0] == "add_table")
    note = (f"\nTables the models have and no migration creates: {missing} — "
            "a migration for them is due." if missing else "")
    return pformat(diff, width=100) + note


def check(tables, version, diff):
    assert version, "alembic_version is empty after upgrade"
    assert {"account", "contact", "activity", "email_address", "user", "record_share"} <= tables
    assert diff == [], describe(diff)


def test_upgrade_a_fresh_sqlite_file_matches_the_models(tmp_path):
    check(*upgrade_and_compare(f"sqlite:///{tmp_path / 'fresh.db'}", tmp_path))


def test_upgrade_a_fresh_postgresql_database_matches_the_models(fresh_postgresql, tmp_path):
    check(*upgrade_and_compare(fresh_postgresql, tmp_path))


def test_upgrade_is_idempotent(tmp_path):
    url = f"sqlite:///{tmp_path / 'twice.db'}"
    first = upgrade_and_compare(url, tmp_path)
    second = upgrade_and_compare(url, tmp_path)
    assert first[:2] == second[:2]
