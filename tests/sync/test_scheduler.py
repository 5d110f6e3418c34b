"""The scheduler and the worker loop: which mailboxes are due, claiming with a lease, renewal,
expiry and takeover, "sync now", connection limits per server profile (also with workers
claiming at the same moment on PostgreSQL), the engine's dynamic interval through the
worker, outgoing mail, a failing mailbox, a graceful stop and a lost lease at a batch
boundary, and one worker only on SQLite."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text

from server.crm.activities import Email
from server.db import db, utcnow, writer_thread
from server.errors import Invalid, NotFound
from server.security import authz
from server.sync.workers import scheduler
from server.sync.connectors.maildir import create_maildir, deliver, mailbox_root
from server.sync.models import FolderState, Mailbox, MessageDecision, SyncRun
from server.sync.workers.worker import run_worker
from tests.conftest import ENCRYPTION_KEY
from tests.sync import world as w
from tests.waiting import until

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


@pytest.fixture
def store(tmp_path):
    return tmp_path / "store"


def boxes(crm, store, n, *, prof=None, prefix="box", **fields) -> list[Mailbox]:
    """``n`` enabled Maildir mailboxes of Bob's, each with its own tree under ``store``."""
    prof = prof or w.profile("maildir", maildir_root=str(store))
    fields.setdefault("tracking_option", "from_crm_records")  # Ann is a contact: tracked
    made, given = [], fields.pop("email_address", None)
    for i in range(n):
        address = given or f"{prefix}{i}@org.example"
        create_maildir(mailbox_root(store, address), ["Sent"])
        made.append(w.mailbox(crm.bob, prof=prof, email_address=address, **fields))
    db.session.commit()
    return made


def fill(store, box: Mailbox, count: int, sender="Ann Customer <ann@customer.example>") -> None:
    root = mailbox_root(store, box.email_address)
    for i in range(count):
        deliver(root, "INBOX", w.raw(sender=sender, subject=f"Message {i}",
                                      mid=f"m{i}.{box.id}@customer.example"))


def fresh(box: Mailbox) -> Mailbox:
    db.session.expire_all()
    return db.session.get(Mailbox, box.id)


def work(app, worker_id="worker-a", **options):
    """Run a worker in this thread until nothing is due. The test's own transaction ends
    first: on SQLite the worker's transactions take the write lock as they begin."""
    db.session.commit()
    return run_worker(app, worker_id=worker_id, push=False, until_idle=True, **options)


def ids(leases) -> list[int]:
    return [lease.mailbox_id for lease in leases]


# --------------------------------------------------------------------------- claiming

@pytest.mark.both_databases
def test_due_mailboxes_are_claimed_once_requested_first(app, crm, store):
    now = utcnow()
    overdue, never, later, off, asked = boxes(crm, store, 5)
    overdue.next_sync_on = now - timedelta(minutes=3)
    later.next_sync_on = asked.next_sync_on = now + timedelta(minutes=5)
    asked.sync_requested = True
    off.enabled = False
    db.session.commit()

    leases = scheduler.claim("worker-1", 10, now)

    assert ids(leases) == [asked.id, never.id, overdue.id]  # asked first, then the oldest due
    assert [lease.requested for lease in leases] == [True, False, False]
    expires = now + timedelta(seconds=scheduler.lease_seconds())
    for box in (asked, never, overdue):
        row = fresh(box)
        assert (row.lease_owner, row.lease_expires_on) == ("worker-1", expires)
    assert fresh(asked).sync_requested is False  # the request is consumed by this run
    assert fresh(later).lease_owner is None and fresh(off).lease_owner is None
    assert scheduler.claim("worker-2", 10, now) == []


@pytest.mark.both_databases
def test_the_asked_come_first_then_those_never_run_then_the_longest_overdue(app, crm, store):
    now = utcnow()
    asked_soon, asked_late, never, older, oldest, recent = boxes(crm, store, 6)
    asked_soon.next_sync_on = now + timedelta(minutes=5)
    asked_late.next_sync_on = now - timedelta(minutes=10)
    asked_soon.sync_requested = asked_late.sync_requested = True
    older.next_sync_on = now - timedelta(minutes=5)
    oldest.next_sync_on = now - timedelta(minutes=9)
    recent.next_sync_on = now - timedelta(minutes=1)
    db.session.commit()

    assert ids(scheduler.claim("worker-1", 4, now)) == [asked_late.id, asked_soon.id, never.id,
                                                        oldest.id]
    assert ids(scheduler.claim("worker-2", 4, now)) == [older.id, recent.id]


def _plan_nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _plan_nodes(child)


@pytest.mark.both_databases
def test_a_claim_reads_the_mailboxes_it_takes_not_every_overdue_one(app, crm, store,
                                                                     db_backend):
    if db_backend != "postgresql":
        pytest.skip("the plan is PostgreSQL's (the database of many workers)")
    (box,) = boxes(crm, store, 1)
    now = utcnow()
    db.session.execute(insert(Mailbox), [dict(
        name=f"late{i}@org.example", email_address=f"late{i}@org.example", user_id=box.user_id,
        server_profile_id=box.server_profile_id, enabled=True, email_approved=True,
        owning_business_unit_id=box.owning_business_unit_id,
        next_sync_on=now - timedelta(seconds=i + 1)) for i in range(3000)])
    db.session.commit()
    db.session.execute(text("ANALYZE mailbox"))
    query = scheduler.due_query(now, 64, lock=True)  # what a claim of 16 reads
    sql = str(query.compile(db.engine, compile_kwargs={"literal_binds": True}))
    (plan,) = db.session.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).scalar()
    db.session.rollback()
    read = [node["Actual Rows"] for node in _plan_nodes(plan["Plan"])
            if node.get("Relation Name") == "mailbox"]
    # The overdue ones are read in due order and the read stops after the 64 (the last
    # group of equal due times is finished; each due time here is its own): sorting all
    # 3,000 on every claim made a claim cost what was overdue.
    assert read and max(read) <= 2 * 64, plan
    assert len(db.session.execute(query).all()) == 64


@pytest.mark.both_databases
def test_renewed_lease_holds_and_an_expired_one_is_taken_over(app, crm, store):
    app.config["REGARDING_SYNC_LEASE_SECONDS"] = 3
    now = utcnow()
    (box,) = boxes(crm, store, 1)
    assert ids(scheduler.claim("worker-1", 1, now)) == [box.id]
    # Renewed at +2 s, the lease runs to +5 s: nobody else gets the mailbox at +4 s.
    assert scheduler.renew("worker-1", [box.id], now + timedelta(seconds=2)) == {box.id}
    assert scheduler.claim("worker-2", 1, now + timedelta(seconds=4)) == []
    # Not renewed again, it has expired at +6 s: another worker takes the mailbox over.
    assert ids(scheduler.claim("worker-2", 1, now + timedelta(seconds=6))) == [box.id]
    assert scheduler.renew("worker-1", [box.id]) == set()  # the first worker lost it
    assert scheduler.release("worker-1", box.id) is False  # and cannot give it back
    assert fresh(box).lease_owner == "worker-2"
    later = now + timedelta(minutes=5)
    assert scheduler.release("worker-2", box.id, next_sync_on=later) is True
    row = fresh(box)
    assert (row.lease_owner, row.lease_expires_on, row.next_sync_on) == (None, None, later)


@pytest.mark.both_databases
def test_sync_now_makes_a_mailbox_due_for_its_owner_only(app, crm, store, make_user):
    (box,) = boxes(crm, store, 1, next_sync_on=utcnow() + timedelta(hours=1))
    assert scheduler.claim("worker-1", 1) == []
    stranger = make_user("eve@org.example", name="Eve Other")
    with pytest.raises(NotFound):  # Salespeople read their own mailbox only
        scheduler.request_sync(authz.principal(stranger), box)
    scheduler.request_sync(crm.p, box)
    db.session.commit()
    leases = scheduler.claim("worker-1", 1)
    assert ids(leases) == [box.id] and leases[0].requested
    box = fresh(box)
    box.enabled = False
    db.session.commit()
    with pytest.raises(Invalid, match="not enabled"):
        scheduler.request_sync(crm.p, box)


def test_sync_now_command(app, crm, store):
    (box,) = boxes(crm, store, 1, next_sync_on=utcnow() + timedelta(hours=1))
    result = app.test_cli_runner().invoke(args=["sync", "now", "--mailbox", box.email_address])
    assert result.exit_code == 0, result.output
    assert "is due now" in result.output
    assert fresh(box).sync_requested is True
    missing = app.test_cli_runner().invoke(args=["sync", "now", "--mailbox", "nobody@x.example"])
    assert missing.exit_code != 0 and "No mailbox nobody@x.example" in missing.output


@pytest.mark.both_databases
def test_connection_limit_of_a_profile_holds_across_workers(app, crm, store):
    limited = w.profile("maildir", maildir_root=str(store), max_connections=2)
    open_ = w.profile("maildir", maildir_root=str(store), max_connections=50)
    small = boxes(crm, store, 5, prof=limited, prefix="small")
    large = boxes(crm, store, 3, prof=open_, prefix="large")

    first = ids(scheduler.claim("worker-1", 10))
    assert len(set(first) & {b.id for b in small}) == 2
    assert set(first) >= {b.id for b in large}
    assert scheduler.claim("worker-2", 10) == []  # the profile's two connections are in use
    scheduler.release("worker-1", first[0])
    assert len(scheduler.claim("worker-2", 10)) == 1  # one came free
    # An expired lease no longer counts against the limit.
    later = utcnow() + timedelta(seconds=scheduler.lease_seconds() + 1)
    again = set(ids(scheduler.claim("worker-3", 10, later)))
    assert len(again & {b.id for b in small}) == 2 and again >= {b.id for b in large}


@pytest.mark.both_databases
def test_workers_claiming_at_once_get_disjoint_mailboxes_within_limits(app, crm, store,
                                                                       db_backend):
    if db_backend != "postgresql":
        pytest.skip("SQLite runs a single worker; concurrent claims are PostgreSQL's")
    limited = w.profile("maildir", maildir_root=str(store), max_connections=3)
    small = {b.id for b in boxes(crm, store, 15, prof=limited, prefix="small")}
    unlimited = w.profile("maildir", maildir_root=str(store), max_connections=100)
    large = {b.id for b in boxes(crm, store, 30, prof=unlimited, prefix="large")}
    start = threading.Barrier(6)
    got: dict[str, list[int]] = {}

    def worker(name: str) -> None:
        mine: list[int] = []
        with app.app_context():
            start.wait()
            for _ in range(30):
                mine += ids(scheduler.claim(name, 2))
            db.session.remove()
        got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    claimed = [i for mine in got.values() for i in mine]
    assert len(claimed) == len(set(claimed))  # nobody claimed a mailbox twice
    assert set(claimed) >= large  # every unlimited mailbox was claimed
    assert len(set(claimed) & small) == 3  # and exactly the limit of the limited profile
    owners = dict(db.session.execute(select(Mailbox.id, Mailbox.lease_owner)).all())
    for name, mine in got.items():
        assert all(owners[i] == name for i in mine)


# --------------------------------------------------------------------------- the worker loop

@pytest.mark.both_databases
def test_worker_syncs_due_mailboxes_with_the_engines_dynamic_interval(app, crm, store):
    made = boxes(crm, store, 3)
    for box in made:
        fill(store, box, 4)
    stats = work(app, "worker-a", concurrency=2)
    assert stats.synced == 3 and stats.failed == stats.errors == 0
    for box in made:
        row = fresh(box)
        run = db.session.scalar(select(SyncRun).where(SyncRun.mailbox_id == box.id))
        assert run.worker == "worker-a" and run.finished_on is not None and run.tracked == 4
        assert row.lease_owner is None and row.lease_expires_on is None
        # Mail was tracked: the engine shortened the interval to the busy one.
        assert row.sync_interval_seconds == 120
        assert row.next_sync_on == row.last_success_on + timedelta(seconds=120)
    assert db.session.scalar(select(func.count()).select_from(Email)) == 3 * 4
    # Nothing is due now: a second worker pass does nothing ...
    assert work(app, "worker-a").claimed == 0
    # ... until someone asks; an idle run lengthens the interval.
    scheduler.request_sync(crm.p, fresh(made[0]))
    db.session.commit()
    stats = work(app, "worker-b")
    assert stats.runs == [(made[0].id, "success")]
    row = fresh(made[0])
    assert row.sync_interval_seconds == 440 and row.sync_requested is False
    assert row.next_sync_on == row.last_success_on + timedelta(seconds=440)


def test_a_failing_mailbox_does_not_stop_the_worker(app, crm, store):
    broken, good = boxes(crm, store, 2)
    fill(store, good, 2)
    os.rename(mailbox_root(store, broken.email_address), store / "moved-away")
    stats = work(app, "worker-a")
    assert sorted(stats.runs) == sorted([(broken.id, "failure"), (good.id, "success")])
    broken, good = fresh(broken), fresh(good)
    assert broken.incoming_status == "failure" and "no Maildir" in broken.incoming_message
    assert broken.next_sync_on > utcnow() + timedelta(seconds=200)  # backed off
    assert broken.lease_owner is None and good.lease_owner is None
    assert len(w.emails()) == 2


def test_outgoing_only_mailbox_sends_and_comes_back_after_the_interval(app, crm, store):
    prof = w.profile("maildir", maildir_root=str(store), outgoing_protocol="maildir")
    (box,) = boxes(crm, store, 1, prof=prof, incoming_method="none",
                   email_address="bob@org.example")
    draft = w.draft_email(crm.p, None, to="ann@customer.example", cc="", subject="Quote",
                          body="Here it is.")
    draft.status = "pending_send"
    db.session.commit()
    before = utcnow()
    stats = work(app, "worker-a")
    assert stats.runs == [(box.id, "skipped")] and stats.sent == 1
    db.session.expire_all()
    assert db.session.get(Email, draft.id).status == "sent"
    assert len(list((store / "outbox" / "new").iterdir())) == 1
    row = fresh(box)
    assert row.outgoing_status == "success" and row.lease_owner is None
    assert row.next_sync_on >= before + timedelta(seconds=300)


def _start(app, **options) -> tuple[threading.Thread, threading.Event, dict]:
    stop, out = threading.Event(), {}
    db.session.commit()

    def target():
        out["stats"] = run_worker(app, stop_event=stop, push=False, **options)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, stop, out


def _wait_for_first_batch(box: Mailbox, timeout: float = 60) -> None:
    until(lambda: db.session.scalar(select(FolderState.id).where(
        FolderState.mailbox_id == box.id, FolderState.cursor.is_not(None))),
        "the first batch committed", timeout=timeout, every=0.01, session=db.session)


def _decided(box: Mailbox) -> int:
    return db.session.scalar(select(func.count()).select_from(MessageDecision)
                             .where(MessageDecision.mailbox_id == box.id))


@pytest.mark.both_databases
def test_stopping_finishes_the_batch_in_hand_and_gives_leases_back(app, crm, store):
    app.config["REGARDING_SYNC_BATCH_SIZE"] = 5
    (box,) = boxes(crm, store, 1)
    fill(store, box, 150)
    thread, stop, out = _start(app, worker_id="worker-a", concurrency=1)
    _wait_for_first_batch(box)
    stop.set()
    thread.join(60)
    assert not thread.is_alive() and out["stats"].interrupted == 1
    run = db.session.scalar(select(SyncRun).where(SyncRun.mailbox_id == box.id))
    assert run.error_code == "interrupted" and run.finished_on is not None
    assert "stopping" in run.error
    row = fresh(box)
    assert row.lease_owner is None and row.incoming_status == "not_run"  # nothing failed
    done = _decided(box)
    assert 0 < done < 150 and done % 5 == 0  # whole batches only
    assert len(w.emails()) == done
    # The next worker goes on from the last stored batch.
    work(app, "worker-b")
    assert _decided(box) == 150 and len(w.emails()) == 150


@pytest.mark.both_databases
def test_a_lost_lease_stops_the_run_at_the_next_batch(app, crm, store, db_backend):
    if db_backend != "postgresql":
        pytest.skip("SQLite runs one worker: no other worker can take a lease over")
    app.config.update(REGARDING_SYNC_BATCH_SIZE=5, REGARDING_SYNC_LEASE_SECONDS=1)
    (box,) = boxes(crm, store, 1)
    fill(store, box, 1000)
    thread, stop, out = _start(app, worker_id="worker-a", concurrency=1, until_idle=True)
    _wait_for_first_batch(box)
    # Another worker whose clock says the lease has run out takes the mailbox over (as a
    # worker thread: on SQLite its transaction takes the write lock as it begins).
    later = utcnow() + timedelta(seconds=5)
    was = writer_thread()
    try:
        taken = ids(scheduler.claim("worker-b", 1, later))
    finally:
        writer_thread(was)
    thread.join(60)
    assert taken == [box.id]
    assert not thread.is_alive() and out["stats"].interrupted == 1
    run = db.session.scalar(select(SyncRun).where(SyncRun.mailbox_id == box.id))
    assert run.error_code == "interrupted" and "lost its lease" in run.error
    assert fresh(box).lease_owner == "worker-b"  # not given back by the worker that lost it
    assert len(w.emails()) == _decided(box) < 1000


# --------------------------------------------------------------------------- one worker on SQLite

def test_a_second_worker_on_sqlite_is_refused(app, tmp_path):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with scheduler.worker_slot(url) as sole:
        assert sole is True
        with pytest.raises(scheduler.WorkerRefused, match="SQLite supports one sync worker"):
            with scheduler.worker_slot(url):
                pass
        # The command says so and exits, too.
        env = {**os.environ, "REGARDING_DATABASE_URL": url, "REGARDING_INSTANCE_DIR": str(tmp_path),
               "REGARDING_ENCRYPTION_KEY": ENCRYPTION_KEY, "REGARDING_SECRET_KEY": "x" * 32,
               "REGARDING_LOG_LEVEL": "WARNING"}
        done = subprocess.run([sys.executable, "-m", "flask", "--app", "server", "sync", "worker",
                               "--no-push"], cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1
        assert f"process {os.getpid()}" in done.stderr and "SQLite supports one" in done.stderr
    with scheduler.worker_slot(url):  # free again once the first is gone
        pass
