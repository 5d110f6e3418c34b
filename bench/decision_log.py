"""What deleting a tracked email costs beside a large decision log, with and without the
index on ``message_decision.activity_id`` (migration 0020_fkindexes), on SQLite and
PostgreSQL, side by side in one run.

Every message a mailbox has seen has a decision row; the tracked ones point at their
activity, and deleting the activity clears that pointer (``ON DELETE SET NULL``). The bench
fills ``--decisions`` rows (one in ten tracked) for one mailbox, then deletes ``--deletes``
tracked activities one per transaction, as people delete emails: first with the index
(today's schema), then, on the same data, with the index dropped (the schema before 0020).
It prints the milliseconds a delete takes (median and p95) and the load average; it
asserts nothing.

Run: ``.venv/bin/python bench/decision_log.py [--decisions N] [--deletes N] [--db sqlite|postgresql|both]``
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, text  # noqa: E402

from bench.scratch import bench_app, scratch_database  # noqa: E402

WHEN = datetime(2026, 1, 1, tzinfo=timezone.utc)
CHUNK = 20_000


def fill(decisions: int) -> list[int]:
    """One mailbox's decision log of ``decisions`` rows, one in ten tracked (each to an
    email activity of its own); the tracked activities' ids."""
    from server.bulk import insert_rows
    from server.crm.activities import Activity, Email
    from server.db import db
    from server.security.bootstrap import create_user, ensure_organization
    from server.sync.models import Mailbox, MessageDecision
    ensure_organization("Bench")
    user = create_user("ann@org.example", "Ann Archer", roles=["Salesperson"])
    box = Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                  incoming_method="none", outgoing_method="none", enabled=True,
                  email_approved=True, owning_business_unit_id=user.business_unit_id)
    db.session.add(box)
    db.session.commit()
    tracked = decisions // 10
    conn = db.session.connection()
    for start in range(0, tracked, CHUNK):
        ids = range(start + 1, min(start + CHUNK, tracked) + 1)
        conn.execute(insert(Activity.__table__), [dict(
            id=n, activity_type="email", subject=f"Quote {n}", state="completed",
            priority="normal", occurred_on=WHEN, created_on=WHEN, modified_on=WHEN,
            owner_user_id=user.id, owning_business_unit_id=user.business_unit_id)
            for n in ids])
        conn.execute(insert(Email.__table__), [dict(
            id=n, direction="incoming", status="received", delivery_attempts=0,
            message_id=f"m{n}@fabrikam.test", dedupe_key=f"m{n}@fabrikam.test") for n in ids])
    for start in range(0, decisions, CHUNK):
        insert_rows(conn, MessageDecision.__table__, [dict(
            mailbox_id=box.id, folder_name="INBOX", identity=f"m{n}@fabrikam.test",
            subject="Quote", from_address="sales@fabrikam.test", tracked=n <= tracked,
            reason="Tracked." if n <= tracked else "No participant is a CRM record.",
            rule_hits=[], activity_id=n if n <= tracked else None, processed_on=WHEN,
            received_on=WHEN) for n in range(start + 1, min(start + CHUNK, decisions) + 1)])
    if db.engine.dialect.name == "postgresql":
        conn.execute(text("SELECT setval('activity_id_seq', :n)"), {"n": tracked})
    db.session.commit()
    with db.engine.connect() as analyze:
        analyze.execute(text("ANALYZE"))
        analyze.commit()
    return list(range(1, tracked + 1))


def deletes(ids: list[int]) -> list[float]:
    """Milliseconds each activity's delete takes, one transaction each."""
    from server.db import db
    times = []
    for activity_id in ids:
        started = time.perf_counter()
        db.session.execute(text("DELETE FROM email WHERE id = :id"), {"id": activity_id})
        db.session.execute(text("DELETE FROM activity WHERE id = :id"), {"id": activity_id})
        db.session.commit()
        times.append((time.perf_counter() - started) * 1000)
    return times


def run(kind: str, decisions: int, count: int) -> None:
    from server.db import db
    url, drop = scratch_database(kind, "decisionlog")
    try:
        app = bench_app(url, "decisionlog")
        with app.app_context():
            db.create_all()
            started = time.perf_counter()
            tracked = fill(decisions)
            print(f"{kind}: {decisions:,} decision rows ({len(tracked):,} tracked) in "
                  f"{time.perf_counter() - started:.1f} s")
            step = max(1, len(tracked) // (2 * count))
            picked = tracked[::step][:2 * count]
            with_index = deletes(picked[:count])
            db.session.execute(text("DROP INDEX ix_message_decision_activity_id"))
            db.session.commit()
            without = deletes(picked[count:])
            for label, times in (("with the index (0020)", with_index),
                                 ("without it (before 0020)", without)):
                times.sort()
                print(f"  {kind:10} delete an email, {label:26} median "
                      f"{statistics.median(times):8.2f} ms, p95 "
                      f"{times[int(len(times) * 0.95) - 1]:8.2f} ms ({len(times)} deletes)")
            db.session.remove()
            db.engine.dispose()
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=500_000)
    parser.add_argument("--deletes", type=int, default=50)
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for kind in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        run(kind, args.decisions, args.deletes)
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
