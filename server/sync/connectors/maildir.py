r"""Maildir connector and sender: a mailbox kept as a Maildir tree on this machine, for the
demo, for tests, and for a server whose mail store is local (Dovecot's own Maildir).

Layout: Maildir++ as Dovecot writes it. The mailbox's root (``Account.root``) is the Inbox
(``cur/ new/ tmp/``); every other folder is a directory ``.<name>`` beside them whose
"/"-separated path is written with "." — "INBOX/Contoso deal" lives in
``.INBOX.Contoso deal`` — and a "." or "\" inside a name is escaped as ``\2e``/``\5c``
(Dovecot's listescape). Nested directories are not read. ``create_maildir(root, folders)``
makes such a tree and ``deliver(root, folder, raw)`` drops a message into it.

Folder keys (``md:<uuid>``) come from a ``.regarding-id`` file written into each folder's
directory the first time it is seen, so renaming the directory keeps the key. A message's
ref is the unique part of its file name (before ``:2,``), which stays the same when a mail
client moves it from new/ to cur/ or changes its flags. The cursor is ``{"seen": [refs],
"kw": {ref: keyword letters}}`` (deflated when long). Moving a file into another folder is
seen as removed from one folder and new in the other. Keywords are Dovecot's: letters a-z
in the file name mapped to names by the folder's ``dovecot-keywords`` file; a message whose
keywords change to include a category comes back, as with IMAP CONDSTORE.

Header first: with ``headers_only`` a batch's files are read only up to the blank line that
ends their header section (``maildir_headers``), and ``fetch_messages`` reads the whole of
the messages the engine tracks; with ``changed_as_headers`` a message that comes back
because its keywords changed is read as its header section too. The "Tracked to Regarding"
keyword the engine writes after the run's cursor was taken (renaming the file) does not
bring a message back: the cursor is moved past it (``past_own_writes``), so a second run
over an unchanged tree reads no file.

``wait_for_changes`` uses inotify (``inotify_simple``) and falls back to comparing the
directories' modification times every 0.5 s. It waits on the mailbox's item collections too
(``item_store``: the folders of .ics and .vcf files beside the tree, ``ics_folder``), in
the same inotify: a file dropped, renamed, deleted or written over there wakes it.

The sender (``MaildirSender``) writes sent mail into the maildir store instead of a network: its
``Account.root`` is the directory that holds all users' trees (the server profile's
``maildir_root``); a recipient whose tree is there gets the message in their Inbox, and
every message is also kept in ``<root>/outbox`` (a Maildir) with ``X-Envelope-From`` and
``X-Envelope-To`` headers, standing for "the internet".
"""
from __future__ import annotations

import os
import re
import socket
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timezone
from itertools import count
from pathlib import Path

from server.sync.connectors.base import (Account, BatchKeywords, Changes, Collection, Connector,
                                         ConnectorError, Deletes, FetchedMessage, Folder,
                                         HeadersFirst, ItemStore, Needs, Probes, SavesCopies,
                                         Sender, WatchesItems)
from server.sync.connectors.common import (category_to_keyword, keyword_to_category, newsworthy,
                                           pack_cursor, unpack_cursor)
from server.sync.connectors.maildir_headers import header_section
from server.sync.connectors.maildir_tree import (mailbox_root, settled, split_stamp, stamp,
                                                 wait, with_stamp)

ID_FILE = ".regarding-id"
KEYWORDS_FILE = "dovecot-keywords"
ROLE_NAMES = {
    "sent": "sent", "sent items": "sent", "sent messages": "sent", "sent mail": "sent",
    "drafts": "drafts", "trash": "trash", "deleted items": "trash", "deleted messages": "trash",
    "junk": "junk", "spam": "junk", "junk e-mail": "junk", "junk email": "junk",
}
_ESCAPE = re.compile(r"\\([0-9a-fA-F]{2})")
_serial = count(1)


# -- the tree ------------------------------------------------------------------------------

def _escape(part: str) -> str:
    return part.replace("\\", "\\5c").replace(".", "\\2e")


def _unescape(part: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), part)


def folder_path(root: str | Path, name: str) -> Path:
    """The directory of a folder: ``INBOX`` is the root, ``INBOX/Contoso deal`` is
    ``<root>/.INBOX.Contoso deal``."""
    root = Path(root)
    if name.upper() == "INBOX":
        return root
    parts = [p for p in name.split("/") if p]
    if parts and parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a folder name: {name!r}")
    return root / ("." + ".".join(_escape(p) for p in parts))


def _folder_name(dirname: str) -> str:
    parts = [_unescape(p) for p in dirname[1:].split(".")]
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    return "/".join(parts)


def _make_dirs(path: Path, is_folder: bool) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    if is_folder:
        (path / "maildirfolder").touch()


def create_maildir(root: str | Path, folders: Iterable[str] = ()) -> Path:
    """Make a Maildir++ tree at ``root`` (the Inbox) with ``folders`` ("INBOX/Contoso
    deal", "Sent", ...); existing ones are left as they are. Returns the root."""
    root = Path(root)
    _make_dirs(root, False)
    for name in folders:
        if name.upper() != "INBOX":
            _make_dirs(folder_path(root, name), True)
    return root


def _unique_name() -> str:
    now = time.time()
    seconds, micro = int(now), int((now % 1) * 1_000_000)
    host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
    return f"{seconds}.M{micro}P{os.getpid()}Q{next(_serial)}.{host}"


def _write_message(directory: Path, raw: bytes, seen: bool = False,
                   msg_time: datetime | None = None) -> str:
    """Maildir delivery: write into tmp/, then rename into new/ (or cur/ when already
    read). Returns the unique name."""
    unique = _unique_name()
    tmp = directory / "tmp" / unique
    with open(tmp, "wb") as fh:
        fh.write(raw)
        fh.flush()
        os.fsync(fh.fileno())
    if msg_time is not None:
        stamp = msg_time.timestamp()
        os.utime(tmp, (stamp, stamp))
    final = directory / "cur" / f"{unique}:2,S" if seen else directory / "new" / unique
    os.rename(tmp, final)
    return unique


def deliver(root: str | Path, folder: str, raw: bytes, *, seen: bool = False,
            msg_time: datetime | None = None) -> str:
    """Drop a message into a folder of the tree at ``root`` (made if missing); returns its
    ref (the file's unique name)."""
    path = folder_path(root, folder)
    if not (path / "cur").is_dir():
        _make_dirs(path, path != Path(root))
    return _write_message(path, raw, seen, msg_time)


def _unique(filename: str) -> str:
    return filename.split(":", 1)[0]


def _flags(filename: str) -> str:
    _, sep, info = filename.partition(":2,")
    return info if sep else ""


# -- the connector ---------------------------------------------------------------------------

class MaildirConnector(Connector, BatchKeywords, HeadersFirst, SavesCopies, Deletes,
                       WatchesItems, Probes):
    """A mailbox's Maildir tree: ``with MaildirConnector(account) as md: ...``."""

    needs = Needs(store=mailbox_root)  # the mailbox's own tree in the store

    def __init__(self, account: Account):
        if not account.root:
            raise ValueError("a Maildir account needs its root directory")
        self.account = account
        self.root = Path(account.root)
        self._dirs: dict[str, Path] = {}  # folder key -> directory
        self._listed: list[Folder] | None = None
        # folder key -> new/ and cur/ modification times when it was last read: a wait that
        # starts after mail arrived returns at once instead of missing it.
        self._marks: dict[str, tuple[int, int]] = {}
        # folder key -> the folder's files as last listed (set_keyword finds files there
        # instead of listing the folder per message), and the keyword letters this session
        # wrote per message: our own rename is not news to the next fetch.
        self._listing: dict[str, dict[str, Path]] = {}
        self._tagged: dict[str, dict[str, str]] = {}
        self._added: dict[str, set[str]] = {}  # folder key -> the letters this session added
        self._items = None  # the item store beside the tree, once asked for

    def __enter__(self) -> MaildirConnector:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        pass

    def connect(self) -> None:
        if not (self.root / "cur").is_dir() or not (self.root / "new").is_dir():
            raise ConnectorError("maildir_missing", f"There is no Maildir at {self.root}.",
                                 severity="mailbox")

    def item_store(self) -> ItemStore:
        """The folders of .ics and .vcf files beside this tree (``ics_folder``)."""
        from server.sync.connectors.ics_folder import FolderItemStore
        if self._items is None:
            self._items = FolderItemStore(Account(address=self.account.address,
                                                  root=str(self.root)))
        return self._items

    # -- folders ------------------------------------------------------------------------------

    def _key_for(self, path: Path) -> str:
        id_file = path / ID_FILE
        try:
            return "md:" + id_file.read_text().strip()
        except FileNotFoundError:
            pass
        value = str(uuid.uuid4())
        try:
            fd = os.open(id_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:  # another process named it first
            return "md:" + id_file.read_text().strip()
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return "md:" + value

    def list_folders(self) -> list[Folder]:
        self.connect()
        found: list[tuple[str, Path]] = [("INBOX", self.root)]
        try:
            entries = sorted(os.scandir(self.root), key=lambda e: e.name)
        except OSError as exc:
            raise ConnectorError("maildir_unreadable", f"{self.root} cannot be read ({exc}).",
                                 severity="mailbox") from None
        for entry in entries:
            if (entry.name.startswith(".") and entry.name not in (".", "..")
                    and entry.is_dir() and (Path(entry.path) / "cur").is_dir()):
                found.append((_folder_name(entry.name), Path(entry.path)))
        keys = {name: self._key_for(path) for name, path in found}
        folders = []
        for name, path in found:
            top = name.split("/", 1)[0] if name != "INBOX" else name
            role = "inbox" if name == "INBOX" else (
                ROLE_NAMES.get(name.lower(), "other") if top == name else "other")
            parent = name.rpartition("/")[0] if "/" in name else None
            folders.append(Folder(key=keys[name], name=name, role=role,
                                  parent_key=keys.get(parent) if parent else None))
        self._dirs = {keys[name]: path for name, path in found}
        self._listed = folders
        return folders

    def _dir(self, folder: Folder) -> Path:
        path = self._dirs.get(folder.key)
        if path is None or not (path / "cur").is_dir():
            self.list_folders()
            path = self._dirs.get(folder.key)
        if path is None:
            raise ConnectorError("folder_not_found", f"The folder {folder.name} no longer "
                                 f"exists in {self.root}.", severity="folder")
        return path

    def folder_by_role(self, role: str) -> Folder | None:
        folders = self._listed if self._listed is not None else self.list_folders()
        return next((f for f in folders if f.role == role), None)

    # -- messages -----------------------------------------------------------------------------

    @staticmethod
    def _files(path: Path) -> dict[str, Path]:
        """unique name -> current file, from new/ and cur/ (cur/ wins a race)."""
        out: dict[str, Path] = {}
        for sub in ("new", "cur"):
            try:
                with os.scandir(path / sub) as entries:
                    for entry in entries:
                        if not entry.name.startswith(".") and entry.is_file():
                            out[_unique(entry.name)] = Path(entry.path)
            except FileNotFoundError:
                continue
        return out

    @staticmethod
    def _keyword_names(path: Path) -> list[str | None]:
        names: list[str | None] = [None] * 26
        try:
            lines = (path / KEYWORDS_FILE).read_text().splitlines()
        except FileNotFoundError:
            return names
        for line in lines:
            index, _, name = line.partition(" ")
            if index.isdigit() and int(index) < 26 and name:
                names[int(index)] = name.strip()
        return names

    @staticmethod
    def _letters(file: Path) -> str:
        return "".join(sorted(c for c in _flags(file.name) if "a" <= c <= "z"))

    def _keywords(self, file: Path, names: list[str | None]) -> tuple[str, ...]:
        return tuple(keyword_to_category(names[ord(c) - 97]) for c in self._letters(file)
                     if names[ord(c) - 97])

    def _read(self, path: Path, unique: str, file: Path, whole: bool = True
              ) -> tuple[bytes, Path] | None:
        """A message's bytes (``whole=False``: its header section); a file renamed meanwhile
        (new -> cur, flags) is found again."""
        for _ in range(3):
            try:
                return (file.read_bytes() if whole else header_section(file)), file
            except FileNotFoundError:
                file = self._files(path).get(unique)
                if file is None:
                    return None  # moved away or deleted
        return None

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500,
                      headers_only: bool = False, changed_as_headers: bool = False) -> Changes:
        limit = max(1, limit)
        path = self._dir(folder)
        marks = self._marks[folder.key] = (stamp(path / "new"), stamp(path / "cur"))
        listed, cursor = split_stamp(cursor)
        if listed == marks:  # nothing delivered, moved, renamed or removed since then
            return Changes(messages=[], cursor=with_stamp(marks, cursor), more=False)
        state = unpack_cursor(cursor)
        reset = cursor is not None and (state is None or not isinstance(state.get("seen"), list))
        seen = set(state["seen"]) if state and not reset else set()
        letters_before: dict[str, str] = dict(state.get("kw") or {}) if state and not reset else {}
        files = self._files(path)
        names = self._keyword_names(path)

        self._listing[folder.key] = files
        tagged = self._tagged.get(folder.key, {})
        current = {u: self._letters(f) for u, f in files.items()}
        pending = [u for u in sorted(seen & files.keys())
                   if current[u] != letters_before.get(u, "") and current[u] != tagged.get(u)
                   and newsworthy(self._keywords(files[u], names))]
        changed = pending[:limit]
        new = sorted((u for u in files if u not in seen),
                     key=lambda u: (self._mtime(files[u]), u))
        batch = new[:limit - len(changed)]
        # Read as header sections: the batch with headers_only, mail seen before with either.
        heads = set(changed) if headers_only or changed_as_headers else set()
        if headers_only:
            heads.update(batch)
        messages: list[FetchedMessage] = []
        delivered: set[str] = set()
        for unique in changed + batch:
            whole = unique not in heads
            got = self._read(path, unique, files[unique], whole)
            if got is None:
                continue
            raw, file = got
            delivered.add(unique)
            current[unique] = self._letters(file)
            info = self._stat(file)
            messages.append(FetchedMessage(
                ref=unique, raw=raw, keywords=self._keywords(file, names),
                arrived_on=datetime.fromtimestamp(info.st_mtime, timezone.utc) if info else None,
                complete=whole, size=info.st_size if info else None))
        present = set(files)
        kept = (seen & present) | (set(batch) & delivered)
        # A keyword change not returned yet keeps its old letters, so it is found next time.
        waiting = set(pending) - delivered
        letters = {u: letters_before.get(u, "") if u in waiting else current[u] for u in kept}
        letters = {u: v for u, v in letters.items() if v}
        more = len(new) > len(batch) or len(pending) > len(changed)
        packed = pack_cursor({"seen": sorted(kept), "kw": letters})
        if not more and settled(path, marks):
            packed = with_stamp(marks, packed)
        return Changes(messages=messages, cursor=packed, more=more,
                       removed=sorted(seen - present), reset=reset)

    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        """The cursor carries the folder's new/ and cur/ times (settled when it was taken)
        and they are still the same: two ``stat`` calls, nothing listed."""
        listed, _ = split_stamp(cursor)
        if listed is None:
            return False
        try:
            path = self._dir(folder)
        except ConnectorError:
            return False
        return listed == (stamp(path / "new"), stamp(path / "cur"))

    def past_own_writes(self, folder: Folder, cursor: str | None) -> str | None:
        """``cursor`` with the keyword letters of the messages this session tagged, where a
        message's file now carries exactly the letters the cursor has for it and the ones
        this session added (a keyword another client set meanwhile stays news), so the next
        run does not read them back: the folder is listed once. The renames changed the
        directories' times, so the cursor has no stamp and the next visit is a run, which
        reads no file and stamps the cursor once settled."""
        tagged, added = self._tagged.get(folder.key), self._added.get(folder.key, set())
        state = unpack_cursor(split_stamp(cursor)[1])
        if not tagged or not isinstance(state, dict) or not isinstance(state.get("seen"), list):
            return cursor
        try:
            files = self._files(self._dir(folder))
        except ConnectorError:
            return cursor
        letters, seen = dict(state.get("kw") or {}), set(state["seen"])
        mine = {}
        for ref in tagged:
            expected = "".join(sorted(set(letters.get(ref, "")) | added))
            if ref in seen and ref in files and self._letters(files[ref]) == expected:
                mine[ref] = expected
        if not mine:
            return cursor
        return pack_cursor({**state, "kw": {**letters, **mine}})

    @staticmethod
    def _stat(file: Path) -> os.stat_result | None:
        try:
            return file.stat()
        except FileNotFoundError:
            return None

    def _mtime(self, file: Path) -> float:
        info = self._stat(file)
        return info.st_mtime if info else 0.0

    def fetch_messages(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        """The whole of these messages of ``folder``, found in its last listing (listed
        again once for refs not in it); a file renamed meanwhile is found again, a message
        gone meanwhile is absent."""
        path = self._dir(folder)
        listing = self._listing.get(folder.key)
        if listing is None or any(ref not in listing for ref in refs):
            listing = self._listing[folder.key] = self._files(path)
        out: dict[str, bytes] = {}
        for ref in dict.fromkeys(refs):
            got = self._read(path, ref, listing[ref]) if ref in listing else None
            if got is not None:
                out[ref] = got[0]
        return out

    def delete(self, folder: Folder, refs: list[str]) -> None:
        """Remove the messages' files (one already gone is no error)."""
        path = self._dir(folder)
        listing = self._listing[folder.key] = self._files(path)
        for ref in refs:
            if ref in listing:
                listing.pop(ref).unlink(missing_ok=True)

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        raw = self.fetch_messages(folder, [ref]).get(ref)
        if raw is None:
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")
        return raw

    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None:
        """Add a keyword (a category name is turned into one) the way Dovecot keeps it."""
        if self._add_keyword(folder, [ref], keyword):
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")

    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None:
        """Add a keyword to many messages of a folder: ``dovecot-keywords`` read (and written)
        once, each file renamed with the keyword's letter; the folder is listed again at most
        once, for messages renamed since it was read. A message gone meanwhile is skipped."""
        self._add_keyword(folder, refs, keyword)

    def _keyword_letter(self, folder: Folder, path: Path, keyword: str) -> str:
        """The letter of a keyword in the folder's ``dovecot-keywords``, added when new."""
        names = self._keyword_names(path)
        if keyword in names:
            return chr(97 + names.index(keyword))
        if None not in names:
            raise ConnectorError("keywords_full", f"{folder.name} already has 26 keywords.",
                                 severity="message")
        index = names.index(None)
        names[index] = keyword
        lines = "".join(f"{i} {n}\n" for i, n in enumerate(names) if n)
        tmp = path / f"{KEYWORDS_FILE}.{os.getpid()}.tmp"
        tmp.write_text(lines)
        os.replace(tmp, path / KEYWORDS_FILE)
        return chr(97 + index)

    def _add_keyword(self, folder: Folder, refs: list[str], keyword: str) -> list[str]:
        """Rename each message's file to carry the keyword's letter; returns the refs whose
        file is gone. Files are found in the folder's last listing, else in one new one."""
        path = self._dir(folder)
        letter = self._keyword_letter(folder, path, category_to_keyword(keyword))
        self._added.setdefault(folder.key, set()).add(letter)
        listing = self._listing.setdefault(folder.key, {})
        tagged = self._tagged.setdefault(folder.key, {})
        missing = list(dict.fromkeys(refs))
        for attempt in range(2):
            if attempt:  # renamed or moved since the folder was listed: list it again
                if not missing:
                    break
                listing = self._listing[folder.key] = self._files(path)
            again = []
            for ref in missing:
                file = listing.get(ref)
                if file is None:
                    again.append(ref)
                    continue
                flags = _flags(file.name)
                if letter in flags:
                    continue
                target = path / "cur" / f"{ref}:2,{''.join(sorted(set(flags + letter)))}"
                try:
                    os.rename(file, target)
                except FileNotFoundError:
                    again.append(ref)
                    continue
                listing[ref] = target
                tagged[ref] = self._letters(target)
            missing = again
        return missing

    def append(self, folder: Folder, raw: bytes, flags: Iterable[str] = ("\\Seen",),
               msg_time: datetime | None = None) -> str:
        return _write_message(self._dir(folder), raw, "\\Seen" in set(flags), msg_time)

    def move(self, folder: Folder, ref: str, target: Folder) -> None:
        source, destination = self._dir(folder), self._dir(target)
        file = self._files(source).get(ref)
        if file is None:
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")
        os.rename(file, destination / file.parent.name / file.name)

    # -- waiting ------------------------------------------------------------------------------

    def wait_for_changes(self, folders: list[Folder | Collection],
                         timeout: float) -> set[str]:
        """``folders`` may hold item collections of ``item_store`` too: their directories
        are watched for files written in place as well."""
        watched: dict[Path, str] = {}
        items: dict[Path, str] = {}  # collection directories
        already: set[str] = set()
        for folder in folders:
            if isinstance(folder, Collection):
                if self._items is not None:
                    items[self._items.directory(folder)] = folder.key
                    if self._items.changed_since_read(folder):
                        already.add(folder.key)
                continue
            try:
                base = self._dir(folder)
            except ConnectorError:
                continue
            for sub in ("new", "cur"):
                watched[base / sub] = folder.key
        if not watched and not items:
            return set()
        already |= {key for key, mark in self._marks.items()
                    if key in watched.values() and key in self._dirs
                    and mark != (stamp(self._dirs[key] / "new"),
                                 stamp(self._dirs[key] / "cur"))}
        if already:
            return already
        return wait(watched, items, timeout)

# -- the sender --------------------------------------------------------------------------------

class MaildirSender(Sender):
    """Delivers into the maildir store: local recipients' Inboxes plus ``<root>/outbox``."""

    needs = Needs(store=lambda store, _address: store)  # the whole store: it delivers to all

    def __init__(self, account: Account):
        if not account.root:
            raise ValueError("a Maildir sender needs the store's root directory")
        self.account = account
        self.store = Path(account.root)

    def __enter__(self) -> MaildirSender:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        pass

    def connect(self) -> None:
        if not self.store.is_dir() or not os.access(self.store, os.W_OK):
            raise ConnectorError("maildir_missing", f"The mail store {self.store} does not "
                                 "exist or cannot be written.", severity="mailbox")

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict[str, str]:
        if not recipients:
            raise ConnectorError("no_recipients", "The message has no recipients.",
                                 severity="message")
        self.connect()
        envelope = (f"X-Envelope-From: <{sender}>\r\n"
                    f"X-Envelope-To: {', '.join(recipients)}\r\n").encode("utf-8")
        outbox = create_maildir(self.store / "outbox")
        _write_message(outbox, envelope + raw)
        for address in dict.fromkeys(r.strip().lower() for r in recipients):
            tree = mailbox_root(self.store, address)
            if (tree / "new").is_dir():
                _write_message(tree, raw)
        return {}

    def verify(self, sender: str, recipient: str) -> None:
        self.connect()

