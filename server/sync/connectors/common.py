"""Small pieces the protocol connectors share: the session lifecycle (``Session``,
``ServerSession``), TLS contexts from an account's settings, compact cursor encoding, the
mapping of network failures to ``ConnectorError`` and the human wording of "which server"
in error messages.

Account settings read here (from the server profile's ``settings``):

``ca_file``     a PEM file of certificate authorities to trust (a private CA, a test peer)
``tls_verify``  False turns certificate checks off (only for a server the admin trusts on
                a private network; the profile page warns about it)

Categories and keywords: IMAP keywords (also Dovecot's Maildir keywords) are atoms without
spaces, so a category is written with "_" for its spaces and read back with spaces.
"""
from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, ClassVar

from server.sync.connectors.base import Account, ConnectorError, Needs

# Cursors longer than this (in JSON) are stored deflated and base64-encoded.
_PACK_OVER = 2048
_PACKED = "z:"
_ATOM_SPECIALS = re.compile(r'[\s(){%*"\\\]\x00-\x1f\x7f]+')

# Keywords mail clients keep for their own bookkeeping: a change of these alone is no news.
CLIENT_STATE_KEYWORDS = frozenset({
    "$forwarded", "$mdnsent", "$junk", "$notjunk", "$phishing", "$submitpending",
    "$submitted", "$answered", "junk", "nonjunk", "notjunk", "$hasattachment",
    "$hasnoattachment", "$important",
})


def tls_context(account: Account) -> ssl.SSLContext:
    """A client TLS context: the system's trust store (plus ``ca_file``), hostnames checked."""
    ca_file = account.settings.get("ca_file")
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    if account.settings.get("tls_verify") is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def pack_cursor(data: dict) -> str:
    """JSON, deflated when long (a POP3 UIDL set or a Maildir listing can be large)."""
    text = json.dumps(data, separators=(",", ":"), sort_keys=True)
    if len(text) <= _PACK_OVER:
        return text
    return _PACKED + base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")


def unpack_cursor(cursor: str | None) -> dict | None:
    """The dict a ``pack_cursor`` made, or None for no cursor or one that cannot be read
    (the caller then starts over and reports ``reset``)."""
    if not cursor:
        return None
    try:
        if cursor.startswith(_PACKED):
            cursor = zlib.decompress(base64.b64decode(cursor[len(_PACKED):])).decode()
        data = json.loads(cursor)
    except (ValueError, zlib.error):
        return None
    return data if isinstance(data, dict) else None


def server_name(account: Account) -> str:
    return f"{account.host}:{account.port}" if account.port else str(account.host)


def network_error(exc: BaseException, account: Account, what: str) -> ConnectorError:
    """A transient, mailbox-level error for a refused, reset, timed out or broken connection."""
    where = server_name(account)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConnectorError(
            "tls_failed", f"The certificate of {where} could not be verified "
            f"({exc.verify_message or exc.reason}).", severity="mailbox")
    if isinstance(exc, ssl.SSLError):
        return ConnectorError("tls_failed", f"The secure connection to {where} failed "
                              f"({exc.reason or exc}).", severity="mailbox")
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return ConnectorError("timeout", f"{where} did not answer in time while {what}.",
                              severity="mailbox", retry_after=60)
    if isinstance(exc, ConnectionRefusedError):
        return ConnectorError("connection_refused", f"{where} refused the connection.",
                              severity="mailbox", retry_after=60)
    if isinstance(exc, socket.gaierror):
        return ConnectorError("host_not_found", f"The server name {account.host} could not be "
                              "resolved.", severity="mailbox", retry_after=300)
    detail = str(exc) or type(exc).__name__
    return ConnectorError("connection_lost", f"The connection to {where} was lost while {what} "
                          f"({detail}).", severity="mailbox", retry_after=60)


class Session(ABC):
    """The lifecycle every connector with a connection shares: ``with`` connects and closes;
    a connect that fails half-way leaves no connection open; ``close`` never raises (it
    runs while another error may be on its way out); ``client`` is the live connection or
    a ``not_connected`` error.

    A subclass sets ``self.where`` (the server, for messages) and implements ``_connect``
    (sets ``self._client`` as soon as there is something to close) and ``_abort`` (drop a
    connection without a goodbye); ``_quit`` is the polite goodbye (default: ``_abort``).
    """

    where: str

    def __init__(self, account: Account):
        self.account = account
        self._client: Any = None

    def __enter__(self):
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def connect(self) -> None:
        try:
            self._connect()
        except BaseException:
            self._drop()  # no half-open session left behind (a refused sign-in, say)
            raise

    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _abort(self, client) -> None: ...

    def _quit(self, client) -> None:
        self._abort(client)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            self._quit(client)
        except Exception:  # the connection may be gone already
            _abandon(self._abort, client)

    def _drop(self) -> None:
        """Forget a broken connection, closing what is left of it."""
        client, self._client = self._client, None
        if client is not None:
            _abandon(self._abort, client)

    @property
    def client(self):
        if self._client is None:
            raise ConnectorError("not_connected", f"Not connected to {self.where}.",
                                 severity="mailbox", retry_after=60)
        return self._client


def _abandon(abort, client) -> None:
    try:
        abort(client)
    except Exception:  # nothing more to do for a connection that is gone
        pass


class ServerSession(Session):
    """A ``Session`` with a server at host:port: the default port by security (``tls``,
    ``starttls``, ``none``; ``DEFAULT_SECURITY`` when the account names none) from the
    class's ``needs``, and the errors the mail protocols word alike."""

    needs: ClassVar[Needs]
    DEFAULT_SECURITY = "tls"

    def __init__(self, account: Account):
        security = account.security or self.DEFAULT_SECURITY
        if security not in self.needs.ports:
            raise ValueError(f"unknown security {account.security!r}")
        super().__init__(account)
        self.security = security
        self.port = account.port or self.needs.ports[security]
        self.where = f"{account.host}:{self.port}"

    @property
    def username(self) -> str:
        return self.account.username or self.account.address

    def _lost(self, exc: BaseException, what: str) -> ConnectorError:
        """The connection broke: dropped, and the ``network_error`` that says so."""
        self._drop()
        return network_error(exc, replace(self.account, port=self.port), what)

    def _no_starttls(self, command: str = "STARTTLS") -> ConnectorError:
        return ConnectorError("starttls_unsupported", f"{self.where} does not offer {command}: "
                              "choose TLS or another port in the server profile.",
                              severity="mailbox")

    def _refused(self, reply: str) -> ConnectorError:
        """The server refused the sign-in (``reply``: its words)."""
        credential = "access token" if self.account.oauth_token else "password"
        return ConnectorError("auth_failed", f"{self.where} refused the {credential} for "
                              f"{self.username} ({reply}).", severity="auth")


def category_to_keyword(category: str) -> str:
    """``"Tracked to Regarding"`` -> ``"Tracked_to_Regarding"``: a valid IMAP keyword."""
    keyword = _ATOM_SPECIALS.sub("_", category.strip())
    if not keyword:
        raise ValueError("an empty category cannot be an IMAP keyword")
    return keyword


def keyword_to_category(keyword: str) -> str:
    """The category a keyword stands for (``Tracked_to_Regarding`` -> "Tracked to Regarding");
    ``$``-keywords (``$Forwarded``, ``$label1``) are returned as they are."""
    return keyword if keyword.startswith("$") else keyword.replace("_", " ")


def newsworthy(keywords: Iterable[str]) -> bool:
    """Whether flags include a keyword a person set (a category), not only system flags
    (``\\Seen``) or a mail client's own bookkeeping (``$Forwarded``, ``$Junk``)."""
    return any(not k.startswith("\\") and k.lower() not in CLIENT_STATE_KEYWORDS for k in keywords)
