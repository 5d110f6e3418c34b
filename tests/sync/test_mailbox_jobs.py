"""Provisioning and bulk administration: with a default profile and automatic mailboxes, 200
new users get a mailbox each; a bulk approve and a bulk Test & Enable over the whole profile
run as jobs claimed by two workers (on PostgreSQL, disjoint claims with SKIP LOCKED), with
progress and a result per mailbox, against the real Dovecot and aiosmtpd; bulk apply
defaults; and the privileges each kind of job needs."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from server.crm.models import Organization, Queue
from server.db import db
from server.errors import Forbidden
from server.security import authz
from server.security.bootstrap import root_unit
from server.sync.admin import jobs, provision
from server.sync.models import Mailbox, MailboxJobItem
from tests.sync.mailboxes import make_profile

USERS = 200


@pytest.fixture
def org_defaults(app, dovecot, mail_user, make_smtp_server):
    """A profile signing in with one service account (the Dovecot user) for every mailbox,
    sending through aiosmtpd; the organization's default, with automatic mailboxes."""
    smtp = make_smtp_server()
    profile = make_profile(dovecot=dovecot, smtp=smtp, use_service_account=True,
                           service_username=mail_user.username,
                           service_password=mail_user.password)
    org = db.session.get(Organization, 1)
    org.default_server_profile_id = profile.id
    org.create_mailboxes_automatically = True
    db.session.commit()
    return profile


def _run_workers(app, count: int) -> list[int]:
    ran = [0] * count

    def one(index: int) -> None:
        with app.app_context():
            ran[index] = jobs.work(f"test-worker-{index}", batch=5)
            db.session.remove()
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return ran


@pytest.mark.both_databases
def test_two_hundred_mailboxes_provisioned_approved_and_tested_in_bulk(
        app, db_backend, make_user, org_defaults):
    admin = authz.principal(make_user("ada@org.example", roles=["System Administrator"]))
    for n in range(USERS):
        make_user(f"seller{n:03d}@org.example", name=f"Seller {n:03d}")
    db.session.add(Queue(name="Support", email="support@org.example", owner_user_id=admin.user_id,
                         owning_business_unit_id=root_unit().id))
    db.session.commit()
    boxes = db.session.scalars(select(Mailbox).where(
        Mailbox.server_profile_id == org_defaults.id)).all()
    assert len(boxes) == USERS + 2  # the sellers, the administrator and the queue
    assert all(not b.enabled and not b.email_approved for b in boxes)
    assert {b.incoming_method for b in boxes} == {"server_side_sync"}

    approve = jobs.start(admin, "approve", profile_id=org_defaults.id)
    db.session.commit()
    assert approve.total == USERS + 2
    assert sum(_run_workers(app, 1)) == USERS + 2

    test = jobs.start(admin, "test_enable", profile_id=org_defaults.id)
    db.session.commit()
    first = jobs.claim("early-worker", 50)
    for item_id in first:
        jobs.run_item("early-worker", item_id)
    seen, _ = jobs.progress(admin, test.id)
    assert (seen.finished, seen.pending, seen.percent) == (50, USERS + 2 - 50, 25)
    assert seen.job.finished_on is None

    workers = 2 if db_backend == "postgresql" else 1  # SQLite: one worker at a time
    ran = _run_workers(app, workers)
    assert sum(ran) == USERS + 2 - 50
    if workers == 2:
        assert all(ran), ran  # both workers had a share
    db.session.expire_all()
    done, items = jobs.progress(admin, test.id)
    assert (done.done, done.failed, done.pending, done.percent) == (USERS + 2, 0, 0, 100)
    assert done.job.finished_on is not None
    assert all("is enabled" in item.message for item in items)
    assert db.session.scalar(select(func.count(Mailbox.id)).where(
        Mailbox.enabled.is_(True), Mailbox.server_profile_id == org_defaults.id)) == USERS + 2


def test_apply_defaults_in_bulk_and_the_privileges_each_job_needs(app, make_user, org_defaults):
    admin = authz.principal(make_user("ada@org.example", roles=["System Administrator"]))
    seller = authz.principal(make_user("sam@org.example"))
    other = make_profile(name="Old server")
    old = Mailbox(name="Old", email_address="old@org.example", user_id=seller.user_id,
                  server_profile_id=other.id, incoming_method="addin", enabled=True,
                  incoming_status="success", owning_business_unit_id=root_unit().id)
    db.session.add(old)
    db.session.commit()
    for kind in ("approve", "apply_defaults"):
        with pytest.raises(Forbidden):
            jobs.start(seller, kind, mailbox_ids=[old.id])
    job = jobs.start(admin, "apply_defaults", mailbox_ids=[old.id, seller.user.id * 0 + old.id])
    db.session.commit()
    assert jobs.work("w") == 1
    db.session.expire_all()
    progress, (item,) = jobs.progress(admin, job.id)
    assert item.status == "done" and "test and enable it again" in item.message
    assert (old.server_profile_id, old.incoming_method, old.enabled) == (
        org_defaults.id, "server_side_sync", False)
    assert provision.apply_defaults(admin, old) == "It already had the default settings."
    with pytest.raises(Exception):
        jobs.progress(seller, job.id)  # not theirs, and no mailbox administrator


def test_a_dead_workers_items_are_taken_over_once_the_lease_runs_out(app, make_user,
                                                                    org_defaults):
    from datetime import timedelta
    from server.db import utcnow
    admin = authz.principal(make_user("ada@org.example", roles=["System Administrator"]))
    job = jobs.start(admin, "approve", profile_id=org_defaults.id)
    db.session.commit()
    assert jobs.claim("dead", 10) and jobs.claim("alive", 10) == []
    later = utcnow() + timedelta(seconds=jobs.LEASE_SECONDS + 1)
    taken = jobs.claim("alive", 10, now=later)
    assert taken and all(jobs.run_item("alive", i) == "done" for i in taken)
    assert db.session.scalar(select(MailboxJobItem.status).where(
        MailboxJobItem.job_id == job.id)) == "done"


def test_the_sync_worker_runs_bulk_job_items_in_a_free_slot(app, make_user, org_defaults):
    from server.sync.workers.worker import run_worker
    admin = authz.principal(make_user("ada@org.example", roles=["System Administrator"]))
    for n in range(3):
        make_user(f"seller{n}@org.example")
    job = jobs.start(admin, "approve", profile_id=org_defaults.id)
    db.session.commit()
    run_worker(app, worker_id="sync-worker", concurrency=2, push=False, until_idle=True)
    db.session.expire_all()
    progress, items = jobs.progress(admin, job.id)
    assert (progress.done, progress.pending, len(items)) == (4, 0, 4)
    assert progress.job.finished_on is not None


def test_users_and_queues_mailboxes_have_an_approval_switch_each(app, make_user):
    from server.sync.engine.context import MailboxRun
    from tests.sync import world as w
    queue, _team = w.support_queue(make_user)
    bob = make_user("bob@org.example")
    prof = w.profile(process_emails_after=None)
    user_box = w.mailbox(bob, prof=prof)
    queue_box = w.mailbox(queue=queue, prof=prof)
    user_box.email_approved = queue_box.email_approved = False
    org = db.session.get(Organization, 1)
    org.require_email_approval, org.require_queue_email_approval = True, False
    assert (user_box.approved_for(org), queue_box.approved_for(org)) == (False, True)
    org.require_email_approval, org.require_queue_email_approval = False, True
    assert (user_box.approved_for(org), queue_box.approved_for(org)) == (True, False)
    # "Process email received after": the mailbox's own date wins over the profile's.
    from datetime import datetime, timezone
    prof.process_emails_after = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert MailboxRun.load(user_box).process_after.year == 2025
    user_box.process_emails_after = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert MailboxRun.load(user_box).process_after.year == 2026
