"""Where a mailbox's Maildir tree lies in a store of trees, a folder's stamp (the times of
its directories, which a cursor keeps so an unchanged folder is not listed again), and
waiting for its directories (and the item folders beside them) to change: inotify on
Linux, else their times polled."""
from __future__ import annotations

import os
import time
from pathlib import Path

try:  # inotify on Linux; polling elsewhere or when it is not installed
    from inotify_simple import INotify
    from inotify_simple import flags as inotify_flags
except ImportError:  # pragma: no cover - depends on the platform
    INotify = None

POLL_SECONDS = 0.5


def mailbox_root(store: str | Path, address: str) -> Path:
    """A user's tree inside a store of trees: ``<store>/<address>``, or its ``Maildir``
    subdirectory when there is one (a home directory, as Dovecot keeps it)."""
    home = Path(store) / address.strip().lower()
    return home / "Maildir" if (home / "Maildir").is_dir() else home


def stamp(directory: Path) -> int:
    try:
        return directory.stat().st_mtime_ns
    except FileNotFoundError:
        return -1


# A cursor that covers the whole folder starts with the modification times of its new/ and
# cur/ as they were when it was listed ("s:<new>:<cur>|"): every delivery, move, flag
# change (a rename) and removal changes them, so while they are the same an idle run lists
# nothing. They are kept only once settled: unchanged across the listing and older than
# SETTLED_NS, so a change made later sets a later time (coarse file system clocks too).

SETTLED_NS = 2_000_000_000


def split_stamp(cursor: str | None) -> tuple[tuple[int, int] | None, str | None]:
    """(the stamp a cursor starts with, or None; the cursor without it)."""
    if not cursor or not cursor.startswith("s:") or "|" not in cursor:
        return None, cursor
    head, _, rest = cursor.partition("|")
    try:
        new, cur = (int(part) for part in head[2:].split(":"))
    except ValueError:
        return None, rest
    return (new, cur), rest


def with_stamp(marks: tuple[int, int], cursor: str | None) -> str | None:
    return f"s:{marks[0]}:{marks[1]}|{cursor}" if cursor is not None else None


def settled(path: Path, marks: tuple[int, int]) -> bool:
    """new/ and cur/ kept the times ``marks`` through the listing, and those are old."""
    return (min(marks) >= 0 and marks == (stamp(path / "new"), stamp(path / "cur"))
            and time.time_ns() - max(marks) > SETTLED_NS)


def _contents(directory: Path) -> frozenset:
    """A directory's files with their times and sizes: a file written over in place changes
    it, where the directory's own time does not change."""
    try:
        with os.scandir(directory) as entries:
            return frozenset((e.name, e.stat().st_mtime_ns, e.stat().st_size) for e in entries
                             if not e.name.startswith(".") and e.is_file())
    except FileNotFoundError:
        return frozenset()


def wait(watched: dict[Path, str], items: dict[Path, str], timeout: float) -> set[str]:
    """The keys of the directories that changed within ``timeout`` seconds (``items``: item
    folders, whose files may be written over in place)."""
    if INotify is not None:
        return _wait_inotify(watched, items, timeout)
    return _wait_poll(watched, items, timeout)


def _wait_inotify(watched: dict[Path, str], items: dict[Path, str],
                  timeout: float) -> set[str]:
    mask = (inotify_flags.CREATE | inotify_flags.MOVED_TO | inotify_flags.MOVED_FROM
            | inotify_flags.DELETE | inotify_flags.DELETE_SELF | inotify_flags.MOVE_SELF)
    with INotify() as inotify:
        by_wd, item_wds = {}, set()
        for directory, key in [*watched.items(), *items.items()]:
            try:
                wd = inotify.add_watch(str(directory), mask | (
                    inotify_flags.CLOSE_WRITE if directory in items else 0))
            except OSError:
                continue
            by_wd[wd] = key
            if directory in items:
                item_wds.add(wd)
        events = inotify.read(timeout=int(max(0.0, timeout) * 1000))
    # A dot file in a collection is a writer's temporary (the store's own, renamed into
    # place: that rename is the news).
    return {by_wd[e.wd] for e in events if e.wd in by_wd
            and not (e.wd in item_wds and e.name.startswith("."))}

def _wait_poll(watched: dict[Path, str], items: dict[Path, str],
               timeout: float) -> set[str]:
    watched = {**watched, **items}

    def stamps() -> dict[Path, object]:
        return {directory: _contents(directory) if directory in items else stamp(directory)
                for directory in watched}

    before = stamps()
    deadline = time.monotonic() + max(0.0, timeout)
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(POLL_SECONDS, left))
        now = stamps()
        changed = {watched[d] for d in watched if now[d] != before[d]}
        if changed:
            return changed
    return set()
