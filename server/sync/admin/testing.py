"""Test & Enable for a mailbox: try each direction the mailbox is set up for, record the
outcome in words a person can act on, and enable the mailbox when a direction works and
its email address is approved. A direction whose test failed is turned off on its own
(``incoming_enabled`` / ``outgoing_enabled``): a mailbox whose outgoing server refuses it
still has its mail read, and the other way round. Appointments, contacts and tasks are
tested and reported on their own (``test_items``): the privileges, then the store's
collections, each of which must tell its changes (sync-collection) and take writes.

Incoming: connect, sign in, list the folders and say which one is Sent Items
(``folders.find_sent``). Outgoing: connect, sign in, MAIL FROM and RCPT TO with the
mailbox's own address, then RSET: nothing is sent; a refusal names the party the server
refused (the sender, or the own address as a recipient). Passwords and tokens never
appear in messages or logs.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from server.crm.models import Organization
from server.db import db, utcnow
from server.security import authz
from server.sync import connectors
from server.sync.acts.records import PRIVILEGES
from server.sync.acts.run import why_not_synced
from server.sync.engine.accounts import account_for, credentials, protocol_of
from server.sync.engine.folders import find_sent
from server.sync.connectors import for_direction
from server.sync.connectors.base import ITEM_KINDS, Connector, ConnectorError, Needs, Sender
from server.sync.engine import accounts
from server.sync.models import Mailbox

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class DirectionResult:
    ok: bool
    message: str
    code: str | None = None  # the ConnectorError code on failure


@dataclass(frozen=True)
class TestResult:
    """What Test & Enable found; ``None`` for a direction the mailbox does not use."""
    __test__ = False  # not a pytest test class

    incoming: DirectionResult | None
    outgoing: DirectionResult | None
    enabled: bool
    message: str
    acts: DirectionResult | None = None  # appointments, contacts and tasks


@dataclass(frozen=True)
class _Where:
    """The server a direction talks to, for messages."""
    host: str
    port: int | None
    profile: str
    login: str
    address: str
    service_account: bool
    oauth: bool

    @property
    def server_port(self) -> str:
        return f"{self.host}:{self.port}" if self.port else self.host


def _where(mailbox: Mailbox, direction: str, needs: Needs) -> _Where:
    profile = mailbox.server_profile
    if direction == "incoming":
        host, port, security = profile.incoming_host, profile.incoming_port, profile.incoming_security
    else:
        host, port, security = profile.outgoing_host, profile.outgoing_port, profile.outgoing_security
    try:
        login = credentials(mailbox, profile)[0]
    except ConnectorError:
        login = mailbox.username or mailbox.email_address
    return _Where(host or "the server", port or needs.ports.get(security or "tls"),
                  profile.name, login, mailbox.email_address, bool(profile.use_service_account),
                  profile.auth_method == "oauth2")


# Failures to reach a server read alike (refused, unknown name, no answer, not allowed):
# Test & Enable must not tell an administrator which ports of which hosts are open.
CONNECT_FAILURES = frozenset({"connection_refused", "host_not_found", "timeout",
                              "could_not_connect"})


def _failed(exc: ConnectorError, where: _Where) -> DirectionResult:
    code = "could_not_connect" if exc.code in CONNECT_FAILURES else exc.code
    return DirectionResult(False, explain(exc, where), code)


def explain(error: ConnectorError, where: _Where) -> str:
    """A message that says what went wrong and what to do about it."""
    host, code = where.host, error.code
    if code == "auth_failed":
        if where.oauth:
            return (f"The access token for {where.login} was refused by {host}. Check that the "
                    f"app of the server profile {where.profile} has access to this mailbox, "
                    "then test again.")
        if where.service_account:
            return (f"The password of the service account {where.login} was refused by {host}. "
                    f"Update it in the server profile {where.profile} and test again.")
        return (f"The password for {where.login} was refused by {host}. Update it in the "
                "mailbox and test again.")
    if code == "auth_required":
        return (f"{host} asks for a sign-in before it takes mail. Enter a user name and "
                f"password for this mailbox (or a service account in the server profile "
                f"{where.profile}) and test again.")
    if code in CONNECT_FAILURES:
        return (f"Could not connect to {where.server_port}. Check the server name, port and "
                f"security setting in the server profile {where.profile}, that the server is "
                "running and reachable from here, and, for a loopback or link-local address, "
                "that the organization's allowed local mail servers list it; then test again.")
    if code == "tls_failed":
        return (f"{error.message} Check the security setting (TLS or STARTTLS) and the port in "
                f"the server profile {where.profile}; if {host} uses a certificate from a "
                "private authority, add that authority to the profile. Then test again.")
    if code == "starttls_unsupported":
        return (f"{host} does not offer STARTTLS on port {where.port}. Choose TLS and its port "
                f"in the server profile {where.profile}, then test again.")
    if code == "sender_refused":
        return (f"{host} would not take mail from {where.address} ({error.message}). Check that "
                f"{where.login} may send as {where.address}, then test again.")
    if code == "recipient_refused":
        return (f"{host} took {where.address} as the sender but refused it as a recipient "
                f"({error.message}): the test sends nothing, it asks the server to take a "
                f"message for the mailbox's own address, and this server does not deliver "
                f"mail to {where.address}. Check the mailbox's email address, or ask the "
                f"server's administrator to accept mail for it, then test again.")
    if code in ("smtp_rejected", "smtp_temporary"):
        return (f"{host} did not take the test message ({error.message}). Test again; if it "
                f"keeps failing, check the server profile {where.profile}.")
    if code in ("oauth_failed", "oauth_not_configured", "oauth_unreachable"):
        return (f"{error.message} Check the tenant, application id and secret in the server "
                f"profile {where.profile} and the app's permissions, then test again.")
    if code == "maildir_missing":
        return (f"{error.message} Create it or correct the Maildir store in the server profile "
                f"{where.profile}, then test again.")
    return (f"{error.message} Test again; if it keeps failing, check the server profile "
            f"{where.profile}.")


def _test_incoming(mailbox: Mailbox, connector_cls: type[Connector]) -> DirectionResult:
    where = _where(mailbox, "incoming", connector_cls.needs)
    try:
        with connector_cls(account_for(mailbox, "incoming")) as connector:
            folders = connector.list_folders()
    except ConnectorError as exc:
        return _failed(exc, where)
    if connector_cls.needs.store is not None:
        found = f"Found the Maildir of {mailbox.email_address} with {len(folders)} folder(s)."
    else:
        found = f"Signed in to {where.host} as {where.login} and found {len(folders)} folder(s)."
    if len(folders) <= 1 and not mailbox.sent_folder:  # the Inbox alone (POP3): no Sent
        return DirectionResult(True, found)
    return DirectionResult(True, f"{found} {_sent_items(mailbox, folders)}")


def _sent_items(mailbox: Mailbox, folders) -> str:
    """Which folder the engine takes for Sent Items, in a sentence."""
    sent = find_sent(folders, mailbox.sent_folder)
    if sent is not None:
        return f'Sent Items: the folder "{sent.name}".'
    if mailbox.sent_folder:
        return (f'The Sent folder "{mailbox.sent_folder}" named in the mailbox\'s settings is '
                "not on the server: sent mail is not read from it and the CRM keeps no copy "
                "of the mail it sends. Correct the name and test again.")
    return ("No Sent folder was found: sent mail is not read and the CRM keeps no copy of "
            "the mail it sends. Name the folder in the mailbox's settings and test again.")


def _test_outgoing(mailbox: Mailbox, sender_cls: type[Sender]) -> DirectionResult:
    where = _where(mailbox, "outgoing", sender_cls.needs)
    address = mailbox.email_address
    try:
        with sender_cls(account_for(mailbox, "outgoing")) as sender:
            sender.verify(address, address)
    except ConnectorError as exc:
        return _failed(exc, where)
    if sender_cls.needs.store is not None:
        return DirectionResult(True, "Sent mail will be written to the Maildir store.")
    return DirectionResult(True, f"{where.host} accepts mail from {address} "
                                 "(checked without sending a message).")


def _configured(mailbox: Mailbox, direction: str) -> bool:
    if direction == "incoming":  # a user whose mail is forwarded is read in the forward mailbox
        return mailbox.incoming_method == "server_side_sync" or mailbox.is_forward_mailbox
    return mailbox.outgoing_method == "server_side_sync"


def _run(mailbox: Mailbox, direction: str) -> DirectionResult | None:
    if not _configured(mailbox, direction):
        return None
    if mailbox.server_profile is None:
        return DirectionResult(False, "The mailbox has no email server profile. Choose one and "
                                      "test again.", "no_server_profile")
    protocol = protocol_of(mailbox, direction)
    if not protocol:
        return DirectionResult(False, f"The server profile {mailbox.server_profile.name} has no "
                                      f"{direction} server. Add one or set this mailbox's "
                                      f"{direction} email to None, then test again.",
                               "not_configured")
    try:
        tested = for_direction(protocol, direction)
    except ConnectorError as exc:
        return DirectionResult(False, exc.message, exc.code)
    run = _test_incoming if direction == "incoming" else _test_outgoing
    return run(mailbox, tested)


WHAT = {"appointment": "calendar", "contact": "address book", "task": "task list"}


def test_items(mailbox: Mailbox) -> DirectionResult | None:
    """None when the mailbox does not sync appointments, contacts and tasks."""
    if mailbox.acts_method != "server_side_sync":
        return None
    why = why_not_synced(mailbox)
    if why:
        return DirectionResult(False, f"Appointments, contacts and tasks cannot sync: {why}.",
                           "not_syncable")
    p = authz.principal(mailbox.user)
    kinds = [k for k in ITEM_KINDS if p.has(PRIVILEGES[k])]
    missing = [authz.NAMED_PRIVILEGES[PRIVILEGES[k]] for k in ITEM_KINDS if k not in kinds]
    if not kinds:
        return DirectionResult(False, f"{mailbox.user.full_name} has none of the privileges "
                                  f"{', '.join(missing)}: give them a role that has them.",
                           "no_privilege")
    try:
        profile = accounts.items_profile(mailbox)
        store_class = connectors.item_store(profile.incoming_protocol)
        found = []
        with store_class(accounts.items_account(mailbox)) as store:
            for kind in kinds:
                collection = next(c for c in store.collections(kind) if c.default)
                for feature, advice in (
                        ("changes", "cannot tell what changed in it (no WebDAV "
                         "sync-collection, RFC 6578): upgrade the server or choose one that has it"),
                        ("write", "cannot be written by this account: give it write access")):
                    if feature not in collection.features:
                        return DirectionResult(False, f'The {WHAT[kind]} "{collection.name}" on '
                                                  f"{profile.name} {advice}.", f"no_{feature}")
                found.append(f'{WHAT[kind]} "{collection.name}"')
    except ConnectorError as exc:
        return DirectionResult(False, f"Appointments, contacts and tasks on {profile.name}: "
                                  f"{exc.message}", exc.code)
    message = f"Syncs with the {', '.join(found)} on {profile.name}."
    if missing:
        message += f" Not synced, for want of a privilege: {', '.join(missing)}."
    return DirectionResult(True, message)


def _status(result: DirectionResult | None) -> str:
    return "not_run" if result is None else ("success" if result.ok else "failure")


def test_and_enable(mailbox: Mailbox) -> TestResult:
    """Test the mailbox's configured directions, record the results on it and enable it
    when they all work and its address is approved (the caller commits)."""
    org = db.session.get(Organization, 1)
    result_in = _run(mailbox, "incoming")
    result_out = _run(mailbox, "outgoing")
    result_acts = test_items(mailbox)
    tested = [r for r in (result_in, result_out, result_acts) if r is not None]
    approved = mailbox.approved_for(org)
    if not tested:
        reason = ("Nothing to test: the mailbox neither receives nor sends email nor syncs "
                  "appointments, contacts and tasks through server-side synchronization.")
    elif not any(r.ok for r in tested):
        reason = "The mailbox stays disabled until every test succeeds."
    elif not approved:
        reason = (f"The email address {mailbox.email_address} must be approved by an "
                  "administrator before the mailbox is enabled.")
    else:
        reason = ""
    enabled = not reason
    now = utcnow()
    mailbox.incoming_enabled = result_in is None or result_in.ok
    mailbox.outgoing_enabled = result_out is None or result_out.ok
    mailbox.incoming_status, mailbox.outgoing_status = _status(result_in), _status(result_out)
    mailbox.incoming_message = result_in.message if result_in else None
    mailbox.outgoing_message = result_out.message if result_out else None
    mailbox.acts_status = _status(result_acts)
    mailbox.acts_message = result_acts.message if result_acts else None
    mailbox.tested_on = now
    mailbox.enabled = enabled
    mailbox.disabled_reason = None if enabled else reason
    if enabled:
        mailbox.consecutive_failures = 0
        mailbox.next_sync_on = now  # the first sync comes at once
    db.session.flush()
    log.info("Test & Enable of mailbox %s: incoming %s, outgoing %s, enabled %s", mailbox.id,
             mailbox.incoming_status, mailbox.outgoing_status, enabled)
    return TestResult(result_in, result_out, enabled, reason or _enabled_for(mailbox),
                      result_acts)


def _enabled_for(mailbox: Mailbox) -> str:
    failed = [d for d, on in (("incoming", mailbox.incoming_enabled),
                              ("outgoing", mailbox.outgoing_enabled)) if not on]
    if not failed:
        return f"The mailbox {mailbox.email_address} is enabled."
    works = "outgoing" if failed == ["incoming"] else "incoming"
    return (f"The mailbox {mailbox.email_address} is enabled for {works} email only: its "
            f"{failed[0]} test failed. Fix what it says and test again to turn it on.")


test_and_enable.__test__ = False  # a service, not a pytest test
