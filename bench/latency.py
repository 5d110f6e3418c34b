"""Sync benchmark: push latency, from an IMAP MOVE into a tracked folder to the activity in
the CRM.

A private Dovecot user has ``--moves`` messages (default 100) in its Inbox and a tracked
folder "INBOX/Contoso deal" (a folder rule regarding an opportunity). The mailbox tracks
nothing else (tracking option "none"), so only the move makes an email tracked. A sync
worker with push on runs in this process (``run_worker``: IMAP NOTIFY/IDLE watchers, four
sync threads) against SQLite or PostgreSQL. Then, one message at a time, a second IMAP
client MOVEs a message into the tracked folder, and the clock runs until the Email activity
with its Message-ID can be read from the database (polled every 10 ms on its own
connection).

Prints p50, p95 and the maximum over the moves (target: p95 <= 2 s), and the engine's own
figure for the same emails (``MessageDecision.latency_ms``: arrival in the folder to
tracked). It asserts nothing.

**Steady mode** (``--steady MINUTES``): the same worker left running, and one action every
``--every`` seconds (default 60) by a second IMAP connection, in turn: a MOVE into the
tracked folder, a COPY into it (the original stays in the Inbox), a MOVE, and a rename of
the tracked folder followed by a MOVE into it under its new name. Each is timed to the
activity visible. ``--no-notify`` hides NOTIFY from the connector (most servers have IDLE
only: the Inbox is IDLEd and the tracked folder asked its STATUS); ``--idle-notify S`` sets
Dovecot's IDLE keepalive (default 2 minutes). Prints p50/p95/max per kind of action, the
actions slower than 2 s (push missed them: the poll found them), the watcher's lost
connections, and the push alerts raised. Target: p95 <= 1 s, max <= 2 s.

Run: ``.venv/bin/python bench/latency.py [--moves N] [--db sqlite|postgresql]
[--steady MINUTES [--every S] [--no-notify] [--idle-notify S]]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text  # noqa: E402
from bench.scratch import bench_app, scratch_database  # noqa: E402

FOLDER = "INBOX/Contoso deal"


def _message(n: int) -> bytes:
    return (f"From: Someone <someone{n}@else.example>\r\nTo: sam@contoso.example\r\n"
            f"Subject: Deal terms {n}\r\nMessage-ID: <move{n}@else.example>\r\n"
            f"Date: Tue, 05 Mar 2024 10:00:00 +0000\r\n\r\n" + "Terms of the deal.\r\n" * 200
            ).encode()


def setup(app, server, user, moves: int) -> int:
    from server.crm.services import records
    from server.crm.registry import RECORD_TYPES
    from server.db import db
    from server.security import authz
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.engine.accounts import account_for
    from server.sync.connectors import incoming
    from server.sync.models import EmailServerProfile, FolderRule, Mailbox
    db.create_all()
    ensure_organization("Contoso")
    from server.crm.models import Organization
    db.session.get(Organization, 1).mail_server_allowed_hosts = server.host  # a loopback peer
    sam = create_user("sam@contoso.example", "Sam Seller", password="Correct-horse-9",
                      roles=["Salesperson"])
    db.session.flush()
    p = authz.principal(sam)
    account = records.create(p, RECORD_TYPES["account"], {"name": "Contoso Ltd"})
    opp = records.create(p, RECORD_TYPES["opportunity"], {"name": "Contoso deal",
                                                          "customer_account_id": account.id})
    profile = EmailServerProfile(name="Bench Dovecot", incoming_protocol="imap",
                                 incoming_host=server.host, incoming_port=server.imap_port,
                                 incoming_security="none", owning_business_unit_id=root_unit().id,
                                 settings={"timeout": 30})
    db.session.add(profile)
    db.session.flush()
    box = Mailbox(name="Sam", email_address="sam@contoso.example", user_id=sam.id,
                  server_profile_id=profile.id, username=user.username, password=user.password,
                  enabled=True, email_approved=True, tracking_option="none",
                  owning_business_unit_id=root_unit().id)
    db.session.add(box)
    db.session.flush()
    server.create_mailbox(user, FOLDER)
    with incoming("imap")(account_for(box, "incoming")) as imap:
        key = next(f.key for f in imap.list_folders() if f.name == FOLDER)
    rule = FolderRule(mailbox_id=box.id, user_id=sam.id, folder_key=key, folder_name=FOLDER)
    rule.set_regarding("opportunity", opp.id)
    db.session.add(rule)
    db.session.commit()
    from imapclient import IMAPClient
    with IMAPClient(server.host, server.imap_port, ssl=False) as client:
        client.login(user.username, user.password)
        for n in range(moves):
            client.append("INBOX", _message(n))
    return box.id


def _visible(probe, mid: str, started: float, limit: float = 600) -> float:
    """Seconds from ``started`` until the Email activity with this Message-ID is readable."""
    while True:
        with probe.connect() as conn:
            if conn.execute(text("SELECT 1 FROM email WHERE message_id = :m"),
                            {"m": mid}).first():
                return time.perf_counter() - started
        if time.perf_counter() - started > limit:
            raise SystemExit(f"{mid} was not tracked within {limit:.0f} s")
        time.sleep(0.01)


class _Drops:
    """Counts the push watcher's lost connections (its 'watching stopped' log lines)."""

    def __init__(self):
        import logging
        self.count, self.reasons = 0, {}
        self.logger = logging.getLogger("server.sync.workers.push")
        self.handler = logging.Handler(logging.INFO)
        self.handler.emit = self._emit
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)

    def _emit(self, record) -> None:
        message = record.getMessage()
        if "watching stopped" in message:
            self.count += 1
            reason = message.split("(", 1)[-1].split(")")[0][:60]
            self.reasons[reason] = self.reasons.get(reason, 0) + 1


def steady(server, user, probe, minutes: float, every: float, moves_available: int) -> dict:
    """One action every ``every`` seconds for ``minutes``: (kind, seconds) samples."""
    from imapclient import IMAPClient
    samples: list[tuple[str, float]] = []
    folder, renames = FOLDER, 0
    kinds = ("move", "copy", "move", "rename+move")
    deadline = time.monotonic() + minutes * 60
    n = 0
    while time.monotonic() < deadline and n < moves_available:
        kind = kinds[n % len(kinds)]
        with IMAPClient(server.host, server.imap_port, ssl=False) as client:
            client.login(user.username, user.password)
            if kind == "rename+move":
                renames += 1
                renamed = f"{FOLDER} {renames}"
                client.rename_folder(folder, renamed)
                folder = renamed
            client.select_folder("INBOX")
            uid = min(u for u in client.search(["SUBJECT", f"Deal terms {n}"]))
            started = time.perf_counter()
            if kind == "copy":
                client.copy([uid], folder)
            else:
                client.move([uid], folder)
        samples.append((kind, _visible(probe, f"move{n}@else.example", started)))
        print(f"  {time.strftime('%H:%M:%S')} {kind:12s} {samples[-1][1]:6.2f} s", flush=True)
        n += 1
        time.sleep(max(0.0, every - samples[-1][1]))
    return {"samples": samples}


def _pct(values, p):
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--steady", type=float, default=0, metavar="MINUTES")
    parser.add_argument("--every", type=float, default=60, metavar="SECONDS")
    parser.add_argument("--no-notify", action="store_true")
    parser.add_argument("--idle-notify", type=int, default=None, metavar="SECONDS")
    args = parser.parse_args()
    if args.steady:
        args.moves = max(args.moves, int(args.steady * 60 / args.every) + 2)
    if args.no_notify:  # as most servers: IDLE, no NOTIFY
        from server.sync.connectors.imap import ImapConnector
        ImapConnector.capabilities = lambda self: tuple(
            c for c in self.client.capabilities() if c != b"NOTIFY")
    from imapclient import IMAPClient
    from server.db import db
    from server.sync.engine.run import sync_mailbox
    from server.sync.models import MessageDecision
    from server.sync.workers.worker import run_worker
    from tests.servers.dovecot import DovecotServer

    url, drop = scratch_database(args.db, "latency")
    app = bench_app(url, "latency")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"{args.db}" + (f"; steady {args.steady:g} min, an action every {args.every:g} s, "
                          f"{'IDLE only' if args.no_notify else 'NOTIFY'}, Dovecot IDLE keepalive "
                          f"{args.idle_notify or 120} s" if args.steady else ""))
    stop = threading.Event()
    drops = _Drops()
    try:
        with DovecotServer(idle_notify_seconds=args.idle_notify) as server, app.app_context():
            server.start()
            user = server.add_user("latency@example.com", "Bench-pass-1")
            box_id = setup(app, server, user, args.moves)
            first = sync_mailbox(box_id)  # the Inbox read once: nothing is tracked
            print(f"initial sync: {first.fetched} messages read, {first.tracked} tracked")
            db.session.remove()
            worker = threading.Thread(target=run_worker, args=(app,), kwargs=dict(
                worker_id="latency", concurrency=4, stop_event=stop, push=True), daemon=True)
            worker.start()
            time.sleep(3)  # the watcher connects and reads its folders
            probe = create_engine(url)
            seconds = []
            if args.steady:
                samples = steady(server, user, probe, args.steady, args.every, args.moves)["samples"]
                probe.dispose()
                stop.set()
                worker.join(30)
                _report_steady(samples, drops, db)
                return
            with IMAPClient(server.host, server.imap_port, ssl=False) as client:
                client.login(user.username, user.password)
                client.select_folder("INBOX")
                uids = sorted(client.search(["ALL"]))
                for n, uid in enumerate(uids[:args.moves]):
                    mid = f"move{n}@else.example"
                    started = time.perf_counter()
                    client.move([uid], FOLDER)
                    seconds.append(_visible(probe, mid, started, 60))
            probe.dispose()
            stop.set()
            worker.join(30)
            engine_ms = [row for row in db.session.scalars(select(MessageDecision.latency_ms).where(
                MessageDecision.tracked.is_(True), MessageDecision.latency_ms.is_not(None)))]
            db.session.remove()
            db.engine.dispose()
    finally:
        stop.set()
        drop()
    if args.steady:
        return
    ordered = sorted(seconds)
    pct = _pct
    print(f"{len(seconds)} moves: MOVE -> activity visible: p50 {pct(ordered, 50):.2f} s, "
          f"p95 {pct(ordered, 95):.2f} s, max {ordered[-1]:.2f} s, mean {statistics.mean(ordered):.2f} s")
    if engine_ms:
        ms = sorted(engine_ms)
        print(f"engine's latency_ms (arrival in the folder -> tracked) for {len(ms)} emails: "
              f"p50 {pct(ms, 50) / 1000:.2f} s, p95 {pct(ms, 95) / 1000:.2f} s")


def _report_steady(samples: list[tuple[str, float]], drops: _Drops, db) -> None:
    from sqlalchemy import select as select_
    from server.sync.models import Alert
    print(f"load {os.getloadavg()[0]:.2f}")
    for kind in sorted({k for k, _ in samples}) + ["all"]:
        values = sorted(v for k, v in samples if kind in ("all", k))
        print(f"{kind:12s} n={len(values):3d}  p50 {_pct(values, 50):6.2f} s  p95 "
              f"{_pct(values, 95):6.2f} s  max {values[-1]:6.2f} s  over 2 s: "
              f"{sum(v > 2 for v in values)}")
    print(f"push watcher's lost connections: {drops.count} {drops.reasons or ''}")
    alerts = db.session.scalars(select_(Alert.code)).all()
    print(f"alerts raised: {', '.join(sorted(set(alerts))) or 'none'}")
    db.session.remove()


if __name__ == "__main__":
    main()
