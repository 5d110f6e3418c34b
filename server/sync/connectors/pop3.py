"""POP3 connector (poplib): one folder, the Inbox; new messages found by their UIDL.

The cursor is the set of UIDLs already handed to the engine (JSON, deflated when long),
pruned to those still on the server, so it stays as small as the maildrop. Messages are
read in server order.

Reading leaves mail unread: many servers (Dovecot, Courier, Exchange) set the ``\\Seen``
flag of a message sent with RETR, so a user who also reads the mailbox with IMAP or in
webmail finds it read. ``TOP n <lines>`` (RFC 1939) with at least as many lines as the
message has octets (LIST) sends the whole message and marks nothing, so while the server
offers TOP it reads every message, header sections and whole messages alike; RETR is
used only on a server without TOP.

Header first: with ``headers_only`` the batch is read with ``TOP n 0`` (the header section
and the blank line; the whole message's size from LIST) and ``fetch_messages`` reads the
messages the engine tracks whole, by their number in this session's UIDL listing (a
POP3 session sees the maildrop as it was at login). ``headers_first`` is set after CAPA on
each connection: a server that does not list TOP (TOP is optional in RFC 1939), or that
answers TOP with -ERR for a message RETR can read, gets whole messages for the rest of the
session. A message another session deleted meanwhile (Dovecot: "-ERR Message 2 expunged.")
is left out of a batch (and of the cursor) and absent from ``fetch_messages``' answer.

There is no ``prefetch`` (reading the next batch in a thread): the read ahead would be
asked with the cursor of a batch the engine has not stored yet, and with
``delete_after_fetch`` that cursor's messages would be deleted at QUIT even if the engine
never stored them.

Mail is left on the server unless the profile's setting ``delete_after_fetch`` is true.
Even then a message is deleted only at the next sync, once it is in the cursor the engine
stored with the activity: a crash between fetching and storing never loses mail.

A message the server lists but refuses to send (-ERR to TOP and RETR) stays out of the
cursor and is tried again on the next sync: another session may have deleted it meanwhile
(then it is no longer listed). One still refused on ``REFUSALS`` syncs running is named in
``Changes.unreadable`` (its count is kept in the cursor), so the engine alerts instead of
retrying it silently for ever.

An idle visit (``engine.idle``) signs in and lists the Inbox's UIDLs: a mailbox whose
listing is exactly its cursor's is visited in a batch with others, its Inbox read by
nobody (``unchanged``).

POP3 has no keywords and no push: the connector declares no ``Keywords``, and
``wait_for_changes`` polls the maildrop on a fresh connection every
``poll_seconds`` (setting, default 60), since a POP3 session sees its maildrop as it was
at login.
"""
from __future__ import annotations

import base64
import logging
import poplib
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server.sync.connectors.base import (Changes, Connector, ConnectorError, Deletes,
                                         FetchedMessage, Folder, HeadersFirst, Needs, Probes)
from server.sync.connectors.common import ServerSession, pack_cursor, tls_context, unpack_cursor

DEFAULT_PORTS = {"tls": 995, "starttls": 110, "none": 110}
INBOX = Folder(key="pop3:INBOX", name="INBOX", role="inbox")
# RFC 3206 codes of an -ERR that is the server's trouble, not the message's.
_SERVER_TROUBLE = re.compile(rb"\[(SYS/|IN-USE)", re.IGNORECASE)
# Syncs running on which a listed message was refused before it is reported unreadable.
REFUSALS = 3

log = logging.getLogger(__name__)


def _reply(exc: poplib.error_proto) -> str:
    """The server's words in a POP3 error reply."""
    return exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
        exc.args[0], bytes) else str(exc)


class _LongLines:
    """poplib reads lines of at most 2048 bytes and fails a RETR of mail with a longer one:
    RFC 5322 allows 998, yet such mail exists (a base64 attachment on one line), and one
    such message would fail every sync of its mailbox. This reads lines of up to
    ``MAX_LINE`` bytes (still a bound on what a server can make the client buffer)."""

    MAX_LINE = 64 * 1024 * 1024

    def _getline(self) -> tuple[bytes, int]:
        line = self.file.readline(self.MAX_LINE + 1)
        if len(line) > self.MAX_LINE:
            raise poplib.error_proto("line too long")
        if not line:
            raise poplib.error_proto("-ERR EOF")
        end = 2 if line.endswith(b"\r\n") else 1 if line.endswith(b"\n") else 0
        return line[:len(line) - end], len(line)


class _Pop3(_LongLines, poplib.POP3):
    pass


class _Pop3Ssl(_LongLines, poplib.POP3_SSL):
    pass


def _about_the_message(exc: poplib.error_proto) -> bool:
    """Whether an error is the server's -ERR about one message (gone, or TOP refused), not a
    lost connection (poplib's "-ERR EOF" is a str, a reply is bytes) or the server's own
    failure (RFC 3206 ``[SYS/TEMP]``, ``[SYS/PERM]``, ``[IN-USE]``)."""
    reply = exc.args[0] if exc.args else None
    return (isinstance(reply, bytes) and reply.startswith(b"-ERR")
            and not _SERVER_TROUBLE.search(reply))


def _joined(lines: list[bytes]) -> bytes:
    """A multi-line answer's lines (dot-unstuffed by poplib) as the message's bytes."""
    return b"\r\n".join(lines) + b"\r\n"


def _header_section(lines: list[bytes]) -> bytes:
    """The header lines of a ``TOP n 0`` answer and the blank line after them (a message
    without a body has none); a server that sends more than asked is cut there."""
    if b"" in lines:
        lines = lines[:lines.index(b"") + 1]
    return _joined(lines)


class Pop3Connector(ServerSession, Connector, HeadersFirst, Deletes, Probes):
    """One POP3 session for one mailbox: ``with Pop3Connector(account) as pop: ...``."""

    needs = Needs(host=True, ports=DEFAULT_PORTS)
    # fetch_changes(headers_only=True) with TOP 0 and whole messages with TOP: set on each
    # connection from CAPA, turned off for the session when the server refuses TOP.
    headers_first = True
    _client: poplib.POP3 | None

    def __init__(self, account):
        super().__init__(account)
        self._numbers: dict[str, int] | None = None  # UIDL -> number in this session
        self._top_refused = False  # a server that listed TOP refused it all the same
        self._refused_uidls: set[str] = set()  # UIDLs refused in this session: not asked again
        self._listed: list[tuple[int, str]] | None = None  # ``list_folders``' UIDL listing

    # -- session --------------------------------------------------------------------------

    def _connect(self) -> None:
        account = self.account
        with self._errors("connecting"):
            if self.security == "tls":
                client = _Pop3Ssl(account.host, self.port, timeout=account.timeout,
                                  context=tls_context(account))
            else:
                client = _Pop3(account.host, self.port, timeout=account.timeout)
            self._client = client
            if self.security == "starttls":
                try:
                    client.stls(tls_context(account))
                except poplib.error_proto:
                    raise self._no_starttls("STLS") from None
            self._login(client)
            self._numbers = self._listed = None
            self._refused_uidls = set()
            self.headers_first = not self._top_refused and self._offers_top(client)

    @staticmethod
    def _offers_top(client: poplib.POP3) -> bool:
        """CAPA (RFC 2449) lists TOP. A server without CAPA (plain RFC 1939) is tried: a TOP
        it refuses turns header first off (``_read``)."""
        try:
            return "TOP" in client.capa()
        except (poplib.error_proto, ValueError, IndexError):
            return True

    def _login(self, client: poplib.POP3) -> None:
        account = self.account
        try:
            if account.oauth_token:
                auth = f"user={self.username}\x01auth=Bearer {account.oauth_token}\x01\x01"
                client._putcmd("AUTH XOAUTH2")
                client._getresp()  # "+" continuation
                client._putcmd(base64.b64encode(auth.encode()).decode("ascii"))
                client._getresp()
            else:
                client.user(self.username)
                client.pass_(account.password or "")
        except poplib.error_proto as exc:
            raise self._refused(_reply(exc)) from None

    def _quit(self, client: poplib.POP3) -> None:
        """QUIT: the server removes messages marked for deletion only now."""
        client.quit()

    def _abort(self, client: poplib.POP3) -> None:
        client.close()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except (OSError, EOFError) as exc:
            raise self._lost(exc, what) from None
        except poplib.error_proto as exc:
            text = _reply(exc)
            if "EOF" in text or not text:
                self._drop()
                raise ConnectorError("connection_lost", f"The connection to {self.where} was "
                                     f"lost while {what}.", severity="mailbox",
                                     retry_after=60) from None
            raise ConnectorError("pop3_error", f"{self.where} answered an error while {what}: "
                                 f"{text}", severity="mailbox") from None

    # -- reading ------------------------------------------------------------------------------

    def list_folders(self) -> list[Folder]:
        """The Inbox alone, its UIDL listing taken with it: ``unchanged`` reads it, and the
        session's first ``fetch_changes`` uses it rather than ask again (the session sees
        its maildrop as it was at login)."""
        with self._errors("listing the Inbox"):
            self._listed = self._listing()
        return [INBOX]

    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        """The Inbox as listed holds exactly the messages the cursor has seen: nothing new,
        nothing gone, none the server refused to send (tried again at each run) and none
        waiting to be deleted (``delete_after_fetch``). Sends nothing."""
        state = unpack_cursor(cursor)
        if folder.key != INBOX.key or self._listed is None or not isinstance(state, dict) \
                or not isinstance(state.get("seen"), list) or state.get("refused"):
            return False
        listed = {uidl for _, uidl in self._listed}
        if listed and self.account.settings.get("delete_after_fetch"):
            return False
        return listed == set(state["seen"])

    def _listing(self) -> list[tuple[int, str]]:
        """(message number, UIDL) in server order; remembered for ``fetch_messages``."""
        _, lines, _ = self.client.uidl()
        out = []
        for line in lines:
            number, _, uidl = line.decode("utf-8", "replace").partition(" ")
            out.append((int(number), uidl.strip()))
        self._numbers = {uidl: number for number, uidl in out}
        return out

    def _sizes(self) -> dict[int, int]:
        """Message number -> size in octets (LIST)."""
        _, lines, _ = self.client.list()
        out = {}
        for line in lines:
            number, size = line.split()[:2]
            out[int(number)] = int(size)
        return out

    def _answer(self, command, *args) -> list[bytes] | None:
        """The lines of a RETR or TOP answer; None when the server answers -ERR for that
        message (deleted by another session since this one began, or TOP refused)."""
        try:
            return command(*args)[1]
        except poplib.error_proto as exc:
            if _about_the_message(exc):
                return None
            raise

    def _whole(self, number: int, sizes: dict[int, int]) -> list[bytes] | None:
        """A whole message's lines, None when it is gone. ``TOP n <its size>`` while the
        server does TOP (it sends every line and leaves the message unread), else RETR. A
        TOP answered -ERR for a message RETR then reads means the server does not do TOP
        after all: RETR (and whole messages) for the rest of the session."""
        if self.headers_first:
            lines = self._answer(self.client.top, number, max(1, sizes.get(number, 0)))
            if lines is not None:
                return lines
        lines = self._answer(self.client.retr, number)
        if lines is not None and self.headers_first:
            log.info("%s refused TOP: RETR for the rest of the session", self.where)
            self.headers_first, self._top_refused = False, True
        return lines

    def _read(self, batch: list[tuple[int, str]], headers_only: bool,
              refused: list[str]) -> list[FetchedMessage]:
        """The batch's messages in order: header sections with ``headers_only`` (while the
        server reads TOP), else whole; one the server refuses (deleted meanwhile, or one
        it cannot send) is left out and its UIDL added to ``refused``."""
        sizes = self._sizes() if batch and self.headers_first else {}
        out = []
        for number, uidl in batch:
            if headers_only and self.headers_first:
                lines = self._answer(self.client.top, number, 0)
                if lines is not None:
                    out.append(FetchedMessage(ref=uidl, raw=_header_section(lines),
                                              complete=False, size=sizes.get(number)))
                    continue
            lines = self._whole(number, sizes)
            if lines is None:  # neither TOP nor RETR reads it
                refused.append(uidl)
            else:
                out.append(FetchedMessage(ref=uidl, raw=_joined(lines)))
        return out

    def _check(self, folder: Folder) -> None:
        if folder.key != INBOX.key:
            raise ConnectorError("folder_not_found", f"POP3 has only the Inbox, not "
                                 f"{folder.name}.", severity="folder")

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500,
                      headers_only: bool = False, changed_as_headers: bool = False) -> Changes:
        """New mail only: POP3 has no flags, so nothing comes back changed."""
        self._check(folder)
        limit = max(1, limit)
        state = unpack_cursor(cursor)
        reset = cursor is not None and (state is None or not isinstance(state.get("seen"), list))
        seen = set(state["seen"]) if state and not reset else set()
        with self._errors("reading the Inbox"):
            listing = self._listed if self._listed is not None else self._listing()
            self._listed = None  # once: a later call asks again (DELE changes the listing)
            on_server = {uidl for _, uidl in listing}
            if self.account.settings.get("delete_after_fetch") and seen:
                # Only what the stored cursor covers: the engine has kept it already. The
                # server removes them at QUIT; they stay in the cursor until they are gone,
                # so a QUIT that never came cannot make them look new.
                for number, uidl in listing:
                    if uidl in seen:
                        self.client.dele(number)
            new = [(n, u) for n, u in listing if u not in seen and u not in self._refused_uidls]
            batch = new[:limit]
            refused_now: list[str] = []
            messages = self._read(batch, headers_only, refused_now)
        # A refused message stays out of the cursor (the next sync tries it again); the
        # syncs running that refused it are counted while the server lists it.
        kept = (seen & on_server) | {m.ref for m in messages}
        counts = state.get("refused") if state and not reset else None
        refused = {uidl: n for uidl, n in (counts if isinstance(counts, dict) else {}).items()
                   if uidl in on_server and uidl not in kept and isinstance(n, int)}
        for uidl in refused_now:  # once a session: not asked again in it (``new``)
            refused[uidl] = refused.get(uidl, 0) + 1
        self._refused_uidls.update(refused_now)
        packed = {"seen": sorted(kept), **({"refused": refused} if refused else {})}
        return Changes(messages=messages, cursor=pack_cursor(packed),
                       more=len(new) > len(batch), removed=sorted(seen - on_server), reset=reset,
                       unreadable=sorted(u for u, n in refused.items() if n >= REFUSALS))

    def fetch_messages(self, folder: Folder, refs: list[str]) -> dict[str, bytes]:
        """The whole of these messages (``_whole``), by their number in this session's UIDL
        listing; a message no longer listed, or deleted since by another session, is
        absent."""
        self._check(folder)
        out = {}
        with self._errors("reading messages"):
            if self._numbers is None:
                self._listing()
            sizes = self._sizes() if refs and self.headers_first else {}
            for ref in dict.fromkeys(refs):
                number = self._numbers.get(ref)
                lines = None if number is None else self._whole(number, sizes)
                if lines is not None:
                    out[ref] = _joined(lines)
        return out

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        raw = self.fetch_messages(folder, [ref]).get(ref)
        if raw is None:
            raise ConnectorError("message_not_found", f"Message {ref} is no longer on "
                                 f"{self.where}.", severity="message")
        return raw

    def delete(self, folder: Folder, refs: list[str]) -> None:
        """DELE each message (by its UIDL); the server removes them at QUIT."""
        self._check(folder)
        with self._errors("deleting messages"):
            numbers = self._numbers if self._numbers is not None else dict(
                (uidl, n) for n, uidl in self._listing())
            for ref in dict.fromkeys(refs):
                if ref in numbers:
                    self.client.dele(numbers.pop(ref))

    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        if not any(f.key == INBOX.key for f in folders):
            return set()
        interval = float(self.account.settings.get("poll_seconds", 60))
        with self._errors("waiting for new mail"):
            before = {uidl for _, uidl in self._listing()}
        deadline = time.monotonic() + max(0.0, timeout)
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(interval, left))
            self.close()  # a POP3 session sees the maildrop as it was at login
            self.connect()
            with self._errors("waiting for new mail"):
                if {uidl for _, uidl in self._listing()} - before:
                    return {INBOX.key}
        return set()

