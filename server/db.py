"""Storage: the SQLAlchemy extension, the declarative base, and database-specific glue.

SQLite is the embedded default (WAL, foreign keys on; the sync worker's threads take the
write lock as their transactions begin: ``writer_thread``, ``immediate_transactions``);
PostgreSQL is the scale-out choice.
Migrations live in ``server/migrations`` (Alembic through Flask-Migrate:
``flask --app server db upgrade``).
"""
from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import (ARRAY, DateTime, Index, MetaData, String, TypeDecorator, any_,
                        bindparam, event, text)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, registry

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def set_rows_index(name: str, *columns: str) -> Index:
    """An index of the rows whose first column is set (``WHERE <column> IS NOT NULL``, a
    partial index on SQLite and PostgreSQL): for a column most rows leave empty, such as
    the one record of five an activity is regarding. An index of every row took an entry
    (and on PostgreSQL a WAL record) for each empty value on every insert; both databases
    use this one for ``<column> = ...``, ``IN`` and ``= ANY``, which imply the column is
    set, foreign-key actions included (bench/README.md, "Issue 17 goal 2: fewer index
    entries, statistics for a growing table"). Not for a column searched with ``IS NULL``."""
    where = text(f"{columns[0]} IS NOT NULL")
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given; use an aware UTC datetime")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        zone = value.tzinfo
        if zone is timezone.utc:  # PostgreSQL's sessions are in UTC (``utc_sessions``)
            return value
        if zone is None:
            return value.replace(tzinfo=timezone.utc)
        # A session in another time zone answers in it: bring it back to UTC.
        return value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    registry = registry(metadata=MetaData(naming_convention=NAMING),
                        type_annotation_map={datetime: UTCDateTime()})


db = SQLAlchemy(model_class=Base)
def _render_item(type_, obj, autogen_context):
    """Migrations stay free of application imports: our column types render as plain ones."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if type_ == "type" and isinstance(obj, TypeDecorator):  # e.g. EncryptedText: stored as its impl
        return f"sa.{type(obj.impl).__name__}()"
    return False


migrate = Migrate(directory=str(Path(__file__).parent / "migrations"), compare_type=True,
                  render_as_batch=True, render_item=_render_item)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


STATEMENT_CACHE_SIZE = 500
NEVER_BY_COUNT = 2 ** 62  # psycopg's prepare_threshold: only marked statements are prepared
_statements: dict[tuple, Any] = {}


def cached_statement(key: tuple, build: Callable[[], Any], *, prepared: bool = False):
    """The statement ``build`` makes, built once per ``key``: the key holds every value the
    statement embeds (a principal's ``scope_key``, its shape; the database dialect is added
    here); the rest are bind parameters. Building the pane's statements costs more than
    running them. ``prepared``: see :func:`prepared`."""
    key = (db.engine.dialect.name, *key)
    statement = _statements.get(key)
    if statement is None:
        if len(_statements) >= STATEMENT_CACHE_SIZE:
            _statements.clear()
        statement = _statements[key] = prepared_statement(build()) if prepared else build()
    return statement


def select_rows(statement, params: dict | None = None):
    """The rows of a statement of columns (no entities) in the session's transaction, after
    flushing what is pending as the session's own ``execute`` would. It runs on the
    session's connection: about a third less client CPU per statement than
    ``db.session.execute``, whose ORM layer has nothing to do for such a statement (the
    pane runs seven a call: bench/README.md, issue 17 goal 6). Read them at once (``.all()``,
    ``.one()``): psycopg's cost is per fetch call, about 3 us a row fetched one by one."""
    session = db.session()
    if session.autoflush:
        session.flush()
    return session.connection().execute(statement, params or {})


def statements_commit_alone() -> None:
    """PostgreSQL: the session's statements in this request each run as their own transaction
    (psycopg's autocommit), so no ``BEGIN`` and no ``COMMIT`` or ``ROLLBACK`` go to the
    server: two round trips fewer, each of which waits for a backend woken from idle when
    calls come at a user's pace (issue 17 goals 2 and 6, bench/README.md). Only for requests
    that read (a read committed transaction gives each statement its own snapshot anyway):
    the pane's reads (``web.addin_api.READS``), the pages that show records and activities
    (``web.pages.READS``) and the REST API's GETs; what one writes (a token's last use) is
    committed at once. Call it before the session's first statement, and again after a
    commit (which gives the connection back); a session whose transaction has begun keeps
    it (the statements run in it: a test's session, which its requests share). SQLite:
    nothing changes (its reads open no transaction)."""
    if db.engine.dialect.name == "postgresql" and not db.session().in_transaction():
        db.session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


PREPARED = "regarding_prepared"
GENERIC = "regarding_generic_plan"


def prepared_statement(statement, *, generic: bool = False):
    """``statement`` marked to run as a server-side prepared statement on PostgreSQL, whose
    plan PostgreSQL may then keep for every later run (a *generic* plan, made without the
    parameter values). Only for statements whose best plan does not depend on the values:
    lookups by a key or by ids, small tables, a timeline page whose every branch is an index
    walk cut at one page (``timeline._preparable``). Never for one whose plan depends on
    skewed values (the timeline's one-query plan: a generic plan read the whole activity
    table, bench/README.md). Planning is most of PostgreSQL's time for the pane's statements
    (issue 17 goal 6). Kept across a ROLLBACK (``prepared_plans``). Nothing else is
    prepared (``prepare_threshold``, ``init_app``); SQLite ignores the mark.

    ``generic``: the generic plan from the first run, however PostgreSQL would cost it
    against a custom one (``plan_cache_mode``, set for this statement alone). Left to
    choose, it planned the timeline's page statement on every run: the generic plan's
    estimate was dearer though it runs as fast (bench/README.md, "Issue 17 goal 2: the
    timeline page prepared"). The setting cannot stay on for the session: the unprepared
    statements (the extended protocol's unnamed ones) would get plans made without their
    values too. So the statement goes between ``SET LOCAL plan_cache_mode`` and its reset
    in one pipeline, one round trip with the statement's own (``_execute_prepared``); in
    autocommit (``statements_commit_alone``) without the reset, as the pipeline up to its
    Sync is a transaction of its own, and the setting ends with it."""
    options = {PREPARED: True}
    if generic:
        options[GENERIC] = True
    return statement.execution_options(**options)


def in_values(column, name: str):
    """``column IN`` the list bound as ``name``. On PostgreSQL ``column = ANY(array)``: one
    statement text however many values (an expanding ``IN`` is a new statement for every
    length, so a prepared one would never be reused); elsewhere an expanding ``IN``. Built
    for one dialect: use it inside ``cached_statement``. The array's type has no length (a
    cast to ``VARCHAR(n)[]`` would cut a longer value to a prefix that may match, where
    ``IN`` does not)."""
    if db.engine.dialect.name == "postgresql":
        element = column.type
        if isinstance(element, String) and element.length is not None:
            element = element.copy()
            element.length = None
        return column == any_(bindparam(name, type_=ARRAY(element)))
    return column.in_(bindparam(name, expanding=True))


@event.listens_for(Engine, "do_execute")
def _execute_prepared(cursor, statement, parameters, context):
    """Run a statement marked by ``prepared_statement`` prepared (psycopg only), its integers
    sent as ``int8`` (``_as_int8``); one marked ``generic`` between the two settings of
    ``plan_cache_mode``, in one pipeline (psycopg sends the three, and the BEGIN the
    transaction may still need, in one round trip, and has every result when the pipeline
    ends: the statement's rows are then on ``cursor`` as after a plain execute)."""
    options = context.execution_options
    if not options.get(PREPARED) or context.dialect.driver != "psycopg":
        return None
    from psycopg.types.numeric import Int8
    if isinstance(parameters, dict):
        parameters = {k: _as_int8(v, Int8) for k, v in parameters.items()}
    else:
        parameters = [_as_int8(v, Int8) for v in parameters]
    if not options.get(GENERIC):
        cursor.execute(statement, parameters, prepare=True)
        return True
    connection = cursor.connection
    with connection.pipeline():
        connection.execute(b"SET LOCAL plan_cache_mode = force_generic_plan")
        cursor.execute(statement, parameters, prepare=True)
        if not connection.autocommit:
            # In autocommit (``statements_commit_alone``) the pipeline is the transaction,
            # and the setting ends with it.
            connection.execute(b"SET LOCAL plan_cache_mode TO DEFAULT")
    return True


def _as_int8(value, Int8):
    """A Python int (or a list of them) as PostgreSQL's ``int8``: psycopg sends an int as
    ``int2``, ``int4`` or ``int8`` by its value and keys its prepared statements by their
    parameters' types, so the same statement for a record with a small id and one with a
    large id was prepared (and planned) twice. An ``int4`` column compared with an ``int8``
    value still uses its btree index (the operator family holds both). Booleans and
    ``IntEnum`` members stay as they are (only plain ``int``)."""
    if type(value) is int:
        return Int8(value)
    if type(value) is list and value and all(type(v) is int or v is None for v in value):
        return [v if v is None else Int8(v) for v in value]
    return value


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, connection_record):
    """Foreign keys on and WAL for every SQLite connection (no effect on PostgreSQL); the
    database file and its WAL and shared-memory files readable by this account only."""
    module = type(dbapi_connection).__module__
    if module.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        path = next((row[2] for row in cursor.execute("PRAGMA database_list") if row[1] == "main"), "")
        cursor.close()
        _owner_only(path)


@event.listens_for(Engine, "savepoint")
def _savepoint_inside_a_transaction(connection, _name):
    """SQLite, where the driver begins transactions itself (the web app; every thread but a
    worker's, ``immediate_transactions``): it begins one only before a write, so a savepoint
    opened first would start SQLite's transaction itself, and its release would commit the
    session's work so far, out of the session's hands (a later rollback undid nothing). The
    session's transaction is begun first, deferred, as the driver would have begun it."""
    dbapi_connection = connection.connection.dbapi_connection
    if type(dbapi_connection).__module__.startswith("sqlite3") \
            and dbapi_connection.isolation_level is not None \
            and not dbapi_connection.in_transaction:
        connection.exec_driver_sql("BEGIN")


def _owner_only(path: str) -> None:
    """Mode 0600 for an SQLite database and its -wal/-shm files (SQLite gives files it
    creates later the database file's mode)."""
    for name in (path, f"{path}-wal", f"{path}-shm") if path else ():
        try:
            if os.stat(name).st_mode & 0o077:
                os.chmod(name, 0o600)
        except FileNotFoundError:
            pass


class _ThreadRole(threading.local):
    immediate = False  # this thread's SQLite transactions begin IMMEDIATE


_role = _ThreadRole()
_serialized: weakref.WeakSet = weakref.WeakSet()


def writer_thread(on: bool = True) -> bool:
    """Mark the calling thread as one of the sync worker's (see ``immediate_transactions``);
    returns what it was."""
    was = _role.immediate
    _role.immediate = on
    return was


def immediate_transactions(engine: Engine) -> None:
    """SQLite: the worker's transactions take the write lock as they begin (``BEGIN
    IMMEDIATE``), so its threads (runs, heartbeat, push) queue for it (``busy_timeout``)
    instead of failing: in WAL mode a transaction that read first and then writes after
    another connection committed gets "database is locked" at once, without waiting.

    Other threads of the process (a test, a shell) keep the driver's own transactions, as
    the web app has them: reads outside a transaction, each seeing the latest commit, and
    a deferred ``BEGIN`` just before the first write, which waits for the lock too. (A plain
    ``BEGIN`` for them read first and then failed the same way when a worker thread
    committed in between: a test's read-then-update beside a running worker.)"""
    if engine in _serialized:
        return

    @event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below

    @event.listens_for(engine, "begin")
    def _begin(connection):
        dbapi_connection = connection.connection.dbapi_connection
        if _role.immediate:
            dbapi_connection.isolation_level = None
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            dbapi_connection.isolation_level = ""  # the driver begins before a write

    _serialized.add(engine)
    engine.dispose()  # pooled connections made before are replaced by ones set up so


def init_app(app) -> None:
    # Statement parameters carry message bodies and secrets: keep them out of error text and
    # logs (a failed INSERT of an email would otherwise quote its body).
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {}).setdefault("hide_parameters", True)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql+psycopg"):
        # No server-side prepared statements but those marked (``prepared_statement``):
        # after five runs psycopg would prepare any query, and PostgreSQL may switch it to a
        # generic plan made without the parameter values, which is wrong for skewed data
        # (one busy account's timeline took 680 ms instead of 10: bench/README.md). psycopg
        # prepares nothing at all with a threshold of None, so the threshold is one no
        # statement reaches. (A transaction-pooling PgBouncer needs 1.21 or later, with
        # max_prepared_statements set, for the marked ones.)
        options = app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {})
        options.setdefault("connect_args", {}).setdefault("prepare_threshold", NEVER_BY_COUNT)
        # Statements go with PostgreSQL's own $1 placeholders (a raw cursor): with %(name)s
        # psycopg rewrites every statement's text on the client, and does not cache the
        # rewrite for a statement over 4 KB or 50 parameters (a batch's multi-row INSERTs,
        # its lookups by many ids): 4.4x the client CPU for multi-row INSERTs (bench/README.md,
        # "Issue 17 goal 2").
        options["connect_args"].setdefault("cursor_factory", described_on_demand())
        options.setdefault("paramstyle", "numeric_dollar")
        # The connection used last is handed out next (the pool is a stack, not a queue).
        # A queue deals one user's calls round-robin over every connection a burst opened
        # (a page's twenty parallel script requests): each call then meets a PostgreSQL
        # backend idle since that connection's last turn, its caches cold (the pane in
        # Chromium: issue 17 goal 6, bench/README.md). The connections a stack leaves
        # unused stay idle.
        options.setdefault("pool_use_lifo", True)
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        # Created owner-only before SQLite creates it with the process's umask.
        path = Path(url[len("sqlite:///"):].split("?", 1)[0])
        if not path.exists() and path.parent.is_dir():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    db.init_app(app)
    with app.app_context():
        for engine in db.engines.values():
            if engine.dialect.name == "postgresql":
                utc_sessions(engine)
                postgresql_writes(engine)
                if engine.dialect.driver == "psycopg":
                    prepared_plans(engine)
    migrate.init_app(app, db)


def described_on_demand():
    """psycopg's ``RawCursor`` whose ``description`` is built only when it is read.

    SQLAlchemy takes every result's ``cursor.description``, and psycopg builds it anew each
    time: a ``Column`` object per column, each looking up its type. For a statement it has
    run before SQLAlchemy keeps the result's metadata and only checks that a description
    exists, so the list was thrown away unread: 43 us of client CPU for a timeline page's 58
    columns, close to what psycopg's own execute and fetch of it cost (bench/description.py;
    bench/README.md, "Issue 17 goal 2 on the ninth session's machine"). Here
    ``description`` is a sequence of the same columns, made on first use from the result
    it was taken of, even after the cursor has moved on to another."""
    global _DescribedCursor
    if _DescribedCursor is None:
        import psycopg
        from psycopg import pq

        class Description(Sequence):
            # What psycopg's ``Column`` reads of a cursor (``pgresult``, ``_encoding``,
            # ``adapters``), as of the result it describes.
            __slots__ = ("pgresult", "_encoding", "adapters", "_columns")

            def __init__(self, cursor, result):
                self.pgresult, self._columns = result, None
                self._encoding, self.adapters = cursor._encoding, cursor.adapters

            def _made(self) -> list:
                if self._columns is None:
                    self._columns = [psycopg.Column(self, i) for i in range(self.pgresult.nfields)]
                return self._columns

            def __len__(self) -> int:
                return self.pgresult.nfields

            def __getitem__(self, index):
                return self._made()[index]

            def __repr__(self) -> str:
                return repr(self._made())

        rows = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.SINGLE_TUPLE, pq.ExecStatus.TUPLES_CHUNK)

        class DescribedCursor(psycopg.RawCursor):
            @property
            def description(self):
                result = self.pgresult
                if result and (result.nfields or result.status in rows):
                    return Description(self, result)
                return None

        _DescribedCursor = DescribedCursor
    return _DescribedCursor


_DescribedCursor = None


def utc_sessions(engine: Engine) -> None:
    """PostgreSQL sessions in UTC (``SET TIME ZONE 'UTC'`` as each connection is made), as
    SQLite's stored times are: psycopg then reads a ``timestamptz`` as a datetime in
    ``timezone.utc`` and ``UTCDateTime`` passes it through. In the server's zone (``Etc/UTC``
    here: psycopg makes a ``ZoneInfo`` of any name but ``UTC``) psycopg converted each value
    to that zone and ``UTCDateTime`` back to UTC: 0.59 against 0.26 ms of client CPU for 2,000
    values, about a tenth of PostgreSQL's extra client CPU for a timeline page
    (bench/README.md, issue 17 goal 2, fifth session). Nothing the app asks of the database
    depends on the session's zone (no ``date_trunc`` or casts to ``date``)."""

    @event.listens_for(engine, "connect")
    def _utc(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        dbapi_connection.commit()  # a session setting made in a transaction ends with it


def postgresql_writes(engine: Engine) -> None:
    """What writing costs the PostgreSQL server, made closer to SQLite's (bench/README.md,
    "Issue 17 goal 2"):

    * an INSERT given many rows (``execute(insert(table), rows)``, the ORM's inserts of rows
      whose ids it knows) becomes multi-row ``INSERT ... VALUES (...), (...)`` statements
      (SQLAlchemy's "insertmanyvalues", up to 1,000 rows each), as it already does for
      INSERTs that return ids. Left to psycopg 3, an executemany sends the INSERT once per
      row (pipelined, but parsed, planned and run one by one by the server): a batch's
      decision rows, parties and emails;
    * values large enough to be compressed (email bodies) are compressed with LZ4 instead of
      the default pglz, where the server has it (PostgreSQL 14 and later, built with lz4):
      pglz took 0.74 s of the server's CPU per 1,000 bodies of 28 KB, LZ4 0.11 s (and
      stores them about twice as large as pglz; SQLite does not compress at all). Values
      stored before stay as they are; both read the same."""
    engine.dialect.use_insertmanyvalues_wo_returning = True

    @event.listens_for(engine, "connect")
    def _lz4(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT set_config('default_toast_compression', 'lz4', false) "
                           "FROM pg_settings WHERE name = 'default_toast_compression' "
                           "AND 'lz4' = ANY(enumvals)")
        dbapi_connection.commit()


def commit_unflushed() -> None:
    """The session's transaction commits without waiting for the disk: on PostgreSQL
    ``synchronous_commit`` is off for this transaction only (``SET LOCAL``), so its COMMIT
    returns once the WAL is written to the operating system, not flushed to the disk; the
    server flushes it within ``3 * wal_writer_delay`` (600 ms by default). The sync
    engine's message batches use it: SQLite's WAL mode with ``synchronous=NORMAL`` (above)
    makes the same trade for every transaction. What a crash of the server (or the machine)
    in that window can lose is the last batches whole (their activities, decisions and
    folder cursor are one transaction, never part of one): the next sync reads that mail
    again, and mail whose category was already written back is tracked by it. Nothing is
    ever half written or corrupt. The sync's commit waited 1-5 ms for the disk on the
    bench machine, once per batch (bench/README.md, "Issue 17 goal 2: PostgreSQL ingest,
    emails by COPY"). Nothing on SQLite."""
    if db.engine.dialect.name == "postgresql":
        db.session.connection().exec_driver_sql("SET LOCAL synchronous_commit TO off")


STATISTICS_FLOOR = 1000  # rows changed before ``refresh_statistics`` looks at a table
STATISTICS_PAGES = 8  # or pages on disk (twice those at its last analysis) before it does


def refresh_statistics(*tables) -> None:
    """PostgreSQL: ``ANALYZE`` each of ``tables`` (SQLAlchemy tables) whose rows changed
    more since its last analysis than it held then (and at least ``STATISTICS_FLOOR``), in
    the session's transaction: a sync batch calls it just before it commits (the analysis
    counts the batch's own rows, and costs no transaction of its own). A table that grows
    from nothing (a new installation's first sync, a mailbox's thousands of decisions) is
    otherwise planned as the few rows it held when last analyzed until autovacuum comes
    round (once a minute at best): a batch's lookups by Message-ID scanned the whole
    ``email`` table and its decision lookup read every decision of the mailbox, which made
    an initial sync quadratic (bench/README.md, "Issue 17 goal 2: fewer index entries,
    statistics for a growing table"). The counts are the server's
    (``pg_stat_get_mod_since_analyze``: every session's changes, as the server last
    collected them, at most once a second), so a table is also analyzed when its size on
    disk, which does not lag, passes twice the pages it had when last analyzed (and
    ``STATISTICS_PAGES``): a first sync's batches come faster than the counts, and for its
    first second the decision lookup's plan, made for an empty table, compared every row
    with each of the wave's identities (bench/README.md, "Issue 17 goal 2 on the eleventh
    session's machine"). A table another session is analyzing or
    vacuuming is skipped, not waited for (``SKIP_LOCKED``); one the database user does not
    own is skipped with the server's warning. Nothing on SQLite, whose planner does not use
    statistics it has not been asked to gather."""
    if db.engine.dialect.name != "postgresql" or not tables:
        return
    grown = db.session.execute(text(
        "SELECT c.relname FROM pg_class c WHERE c.oid = ANY(CAST(:tables AS regclass[])) "
        "AND (pg_stat_get_mod_since_analyze(c.oid) > greatest(:floor, c.reltuples) "
        "OR pg_relation_size(c.oid) > greatest(:pages, 2 * c.relpages) "
        "* current_setting('block_size')::int)"),
        {"tables": [t.name for t in tables], "floor": STATISTICS_FLOOR,
         "pages": STATISTICS_PAGES}).scalars().all()
    if not grown:
        return
    quote = db.engine.dialect.identifier_preparer.quote
    try:  # in a savepoint: a failed analysis (a statement timeout) leaves the batch whole
        with db.session.begin_nested():
            db.session.execute(text(f"ANALYZE (SKIP_LOCKED) {', '.join(quote(t) for t in grown)}"))
    except DBAPIError as exc:
        logging.getLogger(__name__).warning("ANALYZE of %s failed: %s", ", ".join(grown),
                                            type(exc.orig).__name__)


def prepared_plans(engine: Engine) -> None:
    """Prepared statements (``prepared_statement``) kept when a transaction ends with a
    ROLLBACK, as every read-only request's does.

    psycopg's ``Connection.rollback`` sends ``DEALLOCATE ALL`` after every ROLLBACK (its
    ``_rollback_gen``, in case the transaction dropped or re-created an object a statement
    uses), and a read-only request ends with one (the session's close): each request
    parsed and planned its prepared statements again, so only requests that committed
    (the pane's) kept them. Here the ROLLBACK goes through libpq directly
    (``pgconn.exec_``, psycopg's documented low-level access) and the statements stay.
    PostgreSQL itself re-plans a prepared statement whose tables changed; the app changes
    its schema only in migrations, on connections of their own. Anything unusual (a
    pipeline, a two-phase transaction, a failed ROLLBACK) goes to psycopg's own rollback."""
    import psycopg
    from psycopg import pq

    default = engine.dialect.do_rollback

    def do_rollback(connection):
        # SQLAlchemy passes its pool's proxy of the connection.
        dbapi_connection = getattr(connection, "dbapi_connection", connection)
        pgconn = getattr(dbapi_connection, "pgconn", None)
        status = pgconn.transaction_status if pgconn is not None else None
        if status not in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR) \
                or getattr(dbapi_connection, "_pipeline", None) is not None \
                or getattr(dbapi_connection, "_tpc", None) is not None \
                or not isinstance(dbapi_connection, psycopg.Connection):
            return default(dbapi_connection)
        result = pgconn.exec_(b"ROLLBACK")
        if result.status != pq.ExecStatus.COMMAND_OK:
            return default(dbapi_connection)
        return None

    engine.dialect.do_rollback = do_rollback

