"""pytest plugin: fixtures that start the real protocol peers (tests/servers/).

Load it with `pytest_plugins = ["tests.servers.fixtures"]` in tests/conftest.py (or
`-p tests.servers.fixtures`). Peers start lazily, only when a test asks for them.

Session-scoped (one per test process, so one per xdist worker):
    dovecot       DovecotServer: IMAP + POP3, plain, on 127.0.0.1
    dovecot_tls   DovecotServer(tls=True): also STARTTLS and IMAPS/POP3S
    dovecot_sieve DovecotServer(sieve=True): also ManageSieve, and Sieve at delivery
    radicale      RadicaleServer: CalDAV/CardDAV
    browser       BrowserSession: headless Debian Chromium through Playwright

Function-scoped:
    mail_user         a fresh MailUser on `dovecot` (restarts it first if a test killed it)
    make_mail_user    factory: make_mail_user(prefix="user", password=None, server=None)
    make_dovecot      factory for a private DovecotServer (for tests that kill/restart)
    smtp_server       a fresh SMTPServer (no AUTH, no TLS)
    make_smtp_server  factory: make_smtp_server(auth=(u, p), tls="starttls", ...)
    radicale_user     a fresh DavUser on `radicale`
    page              a Playwright Page in its own loopback-only context

A test that kills or stops a peer should use a factory (make_dovecot, make_smtp_server)
rather than a shared one; mail_user and radicale_user restart a stopped shared peer anyway.
"""

from __future__ import annotations

import itertools
import os
import secrets
from collections.abc import Iterator
from typing import Callable

import pytest

from .browser import BrowserSession
from .dovecot import DovecotServer, MailUser
from .radicale_server import DavUser, RadicaleServer
from .smtp import SMTPServer

_serial = itertools.count(1)


def _unique(prefix: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    return f"{prefix}-{worker}-{next(_serial)}-{secrets.token_hex(3)}"


# ------------------------------------------------------------------------------ Dovecot


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """The session's Dovecot (IMAP and POP3 on 127.0.0.1, no TLS)."""
    server = DovecotServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[DovecotServer]:
    """A Dovecot with a self-signed certificate: STARTTLS on imap_port/pop3_port and
    implicit TLS on imaps_port/pop3s_port; trust `server.cert.client_context()`."""
    server = DovecotServer(tls=True)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture(scope="session")
def dovecot_sieve() -> Iterator[DovecotServer]:
    """A Dovecot that also runs ManageSieve (``sieve_port``) and Sieve at local delivery
    (``deliver_lda``): a redirect lands in the other user's Inbox on the same server."""
    server = DovecotServer(sieve=True)
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def make_mail_user(request: pytest.FixtureRequest) -> Callable[..., MailUser]:
    """Factory for fresh users: make_mail_user(prefix="user", password=None, server=None).

    The address is unique (prefix-<worker>-<n>-<hex>@example.com); the password random
    unless given. `server` defaults to the session's `dovecot` (started on first use, and
    restarted if a test killed it).
    """

    def make(prefix: str = "user", password: str | None = None,
             server: DovecotServer | None = None) -> MailUser:
        server = server or request.getfixturevalue("dovecot")
        if not server.running:
            server.start()
        return server.add_user(f"{_unique(prefix)}@example.com",
                               password or secrets.token_urlsafe(12))

    return make


@pytest.fixture
def mail_user(make_mail_user) -> MailUser:
    """A fresh, empty mailbox on the session's `dovecot`."""
    return make_mail_user()


@pytest.fixture
def make_dovecot() -> Iterator[Callable[..., DovecotServer]]:
    """Factory for private, started DovecotServers (closed after the test):
    make_dovecot(tls=False, separator="/", special_use=True, imap_capability=None, ...). For tests that kill or reconfigure one."""
    servers: list[DovecotServer] = []

    def make(**options) -> DovecotServer:
        server = DovecotServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


# --------------------------------------------------------------------------------- SMTP


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SMTPServer]]:
    """Factory for started SMTPServers, stopped after the test. Keyword arguments:
    auth=(username, password), auth_required=None, tls=None|"starttls"|"implicit",
    require_starttls=False, port=None."""
    servers: list[SMTPServer] = []

    def make(**options) -> SMTPServer:
        server = SMTPServer(**options)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def smtp_server(make_smtp_server) -> SMTPServer:
    """A fresh SMTP server on 127.0.0.1 (no AUTH, no TLS) that keeps what it receives."""
    return make_smtp_server()


# ----------------------------------------------------------------------------- Radicale


@pytest.fixture(scope="session")
def radicale() -> Iterator[RadicaleServer]:
    """The session's Radicale (CalDAV/CardDAV at radicale.url, htpasswd users)."""
    server = RadicaleServer()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def radicale_user(radicale: RadicaleServer) -> DavUser:
    """A fresh Radicale user (random password); its collections go under principal_url."""
    if not radicale.running:
        radicale.start()
    return radicale.add_user(_unique("dav"), secrets.token_urlsafe(12))


# ------------------------------------------------------------------------------ browser


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserSession]:
    """Headless Chromium (/usr/bin/chromium). browser.new_context()/new_page() give
    loopback-only contexts; browser.browser is the Playwright Browser itself."""
    session = BrowserSession()
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def page(browser: BrowserSession):
    """A Page in a fresh loopback-only context, closed after the test. Use
    tests.servers.browser.route_office_js(page, stub) to stand in for Office.js."""
    context = browser.new_context()
    try:
        yield context.new_page()
    finally:
        context.close()
