"""Appointments, contacts and tasks benchmark: initial sync from a store, and change latency.

1. **Initial sync.** ``--events`` events (default 5,000; one in ten a weekly series) and
   ``--contacts`` cards (default 5,000), all tracked ("Tracked to Regarding"), in the
   user's calendar and address book; ``sync_items`` takes them in. Prints items/s (wall and
   CPU of this process) of the sync itself, with the store's own first read (Radicale
   parses and caches every item the first time it is asked for it) timed apart, as it is
   a cost of that server and not of ours. Target >= 500 items/s on SQLite.
2. **A quiet run.** CPU of an item run in which nothing changed (target: well under
   100 ms at 5,000 + 5,000), right after the initial sync (the push still looks again at
   what changed within its 5-minute margin) and as it is once the margin has passed.
3. **Change latency.** ``--samples`` times each way, p50/p95 seconds, the mode beside each:
   ``--mode poll``: one item changed and ``sync_items`` called after a wait of up to
   ``--poll`` seconds, as a polling loop would; ``--mode worker``: a sync worker running
   (a thread, polling every ``--poll`` seconds): CRM -> server, the contact changed through
   the REST API, whose commit asks for the mailbox and wakes the worker (the wake); server
   -> CRM, the card changed in the store, brought by the mailbox's ``--interval`` (default
   5 s), or with ``--push`` by the store's push where it has one: Graph's change
   notifications, posted by the fake to the application's webhook (``/graph/notifications``,
   the app served on a loopback port as the tests serve it), the interval then 300 s
   unless given, so that a change arriving sooner can only have come by push; Radicale has
   none (still the interval, 5 s, and it says so). Each change on the server is made with
   the mailbox at rest, and the output counts how many came by push (before the mailbox's
   next scheduled run was due) and how many by the scheduled run. Targets: <= 2 s p95
   with push or wake, <= one interval without.

Stores (``--store``, default all of them, one after the other in the same run):
``radicale`` (a local Radicale, as the tests start it; a process of its own, so its CPU is
not in ours) and ``graph`` (the fake Microsoft Graph of the tests, served by threads of this
process, so its CPU is in ours; filled with ``seed_items``, one event in ten a weekly
series of ten with a changed and a cancelled occurrence). The initial sync's CPU is given
for the process and for the sync's own thread (without a fake's serving threads); for
Graph also HTTP requests per item (requests on the wire, a ``$batch`` being one). Another store
plugs in as one more entry of ``STORES``: a function that starts it and returns a ``Side``
(how the profile and the mailbox reach it, and how to put many items and change one).

Run: ``.venv/bin/python bench/act.py [--store radicale graph] [--events N] [--contacts N]
[--samples N] [--mode poll worker] [--poll S] [--interval S] [--push]``. It prints figures; it asserts nothing.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.fernet import Fernet  # noqa: E402

USER = "bob@org.example"
PUSH_INTERVAL = 300.0  # worker mode, push on: the interval of a store with push
TRACKED = "CATEGORIES:Tracked to Regarding\r\n"


def event(n: int) -> str:
    series = "RRULE:FREQ=WEEKLY;COUNT=10\r\n" if n % 10 == 0 else ""
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//bench//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:bench-e{n}\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20300105T100000Z\r\n"
            f"DTEND:20300105T110000Z\r\nSUMMARY:Meeting {n}\r\nLOCATION:Room {n % 40}\r\n"
            "ORGANIZER;CN=Bob:mailto:bob@org.example\r\n"
            f"ATTENDEE;PARTSTAT=ACCEPTED:mailto:guest{n % 300}@customer.example\r\n"
            f"{series}{TRACKED}END:VEVENT\r\nEND:VCALENDAR\r\n")


def card(n: int) -> str:
    return (f"BEGIN:VCARD\r\nVERSION:4.0\r\nUID:bench-c{n}\r\nFN:Person {n}\r\n"
            f"N:Number{n};Person;;;\r\nEMAIL:p{n}@customer.example\r\nTEL;TYPE=cell:+47 {n:08d}\r\n"
            f"ORG:Customer {n % 50}\r\n{TRACKED}END:VCARD\r\n")


@dataclass
class Side:
    """A store for the benchmark: the profile fields that reach it, the mailbox's fields
    (its login, and which profile field names the profile), and how to fill it and change
    one item in it as another client."""
    profile: dict
    mailbox: dict
    fill: Callable[[int, int], None]  # events, contacts
    warm: Callable[[], float]  # the store's own first read of everything; seconds
    client: Callable[[], contextlib.AbstractContextManager]
    close: Callable[[], None]
    requests: Callable[[], int] = lambda: 0  # HTTP requests the store has answered so far
    # Whether the store holds the item of this UID with this text in it, as the server
    # itself sees it (its files, its memory): how a change is seen to arrive, at no cost
    # to the sync being timed.
    holds: Callable[[str, str], bool] = lambda uid, text: False
    # The store's push, where it has one: what it is ("" none), what it needs of the
    # application while a worker runs (Graph: the app served on a loopback port, its
    # notification URL pointing there), how many notifications the app accepted so far,
    # and a wait until the store has posted what it had to post.
    push: str = ""
    serve: Callable[[object], contextlib.AbstractContextManager] = \
        lambda app: contextlib.nullcontext()
    notified: Callable[[], int] = lambda: 0
    settle: Callable[[], None] = lambda: None


def radicale_side(tmp: Path) -> Side:
    from server.sync.connectors.base import Account
    from server.sync.connectors.caldav import CalDavStore
    from tests.servers.radicale_server import RadicaleServer
    server = RadicaleServer(tmp / "radicale").start()
    dav = server.add_user("bob", "bench-password")
    account = Account(USER, host=server.host, port=server.port, security="none",
                      username=dav.username, password=dav.password, timeout=600)

    def client():
        return CalDavStore(account)

    @functools.cache
    def folder(kind: str) -> Path:
        """The directory of the user's collection of ``kind`` in Radicale's storage."""
        with client() as store:
            key = store.collections(kind)[0].key
        return server.storage_dir / "collection-root" / key.split("/", 3)[3].strip("/")

    def fill(events: int, contacts: int):
        texts = {"appointment": {f"bench-e{n}": event(n) for n in range(events)},
                 "contact": {f"bench-c{n}": card(n) for n in range(contacts)}}
        for kind, items in texts.items():
            suffix = ".vcf" if kind == "contact" else ".ics"
            for uid, text in items.items():
                (folder(kind) / f"{uid}{suffix}").write_text(text)

    def warm():
        started = time.perf_counter()
        with client() as store:
            for kind in ("appointment", "contact"):
                store.changes(store.collections(kind)[0], None)
        return time.perf_counter() - started

    def holds(uid: str, text: str) -> bool:
        try:  # its file, read without asking Radicale (which the sync being timed is using)
            return text in (folder("contact") / f"{uid}.vcf").read_text()
        except FileNotFoundError:
            return False

    profile = dict(name="Radicale", incoming_protocol="caldav", incoming_host=server.host,
                   incoming_port=server.port, incoming_security="none",
                   settings={"timeout": 600})
    return Side(profile, {"username": dav.username, "password": dav.password,
                          "acts_profile_id": None}, fill, warm, client, server.close,
                holds=holds)


def graph_side(tmp: Path) -> Side:
    from server.sync.connectors.base import Account
    from server.sync.connectors.graph_items import GraphItemStore
    from tests.fakes.graph import FakeGraph
    fake = FakeGraph().start()
    fake.add_mailbox(USER)
    settings = fake.profile_settings(graph_calendar_days_ahead=3650, timeout=600)

    def token(fresh: bool = False) -> str:
        return fake._token("app", fake.app_roles)["access_token"]

    def fill(events: int, contacts: int):
        fake.seed_items(USER, events=events, contacts=contacts, recurring=0.1,
                        categories=("Tracked to Regarding",))

    def client():
        return GraphItemStore(Account(USER, settings=settings, token_provider=token))

    profile = dict(name="Exchange Online", incoming_protocol="graph", outgoing_protocol="graph",
                   oauth_tenant=fake.tenant, oauth_client_id=fake.client_id,
                   oauth_client_secret=fake.client_secret, auth_method="oauth2",
                   settings=settings)
    def holds(uid: str, text: str) -> bool:
        with fake.lock:
            item = fake.box(USER).items.get(uid)
            return item is not None and text.split(":", 1)[-1] in str(item.fields)

    def serve(app):
        from tests.sync.graph.conftest import serving  # as the tests and latency.py serve it
        return serving(app)

    def notified() -> int:
        return sum(1 for kind, status in fake.deliveries if kind == "notification" and
                   status == 202)

    return Side(profile, {"server_profile_id": None}, fill, lambda: 0.0, client, fake.close,
                requests=lambda: fake.stats["http"], holds=holds,
                push="change notifications to the web app's webhook", serve=serve,
                notified=notified, settle=fake.wait_for_deliveries)


STORES = {"radicale": radicale_side, "graph": graph_side}


def build(tmp: Path, side: Side):
    from server import create_app
    from server.crm.models import Organization
    from server.db import db
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.models import EmailServerProfile, Mailbox
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'bench.db'}",
                      "SECRET_KEY": "bench", "REGARDING_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                      "WTF_CSRF_ENABLED": False, "REGARDING_INSTANCE_DIR": str(tmp),
                      "REGARDING_LOG_LEVEL": "ERROR"})
    with app.app_context():
        db.create_all()
        ensure_organization("Bench")
        db.session.get(Organization, 1).mail_server_allowed_hosts = "127.0.0.1"
        bob = create_user(USER, "Bob Seller", password="Correct-horse-9", roles=["Salesperson"])
        profile = EmailServerProfile(owning_business_unit_id=root_unit().id, **side.profile)
        db.session.add(profile)
        db.session.flush()
        fields = {k: profile.id if k.endswith("profile_id") else v for k, v in side.mailbox.items()}
        box = Mailbox(name=USER, email_address=USER, user_id=bob.id,
                      incoming_method="none", outgoing_method="none",
                      acts_method="server_side_sync", enabled=True, email_approved=True,
                      owning_business_unit_id=bob.business_unit_id, **fields)
        db.session.add(box)
        db.session.commit()
        return app, box.id


def initial(app, mailbox_id: int, side: Side, events: int, contacts: int) -> None:
    from server.sync.acts.run import sync_items
    side.fill(events, contacts)
    warm = side.warm()
    with app.app_context():
        before = side.requests()
        wall, cpu, ours = time.perf_counter(), time.process_time(), time.thread_time()
        result = sync_items(mailbox_id, kinds=("appointment", "contact"))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        ours = time.thread_time() - ours
        requests = side.requests() - before
    total = events + contacts
    http = f", {requests} HTTP requests = {requests / total:.3f} per item" if requests else ""
    print(f"initial sync: {result.created} records from {total} items in {wall:.1f} s "
          f"= {total / wall:.0f} items/s wall; {cpu:.1f} CPU-s = {total / cpu:.0f} items/s CPU"
          f" (the sync's own thread {ours:.1f} CPU-s = {total / ours:.0f} items/s)"
          f"{http} (target >= 500/s; the store's own first read, apart: {warm:.1f} s; "
          f"load average {os.getloadavg()[0]:.2f})")


def latency(app, mailbox_id: int, side: Side, samples: int, poll: float) -> None:
    """One change each way per sample, a sync as a polling worker runs it (after a wait of
    up to ``poll`` seconds, uniformly: when the change lands in the worker's cycle)."""
    import random
    from sqlalchemy import select
    from server.crm.models import Contact
    from server.db import db
    from server.sync.acts.run import sync_items
    rng = random.Random(7)
    to_server, to_crm = [], []
    with app.app_context(), side.client() as store:
        book = store.collections("contact")[0]
        uids = db.session.scalars(select(Contact.contact_uid).order_by(Contact.id)
                                  .limit(samples + 1)).all()
        for n in range(samples):
            contact = db.session.scalar(select(Contact).where(Contact.contact_uid == uids[n]))
            started = time.perf_counter()
            contact.job_title = f"Title {n}"
            db.session.commit()
            time.sleep(rng.uniform(0, poll))
            sync_items(mailbox_id, kinds=("contact",))
            to_server.append(time.perf_counter() - started)
            item = _read_one(store, book, uids[n + 1])
            started = time.perf_counter()
            store.put(book, item.data.replace("FN:", "NOTE:changed\r\nFN:"), item.ref, item.etag)
            time.sleep(rng.uniform(0, poll))
            sync_items(mailbox_id, kinds=("contact",))
            to_crm.append(time.perf_counter() - started)
    for name, values in (("CRM -> server", to_server), ("server -> CRM", to_crm)):
        print(f"{name}: {_quantiles(values)} ({len(values)} changes; mode: poll, a sync "
              f"after a wait of up to {poll:g} s; target <= one interval)")


def quiet(app, mailbox_id: int, runs: int = 5) -> None:
    """CPU of item runs in which nothing changed (the first after the initial sync reads its
    own writes back, so it is left out): first right after the initial sync, when a push
    still looks again at every record changed within ``marks.MARGIN`` (5 minutes: for the
    transactions still open when the last push began), then as it is once that margin has
    passed: the records and their links as synced the margin and a minute ago, the last
    complete push (the mark) as begun now, as quiet runs would have left it."""
    from sqlalchemy import update
    from server.db import db, utcnow
    from server.sync.acts import marks, records
    from server.sync.acts.run import sync_items
    from server.sync.models import ItemLink, ItemPushMark
    kinds = ("appointment", "contact")

    def measure(when: str) -> None:
        cpu = []
        for _ in range(runs):
            started = time.process_time()
            sync_items(mailbox_id, kinds=kinds)
            cpu.append(time.process_time() - started)
        print(f"quiet item run (nothing changed), {when}: median "
              f"{statistics.median(cpu) * 1000:.0f} ms CPU of this process, max "
              f"{max(cpu) * 1000:.0f} ms ({runs} runs; load average {os.getloadavg()[0]:.2f})")

    with app.app_context():
        sync_items(mailbox_id, kinds=kinds)
        measure("within the push's margin of the initial sync")
        back = marks.MARGIN + timedelta(minutes=1)
        then = utcnow() - back  # each record as its link says it was synced; the last push now
        for table in {records.MODELS[k].modified_on.table for k in kinds}:  # (activity)
            db.session.execute(update(table).values(modified_on=then))
        db.session.execute(update(ItemLink).where(ItemLink.mailbox_id == mailbox_id)
                           .values(synced_on=then))
        db.session.execute(update(ItemPushMark).where(ItemPushMark.mailbox_id == mailbox_id)
                           .values(pushed_from=utcnow()))
        db.session.commit()
        measure(f"{back.total_seconds() / 60:.0f} minutes later")


def worker_latency(app, mailbox_id: int, side: Side, samples: int, poll: float,
                   interval: float, push: bool) -> None:
    """One change each way per sample with a sync worker running (a thread of this process,
    as ``sync worker`` runs it, polling every ``poll`` seconds): CRM -> server, the contact
    changed through the REST API (a request: the wake asks for the mailbox and wakes the
    worker), seen when the store holds it; server -> CRM, the card changed in the store as
    another client, seen when the CRM has it committed: brought by the mailbox's interval
    (``interval`` seconds), or with ``push`` by the store's push where it has one (Graph:
    its notifications to the webhook of the application, served for the while). Each
    server-side change is made with the mailbox at rest (no run under way or asked for, the
    store's own notifications posted); it came by push when it arrived before the
    mailbox's next scheduled run was due, else by that run. Without push it is made at a
    random moment of the interval, as people make changes: the figure is then at most one
    interval plus the worker's poll and one run (made just after a run, every change
    waited the whole interval: p50 5.05 s at an interval of 5 s)."""
    import random
    import threading
    from datetime import timezone
    from sqlalchemy import select
    from server.crm.models import Contact
    from server.db import db, utcnow
    from server.security import tokens
    from server.sync.models import Mailbox
    from server.sync.workers import scheduler
    from server.sync.workers.worker import run_worker
    pushed = push and bool(side.push)
    rng = random.Random(7)
    app.config.update(REGARDING_SYNC_POLL_SECONDS=poll, REGARDING_SYNC_INTERVAL_SECONDS=interval)
    with app.app_context():
        box = db.session.get(Mailbox, mailbox_id)
        box.sync_interval_seconds, box.next_sync_on = int(interval), None
        _, secret = tokens.issue(box.user, "bench", kind="api")
        rows = db.session.execute(select(Contact.id, Contact.contact_uid).order_by(Contact.id)
                                  .limit(2 * samples)).all()
        db.session.commit()
    from_server = f"push, {side.push} (interval {interval:.0f} s)" if pushed else \
        f"interval {interval:.0f} s" + (" (the store has no push)" if push else "")
    # On SQLite, a request that reads and then writes while the worker commits would be
    # refused ("database is locked") in a deferred transaction: this thread's wait for the
    # write lock, as the worker's threads do.
    from server.db import writer_thread
    writer_thread()
    web = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, kwargs=dict(
        app=app, worker_id="bench", concurrency=1, stop_event=stop, push=push), daemon=True)

    def until(check, what: str, limit: float = 600):
        """``check()``'s first truthy answer, looked for every 20 ms."""
        ends = time.monotonic() + limit
        while not (found := check()):
            if time.monotonic() > ends:
                raise SystemExit(f"{what}: not in {limit / 60:.0f} minutes")
            time.sleep(0.02)
        return found

    def in_crm(contact_id: int, text: str) -> bool:
        with app.app_context():
            found = db.session.scalar(select(Contact.description).where(
                Contact.id == contact_id))
            db.session.remove()
            return found == text

    def scheduled():
        """When the mailbox's next scheduled run is due, once it is at rest."""
        side.settle()
        with app.app_context():
            box = db.session.get(Mailbox, mailbox_id)
            due = None if box.lease_owner or box.sync_requested else box.next_sync_on
            db.session.remove()
        return due and (due if due.tzinfo else due.replace(tzinfo=timezone.utc))

    to_server, to_crm, paths = [], [], []
    with side.serve(app) if pushed else contextlib.nullcontext():
        worker.start()
        try:
            until(scheduled, "the first run")  # it was due (with push: it subscribes)
            notified = side.notified()
            with side.client() as store:
                book = store.collections("contact")[0]
                for n in range(samples):
                    contact_id, uid = rows[2 * n]
                    started = time.perf_counter()
                    reply = web.patch(f"/api/v1/contacts/{contact_id}", headers=auth,
                                      json={"job_title": f"Woken {n}"})
                    assert reply.status_code == 200, reply.get_data(as_text=True)
                    until(lambda: side.holds(uid, f"TITLE:Woken {n}"), "CRM -> server")
                    to_server.append(time.perf_counter() - started)
                    contact_id, uid = rows[2 * n + 1]
                    item = _read_one(store, book, uid)
                    due = until(scheduled, "the mailbox at rest")
                    if not pushed:  # a moment of the interval as any other (people do
                        time.sleep(rng.uniform(0, interval))  # not wait for a run's end)
                    started = time.perf_counter()
                    store.put(book, item.data.replace("FN:", f"NOTE:bench {n}\r\nFN:"),
                              item.ref, item.etag)
                    until(lambda: in_crm(contact_id, f"bench {n}"), "server -> CRM")
                    to_crm.append(time.perf_counter() - started)
                    paths.append("push" if utcnow() < due else "interval")
            notified = side.notified() - notified
        finally:
            stop.set()
            scheduler.wake_local()
            worker.join(60)
    came = (f"{paths.count('push')} came by push (before the scheduled run was due), "
            f"{paths.count('interval')} by the scheduled run"
            + (f"; {notified} notifications accepted" if pushed else ""))
    for name, values, mode in (("CRM -> server", to_server, f"wake (worker poll {poll:g} s)"),
                               ("server -> CRM", to_crm, f"{from_server}; {came}")):
        print(f"{name}: {_quantiles(values)} ({len(values)} changes, a running worker; "
              f"mode: {mode})")
    if pushed and "interval" in paths:
        print(f"  push did not bring {paths.count('interval')} of {len(paths)} changes: "
              "their figures are the interval's")


def _quantiles(values: list[float]) -> str:
    cuts = statistics.quantiles(values, n=20) if len(values) > 1 else values * 19
    return f"p50 {statistics.median(values):.2f} s, p95 {cuts[18]:.2f} s"


def _read_one(store, collection, uid: str):
    """The item ``uid`` as another client reads it (all of the collection, page by page)."""
    cursor = None
    while True:
        page = store.changes(collection, cursor)
        found = next((i for i in page.items if i.uid == uid), None)
        if found is not None or not page.more:
            return found
        cursor = page.cursor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=sorted(STORES), nargs="+", default=list(STORES))
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--contacts", type=int, default=5000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--poll", type=float, default=5.0,
                        help="poll mode: the wait before each sync; worker mode: the worker's "
                             "REGARDING_SYNC_POLL_SECONDS")
    parser.add_argument("--interval", type=float, default=None,
                        help="worker mode: the mailbox's interval (default 5 s; with --push, "
                             "300 s for a store with push, so a change arriving sooner came "
                             "by push)")
    parser.add_argument("--mode", choices=("poll", "worker"), nargs="+",
                        default=["poll", "worker"], help="latency as a polling loop calling "
                        "the sync, and/or with a running worker")
    parser.add_argument("--push", action="store_true",
                        help="worker mode: the worker's push on (server -> CRM by the store's "
                             "push where it has one; Radicale has none: the interval)")
    args = parser.parse_args()
    for name in args.store:
        print(f"--- store {name}, SQLite; load average {os.getloadavg()[0]:.2f}")
        with tempfile.TemporaryDirectory(prefix="regarding-bench-act-") as tmp:
            side = STORES[name](Path(tmp))
            try:
                app, mailbox_id = build(Path(tmp), side)
                initial(app, mailbox_id, side, args.events, args.contacts)
                quiet(app, mailbox_id)
                if args.samples and "poll" in args.mode:
                    latency(app, mailbox_id, side, args.samples, args.poll)
                if args.samples and "worker" in args.mode:
                    interval = args.interval if args.interval is not None else \
                        PUSH_INTERVAL if args.push and side.push else 5.0
                    worker_latency(app, mailbox_id, side, args.samples, args.poll, interval,
                                   args.push)
            finally:
                side.close()


if __name__ == "__main__":
    main()
