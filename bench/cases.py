"""Email-to-case benchmark: 5,000 messages into a queue's mailbox with two case rules.

A private Dovecot (tests/servers/dovecot.py) gets the Support queue's mailbox with
``--messages`` messages (default 5,000), small text mail as a help desk receives it: 60 %
new requests from 1,500 customers (a third of them CRM contacts), 30 % replies to an
earlier request (In-Reply-To, so they update its case), 5 % auto-replies (no case), 5 %
urgent requests. The queue tracks all email and has two rules, tried in order:

1. "Urgent": the subject contains "urgent" and a person wrote it: a high-priority case for
   one agent, acknowledged;
2. "Everything else": a person wrote it: a case (a new contact for an unknown sender),
   round-robin over a team of three agents, acknowledged (at most three a day per sender;
   the acknowledgements wait as "pending send": sending is not measured here).

Per database (SQLite, a file under /tmp; PostgreSQL, a fresh database dropped afterwards),
``server.sync.engine.run.sync_mailbox`` runs until the Inbox is done: first, as the
reference, over the same mail in a queue without case rules (tracking alone), then with the
two rules. Prints messages per second and cases created or updated per second (wall and
CPU), the CPU cost per message beside the reference's, the load average, and what was
stored. It asserts nothing.

Run: ``.venv/bin/python bench/cases.py [--messages N] [--db sqlite|postgresql|both]
[--batch N] [--no-reference]``.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import time
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from bench.ingest import WORDS, load_dovecot, sync_all  # noqa: E402
from bench.scratch import bench_app, scratch_database  # noqa: E402

CUSTOMERS = 1500
KNOWN_SHARE = 3  # every third customer is a CRM contact


def _text(rnd: random.Random) -> str:
    return " ".join(rnd.choice(WORDS) for _ in range(rnd.randint(30, 120))).capitalize() + "."


def make_messages(count: int, seed: int = 11) -> list[bytes]:
    """The help desk's mail, oldest first."""
    rnd = random.Random(seed)
    start = datetime(2025, 3, 3, 8, 0, tzinfo=timezone.utc)
    requests: list[tuple[str, str, str]] = []  # (message id, sender, subject)
    out = []
    for n in range(count):
        msg = EmailMessage()
        customer = rnd.randrange(CUSTOMERS)
        sender = f"customer{customer}@client{customer % 90}.example"
        mid = f"<desk-{n}-{rnd.getrandbits(40):010x}@client.example>"
        kind = rnd.random()
        if kind < 0.30 and requests:
            parent, sender, subject = rnd.choice(requests[-400:])
            msg["Subject"], msg["In-Reply-To"], msg["References"] = f"RE: {subject}", parent, parent
        elif kind < 0.35:
            msg["Subject"] = "Automatic reply: out of office"
            msg["Auto-Submitted"] = "auto-replied"
        else:
            urgent = "URGENT " if kind > 0.95 else ""
            subject = f"{urgent}{rnd.choice(WORDS).capitalize()} {rnd.choice(WORDS)} {n}"
            msg["Subject"] = subject
            requests.append((mid, sender, subject))
        msg["From"], msg["To"] = f"Customer {customer} <{sender}>", "support@contoso.example"
        msg["Message-ID"] = mid
        msg["Date"] = format_datetime(start + timedelta(minutes=3 * n))
        msg.set_content(_text(rnd))
        out.append(msg.as_bytes())
    return out


def _world(server, user, rules: bool) -> int:
    """The organization, three agents in a team, the Support queue owned by the team, the
    known customers, the queue's mailbox on the Dovecot user and (``rules``) its two case
    rules."""
    from server.crm.models import Organization, Queue
    from server.crm.queues import CaseRule
    from server.crm.registry import RECORD_TYPES
    from server.crm.services import records
    from server.db import db
    from server.security import authz
    from server.security.bootstrap import create_user, ensure_organization, root_unit
    from server.security.models import Team
    from tests.sync.mailboxes import make_mailbox, make_profile
    ensure_organization("Contoso")
    db.session.get(Organization, 1).mail_server_allowed_hosts = server.host  # a loopback peer
    agents = [create_user(f"agent{n}@contoso.example", f"Agent {n}", password="Correct-horse-9",
                          roles=["Customer Service Representative"]) for n in range(3)]
    team = Team(name="Care", business_unit_id=root_unit().id, members=agents)
    db.session.add(team)
    db.session.flush()
    queue = Queue(name="Support", email="support@contoso.example", owner_team_id=team.id,
                  owning_business_unit_id=root_unit().id)
    db.session.add(queue)
    p = authz.principal(agents[0])
    for c in range(0, CUSTOMERS, KNOWN_SHARE):
        records.create(p, RECORD_TYPES["contact"], {
            "first_name": "Customer", "last_name": str(c),
            "email1": f"customer{c}@client{c % 90}.example"})
    profile = make_profile(dovecot=server, outgoing_protocol="smtp", outgoing_host="127.0.0.1",
                           outgoing_port=1, settings={"timeout": 60})
    box = make_mailbox(profile, queue=queue, username=user.username, password=user.password,
                       enabled=True, tracking_option="all")
    if not rules:
        return box.id
    db.session.add_all([CaseRule(
        queue_id=queue.id, position=1, name="Urgent", priority="high", routing="user",
        route_user_id=agents[0].id, acknowledge=True,
        conditions=[{"kind": "subject_contains", "value": "urgent"}, {"kind": "not_automatic"}]),
        CaseRule(queue_id=queue.id, position=2, name="Everything else", routing="round_robin",
                 route_team_id=team.id, acknowledge=True, conditions=[{"kind": "not_automatic"}])])
    db.session.commit()
    return box.id


def run(kind: str, server, user, batch: int, rules: bool = True) -> dict:
    from server.crm.activities import Email
    from server.crm.models import Case, Contact
    from server.crm.queues import CaseAcknowledgement
    from server.db import db
    from server.sync.models import MessageDecision
    url, drop = scratch_database(kind, "cases")
    app = bench_app(url, "cases")
    try:
        with app.app_context():
            db.create_all()
            mailbox_id = _world(server, user, rules)
            contacts0 = db.session.scalar(select(func.count()).select_from(Contact))
            cpu0, wall0 = resource.getrusage(resource.RUSAGE_SELF).ru_utime, time.perf_counter()
            fetched, tracked, _ = sync_all(mailbox_id, batch)
            wall = time.perf_counter() - wall0
            cpu = resource.getrusage(resource.RUSAGE_SELF).ru_utime - cpu0

            def count(model, *where) -> int:
                return db.session.scalar(select(func.count()).select_from(model).where(*where))
            figures = {
                "wall": wall, "cpu": cpu, "fetched": fetched, "tracked": tracked,
                "cases": count(Case), "urgent": count(Case, Case.priority == "high"),
                "updated": count(MessageDecision, MessageDecision.reason.contains(
                    "so it is added to that case")),
                "new_contacts": count(Contact) - contacts0,
                "acks": count(CaseAcknowledgement),
                "pending": count(Email, Email.status == "pending_send"),
                "owners": dict(db.session.execute(select(Case.owner_user_id, func.count())
                                                  .group_by(Case.owner_user_id)).all())}
            db.session.remove()
            db.engine.dispose()
        return figures
    finally:
        drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--no-reference", dest="reference", action="store_false",
                        help="skip the reference run (the same mail, no case rules)")
    args = parser.parse_args()
    from tests.servers.dovecot import DovecotServer
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    messages = make_messages(args.messages)
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load "
          f"{os.getloadavg()[0]:.2f}; {len(messages)} messages")
    with DovecotServer() as server:
        server.start()
        for kind in kinds:
            user = server.add_user(f"cases-{kind}@example.com", "Bench-pass-1")
            print(f"\n[{kind}] loaded into Dovecot in {load_dovecot(server, user, messages):.1f} s")
            reference = None
            if args.reference:
                plain = server.add_user(f"plain-{kind}@example.com", "Bench-pass-1")
                load_dovecot(server, plain, messages)
                reference = run(kind, server, plain, args.batch, rules=False)
                print(f"[{kind}] reference, the same mail tracked by the queue without case "
                      f"rules: {reference['fetched'] / reference['wall']:,.0f} msg/s wall, "
                      f"{reference['fetched'] / reference['cpu']:,.0f} per CPU s; load "
                      f"{os.getloadavg()[0]:.2f}")
            f = run(kind, server, user, args.batch)
            worked = f["cases"] + f["updated"]
            print(f"[{kind}] {f['fetched']} messages, {f['tracked']} tracked in {f['wall']:.1f} s "
                  f"(CPU {f['cpu']:.1f} s): {f['fetched'] / f['wall']:,.0f} msg/s; "
                  f"{f['cases']} cases opened ({f['urgent']} urgent) and {f['updated']} updated "
                  f"= {worked / f['wall']:,.0f} cases/s wall, {worked / f['cpu']:,.0f} per CPU s")
            if reference is not None:
                print(f"[{kind}] with the rules: {f['cpu'] / f['fetched'] * 1000:.1f} ms CPU per "
                      f"message against {reference['cpu'] / reference['fetched'] * 1000:.1f} ms "
                      "without (the cost of email to case)")
            print(f"[{kind}] {f['new_contacts']} contacts created, {f['acks']} acknowledgements "
                  f"waiting ({f['pending']} pending send); cases per owner "
                  f"{sorted(f['owners'].values())}; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
