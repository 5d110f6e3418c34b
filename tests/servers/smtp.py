"""A real SMTP server for the tests: aiosmtpd on a free 127.0.0.1 port.

`SMTPServer` keeps every accepted message in memory (envelope sender, recipients, raw
bytes, who authenticated, whether TLS was on) so a test can assert what the CRM sent.
Options: AUTH PLAIN/LOGIN with one username/password (allowed without TLS, on loopback),
STARTTLS or implicit TLS with a self-signed certificate, and `fail_next()` to answer the
next N transactions with an error (451 by default) so retries and bounces can be tested.
"""

from __future__ import annotations

import email
import email.policy
import errno
import logging
import shutil
import smtplib
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from .ports import LOOPBACK, SelfSignedCert, free_port, make_self_signed_cert

STAGES = ("mail", "rcpt", "data")


class _QuietDeprecation(logging.Filter):
    """aiosmtpd logs a deprecation warning of its own at every successful AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_QuietDeprecation())


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted (answered 250 to its DATA)."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: tuple | None = None
    authenticated_as: str | None = None
    tls: bool = False
    mail_options: tuple[str, ...] = ()
    rcpt_options: tuple[str, ...] = ()
    received_at: float = field(default_factory=time.time)

    @property
    def message(self) -> EmailMessage:
        """The parsed message (email.policy.default)."""
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass
class _Failure:
    remaining: int | None  # None: until reset_failures()
    reply: str


class _Handler:
    """aiosmtpd handler: records messages, injects failures. Runs in the server thread."""

    def __init__(self, server: SMTPServer):
        self.server = server

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        if not self.server.auth:  # offer no AUTH at all rather than an empty list
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        # AUTH is enforced here, not by aiosmtpd's auth_required, which warns when TLS
        # is not required too (plain AUTH on loopback is what these tests want).
        if self.server.auth and self.server.auth_required and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if (reply := self.server._take_failure("mail")) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if (reply := self.server._take_failure("rcpt")) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if (reply := self.server._take_failure("data")) is not None:
            return reply
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.server._record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content or envelope.content),
                peer=session.peer,
                authenticated_as=login.decode() if isinstance(login, bytes) else login,
                tls=session.ssl is not None,
                mail_options=tuple(envelope.mail_options),
                rcpt_options=tuple(envelope.rcpt_options),
            )
        )
        return "250 Message accepted for delivery"


class SMTPServer:
    """An aiosmtpd server in a background thread. Use as a context manager or start()/stop().

    auth: (username, password) to offer AUTH PLAIN/LOGIN; auth_required refuses mail
    without it (default: required when auth is given). tls: None, "starttls" or
    "implicit"; require_starttls refuses commands before STARTTLS.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        auth_required: bool | None = None,
        tls: str | None = None,
        require_starttls: bool = False,
        port: int | None = None,
    ):
        if tls not in (None, "starttls", "implicit"):
            raise ValueError(f"tls must be None, 'starttls' or 'implicit', not {tls!r}")
        self.auth = auth
        self.auth_required = bool(auth) if auth_required is None else auth_required
        self.tls = tls
        self.require_starttls = require_starttls
        self._fixed_port = port is not None
        self._started = False
        self.port = port or free_port()
        self._cert_dir: Path | None = None
        self.cert: SelfSignedCert | None = None
        if tls:
            self._cert_dir = Path(tempfile.mkdtemp(prefix="regarding-smtp-"))
            self.cert = make_self_signed_cert(self._cert_dir, "smtp")
        self._lock = threading.Condition()
        self._messages: list[ReceivedMessage] = []
        self._failures: dict[str, list[_Failure]] = {stage: [] for stage in STAGES}
        self.failed_attempts: list[tuple[str, str]] = []  # (stage, reply) actually sent
        self.auth_attempts: list[tuple[str, bool]] = []  # (login, success)
        self._controller: Controller | None = None

    # ---------------------------------------------------------------------- lifecycle

    def start(self) -> SMTPServer:
        if self._controller is not None:
            return self
        kwargs = dict(
            hostname=self.host,
            server_hostname="smtp.test.localhost",  # banner name; avoids a slow getfqdn()
            enable_SMTPUTF8=True,
            auth_require_tls=False,
        )
        if self.auth:
            kwargs.update(authenticator=self._authenticate)
        else:
            kwargs.update(auth_exclude_mechanism=["PLAIN", "LOGIN"])
        if self.tls == "starttls":
            kwargs.update(tls_context=self.cert.server_context(),
                          require_starttls=self.require_starttls)
        elif self.tls == "implicit":
            kwargs.update(ssl_context=self.cert.server_context())
        for attempt in range(1, 4):
            controller = Controller(_Handler(self), port=self.port, **kwargs)
            try:
                controller.start()
            except OSError as exc:
                # Lost the race for a free_port(): take another (never a port given to us,
                # nor after the first start, when tests rely on the port).
                if (exc.errno != errno.EADDRINUSE or self._fixed_port or self._started
                        or attempt == 3):
                    raise
                self.port = free_port()
                continue
            self._controller = controller
            self._started = True
            return self
        return self

    def stop(self) -> None:
        """Stop listening (connections are refused until start())."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def restart(self) -> SMTPServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        self.stop()
        if self._cert_dir is not None:
            shutil.rmtree(self._cert_dir, ignore_errors=True)

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._controller is not None

    # ----------------------------------------------------------------- what was sent

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._lock:
            return list(self._messages)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[ReceivedMessage]:
        """Block until at least `count` messages were accepted; returns them all."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"SMTP server got {len(self._messages)} message(s), expected {count}"
                    )
                self._lock.wait(left)
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self.failed_attempts.clear()
            self.auth_attempts.clear()

    def _record(self, message: ReceivedMessage) -> None:
        with self._lock:
            self._messages.append(message)
            self._lock.notify_all()

    # -------------------------------------------------------------------- failures

    def fail_next(
        self,
        count: int | None = 1,
        *,
        code: int = 451,
        text: str = "4.3.0 Temporary failure, try again later",
        stage: str = "data",
    ) -> None:
        """Answer the next `count` transactions at `stage` ("mail", "rcpt" or "data") with
        `code text` instead of accepting them. count=None: every one, until
        reset_failures(). Use a 5xx code for a permanent failure."""
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}")
        with self._lock:
            self._failures[stage].append(_Failure(count, f"{code} {text}"))

    def reset_failures(self) -> None:
        with self._lock:
            for queue in self._failures.values():
                queue.clear()

    def _take_failure(self, stage: str) -> str | None:
        with self._lock:
            queue = self._failures[stage]
            while queue and queue[0].remaining == 0:
                queue.pop(0)
            if not queue:
                return None
            failure = queue[0]
            if failure.remaining is not None:
                failure.remaining -= 1
            self.failed_attempts.append((stage, failure.reply))
            return failure.reply

    # ------------------------------------------------------------------------- auth

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode(errors="replace")
        password = auth_data.password.decode(errors="replace")
        ok = (login, password) == tuple(self.auth)
        with self._lock:
            self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    # ------------------------------------------------------------------------ client

    def client(self, *, login: bool = True, timeout: float = 10) -> smtplib.SMTP:
        """An smtplib client connected to this server (TLS and AUTH done as configured)."""
        if self.tls == "implicit":
            smtp = smtplib.SMTP_SSL(self.host, self.port, timeout=timeout,
                                    context=self.cert.client_context())
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=timeout)
            if self.tls == "starttls":
                smtp.starttls(context=self.cert.client_context())
        if login and self.auth:
            smtp.login(*self.auth)
        return smtp

    def __repr__(self) -> str:
        return f"<SMTPServer {self.host}:{self.port} tls={self.tls} auth={bool(self.auth)}>"
