"""Test & Enable for a mailbox: try each direction the mailbox is set up for, record the
outcome in words a person can act on, and enable the mailbox when a direction works and
its email address is approved. A direction whose test failed is turned off on its own
(``incoming_enabled`` / ``outgoing_enabled`` / ``acts_enabled``): a mailbox whose outgoing
server refuses it still has its mail read, and the other way round. Appointments, contacts
and tasks are tested and reported on their own (``test_items``): the privileges, then the
store's collections, each of which must tell its changes (sync-collection) and take writes.

Incoming: connect, sign in, list the folders and say which one is Sent Items
(``folders.find_sent``). Outgoing: connect, sign in, MAIL FROM and RCPT TO with the
mailbox's own address, then RSET: nothing is sent; a refusal names the party the server
refused (the sender, or the own address as a recipient). Passwords and tokens never
appear in messages or logs. Messages are English sentences made from ``N_``-marked strings
with ``%(name)s`` values, shown in the reader's language (``server.i18n.translate_stored``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from server.crm.models import Organization
from server.db import db, utcnow
from server.i18n import N_
from server.security import authz
from server.sync import connectors
from server.sync.acts.records import PRIVILEGES
from server.sync.acts.records import why_not_synced
from server.sync.engine.accounts import account_for, credentials, protocol_of
from server.sync.engine.folders import find_sent
from server.sync.connectors import for_direction
from server.sync.connectors.base import ITEM_KINDS, Connector, ConnectorError, Needs, Sender
from server.sync.engine import accounts, service_accounts
from server.sync.models import Mailbox
from server.sync.workers import scheduler

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
    return _Where(host or N_("the server"), port or needs.ports.get(security or "tls"),
                  profile.name, login, mailbox.email_address, bool(profile.use_service_account),
                  profile.auth_method == "oauth2")


# Failures to reach a server read alike (refused, unknown name, no answer, not allowed):
# Test & Enable must not tell an administrator which ports of which hosts are open.
CONNECT_FAILURES = frozenset({"connection_refused", "host_not_found", "timeout",
                              "could_not_connect"})


def _failed(exc: ConnectorError, where: _Where, mailbox: Mailbox,
            direction: str) -> DirectionResult:
    """The failed test's result; a refused service account is held for the whole profile,
    as a run's refusal is (``service_accounts``)."""
    service_accounts.hold(mailbox.server_profile, direction, exc)  # the others wait
    code = "could_not_connect" if exc.code in CONNECT_FAILURES else exc.code
    return DirectionResult(False, explain(exc, where), code)


def explain(error: ConnectorError, where: _Where) -> str:
    """A message that says what went wrong and what to do about it."""
    code = error.code
    values = {"host": where.host, "login": where.login, "profile": where.profile,
              "server": where.server_port, "port": where.port, "address": where.address,
              "problem": error.message}
    if code == "auth_failed":
        if where.oauth:
            return N_("The access token for %(login)s was refused by %(host)s. Check that the "
                      "app of the server profile %(profile)s has access to this mailbox, then "
                      "test again.") % values
        if where.service_account:
            return N_("The password of the service account %(login)s was refused by %(host)s. "
                      "Update it in the server profile %(profile)s and test again.") % values
        return N_("The password for %(login)s was refused by %(host)s. Update it in the "
                  "mailbox and test again.") % values
    if code == service_accounts.CODE:
        return N_("%(problem)s Then test this mailbox again.") % values
    if code == "auth_required":
        return N_("%(host)s asks for a sign-in before it takes mail. Enter a user name and "
                  "password for this mailbox (or a service account in the server profile "
                  "%(profile)s) and test again.") % values
    if code in CONNECT_FAILURES:
        return N_("Could not connect to %(server)s. Check the server name, port and security "
                  "setting in the server profile %(profile)s, that the server is running and "
                  "reachable from here, and, for a loopback or link-local address, that the "
                  "organization's allowed local mail servers list it; then test again.") % values
    if code == "tls_failed":
        return N_("%(problem)s Check the security setting (TLS or STARTTLS) and the port in the "
                  "server profile %(profile)s; if %(host)s uses a certificate from a private "
                  "authority, add that authority to the profile. Then test again.") % values
    if code == "starttls_unsupported":
        return N_("%(host)s does not offer STARTTLS on port %(port)s. Choose TLS and its port "
                  "in the server profile %(profile)s, then test again.") % values
    if code == "sender_refused":
        return N_("%(host)s would not take mail from %(address)s (%(problem)s). Check that "
                  "%(login)s may send as %(address)s, then test again.") % values
    if code == "recipient_refused":
        return N_("%(host)s took %(address)s as the sender but refused it as a recipient "
                  "(%(problem)s): the test sends nothing, it asks the server to take a message "
                  "for the mailbox's own address, and this server does not deliver mail to "
                  "%(address)s. Check the mailbox's email address, or ask the server's "
                  "administrator to accept mail for it, then test again.") % values
    if code in ("smtp_rejected", "smtp_temporary"):
        return N_("%(host)s did not take the test message (%(problem)s). Test again; if it "
                  "keeps failing, check the server profile %(profile)s.") % values
    if code in ("oauth_failed", "oauth_not_configured", "oauth_unreachable"):
        return N_("%(problem)s Check the tenant, application id and secret in the server "
                  "profile %(profile)s and the app's permissions, then test again.") % values
    if code == "maildir_missing":
        return N_("%(problem)s Create it or correct the Maildir store in the server profile "
                  "%(profile)s, then test again.") % values
    return N_("%(problem)s Test again; if it keeps failing, check the server profile "
              "%(profile)s.") % values


def _test_incoming(mailbox: Mailbox, connector_cls: type[Connector]) -> DirectionResult:
    where = _where(mailbox, "incoming", connector_cls.needs)
    try:
        with connector_cls(account_for(mailbox, "incoming")) as connector:
            folders = connector.list_folders()
    except ConnectorError as exc:
        return _failed(exc, where, mailbox, "incoming")
    if connector_cls.needs.store is not None:
        found = N_("Found the Maildir of %(address)s with %(count)s folder(s).") % {
            "address": mailbox.email_address, "count": len(folders)}
    else:
        found = N_("Signed in to %(host)s as %(login)s and found %(count)s folder(s).") % {
            "host": where.host, "login": where.login, "count": len(folders)}
    if len(folders) <= 1 and not mailbox.sent_folder:  # the Inbox alone (POP3): no Sent
        return DirectionResult(True, found)
    return DirectionResult(True, f"{found} {_sent_items(mailbox, folders)}")


def _sent_items(mailbox: Mailbox, folders) -> str:
    """Which folder the engine takes for Sent Items, in a sentence."""
    sent = find_sent(folders, mailbox.sent_folder)
    if sent is not None:
        return N_('Sent Items: the folder "%(folder)s".') % {"folder": sent.name}
    if mailbox.sent_folder:
        return N_('The Sent folder "%(folder)s" named in the mailbox\'s settings is not on the '
                  "server: sent mail is not read from it and the CRM keeps no copy of the mail "
                  "it sends. Correct the name and test again.") % {"folder": mailbox.sent_folder}
    return N_("No Sent folder was found: sent mail is not read and the CRM keeps no copy of "
              "the mail it sends. Name the folder in the mailbox's settings and test again.")


def _test_outgoing(mailbox: Mailbox, sender_cls: type[Sender]) -> DirectionResult:
    where = _where(mailbox, "outgoing", sender_cls.needs)
    address = mailbox.email_address
    try:
        with sender_cls(account_for(mailbox, "outgoing")) as sender:
            sender.verify(address, address)
    except ConnectorError as exc:
        return _failed(exc, where, mailbox, "outgoing")
    if sender_cls.needs.store is not None:
        return DirectionResult(True, N_("Sent mail will be written to the Maildir store."))
    return DirectionResult(True, N_("%(host)s accepts mail from %(address)s (checked without "
                                    "sending a message).") % {"host": where.host,
                                                              "address": address})


def _configured(mailbox: Mailbox, direction: str) -> bool:
    if direction == "incoming":  # a user whose mail is forwarded is read in the forward mailbox
        return mailbox.incoming_method == "server_side_sync" or mailbox.is_forward_mailbox
    return mailbox.outgoing_method == "server_side_sync"


def _run(mailbox: Mailbox, direction: str) -> DirectionResult | None:
    if not _configured(mailbox, direction):
        return None
    if mailbox.server_profile is None:
        return DirectionResult(False, N_("The mailbox has no email server profile. Choose one "
                                         "and test again."), "no_server_profile")
    protocol = protocol_of(mailbox, direction)
    if not protocol:
        values = {"profile": mailbox.server_profile.name}
        message = (N_("The server profile %(profile)s has no incoming server. Add one or set "
                      "this mailbox's incoming email to None, then test again.")
                   if direction == "incoming" else
                   N_("The server profile %(profile)s has no outgoing server. Add one or set "
                      "this mailbox's outgoing email to None, then test again."))
        return DirectionResult(False, message % values, "not_configured")
    try:
        tested = for_direction(protocol, direction)
    except ConnectorError as exc:
        return DirectionResult(False, exc.message, exc.code)
    run = _test_incoming if direction == "incoming" else _test_outgoing
    return run(mailbox, tested)


WHAT = {"appointment": N_("calendar"), "contact": N_("address book"), "task": N_("task list")}


def test_items(mailbox: Mailbox) -> DirectionResult | None:
    """None when the mailbox does not sync appointments, contacts and tasks."""
    if mailbox.acts_method != "server_side_sync":
        return None
    why = why_not_synced(mailbox)
    if why:
        return DirectionResult(False, N_("Appointments, contacts and tasks cannot sync: "
                                         "%(problem)s.") % {"problem": why}, "not_syncable")
    p = authz.principal(mailbox.user)
    kinds = [k for k in ITEM_KINDS if p.has(PRIVILEGES[k])]
    missing = [authz.NAMED_PRIVILEGES[PRIVILEGES[k]] for k in ITEM_KINDS if k not in kinds]
    if not kinds:
        return DirectionResult(False, N_("%(user)s has none of the privileges %(privileges)s: "
                                         "give them a role that has them.") % {
                                             "user": mailbox.user.full_name,
                                             "privileges": ", ".join(missing)}, "no_privilege")
    try:
        profile = accounts.items_profile(mailbox)
        store_class = connectors.item_store(profile.incoming_protocol)
        found = []
        with store_class(accounts.items_account(mailbox)) as store:
            for kind in kinds:
                collection = next(c for c in store.collections(kind) if c.default)
                values = {"what": WHAT[kind], "name": collection.name, "profile": profile.name}
                for feature, advice in (
                        ("changes", N_('The %(what)s "%(name)s" on %(profile)s cannot tell what '
                                       "changed in it (no WebDAV sync-collection, RFC 6578): "
                                       "upgrade the server or choose one that has it.")),
                        ("write", N_('The %(what)s "%(name)s" on %(profile)s cannot be written '
                                     "by this account: give it write access."))):
                    if feature not in collection.features:
                        return DirectionResult(False, advice % values, f"no_{feature}")
                found.append(N_('%(what)s "%(name)s"') % values)
    except ConnectorError as exc:
        service_accounts.hold(profile, "incoming", exc)
        return DirectionResult(False, N_("Appointments, contacts and tasks on %(profile)s: "
                                         "%(problem)s") % {"profile": profile.name,
                                                           "problem": exc.message}, exc.code)
    message = N_("Syncs with the %(stores)s on %(profile)s.") % {
        "stores": ", ".join(found), "profile": profile.name}
    if missing:
        message += " " + N_("Not synced, for want of a privilege: %(privileges)s.") % {
            "privileges": ", ".join(missing)}
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
        reason = N_("Nothing to test: the mailbox neither receives nor sends email nor syncs "
                    "appointments, contacts and tasks through server-side synchronization.")
    elif not any(r.ok for r in tested):
        reason = N_("The mailbox stays disabled until every test succeeds.")
    elif not approved:
        reason = N_("The email address %(address)s must be approved by an administrator "
                    "before the mailbox is enabled.") % {"address": mailbox.email_address}
    else:
        reason = ""
    enabled = not reason
    now = utcnow()
    mailbox.incoming_enabled = result_in is None or result_in.ok
    mailbox.outgoing_enabled = result_out is None or result_out.ok
    mailbox.incoming_status, mailbox.outgoing_status = _status(result_in), _status(result_out)
    mailbox.incoming_message = result_in.message if result_in else None
    mailbox.outgoing_message = result_out.message if result_out else None
    mailbox.acts_enabled = result_acts is None or result_acts.ok
    mailbox.acts_status = _status(result_acts)
    mailbox.acts_message = result_acts.message if result_acts else None
    mailbox.tested_on = now
    mailbox.enabled = enabled
    mailbox.disabled_reason = None if enabled else reason
    if enabled:
        mailbox.consecutive_failures = 0
        mailbox.next_sync_on = now  # the first sync comes at once: a worker is woken for it
        scheduler.ask_for_sync([mailbox.id])
        db.session.expire(mailbox, ["sync_requested"])
    db.session.flush()
    log.info("Test & Enable of mailbox %s: incoming %s, outgoing %s, enabled %s", mailbox.id,
             mailbox.incoming_status, mailbox.outgoing_status, enabled)
    return TestResult(result_in, result_out, enabled, reason or _enabled_for(mailbox),
                      result_acts)


def _enabled_for(mailbox: Mailbox) -> str:
    failed = [d for d, on in (("incoming", mailbox.incoming_enabled),
                              ("outgoing", mailbox.outgoing_enabled)) if not on]
    values = {"address": mailbox.email_address}
    if not failed:
        said = N_("The mailbox %(address)s is enabled.") % values
    elif failed == ["incoming"]:
        said = N_("The mailbox %(address)s is enabled for outgoing email only: its incoming "
                  "test failed. Fix what it says and test again to turn it on.") % values
    else:
        said = N_("The mailbox %(address)s is enabled for incoming email only: its outgoing "
                  "test failed. Fix what it says and test again to turn it on.") % values
    if mailbox.acts_enabled:
        return said
    return said + " " + N_("Its appointments, contacts and tasks stay off: their test failed. "
                           "Fix what it says and test again to turn them on.")


test_and_enable.__test__ = False  # a service, not a pytest test
