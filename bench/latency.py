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

Run: ``.venv/bin/python bench/latency.py [--moves N] [--db sqlite|postgresql]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, select, text  # noqa: E402
from bench.scratch import scratch_database  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    from cryptography.fernet import Fernet
    from imapclient import IMAPClient
    from server import create_app
    from server.db import db
    from server.sync.engine.run import sync_mailbox
    from server.sync.models import MessageDecision
    from server.sync.workers.worker import run_worker
    from tests.servers.dovecot import DovecotServer

    url, drop = scratch_database(args.db, "latency")
    instance = tempfile.mkdtemp(prefix="regarding-latency-instance-")
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "SECRET_KEY": "bench",
                      "REGARDING_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                      "REGARDING_INSTANCE_DIR": instance, "REGARDING_LOG_LEVEL": "WARNING",
                      "REGARDING_SYNC_POLL_SECONDS": 1.0})
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, "
          f"{args.db}")
    stop = threading.Event()
    try:
        with DovecotServer() as server, app.app_context():
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
            with IMAPClient(server.host, server.imap_port, ssl=False) as client:
                client.login(user.username, user.password)
                client.select_folder("INBOX")
                uids = sorted(client.search(["ALL"]))
                for n, uid in enumerate(uids[:args.moves]):
                    mid = f"move{n}@else.example"
                    started = time.perf_counter()
                    client.move([uid], FOLDER)
                    while True:
                        with probe.connect() as conn:
                            found = conn.execute(text(
                                "SELECT 1 FROM email WHERE message_id = :m"), {"m": mid}).first()
                        if found:
                            break
                        if time.perf_counter() - started > 60:
                            raise SystemExit(f"{mid} was not tracked within 60 s")
                        time.sleep(0.01)
                    seconds.append(time.perf_counter() - started)
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
    ordered = sorted(seconds)

    def pct(values, p):
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]
    print(f"{len(seconds)} moves: MOVE -> activity visible: p50 {pct(ordered, 50):.2f} s, "
          f"p95 {pct(ordered, 95):.2f} s, max {ordered[-1]:.2f} s, mean {statistics.mean(ordered):.2f} s")
    if engine_ms:
        ms = sorted(engine_ms)
        print(f"engine's latency_ms (arrival in the folder -> tracked) for {len(ms)} emails: "
              f"p50 {pct(ms, 50) / 1000:.2f} s, p95 {pct(ms, 95) / 1000:.2f} s")


if __name__ == "__main__":
    main()
