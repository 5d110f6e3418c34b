"""The ``flask --app server sync worker`` process: SIGTERM and SIGINT end the worker
gracefully (the batches in hand are finished, leases given back; a second signal leaves at
once), and the start-up heap is frozen before the first run (``engine.heap``)."""
from __future__ import annotations

import logging
import os
import threading

from server.sync.workers import scheduler
from server.sync.workers.worker import WorkerStats, run_worker

log = logging.getLogger(__name__)


def serve(app, *, worker_id: str | None, concurrency: int, push: bool | None = None) -> WorkerStats:
    """``sync worker``: run until SIGTERM or SIGINT, which end it gracefully (the batches in
    hand are finished, leases given back); a second signal leaves at once."""
    import signal
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        if stop.is_set():
            log.warning("second %s: leaving without waiting (leases expire by themselves)",
                        signal.Signals(signum).name)
            os._exit(1)
        log.info("%s: finishing the batches in hand, then stopping", signal.Signals(signum).name)
        stop.set()
        scheduler.wake_local()  # out of the wait for the next poll, however long

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    from server.sync.engine import heap, run  # noqa: F401 (the engine loaded before the freeze)
    heap.settle()  # this process's start-up heap, out of every later collection
    try:
        return run_worker(app, worker_id=worker_id, concurrency=concurrency, stop_event=stop,
                          push=push)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
