"""Waiting in a test for what another thread or process does (a worker's run, a push
watcher, a fake server's notification): one polling loop with a deadline, whose failure
says what was awaited. (No timing is asserted: the deadline is generous, and only bounds a
test that would otherwise hang.)"""
from __future__ import annotations

import time

DEADLINE = 60  # seconds: generous; what the tests wait for normally takes one or two


def until(condition, what: str, *, timeout: float = DEADLINE, every: float = 0.1,
          session=None, detail=None):
    """Call ``condition()`` until it returns something true, and return that. With
    ``session`` (``db.session``), roll it back after each look: no transaction is held
    while a worker writes, and the next look sees what it committed. After ``timeout``
    seconds, fail with ``what`` and ``detail()`` (what there is instead)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if session is not None:
            session.rollback()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:g} s" +
                         (f" ({detail()})" if detail is not None else ""))
