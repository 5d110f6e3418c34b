"""SQLite in a process where the sync worker runs (``server.db.immediate_transactions``): the
worker's threads begin their transactions with the write lock, and any other thread (a
test, a shell) keeps the driver's own transactions, as the web app has them. A thread that
read and then writes after a worker thread committed in between is not refused ("database
is locked", which SQLite gives a stale read transaction at once, without waiting)."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import text

from server import create_app
from server.db import db, immediate_transactions, writer_thread
from tests.conftest import make_config


@pytest.fixture
def counter_app(tmp_path):
    """An app on SQLite with a table of two counters, as the web app runs (no worker)."""
    app = create_app(make_config(f"sqlite:///{tmp_path / 'writers.db'}", tmp_path))
    with app.app_context():
        with db.engine.begin() as conn:
            conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
            conn.execute(text("INSERT INTO counter VALUES (1, 0), (2, 0)"))
        yield app
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def sqlite_app(counter_app):
    """The same in a process where a worker runs."""
    immediate_transactions(db.engine)
    return counter_app


def _in_worker_thread(app, work) -> None:
    """Run ``work()`` in a thread marked as the worker's, in its own app context."""
    failed: list[BaseException] = []

    def run():
        writer_thread()
        try:
            with app.app_context():
                work()
                db.session.remove()
        except BaseException as exc:  # reported in the calling thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    assert not thread.is_alive() and not failed, failed


def _counts() -> list[int]:
    with db.engine.connect() as conn:
        return list(conn.execute(text("SELECT n FROM counter ORDER BY id")).scalars())


def _bump(row: int) -> None:
    db.session.execute(text("UPDATE counter SET n = n + 1 WHERE id = :id"), {"id": row})
    db.session.commit()


def test_a_read_then_a_write_beside_a_worker_that_committed_in_between(sqlite_app):
    assert db.session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar() == 0
    _in_worker_thread(sqlite_app, lambda: _bump(2))  # the worker commits meanwhile
    _bump(1)  # refused at once with "database is locked" when the read began a transaction
    assert _counts() == [1, 1]


def test_a_write_waits_for_the_lock_a_worker_thread_holds(sqlite_app):
    holding, release = threading.Event(), threading.Event()

    def hold_the_lock():
        db.session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the write lock, at once
        holding.set()
        release.wait(30)
        _bump(2)

    thread = threading.Thread(target=_in_worker_thread, args=(sqlite_app, hold_the_lock))
    thread.start()
    assert holding.wait(30)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    _bump(1)  # queues behind the worker's transaction (busy_timeout) instead of failing
    thread.join(30)
    assert _counts() == [1, 1]


@pytest.mark.parametrize("beside_a_worker", [False, True])
def test_writes_stay_all_or_nothing_and_a_savepoint_opened_first_commits_nothing(
        counter_app, beside_a_worker):
    """Without a worker in the process (the web app) and beside one, the driver begins the
    transaction before the first write; a savepoint opened before any write still belongs
    to the session's transaction (SQLite itself would commit everything at the release of
    an outermost savepoint, and the rollback would undo nothing)."""
    if beside_a_worker:
        immediate_transactions(db.engine)
    with db.session.begin_nested():  # the transaction's first statement
        db.session.execute(text("UPDATE counter SET n = 1 WHERE id = 1"))
    db.session.execute(text("UPDATE counter SET n = 1 WHERE id = 2"))
    db.session.rollback()
    assert _counts() == [0, 0]
    db.session.execute(text("UPDATE counter SET n = 7 WHERE id = 1"))
    with db.session.begin_nested():
        db.session.execute(text("UPDATE counter SET n = 7 WHERE id = 2"))
    db.session.commit()
    assert _counts() == [7, 7]
