"""How long sync run history is kept: finished ``SyncRun`` rows older than
``REGARDING_SYNC_RUN_DAYS`` (30; 0 keeps them forever) are deleted, by the sync workers
themselves (about once an hour each, ``workers.worker``) or by an admin
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

import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable

from sqlalchemy import delete, select

from server.db import db, in_values, utcnow
from server.sync.models import SyncRun
from server.sync.workers import scheduler

__all__ = ["CHUNK", "MIN_DAYS", "BadRetention", "Pruned", "prune", "retention_days"]

CHUNK = 10_000  # rows per statement and per transaction
MIN_DAYS = 2  # the dashboard's longest window is 48 hours


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
