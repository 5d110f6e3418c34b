"""Wake benchmark: how soon a worker in another process syncs a mailbox asked for here.

A fresh PostgreSQL database gets ``--samples`` enabled Maildir mailboxes (an empty tree
each), none due for a day; ``--workers`` real worker processes (``flask --app server sync
worker --no-push``) poll every ``--poll`` seconds. Then, one mailbox at a time, samples
alternating (interleaved A/B in the same session), each asked at a random moment of
the idle workers' poll:

* **wake**: ``scheduler.ask_for_sync`` and a commit, as a CRM change, "Sync now" or a Graph
  notification in the web app does (``NOTIFY``, heard by each worker's ``wake_listener``);
* **poll**: the flag written with a plain ``UPDATE`` and committed, without a ``NOTIFY``, as
  every other process did before the wake: a worker finds it at its next poll.

Prints, for each, the delay from the commit to the run's start (``SyncRun.started_on``):
p50, p95, max, with the load average before and after. It asserts nothing. Run:
``.venv/bin/python bench/wake.py [--samples N] [--poll S] [--workers N]``.
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import select, update  # noqa: E402

from bench.scratch import bench_app, scratch_database  # noqa: E402


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def build(count: int, store: Path) -> list[int]:
    from server.db import db, utcnow
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.connectors.maildir import create_maildir, mailbox_root
    from server.sync.models import EmailServerProfile, Mailbox
    db.create_all()
    ensure_organization("Contoso")
    user = create_user("seller@contoso.example", "Seller", password="Correct-horse-9",
                       roles=["Salesperson"])
    profile = EmailServerProfile(name="Local store", incoming_protocol="maildir",
                                 maildir_root=str(store), max_connections=50,
                                 owning_business_unit_id=root_unit().id, settings={})
    db.session.add(profile)
    db.session.flush()
    ids = []
    for i in range(count):
        address = f"box{i}@contoso.example"
        create_maildir(mailbox_root(store, address), ["Sent"])
        box = Mailbox(name=address, email_address=address, user_id=user.id,
                      server_profile_id=profile.id, enabled=True, email_approved=True,
                      acts_method="none", outgoing_method="none",
                      owning_business_unit_id=root_unit().id,
                      next_sync_on=utcnow() + timedelta(days=1))
        db.session.add(box)
        db.session.flush()
        ids.append(box.id)
    db.session.commit()
    return ids


def started(mailbox_id: int, deadline: float):
    """When the mailbox's run started, once it has ended and its lease is given back (the
    workers are idle again), or None by ``deadline``."""
    from server.db import db
    from server.sync.models import Mailbox, SyncRun
    while time.monotonic() < deadline:
        when = db.session.scalar(select(SyncRun.started_on).join(
            Mailbox, Mailbox.id == SyncRun.mailbox_id).where(
            SyncRun.mailbox_id == mailbox_id, SyncRun.finished_on.is_not(None),
            Mailbox.lease_owner.is_(None)))
        db.session.rollback()
        if when is not None:
            return when
        time.sleep(0.005)
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20, help="per mode")
    parser.add_argument("--poll", type=float, default=5.0, help="the workers' poll, seconds")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from server.db import db, utcnow
    from server.sync.models import Mailbox
    from server.sync.workers import scheduler

    url, drop = scratch_database("postgresql", "wake")
    store = Path(tempfile.mkdtemp(prefix="regarding-wake-store-"))
    app = bench_app(url, "wake", REGARDING_MAILDIR_ROOT=str(store))
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.workers} worker(s) polling "
          f"every {args.poll:g} s; {args.samples} samples per mode")
    workers, logs = [], []
    try:
        with app.app_context():
            ids = build(2 * args.samples, store)
            instance = Path(app.config["REGARDING_INSTANCE_DIR"])
            for n in range(args.workers):
                name = f"wake-worker-{n + 1}"
                env = {**os.environ, "REGARDING_DATABASE_URL": url,
                       "REGARDING_INSTANCE_DIR": str(instance),
                       "REGARDING_ENCRYPTION_KEY": app.config["REGARDING_ENCRYPTION_KEY"],
                       "REGARDING_MAILDIR_ROOT": str(store), "REGARDING_SECRET_KEY": "bench",
                       "REGARDING_LOG_LEVEL": "INFO", "REGARDING_SYNC_POLL_SECONDS": str(args.poll),
                       "REGARDING_SYNC_INTERVAL_SECONDS": "86400",
                       "REGARDING_SYNC_IDLE_INTERVAL_SECONDS": "86400"}
                logs.append(instance / f"{name}.log")
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "server", "sync", "worker", "--id",
                     name, "--concurrency", "2", "--no-push"], cwd=ROOT, env=env,
                    stdout=subprocess.DEVNULL, stderr=open(logs[-1], "w"), text=True))
            while not all("listening for mailboxes asked for" in log.read_text()
                          for log in logs):
                time.sleep(0.1)
            delays: dict[str, list[float]] = {"wake": [], "poll": []}
            pause = random.Random(17)
            for i, mailbox_id in enumerate(ids):
                mode = "wake" if i % 2 == 0 else "poll"
                # Idle workers, asked at a random moment of their poll (a run's end makes a
                # worker look again at once: asking just then would measure that instead).
                time.sleep(pause.uniform(0.5, args.poll))
                asked = utcnow()
                if mode == "wake":
                    scheduler.ask_for_sync([mailbox_id])
                else:
                    db.session.execute(update(Mailbox).where(Mailbox.id == mailbox_id)
                                       .values(sync_requested=True))
                db.session.commit()
                when = started(mailbox_id, time.monotonic() + args.poll + 30)
                if when is not None:
                    delays[mode].append((when - asked).total_seconds())
            for mode, found in delays.items():
                if found:
                    print(f"{mode}: commit -> run start p50 {statistics.median(found):.3f} s, "
                          f"p95 {pct(found, 95):.3f} s, max {max(found):.3f} s "
                          f"({len(found)} of {args.samples})")
            print(f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(60)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        drop()


if __name__ == "__main__":
    main()
