"""Parsing in other processes: the sync engine's parse pool.

Parsing a message (``mail.message.parse``), making its HTML safe (``crm.html.sanitize_html``)
and hashing its attachments are pure and take about half of a whole-message sync's CPU. One process has one GIL, so they
run in a pool of processes sized to the machine's cores, started once per process that syncs
and kept, while the database writer stays alone in the main process. Batches too small to
pay for the trip, a machine with one core (or the app's ``REGARDING_SYNC_PARSE_PROCESSES``
setting at 0 or 1, ``server.config``) and a pool that cannot start are parsed in-process by
the same function: the result is the same either way.

``start(jobs, size)`` hands a batch's raw messages (with whether each is a header section only) to
the pool and returns a ``Parsing`` at once, so the read-ahead thread can start the next
batch's parse while the engine writes the current one; ``Parsing.results()`` waits and gives
one ``Prepared`` per message, in order. Bytes that are no email give their ``MessageError``
in ``Prepared.error`` (the engine quarantines the message with its reason); a pool that broke
(a worker killed) is replaced, and the batch is parsed in-process.
"""
from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace

from flask import current_app

from server.crm.html import sanitize_html
from server.sync.engine import heap
from server.sync.mail.message import MailMessage, MessageError, parse

log = logging.getLogger(__name__)

__all__ = ["Parsing", "Prepared", "prepare", "processes", "shutdown", "start", "worker_pids"]

MIN_POOLED = 24  # fewer messages than this are parsed in-process (the trip costs more)
CHUNKS_PER_PROCESS = 4  # a batch is cut in this many chunks per process (even load)


@dataclass(frozen=True)
class Prepared:
    """One message parsed: ``msg`` (None when the bytes are no email, ``error`` says why) and,
    when the pool parsed it, its HTML made safe (``sanitize_html``) and the SHA-256 of each
    of its attachments (what tracking stores them under)."""

    msg: MailMessage | None
    error: MessageError | None = None
    safe_html: str | None = None
    digests: tuple[str, ...] = ()


def prepare(raw: bytes, headers_only: bool, *, ahead: bool = False) -> Prepared:
    """Parse one message; pure. With ``ahead`` (the pool: on another core, ahead of need) also
    sanitize its HTML and hash its attachments; in-process, tracking does both for what it
    tracks."""
    try:
        msg = parse(raw, headers_only=headers_only)
    except MessageError as exc:
        return Prepared(None, exc)
    if not ahead:
        return Prepared(msg)
    return Prepared(msg, None, sanitize_html(msg.html_body) if msg.html_body else None,
                    tuple(hashlib.sha256(a.content).hexdigest() for a in msg.attachments))


def _prepare_chunk(jobs: list[tuple[bytes, bool]]) -> list[Prepared]:
    """A worker's part of a batch. The raw bytes stay behind (the engine has them): only the
    parsed message travels back."""
    out = []
    for raw, headers_only in jobs:
        done = prepare(raw, headers_only, ahead=True)
        out.append(done if done.msg is None else replace(done, msg=replace(done.msg, _raw=b"")))
    return out


def _started() -> None:
    """A pool worker, once started: what parsing needs is imported (this module), and its
    heap is settled (``heap.settle``)."""
    heap.settle()


class Parsing:
    """A batch being parsed; ``results()`` waits for it."""

    def __init__(self, jobs: list[tuple[bytes, bool]], futures: list[Future] | None) -> None:
        self.jobs, self.futures = jobs, futures

    def results(self) -> list[Prepared]:
        if self.futures is None:
            return [prepare(raw, headers_only) for raw, headers_only in self.jobs]
        try:
            chunks = [future.result() for future in self.futures]
        except BrokenProcessPool:
            log.warning("the parse pool broke (a worker process ended); it is started again "
                        "and this batch is parsed in-process")
            shutdown(wait=False)
            return [prepare(raw, headers_only) for raw, headers_only in self.jobs]
        parsed = [p for chunk in chunks for p in chunk]
        # The message's raw bytes (its content hash reads them) are the ones the engine has,
        # put back in place: each message was unpickled just now and is held nowhere else
        # (a copy of each message and its Prepared cost more than the rest of this trip).
        for p, (raw, _) in zip(parsed, self.jobs):
            if p.msg is not None:
                object.__setattr__(p.msg, "_raw", raw)
        return parsed


def processes() -> int:
    """The pool's size, read in the app context: the app's ``REGARDING_SYNC_PARSE_PROCESSES``
    (0 or 1: no pool, everything in-process) or, unset, the cores this process may run on.
    A thread without the app context (the read-ahead) is handed the size by its creator."""
    wanted = current_app.config.get("REGARDING_SYNC_PARSE_PROCESSES")
    if wanted is not None and str(wanted).strip() != "":
        return max(0, int(wanted))
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


_lock = threading.Lock()
_pool: ProcessPoolExecutor | None = None
_pool_size = 0  # its processes
_unavailable = False  # the pool could not start: in-process from then on


def _executor(size: int) -> ProcessPoolExecutor | None:
    global _pool, _pool_size, _unavailable
    if size < 2:
        return None
    with _lock:
        if _pool is not None and _pool_size != size:  # another app's setting (tests, benches)
            _pool.shutdown(wait=False)  # (what it parses now is finished)
            _pool = None
        if _pool is None and not _unavailable:
            # forkserver: workers forked from a clean server process, not from this one (its
            # threads, database connections and sockets stay here), and without running
            # this process's main script again as "spawn" does.
            try:
                _pool = ProcessPoolExecutor(size,
                                            mp_context=multiprocessing.get_context("forkserver"),
                                            initializer=_started)
                _pool_size = size
            except (OSError, ValueError) as exc:
                log.warning("the parse pool could not start (%s); messages are parsed "
                            "in-process", exc)
                _unavailable = True
        return _pool


def shutdown(wait: bool = True) -> None:
    """Stop the pool's processes (a new one starts when next needed)."""
    global _pool
    with _lock:
        pool, _pool = _pool, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def start(jobs: list[tuple[bytes, bool]], size: int | None = None) -> Parsing:
    """Start parsing ``jobs`` (raw bytes, header section only) in a pool of ``size`` processes
    (default ``processes()``, which needs the app context); in-process when the batch is
    small or there is no pool."""
    if size is None:
        size = processes()
    pool = _executor(size) if len(jobs) >= MIN_POOLED else None
    if pool is None:
        return Parsing(jobs, None)
    chunk = -(-len(jobs) // (size * CHUNKS_PER_PROCESS))
    try:
        futures = [pool.submit(_prepare_chunk, jobs[i:i + chunk])
                   for i in range(0, len(jobs), chunk)]
    except (BrokenProcessPool, RuntimeError):  # broke or shut down meanwhile
        shutdown(wait=False)
        return Parsing(jobs, None)
    return Parsing(jobs, futures)


def worker_pids() -> list[int]:
    """The pool's worker processes (for the benchmarks' CPU accounting); empty without one."""
    pool = _pool
    return list(getattr(pool, "_processes", None) or {}) if pool is not None else []
