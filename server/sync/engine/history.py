"""Sync run rows after their run: why a stopped one stopped (``interrupted``), those a dead
worker left open closed (``close_abandoned``), and how long history is kept: finished ``SyncRun`` rows older than
``REGARDING_SYNC_RUN_DAYS`` (30; 0 keeps them forever) are deleted, by the sync workers
themselves (``worker_pass``, about once an hour each) or by an admin
(``flask --app server sync prune-runs``).

Every visit of a mailbox writes a run row, so at 100,000 mailboxes that is tens of
millions a day. They go oldest first through ``ix_sync_run_started``, ``CHUNK`` rows per
statement and per transaction, so a first prune of months of history neither holds a long
lock nor makes one huge transaction; a pass may stop after a time budget and go on next
time. A run that has not finished is never deleted (a crashed worker's open run is closed
by the worker that takes its mailbox over). Several workers pruning at once are harmless:
the deletes are idempotent, and on PostgreSQL each chunk skips rows another pruner holds
(``SKIP LOCKED``) instead of waiting for them; SQLite has one writer anyway.

The sync dashboard shows the last 48 hours (``admin.dashboard.hourly``), so a retention
shorter than ``MIN_DAYS`` is refused as a configuration error.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, select, update

from server.db import db, in_values, utcnow
from server.sync.models import SyncRun
from server.sync.workers import scheduler

log = logging.getLogger(__name__)

__all__ = ["CHUNK", "MIN_DAYS", "BadRetention", "Pruned", "close_abandoned", "interrupted",
           "prune", "retention_days", "worker_pass"]

CHUNK = 10_000  # rows per statement and per transaction
MIN_DAYS = 2  # the dashboard's longest window is 48 hours
EVERY = 3600.0  # seconds between a worker's passes
BUDGET = 10.0  # seconds one worker's pass may delete for (in chunks) before it stops
AGAIN = 60.0  # seconds to the next pass after one that ran out of budget with more left


class BadRetention(ValueError):
    """``REGARDING_SYNC_RUN_DAYS`` (or ``--days``) keeps less than the dashboard shows."""


@dataclass
class Pruned:
    deleted: int = 0
    done: bool = True  # False: the time budget ran out with older runs left


def retention_days(days: int | None = None) -> int:
    """Days of run history to keep: ``days``, else ``REGARDING_SYNC_RUN_DAYS``; 0 keeps
    everything. Raises ``BadRetention`` for a negative value or one below ``MIN_DAYS``."""
    name = "REGARDING_SYNC_RUN_DAYS"
    value = scheduler.setting(name) if days is None else int(days)
    if value < 0 or 0 < value < MIN_DAYS:
        what = f"{name}={value}" if days is None else f"{value} days"
        raise BadRetention(
            f"{what}: keep at least {MIN_DAYS} days of sync run history (the sync "
            f"dashboard shows the last {MIN_DAYS * 24} hours), or 0 to keep it forever.")
    return value


def prune(days: int | None = None, *, chunk: int = CHUNK, budget: float | None = None,
          now: datetime | None = None,
          progress: Callable[[int], None] | None = None) -> Pruned:
    """Delete finished runs that started more than ``days`` (default: the setting) ago,
    ``chunk`` rows per transaction, oldest first, until none is left or ``budget`` seconds
    (of wall time) have passed. ``progress`` gets the running total after each chunk.
    Commits each chunk; the session must have nothing else pending."""
    days, chunk = retention_days(days), max(1, chunk)
    out = Pruned()
    if days == 0:
        return out
    cutoff = (now or utcnow()) - timedelta(days=days)
    # Oldest first through ix_sync_run_started (started_on alone: ordering by id as well
    # would sort every old row for each chunk). Open runs stay.
    oldest = (select(SyncRun.id)
              .where(SyncRun.started_on < cutoff, SyncRun.finished_on.is_not(None))
              .order_by(SyncRun.started_on).limit(chunk)
              .with_for_update(skip_locked=True))  # PostgreSQL; nothing on SQLite
    # The ids first, then the delete by the primary key: with the chunk as a subquery of
    # the DELETE, PostgreSQL hash-joins it against a scan of the whole table.
    statement = delete(SyncRun).where(in_values(SyncRun.id, "ids")) \
        .execution_options(synchronize_session=False)
    ends = None if budget is None else time.monotonic() + budget
    while True:
        try:
            ids = db.session.scalars(oldest).all()
            if ids:
                db.session.execute(statement, {"ids": ids})
            db.session.commit()
        except BaseException:
            db.session.rollback()
            raise
        out.deleted += len(ids)
        if progress is not None and ids:
            progress(out.deleted)
        if len(ids) < chunk:
            return out  # (rows another pruner holds are its to delete)
        if ends is not None and time.monotonic() >= ends:
            out.done = False
            return out


def worker_pass(worker: str, days: int) -> tuple[int, float]:
    """A sync worker's pass: ``prune`` for up to ``BUDGET`` seconds. Returns the runs deleted
    and the seconds to the next pass: ``EVERY``, or ``AGAIN`` when older runs are left. A
    failure is logged (its kind only) and tried again later."""
    from server.sync.engine.quarantine import safe_detail
    try:
        pruned = prune(days, budget=BUDGET)
    except Exception as exc:
        log.warning("worker %s: old sync runs not deleted (%s); tried again later", worker,
                    safe_detail(exc))
        return 0, 10 * AGAIN
    if pruned.deleted:
        log.info("worker %s: %d sync run(s) older than %d days deleted%s", worker,
                 pruned.deleted, days, "" if pruned.done else "; more next time")
    return pruned.deleted, EVERY if pruned.done else AGAIN


def close_abandoned(worker: str | None = None, *, mailbox_id: int | None = None) -> None:
    """Close runs left open by a worker that died: those of a mailbox whose expired lease we
    took over, or at start-up those of our own name (every open one for a sole SQLite
    worker), so the dashboard does not show them running forever."""
    query = update(SyncRun).where(SyncRun.finished_on.is_(None))
    if mailbox_id is not None:
        query = query.where(SyncRun.mailbox_id == mailbox_id)
    elif worker is not None:
        query = query.where(SyncRun.worker == worker[:120])
    db.session.execute(query.values(
        finished_on=utcnow(), error_code="abandoned",
        error="The worker running this sync stopped before it finished; the next run went on "
              "from the last stored batch.").execution_options(synchronize_session=False))
    db.session.commit()


def interrupted(worker: str, mailbox_id: int, why: str) -> None:
    """The engine closed ``worker``'s last run of the mailbox as interrupted (the worker
    stopped, or lost its lease): say why on it."""
    run = db.session.scalar(select(SyncRun).where(
        SyncRun.mailbox_id == mailbox_id, SyncRun.worker == worker[:120])
        .order_by(SyncRun.id.desc()).limit(1))
    if run is not None and (run.finished_on is None or run.error_code == "interrupted"):
        run.finished_on = run.finished_on or utcnow()
        run.error_code, run.error = "interrupted", why
        db.session.commit()
