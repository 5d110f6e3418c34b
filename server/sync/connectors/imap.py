"""IMAP connector (imapclient): folders with stable keys, changes since a cursor, keywords,
APPEND for Sent copies, MOVE, and waiting for new mail with NOTIFY or IDLE.

Folder keys survive renames: ``id:<MAILBOXID>`` where the server has RFC 8474 OBJECTID,
else ``guid:<X-GUID>`` where the server answers Dovecot's X-GUID status item, else
``uv:<UIDVALIDITY>`` (Dovecot keeps both over a rename; a UIDVALIDITY shared by two folders
falls back to ``path:<name>`` for those). Names are shown with "/" whatever the server's
separator.

The cursor is JSON ``{"uidvalidity", "last_uid", "highestmodseq"}``. A changed UIDVALIDITY
means the old UIDs mean nothing: the connector starts over from UID 1 and says ``reset``
(the engine keys activities by Message-ID, so nothing is tracked twice). With CONDSTORE the
connector also returns already-seen messages whose keywords changed (someone set the
"Tracked to Regarding" category later), found with ``CHANGEDSINCE``; with QRESYNC it
reports expunged UIDs in ``removed``. Bodies are fetched with ``BODY.PEEK[]`` on a read-only
``EXAMINE``, so syncing never marks mail as read. With ``headers_only`` the batch is read as
``BODY.PEEK[HEADER]`` and ``RFC822.SIZE``, and ``fetch_messages`` reads the whole of the
messages the engine tracks: most of a mailbox is decided on a few KB per message.

IMAP keywords are atoms: no spaces. A category is written as a keyword with its spaces (and
other characters an atom cannot hold) turned into "_" — "Tracked to Regarding" becomes
``Tracked_to_Regarding`` — and keywords are reported back as categories with "_" read as a
space. ``category_to_keyword``/``keyword_to_category`` do both.
"""
from __future__ import annotations

import imaplib
import logging
import re
import select
import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from imapclient import IMAPClient
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_fetch_response, parse_response

from server.sync.connectors.base import (Account, BatchKeywords, Changes, Connector, ConnectorError,
                                         FetchedMessage, Folder, HeadersFirst, Needs,
                                         ReadsAhead, SavesCopies)
from server.sync.connectors.common import (ServerSession, category_to_keyword,  # noqa: F401
                                           keyword_to_category, newsworthy, pack_cursor,
                                           tls_context, unpack_cursor)

# imapclient sends every protocol line to this logger at DEBUG: message bodies included.
# Mail content is never logged, whatever the application's log level.
logging.getLogger("imapclient.imaplib").setLevel(logging.WARNING)

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
SPECIAL_USE_ROLES = {b"\\SENT": "sent", b"\\DRAFTS": "drafts", b"\\TRASH": "trash",
                     b"\\JUNK": "junk"}
FETCH_BATCH = 50  # bodies per FETCH command
HEADER_BATCH = 500  # header sections per FETCH command
MAX_IDLE_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _categories(flags: Iterable) -> tuple[str, ...]:
    return tuple(keyword_to_category(_text(f)) for f in flags or () if not _text(f).startswith("\\"))


def _newsworthy(flags: Iterable) -> bool:
    return newsworthy(_text(f) for f in flags or ())


def _only_ours(flags: Iterable, ours: str | None) -> bool:
    """Whether the only keyword on a message is the one this session wrote to it."""
    if ours is None:
        return False
    return {_text(f) for f in flags or () if newsworthy([_text(f)])} <= {ours}


def _utc(value) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass
class _Fetched:
    raw: bytes | None = None
    flags: tuple[bytes, ...] = ()
    arrived_on: datetime | None = None
    size: int | None = None


_FETCH_ITEM = re.compile(rb'UID (\d+)|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]*)"|RFC822\.SIZE (\d+)')
_FETCH_SEQ = re.compile(rb"(\d+) \(")
_INTERNALDATE = re.compile(rb" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m.encode(): n for n, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}


def _internaldate(text: bytes) -> datetime | None:
    """An IMAP date-time ("22-Nov-2026 17:13:04 +0100") in UTC."""
    match = _INTERNALDATE.fullmatch(text)
    if match is None or match.group(2).lower() not in _MONTHS:
        return None
    day, month, year, hour, minute, second, sign, zh, zm = match.groups()
    offset = timedelta(hours=int(zh), minutes=int(zm)) * (-1 if sign == b"-" else 1)
    try:
        moment = datetime(int(year), _MONTHS[month.lower()], int(day), int(hour), int(minute),
                          int(second), tzinfo=timezone(offset))
    except ValueError:
        return None
    return moment.astimezone(timezone.utc)


def _uid_fetch(imap: imaplib.IMAP4, uids: list[int], items: str) -> dict[int, _Fetched]:
    """``UID FETCH uids (items)`` with imaplib alone, the response read with a few patterns:
    imapclient's general response parser cost twice the reading itself. At most one literal
    per message (the body section); a response without a UID (an unsolicited flag change)
    is left out."""
    imap.untagged_responses.pop("FETCH", None)
    typ, data = imap.uid("FETCH", ",".join(map(str, uids)), f"({items})")
    if typ != "OK":
        raise imaplib.IMAP4.error(f"FETCH failed: {_text(data[0]) if data and data[0] else typ}")
    found: dict[int, _Fetched] = {}
    current: _Fetched | None = None
    for entry in data:
        if entry is None:
            continue
        head, literal = entry if isinstance(entry, tuple) else (entry, None)
        if _FETCH_SEQ.match(head):  # a new message's response (else: its rest after a literal)
            current = _Fetched()
        elif current is None:
            continue
        for match in _FETCH_ITEM.finditer(head):
            number, flags, date, size = match.groups()
            if number is not None:
                found[int(number)] = current
            elif flags is not None:
                current.flags = tuple(flags.split())
            elif date is not None:
                current.arrived_on = _internaldate(date)
            elif size is not None:
                current.size = int(size)
        if literal is not None:
            current.raw = bytes(literal)
    return found


def _uid_set(text: str, upto: int) -> list[int]:
    """``"1:3,7"`` -> [1, 2, 3, 7], ignoring UIDs above ``upto``."""
    out: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition(":")
        if not low.isdigit() or (high and not high.isdigit()):
            continue
        first, last = sorted((int(low), int(high or low)))
        out.extend(range(first, min(last, upto) + 1))
    return out


class ImapConnector(ServerSession, Connector, BatchKeywords, HeadersFirst, ReadsAhead,
                    SavesCopies):
    """One IMAP session for one mailbox: ``with ImapConnector(account) as imap: ...``."""

    needs = Needs(ports=DEFAULT_PORTS)
    DEFAULT_PORTS = DEFAULT_PORTS
    _client: IMAPClient | None

    def __init__(self, account: Account):
        super().__init__(account)
        self._names: dict[str, str] = {}  # folder key -> server name
        self._keys: dict[str, str] = {}  # server name -> folder key
        self._listed: list[Folder] | None = None
        self._selected: tuple[str, bool] | None = None
        self._xguid: bool | None = None  # does STATUS answer X-GUID? (unknown until tried)
        self._qresync = False
        # folder key -> (UIDNEXT, HIGHESTMODSEQ) when it was last read: a wait that starts
        # after mail arrived returns at once instead of missing it.
        self._marks: dict[str, tuple[int | None, int | None]] = {}
        # folder key -> {UID: keyword} this session wrote: a message whose only news is
        # that keyword is not fetched again (CONDSTORE reports our own STORE as a change).
        self._tagged: dict[str, dict[int, str]] = {}

    # -- session --------------------------------------------------------------------------

    def _connect(self) -> None:
        account = self.account
        with self._errors("connecting"):
            if self.security == "tls":
                client = IMAPClient(account.host, self.port, ssl=True,
                                    ssl_context=tls_context(account), timeout=account.timeout)
            else:
                client = IMAPClient(account.host, self.port, ssl=False, timeout=account.timeout)
            self._client = client
            client.normalise_times = False  # INTERNALDATE with its zone, made UTC below
            if self.security == "starttls":
                try:
                    client.starttls(tls_context(account))
                except imaplib.IMAP4.abort:
                    raise
                except imaplib.IMAP4.error:
                    raise self._no_starttls() from None
            self._login(client)
            capabilities = client.capabilities()
            if b"QRESYNC" in capabilities:
                client.enable("QRESYNC")
                self._qresync = True
            elif b"CONDSTORE" in capabilities:
                client.enable("CONDSTORE")

    def _login(self, client: IMAPClient) -> None:
        account = self.account
        try:
            if account.oauth_token:
                auth = f"user={self.username}\x01auth=Bearer {account.oauth_token}\x01\x01"
                client._imap.authenticate("XOAUTH2", lambda _challenge: auth.encode())
            else:
                # imaplib directly: imapclient's login() turns a lost connection into a
                # LoginError too, and a dead server is not a wrong password.
                client._imap.login(self.username, account.password or "")
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            raise self._refused(_text(exc.args[0] if exc.args else exc)) from None

    def _quit(self, client: IMAPClient) -> None:
        client.logout()

    def _abort(self, client: IMAPClient) -> None:
        client.shutdown()

    def _drop(self) -> None:
        self._selected = None
        super()._drop()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Protocol and network failures as ``ConnectorError``s with a severity."""
        try:
            yield
        except ConnectorError:
            raise
        except imaplib.IMAP4.abort as exc:
            self._drop()
            raise ConnectorError("connection_lost", f"The connection to {self.where} was lost "
                                 f"while {what} ({_text(exc)}).", severity="mailbox",
                                 retry_after=60) from None
        except (OSError, EOFError) as exc:
            raise self._lost(exc, what) from None
        except imaplib.IMAP4.error as exc:
            raise ConnectorError("imap_error", f"{self.where} answered an error while {what}: "
                                 f"{_text(exc)}", severity="mailbox") from None

    def capabilities(self) -> tuple[bytes, ...]:
        return self.client.capabilities()

    # -- folders ------------------------------------------------------------------------------

    def list_folders(self) -> list[Folder]:
        with self._errors("listing folders"):
            rows = self._list_with_status()
        found: list[tuple[str, str, str, dict]] = []  # (display, server name, role, status)
        for flags, delimiter, name, status in rows:
            upper = {f.upper() for f in flags}
            if b"\\NOSELECT" in upper or b"\\NONEXISTENT" in upper:
                continue
            sep = _text(delimiter) if delimiter else None
            parts = name.split(sep) if sep else [name]
            if parts[0].upper() == "INBOX":
                parts[0] = "INBOX"
            display = "/".join(parts)
            role = "inbox" if display == "INBOX" else next(
                (r for flag, r in SPECIAL_USE_ROLES.items() if flag in upper), "other")
            found.append((display, name, role, status))
        uv_count: dict[int, int] = {}
        for *_, status in found:
            uv = status.get(b"UIDVALIDITY")
            uv_count[uv] = uv_count.get(uv, 0) + 1
        by_display: dict[str, str] = {}
        keyed = []
        for display, name, role, status in found:
            key = self._key_of(display, status, uv_count)
            by_display[display] = key
            keyed.append((display, name, role, key))
        self._names = {key: name for _, name, _, key in keyed}
        self._keys = {name: key for _, name, _, key in keyed}
        folders = [Folder(key=key, name=display, role=role,
                          parent_key=by_display.get(display.rpartition("/")[0]) if "/" in display else None)
                   for display, _, role, key in keyed]
        self._listed = folders
        return folders

    @staticmethod
    def _key_of(display: str, status: dict, uv_count: dict) -> str:
        mailbox_id = status.get(b"MAILBOXID")
        if mailbox_id:
            value = mailbox_id[0] if isinstance(mailbox_id, tuple) else mailbox_id
            return f"id:{_text(value)}"
        guid = status.get(b"X-GUID")
        if guid:
            return f"guid:{_text(guid)}"
        uv = status.get(b"UIDVALIDITY")
        if uv is not None and uv_count.get(uv) == 1:
            return f"uv:{uv}"
        return f"path:{display}"

    def _identity_items(self) -> list[str]:
        items = ["UIDVALIDITY"]
        if b"OBJECTID" in self.capabilities():
            items.append("MAILBOXID")
        elif self._xguid is not False:
            items.append("X-GUID")
        return items

    def _list_with_status(self) -> list[tuple[tuple, bytes | None, str, dict]]:
        """LIST with each folder's identity items: one LIST-STATUS command where offered,
        else LIST then one STATUS per folder. X-GUID is tried once and dropped if refused."""
        client = self.client
        while True:
            items = self._identity_items()
            try:
                if b"LIST-STATUS" in self.capabilities():
                    rows = self._list_status(items)
                else:
                    rows = [(flags, delim, name, self._status(name, items, flags))
                            for flags, delim, name in client.list_folders()]
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                if "X-GUID" in items:
                    self._xguid = False
                    continue
                raise
            if "X-GUID" in items:
                self._xguid = True
            return rows

    def _status(self, name: str, items: list[str], flags: tuple) -> dict:
        if any(f.upper() in (b"\\NOSELECT", b"\\NONEXISTENT") for f in flags):
            return {}
        return self.client.folder_status(name, items)

    def _list_status(self, items: list[str]) -> list[tuple[tuple, bytes | None, str, dict]]:
        imap = self.client._imap
        imap.untagged_responses.pop("LIST", None)
        imap.untagged_responses.pop("STATUS", None)
        # With RETURN options a LIST-EXTENDED server names special uses only when asked.
        special = "SPECIAL-USE " if b"SPECIAL-USE" in self.capabilities() else ""
        typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN",
                                         f"({special}STATUS ({' '.join(items)}))")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"LIST failed: {_text(data[0]) if data else typ}")
        _, lists = imap._untagged_response(typ, data, "LIST")
        statuses = imap.untagged_responses.pop("STATUS", [])
        status_by_name: dict[str, dict] = {}
        for line in statuses:
            parsed = parse_response([line])
            name, values = parsed[0], parsed[-1]
            name = str(name) if isinstance(name, int) else decode_utf7(name)
            status_by_name[name] = {values[i].upper(): values[i + 1]
                                    for i in range(0, len(values) - 1, 2)}
        rows = self.client._proc_folder_list(lists)
        return [(flags, delim, name, status_by_name.get(name, {})) for flags, delim, name in rows]

    def _name_of(self, folder: Folder) -> str:
        """The server's current name for a folder key (listing again after a rename)."""
        if folder.key not in self._names:
            self.list_folders()
        try:
            return self._names[folder.key]
        except KeyError:
            raise ConnectorError("folder_not_found", f"The folder {folder.name} no longer "
                                 f"exists on {self.where}.", severity="folder") from None

    def folder_by_role(self, role: str) -> Folder | None:
        folders = self._listed if self._listed is not None else self.list_folders()
        return next((f for f in folders if f.role == role), None)

    def _open(self, folder: Folder, readonly: bool) -> dict:
        """Select a folder by its key; a folder renamed since the last listing is found
        again under its new name."""
        name = self._name_of(folder)
        try:
            return self._select(name, readonly)
        except ConnectorError as exc:
            if exc.code != "folder_not_found":
                raise
            self.list_folders()
            renamed = self._names.get(folder.key)
            if renamed is None or renamed == name:
                raise ConnectorError("folder_not_found", f"The folder {folder.name} no longer "
                                     f"exists on {self.where}.", severity="folder") from None
            return self._select(renamed, readonly)

    def _select(self, name: str, readonly: bool) -> dict:
        try:
            info = self.client.select_folder(name, readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as exc:
            self._selected = None
            self._names = {k: v for k, v in self._names.items() if v != name}
            raise ConnectorError("folder_not_found", f"The folder {name} could not be opened on "
                                 f"{self.where} ({_text(exc)}).", severity="folder") from None
        self._selected = (name, readonly)
        return info

    def _unselect(self) -> None:
        if self._selected is None:
            return
        if b"UNSELECT" in self.capabilities():
            self.client.unselect_folder()
        else:
            self.client.close_folder()
        self._selected = None

    # -- reading ------------------------------------------------------------------------------

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500,
                      headers_only: bool = False) -> Changes:
        limit = max(1, limit)
        with self._errors(f"reading {folder.name}"):
            info = self._open(folder, readonly=True)
            uidvalidity = info.get(b"UIDVALIDITY")
            uidnext = info.get(b"UIDNEXT")
            highest = info.get(b"HIGHESTMODSEQ")
            self._marks[folder.key] = (uidnext, highest)
            state = unpack_cursor(cursor)
            reset = cursor is not None and (state is None or state.get("uidvalidity") != uidvalidity)
            last_uid = int(state.get("last_uid") or 0) if state and not reset else 0
            since = state.get("highestmodseq") if state and not reset else None

            changed: list[int] = []
            removed: list[str] = []
            truncated = False
            next_since = highest
            if since is not None and highest is not None and highest > since and last_uid:
                changed, removed, truncated, boundary = self._changed_since(
                    last_uid, since, limit, self._tagged.get(folder.key, {}))
                if truncated:
                    next_since = boundary

            room = 0 if truncated else limit - len(changed)
            new_uids: list[int] = []
            maybe_new = uidnext is None or uidnext > last_uid + 1
            if room > 0 and maybe_new:
                found = self.client.search(["UID", f"{last_uid + 1}:*"])
                new_uids = sorted(u for u in found if u > last_uid)
            batch = new_uids[:room]
            more = truncated or len(new_uids) > len(batch) or (room == 0 and maybe_new)
            messages = (self._fetch_headers if headers_only else self._fetch_full)(changed + batch)
            next_cursor = pack_cursor({"uidvalidity": uidvalidity,
                                       "last_uid": batch[-1] if batch else last_uid,
                                       "highestmodseq": next_since})
        return Changes(messages=messages, cursor=next_cursor, more=more, removed=removed,
                       reset=reset)

    def _changed_since(self, last_uid: int, since: int, limit: int, tagged: dict[int, str]
                       ) -> tuple[list[int], list[str], bool, int | None]:
        """Seen messages (UID <= last_uid) whose flags changed after ``since`` and that now
        carry a keyword, oldest change first, at most ``limit`` (ties of the last modseq kept
        together so the next cursor can resume at it); with QRESYNC also the expunged UIDs.
        A message whose only keyword is the one this session wrote (``tagged``) is left out.
        Sent raw: imapclient's fetch() cannot take a UID range with modifiers."""
        imap = self.client._imap
        imap.untagged_responses.pop("FETCH", None)
        imap.untagged_responses.pop("VANISHED", None)
        modifiers = f"(CHANGEDSINCE {since}{' VANISHED' if self._qresync else ''})"
        tag = imap._command("UID", "FETCH", f"1:{last_uid}", "(UID FLAGS)", modifiers)
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH CHANGEDSINCE failed: {_text(data[0]) if data else typ}")
        _, fetched = imap._untagged_response(typ, data, "FETCH")
        vanished = imap.untagged_responses.pop("VANISHED", [])
        removed = [str(uid) for line in vanished
                   for uid in _uid_set(_text(line).replace("(EARLIER)", "").strip(), last_uid)]
        parsed = parse_fetch_response(fetched, False, True)
        rows = []
        for uid, item in parsed.items():
            modseq = item.get(b"MODSEQ")
            modseq = modseq[0] if isinstance(modseq, tuple) else modseq
            flags = item.get(b"FLAGS")
            if uid <= last_uid and _newsworthy(flags) and not _only_ours(flags, tagged.get(uid)):
                rows.append((int(modseq or since + 1), uid))
        rows.sort()
        if len(rows) <= limit:
            return [uid for _, uid in rows], removed, False, None
        boundary = rows[limit - 1][0]
        kept = [uid for modseq, uid in rows if modseq <= boundary]
        return kept, removed, True, boundary

    def _fetch(self, uids: list[int], section: str, size: bool = False) -> list[FetchedMessage]:
        """``UID FETCH`` of ``BODY.PEEK[section]`` with the flags and arrival time (and the
        size), in chunks, oldest first. A message expunged meanwhile is absent: Dovecot
        answers one another session expunged with a NIL body until it may say so (RFC 3501
        7.4.1)."""
        items = f"UID FLAGS INTERNALDATE{' RFC822.SIZE' if size else ''} BODY.PEEK[{section}]"
        out: list[FetchedMessage] = []
        step = HEADER_BATCH if section == "HEADER" else FETCH_BATCH
        for start in range(0, len(uids), step):
            found = _uid_fetch(self.client._imap, uids[start:start + step], items)
            for uid in uids[start:start + step]:
                item = found.get(uid)
                if item is None or item.raw is None:
                    continue
                out.append(FetchedMessage(ref=str(uid), raw=item.raw,
                                          keywords=_categories(item.flags),
                                          arrived_on=item.arrived_on, complete=not section,
                                          size=item.size))
        return out

    def _fetch_full(self, uids: list[int]) -> list[FetchedMessage]:
        return self._fetch(uids, "")

    def _fetch_headers(self, uids: list[int]) -> list[FetchedMessage]:
        return self._fetch(uids, "HEADER", size=True)

    def fetch_messages(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        """The whole of these messages of ``folder``; a message expunged meanwhile is absent."""
        with self._errors(f"reading messages in {folder.name}"):
            if self._selected is None or self._selected[0] != self._name_of(folder):
                self._open(folder, readonly=True)  # (read-only or not, BODY.PEEK reads)
            return {m.ref: m.raw for m in self._fetch(sorted({int(r) for r in refs}), "")}

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        raw = self.fetch_messages(folder, [ref]).get(ref)
        if raw is None:
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")
        return raw

    # -- writing ------------------------------------------------------------------------------

    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None:
        """Add a keyword (a category name is turned into one) to one message."""
        self.set_keywords(folder, [ref], keyword)

    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None:
        """Add a keyword to many messages of one folder with one UID STORE."""
        if not refs:
            return
        flag = category_to_keyword(keyword)
        uids = sorted({int(ref) for ref in refs})
        with self._errors(f"setting a keyword in {folder.name}"):
            info = self._open(folder, readonly=False)
            permanent = {_text(f) for f in info.get(b"PERMANENTFLAGS", ())}
            if permanent and "\\*" not in permanent and flag not in permanent:
                raise ConnectorError("keywords_unsupported", f"{self.where} does not keep "
                                     f"keywords in {folder.name}.", severity="message")
            self.client.add_flags(uids, [flag], silent=True)
            tagged = self._tagged.setdefault(folder.key, {})
            for uid in uids:
                tagged[uid] = flag

    def append(self, folder: Folder, raw: bytes, flags: Iterable[str] = ("\\Seen",),
               msg_time: datetime | None = None) -> str | None:
        """Store a message in a folder (a Sent copy); returns its UID where UIDPLUS says."""
        name = self._name_of(folder)
        with self._errors(f"saving a message in {folder.name}"):
            self._unselect()
            response = self.client.append(name, raw, flags=tuple(flags), msg_time=msg_time)
        match = _APPENDUID.search(response if isinstance(response, bytes) else b"")
        return match.group(1).decode() if match else None

    def move(self, folder: Folder, ref: str, target: Folder) -> None:
        """Move one message (MOVE where offered, else COPY + delete + expunge)."""
        with self._errors(f"moving a message from {folder.name}"):
            self._open(folder, readonly=False)
            target_name = self._name_of(target)
            uid = int(ref)
            if b"MOVE" in self.capabilities():
                self.client.move([uid], target_name)
                return
            self.client.copy([uid], target_name)
            self.client.add_flags([uid], [b"\\Deleted"], silent=True)
            if b"UIDPLUS" in self.capabilities():
                self.client.uid_expunge([uid])
            else:
                self.client.expunge()

    # -- push ---------------------------------------------------------------------------------

    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Block until one of ``folders`` changes or ``timeout`` seconds pass; returns the keys
        of the changed folders. NOTIFY (RFC 5465) watches every folder on one connection;
        without it IDLE watches the Inbox (or the first folder); without IDLE, STATUS polling."""
        timeout = max(0.0, min(timeout, MAX_IDLE_SECONDS))
        watched: dict[str, str] = {}
        for folder in folders:
            try:
                watched[self._name_of(folder)] = folder.key
            except ConnectorError:
                continue  # a folder gone since the last listing: nothing to wait for there
        if not watched:
            return set()
        with self._errors("waiting for new mail"):
            capabilities = self.capabilities()
            if b"IDLE" in capabilities and b"NOTIFY" in capabilities:
                changed = self._wait_notify(watched, timeout)
                if changed is not None:
                    return changed
            if b"IDLE" in capabilities:
                inbox = next((n for n in watched if watched[n] == self._keys.get("INBOX")),
                             next(iter(watched)))
                return self._wait_idle(inbox, watched[inbox], timeout)
            return self._wait_poll(watched, timeout)

    def _moved_since_read(self, key: str, status: dict) -> bool:
        """Whether a folder changed after it was last read in this session."""
        mark = self._marks.get(key)
        if mark is None:
            return False
        uidnext, highest = status.get(b"UIDNEXT"), status.get(b"HIGHESTMODSEQ")
        return (uidnext is not None and mark[0] is not None and uidnext != mark[0]) or \
            (highest is not None and mark[1] is not None and highest != mark[1])

    def _wait_notify(self, watched: dict[str, str], timeout: float) -> set[str] | None:
        self._unselect()
        client = self.client
        imap = client._imap
        names = b" ".join(client._normalise_folder(name) for name in watched)
        imap.untagged_responses.pop("STATUS", None)
        for events in (b"MessageNew MessageExpunge FlagChange", b"MessageNew MessageExpunge"):
            try:
                # STATUS: the server reports every folder's state first, which shows mail
                # that came after the folder was last read and before this wait began.
                typ, _ = client._raw_command(
                    b"NOTIFY", [b"SET STATUS (mailboxes (" + names + b") (" + events + b"))"],
                    uid=False)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                continue
            if typ == "OK":
                break
        else:
            return None  # the server refused both forms: plain IDLE instead
        already = set()
        for line in imap.untagged_responses.pop("STATUS", []):
            parsed = parse_response([line])
            name = str(parsed[0]) if isinstance(parsed[0], int) else decode_utf7(parsed[0])
            values = parsed[-1]
            status = {values[i].upper(): values[i + 1] for i in range(0, len(values) - 1, 2)}
            if name in watched and self._moved_since_read(watched[name], status):
                already.add(watched[name])
        if already:
            client._raw_command(b"NOTIFY", [b"NONE"], uid=False)
            return already

        def changed(response) -> str | None:
            if len(response) >= 2 and response[0] == b"STATUS":
                name = response[1]
                name = str(name) if isinstance(name, int) else decode_utf7(name)
                return watched.get(name)
            return None

        try:
            return self._idle_until(timeout, changed)
        finally:
            if self._client is not None:
                client._raw_command(b"NOTIFY", [b"NONE"], uid=False)

    def _wait_idle(self, name: str, key: str, timeout: float) -> set[str]:
        if self._moved_since_read(key, self._select(name, readonly=True)):
            return {key}

        def changed(response) -> str | None:
            if len(response) >= 2 and response[1] in (b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED"):
                return key
            if response and response[0] == b"VANISHED":
                return key
            return None

        return self._idle_until(timeout, changed)

    def _idle_until(self, timeout: float, interpret) -> set[str]:
        client = self.client
        found: set[str] = set()
        client.idle()
        try:
            deadline = time.monotonic() + timeout
            while not found:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for response in self._read_pushed(left):
                    key = interpret(response)
                    if key:
                        found.add(key)
        finally:
            if self._client is not None:
                _, late = client.idle_done()
                found.update(k for k in map(interpret, late) if k)
        return found

    def _read_pushed(self, timeout: float) -> list[tuple]:
        """Untagged responses that arrive within ``timeout`` (like imapclient's idle_check,
        except that a closed connection raises instead of looking like silence)."""
        client = self.client
        sock = client.socket()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(timeout * 1000):
            return []
        responses: list[tuple] = []
        sock.setblocking(False)
        try:
            while True:
                try:
                    line = client._imap._get_line()
                except (BlockingIOError, socket.timeout, ssl.SSLWantReadError):
                    break
                except imaplib.IMAP4.abort as exc:
                    if "EOF" in str(exc) and responses:
                        break  # no more buffered lines for now
                    raise  # readable yet nothing to read: the server closed the connection
                if line.startswith(b"* "):
                    body = line[2:]
                    if body.startswith((b"OK ", b"NO ", b"BYE ")):
                        if body.startswith(b"BYE "):
                            raise imaplib.IMAP4.abort(f"server said {_text(body)}")
                        continue
                    responses.append(parse_response([body]))
        finally:
            sock.setblocking(True)
            client._set_read_timeout()
        return responses

    def _wait_poll(self, watched: dict[str, str], timeout: float) -> set[str]:
        items = ["UIDNEXT", "MESSAGES"] + (["HIGHESTMODSEQ"] if b"CONDSTORE" in self.capabilities() else [])
        interval = float(self.account.settings.get("poll_seconds", 30))
        before = {name: self.client.folder_status(name, items) for name in watched}
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(interval, left))
            changed = {watched[name] for name in watched
                       if self.client.folder_status(name, items) != before[name]}
            if changed:
                return changed
        return set()

