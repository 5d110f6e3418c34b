"""The PostgreSQL connection pool is a stack (``server.db.init_app``): the connection a request
returned last is the next one handed out, so one user's calls in a row meet the same warm
backend, not each connection a burst of parallel requests opened in turn."""
from __future__ import annotations

from sqlalchemy import text

from server import create_app
from server.db import db
from tests.conftest import make_config


def _backend(conn) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def test_the_connection_returned_last_is_handed_out_next(pg_database, tmp_path):
    app = create_app(make_config(pg_database, tmp_path))
    with app.app_context():
        engine = db.engine
        try:
            burst = [engine.connect() for _ in range(3)]  # three requests at once
            pids = [_backend(conn) for conn in burst]
            assert len(set(pids)) == 3
            for conn in burst:  # returned in the order opened
                conn.close()
            for _ in range(5):  # then calls one after another
                with engine.connect() as conn:
                    assert _backend(conn) == pids[-1]
            with engine.connect() as first, engine.connect() as second:
                assert [_backend(first), _backend(second)] == [pids[-1], pids[-2]]
        finally:
            engine.dispose()
