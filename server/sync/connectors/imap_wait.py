"""Waiting for new IMAP mail (``ImapConnector.wait_for_changes``): NOTIFY (RFC 5465) watches
every folder on one connection, and the folder names (a watched folder renamed or deleted
ends the wait with ``FOLDERS_CHANGED``); without it IDLE (RFC 2177) watches the Inbox and the
other watched folders are asked their STATUS every ``IDLE_STATUS_SECONDS`` (a folder gone
from under its name is ``FOLDERS_CHANGED`` too); without IDLE, STATUS is polled. A folder
that changed after this session last read it ends the wait at once, so mail that came
between a read and a wait is never missed.

Why STATUS beside one IDLE rather than one IDLE connection per folder: a server allows a
user a few connections (Dovecot 10 per address by default) that the syncs and the user's
own mail clients need; a STATUS round trip costs the server a few hundred microseconds
(see bench/latency.py's steady mode), and half a second between looks keeps a copy into a
tracked folder within the push target of 1 s p95 (a second between looks missed it by 0.07 s:
the look's wait is added to the sync's own half second)."""
from __future__ import annotations

import imaplib
import select
import socket
import ssl
import time

from imapclient import IMAPClient
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response

from server.sync.connectors.base import FOLDERS_CHANGED, Account, ConnectorError, Folder
from server.sync.connectors.imap_fetch import text

MAX_IDLE_SECONDS = 25 * 60  # RFC 2177: re-issue IDLE at least every 29 minutes
LINE_SECONDS = 10.0  # how long the rest of a pushed line that has begun may take to arrive
IDLE_STATUS_SECONDS = 0.5  # IDLE without NOTIFY: how often the other watched folders are asked


class Waiting:
    """The waiting part of ``ImapConnector``, which it is mixed into: it uses the session's
    connection (``client``), error translation (``_errors``), folder names and keys, the
    marks of what was last read (``_marks``), and SELECT/UNSELECT."""

    account: Account
    _client: IMAPClient | None
    _keys: dict[str, str]
    _marks: dict[str, tuple[int | None, int | None]]

    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Block until one of ``folders`` changes or ``timeout`` seconds pass; returns the keys
        of the changed folders. NOTIFY (RFC 5465) watches every folder on one connection;
        without it IDLE watches the Inbox (or the first folder) and STATUS the others;
        without IDLE, STATUS polling."""
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
                return self._wait_idle(inbox, watched, timeout)
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
        if self._names_gone(names, watched):
            return {FOLDERS_CHANGED}
        imap.untagged_responses.pop("STATUS", None)
        every = b"MessageNew MessageExpunge FlagChange"
        for events, naming in ((every, b" (personal (MailboxName))"), (every, b""),
                               (b"MessageNew MessageExpunge", b"")):
            try:
                # STATUS: the server reports every folder's state first, which shows mail
                # that came after the folder was last read and before this wait began.
                # MailboxName: a folder renamed, created or deleted is reported with LIST.
                typ, _ = client._raw_command(
                    b"NOTIFY", [b"SET STATUS (mailboxes (" + names + b") (" + events + b"))"
                                + naming], uid=False)
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
            name = _name(parsed[0])
            values = parsed[-1]
            status = {values[i].upper(): values[i + 1] for i in range(0, len(values) - 1, 2)}
            if name in watched and self._moved_since_read(watched[name], status):
                already.add(watched[name])
        if already:
            client._raw_command(b"NOTIFY", [b"NONE"], uid=False)
            return already

        def changed(response) -> str | None:
            if len(response) >= 2 and response[0] == b"STATUS":
                return watched.get(_name(response[1]))
            if len(response) >= 4 and response[0] == b"LIST":
                # A watched name gone or renamed (RFC 5465 5.4: \NonExistent, or OLDNAME
                # in the extended data); a new folder elsewhere changes nothing watched.
                flags = {f.upper() for f in response[1] or ()}
                gone = b"\\NONEXISTENT" in flags or len(response) > 4
                if gone or _name(response[3]) in watched:
                    return FOLDERS_CHANGED
            return None

        try:
            return self._idle_until(timeout, changed)
        finally:
            if self._client is not None:
                client._raw_command(b"NOTIFY", [b"NONE"], uid=False)

    def _names_gone(self, names: bytes, watched: dict[str, str]) -> bool:
        """Whether a watched name no longer exists (renamed or deleted between two waits,
        when no NOTIFY was set to say so): one LIST of the watched names (RFC 5258), where
        the server offers it."""
        if b"LIST-EXTENDED" not in self.capabilities():
            return False
        imap = self.client._imap
        imap.untagged_responses.pop("LIST", None)
        typ, data = imap._simple_command("LIST", '""', b"(" + names + b")")
        if typ != "OK":
            return False
        _, lines = imap._untagged_response(typ, data, "LIST")
        found = {name for _, _, name in self.client._proc_folder_list(lines)}
        return any(name not in found for name in watched)

    def _wait_idle(self, name: str, watched: dict[str, str], timeout: float) -> set[str]:
        """IDLE on ``name``; the other watched folders' STATUS between IDLEs."""
        key = watched[name]
        others = {n: k for n, k in watched.items() if n != name}
        if self._moved_since_read(key, self._select(name, readonly=True)):
            return {key}

        def changed(response) -> str | None:
            if len(response) >= 2 and response[1] in (b"EXISTS", b"EXPUNGE", b"FETCH", b"VANISHED"):
                return key
            if response and response[0] == b"VANISHED":
                return key
            return None

        step = float(self.account.settings.get("idle_status_seconds", IDLE_STATUS_SECONDS))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            found = self._idle_until(min(left, step) if others else left, changed)
            if not found and others:
                found = self._status_changed(others)
            if found or left <= step or not others:
                return found

    def _status_changed(self, watched: dict[str, str]) -> set[str]:
        """The watched folders that changed since they were last read, by STATUS; a folder
        no longer under its name (renamed, moved, deleted) is ``FOLDERS_CHANGED``."""
        items = ["UIDNEXT"] + (["HIGHESTMODSEQ"] if b"CONDSTORE" in self.capabilities() else [])
        found: set[str] = set()
        for name, key in watched.items():
            try:
                status = self.client.folder_status(name, items)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                return {FOLDERS_CHANGED}
            if self._moved_since_read(key, status):
                found.add(key)
        return found

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
        except that a closed connection raises instead of looking like silence).

        Lines are read whole: a line the network delivers in pieces waits for its end (up
        to ``LINE_SECONDS``), and reading stops when nothing more is already here, buffered
        or on the socket; the server's IDLE keepalive ("* OK Still here") is a line like
        any other. Readable with nothing to read is a closed connection."""
        client = self.client
        sock = client.socket()
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
        if not poller.poll(timeout * 1000):
            return []
        responses: list[tuple] = []
        sock.settimeout(LINE_SECONDS)
        try:
            while True:
                try:
                    line = client._imap._get_line()
                except (socket.timeout, TimeoutError):
                    raise imaplib.IMAP4.abort(
                        f"a line from the server did not end within {LINE_SECONDS:.0f} s") from None
                if line.startswith(b"* "):
                    body = line[2:]
                    if body.startswith(b"BYE "):
                        raise imaplib.IMAP4.abort(f"server said {text(body)}")
                    if not body.startswith((b"OK ", b"NO ")):
                        responses.append(parse_response([body]))
                if not self._more_here(sock):
                    break
        finally:
            client._set_read_timeout()
        return responses

    def _more_here(self, sock: socket.socket) -> bool:
        """Whether another line has already arrived: in the reader's buffer (or TLS's),
        or on the socket; never waits."""
        sock.setblocking(False)
        try:
            return bool(self.client._imap.file.peek(1))
        except (BlockingIOError, ssl.SSLWantReadError, InterruptedError):
            return False
        finally:
            sock.settimeout(LINE_SECONDS)

    def _wait_poll(self, watched: dict[str, str], timeout: float) -> set[str]:
        items = ["UIDNEXT", "MESSAGES"] + (["HIGHESTMODSEQ"] if b"CONDSTORE" in self.capabilities() else [])
        interval = float(self.account.settings.get("poll_seconds", 30))
        try:
            before = {name: self.client.folder_status(name, items) for name in watched}
            deadline = time.monotonic() + timeout
            while (left := deadline - time.monotonic()) > 0:
                time.sleep(min(interval, left))
                changed = {watched[name] for name in watched
                           if self.client.folder_status(name, items) != before[name]}
                if changed:
                    return changed
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error:  # a watched folder is no longer under its name
            return {FOLDERS_CHANGED}
        return set()


def _name(value) -> str:
    """A folder name from a parsed response (modified UTF-7; a number-like name is an int)."""
    return str(value) if isinstance(value, int) else decode_utf7(value)
