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
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from imapclient import IMAPClient
from imapclient.exceptions import ProtocolError
from imapclient.imapclient import join_message_ids, seq_to_parenstr
from imapclient.response_parser import parse_fetch_response

from server.sync.connectors.base import (Account, BatchKeywords, Changes, Connector, ConnectorError,
                                         Deletes, FetchedMessage, Folder, HeadersFirst, Needs,
                                         Probes, ReadsAhead, SavesCopies)
from server.sync.connectors.common import (ServerSession, category_to_keyword,  # noqa: F401
                                           keyword_to_category, pack_cursor, tls_context,
                                           unpack_cursor)
from server.sync.connectors.imap_fetch import (categories, flags_newsworthy, only_ours, text,
                                               uid_fetch, uid_set)
from server.sync.connectors.imap_list import Listing
from server.sync.connectors.imap_wait import Waiting

# imapclient sends every protocol line to this logger at DEBUG: message bodies included.
# Mail content is never logged, whatever the application's log level.
logging.getLogger("imapclient.imaplib").setLevel(logging.WARNING)

DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
SPECIAL_USE_ROLES = {b"\\SENT": "sent", b"\\DRAFTS": "drafts", b"\\TRASH": "trash",
                     b"\\JUNK": "junk"}
FETCH_BATCH = 50  # bodies per FETCH command
HEADER_BATCH = 500  # header sections per FETCH command
_APPENDUID = re.compile(rb"\[APPENDUID \d+ (\d+)\]")


class ImapConnector(ServerSession, Listing, Waiting, Connector, BatchKeywords, HeadersFirst,
                    ReadsAhead, SavesCopies, Deletes, Probes):
    """One IMAP session for one mailbox: ``with ImapConnector(account) as imap: ...``."""

    needs = Needs(host=True, ports=DEFAULT_PORTS)
    _client: IMAPClient | None

    def __init__(self, account: Account):
        super().__init__(account)
        self._names: dict[str, str] = {}  # folder key -> server name
        self._keys: dict[str, str] = {}  # server name -> folder key
        self._listed: list[Folder] | None = None
        # folder key -> its STATUS items at the last listing (UIDNEXT too, and with
        # CONDSTORE HIGHESTMODSEQ, which tell an unchanged folder without opening it), until
        # the folder is read
        self._listed_status: dict[str, dict] = {}
        self._selected: tuple[str, bool] | None = None
        self._xguid: bool | None = None  # does STATUS answer X-GUID? (unknown until tried)
        self._change_items: bool | None = None  # and UIDNEXT, HIGHESTMODSEQ? (the same)
        self._qresync = False
        # folder key -> (UIDNEXT, HIGHESTMODSEQ) when it was last read: a wait that starts
        # after mail arrived returns at once instead of missing it.
        self._marks: dict[str, tuple[int | None, int | None]] = {}
        # folder key -> {UID: keyword} this session wrote: a message whose only news is
        # that keyword is not fetched again (CONDSTORE reports our own STORE as a change).
        self._tagged: dict[str, dict[int, str]] = {}
        # folder key -> the mod-sequences the server gave this session's own STOREs
        # (``past_own_writes``)
        self._stored: dict[str, set[int]] = {}

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
            # IMAPClient sets imaplib's debug level to 5: imaplib then formats the repr of
            # every response, bodies included (megabytes a batch), for a logger that drops
            # it. That formatting was a quarter of a full sync's CPU.
            client._imap.debug = 0
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
            raise self._refused(text(exc.args[0] if exc.args else exc)) from None

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
                                 f"while {what} ({text(exc)}).", severity="mailbox",
                                 retry_after=60) from None
        except (OSError, EOFError) as exc:
            raise self._lost(exc, what) from None
        except imaplib.IMAP4.error as exc:
            raise ConnectorError("imap_error", f"{self.where} answered an error while {what}: "
                                 f"{text(exc)}", severity="mailbox") from None

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
            sep = text(delimiter) if delimiter else None
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
        self._listed_status = {}
        for display, name, role, status in found:
            key = self._key_of(display, status, uv_count)
            by_display[display] = key
            keyed.append((display, name, role, key))
            self._listed_status[key] = status
        self._names = {key: name for _, name, _, key in keyed}
        self._keys = {name: key for _, name, _, key in keyed}
        folders = [Folder(key=key, name=display, role=role,
                          parent_key=by_display.get(display.rpartition("/")[0]) if "/" in display else None)
                   for display, _, role, key in keyed]
        self._listed = folders
        return folders

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
                                 f"{self.where} ({text(exc)}).", severity="folder") from None
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

    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        """From the folder's STATUS at the last listing (``list_folders``: one LIST-STATUS
        command where the server offers it): the cursor's UIDVALIDITY, no UID beyond the
        cursor's, and with CONDSTORE the cursor's HIGHESTMODSEQ (every delivery, flag
        change and expunge raises it, RFC 7162). Without mod-sequences (a server without
        CONDSTORE, a folder with NOMODSEQ) a run finds only new UIDs, which UIDNEXT tells
        as well as opening the folder would. A folder read since the listing (its cursor may
        be newer than the listing) cannot tell. Nothing is sent to the server."""
        status, state = self._listed_status.get(folder.key), unpack_cursor(cursor)
        if not status or not isinstance(state, dict):
            return False
        uidnext, highest = status.get(b"UIDNEXT"), status.get(b"HIGHESTMODSEQ")
        if not (isinstance(uidnext, int) and status.get(b"UIDVALIDITY") == state.get("uidvalidity")
                and uidnext <= int(state.get("last_uid") or 0) + 1):
            return False
        if not highest:  # not asked (no CONDSTORE), or 0 (NOMODSEQ)
            return not state.get("highestmodseq")
        return isinstance(highest, int) and highest == state.get("highestmodseq")

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500,
                      headers_only: bool = False, changed_as_headers: bool = False) -> Changes:
        limit = max(1, limit)
        # Unchanged as listed: the folder is not even opened. The listing's STATUS serves
        # once: a later read of the folder in this session must look at it again.
        unchanged = self.unchanged(folder, cursor)
        status = self._listed_status.pop(folder.key, None)
        if unchanged:
            self._marks[folder.key] = (status[b"UIDNEXT"], status.get(b"HIGHESTMODSEQ") or None)
            return Changes(messages=[], cursor=cursor, more=False)
        with self._errors(f"reading {folder.name}"):
            info = self._open(folder, readonly=True)
            uidvalidity = info.get(b"UIDVALIDITY")
            uidnext = info.get(b"UIDNEXT")
            # Only a server that offers CONDSTORE is asked for mod-sequences (Dovecot reports
            # HIGHESTMODSEQ on SELECT whatever it offers): a cursor holds one only then.
            highest = info.get(b"HIGHESTMODSEQ") if self._condstore() else None
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
            if headers_only or changed_as_headers:  # (header sections, in one request)
                messages = self._fetch_headers(changed + batch) if headers_only else \
                    self._fetch_headers(changed) + self._fetch_full(batch)
            else:
                messages = self._fetch_full(changed + batch)
            last = batch[-1] if batch else last_uid
            if not more and uidnext is not None:
                # Every UID below UIDNEXT was searched (SEARCH came after EXAMINE) and none is
                # left: one expunged before it was read no longer looks like news.
                last = max(last, uidnext - 1)
            next_cursor = pack_cursor({"uidvalidity": uidvalidity, "last_uid": last,
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
            raise imaplib.IMAP4.error(f"FETCH CHANGEDSINCE failed: {text(data[0]) if data else typ}")
        _, fetched = imap._untagged_response(typ, data, "FETCH")
        vanished = imap.untagged_responses.pop("VANISHED", [])
        removed = [str(uid) for line in vanished
                   for uid in uid_set(text(line).replace("(EARLIER)", "").strip(), last_uid)]
        parsed = parse_fetch_response(fetched, False, True)
        rows = []
        for uid, item in parsed.items():
            modseq = item.get(b"MODSEQ")
            modseq = modseq[0] if isinstance(modseq, tuple) else modseq
            flags = item.get(b"FLAGS")
            if uid <= last_uid and flags_newsworthy(flags) and not only_ours(flags, tagged.get(uid)):
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
            found = uid_fetch(self.client._imap, uids[start:start + step], items)
            for uid in uids[start:start + step]:
                item = found.get(uid)
                if item is None or item.raw is None:
                    continue
                out.append(FetchedMessage(ref=str(uid), raw=item.raw,
                                          keywords=categories(item.flags),
                                          arrived_on=item.arrived_on, complete=not section,
                                          size=item.size))
        return out

    def _fetch_full(self, uids: list[int]) -> list[FetchedMessage]:
        return self._fetch(uids, "")

    def _fetch_headers(self, uids: list[int]) -> list[FetchedMessage]:
        return self._fetch(uids, "HEADER", size=True)

    def fetch_messages(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        """The whole of these messages of ``folder``; a message expunged meanwhile (or a ref
        that is no UID) is absent."""
        with self._errors(f"reading messages in {folder.name}"):
            if self._selected is None or self._selected[0] != self._name_of(folder):
                self._open(folder, readonly=True)  # (read-only or not, BODY.PEEK reads)
            uids = sorted({int(r) for r in refs if r.isdigit()})  # else no UID: not here
            return {m.ref: m.raw for m in self._fetch(uids, "")}

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
            permanent = {text(f) for f in info.get(b"PERMANENTFLAGS", ())}
            if permanent and "\\*" not in permanent and flag not in permanent:
                raise ConnectorError("keywords_unsupported", f"{self.where} does not keep "
                                     f"keywords in {folder.name}.", severity="message")
            # With CONDSTORE the server answers even a .SILENT STORE with each message's new
            # MODSEQ (RFC 7162, section 3), which ``past_own_writes`` uses.
            data = self.client._command_and_check(
                "store", join_message_ids(uids), b"+FLAGS.SILENT", seq_to_parenstr([flag]),
                uid=True)
            self._stored.setdefault(folder.key, set()).update(_own_modseqs(data, uids))
            tagged = self._tagged.setdefault(folder.key, {})
            for uid in uids:
                tagged[uid] = flag

    def past_own_writes(self, folder: Folder, cursor: str | None) -> str | None:
        """The cursor's HIGHESTMODSEQ moved to the highest this session's STOREs in the
        folder were given, when those fill every mod-sequence from the cursor's up to it.
        A mailbox's mod-sequences only grow and every STORE, from any session, gets one of
        its own (RFC 7162, section 3), so no other change (a flag another client set, a delivery,
        an expunge) falls in between, and any later one is above it. A server that numbers
        sparsely (or did not say) keeps the cursor: the next visit reads the folder's
        changes, as before."""
        state = unpack_cursor(cursor)
        since = state.get("highestmodseq") if isinstance(state, dict) else None
        if not isinstance(since, int):
            return cursor
        own = {m for m in self._stored.get(folder.key, ()) if m > since}
        if not own or own != set(range(since + 1, max(own) + 1)):
            return cursor
        return pack_cursor({**state, "highestmodseq": max(own)})

    def delete(self, folder: Folder, refs: list[str]) -> None:
        """Flag messages \\Deleted and expunge them (only them, with UIDPLUS)."""
        if not refs:
            return
        uids = sorted({int(ref) for ref in refs})
        with self._errors(f"deleting messages in {folder.name}"):
            self._open(folder, readonly=False)
            self.client.delete_messages(uids, silent=True)
            if b"UIDPLUS" in self.capabilities():
                self.client.uid_expunge(uids)
            else:
                self.client.expunge()

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


def _own_modseqs(data: list, uids: list[int]) -> set[int]:
    """The MODSEQ of each of a UID STORE's own answers (one FETCH response naming the UID
    of one of ``uids``), each response read alone: an unsolicited one (another client's
    change, reported by sequence number) is never merged into ours. One that cannot be
    read is left out (the cursor then stays, ``past_own_writes``)."""
    found, wanted = set(), set(uids)
    for line in data:
        try:
            parsed = parse_fetch_response([line], uid_is_key=False)
        except (ProtocolError, ValueError):  # not ours to count
            continue
        for items in parsed.values():
            modseq = items.get(b"MODSEQ")
            if items.get(b"UID") in wanted and isinstance(modseq, tuple) and modseq \
                    and isinstance(modseq[0], int):
                found.add(modseq[0])
    return found
