"""POP3 connector (poplib): one folder, the Inbox; new messages found by their UIDL.

The cursor is the set of UIDLs already handed to the engine (JSON, deflated when long),
pruned to those still on the server, so it stays as small as the maildrop. Messages are
read with RETR in server order (TOP is not used: the engine needs the whole message).

Mail is left on the server unless the profile's setting ``delete_after_fetch`` is true.
Even then a message is deleted only at the next sync, once it is in the cursor the engine
stored with the activity: a crash between fetching and storing never loses mail.

POP3 has no keywords and no push: ``set_keyword`` does nothing (``supports_keywords`` is
False) and ``wait_for_changes`` polls the maildrop on a fresh connection every
``poll_seconds`` (setting, default 60), since a POP3 session sees its maildrop as it was
at login.
"""
from __future__ import annotations

import base64
import poplib
import time
from collections.abc import Iterator
from contextlib import contextmanager

from server.sync.connectors.base import Changes, ConnectorError, FetchedMessage, Folder
from server.sync.connectors.common import ServerSession, pack_cursor, tls_context, unpack_cursor

DEFAULT_PORTS = {"tls": 995, "starttls": 110, "none": 110}
INBOX = Folder(key="pop3:INBOX", name="INBOX", role="inbox")


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


class Pop3Connector(ServerSession):
    """One POP3 session for one mailbox: ``with Pop3Connector(account) as pop: ...``."""

    supports_keywords = False
    supports_append = False
    DEFAULT_PORTS = DEFAULT_PORTS
    _client: poplib.POP3 | None

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
        return [INBOX]

    def _listing(self) -> list[tuple[int, str]]:
        """(message number, UIDL) in server order."""
        _, lines, _ = self.client.uidl()
        out = []
        for line in lines:
            number, _, uidl = line.decode("utf-8", "replace").partition(" ")
            out.append((int(number), uidl.strip()))
        return out

    def _retr(self, number: int) -> bytes:
        _, lines, _ = self.client.retr(number)
        return b"\r\n".join(lines) + b"\r\n"

    def _check(self, folder: Folder) -> None:
        if folder.key != INBOX.key:
            raise ConnectorError("folder_not_found", f"POP3 has only the Inbox, not "
                                 f"{folder.name}.", severity="folder")

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes:
        self._check(folder)
        limit = max(1, limit)
        state = unpack_cursor(cursor)
        reset = cursor is not None and (state is None or not isinstance(state.get("seen"), list))
        seen = set(state["seen"]) if state and not reset else set()
        with self._errors("reading the Inbox"):
            listing = self._listing()
            on_server = {uidl for _, uidl in listing}
            if self.account.settings.get("delete_after_fetch") and seen:
                # Only what the stored cursor covers: the engine has kept it already. The
                # server removes them at QUIT; they stay in the cursor until they are gone,
                # so a QUIT that never came cannot make them look new.
                for number, uidl in listing:
                    if uidl in seen:
                        self.client.dele(number)
            new = [(n, u) for n, u in listing if u not in seen]
            batch = new[:limit]
            messages = [FetchedMessage(ref=uidl, raw=self._retr(number)) for number, uidl in batch]
        kept = (seen & on_server) | {uidl for _, uidl in batch}
        return Changes(messages=messages, cursor=pack_cursor({"seen": sorted(kept)}),
                       more=len(new) > len(batch), removed=sorted(seen - on_server), reset=reset)

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        self._check(folder)
        with self._errors("reading a message"):
            number = next((n for n, uidl in self._listing() if uidl == ref), None)
            if number is None:
                raise ConnectorError("message_not_found", f"Message {ref} is no longer on "
                                     f"{self.where}.", severity="message")
            return self._retr(number)

    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None:
        """POP3 keeps no keywords: nothing to do."""

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


CONNECTOR = Pop3Connector
