"""Sync benchmark: the scheduler with many idle mailboxes on PostgreSQL and several workers.

A fresh PostgreSQL database gets ``--mailboxes`` enabled Maildir mailboxes (default
10,000; an empty tree each, under ``--store``, default /dev/shm; rows by COPY), each due
once in the next ``--interval`` seconds (default 300, the default sync interval), spread
evenly, as in a steady state, and each synced before (its Inbox's folder state as a run
leaves it, so every visit is an idle one; ``--first-visits``: never run). Then:

1. **cost of an idle poll**: with nothing due, ``scheduler.claim`` (the due query with
   ``FOR NO KEY UPDATE SKIP LOCKED``, the profiles' live leases, the claim) timed 300 times:
   median, p95, and the due query's plan at this size (``EXPLAIN (ANALYZE, BUFFERS)``),
   with nothing due and as it reads once about 3,000 are overdue;
2. **visits**: ``--workers`` real worker processes (``flask --app server sync worker
   --concurrency N --no-push``, each with its own ``application_name``) run for the
   interval plus a grace period. Every mailbox's first run start (``SyncRun``) is compared
   with the moment it became due: how many were visited, how late (p50, p95, max), and
   whether every mailbox was visited within its interval; runs per second; CPU per run of
   the workers (user + system, ``getrusage`` of the children) and of their PostgreSQL
   backends (``/proc/<pid>/stat`` of each backend ``pg_stat_activity`` names, sampled
   every 2 s); connections per worker (most seen at once); lease churn: the mailbox
   table's row updates (claims, run outcomes, lease renewals and releases), HOT updates
   and dead rows left (``pg_stat_user_tables``; the table is vacuumed before the workers
   start), per run; and the cores the measured CPU per run implies for visiting every
   mailbox within its interval.

It asserts nothing. Run: ``.venv/bin/python bench/scheduler.py [--mailboxes N]
[--interval S] [--workers N] [--concurrency N]``.
"""
from __future__ import annotations

import argparse
import os
from collections import defaultdict
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select, text  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402



def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def make_trees(store: Path, count: int) -> None:
    """``count`` empty Maildir trees, one per mailbox (``<store>/<address>/{cur,new,tmp}``,
    what ``create_maildir`` makes), with plain ``mkdir`` calls: none shares a directory with
    another, so no run can read another mailbox's mail."""
    store.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        root = f"{store}/box{i}@contoso.example"
        os.mkdir(root)
        for sub in ("cur", "new", "tmp"):
            os.mkdir(f"{root}/{sub}")


def build(app, count: int, interval: int, store: Path, synced: bool = False):
    """The organization, ten users, one Maildir profile and ``count`` mailboxes due
    evenly over the next ``interval`` seconds (rows by COPY, trees by ``make_trees``).
    ``synced``: each mailbox as a run left it (``synced_states``), so every visit is an
    idle one. Returns {mailbox id: due time}."""
    from bench.resolve import Loader
    from server.db import db, utcnow
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.models import EmailServerProfile, Mailbox
    db.create_all()
    ensure_organization("Contoso")
    users = [create_user(f"seller{i}@contoso.example", f"Seller {i}", password="Correct-horse-9",
                         roles=["Salesperson"]) for i in range(10)]
    unit = root_unit().id
    profile = EmailServerProfile(name="Local store", incoming_protocol="maildir",
                                 maildir_root=str(store), max_connections=50,
                                 owning_business_unit_id=unit, settings={})
    db.session.add(profile)
    db.session.commit()
    user_ids, profile_id = [u.id for u in users], profile.id
    t = time.perf_counter()
    make_trees(store, count)
    trees = time.perf_counter() - t
    created = utcnow()
    now = created + timedelta(days=1)  # none due while the idle polls run (see ``due_soon``)

    def rows():
        for i in range(count):
            address = f"box{i}@contoso.example"
            yield dict(name=address, email_address=address, user_id=user_ids[i % 10],
                       server_profile_id=profile_id, enabled=True, email_approved=True,
                       incoming_method="server_side_sync", outgoing_method="none",
                       acts_method="none", tracking_option="crm_responses",
                       auto_create_contacts=False, is_forward_mailbox=False,
                       incoming_status="success", outgoing_status="not_run",
                       acts_status="not_run", sync_interval_seconds=interval,
                       consecutive_failures=0, backlog=0, sync_requested=False,
                       owning_business_unit_id=unit, created_on=created,
                       last_success_on=created if synced else None,
                       last_sync_on=created if synced else None,
                       next_sync_on=now + timedelta(seconds=interval * i / count))
    t = time.perf_counter()
    loader = Loader(db.engine)
    loader.load(Mailbox.__table__, rows())
    if synced:
        synced_states(loader, store)
    loader.finish([])  # VACUUM ANALYZE
    print(f"built {count} Maildir trees in {trees:.1f} s under {store}, "
          f"their rows (COPY, VACUUM ANALYZE) in {time.perf_counter() - t:.1f} s")
    return dict(db.session.execute(select(Mailbox.id, Mailbox.next_sync_on)).all())


def synced_states(loader, store: Path) -> None:
    """Each mailbox's Inbox as its last run left it: the folder's key file in its tree and
    a folder state whose cursor covers the (empty) folder and carries its new/ and cur/
    times (``maildir_tree.with_stamp``), so a visit finds nothing new."""
    import uuid
    from server.db import db
    from server.sync.connectors.common import pack_cursor
    from server.sync.connectors.maildir_tree import stamp, with_stamp
    from server.sync.models import FolderState, Mailbox
    empty = pack_cursor({"seen": [], "kw": {}})
    now = datetime.now(timezone.utc)

    def rows():
        for mailbox_id, address in db.session.execute(select(Mailbox.id,
                                                             Mailbox.email_address)):
            root = store / address
            key = str(uuid.uuid4())
            (root / ".regarding-id").write_text(key + "\n")
            marks = (stamp(root / "new"), stamp(root / "cur"))
            yield dict(mailbox_id=mailbox_id, folder_key=f"md:{key}", folder_name="INBOX",
                       role="inbox", cursor=with_stamp(marks, empty), updated_on=now)
    loader.load(FolderState.__table__, rows())
    db.session.rollback()


def due_soon(lead: int) -> dict:
    """Move every mailbox's first run so the first falls due ``lead`` seconds from now, the
    rest evenly after it (as built); returns {mailbox id: due time}."""
    from server.db import db, utcnow
    from server.sync.models import Mailbox
    first = db.session.scalar(select(func.min(Mailbox.next_sync_on)))
    shift = utcnow() + timedelta(seconds=lead) - first
    db.session.execute(text("UPDATE mailbox SET next_sync_on = next_sync_on + "
                            "make_interval(secs => :shift)"), {"shift": shift.total_seconds()})
    # This backend's statistics of the move reach pg_stat_user_tables at its commit (not
    # seconds later, when they would count as the workers' lease churn).
    db.session.execute(text("SELECT pg_stat_force_next_flush()"))
    db.session.commit()
    return dict(db.session.execute(select(Mailbox.id, Mailbox.next_sync_on)).all())


def due_plan(now=None) -> tuple[list[str], float]:
    """The claim's due query (as ``scheduler.claim`` sends it at ``now``, default now),
    EXPLAIN ANALYZE'd."""
    from server.db import db
    from server.sync.workers import scheduler
    from server.sync.models import Mailbox
    import inspect
    now = now or scheduler.utcnow()
    if "lock" in inspect.signature(getattr(scheduler, "due_query", len)).parameters:
        query = scheduler.due_query(now, 16, lock=True)
    elif hasattr(scheduler, "due_query"):  # one query over all kinds (before branch sched)
        query = scheduler.due_query(now, 16).with_for_update(skip_locked=True, key_share=True,
                                                             of=Mailbox)
    else:  # before 6 Dec 2026 (the same query, built inside claim)
        query = (select(Mailbox.id).where(scheduler.due_condition(now))
                 .order_by(Mailbox.sync_requested.desc(),
                           Mailbox.next_sync_on.asc().nulls_first()).limit(16)
                 .with_for_update(skip_locked=True, key_share=True, of=Mailbox))
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    plan = db.session.execute(text("EXPLAIN (ANALYZE, BUFFERS) " + sql)).scalars().all()
    db.session.rollback()
    executed = next((float(line.split(":")[1].split()[0]) for line in plan
                     if line.startswith("Execution Time")), float("nan"))
    return plan, executed


def idle_polls(runs: int = 300) -> list[float]:
    from server.sync.workers import scheduler
    timings = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        got = scheduler.claim("bench-probe", 4)
        timings.append(time.perf_counter() - started)
        assert not got, "something was due"
    print(f"idle poll client CPU: {(time.process_time() - cpu) / runs * 1000:.2f} ms per claim")
    return timings


TICK = os.sysconf("SC_CLK_TCK")
LEAD = 25  # seconds from the workers' start to the first mailbox due


def backend_cpu(pid: int) -> float | None:
    """A process's CPU seconds so far, all threads (None once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


class Sampler:
    """Every few seconds: our workers' connections (by application_name) and the CPU of
    their backends (the last figure seen for each backend is what it used)."""

    def __init__(self) -> None:
        self.most: dict[str, int] = defaultdict(int)
        self.cpu: dict[int, float] = {}
        self.start_cpu: dict[int, float] = {}

    def sample(self, session) -> None:
        rows = session.execute(text(
            "SELECT pid, application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'bench-worker-%'"
        )).all()
        session.rollback()
        seen: dict[str, int] = defaultdict(int)
        for pid, name in rows:
            seen[name] += 1
            used = backend_cpu(pid)
            if used is not None:
                self.start_cpu.setdefault(pid, used)
                self.cpu[pid] = used
        for name, n in seen.items():
            self.most[name] = max(self.most[name], n)

    def backends_cpu(self) -> float:
        return sum(self.cpu[pid] - self.start_cpu[pid] for pid in self.cpu)


def churn(session) -> dict[str, int]:
    # This session's own statistics (the move of the due times) are flushed first.
    session.execute(text("SELECT pg_stat_force_next_flush()"))
    session.commit()
    row = session.execute(text(
        "SELECT n_tup_upd, n_tup_hot_upd, n_dead_tup, autovacuum_count, n_tup_ins "
        "FROM pg_stat_user_tables WHERE relname = 'mailbox'")).one()
    session.rollback()
    return dict(zip(("updates", "hot", "dead", "autovacuums", "inserts"), row))


def vacuum(engine) -> None:
    """VACUUM ANALYZE the mailbox table: the bench's own whole-table move of the due times
    leaves one dead row per mailbox, which the lease churn would otherwise count."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE mailbox"))


def print_plan(title: str, plan: list[str], executed: float) -> None:
    print(f"{title}: {executed:.2f} ms")
    for line in plan:
        print("    " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--grace", type=int, default=60)
    parser.add_argument("--first-visits", action="store_true",
                        help="mailboxes that never ran (every visit a first run: folder "
                             "states written); default: each synced before, as in a steady "
                             "state, so every visit is an idle one")
    parser.add_argument("--store", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None,
                        help="where the Maildir trees go (default a memory file system: "
                             "100,000 trees on disk take minutes to make and remove)")
    args = parser.parse_args()
    from cryptography.fernet import Fernet
    from server import create_app
    from server.db import db, utcnow
    from server.sync.models import Mailbox, SyncRun

    url, drop = scratch_database("postgresql", "sched")
    instance = Path(tempfile.mkdtemp(prefix="regarding-sched-"))
    store = Path(tempfile.mkdtemp(prefix="regarding-sched-store-", dir=args.store))
    key = Fernet.generate_key().decode()
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench",
                      "REGARDING_ENCRYPTION_KEY": key, "REGARDING_INSTANCE_DIR": str(instance),
                      "REGARDING_MAILDIR_ROOT": str(store),
                      "REGARDING_LOG_LEVEL": "WARNING"})
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.mailboxes} mailboxes due "
          f"over {args.interval} s; {args.workers} worker(s) of concurrency {args.concurrency}")
    workers: list[subprocess.Popen] = []
    logs = []
    sampler = Sampler()
    try:
        with app.app_context():
            t = time.perf_counter()
            due = build(app, args.mailboxes, args.interval, store,
                        synced=not args.first_visits)
            print(f"built in {time.perf_counter() - t:.1f} s")
            timings = idle_polls()
            print(f"idle poll (nothing due): median {statistics.median(timings) * 1000:.2f} ms, "
                  f"p95 {pct(timings, 95) * 1000:.2f} ms")
            print_plan(f"the due query at {args.mailboxes} mailboxes (EXPLAIN ANALYZE, "
                       "nothing due)", *due_plan())
            # As a claim would see it once about 3,000 mailboxes are overdue (a worker that
            # fell behind): the moment 3,000 due times on, nothing written.
            ordered = sorted(due.values())
            behind = min(3000, len(ordered)) - 1
            print_plan(f"the due query at {args.mailboxes} mailboxes with {behind + 1} due",
                       *due_plan(ordered[behind]))
            due = due_soon(LEAD)
            vacuum(db.engine)
            before = churn(db.session)
            started = time.perf_counter()
            for n in range(args.workers):
                name = f"bench-worker-{n + 1}"
                env = {**os.environ, "REGARDING_DATABASE_URL": f"{url}?application_name={name}",
                       "REGARDING_INSTANCE_DIR": str(instance), "REGARDING_ENCRYPTION_KEY": key,
                       "REGARDING_MAILDIR_ROOT": str(store),
                       "REGARDING_SECRET_KEY": "bench", "REGARDING_LOG_LEVEL": "WARNING"}
                log = open(instance / f"{name}.log", "w+")
                logs.append(log)
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "flask", "--app", "server", "sync", "worker", "--id",
                     name, "--concurrency", str(args.concurrency), "--no-push"],
                    cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log, text=True))
            first_due = (min(due.values()) - utcnow()).total_seconds()
            deadline = started + first_due + args.interval + args.grace
            # The workers have started (imports, connections) before the first mailbox
            # falls due; their CPU from then on is the visits'.
            time.sleep(max(0.0, started + first_due - 1 - time.perf_counter()))
            visits_started = time.perf_counter()
            base = {w.pid: backend_cpu(w.pid) or 0.0 for w in workers}
            next_count = 0.0
            while time.perf_counter() < deadline:
                time.sleep(2)
                sampler.sample(db.session)
                if time.perf_counter() >= next_count:
                    next_count = time.perf_counter() + 10
                    done = db.session.scalar(select(func.count(func.distinct(SyncRun.mailbox_id))))
                    db.session.rollback()
                    if done >= args.mailboxes:
                        break
            sampler.sample(db.session)
            after = churn(db.session)
            visiting = sum((backend_cpu(w.pid) or 0.0) - base[w.pid] for w in workers)
            span = time.perf_counter() - visits_started
            for worker in workers:
                worker.send_signal(signal.SIGTERM)
            for worker in workers:
                worker.wait(120)
            usage = resource.getrusage(resource.RUSAGE_CHILDREN)
            elapsed = time.perf_counter() - started
            # What every claim read at the end, the mailboxes the workers had not reached yet
            # being overdue.
            overdue = db.session.scalar(select(func.count()).select_from(Mailbox).where(
                Mailbox.next_sync_on <= utcnow()))
            print_plan(f"the due query with the backlog left at the end ({overdue} overdue)",
                       *due_plan())
            first = dict(db.session.execute(
                select(SyncRun.mailbox_id, func.min(SyncRun.started_on))
                .group_by(SyncRun.mailbox_id)).all())
            runs = db.session.scalar(select(func.count()).select_from(SyncRun))
            failed = db.session.scalar(select(func.count()).select_from(SyncRun).where(
                SyncRun.error_code.is_not(None)))
            reasons = db.session.execute(select(SyncRun.error_code, func.min(SyncRun.error),
                                                func.count()).where(SyncRun.error_code.is_not(None))
                                         .group_by(SyncRun.error_code)).all()
            per_worker = dict(db.session.execute(select(SyncRun.worker, func.count())
                                                 .group_by(SyncRun.worker)).all())
            db.session.remove()
            db.engine.dispose()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
        drop()
        shutil.rmtree(instance, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    late = [(first[i] - due[i]).total_seconds() for i in first] or [float("nan")]
    visited = len(first)
    within = sum(1 for s in late if s <= args.interval)
    cpu = usage.ru_utime + usage.ru_stime
    backends = sampler.backends_cpu()
    print(f"workers ran {elapsed:.0f} s, visiting {span:.0f} s: {runs} runs ({failed} failed) = "
          f"{runs / span:.1f} runs/s; load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    per_run, per_run_db = visiting / max(runs, 1), backends / max(runs, 1)
    print(f"CPU per run: workers {visiting / max(runs, 1) * 1000:.2f} ms ({visiting:.1f} s; "
          f"{cpu:.1f} s with their start and stop), their "
          f"PostgreSQL backends {backends / max(runs, 1) * 1000:.2f} ms ({backends:.1f} s); "
          f"{(visiting + backends) / span:.2f} cores while visiting")
    print("runs per worker: " + ", ".join(f"{w} {n}" for w, n in sorted(per_worker.items())))
    print("connections per worker (most at once): " + ", ".join(
        f"{w} {n}" for w, n in sorted(sampler.most.items())))
    delta = {k: after[k] - before[k] for k in after}
    print(f"lease churn (mailbox rows): {delta['updates']} updates = "
          f"{delta['updates'] / max(runs, 1):.2f} per run ({delta['hot']} HOT), "
          f"{after['dead']} dead rows left (of {args.mailboxes} live), "
          f"{delta['autovacuums']} autovacuum(s)")
    for code, error, n in reasons:
        print(f"  {n} run(s) ended with {code}: {(error or '')[:160]}")
    for log in logs:
        log.seek(0)
        tail = log.read().strip().splitlines()[-3:]
        if tail:
            print(f"  {Path(log.name).stem}: " + " | ".join(tail)[:400])
        log.close()
    print(f"visited {visited} of {args.mailboxes} mailboxes; lateness after falling due: "
          f"p50 {pct(late, 50):.1f} s, p95 {pct(late, 95):.1f} s, max {max(late):.1f} s")
    print(f"every mailbox visited within its interval ({args.interval} s): "
          f"{'yes' if visited == args.mailboxes and within == visited else 'no'} "
          f"({within} within = {within / args.mailboxes:.1%}, {visited - within} later, "
          f"{args.mailboxes - visited} not visited)")
    needed = args.mailboxes / args.interval
    print(f"every mailbox within {args.interval} s needs {needed:.0f} runs/s: at the CPU per run "
          f"measured here {needed * per_run:.2f} cores for the workers and "
          f"{needed * per_run_db:.2f} for their PostgreSQL backends "
          f"({needed * (per_run + per_run_db):.2f} in all; measured {runs / span:.1f} runs/s "
          f"on {(visiting + backends) / span:.2f} cores)")


if __name__ == "__main__":
    main()
