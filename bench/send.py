"""Sending benchmark: email from the CRM, from "Send" to sent through aiosmtpd.

One user with an outgoing-only mailbox (SMTP to an aiosmtpd server in this process, no Sent
copy) and a sync worker in a thread (``run_worker``, polling as configured, push off). Two
phases, both through the REST API's ``POST /api/v1/activities/{id}/send`` (drafts made
first, not timed):

1. **Idle**: ``--idle`` emails (default 20) sent one at a time, each waiting until it is
   sent: the time from Send to sent with the worker idle (target p95 <= 3 s).
2. **Queue**: ``--emails`` drafts (default 1,000) sent back to back by the same user; emails
   per second end to end (first Send to last sent) and Send-to-sent p50/p95.

"Sent" is when the email's status reads ``sent`` in the database (a probe polls every 10 ms
on its own connection). Prints the load average before and after. Asserts nothing.

Run: ``.venv/bin/python bench/send.py [--emails N] [--idle N] [--db postgresql|sqlite]``
(PostgreSQL by default, a fresh database on 127.0.0.1:5432 dropped afterwards).
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

from sqlalchemy import create_engine, text  # noqa: E402
from bench.scratch import bench_app, scratch_database  # noqa: E402


def setup(smtp) -> tuple[int, str]:
    """The user, their mailbox and an API token."""
    from server.db import db
    from server.security import tokens
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.sync.models import EmailServerProfile, Mailbox
    db.create_all()
    from server.crm.models import Organization
    ensure_organization("Contoso")
    db.session.get(Organization, 1).mail_server_allowed_hosts = smtp.host  # a loopback peer
    sam = create_user("sam@contoso.example", "Sam Seller", password="Correct-horse-9",
                      roles=["Salesperson"])
    profile = EmailServerProfile(name="Bench SMTP", incoming_protocol="imap",
                                 outgoing_protocol="smtp", outgoing_host=smtp.host,
                                 outgoing_port=smtp.port, outgoing_security="none",
                                 owning_business_unit_id=root_unit().id,
                                 settings={"timeout": 30, "save_sent_copy": False})
    db.session.add(profile)
    db.session.flush()
    box = Mailbox(name="Sam", email_address=sam.email, user_id=sam.id, incoming_method="none",
                  server_profile_id=profile.id, enabled=True, email_approved=True,
                  owning_business_unit_id=root_unit().id)
    db.session.add(box)
    _, secret = tokens.issue(sam, "bench", days=1, kind="api")
    db.session.commit()
    return box.id, secret


def drafts(client, headers, count: int, tag: str) -> list[int]:
    ids = []
    for n in range(count):
        r = client.post("/api/v1/activities", headers=headers, json={
            "type": "email", "subject": f"{tag} {n}", "html_body": f"<p>Hello {n}</p>",
            "parties": [{"role": "to", "address": f"customer{n}@customer.example"}]})
        assert r.status_code == 201, r.get_json()
        ids.append(r.get_json()["id"])
    return ids


class Probe:
    """When each email first reads as sent (its own connection, every 10 ms)."""

    def __init__(self, url: str):
        self.engine = create_engine(url)
        self.sent: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            with self.engine.connect() as conn:
                rows = conn.execute(text("SELECT id FROM email WHERE status = 'sent'")).all()
            now = time.perf_counter()
            for (ident,) in rows:
                self.sent.setdefault(ident, now)
            time.sleep(0.01)

    def wait(self, ids, timeout: float = 600) -> None:
        end = time.perf_counter() + timeout
        while not all(i in self.sent for i in ids):
            if time.perf_counter() > end:
                raise SystemExit(f"{sum(i not in self.sent for i in ids)} emails not sent "
                                 f"within {timeout:.0f} s")
            time.sleep(0.01)

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.engine.dispose()


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--emails", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="postgresql")
    args = parser.parse_args()
    from server.db import db
    from server.sync.workers.worker import run_worker
    from tests.servers.smtp import SMTPServer

    url, drop = scratch_database(args.db, "send")
    app = bench_app(url, "send")
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}, {args.db}")
    stop = threading.Event()
    try:
        with SMTPServer() as smtp, app.app_context():
            box_id, token = setup(smtp)
            client = app.test_client()
            headers = {"Authorization": f"Bearer {token}"}
            idle_ids = drafts(client, headers, args.idle, "Idle")
            queue_ids = drafts(client, headers, args.emails, "Queue")
            db.session.remove()
            if args.db == "sqlite":
                # SQLite in WAL mode refuses at once ("database is locked") a transaction
                # that read before the worker's last commit and then writes; this thread's
                # Send calls take the write lock as they begin, as the worker's threads do.
                from server.db import writer_thread
                writer_thread(True)
            worker = threading.Thread(target=run_worker, args=(app,), kwargs=dict(
                worker_id="send-bench", concurrency=4, stop_event=stop, push=False),
                daemon=True)
            worker.start()
            probe = Probe(url)
            time.sleep(2)  # the worker's first look: nothing due

            idle = []
            for ident in idle_ids:
                started = time.perf_counter()
                r = client.post(f"/api/v1/activities/{ident}/send", headers=headers)
                assert r.status_code == 200, r.get_json()
                probe.wait([ident], timeout=60)
                idle.append(probe.sent[ident] - started)
                time.sleep(0.2)  # the worker goes idle again

            started_at: dict[int, float] = {}
            first = time.perf_counter()
            for ident in queue_ids:
                started_at[ident] = time.perf_counter()
                r = client.post(f"/api/v1/activities/{ident}/send", headers=headers)
                assert r.status_code == 200, r.get_json()
            queued = time.perf_counter() - first
            probe.wait(queue_ids)
            last = max(probe.sent[i] for i in queue_ids)
            latencies = [probe.sent[i] - started_at[i] for i in queue_ids]
            probe.close()
            stop.set()
            worker.join(30)
            delivered = len(smtp.messages)
            db.session.remove()
            db.engine.dispose()
    finally:
        stop.set()
        drop()
    print(f"idle worker, {len(idle)} emails one at a time: Send -> sent p50 "
          f"{pct(idle, 50):.2f} s, p95 {pct(idle, 95):.2f} s, max {max(idle):.2f} s "
          f"(target p95 <= 3 s)")
    print(f"queue of {len(queue_ids)}: queued in {queued:.2f} s "
          f"({len(queue_ids) / queued:.0f} Send calls/s); all sent {last - first:.2f} s after "
          f"the first Send: {len(queue_ids) / (last - first):.1f} emails/s end to end")
    print(f"queue Send -> sent: p50 {pct(latencies, 50):.2f} s, p95 {pct(latencies, 95):.2f} s, "
          f"mean {statistics.mean(latencies):.2f} s; aiosmtpd received {delivered} messages")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
