"""Office single sign-on for the add-in: validate the access token Outlook gives the pane
(``Office.auth.getAccessToken``) and map it to a CRM user; exchange it on behalf of the user
for a Microsoft Graph token (msal's on-behalf-of flow) where the server needs Graph.

SSO is configured when ``REGARDING_SSO_CLIENT_ID`` and ``REGARDING_SSO_TENANT`` are set (the
embedded default has neither: the pane then signs in through the server's own dialog). A
token is accepted when:

* it is an RS256 JWT signed by one of the tenant's keys (the JWKS named by the tenant's
  OpenID configuration, cached for ``KEYS_TTL``; a key id we do not know triggers one refetch,
  at most every ``REFETCH_MIN_INTERVAL``, which is how Microsoft's key rotation is followed);
* its audience is the add-in's client id or its Application ID URI (``REGARDING_SSO_RESOURCE``,
  else ``api://<host of REGARDING_BASE_URL>/<client id>``);
* its issuer is the tenant's, v2 (``https://login.microsoftonline.com/<tid>/v2.0``) or v1
  (``https://sts.windows.net/<tid>/``), ``tid`` being the configured tenant's id;
* it has not expired (``LEEWAY`` seconds of clock skew allowed) and carries the delegated
  scope ``access_as_user``;
* its tenant id and object id (``tid`` + ``oid``) are linked to an active user; the first
  sign-in of an account makes that link, to the user whose address its
  ``preferred_username``, ``upn`` or ``email`` names, once (a user has one link; a later
  change of address in Entra, or someone else taking that address, changes nothing).

``REGARDING_SSO_TENANT`` is one tenant (its id or a verified domain); multi-tenant values
(``common``, ``organizations``) are refused, since any tenant could then present a token for
an address it chooses. The HTTP fetch of metadata and keys goes through an injectable
``fetcher`` (tests serve locally generated keys, without network).
"""
from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

import jwt
from flask import Flask, current_app
from sqlalchemy import func, select

from server.i18n import N_
from server.mailkeys import normalize_address
from server.db import db
from server.errors import ServiceError
from server.security.models import SsoLink, User

log = logging.getLogger(__name__)

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"
SCOPE = "access_as_user"
LEEWAY = 60  # seconds of clock skew
KEYS_TTL = 24 * 3600  # Microsoft advises refreshing signing keys daily
REFETCH_MIN_INTERVAL = 300  # an unknown key id refetches at most this often
GRAPH_SCOPES = ("https://graph.microsoft.com/.default",)
MULTI_TENANT = {"common", "organizations", "consumers"}
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)

Fetcher = Callable[[str], dict]


class SsoRejected(ServiceError):
    """The Office sign-in token is not valid here."""
    status, code = 401, "unauthenticated"


class SsoTokenExpired(ServiceError):
    """The Office sign-in token expired: get a new one."""
    status, code = 401, "token_expired"


class SsoUnavailable(ServiceError):
    """Office sign-in cannot be verified right now: sign in with the dialog instead."""
    status, code = 401, "unauthenticated"


class OboFailed(ServiceError):
    """Microsoft did not grant a token on behalf of the user."""
    status, code = 401, "unauthenticated"

    def __init__(self, message: str, error: str, suberror: str | None = None):
        super().__init__(message)
        self.error, self.suberror = error, suberror


@dataclass(frozen=True)
class Settings:
    client_id: str
    tenant: str
    authority: str
    audiences: tuple[str, ...]
    client_secret: str | None

    @classmethod
    def from_config(cls, config) -> Settings | None:
        client_id = (config.get("REGARDING_SSO_CLIENT_ID") or "").strip()
        tenant = (config.get("REGARDING_SSO_TENANT") or "").strip()
        if not client_id or not tenant:
            return None
        authority = (config.get("REGARDING_SSO_AUTHORITY") or DEFAULT_AUTHORITY).rstrip("/")
        audiences = [client_id]
        resource = (config.get("REGARDING_SSO_RESOURCE") or "").strip()
        if resource:
            audiences.append(resource)
        host = urlsplit(config.get("REGARDING_BASE_URL") or "").netloc
        if host:
            audiences.append(f"api://{host}/{client_id}")
        return cls(client_id, tenant, authority, tuple(dict.fromkeys(audiences)),
                   config.get("REGARDING_SSO_CLIENT_SECRET") or None)


def http_fetcher(url: str) -> dict:
    """GET a JSON document over HTTPS (the default fetcher)."""
    import requests

    if not url.startswith("https://"):
        raise ValueError("only https URLs are fetched")
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    return response.json()


@dataclass
class _Keys:
    issuer: str  # the v2 issuer of the tenant, from its OpenID configuration
    tenant_id: str
    keys: dict[str, Any]  # kid -> public key
    fetched_at: float


class OfficeSso:
    """Validates Office SSO tokens for one application; holds the key cache."""

    def __init__(self, fetcher: Fetcher | None = None, http_client=None,
                 clock: Callable[[], float] = time.monotonic):
        self.fetcher = fetcher or http_fetcher
        self.http_client = http_client  # for msal (None: msal's own requests session)
        self.clock = clock
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], _Keys] = {}
        self._last_refetch: dict[tuple[str, str], float] = {}
        self._msal_apps: dict[tuple, Any] = {}

    # -- keys ----------------------------------------------------------------------------

    def _fetch_keys(self, s: Settings) -> _Keys:
        config_url = f"{s.authority}/{s.tenant}/v2.0/.well-known/openid-configuration"
        try:
            meta = self.fetcher(config_url)
            issuer, jwks_uri = meta["issuer"], meta["jwks_uri"]
            match = re.match(r"^https://[^/]+/([^/]+)/v2\.0/?$", issuer or "")
            if not match or not _GUID.match(match.group(1)):
                raise ValueError("the OpenID configuration names no single tenant")
            if not str(jwks_uri).startswith("https://"):
                raise ValueError("the key set is not served over https")
            jwks = self.fetcher(jwks_uri)
            keys = {}
            for jwk in jwks.get("keys", []):
                if jwk.get("kty") != "RSA" or not jwk.get("kid") or jwk.get("use", "sig") != "sig":
                    continue
                keys[jwk["kid"]] = jwt.PyJWK(jwk, algorithm="RS256").key
        except Exception as exc:  # network, JSON, or a malformed key set
            log.warning("Office SSO: could not load the tenant's signing keys (%s)",
                        type(exc).__name__)
            raise SsoUnavailable() from None
        return _Keys(issuer, match.group(1).lower(), keys, self.clock())

    def _keys(self, s: Settings, kid: str | None) -> tuple[_Keys, Any]:
        """The tenant's keys and the key ``kid``: cached; refetched when stale, or once when
        the key id is unknown (rotation), but never more often than REFETCH_MIN_INTERVAL."""
        cache_key = (s.authority, s.tenant)
        with self._lock:
            entry = self._cache.get(cache_key)
            now = self.clock()
            if entry is None or now - entry.fetched_at > KEYS_TTL:
                entry = self._cache[cache_key] = self._fetch_keys(s)
                self._last_refetch[cache_key] = now
            if kid not in entry.keys:
                last = self._last_refetch.get(cache_key, float("-inf"))
                if now - last >= REFETCH_MIN_INTERVAL:
                    self._last_refetch[cache_key] = now
                    entry = self._cache[cache_key] = self._fetch_keys(s)
            return entry, entry.keys.get(kid)

    # -- tokens --------------------------------------------------------------------------

    def validate(self, token: str, config=None) -> dict[str, Any]:
        """The claims of a valid Office SSO access token; SsoRejected / SsoTokenExpired /
        SsoUnavailable otherwise."""
        s = Settings.from_config(config if config is not None else current_app.config)
        if s is None:
            raise SsoRejected(N_("Office sign-in is not configured on this server."))
        if s.tenant.lower() in MULTI_TENANT:
            log.error("Office SSO: REGARDING_SSO_TENANT must name one tenant, not %r", s.tenant)
            raise SsoRejected(N_("Office sign-in is not configured on this server."))
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise SsoRejected(N_("The sign-in token is malformed.")) from None
        if header.get("alg") != "RS256":
            raise SsoRejected(N_("The sign-in token is not signed with RS256."))
        entry, key = self._keys(s, header.get("kid"))
        if key is None:
            raise SsoRejected(N_("The sign-in token is signed by a key the tenant does not publish."))
        try:
            claims = jwt.decode(token, key, algorithms=["RS256"], audience=list(s.audiences),
                                leeway=LEEWAY, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise SsoTokenExpired() from None
        except jwt.InvalidAudienceError:
            raise SsoRejected(N_("The sign-in token is for another application.")) from None
        except jwt.InvalidSignatureError:
            raise SsoRejected(N_("The sign-in token's signature is not valid.")) from None
        except jwt.InvalidTokenError as exc:
            raise SsoRejected(f"The sign-in token is not valid ({type(exc).__name__}).") from None
        if claims.get("iss") not in (entry.issuer, f"https://sts.windows.net/{entry.tenant_id}/"):
            raise SsoRejected(N_("The sign-in token was issued by another tenant."))
        if str(claims.get("tid", entry.tenant_id)).lower() != entry.tenant_id:
            raise SsoRejected(N_("The sign-in token was issued by another tenant."))
        scopes = str(claims.get("scp") or "").split()
        if SCOPE not in scopes:
            raise SsoRejected(f"The sign-in token does not carry the '{SCOPE}' scope.")
        return claims

    def user_for(self, claims: dict[str, Any]) -> User:
        """The active user the token's Microsoft Entra account (``tid`` + ``oid``, which never
        change) is linked to. The first sign-in links the account to the user whose address
        the token names (``preferred_username``, ``upn``, ``email``, in that order) if that
        user has no link yet; afterwards the (changeable) address no longer matters."""
        tid, oid = str(claims.get("tid") or "").lower(), str(claims.get("oid") or "").lower()
        if not _GUID.match(tid) or not _GUID.match(oid):
            raise SsoRejected(N_("The sign-in token does not name the account (tid, oid)."))
        link = db.session.get(SsoLink, (tid, oid))
        if link is not None:
            user = db.session.get(User, link.user_id)
            if user is None or not user.is_active:
                raise SsoRejected(N_("Your CRM account is disabled."))
            return user
        user = self._first_link_user(claims)
        taken = db.session.scalar(select(SsoLink).where(SsoLink.user_id == user.id))
        if taken is not None:
            log.warning("Office SSO: %s is linked to another Microsoft 365 account; refused "
                        "tenant %s object %s", user.email, tid, oid)
            raise SsoRejected("This CRM user is linked to another Microsoft 365 account. Ask "
                              "an administrator, or sign in with the dialog.")
        db.session.add(SsoLink(tenant_id=tid, object_id=oid, user_id=user.id))
        db.session.commit()  # before the request's own work: the link stands on its own
        log.info("Office SSO: linked %s to tenant %s object %s", user.email, tid, oid)
        return user

    @staticmethod
    def _first_link_user(claims: dict[str, Any]) -> User:
        candidates = []
        for claim in ("preferred_username", "upn", "email"):
            value = claims.get(claim)
            n = normalize_address(value) if isinstance(value, str) else None
            if n and n not in candidates:
                candidates.append(n)
        if candidates:
            users = db.session.scalars(select(User).where(
                func.lower(User.email).in_(candidates), User.is_active.is_(True))).all()
            by_address = {u.email.lower(): u for u in users}
            for n in candidates:
                if n in by_address:
                    return by_address[n]
        raise SsoRejected(N_("Your Microsoft 365 account is not a user of this CRM. "
                             "Ask an administrator to add you, or sign in with the dialog."))

    def authenticate(self, token: str) -> tuple[User, dict[str, Any]]:
        claims = self.validate(token)
        return self.user_for(claims), claims

    # -- on behalf of --------------------------------------------------------------------

    def _msal_app(self, s: Settings):
        import msal

        key = (s.client_id, s.tenant, s.authority, s.client_secret)
        with self._lock:
            app = self._msal_apps.get(key)
            if app is None:
                kwargs = {"http_client": self.http_client} if self.http_client is not None else {}
                app = msal.ConfidentialClientApplication(
                    s.client_id, client_credential=s.client_secret,
                    authority=f"{s.authority}/{s.tenant}", **kwargs)
                self._msal_apps[key] = app
            return app

    def acquire_token_on_behalf_of(self, user_assertion: str,
                                   scopes: tuple[str, ...] | list[str] = GRAPH_SCOPES,
                                   config=None) -> str:
        """Exchange the pane's SSO token for an access token to another API (Graph by
        default), as the user. msal caches the result per assertion."""
        s = Settings.from_config(config if config is not None else current_app.config)
        if s is None or not s.client_secret:
            raise OboFailed("On-behalf-of needs REGARDING_SSO_CLIENT_ID, REGARDING_SSO_TENANT "
                            "and REGARDING_SSO_CLIENT_SECRET.", "not_configured")
        result = self._msal_app(s).acquire_token_on_behalf_of(user_assertion, list(scopes))
        if "access_token" not in result:
            error = result.get("error", "unknown_error")
            suberror = result.get("suberror")
            log.info("Office SSO: on-behalf-of refused (%s%s)", error,
                     f"/{suberror}" if suberror else "")
            message = (N_("Consent is needed for this add-in to reach Microsoft 365 for you.")
                       if error in ("invalid_grant", "interaction_required") else
                       N_("Microsoft did not grant access on your behalf."))
            raise OboFailed(message, error, suberror)
        return result["access_token"]


def init_app(app: Flask, *, fetcher: Fetcher | None = None, http_client=None,
             clock: Callable[[], float] | None = None) -> OfficeSso:
    """Attach a validator (with its own key cache) to the application."""
    kwargs = {"clock": clock} if clock else {}
    sso = OfficeSso(fetcher, http_client, **kwargs)
    app.extensions["regarding_sso"] = sso
    return sso


def get(app: Flask | None = None) -> OfficeSso:
    app = app or current_app._get_current_object()
    sso = app.extensions.get("regarding_sso")
    if sso is None:
        sso = init_app(app)
    return sso


def is_configured(config=None) -> bool:
    return Settings.from_config(config if config is not None else current_app.config) is not None


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


def acquire_token_on_behalf_of(user_assertion: str,
                               scopes: tuple[str, ...] | list[str] = GRAPH_SCOPES) -> str:
    """The application's validator's on-behalf-of exchange (see OfficeSso)."""
    return get().acquire_token_on_behalf_of(user_assertion, scopes)
