"""Appointments, contacts and tasks of a mailbox kept on this machine, beside its Maildir:
a folder of iCalendar files per calendar and task list, of vCard files per address book.

The demo's mailbox syncs its calendar this way (no server to run): drop a ``.ics`` file
into ``<mailbox>/items/calendar`` and the next sync takes it in. The layout, under the
mailbox's tree (``Account.root``)::

    items/calendar/*.ics   appointments (the default calendar)
    items/tasks/*.ics      tasks
    items/contacts/*.vcf   contacts

An item's ref is its file name, its version the file's modification time and size; the
cursor is what each file's version was when last read (JSON), so changes and deletions are
found by listing the folder. Writes go through a temporary file renamed into place, and
carry the version read (a file changed since is a conflict).

Push: the Maildir connector's ``wait_for_changes`` watches these folders with the mail, in
one inotify (``MaildirConnector.item_store``), so a file dropped in is synced at once."""
from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

from server.sync.connectors.base import (Account, Collection, ConnectorError, Item,
                                         ItemChanges, ItemConflict, ItemStore, Needs)
from server.sync.connectors.maildir_tree import mailbox_root

FOLDERS = {"appointment": ("calendar", ".ics", "Calendar"),
           "task": ("tasks", ".ics", "Tasks"),
           "contact": ("contacts", ".vcf", "Contacts")}
_UID = re.compile(r"^UID(?:;[^:\r\n]*)?:(.+)$", re.IGNORECASE | re.MULTILINE)
_SAFE = re.compile(r"[^A-Za-z0-9@._-]")


def uid_in(text: str) -> str | None:
    found = _UID.search(text.replace("\r\n ", "").replace("\n ", ""))
    return found.group(1).strip() if found else None


def _plain(ref: str) -> str:
    """A ref is a file name in the folder, never a path elsewhere."""
    if not ref or "/" in ref or "\\" in ref or ref.startswith("."):
        raise ConnectorError("bad_ref", f"{ref!r} is not an item of this folder.",
                             severity="message")
    return ref


class FolderItemStore(ItemStore):
    """``with FolderItemStore(account) as store:`` (``account.root``: the mailbox's tree)."""

    needs = Needs(store=mailbox_root)

    def __init__(self, account: Account):
        if not account.root:
            raise ValueError("a folder store needs the mailbox's root directory")
        self.root = Path(account.root) / "items"
        self._seen: dict[str, dict[str, str]] = {}  # collection key -> files at the last read

    def __enter__(self) -> FolderItemStore:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def directory(self, collection: Collection) -> Path:
        """The collection's folder (made when missing)."""
        folder = self.root / FOLDERS[collection.kind][0]
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConnectorError("store_unavailable", f"The folder {folder} cannot be made: "
                                 f"{exc.strerror}.") from None
        return folder

    def collections(self, kind: str) -> list[Collection]:
        name, _, label = FOLDERS[kind]
        return [Collection(key=name, name=label, kind=kind, default=True,
                           features=frozenset({"changes", "write"}))]

    def _files(self, collection: Collection) -> dict[str, str]:
        """Each item file's name and version."""
        suffix = FOLDERS[collection.kind][1]
        out = {}
        with os.scandir(self.directory(collection)) as entries:
            for entry in entries:
                if entry.name.endswith(suffix) and entry.is_file():
                    info = entry.stat()
                    out[entry.name] = f"{info.st_mtime_ns}-{info.st_size}"
        return out

    def _read(self, collection: Collection, ref: str, etag: str) -> Item | None:
        _plain(ref)
        try:
            text = (self.directory(collection) / ref).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConnectorError("item_unreadable", f"{ref} cannot be read: {exc}.",
                                 severity="message") from None
        return Item(ref=ref, etag=etag, data=text, uid=uid_in(text))

    def changes(self, collection: Collection, cursor: str | None,
                limit: int = 500) -> ItemChanges:
        seen: dict[str, str] = json.loads(cursor) if cursor else {}
        now = self._seen[collection.key] = self._files(collection)
        changed = sorted(ref for ref, version in now.items() if seen.get(ref) != version)
        removed = sorted(set(seen) - set(now))
        items = []
        for ref in changed[:limit]:
            item = self._read(collection, ref, now[ref])
            if item is not None:
                items.append(item)
                seen[ref] = now[ref]
        for ref in removed:
            del seen[ref]
        return ItemChanges(items=items, cursor=json.dumps(seen, sort_keys=True),
                           removed=removed, more=len(changed) > limit)

    def changed_since_read(self, collection: Collection) -> bool:
        """The collection's files differ from those its last ``changes`` saw (False when it
        was not read in this session): the push watcher's wait returns at once."""
        seen = self._seen.get(collection.key)
        return seen is not None and seen != self._files(collection)

    def put(self, collection: Collection, data: str, ref: str | None = None,
            etag: str | None = None) -> Item:
        folder = self.directory(collection)
        files = self._files(collection)
        if ref is None:
            uid = uid_in(data) or secrets.token_hex(8)
            ref = _SAFE.sub("_", uid)[:200] + FOLDERS[collection.kind][1]
            if ref in files:
                raise ItemConflict(ref, "an item of this UID is in the folder already")
        elif etag is not None and files.get(_plain(ref)) != etag:
            raise ItemConflict(ref)
        temporary = folder / f".{ref}.{secrets.token_hex(4)}.tmp"
        temporary.write_text(data, encoding="utf-8")
        os.replace(temporary, folder / ref)
        return Item(ref=ref, etag=self._files(collection)[ref], data=data, uid=uid_in(data))

    def delete(self, collection: Collection, ref: str, etag: str | None = None) -> None:
        files = self._files(collection)
        if _plain(ref) not in files:
            return
        if etag is not None and files[ref] != etag:
            raise ItemConflict(ref)
        (self.directory(collection) / ref).unlink(missing_ok=True)
