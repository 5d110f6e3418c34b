"""SMTP sender (smtplib): implicit TLS, STARTTLS or plain (only when the profile says so),
AUTH PLAIN/LOGIN with a password or XOAUTH2 with an access token.

Errors carry what the outgoing queue needs to decide: a 4xx reply is a ``message``-severity
error with ``retry_after`` (try that email again later), a 5xx reply a ``message``-severity
error without it (that email cannot be sent as it is), a refused sign-in ``auth``, and a
connection that cannot be made or is lost ``mailbox`` (back off, the server may be down).

``verify(sender, recipient)`` is what Test & Enable uses: connect, sign in, MAIL FROM and
RCPT TO, then RSET, so nothing is sent. A refusal says which party was refused:
``sender_refused`` (MAIL FROM, or a RCPT reply about the sender: Postfix reports a sender
its login may not use there) or ``recipient_refused`` (the server does not take mail for
that recipient, e.g. ``550 5.1.1 User unknown``).
"""
from __future__ import annotations

import re
import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from server.sync.connectors.base import ConnectorError, Needs, Sender
from server.sync.connectors.common import ServerSession, tls_context

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
TEMPORARY_RETRY_SECONDS = 60
# A RCPT reply about the sender, not the recipient: RFC 3463 X.1.7 / X.1.8 (bad sender
# address) or the words of MTAs that check the sender at RCPT ("Sender address rejected").
_ABOUT_SENDER = re.compile(r"\b[45]\.1\.[78]\b|\bsender\b", re.IGNORECASE)


def _reply(code: int, text) -> str:
    text = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text or "")
    return f"{code} {' '.join(text.split())}".strip()


class SmtpSender(ServerSession, Sender):
    """One SMTP session: ``with SmtpSender(account) as smtp: smtp.send(raw, from_, to)``."""

    needs = Needs(host=True, ports=DEFAULT_PORTS)
    DEFAULT_SECURITY = "starttls"
    _client: smtplib.SMTP | None

    # -- session --------------------------------------------------------------------------

    def _connect(self) -> None:
        account = self.account
        helo = account.settings.get("helo_name") or socket.gethostname()
        with self._errors("connecting"):
            if self.security == "tls":
                smtp = smtplib.SMTP_SSL(account.host, self.port, local_hostname=helo,
                                        timeout=account.timeout, context=tls_context(account))
            else:
                smtp = smtplib.SMTP(account.host, self.port, local_hostname=helo,
                                    timeout=account.timeout)
            self._client = smtp
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise self._no_starttls()
                smtp.starttls(context=tls_context(account))
                smtp.ehlo()
            self._login(smtp)

    def _login(self, smtp: smtplib.SMTP) -> None:
        account = self.account
        if account.oauth_token:
            auth = f"user={self.username}\x01auth=Bearer {account.oauth_token}\x01\x01"
            smtp.auth("XOAUTH2", lambda challenge=None: auth, initial_response_ok=True)
        elif account.password and smtp.has_extn("auth"):
            # A relay that offers no AUTH takes mail from trusted hosts without it.
            _sign_in(smtp, self.username, account.password)

    def _quit(self, smtp: smtplib.SMTP) -> None:
        smtp.quit()

    def _abort(self, smtp: smtplib.SMTP) -> None:
        smtp.close()

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except ConnectorError:
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise self._refused(_reply(exc.smtp_code, exc.smtp_error)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            replies = {addr: _reply(code, text) for addr, (code, text) in exc.recipients.items()}
            temporary = any(400 <= code < 500 for code, _ in exc.recipients.values())
            detail = "; ".join(f"{addr}: {reply}" for addr, reply in replies.items())
            raise ConnectorError(
                "recipients_refused" if not temporary else "smtp_temporary",
                f"{self.where} refused the recipients while {what} ({detail}).",
                severity="message",
                retry_after=TEMPORARY_RETRY_SECONDS if temporary else None) from None
        except smtplib.SMTPResponseException as exc:
            raise self._reply_error(exc.smtp_code, exc.smtp_error, what) from None
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise self._lost(exc, what) from None
        except smtplib.SMTPException as exc:
            raise ConnectorError("smtp_error", f"{self.where} failed while {what} ({exc}).",
                                 severity="mailbox", retry_after=60) from None

    def _reply_error(self, code: int, text, what: str) -> ConnectorError:
        reply = _reply(code, text)
        if code in (421,):  # the server is closing the connection: the mailbox backs off
            self._drop()
            return ConnectorError("smtp_unavailable", f"{self.where} is not taking mail now "
                                  f"({reply}).", severity="mailbox", retry_after=300)
        if code in (530, 534, 535, 538):
            return ConnectorError("auth_required", f"{self.where} asks for a sign-in that "
                                  f"was not accepted ({reply}).", severity="auth")
        if 400 <= code < 500:
            return ConnectorError("smtp_temporary", f"{self.where} could not take the message "
                                  f"now ({reply}).", severity="message",
                                  retry_after=TEMPORARY_RETRY_SECONDS)
        return ConnectorError("smtp_rejected", f"{self.where} rejected the message ({reply}).",
                              severity="message")

    # -- sending ------------------------------------------------------------------------------

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict[str, str]:
        """Send one message; returns the recipients the server refused while taking it for
        the others (address -> reply), empty when it took all."""
        if not recipients:
            raise ConnectorError("no_recipients", "The message has no recipients.",
                                 severity="message")
        with self._errors("sending a message"):
            refused = self.client.sendmail(sender, recipients, raw)
        return {addr: _reply(code, text) for addr, (code, text) in refused.items()}

    def verify(self, sender: str, recipient: str) -> None:
        """MAIL FROM and RCPT TO, then RSET: proves the server would take mail from
        ``sender`` without sending any."""
        with self._errors("checking the sender"):
            code, text = self.client.mail(sender)
            if code != 250:
                raise self._refusal(code, text, "checking the sender", "sender_refused")
            code, text = self.client.rcpt(recipient)
            if code not in (250, 251):
                about = "sender_refused" if _ABOUT_SENDER.search(_reply(code, text)) else \
                    "recipient_refused"
                raise self._refusal(code, text, "checking a recipient", about)
            self.client.rset()

    def _refusal(self, code: int, text, what: str, about: str) -> ConnectorError:
        """A refused MAIL FROM or RCPT TO in ``verify``: a 5xx reply is ``about`` (which
        party was refused), anything else what ``_reply_error`` makes of it."""
        error = self._reply_error(code, text, what)
        if error.code != "smtp_rejected":
            return error
        party = "sender" if about == "sender_refused" else "recipient"
        return ConnectorError(about, f"{self.where} refused the {party} ({_reply(code, text)}).",
                              severity="message")


# The mechanisms a password signs in with, in the order tried. smtplib's ``login`` tries
# every one the server offers (CRAM-MD5, PLAIN, LOGIN) while the server refuses: a wrong
# password cost two or three failed sign-ins an attempt, and servers lock accounts out
# after a few. Here a refusal of the credentials (535) ends it; only a mechanism the
# server turns down as such (504 unknown, 534 too weak, 538 needs TLS) goes on to the next.
MECHANISMS = ("PLAIN", "LOGIN", "CRAM-MD5")
NOT_THIS_MECHANISM = frozenset({504, 534, 538})


def _sign_in(smtp: smtplib.SMTP, username: str, password: str) -> None:
    offered = smtp.esmtp_features.get("auth", "").upper().split()
    mechanisms = [m for m in MECHANISMS if m in offered]
    if not mechanisms:
        raise smtplib.SMTPException("No suitable authentication method found.")
    smtp.user, smtp.password = username, password
    for mechanism in mechanisms:
        try:
            smtp.auth(mechanism, getattr(smtp, "auth_" + mechanism.lower().replace("-", "_")))
            return
        except smtplib.SMTPAuthenticationError as exc:
            if exc.smtp_code not in NOT_THIS_MECHANISM or mechanism == mechanisms[-1]:
                raise
