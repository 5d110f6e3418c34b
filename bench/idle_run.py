"""Sync benchmark: what one idle run costs a worker and PostgreSQL (issue 17, goal 5).

A fresh PostgreSQL database gets ``--mailboxes`` enabled, empty Maildir mailboxes (built
as ``scheduler.py`` builds them), each synced once so that every later run is idle (a due
mailbox with nothing new). Then ``--runs`` idle runs, each exactly what a worker does for a
due mailbox (``Worker._claim`` then ``Worker._sync``: the claim, the mail run, the alert
mail pass at most every 30 s, the lease given back), in this process, one after the other;
with ``--batch N`` (default 20) as a worker does it where it can visit idle mailboxes in
batches (``Worker._visit``: ``N`` claimed at once, probed, their visits written together;
one that is not idle gets ``Worker._sync``); the code before that runs them one by one.
With ``--protocol imap`` (or ``pop3``) the mailboxes are users of a private Dovecot
(tests/servers/dovecot.py, one message in each Inbox), read over IMAP (POP3) on loopback: a
probe there is one sign-in and one ``LIST ... RETURN (STATUS ...)`` (one ``UIDL``), a full
run opens each folder too (reads the listing again and writes its outcome alone); with
``--plain`` that Dovecot offers what most IMAP servers do (``PLAIN_IMAP``: no CONDSTORE,
LIST-STATUS or NOTIFY), so a probe is a LIST and one STATUS a folder. With
``--protocol graph`` (or ``ews``) they are mailboxes of the Microsoft Graph fake
(tests/fakes/graph.py, app-only, over HTTPS on loopback) or of the EWS fake
(tests/fakes/ews.py, one user each, basic sign-in), served by a child process so that their
CPU is not this process's. Figures are per visit (a batch's divided by its mailboxes):

* client CPU per run (``time.process_time``: user + system of this process);
* the PostgreSQL backend's CPU per run (``/proc/<pid>/stat`` of the connection's backend,
  read before and after; the runs one after the other use one pooled connection);
* with ``--protocol imap`` or ``pop3``, Dovecot's CPU per run (its processes' ``/proc`` times: the
  master's reaped children and the live ones); with ``graph`` or ``ews``, the fake's process's
  CPU, and the HTTP requests sent per run;
* statements per run (a ``before_cursor_execute`` listener), with the statements of one
  run printed (``--show``);
* ``--profile``: a cProfile of the runs (process time), the top functions by their own and
  cumulative time.

Run: ``.venv/bin/python bench/idle_run.py [--mailboxes 2000] [--runs 500] [--batch 20]
[--protocol maildir|imap|pop3|graph|ews] [--plain] [--profile] [--show]``. It asserts
nothing.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, select, text, update  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402
from bench.scheduler import backend_cpu, build  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_dovecot(app, count: int, server, protocol: str) -> None:
    """The organization, one user, an IMAP or POP3 (``protocol``) profile on ``server`` and
    ``count`` enabled mailboxes, each a Dovecot user with one message in its Inbox, none due
    yet."""
    from server.db import db, utcnow
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.models import EmailServerProfile, Mailbox
    from server.crm.models import Organization
    db.create_all()
    ensure_organization("Contoso")
    db.session.get(Organization, 1).mail_server_allowed_hosts = server.host  # a loopback peer
    seller = create_user("seller@contoso.example", "Seller", password="Correct-horse-9",
                         roles=["Salesperson"])
    unit = root_unit().id
    profile = EmailServerProfile(name="Bench Dovecot", incoming_protocol=protocol,
                                 incoming_host=server.host,
                                 incoming_port=getattr(server, f"{protocol}_port"),
                                 incoming_security="none", owning_business_unit_id=unit,
                                 max_connections=50, settings={"timeout": 60})
    db.session.add(profile)
    db.session.flush()
    later = utcnow() + timedelta(days=1)
    for i in range(count):
        user = server.add_user(f"box{i}@contoso.example", f"Bench-password-{i}")
        server.deliver(user, (f"From: Ann <ann@customer.example>\r\nTo: {user.username}\r\n"
                              f"Subject: Hello {i}\r\nMessage-ID: <hello{i}@customer.example>"
                              "\r\n\r\nHello.\r\n").encode())
        db.session.add(Mailbox(name=user.username, email_address=user.username,
                               user_id=seller.id, server_profile_id=profile.id,
                               username=user.username, password=user.password, enabled=True,
                               email_approved=True, tracking_option="crm_responses",
                               sync_interval_seconds=300, next_sync_on=later,
                               owning_business_unit_id=unit))
    db.session.commit()


def serve_forked(start) -> tuple[int, int]:
    """A child process, forked now, that calls ``start()`` (which starts serving and returns
    its port) and serves until killed; (its pid, that port)."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(reader)
        try:
            os.write(writer, str(start()).encode())
            os.close(writer)
            while True:
                time.sleep(3600)
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as fh:
        return pid, int(fh.read())


class ForkedFake:
    """The Graph or EWS fake with ``count`` mailboxes (one message in each Inbox), served by
    a child process forked before the application exists; ``cpu()`` reads its CPU."""

    def __init__(self, protocol: str, count: int):
        self.protocol = protocol
        self.addresses = [f"box{i}@contoso.example" for i in range(count)]
        hello = ("From: Ann <ann@customer.example>\r\nTo: {0}\r\nSubject: Hello\r\n"
                 "Message-ID: <hello.{0}>\r\n\r\nHello.\r\n")
        if protocol == "graph":
            from tests.fakes.graph import FakeGraph
            self.fake = FakeGraph()
            for address in self.addresses:
                self.fake.add_mailbox(address)
                self.fake.deliver(address, hello.format(address).encode())
        else:
            from tests.fakes.ews import FakeExchange
            self.fake = FakeExchange()
            for i, address in enumerate(self.addresses):
                self.fake.add_user(f"ORG\\box{i}", f"Bench-password-{i}", address)
                self.fake.deliver(address, hello.format(address).encode())
        if protocol == "graph":
            self.pid, self.port = serve_forked(lambda: self.fake.start().port)
        else:
            from tests.fakes.ews import serve
            self.pid, self.port = serve_forked(lambda: serve(self.fake).port)
        if protocol == "graph":
            self.fake.port = self.port
        else:
            self.fake.url = f"http://127.0.0.1:{self.port}/EWS/Exchange.asmx"

    def build(self, app) -> None:
        """The organization, one user, the profile and a mailbox for each fake mailbox,
        none due yet."""
        from server.db import db, utcnow
        from server.security.bootstrap import create_user, ensure_organization, root_unit
        from server.sync.models import EmailServerProfile, Mailbox
        from server.crm.models import Organization
        db.create_all()
        ensure_organization("Contoso")
        db.session.get(Organization, 1).mail_server_allowed_hosts = "127.0.0.0/8"  # the fake
        seller = create_user("seller@contoso.example", "Seller", password="Correct-horse-9",
                             roles=["Salesperson"])
        unit = root_unit().id
        if self.protocol == "graph":
            fields = dict(oauth_tenant=self.fake.tenant, oauth_client_id=self.fake.client_id,
                          oauth_client_secret=self.fake.client_secret,
                          settings=self.fake.profile_settings())
        else:
            fields = dict(settings={"ews_url": self.fake.url, "auth_type": "basic",
                                    "timeout": 60})
        profile = EmailServerProfile(name=f"Bench {self.protocol}", max_connections=50,
                                     incoming_protocol=self.protocol,
                                     owning_business_unit_id=unit, **fields)
        db.session.add(profile)
        db.session.flush()
        later = utcnow() + timedelta(days=1)
        for i, address in enumerate(self.addresses):
            credentials = ({} if self.protocol == "graph" else
                           dict(username=f"ORG\\box{i}", password=f"Bench-password-{i}"))
            db.session.add(Mailbox(name=address, email_address=address, user_id=seller.id,
                                   server_profile_id=profile.id, enabled=True,
                                   email_approved=True, tracking_option="crm_responses",
                                   sync_interval_seconds=300, next_sync_on=later,
                                   owning_business_unit_id=unit, **credentials))
        db.session.commit()

    def cpu(self) -> float:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        os.waitpid(self.pid, 0)
        if self.protocol == "graph":
            shutil.rmtree(self.fake._dir, ignore_errors=True)  # its certificate and key


class HttpCount:
    """Counts the HTTP requests this process sends (``requests``' adapter: Graph's client and
    exchangelib both send through it)."""

    def __init__(self):
        from requests.adapters import HTTPAdapter
        self.sent, original = 0, HTTPAdapter.send

        def send(adapter, *args, **kwargs):
            self.sent += 1
            return original(adapter, *args, **kwargs)

        HTTPAdapter.send = send


def dovecot_cpu(server) -> float:
    """CPU seconds Dovecot's processes used so far: its master's own and reaped children's,
    and each live child's."""
    tick = os.sysconf("SC_CLK_TCK")
    master = server._proc.pid

    def fields(pid: int) -> list[str] | None:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()
        except OSError:
            return None

    total = 0
    own = fields(master)
    if own:
        total += sum(int(v) for v in own[11:15])  # utime stime cutime cstime
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (row := fields(int(entry))) and int(row[1]) == master:
            total += int(row[11]) + int(row[12])
    return total / tick


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mailboxes", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--batch", type=int, default=20,
                        help="idle mailboxes visited together (1: one at a time)")
    parser.add_argument("--protocol", choices=("maildir", "imap", "pop3", "graph", "ews"),
                        default="maildir")
    parser.add_argument("--plain", action="store_true",
                        help="with --protocol imap: a server without CONDSTORE, LIST-STATUS, NOTIFY")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--show", action="store_true", help="print one idle run's statements")
    parser.add_argument("--store", default="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    args = parser.parse_args()
    fake = ForkedFake(args.protocol, args.mailboxes) if args.protocol in ("graph", "ews") \
        else None  # forked before anything starts a thread
    from cryptography.fernet import Fernet
    from server import create_app
    from server.db import db, utcnow
    from server.sync.models import Mailbox
    from server.sync.workers.worker import Worker

    url, drop = scratch_database("postgresql", "idlerun")
    instance = Path(tempfile.mkdtemp(prefix="regarding-idlerun-"))
    store = Path(tempfile.mkdtemp(prefix="regarding-idlerun-store-", dir=args.store))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench",
                      "REGARDING_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                      "REGARDING_INSTANCE_DIR": str(instance),
                      "REGARDING_MAILDIR_ROOT": str(store), "REGARDING_LOG_LEVEL": "WARNING"})
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {load()}; "
          f"{args.mailboxes} {args.protocol}{' (plain)' if args.plain else ''} mailboxes, "
          f"{args.runs} idle runs")
    dovecot = None
    if args.protocol in ("imap", "pop3"):
        from tests.servers.dovecot import PLAIN_IMAP, DovecotServer
        dovecot = DovecotServer(imap_capability=PLAIN_IMAP if args.plain else None).start()
    try:
        with app.app_context():
            if dovecot is not None:
                build_dovecot(app, args.mailboxes, dovecot, args.protocol)
            elif fake is not None:
                fake.build(app)
            else:
                build(app, args.mailboxes, 300, store)
                time.sleep(2.1)  # the trees' times settle: the first runs stamp every cursor
            app.config["REGARDING_SYNC_IDLE_BATCH"] = args.batch
            worker = Worker(app, "bench-idle", 1, threading.Event(), push=False,
                            until_idle=False)
            ids = [i for (i,) in db.session.execute(select(Mailbox.id).order_by(Mailbox.id))]
            runs = min(args.runs, len(ids))

            def make_due(mailbox_ids) -> None:
                db.session.execute(update(Mailbox).where(Mailbox.id.in_(mailbox_ids))
                                   .values(next_sync_on=utcnow() - timedelta(seconds=1)))
                db.session.execute(update(Mailbox).where(Mailbox.id.not_in(mailbox_ids))
                                   .values(next_sync_on=utcnow() + timedelta(days=1)))
                db.session.commit()

            def one(mailbox_id) -> None:
                (lease,) = worker._claim(1)
                assert lease.mailbox_id == mailbox_id, (lease, mailbox_id)
                worker._sync(lease)

            # First visits (folders seen once): every later run of these is idle.
            t = time.perf_counter()
            make_due(ids[:runs])
            for mailbox_id in ids[:runs]:
                one(mailbox_id)
            print(f"first runs of {runs} mailboxes: {time.perf_counter() - t:.1f} s")
            make_due(ids[:runs])  # all due at once, claimed in due order (id order)
            db.session.remove()
            db.engine.dispose()  # from here on one connection, reused run after run
            pid = db.session.scalar(text("SELECT pg_backend_pid()"))
            db.session.remove()
            statements: list[list[str]] = []

            def count(conn, cursor, statement, params, context, executemany):
                statements[-1].append(statement)

            event.listen(db.engine, "before_cursor_execute", count)
            profile = cProfile.Profile(time.process_time) if args.profile else None
            client, backend, walls, sizes, served, sent = [], [], [], [], [], []
            http = HttpCount() if fake is not None else None
            peer_cpu = (lambda: dovecot_cpu(dovecot)) if dovecot else \
                fake.cpu if fake else (lambda: 0.0)
            batched = args.batch > 1 and hasattr(worker, "_visit")
            size = args.batch if batched else 1
            try:
                for start in range(0, runs, size):
                    n = min(size, runs - start)
                    statements.append([])
                    d0, h0 = peer_cpu(), http.sent if http else 0
                    b0, c0, w0 = backend_cpu(pid), time.process_time(), time.perf_counter()
                    if profile:
                        profile.enable()
                    if batched:
                        leases = worker._claim(n)
                        assert len(leases) == n, (len(leases), n)
                        worker._visit(leases, n)
                        while worker.waiting:  # found not idle: a full run
                            worker._sync(worker.waiting.popleft())
                    else:
                        (lease,) = worker._claim(1)
                        worker._sync(lease)
                    if profile:
                        profile.disable()
                    sizes.append(n)
                    walls.append((time.perf_counter() - w0) / n)
                    client.append((time.process_time() - c0) / n)
                    backend.append((backend_cpu(pid) - b0) / n)
                    served.append((peer_cpu() - d0) / n)
                    sent.append(((http.sent if http else 0) - h0) / n)
            finally:
                event.remove(db.engine, "before_cursor_execute", count)
            stats = worker.stats
            assert db.engine.pool.checkedin() == 1, db.engine.pool.status()
            db.session.remove()
            db.engine.dispose()
    finally:
        drop()
        if dovecot is not None:
            dovecot.close()
        if fake is not None:
            fake.close()
        shutil.rmtree(instance, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
    counts = [len(s) / n for s, n in zip(statements, sizes)]
    mean_client = sum(c * n for c, n in zip(client, sizes)) / runs
    mean_backend = sum(b * n for b, n in zip(backend, sizes)) / runs
    print(f"idle runs: {runs} in {len(sizes)} pass(es) of up to {size} "
          f"({stats.synced} visited, {stats.failed} failed, {stats.errors} errors, "
          f"{stats.interrupted} interrupted); load {load()}")
    print(f"statements per idle run: mean {sum(len(s) for s in statements) / runs:.2f}, "
          f"median {statistics.median(counts)}, min {min(counts)}, max {max(counts)}")
    print(f"client CPU per run: mean {mean_client * 1000:.2f} ms, "
          f"median {statistics.median(client) * 1000:.2f} ms")
    print(f"PostgreSQL backend CPU per run: mean {mean_backend * 1000:.2f} ms "
          f"(clock ticks of {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms, summed over the runs)")
    if fake is not None:
        print(f"the {args.protocol} fake's CPU per run: mean "
              f"{sum(d * n for d, n in zip(served, sizes)) / runs * 1000:.2f} ms (clock ticks, "
              f"summed over the runs); HTTP requests per run: mean "
              f"{sum(h * n for h, n in zip(sent, sizes)) / runs:.2f}")
    if dovecot is not None:
        print(f"Dovecot CPU per run: mean {sum(d * n for d, n in zip(served, sizes)) / runs * 1000:.2f} ms "
              f"(clock ticks, summed over the runs)")
    print(f"wall per run: median {statistics.median(walls) * 1000:.2f} ms; "
          f"one core of client + backend CPU makes "
          f"{1 / (mean_client + mean_backend):.0f} idle runs/s")
    if args.show:
        typical = statements[0] if batched else next(
            s for s in statements if len(s) == statistics.median_low(counts))
        for statement in typical:
            print("  " + " ".join(statement.split())[:200])
    if profile:
        ps = pstats.Stats(profile).strip_dirs()
        ps.sort_stats("tottime").print_stats(30)
        ps.sort_stats("cumulative").print_stats(60)


if __name__ == "__main__":
    main()
