"""EWS streaming notifications: a subscription read by a daemon thread for as long as a
session lasts (``Stream``), gathering the keys of folders that changed until a wait takes
them."""
from __future__ import annotations

import threading

from exchangelib import Account as EwsAccount
from exchangelib.folders import FolderCollection
from exchangelib.services import GetStreamingEvents

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
