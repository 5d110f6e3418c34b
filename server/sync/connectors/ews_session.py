"""The EWS session (exchangelib) the EWS connector (``ews``) and the EWS item store
(``ews_items``) share: the endpoint (``ews_url`` or Autodiscover), the sign-in (NTLM, Basic,
or an Entra ID token from ``Account.token_provider``, app-only tokens impersonating the
mailbox), the Exchange version, the connection limit, and exchangelib's errors as
``ConnectorError``s (``ews_errors``). The profile settings are described in ``ews``."""
from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timezone

from exchangelib import (BASIC, DELEGATE, IMPERSONATION, NTLM, OAUTH2, Configuration,
                         Credentials, Version)
from exchangelib import Account as EwsAccount
from exchangelib.account import Identity
from exchangelib.credentials import OAuth2AuthorizationCodeCredentials
from exchangelib.folders.roots import Root
from exchangelib.properties import DistinguishedFolderId
from exchangelib.properties import Mailbox as EwsMailbox
from exchangelib.protocol import Protocol
from exchangelib.services.common import EWSService
from exchangelib.version import VERSIONS
from oauthlib.oauth2 import OAuth2Token
from requests import Response

from server.sync.connectors.base import RENEWING_TOKEN, Account, ConnectorError, Needs
from server.sync.connectors.common import Session
from server.sync.connectors.ews_errors import translated

AUTH_TYPES = {"ntlm": NTLM, "basic": BASIC, "oauth": OAUTH2}


class _Whole:
    """A response body already in memory, as ``EWSService._get_soap_parts`` reads one."""

    def __init__(self, content: bytes):
        self.content = content

    def iter_content(self) -> bytes:
        return self.content


_soap_parts = EWSService._get_soap_parts.__func__


def _soap_parts_whole(cls, response):
    """exchangelib (5.6) parses each SOAP reply from ``response.iter_content()``, whose chunk
    is one byte by default: a generator step per byte, which made reading mail whole cost
    16 times the CPU (a GetItem's base64 MIME; ``bench/ews_read.py``). A reply that is not
    streamed is in memory whole: it is parsed from there. (Streamed ones,
    GetStreamingEvents', keep their own.)"""
    if isinstance(response, Response):
        response = _Whole(response.content)
    return _soap_parts(cls, response)


EWSService._get_soap_parts = classmethod(_soap_parts_whole)


def _version(name: str | None) -> Version | None:
    """``Exchange2016`` (an EWS API version, as exchangelib names them) -> the Version
    exchangelib would learn by asking (saves the probe)."""
    if not name:
        return None
    # VERSIONS is newest first: the first match is the newest build of that API version.
    for build, api_version, _ in VERSIONS:
        if api_version == name:
            return Version(build=build, api_version=api_version)
    raise ConnectorError("bad_setting", f"Unknown Exchange version {name!r} in the server "
                         "profile (e.g. Exchange2013_SP1, Exchange2016).", severity="auth")


def utc(value) -> datetime | None:
    """An exchangelib EWSDateTime (or a datetime) as a plain aware datetime in UTC."""
    if not isinstance(value, datetime):
        return None
    value = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                     value.microsecond, tzinfo=value.tzinfo and timezone(value.utcoffset()))
    return value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)


class EwsSession(Session):
    """A ``Session`` whose connection is an exchangelib ``Account`` for one mailbox."""

    needs = Needs(oauth=RENEWING_TOKEN)  # ews_url or Autodiscover; Exchange keeps Sent copies
    _client: EwsAccount | None

    def __init__(self, account: Account):
        super().__init__(account)
        self.settings = account.settings or {}
        self._root_folder: Root | None = None

    # -- session --------------------------------------------------------------------------

    @property
    def where(self) -> str:
        return self.settings.get("ews_url") or f"Autodiscover for {self.account.address}"

    @property
    def _oauth(self) -> bool:
        return bool(self.account.oauth_token or self.account.token_provider)

    @property
    def _app_only(self) -> bool:
        return bool(self.account.token_provider and not self.account.delegated)

    def _credentials(self):
        account = self.account
        if account.token_provider:
            identity = Identity(primary_smtp_address=account.address) if self._app_only else None
            return _ProvidedToken(account.token_provider, identity)
        if account.oauth_token:
            return OAuth2AuthorizationCodeCredentials(
                access_token={"access_token": account.oauth_token, "token_type": "Bearer"})
        return Credentials(account.username or account.address, account.password or "")

    def _connect(self) -> None:
        account = self.account
        auth_name = "oauth" if self._oauth else self.settings.get("auth_type")
        if auth_name and auth_name not in AUTH_TYPES:
            raise ConnectorError("bad_setting", f"Unknown EWS sign-in {auth_name!r}: choose "
                                 "NTLM, Basic or OAuth in the server profile.", severity="auth")
        if auth_name == "oauth" and not self._oauth:
            raise ConnectorError("oauth_not_configured", f"The server profile signs in to "
                                 f"{self.where} with OAuth, but no access token was issued for "
                                 f"{account.address}.", severity="auth")
        try:
            self._sign_in(auth_name)
        except ConnectorError as exc:
            if exc.code != "auth_failed" or not account.token_provider:
                raise
            # A token the server refuses before it expires (revoked, or the cache outlived
            # it): once more with a token just issued.
            account.token_provider(fresh=True)
            self._sign_in(auth_name)

    def _sign_in(self, auth_name: str | None) -> None:
        account = self.account
        access = IMPERSONATION if self.settings.get("impersonation") or self._app_only \
            else DELEGATE
        url = self.settings.get("ews_url")
        with self._errors("connecting"):
            config = Configuration(
                service_endpoint=url or None, credentials=self._credentials(),
                auth_type=AUTH_TYPES.get(auth_name),
                version=_version(self.settings.get("exchange_version")),
                max_connections=int(self.settings.get("max_connections", 4)))
            _forget_other_sign_in(config)
            # Without a URL, Autodiscover finds the endpoint from the mailbox address.
            self._client = EwsAccount(primary_smtp_address=account.address, config=config,
                                      autodiscover=not url, access_type=access)
            self._client.protocol.TIMEOUT = account.timeout  # seconds per request
            self._client.version  # noqa: B018 - asks the server now: sign-in problems show here

    def _abort(self, ews: EwsAccount) -> None:
        ews.protocol.close()

    @property
    def ews(self) -> EwsAccount:
        return self.client

    def _errors(self, what: str) -> AbstractContextManager[None]:
        """exchangelib's exceptions as ``ConnectorError``s with a severity (``ews_errors``)."""
        return translated(what, self.where, self.account, oauth=self._oauth,
                          app_only=self._app_only)

    def _mailbox(self) -> EwsMailbox:
        return EwsMailbox(email_address=self.account.address)

    def _root(self) -> Root:
        """The hierarchy's root as exchangelib's folders need one (made here, not fetched)."""
        if self._root_folder is None or self._root_folder.account is not self.ews:
            self._root_folder = Root(account=self.ews, _distinguished_id=DistinguishedFolderId(
                id="root", mailbox=self._mailbox()))
        return self._root_folder


class _ProvidedToken(OAuth2AuthorizationCodeCredentials):
    """exchangelib's OAuth credentials with the token from our token provider (msal, cached
    in ``server.sync.engine.oauth``). The token carries the time it must be renewed: once it has
    passed, the OAuth session refuses to send it and exchangelib calls ``refresh`` and tries
    again, so a session of any length keeps a valid token. ``identity`` (app-only tokens):
    the mailbox exchangelib impersonates."""

    def __init__(self, provider, identity: Identity | None = None):
        self._provider = provider
        super().__init__(identity=identity, access_token=self._fetch())

    def _fetch(self) -> OAuth2Token:
        token, renew_at = self._provider()
        return OAuth2Token({"access_token": token, "token_type": "Bearer",
                            "expires_at": renew_at})

    def refresh(self, session) -> None:
        self.access_token = self._fetch()


def _forget_other_sign_in(config: Configuration) -> None:
    """exchangelib keeps one protocol (its sessions, signed in) per URL and credentials and
    leaves the sign-in kind out of that key: a profile changed from Basic to NTLM (or back)
    would go on signing in the old way in this process until it restarts. A kept protocol
    that signs in another way than ``config`` asks is closed and forgotten."""
    if config.service_endpoint is None or config.auth_type is None:
        return
    try:
        kept, _since = Protocol[config]
    except KeyError:
        return
    if isinstance(kept, Exception) or kept.auth_type == config.auth_type:
        return
    kept.close()
    try:
        del Protocol[config]
    except KeyError:  # another thread forgot it first
        pass
