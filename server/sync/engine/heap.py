"""The long-lived objects of a process that syncs, kept out of the cycle collector's way.

A sync worker holds a quarter of a million objects that live as long as it does: modules,
classes, the ORM's mappers, compiled statements. Python's full collection walks all of them
each time the objects that outlived two young collections reach a quarter of that number,
which a whole-message sync makes happen every thousand messages or so: about 0.12 s a walk,
an eighth of the main process's CPU with tracking option "all" (``bench/ingest.py``).
``settle()`` collects once and moves what is left to the permanent generation
(``gc.freeze``), where no collection looks: called once, when a process that syncs has
started (``sync worker``, the parse pool's processes, the benchmark as the worker does),
never per run (what a run leaves behind must stay collectable). The frozen objects are
still freed by their reference counts; only a cycle among them would be kept.
"""
from __future__ import annotations

import gc

__all__ = ["settle"]


def settle() -> None:
    """Collect, then freeze what survives: the process's start-up heap."""
    gc.collect()
    gc.freeze()
