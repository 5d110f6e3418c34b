"""Bulk mailbox administration as background jobs: approve the email addresses, Test &
Enable, or apply the default settings of a selection of mailboxes or of every mailbox of a
server profile, with progress and a result per mailbox.

The database is the job store. ``start`` writes the job and one pending item per mailbox
(those the starter may read; the rest are not mentioned). Workers (``flask --app server
mailboxes work``, or ``work`` in a test) claim pending items with a lease, as the sync
scheduler claims mailboxes: on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so any number of
workers share a job, on SQLite one at a time; a lease that runs out (a dead worker) makes
its items pending for the others again. Each item runs with the privileges of the person
who started the job, checked again at that moment, and is committed on its own, so the
page's progress is the count of finished items.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select, update

from server.db import db, utcnow
from server.errors import Forbidden, Invalid, NotFound, ServiceError
from server.i18n import N_
from server.security import authz
from server.security.authz import Principal
from server.security.models import User
from server.sync.admin import mailboxes as mailbox_admin
from server.sync import leases
from server.sync.admin import provision
from server.sync.models import JOB_KINDS, EmailServerProfile, Mailbox, MailboxJob, MailboxJobItem

log = logging.getLogger(__name__)

LEASE_SECONDS = 300  # one Test & Enable waits at most for its connection timeouts
MAX_SELECTION = 10_000
KIND_LABELS = {"approve": N_("Approve email addresses"), "test_enable": N_("Test & Enable"),
               "apply_defaults": N_("Apply default settings")}


@dataclass(frozen=True)
class Progress:
    job: MailboxJob
    pending: int
    done: int
    failed: int
    skipped: int

    @property
    def finished(self) -> int:
        return self.done + self.failed + self.skipped

    @property
    def percent(self) -> int:
        return 100 if not self.job.total else round(100 * self.finished / self.job.total)


def _may_start(p: Principal, kind: str) -> None:
    if kind == "approve" and not p.has("approve_email_addresses"):
        raise Forbidden("Approving email addresses needs the 'Approve email addresses' "
                        "privilege.")
    if kind == "apply_defaults" and not mailbox_admin.can_administer(p):
        raise Forbidden(N_("Applying the default settings is for mailbox administrators."))
    if kind == "test_enable" and p.depth("mailbox", "write") <= 0:
        raise Forbidden(N_("Testing mailboxes needs write on mailboxes."))


def start(p: Principal, kind: str, *, mailbox_ids: list[int] | None = None,
          profile_id: int | None = None) -> MailboxJob:
    """A job over the chosen mailboxes, or over every mailbox of a profile. Callers commit."""
    if kind not in JOB_KINDS:
        raise Invalid(f"Choose one of: {', '.join(KIND_LABELS.values())}.", {"kind": "Unknown."})
    _may_start(p, kind)
    query = select(Mailbox.id, Mailbox.email_address).where(authz.scope(p, Mailbox, "read"))
    if profile_id is not None:
        profile = authz.get(p, EmailServerProfile, profile_id, "read")
        query = query.where(Mailbox.server_profile_id == profile.id)
        what = N_("every mailbox of the profile %(profile)s") % {"profile": profile.name}
    elif mailbox_ids:
        if len(mailbox_ids) > MAX_SELECTION:
            raise Invalid(f"Choose at most {MAX_SELECTION} mailboxes at a time.")
        query = query.where(Mailbox.id.in_(mailbox_ids))
        what = N_("the chosen mailboxes")
    else:
        raise Invalid(N_("Choose mailboxes, or a server profile."), {"mailbox_ids": N_("None chosen.")})
    rows = db.session.execute(query.order_by(func.lower(Mailbox.email_address))).all()
    if not rows:
        raise Invalid(N_("None of these mailboxes is one you can see."))
    description = N_("%(action)s: %(what)s") % {"action": KIND_LABELS[kind], "what": what}
    job = MailboxJob(kind=kind, description=description[:400],
                     created_by_id=p.user_id, total=len(rows))
    db.session.add(job)
    db.session.flush()
    db.session.execute(MailboxJobItem.__table__.insert(), [
        {"job_id": job.id, "mailbox_id": mailbox_id, "email_address": address,
         "status": "pending"} for mailbox_id, address in rows])
    log.info("mailbox job %s (%s, %d mailboxes) started by user %s", job.id, kind, len(rows),
             p.user_id)
    return job


def progress(p: Principal, job_id: int) -> tuple[Progress, list[MailboxJobItem]]:
    """A job its starter (or an administrator of mailboxes) may see, its figures and items."""
    job = db.session.get(MailboxJob, job_id)
    if job is None or not (job.created_by_id == p.user_id or mailbox_admin.can_administer(p)):
        raise NotFound()
    counts = dict(db.session.execute(
        select(MailboxJobItem.status, func.count()).where(MailboxJobItem.job_id == job.id)
        .group_by(MailboxJobItem.status)).all())
    items = db.session.scalars(select(MailboxJobItem).where(MailboxJobItem.job_id == job.id)
                               .order_by(MailboxJobItem.id)).all()
    return Progress(job, counts.get("pending", 0), counts.get("done", 0),
                    counts.get("failed", 0), counts.get("skipped", 0)), list(items)


def recent(p: Principal, limit: int = 10) -> list[MailboxJob]:
    query = select(MailboxJob).order_by(MailboxJob.id.desc()).limit(limit)
    if not mailbox_admin.can_administer(p):
        query = query.where(MailboxJob.created_by_id == p.user_id)
    return list(db.session.scalars(query))


# --------------------------------------------------------------------------- workers

def claim(owner: str, limit: int, now: datetime | None = None) -> list[int]:
    """Lease up to ``limit`` pending items (oldest job first) to ``owner``; commits."""
    now = now or utcnow()
    query = (select(MailboxJobItem.id)
             .where(MailboxJobItem.status == "pending", leases.free(MailboxJobItem, now))
             .order_by(MailboxJobItem.job_id, MailboxJobItem.id).limit(limit))
    with leases.committed():
        ids = list(db.session.scalars(leases.locked(query)))
        held, _expires = leases.take(MailboxJobItem, owner, ids, now, LEASE_SECONDS)
    return [item_id for item_id in ids if item_id in held]


def _act(p: Principal, kind: str, mailbox: Mailbox) -> tuple[str, str]:
    """Do one item's work: (status, message)."""
    if kind == "approve":
        if mailbox.email_approved:
            return "skipped", N_("Already approved.")
        mailbox_admin.approve(p, mailbox)
        return "done", N_("Approved.")
    if kind == "apply_defaults":
        message = provision.apply_defaults(p, mailbox)
        return ("skipped" if message.startswith(("It already", "A forward")) else "done"), message
    result = mailbox_admin.test_and_enable(p, mailbox)
    parts = [result.message] + [
        (N_("Incoming: %(message)s") if name == "incoming" else N_("Outgoing: %(message)s"))
        % {"message": d.message}
        for name, d in (("incoming", result.incoming), ("outgoing", result.outgoing))
        if d is not None]
    return ("done" if result.enabled else "failed"), " ".join(parts)


def run_item(owner: str, item_id: int) -> str | None:
    """Run one leased item and record its result (committed); None if it is no longer ours."""
    item = db.session.get(MailboxJobItem, item_id)
    if item is None or item.lease_owner != owner[:120] or item.status != "pending":
        db.session.rollback()
        return None
    job = db.session.get(MailboxJob, item.job_id)
    starter = db.session.get(User, job.created_by_id) if job.created_by_id else None
    mailbox = db.session.get(Mailbox, item.mailbox_id) if item.mailbox_id else None
    try:
        if starter is None or not starter.is_active:
            status, message = "skipped", N_("The person who started the job can no longer act.")
        elif mailbox is None:
            status, message = "skipped", N_("The mailbox was deleted meanwhile.")
        else:
            p = authz.principal(starter)
            authz.require(p, "read", mailbox)
            status, message = _act(p, job.kind, mailbox)
    except ServiceError as exc:
        db.session.rollback()
        item = db.session.get(MailboxJobItem, item_id)
        status, message = ("skipped" if isinstance(exc, (Forbidden, NotFound)) else "failed",
                           exc.message)
    item.status, item.message = status, message
    item.finished_on = utcnow()
    item.lease_owner = item.lease_expires_on = None
    job_id = item.job_id
    db.session.commit()
    _finish_job(job_id)
    return status


def _finish_job(job_id: int) -> None:
    """Mark the job finished once no item is pending: run after each item's commit, so the
    worker that commits the last item sees none left (whichever worker that is)."""
    pending = (select(MailboxJobItem.id).where(MailboxJobItem.job_id == job_id,
                                               MailboxJobItem.status == "pending").exists())
    db.session.execute(update(MailboxJob).where(
        and_(MailboxJob.id == job_id, MailboxJob.finished_on.is_(None), ~pending))
        .values(finished_on=utcnow()).execution_options(synchronize_session=False))
    db.session.commit()


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:jobs"


def work(owner: str | None = None, *, batch: int = 10, idle_seconds: float = 0.0,
         poll_seconds: float = 1.0) -> int:
    """Claim and run items until none is pending (then wait up to ``idle_seconds`` for
    more). Returns how many items this worker ran."""
    owner = owner or worker_name()
    ran = 0
    idle_since = time.monotonic()
    while True:
        ids = claim(owner, batch)
        if not ids:
            if time.monotonic() - idle_since >= idle_seconds:
                return ran
            time.sleep(poll_seconds)
            continue
        for item_id in ids:
            if run_item(owner, item_id) is not None:
                ran += 1
        idle_since = time.monotonic()
