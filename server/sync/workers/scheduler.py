"""The schedule of server-side synchronization: which mailboxes are due, and which worker
syncs each one (a lease on the mailbox row).

A mailbox is *due* when it is enabled and its next run time has come (or it never ran), or
when someone asked for a sync now (``sync_requested``: the "Sync now" button, push). A
worker *claims* due mailboxes by writing its name and an expiry time into the mailbox's
lease columns, in one short transaction:

* on PostgreSQL the due rows are read ``FOR UPDATE SKIP LOCKED``, so any number of workers
  on any number of machines claim disjoint mailboxes without waiting for each other, and
  the email server profiles involved are locked (``FOR NO KEY UPDATE``, in id order) while
  their live leases are counted, so ``EmailServerProfile.max_connections`` holds across
  every worker;
* on SQLite one worker runs at a time (``worker_slot`` refuses a second one with a clear
  message), so claiming needs no row locks.

A worker renews its leases while it syncs; a lease that is not renewed expires and the
mailbox is due for any worker again (a dead worker's mailboxes are taken over). The next run
time and the interval are the engine's: it shortens the interval after busy runs and
lengthens it after idle ones.

A mailbox asked for (``ask_for_sync``: every place that flags one, in any process) wakes
the workers when the transaction that asked commits: those of this process directly
(``wake_local``), those of other processes and machines through PostgreSQL's ``NOTIFY``
on ``CHANNEL``, sent in that same transaction (PostgreSQL delivers it at commit only, so a
rollback wakes nothing), which each worker hears on a connection of its own
(``workers.wake_listener``). On SQLite there is no other process to wake: one worker, on
one machine, woken directly or finding the flag at its next poll.
"""
from __future__ import annotations

import fcntl
import os
import socket
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from flask import current_app
from sqlalchemy import Integer, and_, bindparam, event, func, or_, select, text, union_all, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from server.db import cached_statement, db, utcnow
from server.errors import Invalid, NotFound
from server.security import authz
from server.security.authz import Principal
from server.sync import leases
from server.sync.models import EmailServerProfile, Mailbox

DEFAULTS = {
    "REGARDING_SYNC_LEASE_SECONDS": 120,  # renewed every third of it while a sync runs
    "REGARDING_SYNC_POLL_SECONDS": 1.0,  # how often an idle worker looks for due mailboxes
    "REGARDING_SYNC_BATCH_SIZE": 200,  # messages fetched and committed together
    "REGARDING_SYNC_RUN_MESSAGES": 2000,  # one run's budget; a bigger backlog is due again
    # Due mailboxes a free slot claims and visits together (engine.idle); 1: one at a time.
    "REGARDING_SYNC_IDLE_BATCH": 20,
    # Days of finished sync runs kept (engine.history; 0: forever, else at least 2).
    "REGARDING_SYNC_RUN_DAYS": 30,
}

CHANNEL = "regarding_sync_requested"  # PostgreSQL NOTIFY: a mailbox was asked for

__all__ = ["CHANNEL", "Lease", "WorkerRefused", "ask_for_sync", "claim", "due_condition",
           "due_query", "flag_changed", "lease_seconds", "listen", "release", "release_all",
           "release_many", "renew", "request_sync", "sender", "setting", "unlisten", "wake_local",
           "worker_slot"]


class WorkerRefused(RuntimeError):
    """This worker may not run here (a second worker on SQLite)."""


@dataclass(frozen=True)
class Lease:
    mailbox_id: int
    owner: str
    expires_on: datetime
    requested: bool  # claimed because someone asked for a sync now
    took_over: bool = False  # the mailbox's lease had expired in another worker's hands


def setting(name: str):
    value = current_app.config.get(name, DEFAULTS[name])
    return type(DEFAULTS[name])(value)


def lease_seconds() -> int:
    return max(1, setting("REGARDING_SYNC_LEASE_SECONDS"))


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def lease_free(now: datetime):
    return leases.free(Mailbox, now)


def due_condition(now: datetime):
    """Enabled, its time has come (or it never ran) or a sync was asked for, and no live
    lease on it."""
    # Plain boolean columns (not ``IS TRUE``): PostgreSQL reads each branch from an index
    # (ix_mailbox_due, ix_mailbox_requested), so finding the due ones costs what is due,
    # not the mailbox count.
    return and_(Mailbox.enabled,
                or_(Mailbox.next_sync_on.is_(None), Mailbox.next_sync_on <= now,
                    Mailbox.sync_requested),
                lease_free(now))


def _saturated_profiles(now: datetime):
    """Profiles whose live leases already use all their connections: their due mailboxes
    are left out of the candidates, so they cannot crowd out other profiles' mailboxes."""
    live = (select(Mailbox.server_profile_id.label("profile_id"), func.count().label("n"))
            .where(Mailbox.lease_owner.is_not(None), Mailbox.lease_expires_on > now,
                   Mailbox.server_profile_id.is_not(None))
            .group_by(Mailbox.server_profile_id).subquery())
    return (select(EmailServerProfile.id).join(live, live.c.profile_id == EmailServerProfile.id)
            .where(EmailServerProfile.max_connections > 0,
                   live.c.n >= EmailServerProfile.max_connections))


# --------------------------------------------------------------------------- claiming

def claim(owner: str, limit: int, now: datetime | None = None) -> list[Lease]:
    """Claim up to ``limit`` due mailboxes for ``owner`` (requested ones first, then the
    longest overdue), within each profile's connection limit; commits."""
    now = now or utcnow()
    if limit <= 0:
        return []
    with leases.committed():
        rows = db.session.execute(cached_statement(("due mailboxes", True),
                                                   lambda: _due_select(lock=True)),
                                  {"now": now, "limit": limit * 4}).all()
        picked = _within_connection_limits(rows, limit, now,
                                           lock_profiles=_dialect() == "postgresql")
        held, expires = leases.take(Mailbox, owner, [row.id for row in picked], now,
                                    lease_seconds(), sync_requested=False)
    return [Lease(row.id, owner, expires, bool(row.sync_requested), row.lease_owner is not None)
            for row in picked if row.id in held]


def due_query(now: datetime, limit: int, *, lock: bool = False):
    """The due mailboxes a claim reads at ``now`` (requested ones first, then those that
    never ran, then the longest overdue), leaving out those of profiles whose connections
    are all in use; ``limit`` leaves room for those a connection limit holds back.
    ``lock``: the rows are locked as ``leases.locked`` does (the claim's query)."""
    return _due_select(lock=lock).params(now=now, limit=limit)


def _due_select(*, lock: bool):
    """``due_query`` with ``now`` and ``limit`` left as bind parameters: the claim builds
    it once (``cached_statement``; building it cost more than running it).

    Each of the three kinds is read on its own, in its order and up to ``limit``, then
    they are put together: the overdue ones come from ``ix_mailbox_due`` in due order and
    the read stops at ``limit``, so a claim costs the same with 10 mailboxes overdue as
    with 90,000 (one query over all three sorted every overdue mailbox on every claim:
    30 ms of PostgreSQL CPU a run once 100,000 mailboxes fell behind)."""
    now = bindparam("now", type_=Mailbox.next_sync_on.type)
    limit = bindparam("limit", type_=Integer)
    base = (select(Mailbox.id, Mailbox.server_profile_id, Mailbox.sync_requested,
                   Mailbox.lease_owner, Mailbox.next_sync_on)
            .where(Mailbox.enabled, lease_free(now),
                   or_(Mailbox.server_profile_id.is_(None),
                       Mailbox.server_profile_id.not_in(_saturated_profiles(now)))))
    kinds = [
        base.where(Mailbox.sync_requested)
        .order_by(Mailbox.next_sync_on.asc().nulls_first(), Mailbox.id),
        base.where(~Mailbox.sync_requested, Mailbox.next_sync_on.is_(None)).order_by(Mailbox.id),
        base.where(~Mailbox.sync_requested, Mailbox.next_sync_on <= now)
        .order_by(Mailbox.next_sync_on, Mailbox.id),
    ]
    kinds = [kind.limit(limit) for kind in kinds]
    if lock:
        kinds = [leases.locked(kind, key_share=True, of=Mailbox) for kind in kinds]
    due = union_all(*(select(kind.subquery()) for kind in kinds)).subquery("due")
    return (select(due.c.id, due.c.server_profile_id, due.c.sync_requested, due.c.lease_owner)
            .order_by(due.c.sync_requested.desc(), due.c.next_sync_on.asc().nulls_first(),
                      due.c.id)
            .limit(limit))


def _within_connection_limits(rows, limit: int, now: datetime, *, lock_profiles: bool) -> list:
    profile_ids = sorted({row.server_profile_id for row in rows if row.server_profile_id})
    limits: dict[int, int] = {}
    live: Counter[int] = Counter()
    if profile_ids:
        # Locked on PostgreSQL: serializes counting and claiming per profile across workers.
        query = cached_statement(("profile limits", lock_profiles),
                                 lambda: _limits_select(lock=lock_profiles))
        limits = {pid: most for pid, most in db.session.execute(
            query, {"profile_ids": profile_ids})}
        live.update(dict(db.session.execute(cached_statement(("live leases",), _live_select),
                                            {"profile_ids": profile_ids, "now": now}).all()))
    picked = []
    for row in rows:
        pid = row.server_profile_id
        if pid is not None:
            most = limits.get(pid) or 0
            if most > 0 and live[pid] >= most:
                continue  # the profile's server takes no more connections now
            live[pid] += 1
        picked.append(row)
        if len(picked) >= limit:
            break
    return picked


def _limits_select(*, lock: bool):
    """The connection limits of the profiles ``profile_ids`` (bound), in id order."""
    query = (select(EmailServerProfile.id, EmailServerProfile.max_connections)
             .where(EmailServerProfile.id.in_(bindparam("profile_ids", expanding=True)))
             .order_by(EmailServerProfile.id))
    return query.with_for_update(key_share=True) if lock else query


def _live_select():
    """The live leases of the profiles ``profile_ids`` at ``now`` (both bound), counted."""
    return (select(Mailbox.server_profile_id, func.count())
            .where(Mailbox.server_profile_id.in_(bindparam("profile_ids", expanding=True)),
                   Mailbox.lease_owner.is_not(None),
                   Mailbox.lease_expires_on > bindparam("now", type_=Mailbox.lease_expires_on.type))
            .group_by(Mailbox.server_profile_id))


def renew(owner: str, mailbox_ids, now: datetime | None = None) -> set[int]:
    """Push back the expiry of ``owner``'s leases on ``mailbox_ids``; returns the ids still
    held (a lease that expired and was taken over is lost). Commits."""
    ids = list(mailbox_ids)
    if not ids:
        return set()
    with leases.committed():
        return leases.renew(Mailbox, owner, ids, now or utcnow(), lease_seconds())


def release(owner: str, mailbox_id: int, *, next_sync_on: datetime | None = None) -> bool:
    """Give a lease back (optionally moving the next run); False when it was no longer
    ``owner``'s. Commits."""
    values = {"next_sync_on": next_sync_on} if next_sync_on is not None else {}
    with leases.committed():
        return leases.give_back_row(Mailbox, owner, mailbox_id, **values)


def release_many(owner: str, mailbox_ids) -> int:
    """Give back ``owner``'s leases on ``mailbox_ids`` as claimed, their next run left as
    it is (claimed but not run: still due). Commits; returns how many."""
    ids = list(mailbox_ids)
    if not ids:
        return 0
    with leases.committed():
        return leases.give_back(Mailbox, owner, Mailbox.id.in_(ids))


def release_all(owner: str | None) -> int:
    """Give back every lease of ``owner`` (None: every lease, for a sole SQLite worker
    starting after a crash). Commits; returns how many."""
    with leases.committed():
        return leases.give_back(Mailbox, owner)


# --------------------------------------------------------------------------- asking for a sync

def ask_for_sync(mailbox_ids, *conditions, session: Session | None = None) -> int:
    """The one way a mailbox is asked for: the enabled ones of ``mailbox_ids`` (that also
    meet ``conditions``) are flagged ``sync_requested`` in the caller's transaction, and
    when it commits every worker looks for due mailboxes at once, in this process and in
    any other (``NOTIFY`` on PostgreSQL, sent in the same transaction). ``session``: the
    caller's (default ``db.session``); the caller commits. Returns how many were newly
    flagged (those already flagged have woken the workers already)."""
    session = session or db.session
    ids = sorted(set(mailbox_ids))
    if not ids:
        return 0
    done = session.execute(update(Mailbox).where(
        Mailbox.id.in_(ids), Mailbox.enabled.is_(True), Mailbox.sync_requested.is_(False),
        *conditions).values(sync_requested=True).execution_options(synchronize_session=False))
    if done.rowcount:
        if session.get_bind().dialect.name == "postgresql":
            # Delivered at commit, once however often a transaction sends it.
            session.execute(text("SELECT pg_notify(:channel, :sender)"),
                            {"channel": CHANNEL, "sender": sender()})
        session.info[_WAKE] = True
    return done.rowcount


def sender() -> str:
    """This process, as its notifications name it: its own listener leaves them out (its
    workers were woken directly)."""
    return f"{socket.gethostname()}:{os.getpid()}"


_WAKE = "sync_asked"  # session.info: mailboxes were asked for; wake the workers at commit


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_WAKE, False):
        wake_local()


@event.listens_for(Session, "after_transaction_end")
def _asked_no_more(session: Session, transaction) -> None:
    if transaction.parent is None:  # rolled back, or closed without a commit
        session.info.pop(_WAKE, None)


def request_sync(p: Principal | None, mailbox: Mailbox) -> Mailbox:
    """"Sync now": the mailbox is due at once for the next free worker. ``p`` must be able
    to write the mailbox (None: the command line). The caller commits."""
    if p is not None:
        authz.require(p, "write", mailbox)
    if not mailbox.enabled:
        raise Invalid(f"The mailbox {mailbox.email_address} is not enabled: test and enable it "
                      "first.")
    ask_for_sync([mailbox.id])
    db.session.expire(mailbox, ["sync_requested"])
    return mailbox


_listeners: set = set()  # the wake-up calls of the workers running in this process
_listeners_lock = threading.RLock()  # re-entered by a signal handler's wake_local


def listen(wake) -> None:
    """A worker of this process wants ``wake()`` called when a mailbox is asked for."""
    with _listeners_lock:
        _listeners.add(wake)


def unlisten(wake) -> None:
    with _listeners_lock:
        _listeners.discard(wake)


def wake_local() -> None:
    """A sync was asked for and committed: the workers of this process look for due
    mailboxes now rather than at their next poll (``ask_for_sync`` calls it at commit; a
    worker's ``wake_listener`` when another process asked)."""
    with _listeners_lock:
        waiting = list(_listeners)
    for wake in waiting:
        wake()


def find_mailbox(reference: str) -> Mailbox:
    """A mailbox by id or email address (for the command line)."""
    query = select(Mailbox)
    if reference.isdigit():
        query = query.where(Mailbox.id == int(reference))
    else:
        query = query.where(func.lower(Mailbox.email_address) == reference.strip().lower())
    mailbox = db.session.scalar(query)
    if mailbox is None:
        raise NotFound(f"There is no mailbox {reference}.")
    return mailbox


def flag_changed(mailbox_id: int) -> bool:
    """Push saw new or moved mail: the mailbox is due at once (when still enabled). Commits;
    True when the flag was newly set."""
    with leases.committed():
        return ask_for_sync([mailbox_id]) == 1


# --------------------------------------------------------------------------- one worker on SQLite

@contextmanager
def worker_slot(database_url: str):
    """Hold the right to run a worker. On SQLite only one worker may run per database file:
    a second one is refused (``WorkerRefused``) while the first holds an exclusive lock on
    ``<database>.worker.lock`` (released by the OS when a worker dies, however it dies).
    Yields True when this worker is the database's only possible one (SQLite)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        yield False
        return
    if not url.database or url.database == ":memory:":
        yield True
        return
    path = Path(url.database).resolve().with_name(Path(url.database).name + ".worker.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise WorkerRefused(
                f"Another sync worker (process {holder}) is already running on the SQLite "
                f"database {url.database}. SQLite supports one sync worker: stop the other one "
                "first, or move to PostgreSQL (REGARDING_DATABASE_URL) to run several.") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield True
    finally:
        os.close(fd)  # closing the descriptor releases the lock
