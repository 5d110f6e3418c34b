"""Microsoft Graph over HTTP for one mailbox (``GraphClient``): the access token, the
per-mailbox limits, retries after ``Retry-After``, ``$batch`` requests and errors that say
what to fix; ``GraphSession`` is the ``Session`` whose connection is a signed-in client,
shared by the Graph connector (``graph``) and sender (``graph_send``).

**Access.** Every call carries an access token from ``Account.token_provider``: app-only
(msal client credentials for the server profile's app, ``https://graph.microsoft.com/
.default``) or delegated (the mailbox's own refresh token from the add-in's on-behalf-of
sign-in). A refused token (401) is renewed once and the call repeated.

**Limits** (per mailbox, shared by every connector and sender in this process): at most
``graph_max_concurrent`` (4) requests at once, ``graph_request_budget`` (10,000) requests
per ``graph_budget_window`` (600) seconds, each request inside a batch counted; 429, 503
and 504 are retried after their ``Retry-After`` (at most ``graph_max_wait`` seconds, a few
times), then raised with ``retry_after`` so the engine backs the mailbox off.

**Errors** say what to fix: a 403 from the Exchange application access policy, missing
admin consent (application permissions), a mailbox that does not exist or is not in
Exchange Online. The base URL is ``graph_url`` (default ``https://graph.microsoft.com/v1.0``,
https only); ``ca_file`` adds certificate authorities to trust. Next links are followed
only under that base URL, so a token is never sent elsewhere. Tokens, message bodies and
secrets are never logged.
"""
from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import requests

from server.sync.connectors.base import TOKEN, Account, ConnectorError, Needs, Subscriptions
from server.sync.connectors.common import Session

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.microsoft.com/v1.0"
BATCH_SIZE = 20  # Graph's limit of requests in one $batch
MAX_CONCURRENT = 4  # Exchange Online: concurrent requests per mailbox and app
REQUEST_BUDGET = 10_000  # requests per mailbox and app ...
BUDGET_WINDOW = 600.0  # ... in 10 minutes
RETRIES = 4
MAX_WAIT = 30.0  # the longest Retry-After waited for inside one call
RETRY_STATUSES = {429, 503, 504}
IMMUTABLE = 'IdType="ImmutableId"'
# How long a subscription on Outlook messages, events or contacts is asked for: Graph allows
# up to 10,080 minutes (without resource data).
OUTLOOK_SUBSCRIPTION = timedelta(minutes=10000)
SYNC_STATE_ERRORS = {"SyncStateNotFound", "SyncStateInvalid", "resyncRequired",
                     "ErrorInvalidSyncStateData"}
MAILBOX_MISSING = {"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotFound",
                   "ErrorMailboxNotFound", "ErrorNonExistentMailbox", "Request_ResourceNotFound"}


# --------------------------------------------------------------------------- limits

class _Limiter:
    """The concurrency slots and the sliding request budget of one mailbox."""

    def __init__(self, concurrent: int, budget: int, window: float):
        self.slots = threading.BoundedSemaphore(concurrent)
        self.concurrent = concurrent
        self.budget, self.window = budget, window
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def spend(self, units: int, where: str) -> None:
        now = time.monotonic()
        with self._lock:
            while self._spent and self._spent[0][0] <= now - self.window:
                self._total -= self._spent.popleft()[1]
            if self._total + units > self.budget:
                wait = (self._spent[0][0] + self.window - now) if self._spent else self.window
                raise ConnectorError(
                    "request_budget", f"The request budget for {where} ({self.budget} requests "
                    f"in {int(self.window)} seconds) is used up; the sync goes on later.",
                    severity="mailbox", retry_after=max(1.0, wait))
            self._spent.append((now, units))
            self._total += units


_limiters: dict[tuple, _Limiter] = {}
_limiters_lock = threading.Lock()


def _limiter(base: str, address: str, settings: dict) -> _Limiter:
    concurrent = max(1, min(MAX_CONCURRENT, int(settings.get("graph_max_concurrent", MAX_CONCURRENT))))
    budget = int(settings.get("graph_request_budget", REQUEST_BUDGET))
    window = float(settings.get("graph_budget_window", BUDGET_WINDOW))
    key = (base, address.lower(), concurrent, budget, window)
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None:
            limiter = _limiters[key] = _Limiter(concurrent, budget, window)
        return limiter


def forget_limits() -> None:
    """Drop the per-mailbox counters (tests, benchmarks)."""
    with _limiters_lock:
        _limiters.clear()


# --------------------------------------------------------------------------- errors

def error_body(body) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")[:300]
    return "", ""


def retry_after(headers, attempt: int) -> float:
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
            except (TypeError, ValueError):
                pass
    return float(2 ** attempt)


@dataclass
class Reply:
    """One answer, from the wire or from inside a batch."""
    status: int
    headers: dict
    body: object  # dict (JSON), bytes (anything else), or None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> dict:
        return self.body if isinstance(self.body, dict) else {}


def _reply(response: requests.Response) -> Reply:
    kind = response.headers.get("Content-Type", "")
    body: object = response.content
    if "json" in kind and response.content:
        try:
            body = response.json()
        except ValueError:
            body = response.content
    return Reply(response.status_code, dict(response.headers), body)


@dataclass
class DeltaPage:
    """One page of a delta round: entries present (the last of each id), ids removed, and
    the link to store (next while ``more``, else the delta link)."""
    rows: list[dict]
    removed: list[str]
    cursor: str
    more: bool
    reset: bool


# --------------------------------------------------------------------------- HTTP

class GraphClient:
    """HTTP to Microsoft Graph for one mailbox: token, retries, limits, batches, errors."""

    def __init__(self, account: Account):
        settings = account.settings or {}
        self.account = account
        self.address = account.address
        self.base = (settings.get("graph_url") or GRAPH_URL).rstrip("/")
        parts = urlsplit(self.base)
        if parts.scheme != "https" or not parts.hostname:
            raise ConnectorError("graph_url_insecure", f"The Graph address {self.base} of this "
                                 "server profile must be an https URL.", severity="auth")
        self.host = parts.hostname
        self.user = f"/users/{quote(account.address, safe='@')}"
        self.verify = settings.get("ca_file") or True
        self.timeout = float(account.timeout or 30)
        self.retries = int(settings.get("graph_retries", RETRIES))
        self.max_wait = float(settings.get("graph_max_wait", MAX_WAIT))
        self.limiter = _limiter(self.base, account.address, settings)
        self.session = requests.Session()
        self.token: str | None = None
        self.http_requests = 0  # requests on the wire (a $batch is one)
        self._count_lock = threading.Lock()

    # -- token --------------------------------------------------------------------------

    def sign_in(self, fresh: bool = False) -> None:
        provider = self.account.token_provider
        if provider is not None:
            self.token = provider(fresh=fresh)
        elif self.account.oauth_token and not fresh:
            self.token = self.account.oauth_token
        else:
            raise ConnectorError("token_refused", f"Microsoft Graph refused the access token for "
                                 f"{self.address}.", severity="auth")

    def close(self) -> None:
        self.session.close()

    # -- URLs ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return path if path.startswith("https://") else f"{self.base}{path}"

    def owns(self, url: str) -> bool:
        """Whether a link Graph handed us points under the configured base URL."""
        return url.startswith(self.base + "/") or url.startswith(self.base + "?")

    def relative(self, url: str) -> str:
        return url[len(self.base):] if self.owns(url) else url

    # -- one request ----------------------------------------------------------------------

    def call(self, method: str, path: str, *, what: str, json_body=None, data: bytes | None = None,
             headers: dict | None = None, units: int = 1, refresh: bool = True) -> Reply:
        """One request with the mailbox's limits; 429/503/504 retried after Retry-After; a
        refused token renewed once. Returns the reply whatever its status (see ``error``)."""
        url = self.url(path)
        if not self.owns(url):
            raise ConnectorError("graph_bad_link", f"Microsoft Graph pointed {what} to another "
                                 "address; it was not followed.", severity="mailbox")
        attempt = 0
        while True:
            self.limiter.spend(units, self.address)
            sent = {"Authorization": f"Bearer {self.token}", "Prefer": IMMUTABLE,
                    "Accept": "application/json", **(headers or {})}
            with self.limiter.slots:
                try:
                    response = self.session.request(
                        method, url, json=json_body, data=data, headers=sent,
                        timeout=self.timeout, verify=self.verify, allow_redirects=False)
                except requests.RequestException as exc:
                    raise self.network_error(exc, what) from None
            with self._count_lock:
                self.http_requests += 1
            reply = _reply(response)
            if reply.status == 401 and refresh and self.account.token_provider is not None:
                refresh = False
                self.sign_in(fresh=True)
                continue
            if reply.status in RETRY_STATUSES:
                wait = retry_after(reply.headers, attempt)
                if attempt < self.retries and wait <= self.max_wait:
                    attempt += 1
                    time.sleep(wait)
                    continue
            return reply

    def delta_page(self, cursor: str | None, first: str, prefer: str, what: str,
                   fail: Callable[[Reply], ConnectorError]) -> DeltaPage:
        """One page of a delta round: from ``cursor`` (a next or delta link Graph gave, under
        the base URL), else from ``first``; a link that expired (410, ``SyncStateNotFound``)
        or is not ours starts over and says ``reset``. ``prefer``: the Prefer header;
        ``fail`` words a refusal."""
        reset = bool(cursor) and not self.owns(cursor)
        resuming = bool(cursor) and not reset
        headers = {"Prefer": prefer}
        reply = self.call("GET", cursor if resuming else first, what=what, headers=headers)
        code, _ = error_body(reply.body)
        if resuming and (reply.status == 410 or code in SYNC_STATE_ERRORS):
            log.info("graph: a delta link expired; the round starts over")
            reset = True
            reply = self.call("GET", first, what=what, headers=headers)
        if not reply.ok:
            raise fail(reply)
        body = reply.json()
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if not (next_link or delta_link):
            raise ConnectorError("graph_bad_response", f"Microsoft Graph gave no next or delta "
                                 f"link while {what}.", severity="mailbox", retry_after=60)
        rows = [r for r in body.get("value") or [] if isinstance(r, dict) and r.get("id")]
        return DeltaPage(
            rows=list({r["id"]: r for r in rows if "@removed" not in r}.values()),
            removed=list(dict.fromkeys(r["id"] for r in rows if "@removed" in r)),
            cursor=next_link or delta_link, more=bool(next_link), reset=reset)

    def network_error(self, exc: Exception, what: str) -> ConnectorError:
        if isinstance(exc, requests.exceptions.SSLError):
            return ConnectorError("tls_failed", f"The secure connection to {self.host} failed "
                                  f"while {what}.", severity="mailbox", retry_after=300)
        if isinstance(exc, requests.exceptions.Timeout):
            return ConnectorError("timeout", f"{self.host} did not answer in time while {what}.",
                                  severity="mailbox", retry_after=60)
        if isinstance(exc, requests.exceptions.ConnectionError):
            return ConnectorError("connection_lost", f"{self.host} could not be reached while "
                                  f"{what}.", severity="mailbox", retry_after=60)
        return ConnectorError("connection_lost", f"The request to {self.host} failed while "
                              f"{what} ({type(exc).__name__}).", severity="mailbox", retry_after=60)

    # -- errors ---------------------------------------------------------------------------

    def error(self, reply: Reply, what: str, scope: str = "mailbox") -> ConnectorError:
        """The failure of a reply as a ConnectorError whose message says what to fix.
        ``scope``: what the request was about (mailbox, folder, message, send)."""
        code, detail = error_body(reply.body)
        status, address = reply.status, self.address
        said = f" ({detail})" if detail else ""
        delegated = self.account.delegated
        if status == 401:
            return ConnectorError("token_refused", f"Microsoft Graph refused the access token "
                                  f"for {address}{said}. Check the tenant, application (client) "
                                  "id and secret or certificate of the server profile.",
                                  severity="auth")
        if status == 403:
            if "accesspolicy" in (detail + code).replace(" ", "").lower():
                return ConnectorError(
                    "access_policy_missing", f"The Exchange application access policy does not "
                    f"let the server profile's app reach {address}{said}. An Exchange "
                    "administrator must add this mailbox to the mail-enabled security group the "
                    "policy names (New-ApplicationAccessPolicy -AccessRight RestrictAccess "
                    "-PolicyScopeGroupId ...; Test-ApplicationAccessPolicy shows the result).",
                    severity="auth")
            if scope == "send":
                return ConnectorError(
                    "send_denied", f"Microsoft Graph does not let the server profile's app send "
                    f"as {address}{said}. Grant the Mail.Send permission with admin consent in "
                    "Microsoft Entra ID.", severity="auth")
            if delegated:
                return ConnectorError(
                    "consent_missing", f"Microsoft Graph denied access to {address}{said}. The "
                    "mailbox's owner must connect it again from the add-in and consent to "
                    "Mail.ReadWrite and Mail.Send.", severity="auth")
            return ConnectorError(
                "consent_missing", f"Microsoft Graph denied access to {address}{said}. An "
                "administrator must grant admin consent to the application permissions "
                "Mail.ReadWrite, Mail.Send and MailboxSettings.Read for the server profile's app "
                "in Microsoft Entra ID.", severity="auth")
        if status == 404 and (scope == "mailbox" or code in MAILBOX_MISSING):
            return ConnectorError(
                "mailbox_not_found", f"Exchange Online has no mailbox {address}{said}. Check the "
                "mailbox's email address, that its user has an Exchange Online license, and that "
                "the mailbox is not on-premises (use an EWS profile for Exchange Server).",
                severity="fatal")
        if status == 404 and scope == "folder":
            return ConnectorError("folder_not_found", f"The folder was not found while {what}"
                                  f"{said}.", severity="folder")
        if status == 404:
            return ConnectorError("message_not_found", f"The message is gone{said}.",
                                  severity="message")
        if status in RETRY_STATUSES:
            wait = retry_after(reply.headers, 0)
            return ConnectorError("throttled", f"Microsoft Graph asked to slow down while {what}"
                                  f"{said}; the sync goes on in {int(wait)} seconds.",
                                  severity="mailbox", retry_after=max(wait, 1.0))
        if status >= 500:
            return ConnectorError("graph_unavailable", f"Microsoft Graph failed while {what} "
                                  f"(HTTP {status}{', ' + code if code else ''}).",
                                  severity="mailbox", retry_after=60)
        severity = "message" if scope in ("message", "send") else "mailbox"
        return ConnectorError("graph_error", f"Microsoft Graph refused a request while {what} "
                              f"(HTTP {status}{', ' + code if code else ''}){said}.",
                              severity=severity)

    # -- batches --------------------------------------------------------------------------

    def batch(self, items: list[dict], *, what: str) -> list[Reply]:
        """Run requests (``method``, ``url`` relative to the base, optional ``body`` and
        ``headers``) in ``$batch`` requests of 20, up to the mailbox's concurrency at once.
        Items answered 429/503/504 are retried after their Retry-After; an expired token is
        renewed once. Replies come back in the order of ``items``."""
        replies: list[Reply | None] = [None] * len(items)
        pending = list(range(len(items)))
        attempt, refreshed = 0, False
        while pending:
            chunks = [pending[i:i + BATCH_SIZE] for i in range(0, len(pending), BATCH_SIZE)]
            workers = min(len(chunks), self.limiter.concurrent)
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    results = list(pool.map(lambda c: self._post_batch(items, c, what), chunks))
            else:
                results = [self._post_batch(items, c, what) for c in chunks]
            for chunk_result in results:
                for index, reply in chunk_result.items():
                    replies[index] = reply
            unauthorized = [i for i in pending if replies[i].status == 401]
            retry = [i for i in pending if replies[i].status in RETRY_STATUSES]
            if unauthorized and not refreshed and self.account.token_provider is not None:
                refreshed = True
                self.sign_in(fresh=True)
                pending = sorted(unauthorized + retry)
                continue
            if retry and attempt < self.retries:
                wait = max(retry_after(replies[i].headers, attempt) for i in retry)
                if wait <= self.max_wait:
                    attempt += 1
                    time.sleep(wait)
                    pending = retry
                    continue
            pending = []
        return replies  # type: ignore[return-value]

    def _post_batch(self, items: list[dict], chunk: list[int], what: str) -> dict[int, Reply]:
        requests_ = []
        for index in chunk:
            item = items[index]
            entry = {"id": str(index), "method": item["method"], "url": item["url"],
                     "headers": {"Prefer": IMMUTABLE, **item.get("headers", {})}}
            if item.get("body") is not None:
                entry["body"] = item["body"]
                entry["headers"].setdefault("Content-Type", "application/json")
            requests_.append(entry)
        reply = self.call("POST", "/$batch", json_body={"requests": requests_}, what=what,
                          headers={"Content-Type": "application/json"}, units=len(chunk),
                          refresh=False)
        if not reply.ok:
            if reply.status in (401, *RETRY_STATUSES):  # the whole batch: retried by items
                return {index: reply for index in chunk}
            raise self.error(reply, what)
        out: dict[int, Reply] = {}
        for answer in reply.json().get("responses") or []:
            try:
                index = int(answer.get("id"))
            except (TypeError, ValueError):
                continue
            if index not in chunk:
                continue
            headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
            body = answer.get("body")
            kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
            if isinstance(body, str) and "json" not in kind.lower():
                try:
                    body = base64.b64decode(body, validate=False)
                except (ValueError, TypeError):
                    body = body.encode()
            out[index] = Reply(int(answer.get("status") or 500), headers, body)
        for index in chunk:  # an answer Graph left out counts as a failure to retry
            out.setdefault(index, Reply(503, {"Retry-After": "1"}, None))
        return out


# --------------------------------------------------------------------------- session

class GraphSession(Session):
    """A ``Session`` whose connection is a signed-in ``GraphClient``."""

    where = "Microsoft Graph"
    needs = Needs(oauth=TOKEN, oauth_always=True)  # (Exchange keeps the Sent copy itself)
    _client: GraphClient | None

    def _connect(self) -> None:
        self._client = GraphClient(self.account)
        self._client.sign_in()

    def _abort(self, client: GraphClient) -> None:
        client.close()


def graph_timestamp(value: datetime) -> str:
    """A point in time as Graph takes it (``expirationDateTime``, windows): UTC, 7 decimals."""
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class GraphSubscriptions(Subscriptions):
    """Change-notification subscriptions over a ``GraphSession``'s client, for the mail
    connector and the item store alike; ``resource`` says what a folder's or collection's
    subscription watches, ``lifetime`` how long one is asked for (under Graph's longest for
    that resource: 10,080 minutes for Outlook messages, events and contacts)."""

    client: GraphClient

    def resource(self, key: str) -> str:
        raise NotImplementedError

    def lifetime(self, key: str) -> timedelta:
        return OUTLOOK_SUBSCRIPTION

    def create_subscription(self, folder_key: str, notification_url: str, client_state: str,
                            expires: datetime, lifecycle_url: str | None = None) -> dict:
        """A subscription on ``resource(folder_key)`` until ``expires`` (at most its
        ``lifetime`` from now)."""
        http = self.client
        expires = min(expires, datetime.now(timezone.utc) + self.lifetime(folder_key))
        body = {"changeType": "created,updated,deleted", "notificationUrl": notification_url,
                "resource": self.resource(folder_key), "expirationDateTime": graph_timestamp(expires),
                "clientState": client_state}
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        reply = http.call("POST", "/subscriptions", json_body=body, what="subscribing to changes")
        if not reply.ok:
            raise http.error(reply, "subscribing to changes", scope="folder")
        return reply.json()

    def renew_subscription(self, subscription_id: str, expires: datetime) -> dict:
        http = self.client
        reply = http.call("PATCH", f"/subscriptions/{quote(subscription_id, safe='')}",
                          json_body={"expirationDateTime": graph_timestamp(expires)},
                          what="renewing a subscription")
        if not reply.ok:
            raise http.error(reply, "renewing a subscription", scope="folder")
        return reply.json()

    def delete_subscription(self, subscription_id: str) -> None:
        http = self.client
        reply = http.call("DELETE", f"/subscriptions/{quote(subscription_id, safe='')}",
                          what="ending a subscription")
        if not reply.ok and reply.status != 404:
            raise http.error(reply, "ending a subscription", scope="folder")
