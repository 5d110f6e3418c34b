"""A sync worker hears mailboxes asked for in other processes (PostgreSQL only).

``scheduler.ask_for_sync`` sends ``NOTIFY`` on ``scheduler.CHANNEL`` in the transaction that
flags a mailbox (a CRM change in the web app, a Graph notification, "Sync now", the command
line, another worker's push); PostgreSQL delivers it when that transaction commits. Each
worker process keeps one connection of its own, outside the pool, that ``LISTEN``\\ s on the
channel in a thread, and on a notification from another process wakes the workers of this
process (``scheduler.wake_local``), which look for due mailboxes at once instead of at their
next poll (``REGARDING_SYNC_POLL_SECONDS``). A notification this process sent is left out: its
workers were woken directly when it committed.

When the connection drops (PostgreSQL restarted, the backend terminated, the network gone:
TCP keepalives notice a silent peer), the drop is logged and the thread connects again,
waiting 1 s, then 2, 4 ... up to 30 s between attempts; meanwhile the poll still finds every
flag. Once listening again it wakes the workers once, for anything asked while it was deaf.
``stop`` ends the thread and closes the connection (within a second) when the worker stops.

``LISTEN`` needs a connection of its own for as long as it listens: through a pooler in
transaction mode (PgBouncer's ``pool_mode = transaction``) it hears nothing, so
``REGARDING_SYNC_LISTEN_URL`` may name the server itself (or a session-pooled entry) while
``REGARDING_DATABASE_URL`` goes through the pooler; ``NOTIFY`` works through either.
"""
from __future__ import annotations

import logging
import threading

import psycopg
from sqlalchemy.engine import make_url

from server.sync.workers import scheduler

log = logging.getLogger(__name__)

__all__ = ["WakeListener", "connect_args"]

WAIT = 1.0  # seconds between looks at the stop flag while no notification comes
LONGEST_BACKOFF = 30.0
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3, "connect_timeout": 10}


def connect_args(url) -> dict:
    """psycopg's connection parameters for the PostgreSQL database at ``url`` (a string or
    an engine's URL: host, port, database, user, password and the URL's own options)."""
    url = make_url(url).set(drivername="postgresql+psycopg")
    _, params = url.get_dialect()().create_connect_args(url)
    params.pop("context", None)  # SQLAlchemy's type adapters: not needed to listen
    return params


class WakeListener:
    """One thread and one connection listening on ``scheduler.CHANNEL``; ``wake()`` is
    called for each notification another process sent, and after each (re)connection."""

    def __init__(self, params: dict, name: str, wake=scheduler.wake_local):
        self.params = {**params, **KEEPALIVES, "autocommit": True,
                       "application_name": f"regarding sync wake {name}"[:63]}
        self.name, self.wake = name, wake
        self.stopping = threading.Event()
        self.own = scheduler.sender()
        self.thread = threading.Thread(target=self._run, name="sync-wake-listener",
                                       daemon=True)

    def start(self) -> WakeListener:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(WAIT + 5)

    def _run(self) -> None:
        backoff = 0.0
        while not self.stopping.is_set():
            try:
                with psycopg.connect(**self.params) as conn:
                    conn.execute(f"LISTEN {scheduler.CHANNEL}")
                    log.info("worker %s: listening for mailboxes asked for (PostgreSQL NOTIFY "
                             "%s)%s", self.name, scheduler.CHANNEL,
                             " again" if backoff else "")
                    backoff = 0.0
                    self.wake()  # anything asked while nobody listened
                    self._hear(conn)
            except Exception as exc:  # the connection dropped (psycopg.Error), or a bug
                backoff = min(LONGEST_BACKOFF, max(1.0, backoff * 2))
                log.warning("worker %s: not listening for mailboxes asked for (%s); the poll "
                            "finds them meanwhile; next try in %.0f s", self.name,
                            _first_line(exc), backoff)
                self.stopping.wait(backoff)

    def _hear(self, conn: psycopg.Connection) -> None:
        while not self.stopping.is_set():
            for notice in conn.notifies(timeout=WAIT):
                if notice.payload != self.own:
                    self.wake()


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
