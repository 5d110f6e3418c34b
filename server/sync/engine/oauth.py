"""OAuth 2 access tokens for XOAUTH2 sign-ins (Microsoft 365 IMAP, POP and SMTP) and for
Microsoft Graph, from Microsoft Entra ID through ``msal``.

Two ways, chosen per mailbox: a mailbox with a stored refresh token (a person consented
for it) gets a delegated token with the protocol's ``*.AccessAsUser.All``/``SMTP.Send``
scope; otherwise the server profile's app signs in on its own (client credentials, the
``https://outlook.office365.com/.default`` scope, with the app granted access to the
mailboxes in Exchange). A refresh token Entra ID rotates is written back to the mailbox
(the caller's transaction saves it).

EWS ("ews", Exchange Online's EWS or a hybrid Exchange Server that takes Entra ID tokens)
uses the same ``https://outlook.office365.com/.default`` scope app-only (the app's
``full_access_as_app`` application permission; the connector impersonates the mailbox) and
``EWS.AccessAsUser.All`` delegated.

Graph ("graph") uses the ``https://graph.microsoft.com/.default`` scope app-only (the Graph
application permissions an admin consented to) and ``Mail.ReadWrite``/``Mail.Send``
delegated (a refresh token a user's on-behalf-of sign-in left on their own mailbox:
``exchange_on_behalf_of``).

The token endpoint comes from the profile's tenant (``https://login.microsoftonline.com/
<tenant>``) or, for a national cloud or a test double, from the profile setting
``oauth_authority`` (also read as ``authority_url``); ``oauth_ca_file`` names extra
certificate authorities to trust for it. The client credential is the profile's client
secret, or a certificate: a PEM private key stored in the secret's place with the setting
``oauth_certificate_thumbprint`` (hex SHA-1 of the certificate).
Tokens are kept in this process until five minutes before they expire (halfway through
their lifetime when that is shorter). Tokens and secrets
are never logged.
"""
from __future__ import annotations

import functools
import hashlib
import threading
import time

import msal
import requests

from server.sync.connectors.base import ConnectorError

APP_SCOPES = ["https://outlook.office365.com/.default"]
APP_SCOPES_BY_PROTOCOL = {"graph": ["https://graph.microsoft.com/.default"]}
DELEGATED_SCOPES = {
    "imap": ["https://outlook.office.com/IMAP.AccessAsUser.All"],
    "pop3": ["https://outlook.office.com/POP.AccessAsUser.All"],
    "smtp": ["https://outlook.office.com/SMTP.Send"],
    "ews": ["https://outlook.office365.com/EWS.AccessAsUser.All"],
    "graph": ["https://graph.microsoft.com/Mail.ReadWrite",
              "https://graph.microsoft.com/Mail.Send"],
}
# Errors that a person must fix (consent, secret, grant): the mailbox stops at once.
AUTH_ERRORS = {"invalid_client", "invalid_grant", "unauthorized_client", "invalid_scope",
               "consent_required", "interaction_required", "invalid_request",
               "unsupported_grant_type", "access_denied"}
EARLY_RENEWAL = 300  # seconds before expiry when a cached token is renewed

_lock = threading.Lock()
_tokens: dict[tuple, tuple[str, float]] = {}  # key -> (token, when it is renewed)
_apps: dict[tuple, msal.ConfidentialClientApplication] = {}


def authority_of(profile) -> str:
    custom = _custom_authority(profile)
    if custom:
        return custom.rstrip("/")
    if not profile.oauth_tenant:
        raise ConnectorError("oauth_not_configured", f"The server profile {profile.name} has "
                             "no Microsoft Entra tenant for OAuth.", severity="auth")
    return f"https://login.microsoftonline.com/{profile.oauth_tenant}"


def _custom_authority(profile) -> str | None:
    settings = profile.settings or {}
    return settings.get("oauth_authority") or settings.get("authority_url") or None


def _credential(profile):
    """The client secret, or a certificate credential when the secret holds a PEM key."""
    secret = profile.oauth_client_secret
    thumbprint = (profile.settings or {}).get("oauth_certificate_thumbprint")
    if thumbprint and secret.lstrip().startswith("-----BEGIN"):
        return {"private_key": secret, "thumbprint": thumbprint}
    return secret


def _app(profile, authority: str) -> msal.ConfidentialClientApplication:
    if not profile.oauth_client_id or not profile.oauth_client_secret:
        raise ConnectorError("oauth_not_configured", f"The server profile {profile.name} needs "
                             "an application (client) id and a client secret for OAuth.",
                             severity="auth")
    settings = profile.settings or {}
    verify = settings.get("oauth_ca_file") or True
    secret_hash = hashlib.sha256(profile.oauth_client_secret.encode()).hexdigest()
    key = (authority, profile.oauth_client_id, secret_hash, verify)
    with _lock:
        app = _apps.get(key)
    if app is None:
        custom = bool(_custom_authority(profile))
        timeout = float(settings.get("timeout", 30))
        http = requests.Session()
        # Per request: requests lets REQUESTS_CA_BUNDLE override a session's own verify.
        http.request = functools.partial(http.request, verify=verify, timeout=timeout)
        try:
            app = msal.ConfidentialClientApplication(
                profile.oauth_client_id, client_credential=_credential(profile),
                authority=authority, validate_authority=not custom,
                instance_discovery=False if custom else None, http_client=http)
        except (ValueError, requests.RequestException) as exc:
            raise ConnectorError("oauth_unreachable", f"The sign-in service at {authority} "
                                 f"could not be reached ({_first_line(exc)}).",
                                 severity="mailbox", retry_after=300) from None
        with _lock:
            _apps[key] = app
    return app


def _first_line(value) -> str:
    text = str(value or "").strip()
    return text.splitlines()[0][:300] if text else type(value).__name__


def access_token(mailbox, protocol: str, *, now: float | None = None, fresh: bool = False,
                 with_renewal: bool = False):
    """An access token for ``mailbox`` to sign in to ``protocol`` ("imap", "pop3", "smtp")
    with XOAUTH2, or to call Microsoft Graph ("graph") or EWS ("ews"). ``fresh`` skips the
    cached token (it was refused). ``with_renewal``: (token, the time it is renewed, in epoch
    seconds: ``EARLY_RENEWAL`` before it expires), for a client that renews on its own.
    Raises ``ConnectorError`` (severity ``auth`` when a person must act)."""
    profile = mailbox.server_profile
    authority = authority_of(profile)
    delegated = bool(mailbox.oauth_refresh_token)
    scopes = list((profile.settings or {}).get("oauth_scopes") or
                  (DELEGATED_SCOPES.get(protocol, APP_SCOPES) if delegated
                   else APP_SCOPES_BY_PROTOCOL.get(protocol, APP_SCOPES)))
    cache_key = (authority, profile.oauth_client_id, mailbox.id if delegated else None,
                 tuple(scopes))
    now = time.time() if now is None else now
    with _lock:
        cached = _tokens.get(cache_key)
    if cached and cached[1] > now and not fresh:
        return cached if with_renewal else cached[0]
    app = _app(profile, authority)
    try:
        if delegated:
            result = app.acquire_token_by_refresh_token(mailbox.oauth_refresh_token, scopes=scopes)
        else:
            if fresh:  # msal keeps app tokens too: the refused one must not come back
                _drop_app_tokens(app)
            result = app.acquire_token_for_client(scopes=scopes)
    except (ValueError, requests.RequestException) as exc:
        raise ConnectorError("oauth_unreachable", f"The sign-in service at {authority} could "
                             f"not be reached ({_first_line(exc)}).", severity="mailbox",
                             retry_after=300) from None
    if "access_token" not in result:
        error = result.get("error") or "unknown_error"
        detail = _first_line(result.get("error_description")) or error
        whose = f"the mailbox {mailbox.email_address}" if delegated else f"the app of {profile.name}"
        raise ConnectorError(
            "oauth_failed", f"Microsoft Entra ID gave no access token for {whose} ({detail}).",
            severity="auth" if error in AUTH_ERRORS else "mailbox",
            retry_after=None if error in AUTH_ERRORS else 300)
    if delegated and result.get("refresh_token") and result["refresh_token"] != mailbox.oauth_refresh_token:
        mailbox.oauth_refresh_token = result["refresh_token"]
    kept = _keep(cache_key, result, now)
    return kept if with_renewal else kept[0]


def _keep(cache_key: tuple, result: dict, now: float) -> tuple[str, float]:
    """Cache an issued token until it is renewed: ``EARLY_RENEWAL`` before it expires, or
    halfway through a shorter lifetime."""
    lifetime = float(result.get("expires_in") or 3600)
    kept = (result["access_token"], now + lifetime - min(EARLY_RENEWAL, lifetime / 2))
    with _lock:
        _tokens[cache_key] = kept
    return kept


def _drop_app_tokens(app) -> None:
    cache = app.token_cache
    for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
        cache.remove_at(entry)


def exchange_on_behalf_of(mailbox, user_assertion: str) -> None:
    """A user connects their own mailbox for delegated Graph access: the add-in's SSO token
    (``user_assertion``) is exchanged on behalf of the user through the mailbox's server
    profile app, and the refresh token Entra ID returns is kept on the mailbox (the caller
    checks that the mailbox is the user's own, and commits)."""
    profile = mailbox.server_profile
    authority = authority_of(profile)
    app = _app(profile, authority)
    try:
        result = app.acquire_token_on_behalf_of(user_assertion, DELEGATED_SCOPES["graph"])
    except (ValueError, requests.RequestException) as exc:
        raise ConnectorError("oauth_unreachable", f"The sign-in service at {authority} could "
                             f"not be reached ({_first_line(exc)}).", severity="mailbox",
                             retry_after=300) from None
    if "access_token" not in result or not result.get("refresh_token"):
        detail = _first_line(result.get("error_description")) or result.get("error") or \
            "no refresh token was returned"
        raise ConnectorError("oauth_failed", "Microsoft Entra ID did not grant access to the "
                             f"mailbox {mailbox.email_address} on your behalf ({detail}).",
                             severity="auth")
    mailbox.oauth_refresh_token = result["refresh_token"]
    _keep((authority, profile.oauth_client_id, mailbox.id, tuple(DELEGATED_SCOPES["graph"])),
          result, time.time())


def forget_tokens() -> None:
    """Drop cached tokens and apps (after a profile's secret changes; in tests)."""
    with _lock:
        _tokens.clear()
        _apps.clear()
