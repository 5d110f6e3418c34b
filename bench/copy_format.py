"""What ``server.bulk.insert_rows`` costs on PostgreSQL in COPY's binary form against its text
form, for rows like a tracked email's (a subject, an HTML and a text body, the headers as
JSON, a flag, a number, a time), interleaved in one process.

Each round writes ``--rows`` rows (bodies of about ``--kb`` KB in all) once in each form into
tables of the same shape, commits, and reads the CPU of this process and of its PostgreSQL
backend around it; the text form is had by telling ``insert_rows`` no binary form fits
(``_binary_types`` answering None), as it does for a value the binary form does not take.
It prints the medians and the load average; it asserts nothing.

Run: ``.venv/bin/python bench/copy_format.py [--rows 200] [--kb 40] [--rounds 30]``
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import string
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import JSON, Boolean, Column, Integer, MetaData, String, Table, Text  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200, help="rows a COPY (a sync batch: 200)")
    parser.add_argument("--kb", type=int, default=40, help="KB of bodies a row")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()

    from bench.scratch import bench_app, scratch_database
    from server import bulk
    from server.db import UTCDateTime, db

    metadata = MetaData()
    tables = {form: Table(f"copy_{form}", metadata, Column("id", Integer, primary_key=True),
                          Column("subject", String(400)), Column("html_body", Text),
                          Column("text_body", Text), Column("headers", JSON),
                          Column("flag", Boolean), Column("n", Integer),
                          Column("at", UTCDateTime()))
              for form in ("text", "binary")}
    rng = random.Random(1)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(5000)]

    def body(size: int) -> str:
        return "<p>" + " ".join(rng.choices(words, k=size // 6)) + "</p>\n\ta tab, a \\ backslash"
    size = args.kb * 1000
    rows = [dict(subject=f"Subject {i}", html_body=body(size * 2 // 3), text_body=body(size // 3),
                 headers={"Received": ["from mx.example.com by mx.example.net"] * 5},
                 flag=bool(i % 2), n=i, at=datetime(2026, 1, 1, tzinfo=timezone.utc))
            for i in range(args.rows)]
    binary_types = bulk._binary_types

    url, drop = scratch_database("postgresql", "copyformat")
    try:
        app = bench_app(url, "copyformat")
        with app.app_context():
            metadata.create_all(db.engine)
            pid = db.session.connection().connection.dbapi_connection.info.backend_pid

            def cpu() -> tuple[float, float]:
                with open(f"/proc/{pid}/schedstat") as fh:
                    return time.process_time(), int(fh.read().split()[0]) / 1e9
            samples: dict[str, list[tuple[float, float]]] = {"text": [], "binary": []}
            print(f"{args.rows} rows of about {args.kb} KB a COPY, {args.rounds} rounds, "
                  f"interleaved; load {_load()}", flush=True)
            for n in range(args.rounds):
                for form in (("text", "binary") if n % 2 else ("binary", "text")):
                    bulk._binary_types = binary_types if form == "binary" \
                        else (lambda *args: None)
                    client, server = cpu()
                    bulk.insert_rows(db.session.connection(), tables[form], rows)
                    db.session.commit()
                    after = cpu()
                    samples[form].append((after[0] - client, after[1] - server))
                for table in tables.values():
                    db.session.execute(table.delete())
                db.session.commit()
            bulk._binary_types = binary_types
            for form, taken in samples.items():
                kept = taken[2:]  # the first rounds warm the caches
                client = statistics.median(c for c, _ in kept) * 1000
                print(f"  {form:6s} form: this process {client:6.1f} ms, "
                      f"the server {statistics.median(s for _, s in kept) * 1000:6.1f} ms a COPY "
                      "(CPU medians, the commit included)")
            print(f"  load {_load()}")
            db.session.remove()
            metadata.drop_all(db.engine)
            db.engine.dispose()
    finally:
        drop()


if __name__ == "__main__":
    main()
