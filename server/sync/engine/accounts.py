"""Build the connector ``Account`` for one mailbox and one direction from the mailbox and its
email server profile, as the protocol's connector or sender class declares it ``needs``:
host, port and security per direction, the credentials (the mailbox's own, or the
profile's service account), an XOAUTH2 access token when the profile signs in with OAuth,
a token provider (Graph, and EWS with OAuth), or the Maildir tree.
Secrets are decrypted by the model's column type and go only into the Account, never into
logs or error messages.

Service accounts: the connector signs in as ``service_username`` for every mailbox. A
server that lets one account act for others by a login form (Dovecot master users:
``sam@contoso.example*crm-service``) takes the profile setting ``service_login``, a format
with ``{address}`` and ``{service}`` (default ``{service}``).

A sign-in the server refused (``Refused``) is not tried again with the same credentials:
servers count failed sign-ins and lock the account out after a few (docs/mail-servers.md).
A profile's service account the server refused is not tried for any of its mailboxes
(``service_accounts.check``, before the credentials are used).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from server.sync import connectors
from server.sync.connectors.base import (RENEWING_TOKEN, XOAUTH2, Account, ConnectorError,
                                         Subscriptions)
from server.sync.engine import hosts, oauth, service_accounts
from server.sync.models import EmailServerProfile, Mailbox


REFUSAL_KEPT = 60.0  # seconds a refused sign-in stands for the mailbox's run


@dataclass(frozen=True)
class Refused:
    """A server refused a sign-in before the mailbox's run (an idle probe's, a push
    watcher's): ``error`` (severity ``auth``) for ``account``, at ``at``
    (``time.monotonic``). The run takes it as its own (``connector_factory``): it turns the
    mailbox off and says why, without signing in again with the same credentials."""

    error: ConnectorError
    account: Account
    at: float = field(default_factory=time.monotonic)

    def stale(self, now: float | None = None) -> bool:
        """Older than ``REFUSAL_KEPT`` seconds (at ``now``, ``time.monotonic``): old news."""
        return (time.monotonic() if now is None else now) - self.at > REFUSAL_KEPT

    def connector_factory(self, mailbox: Mailbox):
        """A connector factory for ``mailbox``'s run: the refusal again while the run's
        account is the one refused and the refusal is at most ``REFUSAL_KEPT`` seconds old;
        the protocol's connector otherwise (the credentials were changed since, or it is
        old news). None for a mailbox without a profile (its run says so)."""
        if mailbox.server_profile is None:
            return None
        real = connectors.incoming(mailbox.server_profile.incoming_protocol)

        def connect(account: Account):
            if not self.stale() and replace(account, timeout=self.account.timeout) == self.account:
                raise self.error
            return real(account)
        return connect


def _profile(mailbox: Mailbox) -> EmailServerProfile:
    profile = mailbox.server_profile
    if profile is None:
        raise ConnectorError("no_server_profile", f"The mailbox {mailbox.email_address} has no "
                             "email server profile: choose one and test again.", severity="auth")
    return profile


def protocol_of(mailbox: Mailbox, direction: str) -> str | None:
    if direction not in connectors.DIRECTIONS:
        raise ValueError(f"direction must be one of {connectors.DIRECTIONS}")
    profile = mailbox.server_profile
    if profile is None:
        return None
    return profile.incoming_protocol if direction == "incoming" else profile.outgoing_protocol


def credentials(mailbox: Mailbox, profile: EmailServerProfile) -> tuple[str, str | None]:
    """(login, password) for this mailbox."""
    if profile.use_service_account:
        if not profile.service_username:
            raise ConnectorError("no_credentials", f"The server profile {profile.name} uses a "
                                 "service account but names none.", severity="auth")
        form = (profile.settings or {}).get("service_login") or "{service}"
        login = form.format(address=mailbox.email_address, service=profile.service_username)
        return login, profile.service_password
    return mailbox.username or mailbox.email_address, mailbox.password


def account_for(mailbox: Mailbox, direction: str) -> Account:
    """The Account a connector (incoming) or sender (outgoing) needs for ``mailbox``: what
    its class declares it ``needs``."""
    profile = _profile(mailbox)
    protocol = protocol_of(mailbox, direction)
    if not protocol:
        raise ConnectorError("not_configured", f"The server profile {profile.name} has no "
                             f"{direction} protocol.", severity="auth")
    needs = connectors.for_direction(protocol, direction).needs
    settings = dict(profile.settings or {})
    timeout = float(settings.get("timeout", 30))
    if needs.store is not None:
        return _store_account(mailbox, profile, needs, settings, timeout)
    if settings.get("ews_url"):  # EWS without Autodiscover
        url = urlsplit(str(settings["ews_url"]))
        hosts.check_server(url.hostname, url.port)
    oauth2 = profile.auth_method == "oauth2"
    if needs.oauth_always or (oauth2 and needs.oauth != XOAUTH2):
        return _token_account(mailbox, protocol, direction, settings, timeout)
    if direction == "incoming":
        host, port, security = (profile.incoming_host, profile.incoming_port,
                                profile.incoming_security)
    else:
        host, port, security = (profile.outgoing_host, profile.outgoing_port,
                                profile.outgoing_security)
    hosts.check_server(host, port)
    service_accounts.check(profile, direction)
    login, password = credentials(mailbox, profile)
    token = None
    if oauth2:  # XOAUTH2: the token beside the login
        token, password = oauth.access_token(mailbox, protocol), None
        if profile.use_service_account:
            login = mailbox.email_address  # the app's token, the mailbox's name
    return Account(address=mailbox.email_address, host=host, port=port,
                   security=security or "tls", username=login, password=password,
                   oauth_token=token, settings=settings, timeout=timeout)


def items_profile(mailbox: Mailbox) -> EmailServerProfile:
    """``Mailbox.items_server_profile``, which must exist."""
    return mailbox.items_server_profile or _profile(mailbox)


def items_protocol(mailbox: Mailbox) -> str:
    return items_profile(mailbox).incoming_protocol


def _store_account(mailbox: Mailbox, profile: EmailServerProfile, needs, settings: dict,
                   timeout: float) -> Account:
    """A store on this machine (a Maildir tree): the mailbox's root in it."""
    if not profile.maildir_root:
        raise ConnectorError("not_configured", f"The server profile {profile.name} names no "
                             "Maildir store.", severity="auth")
    hosts.check_maildir(profile.maildir_root)
    root = needs.store(profile.maildir_root, mailbox.email_address)
    return Account(address=mailbox.email_address, root=str(root), settings=settings,
                   timeout=timeout)


def items_account(mailbox: Mailbox) -> Account:
    """The Account the mailbox's item store (``connectors.item_store``) needs."""
    profile = items_profile(mailbox)
    store = connectors.item_store(profile.incoming_protocol)
    settings = dict(profile.settings or {})
    timeout = float(settings.get("timeout", 30))
    if store.needs.store is not None:
        return _store_account(mailbox, profile, store.needs, settings, timeout)
    if store.needs.oauth_always or (profile.auth_method == "oauth2" and
                                    store.needs.oauth != XOAUTH2):
        return _token_account(mailbox, profile.incoming_protocol, "incoming", settings, timeout,
                              served_by=store)
    if settings.get("url"):
        url = urlsplit(str(settings["url"]))
        hosts.check_server(url.hostname, url.port)
    else:
        hosts.check_server(profile.incoming_host, profile.incoming_port)
    service_accounts.check(profile, "incoming")
    login, password = credentials(mailbox, profile)
    return Account(address=mailbox.email_address, host=profile.incoming_host,
                   port=profile.incoming_port, security=profile.incoming_security or "tls",
                   username=login, password=password, settings=settings, timeout=timeout)


def _token_account(mailbox: Mailbox, protocol: str, direction: str, settings: dict,
                   timeout: float, served_by=None) -> Account:
    """A Microsoft service (Graph; EWS with OAuth): the mailbox's address and an Entra ID
    access token on demand, app-only (the profile's app, which acts for the mailbox) or
    delegated (the mailbox's own refresh token). A class that ``needs`` a renewing token is
    given the time it must be renewed with it, so a long session (a push watcher's stream)
    renews it before it expires. A connector that keeps change subscriptions
    (``Subscriptions``) has them kept up when a sync's connector closes."""
    served_by = served_by or connectors.for_direction(protocol, direction)
    renewing = served_by.needs.oauth == RENEWING_TOKEN

    def token(fresh: bool = False):
        return oauth.access_token(mailbox, protocol, fresh=fresh, with_renewal=renewing)

    if renewing:
        token()  # a token that cannot be had stops here, with the alert that says why
    on_close = None
    if issubclass(served_by, Subscriptions):
        from server.sync.workers import graph_push
        mailbox_id = mailbox.id

        def on_close(opened: Subscriptions) -> None:
            graph_push.after_sync(mailbox_id, opened)
    return Account(address=mailbox.email_address, settings=settings, timeout=timeout,
                   token_provider=token, on_close=on_close,
                   delegated=bool(mailbox.oauth_refresh_token))
