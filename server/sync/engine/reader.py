"""Reading a folder's batches for a run (``server.sync.engine.run``): the next batch read,
and parsed, ahead while the engine processes the current one, where the connector allows it."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor, wait

from server.sync.connectors.base import Changes, Folder, HeadersFirst, ReadsAhead
from server.sync.engine.folders import FolderInfo
from server.sync.engine.items import parse_ahead
from server.sync.engine.pool import Parsing, processes

__all__ = ["Reader"]


class Reader:
    """Reads a folder's batches; with a connector that allows it (``ReadsAhead``), the next
    batch is read in a thread while the engine processes the current one. Only one of the
    two uses the connector at a time: ``settle`` waits for the read ahead before the engine
    writes the category back or reads whole messages, and a failed read ahead raises where
    its batch is asked for. ``headers_only``: batches are header sections, and the batch
    reads the messages it tracks with ``read_whole``. ``changed_as_headers``: mail seen
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
        self.done: tuple[str, int, Future] | None = None

    def prefetch(self, cursor: str, size: int) -> None:
        if not self.threaded:
            return
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="sync-prefetch")
        future = self.executor.submit(self._read_ahead, cursor, size)
        self.ahead = (cursor, size, future)

    def _read_ahead(self, cursor: str, size: int) -> Changes:
        changes = self.connector.fetch_changes(self.info.folder, cursor, limit=size,
                                               **self.options)
        if self.parse_processes is not None and changes.messages:
            self.parsing[id(changes)] = parse_ahead(changes.messages, self.parse_processes)
        return changes

    def parsing_of(self, changes: Changes) -> Parsing | None:
        """The parse started for a batch read ahead, if any (taken: asked once)."""
        return self.parsing.pop(id(changes), None)

    def settle(self) -> None:
        if self.ahead is not None:
            wait([self.ahead[2]])
            self.done, self.ahead = self.ahead, None

    def fetch(self, cursor: str | None, size: int) -> Changes:
        self.settle()
        done, self.done = self.done, None
        if done is not None and done[0] == cursor:
            return done[2].result()  # its error, if any, is raised here
        self.parsing.clear()  # (a batch read ahead for another cursor: not used)
        return self.connector.fetch_changes(self.info.folder, cursor, limit=size, **self.options)

    def read_whole(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        self.settle()
        return self.connector.fetch_messages(folder, refs)

    def close(self) -> None:
        self.settle()  # never leave a thread using the connector behind
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
