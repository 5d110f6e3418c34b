"""Build the connector ``Account`` for one mailbox and one direction from the mailbox and its
email server profile: host, port and security per direction, the credentials (the
mailbox's own, or the profile's service account), an XOAUTH2 access token when the profile
signs in with OAuth, a token provider (Graph, and EWS with OAuth), or the Maildir tree.
Secrets are decrypted by the model's column type and go only into the Account, never into
logs or error messages.

Service accounts: the connector signs in as ``service_username`` for every mailbox. A
server that lets one account act for others by a login form (Dovecot master users:
``sam@contoso.example*crm-service``) takes the profile setting ``service_login``, a format
with ``{address}`` and ``{service}`` (default ``{service}``).
"""
from __future__ import annotations

from urllib.parse import urlsplit

from server.sync.engine import hosts, oauth
from server.sync.connectors.base import Account, ConnectorError
from server.sync.models import EmailServerProfile, Mailbox

DIRECTIONS = ("incoming", "outgoing")


def _profile(mailbox: Mailbox) -> EmailServerProfile:
    profile = mailbox.server_profile
    if profile is None:
        raise ConnectorError("no_server_profile", f"The mailbox {mailbox.email_address} has no "
                             "email server profile: choose one and test again.", severity="auth")
    return profile


def protocol_of(mailbox: Mailbox, direction: str) -> str | None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
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
    """The Account a connector (incoming) or sender (outgoing) needs for ``mailbox``."""
    profile = _profile(mailbox)
    protocol = protocol_of(mailbox, direction)
    if not protocol:
        raise ConnectorError("not_configured", f"The server profile {profile.name} has no "
                             f"{direction} protocol.", severity="auth")
    settings = dict(profile.settings or {})
    timeout = float(settings.get("timeout", 30))
    if protocol == "maildir":
        from server.sync.connectors.maildir import mailbox_root
        if not profile.maildir_root:
            raise ConnectorError("not_configured", f"The server profile {profile.name} names no "
                                 "Maildir store.", severity="auth")
        hosts.check_maildir(profile.maildir_root)
        root = (mailbox_root(profile.maildir_root, mailbox.email_address)
                if direction == "incoming" else profile.maildir_root)
        return Account(address=mailbox.email_address, root=str(root), settings=settings,
                       timeout=timeout)
    if protocol == "ews" and settings.get("ews_url"):
        url = urlsplit(str(settings["ews_url"]))
        hosts.check_server(url.hostname, url.port)
    if protocol == "graph":
        return _graph_account(mailbox, direction, settings, timeout)
    if protocol == "ews" and profile.auth_method == "oauth2":
        return _ews_oauth_account(mailbox, settings, timeout)
    if direction == "incoming":
        host, port, security = (profile.incoming_host, profile.incoming_port,
                                profile.incoming_security)
    else:
        host, port, security = (profile.outgoing_host, profile.outgoing_port,
                                profile.outgoing_security)
    hosts.check_server(host, port)
    login, password = credentials(mailbox, profile)
    token = None
    if profile.auth_method == "oauth2" and protocol in ("imap", "pop3", "smtp"):
        token, password = oauth.access_token(mailbox, protocol), None
        if profile.use_service_account:
            login = mailbox.email_address  # the app's token, the mailbox's name
    return Account(address=mailbox.email_address, host=host, port=port,
                   security=security or "tls", username=login, password=password,
                   oauth_token=token, settings=settings, timeout=timeout)


def _ews_oauth_account(mailbox: Mailbox, settings: dict, timeout: float) -> Account:
    """EWS with an Entra ID token: app-only (the profile's app, which impersonates the
    mailbox) or delegated (the mailbox's own refresh token). The connector asks for the
    token with the time it must be renewed, so a long session (a push watcher's stream)
    renews it before it expires."""
    def token(fresh: bool = False) -> tuple[str, float]:
        return oauth.access_token(mailbox, "ews", fresh=fresh, with_renewal=True)

    token()  # a token that cannot be had stops here, with the alert that says why
    settings["_ews_app_only"] = not mailbox.oauth_refresh_token
    return Account(address=mailbox.email_address, settings=settings, timeout=timeout,
                   token_provider=token)


def _graph_account(mailbox: Mailbox, direction: str, settings: dict, timeout: float) -> Account:
    """Microsoft Graph: the mailbox's address, an access token on demand (app-only through
    the profile's app, or delegated through the mailbox's own refresh token) and, for
    incoming syncs, the upkeep of change-notification subscriptions when the connector
    closes."""
    def token(fresh: bool = False) -> str:
        return oauth.access_token(mailbox, "graph", fresh=fresh)

    on_close = None
    if direction == "incoming":
        from server.sync.workers import graph_push
        mailbox_id = mailbox.id

        def on_close(connector) -> None:
            graph_push.after_sync(mailbox_id, connector)
    settings["_graph_delegated"] = bool(mailbox.oauth_refresh_token)
    return Account(address=mailbox.email_address, settings=settings, timeout=timeout,
                   token_provider=token, on_close=on_close)
