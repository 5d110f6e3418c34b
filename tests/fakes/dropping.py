"""Connections a fake service breaks on purpose, as a proxy or a network that fails in the
middle of a sync would (``Drops``, mixed into the fake Graph and the fake Exchange Server):
the next ``drop_requests`` requests, or once, with ``drop_later(what, after)``, the first
request holding ``what`` after ``after`` more such requests were answered."""
from __future__ import annotations


class Drops:
    """Needs the fake's ``lock``; ``dropping(text)`` says whether to break the connection of
    the request whose path or body is ``text`` (and counts it)."""

    drop_requests = 0
    _drop_at: str | None = None
    _drop_after = 0

    def drop_later(self, what: str, after: int) -> None:
        with self.lock:
            self._drop_at, self._drop_after = what, after

    def dropping(self, text: str) -> bool:
        with self.lock:
            if self.drop_requests > 0:
                self.drop_requests -= 1
                return True
            if self._drop_at is None or self._drop_at not in text:
                return False
            if self._drop_after > 0:
                self._drop_after -= 1
                return False
            self._drop_at = None
            return True
