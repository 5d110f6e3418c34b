"""Reading a folder's batches for a run (``server.sync.engine.run``): the next batch read,
and parsed, ahead while the engine processes the current one, where the connector allows it."""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

from server.sync.connectors.base import (Changes, ConnectorError, Folder, HeadersFirst,
                                         ReadsAhead)
from server.sync.engine.folders import FolderInfo
from server.sync.engine.items import parse_ahead
from server.sync.engine.pool import Parsing, processes

__all__ = ["Reader"]


class Reader:
    """Reads a folder's batches; with a connector that allows it (``ReadsAhead``), the next
    batch is read in a thread while the engine processes the current one. Only one of the
    two uses the connector at a time: the category is written back on that thread too
    (``later``), after the read ahead; ``settle`` waits for both before the engine uses the
    connector itself (whole messages, deletes, the folder's end), and a failed read ahead
    raises where its batch is asked for. ``headers_only``: batches are header sections, and
    the batch reads the messages it tracks with ``read_whole``. ``changed_as_headers``: mail seen
    before that comes back changed (the category this engine wrote on it after the batch's
    cursor was taken, a flag a user set) is read as its header section too, and read whole
    only if it is to be tracked: a second run over an unchanged mailbox reads nothing
    whole (never for a forward mailbox: what it holds is in the body)."""

    def __init__(self, connector, info: FolderInfo, headers_only: bool = False, *,
                 changed_as_headers: bool = False, parse_ahead: bool = False) -> None:
        self.connector, self.info = connector, info
        self.headers_only = headers_only
        self.reads_whole = isinstance(connector, HeadersFirst) and (
            headers_only or changed_as_headers)
        self.options = {"headers_only": True} if headers_only else {}
        if self.reads_whole and changed_as_headers:
            self.options["changed_as_headers"] = True
        self.threaded = isinstance(connector, ReadsAhead)
        # The read-ahead thread has no app context: the parse pool's size is read here.
        self.parse_processes = processes() if parse_ahead else None
        self.parsing: dict[int, Parsing] = {}  # by id() of the Changes read ahead
        self.executor: ThreadPoolExecutor | None = None
        self.ahead: tuple[str, int, Future] | None = None
        self.jobs: list[Future] = []  # ``later``'s, not yet waited for
        self.lost: ConnectorError | None = None  # a job on the thread lost the connection
        self.done: tuple[str, int, Future] | None = None

    def prefetch(self, cursor: str, size: int) -> None:
        if not self.threaded:
            return
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="sync-prefetch")
        future = self.executor.submit(self._read_ahead, cursor, size)
        self.ahead = (cursor, size, future)

    def _read_ahead(self, cursor: str, size: int) -> Changes:
        if self.lost is not None:
            raise self.lost
        changes = self.connector.fetch_changes(self.info.folder, cursor, limit=size,
                                               **self.options)
        if self.parse_processes is not None and changes.messages:
            self.parsing[id(changes)] = parse_ahead(changes.messages, self.parse_processes)
        return changes

    def parsing_of(self, changes: Changes) -> Parsing | None:
        """The parse started for a batch read ahead, if any (taken: asked once)."""
        return self.parsing.pop(id(changes), None)

    def later(self, job: Callable[[], object] | None) -> None:
        """Run a job that uses the connector (the category written back, ``keywords``) on
        the read-ahead thread, after what it has in hand, while the engine goes on; in-line
        without that thread. ``settle`` waits for it. A ``ConnectorError`` it raises (it
        logged it) is the connection's: on the thread, the next read raises it (as the read
        after it in-line would have failed), else it is dropped as before."""
        if job is None:
            return
        if not self.threaded:
            try:
                job()
            except ConnectorError:
                pass
            return
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="sync-prefetch")
        self.jobs.append(self.executor.submit(self._job, job))

    def _job(self, job: Callable[[], object]) -> None:
        if self.lost is not None:
            return
        try:
            job()
        except ConnectorError as exc:
            self.lost = exc

    def _wait_ahead(self) -> None:
        if self.ahead is not None:
            wait([self.ahead[2]])
            self.done, self.ahead = self.ahead, None

    def settle(self) -> None:
        """Wait until the connector is free: the read ahead and the jobs done."""
        self._wait_ahead()
        jobs, self.jobs = self.jobs, []
        for job in jobs:
            job.result()

    def fetch(self, cursor: str | None, size: int) -> Changes:
        self._wait_ahead()  # (the jobs queued after it may go on meanwhile)
        done, self.done = self.done, None
        if done is not None and done[0] == cursor:
            return done[2].result()  # its error, if any, is raised here
        self.settle()
        if self.lost is not None:
            raise self.lost
        self.parsing.clear()  # (a batch read ahead for another cursor: not used)
        return self.connector.fetch_changes(self.info.folder, cursor, limit=size, **self.options)

    def read_whole(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        self.settle()
        if self.lost is not None:
            raise self.lost
        return self.connector.fetch_messages(folder, refs)

    def close(self) -> None:
        self.settle()  # never leave a thread using the connector behind
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
