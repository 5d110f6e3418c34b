"""Sync benchmark: the scheduler with 10,000 idle mailboxes on PostgreSQL and one worker.

A fresh PostgreSQL database gets ``--mailboxes`` enabled Maildir mailboxes (default
10,000; empty trees under /tmp, bulk-inserted rows), each due once in the next
``--interval`` seconds (default 300, the default sync interval), spread evenly, as in a
steady state. Then:

1. **cost of an idle poll**: with nothing due, ``scheduler.claim`` (the due query with
   ``FOR NO KEY UPDATE SKIP LOCKED``, the profiles' live leases, the claim) timed 300 times:
   median, p95 and the database's EXPLAIN ANALYZE time of the due query;
2. **visits**: one real worker (``flask --app server sync worker --concurrency N
   --no-push``) runs for the interval plus a grace period. Every mailbox's first run start
   (``SyncRun``) is compared with the moment it became due: how many were visited, how late
   (p50, p95, max), and whether every mailbox was visited within its interval; runs per
   second and the worker's CPU time.

It asserts nothing. Run: ``.venv/bin/python bench/scheduler.py [--mailboxes N]
[--interval S] [--concurrency N]``.
"""
from __future__ import annotations

import argparse
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402



def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build(app, count: int, interval: int, store: Path):
    """The organization, ten users, one Maildir profile and ``count`` mailboxes due
    evenly over the next ``interval`` seconds. Returns {mailbox id: due time}."""
    from server.db import db, utcnow
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.connectors.maildir import create_maildir, mailbox_root
    from server.sync.models import EmailServerProfile, Mailbox
    db.create_all()
    ensure_organization("Contoso")
    users = [create_user(f"seller{i}@contoso.example", f"Seller {i}", password="Correct-horse-9",
                         roles=["Salesperson"]) for i in range(10)]
    profile = EmailServerProfile(name="Local store", incoming_protocol="maildir",
                                 maildir_root=str(store), max_connections=50,
                                 owning_business_unit_id=root_unit().id, settings={})
    db.session.add(profile)
    db.session.commit()
    now = utcnow() + timedelta(seconds=20)  # the first ones fall due once the worker runs
    rows = []
    for i in range(count):
        address = f"box{i}@contoso.example"
        create_maildir(mailbox_root(store, address))
        rows.append(dict(name=address, email_address=address, user_id=users[i % 10].id,
                         server_profile_id=profile.id, enabled=True, email_approved=True,
                         incoming_method="server_side_sync", outgoing_method="none",
                         acts_method="none", tracking_option="crm_responses",
                         auto_create_contacts=False, is_forward_mailbox=False,
                         incoming_status="success", outgoing_status="not_run",
                         acts_status="not_run", sync_interval_seconds=interval,
                         consecutive_failures=0, backlog=0, sync_requested=False,
                         owning_business_unit_id=root_unit().id, created_on=utcnow(),
                         next_sync_on=now + timedelta(seconds=interval * i / count)))
    for start in range(0, count, 2000):
        db.session.execute(insert(Mailbox), rows[start:start + 2000])
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return dict(db.session.execute(select(Mailbox.id, Mailbox.next_sync_on)).all())


def idle_polls(runs: int = 300) -> tuple[list[float], float]:
    from server.db import db
    from server.sync.workers import scheduler
    from server.sync.models import Mailbox
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        got = scheduler.claim("bench-probe", 4)
        timings.append(time.perf_counter() - started)
        assert not got, "something was due"
    query = (select(Mailbox.id).where(scheduler.due_condition(scheduler.utcnow()))
             .order_by(Mailbox.sync_requested.desc(), Mailbox.next_sync_on.asc().nulls_first())
             .limit(16).with_for_update(skip_locked=True, key_share=True))
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    plan = db.session.execute(text("EXPLAIN ANALYZE " + sql)).scalars().all()
    db.session.rollback()
    executed = next((float(line.split(":")[1].split()[0]) for line in plan
                     if line.startswith("Execution Time")), float("nan"))
    return timings, executed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--grace", type=int, default=60)
    args = parser.parse_args()
    from cryptography.fernet import Fernet
    from server import create_app
    from server.db import db
    from server.sync.models import SyncRun

    url, drop = scratch_database("postgresql", "sched")
    instance = Path(tempfile.mkdtemp(prefix="regarding-sched-"))
    key = Fernet.generate_key().decode()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench",
                      "REGARDING_ENCRYPTION_KEY": key, "REGARDING_INSTANCE_DIR": str(instance),
                      "REGARDING_LOG_LEVEL": "WARNING"})
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
          f"{args.mailboxes} mailboxes due over {args.interval} s; worker concurrency "
          f"{args.concurrency}")
    worker = None
    try:
        with app.app_context():
            t = time.perf_counter()
            due = build(app, args.mailboxes, args.interval, instance / "store")
            print(f"built in {time.perf_counter() - t:.1f} s")
            timings, executed = idle_polls()
            print(f"idle poll (nothing due): median {statistics.median(timings) * 1000:.2f} ms, "
                  f"p95 {pct(timings, 95) * 1000:.2f} ms; the due query alone (EXPLAIN ANALYZE) "
                  f"{executed:.2f} ms")
            db.session.remove()
            env = {**os.environ, "REGARDING_DATABASE_URL": url,
                   "REGARDING_INSTANCE_DIR": str(instance), "REGARDING_ENCRYPTION_KEY": key,
                   "REGARDING_SECRET_KEY": "bench", "REGARDING_LOG_LEVEL": "WARNING"}
            started = time.perf_counter()
            worker = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "server", "sync", "worker", "--id",
                 "bench-worker", "--concurrency", str(args.concurrency), "--no-push"],
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            deadline = started + 20 + args.interval + args.grace
            while time.perf_counter() < deadline:
                time.sleep(5)
                done = db.session.scalar(select(func.count(func.distinct(SyncRun.mailbox_id))))
                db.session.rollback()
                if done >= args.mailboxes:
                    break
            worker.send_signal(signal.SIGTERM)
            worker.wait(120)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            elapsed = time.perf_counter() - started
            first = dict(db.session.execute(
                select(SyncRun.mailbox_id, func.min(SyncRun.started_on))
                .group_by(SyncRun.mailbox_id)).all())
            runs = db.session.scalar(select(func.count()).select_from(SyncRun))
            failed = db.session.scalar(select(func.count()).select_from(SyncRun).where(
                SyncRun.error_code.is_not(None)))
            reasons = db.session.execute(select(SyncRun.error_code, func.min(SyncRun.error),
                                                func.count()).where(SyncRun.error_code.is_not(None))
                                         .group_by(SyncRun.error_code)).all()
            db.session.remove()
            db.engine.dispose()
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        drop()
    late = [(first[i] - due[i]).total_seconds() for i in first]
    visited = len(first)
    within = sum(1 for s in late if s <= args.interval)
    print(f"worker ran {elapsed:.0f} s: {runs} runs ({failed} failed) = {runs / elapsed:.1f} runs/s; "
          f"CPU {usage.ru_utime + usage.ru_stime:.1f} s = "
          f"{(usage.ru_utime + usage.ru_stime) / max(runs, 1) * 1000:.1f} ms per run")
    for code, error, n in reasons:
        print(f"  {n} run(s) ended with {code}: {(error or '')[:160]}")
    print(f"visited {visited} of {args.mailboxes} mailboxes; lateness after falling due: "
          f"p50 {pct(late, 50):.1f} s, p95 {pct(late, 95):.1f} s, max {max(late):.1f} s")
    print(f"every mailbox visited within its interval ({args.interval} s): "
          f"{'yes' if visited == args.mailboxes and within == visited else 'no'} "
          f"({within} within, {visited - within} later, {args.mailboxes - visited} not visited)")


if __name__ == "__main__":
    main()
