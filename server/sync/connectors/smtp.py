"""SMTP sender (smtplib): implicit TLS, STARTTLS or plain (only when the profile says so),
AUTH PLAIN/LOGIN with a password or XOAUTH2 with an access token.

Errors carry what the outgoing queue needs to decide: a 4xx reply is a ``message``-severity
error with ``retry_after`` (try that email again later), a 5xx reply a ``message``-severity
error without it (that email cannot be sent as it is), a refused sign-in ``auth``, and a
connection that cannot be made or is lost ``mailbox`` (back off, the server may be down).

``verify(sender, recipient)`` is what Test & Enable uses: connect, sign in, MAIL FROM and
RCPT TO, then RSET, so nothing is sent.
"""
from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from server.sync.connectors.base import ConnectorError, Needs, Sender
from server.sync.connectors.common import ServerSession, tls_context

DEFAULT_PORTS = {"tls": 465, "starttls": 587, "none": 25}
TEMPORARY_RETRY_SECONDS = 60


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
            smtp.login(self.username, account.password)

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
                raise self._reply_error(code, text, "checking the sender")
            code, text = self.client.rcpt(recipient)
            if code not in (250, 251):
                raise self._reply_error(code, text, "checking a recipient")
            self.client.rset()

