"""EWS streaming notifications: a subscription read by a daemon thread for as long as a
session lasts (``Stream``), gathering the keys of folders that changed until a wait takes
them; and ``Watching``, the ``wait_for_changes`` of the EWS mail connector and item store
(streaming where the server takes it, else polling SyncFolderItems)."""
from __future__ import annotations

import logging
import threading
import time

from exchangelib import Account as EwsAccount
from exchangelib.errors import ErrorAccessDenied, ErrorFolderNotFound, ErrorServerBusy, EWSError
from exchangelib.folders import FolderCollection
from exchangelib.services import GetStreamingEvents

log = logging.getLogger(__name__)
DEFAULT_POLL_SECONDS = 30.0

STREAM_EVENTS = ["NewMailEvent", "CreatedEvent", "ModifiedEvent", "MovedEvent", "DeletedEvent",
                 "CopiedEvent"]
STREAM_MINUTES = 5  # one GetStreamingEvents connection; opened again when it closes


class Stream:
    """A streaming subscription read by a daemon thread: GetStreamingEvents held open for
    ``STREAM_MINUTES`` at a time and opened again, the keys of changed folders gathered until
    a wait takes them. ``stop`` unsubscribes and closes the open stream."""

    def __init__(self, ews: EwsAccount, subscription: str, keys: frozenset[str]):
        self.ews, self.subscription, self.keys = ews, subscription, keys
        self.fresh = True
        self.changed: set[str] = set()
        self.error: BaseException | None = None
        self.stopped = False
        self.service: GetStreamingEvents | None = None
        self.condition = threading.Condition()
        self.thread = threading.Thread(target=self._run, name="ews-stream", daemon=True)
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.error is None and not self.stopped

    def _run(self) -> None:
        while not self.stopped:
            try:
                self.service = GetStreamingEvents(account=self.ews)
                for notification in self.service.call(subscription_ids=[self.subscription],
                                                      connection_timeout=STREAM_MINUTES):
                    found = {ident for event in notification.events or ()
                             for ident in event_folders(event) if ident in self.keys}
                    if found:
                        with self.condition:
                            self.changed |= found
                            self.condition.notify_all()
            except BaseException as exc:  # reported by the next wait
                with self.condition:
                    if not self.stopped:
                        self.error = exc
                    self.condition.notify_all()
                return

    def take(self, timeout: float) -> set[str]:
        with self.condition:
            self.condition.wait_for(lambda: self.changed or self.error or self.stopped, timeout)
            if self.error is not None:
                raise self.error
            found, self.changed = self.changed, set()
            return found

    def stop(self) -> None:
        with self.condition:
            self.stopped = True
            self.condition.notify_all()
        try:
            FolderCollection(account=self.ews, folders=[]).unsubscribe(self.subscription)
        except Exception:  # it expires on its own
            pass
        service = self.service
        if service is not None:
            try:
                service.stop_streaming()
            except Exception:
                pass
        self.thread.join(timeout=2)


def event_folders(event) -> list[str]:
    out = []
    for attr in ("parent_folder_id", "old_parent_folder_id", "folder_id"):
        ident = getattr(getattr(event, attr, None), "id", None)
        if ident:
            out.append(ident)
    return out


class Watching:
    """``wait_for_changes`` for an EWS session that keeps ``_states`` (key -> the last
    SyncState read in this session) and has ``_folder(folder)`` (its exchangelib folder) and
    ``_sync(ews_folder, state, limit)`` (one SyncFolderItems call). ``close`` stops the
    stream."""

    _stream: Stream | None = None
    _streaming_refused = False

    def close(self) -> None:
        try:
            self._stop_stream()
        except Exception:  # the connection may be gone already
            pass
        super().close()

    def wait_for_changes(self, folders: list, timeout: float) -> set[str]:
        """Block until one of ``folders`` (mail folders or item collections: anything with a
        ``key``) changes or ``timeout`` seconds pass; returns the keys of changed folders. A streaming subscription (Exchange 2010 SP1 and later),
        read by a thread for as long as this session lasts, reports changes as they happen;
        where the server takes none, SyncFolderItems is polled from each folder's last state
        read in this session (the state found is not stored: the next ``fetch_changes``
        reads the changes)."""
        timeout = max(0.0, timeout)
        keys = frozenset(f.key for f in folders)
        if keys and self.settings.get("streaming", True):
            stream = self._stream_for(folders, keys)
            if stream is not None:
                with self._errors("waiting for changes"):
                    if stream.fresh:  # mail that came after the last read, before subscribing
                        stream.fresh = False
                        pending = self._pending(folders)
                        if pending:
                            return pending
                    return stream.take(timeout)
        return self._wait_polling(folders, timeout)

    def _pending(self, folders: list) -> set[str]:
        """Folders with changes after the state last read in this session."""
        changed = set()
        for folder in folders:
            state = self._states.get(folder.key)
            if state and self._sync(self._folder(folder), state, 1)[0]:
                changed.add(folder.key)
        return changed

    def _stream_for(self, folders: list, keys: frozenset[str]) -> Stream | None:
        """The running stream on exactly these folders (started when needed), or None when
        the server takes no streaming subscription."""
        if self._stream is not None and self._stream.keys == keys and self._stream.alive:
            return self._stream
        self._stop_stream()
        if self._streaming_refused:
            return None
        with self._errors("subscribing to changes"):
            try:
                subscription = FolderCollection(
                    account=self.ews, folders=[self._folder(f) for f in folders]
                ).subscribe_to_streaming(event_types=STREAM_EVENTS)
            except (ErrorServerBusy, ErrorAccessDenied, ErrorFolderNotFound):
                raise
            except EWSError as exc:
                log.info("%s takes no streaming subscription (%s): polling instead",
                         self.where, type(exc).__name__)
                self._streaming_refused = True
                return None
        self._stream = Stream(self.ews, subscription, keys)
        return self._stream

    def _stop_stream(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.stop()

    def _wait_polling(self, folders: list, timeout: float) -> set[str]:
        interval = float(self.settings.get("poll_seconds", DEFAULT_POLL_SECONDS))
        watched = [f for f in folders if self._states.get(f.key)]
        if not watched:
            return set()
        deadline = time.monotonic() + timeout
        while True:
            with self._errors("waiting for changes"):
                changed = self._pending(watched)
            left = deadline - time.monotonic()
            if changed or left <= 0:
                return changed
            time.sleep(min(interval, left))
