"""The security stamp: a value in the organization's row that changes with every write to
what a principal is made of (users' roles, teams and their members and roles, roles and their
privileges, secured fields, the business-unit tree) and to the organization's settings.
Database triggers change it (``TRIGGERS``: every write, ORM or Core, by any process), so a
process may keep what it loaded for one stamp and use it again while the stamp read in the
request is the same: the API and
the add-in read it in the same statement as the bearer token, pages in the same statement as
the session's user (``sessions.live_user``), then take the principal's grants and the pane's
organization settings from the process without a round trip each (issue 17 goals 2 and 6,
bench/README.md). Where the stamp was not read (SSO's first request), nothing is kept.

A request that writes anything forgets its stamp (``_forget_on_write``): what it computes
after its own writes is loaded as before, from its own transaction.
"""
from __future__ import annotations

from typing import Any, Callable

from flask import current_app, g, has_app_context
from sqlalchemy import DDL, event
from sqlalchemy.engine import Engine

from server.db import db

# Tables whose writes change the stamp: the principal's inputs (``authz._grants``) and the
# organization's settings. What the principal takes from the user's own row (active, business
# unit) is read with the stamp in every request (``sessions.live_user``, ``tokens.authenticate``).
# ``business_unit``: from migration 0018_unitstamp (the unit tree is kept with the grants).
TABLES = ("user_role", "team_member", "team_role", "security_role", "role_privilege",
          "secured_field", "business_unit")
STORE_LIMIT = 20_000  # entries per process; all forgotten when it is reached

# PostgreSQL: one statement-level trigger per table (TRUNCATE too); the organization's own
# updates take a new stamp in a row trigger. SQLite: row triggers (it has no others).
PG_FUNCTIONS = (
    "CREATE OR REPLACE FUNCTION regarding_bump_security_stamp() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN UPDATE organization SET security_stamp = "
    "floor(random() * 4611686018427387904)::bigint WHERE id = 1; RETURN NULL; END $$",
    "CREATE OR REPLACE FUNCTION regarding_new_security_stamp() RETURNS trigger "
    "LANGUAGE plpgsql AS $$ BEGIN IF NEW.security_stamp IS NOT DISTINCT FROM OLD.security_stamp "
    "THEN NEW.security_stamp := floor(random() * 4611686018427387904)::bigint; END IF; "
    "RETURN NEW; END $$",
)


def ddl(dialect: str) -> list[str]:
    """The statements (re)creating the triggers on ``dialect`` (``postgresql`` or
    ``sqlite``): ``security_stamp_<table>`` on PostgreSQL, ``security_stamp_<table>_<insert,
    update, delete>`` on SQLite, and ``security_stamp_organization``."""
    if dialect == "postgresql":
        out = list(PG_FUNCTIONS)
        for t in TABLES:
            out += [f'DROP TRIGGER IF EXISTS security_stamp_{t} ON "{t}"',
                    f'CREATE TRIGGER security_stamp_{t} AFTER INSERT OR UPDATE OR DELETE OR '
                    f'TRUNCATE ON "{t}" FOR EACH STATEMENT EXECUTE FUNCTION '
                    f'regarding_bump_security_stamp()']
        return out + ["DROP TRIGGER IF EXISTS security_stamp_organization ON organization",
                      "CREATE TRIGGER security_stamp_organization BEFORE UPDATE ON organization "
                      "FOR EACH ROW EXECUTE FUNCTION regarding_new_security_stamp()"]
    out = [f'CREATE TRIGGER IF NOT EXISTS security_stamp_{t}_{op.lower()} AFTER {op} ON "{t}" '
           f"BEGIN UPDATE organization SET security_stamp = random() WHERE id = 1; END"
           for t in TABLES for op in ("INSERT", "UPDATE", "DELETE")]
    return out + ["CREATE TRIGGER IF NOT EXISTS security_stamp_organization AFTER UPDATE ON organization "
                  "WHEN NEW.security_stamp IS OLD.security_stamp BEGIN UPDATE organization "
                  "SET security_stamp = random() WHERE id = NEW.id; END"]


@event.listens_for(db.metadata, "after_create")
def _create_triggers(target, connection, **kw):
    """``db.create_all()`` makes the triggers as the migrations ``0017_stamp`` and
    ``0018_unitstamp`` do."""
    for statement in ddl(connection.dialect.name):
        connection.execute(DDL(statement))


# -- in a request ---------------------------------------------------------------------------------

def remember(stamp: int | None) -> None:
    """The stamp read with the request's credentials (None: the organization has none)."""
    g.security_stamp = stamp


def current() -> int | None:
    """The request's stamp, unless the request wrote something (pending writes are flushed
    first, as a query would)."""
    if not has_app_context() or g.get("security_stamp") is None:
        return None
    session = db.session()
    if session.autoflush:
        session.flush()
    return g.get("security_stamp")


@event.listens_for(Engine, "before_cursor_execute")
def _forget_on_write(conn, cursor, statement, parameters, context, executemany):
    if has_app_context() and "security_stamp" in g and not statement.lstrip()[:6].upper() == "SELECT":
        g.pop("security_stamp", None)


def kept(name: str, keys, load: Callable[[list], dict]) -> dict:
    """``load(missing keys) -> {key: value}`` for the ``keys`` this process has not kept
    for the request's stamp; kept values for the rest (nothing is kept without a stamp)."""
    stamp = current()
    if stamp is None:
        return load(list(keys))
    store: dict[tuple, tuple[int, Any]] = current_app.extensions.setdefault(
        "regarding_stamped", {})
    out, missing = {}, []
    for key in keys:
        hit = store.get((name, key))
        if hit is not None and hit[0] == stamp:
            out[key] = hit[1]
        else:
            missing.append(key)
    if missing:
        loaded = load(missing)
        if len(store) + len(loaded) > STORE_LIMIT:
            store.clear()
        for key, value in loaded.items():
            store[(name, key)] = (stamp, value)
        out.update(loaded)
    return out
