"""Forwarding rules through ManageSieve (RFC 5804), for mail servers that run Sieve at
delivery (Dovecot with Pigeonhole, Cyrus, Stalwart): the CRM's rule is a Sieve script of
its own, ``regarding-forward``, that ``redirect :copy``-s each incoming email to the
forward mailbox and keeps it in the user's Inbox as before.

A ManageSieve server runs one script at a time. When the user already has an active
script of their own (a vacation reply, their filters), ours ``include``-s it after the
redirect, so it goes on working, and names it in its first lines; removing our rule makes
that script active again. The connection signs in like the profile's incoming server (the
mailbox's own login, or a service account acting for the mailbox through SASL PLAIN's
authorization identity), on port 4190 with STARTTLS unless the profile's ``settings``
say ``managesieve_port`` / the incoming security is "none".
"""
from __future__ import annotations

import re
import socket
import ssl
import warnings

from sievelib import managesieve

from server.sync.connectors.base import Account, ConnectorError, ForwardRules, Needs
from server.sync.connectors.common import ServerSession, network_error, tls_context

SCRIPT = "regarding-forward"
_PREVIOUS = re.compile(r'^# previous-active: "((?:[^"\\]|\\.)*)"$', re.MULTILINE)
_TARGET = re.compile(r'^redirect :copy "((?:[^"\\]|\\.)*)";$', re.MULTILINE)
_QUOTE = re.compile(r'(["\\])')


def _quoted(text: str) -> str:
    if any(ch in text for ch in "\r\n\0"):
        raise ValueError("no line breaks in a Sieve string")
    return '"' + _QUOTE.sub(r"\\\1", text) + '"'


def _unquoted(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def script_for(forward_to: str, previous: str | None) -> str:
    """Our script: a copy to ``forward_to``, then the user's own script, if any."""
    lines = ["# Regarding: a copy of every incoming email goes to the CRM's forward mailbox.",
             "# Managed by Regarding: it replaces or removes this script; edit yours instead."]
    needs = ['"copy"']
    if previous:
        lines.append(f"# previous-active: {_quoted(previous)}")
        needs.append('"include"')
    lines += [f"require [{', '.join(needs)}];", f"redirect :copy {_quoted(forward_to)};"]
    if previous:
        lines.append(f"include :personal {_quoted(previous)};")
    return "\r\n".join(lines) + "\r\n"


class _Client(managesieve.Client):
    """sievelib's client with our TLS context (a private CA, the profile's choices)."""

    def __init__(self, account: Account, port: int):
        super().__init__(account.host, port, srvhostname=account.host)
        self._context = tls_context(account)
        self.read_timeout = account.timeout

    def _Client__enable_ssl(self, **kwargs) -> None:  # sievelib's private TLS step
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.srvhostname)


class ManageSieveRules(ServerSession, ForwardRules):
    """``with ManageSieveRules(account) as rules: rules.deploy("crm@contoso.example")``."""

    needs = Needs(host=True, ports={"starttls": 4190, "tls": 4190, "none": 4190})
    DEFAULT_SECURITY = "starttls"

    def __init__(self, account: Account):
        port = account.settings.get("managesieve_port")
        security = "none" if account.security == "none" else "starttls"
        super().__init__(Account(**{**account.__dict__, "port": int(port) if port else None,
                                    "security": security}))

    def _connect(self) -> None:
        account = self.account
        try:  # sievelib connects without a time limit and words every failure alike
            socket.create_connection((account.host, self.port), account.timeout).close()
        except OSError as exc:
            raise self._lost(exc, "connecting") from None
        client = self._client = _Client(account, self.port)
        try:
            ok = self._sign_in(client)
        except managesieve.Error as exc:
            text = str(exc)
            if "STARTTLS" in text:
                raise self._no_starttls() from None
            if "SSL" in text:
                raise ConnectorError("tls_failed", f"The secure connection to {self.where} "
                                     f"failed ({text}).") from None
            raise ConnectorError("connection_lost", f"{self.where} broke off the ManageSieve "
                                 f"session ({text}).", retry_after=60) from None
        except (OSError, ssl.SSLError) as exc:
            raise network_error(exc, account, "connecting") from None
        if not ok:
            raise self._refused(str(client.errmsg or b"", "utf-8", "replace") or "refused")

    def _sign_in(self, client: _Client) -> bool:
        account = self.account
        acting = account.username and account.username != account.address
        with warnings.catch_warnings():
            # Plain text only where the profile chose security "none" (its page warns).
            warnings.filterwarnings("ignore", "Credentials are sent over an unencrypted")
            return client.connect(account.username or account.address, account.password or "",
                                  authz_id=account.address if acting else "",
                                  starttls=self.security == "starttls", authmech="PLAIN")

    def _abort(self, client: managesieve.Client) -> None:
        if client.sock is not None:
            client.sock.close()

    def _quit(self, client: managesieve.Client) -> None:
        client.logout()

    def _call(self, what: str, action, *args):
        try:
            result = action(*args)
        except managesieve.Error as exc:
            raise ConnectorError("sieve_error", f"{self.where} failed while {what}: {exc}.")
        except OSError as exc:
            raise self._lost(exc, what) from None
        if result is False or result is None:
            reply = str(self.client.errmsg or b"", "utf-8", "replace")
            raise ConnectorError("sieve_refused", f"{self.where} refused {what}"
                                 f"{': ' + reply if reply else ''}.")
        return result

    def _scripts(self) -> tuple[str | None, list[str]]:
        return self._call("listing the Sieve scripts", self.client.listscripts)

    def _ours(self) -> str | None:
        active, others = self._scripts()
        if SCRIPT not in others and active != SCRIPT:
            return None
        return self._call("reading the CRM's Sieve script", self.client.getscript, SCRIPT)

    def forwards_to(self) -> str | None:
        text = self._ours()
        match = _TARGET.search(text or "")
        return _unquoted(match.group(1)) if match else None

    def deploy(self, forward_to: str) -> None:
        active, _ = self._scripts()
        previous = None
        if active == SCRIPT:  # replacing ours: keep including what it included
            match = _PREVIOUS.search(self._ours() or "")
            previous = _unquoted(match.group(1)) if match else None
        elif active:
            previous = active
        self._call("storing the CRM's Sieve script", self.client.putscript, SCRIPT,
                   script_for(forward_to, previous))
        self._call("activating the CRM's Sieve script", self.client.setactive, SCRIPT)

    def remove(self) -> bool:
        text = self._ours()
        if text is None:
            return False
        match = _PREVIOUS.search(text)
        active, _ = self._scripts()
        if active == SCRIPT:
            previous = _unquoted(match.group(1)) if match else ""
            self._call("activating the user's own Sieve script", self.client.setactive,
                       previous)
        self._call("deleting the CRM's Sieve script", self.client.deletescript, SCRIPT)
        return True
