"""What describing a result costs the client on PostgreSQL: psycopg's ``RawCursor``, which
builds ``cursor.description`` (a ``Column`` object per column) each time it is read, against
the app's cursor (``server.db.described_on_demand``), which builds it only when something
reads it, in one run, interleaved.

Two figures, client CPU (``time.process_time``) medians:

* ``cursor.description`` read once after a statement with ``--columns`` columns, as
  SQLAlchemy reads it after every statement;
* a whole ``Session.execute`` of a cached ``select()`` of that many columns, rows fetched,
  through two engines that differ only in the cursor: SQLAlchemy keeps the statement's
  result metadata after its first run, so the app's cursor builds no column afterwards.

The server's own work is the same for both and not counted. It asserts nothing.

Run: ``.venv/bin/python bench/description.py [--columns 58] [--runs 3000]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import literal, select  # noqa: E402


def _median_us(samples: list[int]) -> float:
    return statistics.median(samples) / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--columns", type=int, default=58,
                        help="columns of the result (a timeline page has 58)")
    parser.add_argument("--runs", type=int, default=3000)
    args = parser.parse_args()
    import psycopg

    from bench.scratch import bench_app, scratch_database
    from server.db import db

    url, drop = scratch_database("postgresql", "description")
    try:
        apps = {"psycopg's RawCursor": bench_app(url, "description", SQLALCHEMY_ENGINE_OPTIONS={
                    "connect_args": {"cursor_factory": psycopg.RawCursor}}),
                "described on demand": bench_app(url, "description")}
        names = list(apps)
        statement = select(*(literal(n).label(f"column_{n}") for n in range(args.columns)))
        sql = "SELECT " + ", ".join(f"{n} AS column_{n}" for n in range(args.columns))
        read: dict[str, list[int]] = {name: [] for name in names}
        executed: dict[str, list[int]] = {name: [] for name in names}
        contexts = {name: app.app_context() for name, app in apps.items()}
        cursors = {}
        for name in names:
            with contexts[name]:
                connection = db.engine.raw_connection()
                cursors[name] = (connection, connection.cursor())
                assert db.session.execute(statement).one()[-1] == args.columns - 1
                db.session.remove()
        print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{args.columns} columns, {args.runs} runs each, interleaved", flush=True)
        for run in range(args.runs):
            for name in (names if run % 2 else names[::-1]):
                cursor = cursors[name][1]
                cursor.execute(sql)
                started = time.process_time_ns()
                description = cursor.description
                read[name].append(time.process_time_ns() - started)
                assert len(description) == args.columns
                with contexts[name]:
                    started = time.process_time_ns()
                    db.session.execute(statement).one()
                    db.session.remove()
                    executed[name].append(time.process_time_ns() - started)
        for name in names:
            print(f"  {name:22s} cursor.description {_median_us(read[name]):7.1f} us   "
                  f"Session.execute + rows {_median_us(executed[name]):7.1f} us")
        saved = _median_us(executed[names[0]]) - _median_us(executed[names[1]])
        print(f"  saved a statement: {saved:.1f} us of client CPU; "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for connection, cursor in cursors.values():
            cursor.close()
            connection.close()
        for name, app in apps.items():
            with contexts[name]:
                db.engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
