"""Microsoft Graph connector (Exchange Online): folders, per-folder delta queries, MIME
through ``$batch``, categories, sending through drafts, and subscription calls for push.

**Access.** Every call carries an access token from ``Account.token_provider``: app-only
(msal client credentials for the server profile's app, ``https://graph.microsoft.com/
.default``) or delegated (the mailbox's own refresh token from the add-in's on-behalf-of
sign-in). A refused token (401) is renewed once and the call repeated.

**Mail.** Folder keys are Graph folder ids, which survive renames and moves. Each folder is
read with ``/mailFolders/{id}/messages/delta`` and ``Prefer: IdType="ImmutableId"``, so a
message keeps its id when moved; the cursor is the ``@odata.nextLink`` of a round in
progress, else its ``@odata.deltaLink``. A link that expired (410, ``SyncStateNotFound``)
starts the folder over and says ``reset``. ``@removed`` entries are reported as removed.
Bodies are fetched as MIME (``/messages/{id}/$value``) in ``$batch`` requests of 20, whose
non-JSON bodies Graph returns base64-encoded. Outlook categories are the keywords, as they
are ("Tracked to Regarding"); writing one back is a PATCH of ``categories``, sent in
batches of 20 after the batch that tracked the message was committed.

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
import json
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import quote, urlsplit

import requests

from server.sync.connectors.base import Account, Changes, ConnectorError, FetchedMessage, Folder
from server.sync.connectors.common import Session
from server.sync.connectors.graph_attachments import split_large, upload

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.microsoft.com/v1.0"
BATCH_SIZE = 20  # Graph's limit of requests in one $batch
MAX_CONCURRENT = 4  # Exchange Online: concurrent requests per mailbox and app
REQUEST_BUDGET = 10_000  # requests per mailbox and app ...
BUDGET_WINDOW = 600.0  # ... in 10 minutes
PAGE_MAX = 500  # messages per delta page asked for (odata.maxpagesize)
RETRIES = 4
MAX_WAIT = 30.0  # the longest Retry-After waited for inside one call
MIME_LIMIT = 3_500_000  # a MIME draft above this is refused by Graph's 4 MB request limit
RETRY_STATUSES = {429, 503, 504}
IMMUTABLE = 'IdType="ImmutableId"'
WELL_KNOWN = {"inbox": "inbox", "sentitems": "sent", "drafts": "drafts",
              "deleteditems": "trash", "junkemail": "junk"}
SYNC_STATE_ERRORS = {"SyncStateNotFound", "SyncStateInvalid", "resyncRequired",
                     "ErrorInvalidSyncStateData"}
MAILBOX_MISSING = {"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotFound",
                   "ErrorMailboxNotFound", "ErrorNonExistentMailbox", "Request_ResourceNotFound"}
MESSAGE_SELECT = "categories,receivedDateTime,internetMessageId"


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

def _error_body(body) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return str(error.get("code") or ""), str(error.get("message") or "")[:300]
    return "", ""


def _retry_after(headers, attempt: int) -> float:
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
                wait = _retry_after(reply.headers, attempt)
                if attempt < self.retries and wait <= self.max_wait:
                    attempt += 1
                    time.sleep(wait)
                    continue
            return reply

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
        code, detail = _error_body(reply.body)
        status, address = reply.status, self.address
        said = f" ({detail})" if detail else ""
        delegated = self.account.settings.get("_graph_delegated")
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
            wait = _retry_after(reply.headers, 0)
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
                wait = max(_retry_after(replies[i].headers, attempt) for i in retry)
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


# --------------------------------------------------------------------------- folders

def _utc(value) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc) if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _folder_tree(rows: list[dict], root_id: str | None, roles: dict[str, str]) -> list[Folder]:
    """Folders with "/"-joined display paths from Graph's flat list (parentFolderId)."""
    by_id = {row["id"]: row for row in rows if row.get("id")}
    names: dict[str, str] = {}

    def path(folder_id: str, seen: frozenset = frozenset()) -> str:
        if folder_id in names:
            return names[folder_id]
        row = by_id[folder_id]
        name = str(row.get("displayName") or folder_id).replace("/", "\u2215")
        parent = row.get("parentFolderId")
        if parent and parent != root_id and parent in by_id and parent not in seen:
            name = f"{path(parent, seen | {folder_id})}/{name}"
        names[folder_id] = name
        return name

    folders = []
    for folder_id, row in by_id.items():
        parent = row.get("parentFolderId")
        folders.append(Folder(key=folder_id, name=path(folder_id), role=roles.get(folder_id, "other"),
                              parent_key=parent if parent in by_id else None))
    folders.sort(key=lambda f: f.name.casefold())
    return folders


# --------------------------------------------------------------------------- connector

class _GraphSession(Session):
    """A ``Session`` whose connection is a signed-in ``GraphClient``."""

    where = "Microsoft Graph"
    _client: GraphClient | None

    def _connect(self) -> None:
        self._client = GraphClient(self.account)
        self._client.sign_in()

    def _abort(self, client: GraphClient) -> None:
        client.close()


class GraphConnector(_GraphSession):
    """One mailbox over Microsoft Graph: ``with GraphConnector(account) as graph: ...``."""

    supports_keywords = True
    supports_append = False  # Graph keeps the Sent copy of what it sends itself

    def __init__(self, account: Account):
        super().__init__(account)
        self.synced: dict[str, Folder] = {}  # folders read in this session (push upkeep)
        self._categories: dict[str, list[str]] = {}
        self._pending: list[tuple[str, list[str]]] = []

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                try:
                    self.flush_keywords()
                except ConnectorError as error:
                    log.warning("graph %s: categories not written (%s)", self._who(), error.code)
                if self.account.on_close is not None and self.synced:
                    try:
                        self.account.on_close(self)
                    except Exception as error:  # push upkeep never fails a sync
                        log.warning("graph %s: subscription upkeep failed (%s)", self._who(),
                                    getattr(error, "code", type(error).__name__))
        finally:
            self.close()

    def _who(self) -> str:
        return self.account.address.rpartition("@")[2] or "mailbox"

    # -- folders ------------------------------------------------------------------------

    def list_folders(self) -> list[Folder]:
        http = self.client
        user = http.user
        items = [{"method": "GET", "url": f"{user}/mailFolders/{name}?$select=id"}
                 for name in (*WELL_KNOWN, "msgfolderroot")]
        items.append({"method": "GET", "url": f"{user}/mailFolders/delta?$select=displayName,"
                                              "parentFolderId,childFolderCount"})
        replies = http.batch(items, what="listing folders")
        for reply in replies:
            if not reply.ok and reply.status != 404:
                raise http.error(reply, "listing folders")
        inbox, root = replies[0], replies[len(WELL_KNOWN)]
        if not inbox.ok:
            raise http.error(inbox, "listing folders", scope="mailbox")
        roles = {replies[i].json().get("id"): role for i, role in enumerate(WELL_KNOWN.values())
                 if replies[i].ok}
        root_id = root.json().get("id") if root.ok else None
        page = replies[-1]
        if not page.ok:
            raise http.error(page, "listing folders")
        rows = [r for r in page.json().get("value") or [] if "@removed" not in r]
        link = page.json().get("@odata.nextLink")
        while link:
            reply = http.call("GET", link, what="listing folders")
            if not reply.ok:
                raise http.error(reply, "listing folders")
            rows.extend(r for r in reply.json().get("value") or [] if "@removed" not in r)
            link = reply.json().get("@odata.nextLink")
        rows = self._with_children([r for r in rows if r.get("id") != root_id])
        return _folder_tree(rows, root_id, roles)

    def _with_children(self, rows: list[dict]) -> list[dict]:
        """Where a folder has more children than the listing showed (a delta that stopped
        at the top level), its child folders are listed too, level by level, in batches."""
        http = self.client
        while True:
            known: dict[str, int] = {}
            ids = {r["id"] for r in rows if r.get("id")}
            for row in rows:
                known[row.get("parentFolderId")] = known.get(row.get("parentFolderId"), 0) + 1
            missing = [r["id"] for r in rows
                       if int(r.get("childFolderCount") or 0) > known.get(r["id"], 0)]
            if not missing:
                return rows
            items = [{"method": "GET", "url": f"{http.user}/mailFolders/{quote(i, safe='')}"
                      "/childFolders?$top=250&$select=displayName,parentFolderId,childFolderCount"}
                     for i in missing]
            found = []
            for folder_id, reply in zip(missing, http.batch(items, what="listing folders")):
                if not reply.ok:
                    raise http.error(reply, "listing folders")
                for child in reply.json().get("value") or []:
                    if child.get("id") and child["id"] not in ids:
                        child.setdefault("parentFolderId", folder_id)
                        found.append(child)
            if not found:
                return rows
            rows = rows + found

    # -- reading ------------------------------------------------------------------------

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes:
        http = self.client
        self.flush_keywords()
        self.synced[folder.key] = folder
        what = f"reading {folder.name}"
        first = (f"{http.user}/mailFolders/{quote(folder.key, safe='')}/messages/delta"
                 f"?$select={MESSAGE_SELECT}")
        reset = bool(cursor) and not http.owns(cursor)
        resuming = bool(cursor) and not reset
        link = cursor if resuming else first
        prefer = {"Prefer": f"{IMMUTABLE}, odata.maxpagesize={max(1, min(limit, PAGE_MAX))}"}
        reply = http.call("GET", link, what=what, headers=prefer)
        code, _ = _error_body(reply.body)
        if resuming and (reply.status == 410 or code in SYNC_STATE_ERRORS):
            log.info("graph %s: the delta link of a folder expired; it starts over", self._who())
            reset, link = True, first
            reply = http.call("GET", link, what=what, headers=prefer)
        if not reply.ok:
            raise http.error(reply, what, scope="folder")
        body = reply.json()
        next_link, delta_link = body.get("@odata.nextLink"), body.get("@odata.deltaLink")
        if not (next_link or delta_link):
            raise ConnectorError("graph_bad_response", f"Microsoft Graph gave no next or delta "
                                 f"link while {what}.", severity="mailbox", retry_after=60)
        entries = [e for e in body.get("value") or [] if isinstance(e, dict) and e.get("id")]
        removed = [e["id"] for e in entries if "@removed" in e]
        present = list({e["id"]: e for e in entries if "@removed" not in e}.values())
        raws = self._mime([e["id"] for e in present], what)
        messages = []
        for entry in present:
            categories = [str(c) for c in entry.get("categories") or []]
            self._categories[entry["id"]] = categories
            raw = raws.get(entry["id"])
            if raw is None:  # deleted since the delta page: the next page says removed
                continue
            messages.append(FetchedMessage(ref=entry["id"], raw=raw, keywords=tuple(categories),
                                           arrived_on=_utc(entry.get("receivedDateTime"))))
        return Changes(messages=messages, cursor=next_link or delta_link, more=bool(next_link),
                       removed=removed, reset=reset)

    def _mime(self, ids: list[str], what: str) -> dict[str, bytes]:
        http = self.client
        items = [{"method": "GET", "url": f"{http.user}/messages/{quote(i, safe='')}/$value"}
                 for i in ids]
        out: dict[str, bytes] = {}
        for message_id, reply in zip(ids, http.batch(items, what=what) if items else []):
            if reply.ok and isinstance(reply.body, bytes):
                out[message_id] = reply.body
            elif reply.status == 404:
                continue
            elif reply.status in (401, 403) or reply.status in RETRY_STATUSES:
                raise http.error(reply, what)
            else:  # too big for a batch answer, or a passing failure: one request alone
                out[message_id] = self._value(message_id, what)
        return out

    def _value(self, message_id: str, what: str) -> bytes:
        http = self.client
        reply = http.call("GET", f"{http.user}/messages/{quote(message_id, safe='')}/$value",
                          what=what, headers={"Accept": "*/*"})
        if not reply.ok:
            raise http.error(reply, what, scope="message")
        return reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        return self._value(ref, f"reading a message in {folder.name}")

    # -- categories -----------------------------------------------------------------------

    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None:
        """Add an Outlook category to a message; written in batches (at the next read, when
        20 are waiting, and when the connector closes)."""
        what = f"reading categories in {folder.name}"
        if ref not in self._categories and ref not in self._read_categories([ref], what):
            raise ConnectorError("message_not_found", f"The message is no longer in "
                                 f"{folder.name}.", severity="message")
        self._queue_category(ref, keyword)
        if len(self._pending) >= BATCH_SIZE:
            self.flush_keywords()

    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None:
        """Add an Outlook category to many messages of a folder now: one PATCH of the whole
        category list per message (Graph replaces the list, so a message's own categories
        are kept), 20 to a ``$batch`` request, together with any ``set_keyword`` writes still
        waiting. Lists not read with the message are read first, in batches too. A message
        deleted meanwhile (404) is skipped; throttled writes are retried after Retry-After."""
        refs = list(dict.fromkeys(refs))
        unknown = [ref for ref in refs if ref not in self._categories]
        if unknown:
            self._read_categories(unknown, f"reading categories in {folder.name}")
        for ref in refs:
            if ref in self._categories:  # else gone: nothing to write
                self._queue_category(ref, keyword)
        self.flush_keywords(folder.name)

    def _read_categories(self, refs: list[str], what: str) -> dict[str, list[str]]:
        """The current category lists of messages (``$batch`` GETs), kept for the writes;
        a message that is gone (404) is left out."""
        http = self.client
        items = [{"method": "GET", "url": f"{http.user}/messages/{quote(ref, safe='')}"
                                          "?$select=categories"} for ref in refs]
        found: dict[str, list[str]] = {}
        for ref, reply in zip(refs, http.batch(items, what=what)):
            if reply.status == 404:
                continue
            if not reply.ok:
                raise http.error(reply, what, scope="message")
            found[ref] = self._categories[ref] = \
                [str(c) for c in reply.json().get("categories") or []]
        return found

    def _queue_category(self, ref: str, keyword: str) -> None:
        """Queue a message's category list plus ``keyword`` (unless it has it already)."""
        categories = self._categories[ref]
        if keyword.casefold() in {c.casefold() for c in categories}:
            return
        categories = [*categories, keyword]
        self._categories[ref] = categories
        self._pending.append((ref, categories))

    def flush_keywords(self, where: str | None = None) -> int:
        """Write the queued category lists in ``$batch`` requests of 20; returns how many were
        written. A message gone meanwhile (404) is skipped; any other failure (after the
        retries of throttled writes) raises, saying how many were not written (``where``:
        the folder's name, for the message)."""
        pending, self._pending = self._pending, []
        if not pending or self._client is None:
            return 0
        http = self.client
        what = f"writing categories in {where}" if where else "writing categories"
        items = [{"method": "PATCH", "url": f"{http.user}/messages/{quote(ref, safe='')}",
                  "body": {"categories": categories}} for ref, categories in pending]
        replies = http.batch(items, what=what)
        for (ref, _), reply in zip(pending, replies):
            if not reply.ok:  # not written: read the list again if asked again
                self._categories.pop(ref, None)
        failed = [r for r in replies if not r.ok and r.status != 404]
        if failed:
            error = http.error(failed[0], what, scope="message")
            raise ConnectorError(error.code, f"{error.message} The category was not written on "
                                 f"{len(failed)} of {len(replies)} messages"
                                 f"{f' in {where}' if where else ''}.",
                                 severity=error.severity, retry_after=error.retry_after)
        return sum(1 for r in replies if r.ok)

    # -- push -----------------------------------------------------------------------------

    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Graph tells about changes through change notifications (``graph_push``), not on
        a connection: waiting learns nothing."""
        time.sleep(max(0.0, min(timeout, 60.0)))
        return set()

    def create_subscription(self, folder_key: str, notification_url: str, client_state: str,
                            expires: datetime, lifecycle_url: str | None = None) -> dict:
        http = self.client
        body = {"changeType": "created,updated,deleted", "notificationUrl": notification_url,
                "resource": f"users/{self.account.address}/mailFolders('{folder_key}')/messages",
                "expirationDateTime": _iso(expires), "clientState": client_state}
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        reply = http.call("POST", "/subscriptions", json_body=body, what="subscribing to changes")
        if not reply.ok:
            raise http.error(reply, "subscribing to changes", scope="folder")
        return reply.json()

    def renew_subscription(self, subscription_id: str, expires: datetime) -> dict:
        http = self.client
        reply = http.call("PATCH", f"/subscriptions/{quote(subscription_id, safe='')}",
                          json_body={"expirationDateTime": _iso(expires)},
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


def _iso(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


# --------------------------------------------------------------------------- sending

def _addresses(draft: dict) -> set[str]:
    out = set()
    for field in ("toRecipients", "ccRecipients", "bccRecipients"):
        for entry in draft.get(field) or []:
            address = ((entry or {}).get("emailAddress") or {}).get("address")
            if address:
                out.add(address.lower())
    return out


def _token_claims(token: str | None) -> dict:
    """The claims of a JWT access token, read without checking its signature: only to tell
    an admin which permission is missing (Graph itself checks the token)."""
    try:
        payload = (token or "").split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return {}


class GraphSender(_GraphSession):
    """Sends the CRM's email through Graph: a draft made from the MIME message (its
    attachments included; those over 3 MB are uploaded to the draft through upload sessions,
    ``graph_attachments``), Bcc recipients added, then ``send``; Exchange keeps the copy in
    Sent Items. ``internet_message_ids`` maps each Message-ID we gave to the one Exchange
    used (they are the same unless Exchange rewrote it)."""

    def __init__(self, account: Account):
        super().__init__(account)
        self.internet_message_ids: dict[str, str] = {}
        self.last_internet_message_id: str | None = None

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict:
        http = self.client
        raw, large = split_large(raw)  # attached through upload sessions, after the draft
        if len(raw) > MIME_LIMIT:
            raise ConnectorError("message_too_large", f"The email is {len(raw) // 1_000_000} MB "
                                 "without its attachments over 3 MB; Microsoft Graph takes MIME "
                                 "messages up to 4 MB. Make it smaller.", severity="message")
        what = f"sending from {self.account.address}"
        reply = http.call("POST", f"{http.user}/messages", data=base64.b64encode(raw), what=what,
                          headers={"Content-Type": "text/plain"})
        if not reply.ok:
            raise http.error(reply, what, scope="send")
        draft = reply.json()
        draft_id = draft.get("id")
        if not draft_id:
            raise ConnectorError("graph_bad_response", "Microsoft Graph made no draft.",
                                 severity="mailbox", retry_after=60)
        try:
            for attachment in large:
                upload(http, draft_id, attachment, what)
            missing = [r for r in recipients if r.lower() not in _addresses(draft)]
            if missing:  # Bcc recipients are not in the MIME headers
                bcc = list(draft.get("bccRecipients") or []) + \
                    [{"emailAddress": {"address": r}} for r in missing]
                patched = http.call("PATCH", f"{http.user}/messages/{quote(draft_id, safe='')}",
                                    json_body={"bccRecipients": bcc}, what=what)
                if not patched.ok:
                    raise http.error(patched, what, scope="send")
            sent = http.call("POST", f"{http.user}/messages/{quote(draft_id, safe='')}/send",
                             what=what, headers={"Content-Length": "0"})
            if not sent.ok:
                raise http.error(sent, what, scope="send")
        except ConnectorError:
            self._discard(draft_id)
            raise
        ours = _message_id(raw)
        theirs = str(draft.get("internetMessageId") or "") or ours
        self.last_internet_message_id = theirs
        if ours:
            self.internet_message_ids[ours] = theirs
        return {}

    def _discard(self, draft_id: str) -> None:
        try:
            self.client.call("DELETE", f"{self.client.user}/messages/{quote(draft_id, safe='')}",
                             what="removing an unsent draft")
        except ConnectorError:
            pass

    def verify(self, sender: str, recipient: str) -> None:
        """Test & Enable: the mailbox is reachable for sending (its Drafts folder) and the
        token carries the send permission (Mail.Send as an application role, or delegated)."""
        http = self.client
        what = f"checking {self.account.address} for sending"
        reply = http.call("GET", f"{http.user}/mailFolders/drafts?$select=id", what=what)
        if not reply.ok:
            raise http.error(reply, what, scope="mailbox" if reply.status == 404 else "send")
        claims = _token_claims(http.token)
        granted = set(claims.get("roles") or []) | set(str(claims.get("scp") or "").split())
        if claims and not granted & {"Mail.Send", "Mail.Send.Shared"}:
            raise ConnectorError(
                "send_denied", f"The access token for {self.account.address} does not carry "
                "the Mail.Send permission. Grant Mail.Send with admin consent to the server "
                "profile's app in Microsoft Entra ID (or connect the mailbox again from the "
                "add-in).", severity="auth")


def _message_id(raw: bytes) -> str | None:
    from email.parser import BytesHeaderParser
    from email import policy
    value = BytesHeaderParser(policy=policy.compat32).parsebytes(raw).get("Message-ID")
    return str(value).strip() if value else None


CONNECTOR = GraphConnector
SENDER = GraphSender
