"""A fake Microsoft Graph service and Microsoft Entra ID token endpoint for the Graph
connector's tests and benchmark: one small WSGI app served over HTTPS (a self-signed
certificate, as msal only talks to https authorities) on a loopback port in a thread.

Built from Microsoft's documented request and response shapes (learn.microsoft.com, Graph
v1.0 reference: message delta, mailFolder delta, message $value, JSON batching, sendMail,
create message from MIME, send, subscription, change notifications, lifecycle
notifications, throttling; Entra ID v2.0 OpenID configuration and token endpoint):

* **Entra ID**: ``/{tenant}/v2.0/.well-known/openid-configuration`` and
  ``/{tenant}/oauth2/v2.0/token`` with the client-credentials, refresh-token and
  on-behalf-of (jwt-bearer) grants. Access tokens are JWT-shaped (``roles`` app-only,
  ``scp`` delegated) and expire; ``expire_tokens`` ends every token issued so far.
* **Mail** under ``/v1.0/users/{address}/``: well-known folders (``inbox``,
  ``sentitems``, ``drafts``, ``deleteditems``, ``junkemail``, ``msgfolderroot``),
  ``mailFolders/delta`` (flat, or the top level only with ``folder_delta_flat = False``),
  ``mailFolders/{id}/childFolders``, ``mailFolders/{id}/messages/delta`` with ``@odata.nextLink`` /
  ``@odata.deltaLink`` and ``@removed`` entries, pages of ``Prefer: odata.maxpagesize``
  (default 10), immutable ids only when ``Prefer: IdType="ImmutableId"`` is sent (else
  ids that change when a message moves); ``messages/{id}/$value`` (MIME), ``PATCH``
  (categories, bccRecipients), ``POST messages`` (a draft from base64 MIME),
  ``messages/{id}/send``, ``sendMail``; an expired delta token answers 410
  ``SyncStateNotFound``.
* **Upload sessions** for attachments over 3 MB ("Attach large files to Outlook messages"):
  ``messages/{id}/attachments/createUploadSession`` answers 201 with an ``uploadUrl``
  (``/upload/{session}?authtoken=...`` on this origin) that takes ``PUT`` ranges in order
  (``Content-Range: bytes {start}-{end}/{total}``, no ``Authorization`` header, at most
  4 MiB, every range but the last a multiple of 320 KiB), each answered 200 with
  ``nextExpectedRanges``; the last answers 201 with a ``Location`` and the file is added to
  the draft's MIME. ``fail_uploads = n`` answers the next n ranges 503 without keeping them.
* **$batch** of up to 20 requests (``stats["batch"]`` counts them), each answered in
  ``responses`` by its ``id`` with its own status, headers and body; a non-JSON inner body
  is base64-encoded.
* **Access**: 401 ``InvalidAuthenticationToken`` for an unknown or expired token; 403
  ``ErrorAccessDenied`` without the needed role or outside the application access policy
  ("Blocked by tenant configured AppOnly AccessPolicy settings"); 404 ``ErrorInvalidUser``
  for an unknown mailbox.
* **Limits**: more than 4 concurrent requests for one mailbox, or more than 10,000 in 10
  minutes, answer 429 with ``Retry-After``; ``throttle(n, seconds)`` answers the next n
  requests so (``inside_batch=True``: the next n requests inside a ``$batch``).
* **Subscriptions**: created only after the notification URL (and the lifecycle URL)
  echoed the ``validationToken`` as text/plain within 10 seconds; changes in a subscribed
  folder are posted to the notification URL with the subscription's ``clientState``;
  ``lifecycle(id, event)`` posts reauthorizationRequired, subscriptionRemoved or missed.

Tests drive it as Outlook or the transport would: ``deliver``, ``move_message``,
``copy_message``, ``set_categories``, ``create_folder``, ``rename_folder``, ``move_folder``;
or through the API as a mail client does: ``messages/{id}/move`` and ``messages/{id}/copy``
(``destinationId``: a folder id or well-known name; answered 201 with the message in its new
folder, a copy with an id of its own), ``PATCH mailFolders/{id}`` (``displayName``: a rename).
"""
from __future__ import annotations

import base64
import itertools
import json
import queue
import re
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from email import policy
from email.parser import BytesParser
from email.utils import getaddresses
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import requests
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.fakes import graph_rules
from tests.fakes.dropping import Drops
from tests.fakes.graph_items import ALL_EVENTS, ITEM_APP_ROLES, FakeItems, item_role
from tests.fakes.graph_wire import _b64url, _error, _iso, _now, _unb64url
from tests.servers.ports import LOOPBACK, make_self_signed_cert

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_RESOURCE = "https://graph.microsoft.com"
# Exchange Online's EWS resource: app-only "/.default" (the full_access_as_app application
# permission), delegated "EWS.AccessAsUser.All".
EWS_RESOURCE = "https://outlook.office365.com"
EWS_SCOPE = EWS_RESOURCE + "/.default"
EWS_APP_ROLES = ("full_access_as_app",)
APP_ROLES = ("Mail.ReadWrite", "Mail.Send", "MailboxSettings.Read")
WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items", "drafts": "Drafts",
              "deleteditems": "Deleted Items", "junkemail": "Junk Email"}
# Subscriptions: Outlook messages, events and contacts live up to 10,080 minutes, To Do tasks
# 4,230; the change types Graph knows.
MAX_SUBSCRIPTION_MINUTES = 10080
TODO_SUBSCRIPTION_MINUTES = 4230
CHANGE_TYPES = ("created", "updated", "deleted")
POLICY_DENIED = ("Access to OData is disabled: Blocked by tenant configured AppOnly "
                 "AccessPolicy settings.")


def _unsupported():
    """Graph's answer to a subscription on a resource it takes none on."""
    return _error(400, "ExtensionError", "Operation: Create; Exception: [Status Code: "
                  "BadRequest; Reason: The resource is not supported.]")


class _QuietHandler(WSGIRequestHandler):
    def log(self, *args) -> None:  # no request log (it would show delta tokens)
        pass


# --------------------------------------------------------------------------- the store

@dataclass
class FakeFolder:
    id: str
    name: str
    parent_id: str | None


@dataclass
class FakeMessage:
    n: int
    id: str  # the immutable id
    folder_id: str
    mime: bytes
    received: datetime
    internet_message_id: str
    subject: str
    categories: list[str] = field(default_factory=list)
    is_draft: bool = False
    is_read: bool = False
    version: int = 0
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)


@dataclass
class FakeMailbox:
    address: str
    user_id: str
    folders: dict[str, FakeFolder] = field(default_factory=dict)
    messages: dict[str, FakeMessage] = field(default_factory=dict)
    removals: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    well_known: dict[str, str] = field(default_factory=dict)
    root_id: str = ""
    collections: dict = field(default_factory=dict)  # calendars, contact folders, task lists
    items: dict = field(default_factory=dict)  # events, contacts, tasks (``graph_items``)
    item_removals: dict[str, list[tuple[int, str]]] = field(default_factory=lambda: defaultdict(list))
    rules: dict[str, dict] = field(default_factory=dict)  # Inbox message rules (graph_rules)


@dataclass
class Subscription:
    id: str
    mailbox: str
    folder_id: str
    change_types: set[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime
    resource: str
    most: int = 10080  # the longest lifetime Graph gives this resource, in minutes


@dataclass
class Token:
    kind: str  # app delegated
    roles: tuple[str, ...]
    expires: float
    user: str | None = None
    audience: str = GRAPH_RESOURCE  # the resource the token is for


class FakeGraph(FakeItems, Drops):
    """The fake service; ``start()`` serves it, ``close()`` stops it."""

    def __init__(self, tenant: str = "11111111-2222-3333-4444-555555555555",
                 client_id: str = "graph-app-id", client_secret: str = "graph-app-secret",
                 token_lifetime: int = 3599):
        self.tenant, self.client_id, self.client_secret = tenant, client_id, client_secret
        self.token_lifetime = token_lifetime
        self.app_roles: tuple[str, ...] = APP_ROLES + ITEM_APP_ROLES  # what admin consent granted
        self.ews_app_roles: tuple[str, ...] = EWS_APP_ROLES  # the same, for EWS
        self.uploads: dict[str, dict] = {}  # upload session id -> its draft and bytes so far
        self.upload_ranges: list[tuple[int, int, int]] = []  # (start, end, status) of each PUT
        self.fail_uploads = 0  # answer this many next PUT ranges 503
        self.access_policy: set[str] | None = None  # addresses the app may reach; None: all
        self.notifications_enabled = True
        self.delay = 0.0  # seconds each Graph request takes (to see requests overlap)
        self.drop_requests = 0  # break the connection of this many next Graph requests (Drops)
        self.folder_delta_flat = True  # False: mailFolders/delta lists the top level only
        self.lock = threading.RLock()
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        self.assertions: dict[str, str] = {}  # add-in SSO token -> user (for on-behalf-of)
        self.subscriptions: dict[str, Subscription] = {}
        # A list: every Graph request and answer is appended to it as (method, path, query,
        # request JSON, status, answer JSON), batched ones one by one (the schema test).
        self.record: list | None = None
        self.stats: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.recent: dict[str, deque] = defaultdict(deque)
        self.deliveries: list[tuple[str, int]] = []  # (kind, status) of what was posted to us
        self.delivery_errors: list[str] = []
        self._throttle: list[float] = []
        self._throttle_inner: list[float] = []
        self._seq = itertools.count(1)
        self._n = itertools.count(1)
        self._generation = 1  # delta tokens of older generations are expired
        self._expired_before = 0.0
        self._server = None
        self._thread = None
        self._outbox: queue.Queue = queue.Queue()
        self._sender = threading.Thread(target=self._deliver_loop, daemon=True)
        self._dir = Path(tempfile.mkdtemp(prefix="regarding-graph-"))
        self.cert = make_self_signed_cert(self._dir, "graph")
        self.port = 0

    # -- serving ------------------------------------------------------------------------

    def start(self) -> FakeGraph:
        self._server = make_server(LOOPBACK, 0, self.wsgi, threaded=True,
                                   ssl_context=self.cert.server_context(),
                                   request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._sender.start()
        return self

    def close(self) -> None:
        self._outbox.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self._dir, ignore_errors=True)  # its certificate and key

    @property
    def origin(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def graph_url(self) -> str:
        return f"{self.origin}/v1.0"

    @property
    def authority(self) -> str:
        return f"{self.origin}/{self.tenant}"

    def profile_settings(self, **extra) -> dict:
        """Server profile settings that point the connector and msal at this fake."""
        return {"graph_url": self.graph_url, "authority_url": self.authority,
                "ca_file": str(self.cert.cert_path), "oauth_ca_file": str(self.cert.cert_path),
                "timeout": 10, **extra}

    # -- what tests do ------------------------------------------------------------------

    def add_mailbox(self, address: str) -> FakeMailbox:
        with self.lock:
            box = FakeMailbox(address=address.lower(), user_id=secrets.token_hex(16))
            root = self._new_folder(box, "Top of Information Store", None)
            box.root_id = box.well_known["msgfolderroot"] = root.id
            for name, display in WELL_KNOWN.items():
                box.well_known[name] = self._new_folder(box, display, root.id).id
            self._add_item_collections(box)
            self.mailboxes[box.address] = box
            return box

    def _new_folder(self, box: FakeMailbox, name: str, parent: str | None) -> FakeFolder:
        folder = FakeFolder(id="AAMkFolder" + secrets.token_hex(12), name=name, parent_id=parent)
        box.folders[folder.id] = folder
        return folder

    def box(self, address: str) -> FakeMailbox:
        return self.mailboxes[address.lower()]

    def folder_id(self, address: str, path: str) -> str:
        box = self.box(address)
        parent, folder_id = box.root_id, None
        for part in path.split("/"):
            folder_id = next((f.id for f in box.folders.values()
                              if f.parent_id == parent and f.name.casefold() == part.casefold()), None)
            if folder_id is None:
                raise KeyError(path)
            parent = folder_id
        return folder_id

    def create_folder(self, address: str, path: str) -> str:
        with self.lock:
            box = self.box(address)
            parent_path, _, name = path.rpartition("/")
            parent = self.folder_id(address, parent_path) if parent_path else box.root_id
            return self._new_folder(box, name, parent).id

    def rename_folder(self, address: str, path: str, new_name: str) -> None:
        with self.lock:
            self.box(address).folders[self.folder_id(address, path)].name = new_name

    def move_folder(self, address: str, path: str, new_parent: str | None) -> None:
        with self.lock:
            box = self.box(address)
            box.folders[self.folder_id(address, path)].parent_id = (
                self.folder_id(address, new_parent) if new_parent else box.root_id)

    def deliver(self, address: str, raw: bytes, folder: str = "Inbox", *, categories=(),
                received: datetime | None = None, draft: bool = False) -> str:
        with self.lock:
            box = self.box(address)
            head = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
            n = next(self._n)
            message = FakeMessage(
                n=n, id=f"AAkALgAAImm{n:010d}", folder_id=self.folder_id(address, folder),
                mime=raw, received=received or _now(),
                internet_message_id=str(head.get("Message-ID") or f"<fake{n}@graph.example>").strip(),
                subject=str(head.get("Subject") or ""), categories=list(categories),
                is_draft=draft, version=next(self._seq),
                to=[a for _, a in getaddresses(head.get_all("To") or [])],
                cc=[a for _, a in getaddresses(head.get_all("Cc") or [])])
            box.messages[message.id] = message
            self._changed(box, message, "created")
            if message.folder_id == box.well_known.get("inbox") and not draft:
                for target, forward in graph_rules.forwards(box, raw):  # Exchange's rules
                    if target in self.mailboxes:
                        self.deliver(target, forward)
            return message.id

    def message(self, address: str, message_id: str) -> FakeMessage:
        return self.box(address).messages[message_id]

    def messages_in(self, address: str, folder: str) -> list[FakeMessage]:
        folder_id = self.folder_id(address, folder)
        return sorted((m for m in self.box(address).messages.values() if m.folder_id == folder_id),
                      key=lambda m: m.n)

    def move_message(self, address: str, message_id: str, folder: str) -> None:
        with self.lock:
            box = self.box(address)
            self._move(box, box.messages[message_id], self.folder_id(address, folder))

    def copy_message(self, address: str, message_id: str, folder: str) -> str:
        """A copy in ``folder`` (a new message, with an id of its own); returns its id."""
        with self.lock:
            box = self.box(address)
            return self._copy(box, box.messages[message_id], self.folder_id(address, folder)).id

    def _move(self, box: FakeMailbox, message: FakeMessage, target: str) -> None:
        source = message.folder_id
        seq = next(self._seq)
        box.removals[source].append((seq, message.id))
        self._notify(box, source, message, "deleted")
        message.folder_id, message.version = target, next(self._seq)
        self._changed(box, message, "created")

    def _copy(self, box: FakeMailbox, message: FakeMessage, target: str) -> FakeMessage:
        n = next(self._n)
        copy = replace(message, n=n, id=f"AAkALgAAImm{n:010d}", folder_id=target,
                       categories=list(message.categories), version=next(self._seq))
        box.messages[copy.id] = copy
        self._changed(box, copy, "created")
        return copy

    def set_categories(self, address: str, message_id: str, categories) -> None:
        with self.lock:
            box = self.box(address)
            message = box.messages[message_id]
            message.categories, message.version = list(categories), next(self._seq)
            self._changed(box, message, "updated")

    def delete_message(self, address: str, message_id: str) -> None:
        with self.lock:
            box = self.box(address)
            message = box.messages.pop(message_id)
            box.removals[message.folder_id].append((next(self._seq), message.id))
            self._notify(box, message.folder_id, message, "deleted")

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self.lock:
            self._expired_before = time.time()
            for token in self.tokens.values():
                token.expires = min(token.expires, time.time() - 1)

    def expire_delta_tokens(self) -> None:
        with self.lock:
            self._generation += 1

    def throttle(self, count: int, retry_after: float = 1, inside_batch: bool = False) -> None:
        """Answer the next ``count`` Graph requests with 429 and ``Retry-After``;
        ``inside_batch``: only requests inside a ``$batch`` (the batch itself answers 200 and
        the throttled items carry their own 429 and Retry-After, as Graph does)."""
        with self.lock:
            (self._throttle_inner if inside_batch else self._throttle).extend(
                [retry_after] * count)

    def issue_assertion(self, user: str) -> str:
        """An add-in SSO token the on-behalf-of grant accepts for ``user``."""
        token = "eyJhbGciOiJSUzI1NiJ9." + _b64url({"upn": user}) + "." + secrets.token_hex(8)
        self.assertions[token] = user.lower()
        return token

    def lifecycle(self, subscription_id: str, event: str) -> None:
        """Post a lifecycle notification (reauthorizationRequired, subscriptionRemoved,
        missed); subscriptionRemoved also ends the subscription."""
        with self.lock:
            sub = self.subscriptions[subscription_id]
            if event == "subscriptionRemoved":
                del self.subscriptions[subscription_id]
        item = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                "tenantId": self.tenant, "clientState": sub.client_state, "lifecycleEvent": event}
        self._outbox.put(("lifecycle", sub.lifecycle_url or sub.notification_url,
                          {"value": [item]}))

    def wait_for_deliveries(self, timeout: float = 10.0) -> None:
        """Until every queued notification was posted."""
        deadline = time.monotonic() + timeout
        while (self._outbox.unfinished_tasks or 0) and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- change notifications -----------------------------------------------------------

    def _changed(self, box: FakeMailbox, message: FakeMessage, change: str) -> None:
        self._notify(box, message.folder_id, message, change)

    def _notify(self, box: FakeMailbox, folder_id: str, message: FakeMessage, change: str) -> None:
        if not self.notifications_enabled:
            return
        now = _now()
        for sub in list(self.subscriptions.values()):
            if sub.mailbox != box.address or sub.folder_id != folder_id or sub.expires <= now:
                continue
            if change not in sub.change_types:
                continue
            item = {"subscriptionId": sub.id, "subscriptionExpirationDateTime": _iso(sub.expires),
                    "changeType": change, "clientState": sub.client_state,
                    "resource": f"Users/{box.user_id}/Messages/{message.id}",
                    "resourceData": {"@odata.type": "#Microsoft.Graph.Message",
                                     "@odata.id": f"Users/{box.user_id}/Messages/{message.id}",
                                     "@odata.etag": f'W/"{message.version}"', "id": message.id},
                    "tenantId": self.tenant}
            self._outbox.put(("notification", sub.notification_url, {"value": [item]}))

    def _deliver_loop(self) -> None:
        while True:
            job = self._outbox.get()
            try:
                if job is None:
                    return
                kind, url, body = job
                try:
                    answer = requests.post(url, json=body, timeout=10)
                    self.deliveries.append((kind, answer.status_code))
                except requests.RequestException as exc:
                    self.delivery_errors.append(f"{kind}: {type(exc).__name__}")
            finally:
                self._outbox.task_done()

    # -- WSGI ---------------------------------------------------------------------------

    def wsgi(self, environ, start_response):
        request = Request(environ)
        path = request.path
        if path.startswith("/v1.0/") and self.dropping(path):
            connection = environ["werkzeug.socket"]  # the connection breaks before an answer
            connection.shutdown(socket.SHUT_RDWR)
            connection.close()
            return []
        if path.startswith(f"/{self.tenant}/"):
            response = self._entra(request, path[len(self.tenant) + 1:])
        elif path.startswith("/v1.0/") or path == "/v1.0":
            response = self._graph_http(request, path[len("/v1.0"):])
        elif path.startswith("/upload/") and request.method == "PUT":
            response = self._upload_range(request, path[len("/upload/"):])
        else:
            response = Response(json.dumps({"error": "not_found"}), 404,
                                content_type="application/json")
        return response(environ, start_response)

    # -- Entra ID -----------------------------------------------------------------------

    def _entra(self, request: Request, path: str) -> Response:
        def answer(status: int, body: dict) -> Response:
            return Response(json.dumps(body), status, content_type="application/json")

        base = self.authority
        if request.method == "GET" and path == "/v2.0/.well-known/openid-configuration":
            return answer(200, {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "issuer": f"https://login.microsoftonline.com/{self.tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": ["client_secret_post",
                                                          "private_key_jwt", "client_secret_basic"],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                "tenant_region_scope": "EU"})
        if request.method != "POST" or path != "/oauth2/v2.0/token":
            return answer(404, {"error": "not_found"})
        self.stats["token"] += 1
        form = request.form
        secret = form.get("client_secret")
        if secret is None and request.authorization is not None:
            secret = request.authorization.password
        if form.get("client_id", request.authorization.username if request.authorization else None) \
                != self.client_id or (secret != self.client_secret
                                      and not form.get("client_assertion")):
            return answer(401, {"error": "invalid_client",
                                "error_description": "AADSTS7000215: Invalid client secret "
                                                     "provided.\r\nTrace ID: 0"})
        grant = form.get("grant_type")
        scopes = form.get("scope", "").split()
        if grant == "client_credentials":
            if scopes == [EWS_SCOPE]:
                return answer(200, self._token("app", self.ews_app_roles, audience=EWS_RESOURCE))
            if scopes != [GRAPH_SCOPE]:
                return answer(400, {"error": "invalid_scope",
                                    "error_description": "AADSTS1002012: The provided value for "
                                                         "scope is not valid."})
            return answer(200, self._token("app", self.app_roles))
        if grant == "refresh_token":
            user = self.refresh_tokens.pop(form.get("refresh_token", ""), None)
            if user is None:
                return answer(400, {"error": "invalid_grant",
                                    "error_description": "AADSTS70008: The refresh token has "
                                                         "expired."})
            return answer(200, self._token("delegated", self._scp(scopes), user, refresh=True,
                                           audience=self._audience(scopes)))
        if grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            user = self.assertions.get(form.get("assertion", ""))
            if user is None or form.get("requested_token_use") != "on_behalf_of":
                return answer(400, {"error": "invalid_grant",
                                    "error_description": "AADSTS50013: Assertion is invalid."})
            return answer(200, self._token("delegated", self._scp(scopes), user, refresh=True,
                                           audience=self._audience(scopes)))
        return answer(400, {"error": "unsupported_grant_type"})

    @staticmethod
    def _audience(scopes: list[str]) -> str:
        """One resource per token, as Entra ID issues them: EWS when its scopes are asked."""
        return EWS_RESOURCE if any(s.startswith(EWS_RESOURCE + "/") for s in scopes) \
            else GRAPH_RESOURCE

    @classmethod
    def _scp(cls, scopes: list[str]) -> tuple[str, ...]:
        resource = cls._audience(scopes)
        return tuple(s.rsplit("/", 1)[-1] for s in scopes if s.startswith(resource + "/"))

    def verify(self, token: str, audience: str) -> Token | None:
        """The token as issued, if it is for ``audience`` and has not expired (what a
        resource server checks; the fake EWS asks here)."""
        with self.lock:
            found = self.tokens.get(token)
        if found is None or found.audience != audience or found.expires <= time.time():
            return None
        return found

    def _token(self, kind: str, roles: tuple[str, ...], user: str | None = None,
               refresh: bool = False, audience: str = GRAPH_RESOURCE) -> dict:
        expires = time.time() + self.token_lifetime
        claims = {"aud": audience, "iss": f"https://sts.windows.net/{self.tenant}/",
                  "tid": self.tenant, "appid": self.client_id, "exp": int(expires),
                  "jti": secrets.token_hex(8)}
        if kind == "app":
            if roles:
                claims["roles"] = list(roles)
        else:
            claims.update(scp=" ".join(roles), upn=user)
        token = _b64url({"typ": "JWT", "alg": "RS256"}) + "." + _b64url(claims) + "." + \
            _b64url(secrets.token_bytes(16))
        with self.lock:
            self.tokens[token] = Token(kind, roles, expires, user, audience)
        body = {"token_type": "Bearer", "expires_in": self.token_lifetime, "ext_expires_in":
                self.token_lifetime, "access_token": token}
        if refresh:
            rt = "rt-" + secrets.token_hex(12)
            self.refresh_tokens[rt] = user
            body["refresh_token"] = rt
            body["scope"] = " ".join(f"{audience}/{r}" for r in roles)
        return body

    # -- Graph --------------------------------------------------------------------------

    def _graph_http(self, request: Request, path: str) -> Response:
        self.stats["http"] += 1
        token = self._bearer(request)
        headers = {k: v for k, v in request.headers.items()}
        query = {k: v for k, v in request.args.items()}
        mailbox = self._mailbox_of(path, request)
        if mailbox:
            with self.lock:
                self.in_flight[mailbox] += 1
                self.max_in_flight[mailbox] = max(self.max_in_flight[mailbox], self.in_flight[mailbox])
                crowded = self.in_flight[mailbox] > 4
        try:
            if self.delay:
                time.sleep(self.delay)
            if mailbox and crowded:
                self.stats["concurrency_429"] += 1
                status, out_headers, body = _error(
                    429, "ApplicationThrottled", "Application is over its MailboxConcurrency "
                    "limit.", {"Retry-After": "1"})
            else:
                status, out_headers, body = self._graph(request.method, path, query, headers,
                                                        request.get_data(), token)
        finally:
            if mailbox:
                with self.lock:
                    self.in_flight[mailbox] -= 1
        if isinstance(body, (dict, list)):
            return Response(json.dumps(body), status, headers=out_headers,
                            content_type="application/json")
        response = Response(body or b"", status, headers=out_headers)
        if body:
            response.content_type = out_headers.get("Content-Type", "text/plain")
        return response

    def _mailbox_of(self, path: str, request: Request) -> str | None:
        match = re.match(r"^/users/([^/?]+)", path)
        if match:
            return unquote(match.group(1)).lower()
        if path == "/$batch":
            try:
                first = (request.get_json(silent=True) or {}).get("requests", [{}])[0]
                inner = re.match(r"^/?users/([^/?]+)", first.get("url", ""))
                return unquote(inner.group(1)).lower() if inner else None
            except (AttributeError, IndexError, TypeError):
                return None
        return None

    def _bearer(self, request: Request) -> Token | None:
        value = request.headers.get("Authorization", "")
        if not value.startswith("Bearer "):
            return None
        return self.verify(value[len("Bearer "):], GRAPH_RESOURCE)

    def _graph(self, method: str, path: str, query: dict, headers: dict, data: bytes,
               token: Token | None, inner: bool = False):
        """One Graph request (top level or inside a batch) -> (status, headers, body)."""
        status, out_headers, body = self._answer(method, path, query, headers, data, token, inner)
        if self.record is not None and path != "/$batch":
            try:
                sent = json.loads(data) if data else None
            except ValueError:
                sent = None
            self.record.append((method, path, dict(query), sent, status,
                                body if isinstance(body, dict) else None))
        return status, out_headers, body

    def _answer(self, method: str, path: str, query: dict, headers: dict, data: bytes,
                token: Token | None, inner: bool = False):
        with self.lock:
            waits = self._throttle_inner if inner and self._throttle_inner else self._throttle
            if waits:
                wait = waits.pop(0)
                self.stats["throttled"] += 1
                return _error(429, "ApplicationThrottled", "Application is over its "
                              "MailboxConcurrency limit.", {"Retry-After": str(int(wait))})
        if token is None:
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the "
                          "token is expired." if self._expired_before else
                          "Access token is empty.")
        if path == "/$batch" and method == "POST" and not inner:
            return self._batch(data, token)
        if path == "/subscriptions" and method == "POST":
            return self._subscribe(json.loads(data or b"{}"), token)
        match = re.match(r"^/subscriptions/([^/]+)$", path)
        if match:
            return self._subscription(method, unquote(match.group(1)), data)
        match = re.match(r"^/users/([^/]+)(/.*)?$", path)
        if not match:
            return _error(400, "BadRequest", f"Resource not found for the segment '{path}'.")
        address = unquote(match.group(1)).lower()
        rest = match.group(2) or ""
        box = self.mailboxes.get(address) or next(
            (b for b in self.mailboxes.values() if b.user_id == address), None)
        if box is None:
            return _error(404, "ErrorInvalidUser", f"The requested user '{address}' is invalid.")
        role = item_role(rest, token.kind == "delegated") or (
            "Mail.Send" if rest.endswith("/send") or rest == "/sendMail" else
            "MailboxSettings.ReadWrite" if "/messageRules" in rest else "Mail.ReadWrite")
        denied = self._denied(token, box, role)
        if denied:
            return denied
        immutable = 'idtype="immutableid"' in headers.get("Prefer", "").replace(" ", "").lower()
        with self.lock:
            if not self._count(box):
                return _error(429, "ApplicationThrottled", "Application is over its "
                              "MailboxRequests limit (10000 in 10 minutes).", {"Retry-After": "60"})
            if role:
                answer = self._items(method, box, rest, query, headers, data)
                if answer is not None:
                    return answer
            return self._mail(method, box, rest, query, headers, data, immutable)

    def _denied(self, token: Token, box: FakeMailbox, role: str):
        if token.kind == "delegated":
            if token.user != box.address:
                return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials "
                              "and try again.")
            granted = set(token.roles)
        else:
            if not token.roles:
                return _error(403, "AccessDenied", "Either scp or roles claim need to be "
                              "present in the token.")
            if self.access_policy is not None and box.address not in self.access_policy:
                return _error(403, "ErrorAccessDenied", POLICY_DENIED)
            granted = set(token.roles)
        if role not in granted:
            return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and "
                          "try again.")
        return None

    def _count(self, box: FakeMailbox) -> bool:
        """Count a request against the mailbox's 10,000 per 10 minutes; False when over."""
        recent = self.recent[box.address]
        now = time.monotonic()
        while recent and recent[0] < now - 600:
            recent.popleft()
        if len(recent) >= 10_000:
            return False
        recent.append(now)
        return True

    # -- $batch ---------------------------------------------------------------------------

    def _batch(self, data: bytes, token: Token):
        try:
            items = json.loads(data or b"{}").get("requests") or []
        except ValueError:
            return _error(400, "BadRequest", "Invalid batch payload format.")
        if len(items) > 20:
            return _error(400, "BadRequest", "Number of requests in a batch cannot exceed 20.")
        self.stats["batch"] += 1
        responses = []
        for item in items:
            self.stats["batch_items"] += 1
            url = "/" + str(item.get("url", "")).lstrip("/")
            parts = urlsplit(url)
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            body = item.get("body")
            raw = json.dumps(body).encode() if isinstance(body, (dict, list)) else \
                (base64.b64decode(body) if isinstance(body, str) else b"")
            status, headers, answer = self._graph(item.get("method", "GET"), parts.path, query,
                                                  item.get("headers") or {}, raw, token, inner=True)
            entry = {"id": item.get("id"), "status": status, "headers": dict(headers)}
            if isinstance(answer, (dict, list)):
                entry["headers"]["Content-Type"] = "application/json"
                entry["body"] = answer
            elif answer:
                # JSON batching: a body that is not JSON comes back base64-encoded.
                entry["headers"].setdefault("Content-Type", "text/plain")
                entry["body"] = base64.b64encode(answer).decode()
            responses.append(entry)
        return 200, {}, {"responses": responses}

    # -- mail ---------------------------------------------------------------------------

    def _out_id(self, message: FakeMessage, immutable: bool) -> str:
        return message.id if immutable else f"AAMkRest{message.folder_id[-8:]}{message.n:010d}"

    def _find(self, box: FakeMailbox, message_id: str) -> FakeMessage | None:
        found = box.messages.get(message_id)
        if found is None and message_id.startswith("AAMkRest"):
            n = int(message_id[-10:])
            found = next((m for m in box.messages.values() if m.n == n
                          and m.folder_id[-8:] == message_id[8:16]), None)
        return found

    def _folder_ref(self, box: FakeMailbox, ref: str) -> str | None:
        ref = unquote(ref)
        if ref.lower() in box.well_known:
            return box.well_known[ref.lower()]
        return ref if ref in box.folders else None

    def _folder_json(self, box: FakeMailbox, folder: FakeFolder) -> dict:
        return {"id": folder.id, "displayName": folder.name,
                "parentFolderId": folder.parent_id or "",
                "childFolderCount": sum(1 for f in box.folders.values() if f.parent_id == folder.id),
                "totalItemCount": sum(1 for m in box.messages.values() if m.folder_id == folder.id),
                "unreadItemCount": 0, "isHidden": False}

    def _message_json(self, box: FakeMailbox, message: FakeMessage, immutable: bool) -> dict:
        def recipients(addresses):
            return [{"emailAddress": {"address": a, "name": a}} for a in addresses]
        return {"@odata.type": "#microsoft.graph.message",
                "@odata.etag": f'W/"{message.version}"', "id": self._out_id(message, immutable),
                "categories": list(message.categories),
                "receivedDateTime": _iso(message.received),
                "internetMessageId": message.internet_message_id, "subject": message.subject,
                "isDraft": message.is_draft, "isRead": message.is_read,
                "parentFolderId": message.folder_id, "toRecipients": recipients(message.to),
                "ccRecipients": recipients(message.cc), "bccRecipients": recipients(message.bcc)}

    def _mail(self, method: str, box: FakeMailbox, rest: str, query: dict, headers: dict,
              data: bytes, immutable: bool):
        if rest in ("", "/") and method == "GET":
            return 200, {}, {"id": box.user_id, "mail": box.address,
                             "userPrincipalName": box.address}
        if rest == "/mailFolders/delta" and method == "GET":
            self.stats["folder_delta"] += 1
            rows = [self._folder_json(box, f) for f in box.folders.values() if f.id != box.root_id
                    and (self.folder_delta_flat or f.parent_id == box.root_id)]
            link = f"{self.graph_url}/users/{quote(box.address)}/mailFolders/delta?$deltatoken=" + \
                _b64url({"folders": True})
            return 200, {}, {"value": rows, "@odata.deltaLink": link}
        match = re.match(r"^/mailFolders/([^/]+)/messages/delta$", rest)
        if match and method == "GET":
            return self._delta(box, match.group(1), query, headers, immutable)
        match = re.match(r"^/mailFolders/([^/]+)/childFolders$", rest)
        if match and method == "GET":
            folder_id = self._folder_ref(box, match.group(1))
            if folder_id is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.")
            return 200, {}, {"value": [self._folder_json(box, f) for f in box.folders.values()
                                       if f.parent_id == folder_id]}
        match = re.match(r"^/mailFolders/([^/]+)$", rest)
        if match and method in ("GET", "PATCH"):
            folder_id = self._folder_ref(box, match.group(1))
            if folder_id is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.")
            if method == "PATCH":  # a rename, as Outlook does it
                name = json.loads(data or b"{}").get("displayName")
                if not isinstance(name, str) or not name.strip():
                    return _error(400, "ErrorInvalidRequest", "The displayName is not valid.")
                box.folders[folder_id].name = name
            return 200, {}, self._folder_json(box, box.folders[folder_id])
        if "/messageRules" in rest:
            return graph_rules.handle(box, method, rest, data)
        if rest == "/messages" and method == "POST":
            return self._create_draft(box, headers, data, immutable)
        if rest == "/sendMail" and method == "POST":
            return self._send_mail(box, headers, data)
        match = re.match(r"^/messages/([^/]+)/attachments/createUploadSession$", rest)
        if match and method == "POST":
            return self._create_upload_session(box, unquote(match.group(1)), data)
        match = re.match(r"^/messages/([^/]+)(/\$value|/send|/move|/copy)?$", rest)
        if not match:
            return _error(400, "BadRequest", f"Resource not found for the segment '{rest}'.")
        message = self._find(box, unquote(match.group(1)))
        if message is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the "
                          "store.")
        action = match.group(2)
        if action == "/$value" and method == "GET":
            self.stats["mime"] += 1
            return 200, {"Content-Type": "text/plain"}, message.mime
        if action in ("/move", "/copy") and method == "POST":
            target = self._folder_ref(box, str(json.loads(data or b"{}").get("destinationId")))
            if target is None:
                return _error(404, "ErrorItemNotFound", "The specified object was not found in "
                              "the store.")
            if action == "/move":
                self._move(box, message, target)
            else:
                message = self._copy(box, message, target)
            return 201, {}, self._message_json(box, message, immutable)
        if action == "/send" and method == "POST":
            self.stats["send"] += 1
            self._send(box, message)
            return 202, {}, None
        if action is None and method == "GET":
            return 200, {}, self._message_json(box, message, immutable)
        if action is None and method == "PATCH":
            self.stats["patch"] += 1
            body = json.loads(data or b"{}")
            if "categories" in body:
                message.categories = [str(c) for c in body["categories"]]
            if "bccRecipients" in body:
                message.bcc = [r["emailAddress"]["address"] for r in body["bccRecipients"]]
            if "isRead" in body:
                message.is_read = bool(body["isRead"])
            message.version = next(self._seq)
            self._changed(box, message, "updated")
            return 200, {}, self._message_json(box, message, immutable)
        if action is None and method == "DELETE":
            box.messages.pop(message.id)
            box.removals[message.folder_id].append((next(self._seq), message.id))
            return 204, {}, None
        return _error(405, "ErrorInvalidRequest", "The OData request is not supported.")

    def _delta(self, box: FakeMailbox, folder_ref: str, query: dict, headers: dict,
               immutable: bool):
        self.stats["delta"] += 1
        folder_id = self._folder_ref(box, folder_ref)
        if folder_id is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the "
                          "store.")
        state = None
        for name in ("$skiptoken", "$deltatoken"):
            if name in query:
                state = _unb64url(query[name])
                if not state or state.get("f") != folder_id or state.get("g") != self._generation:
                    return _error(410, "SyncStateNotFound", "The sync state generation is "
                                  "not found or has expired.")
        page_size = 10
        match = re.search(r"odata\.maxpagesize=(\d+)", headers.get("Prefer", ""))
        if match:
            page_size = max(1, int(match.group(1)))
        if state is None or "t" not in state:
            since = state.get("s", 0) if state else 0
            snapshot, after = next(self._seq), None
            select = query.get("$select", "")
        else:
            since, snapshot, after = state["s"], state["t"], state.get("a")
            select = state.get("sel", "")
        candidates = sorted((m for m in box.messages.values() if m.folder_id == folder_id
                             and since < m.version <= snapshot), key=lambda m: (m.version, m.n))
        if after:
            candidates = [m for m in candidates if (m.version, m.n) > tuple(after)]
        page = candidates[:page_size]
        value = []
        if after is None and since:
            here = {m.id for m in box.messages.values() if m.folder_id == folder_id}
            gone = dict.fromkeys(i for seq, i in box.removals.get(folder_id, [])
                                 if since < seq <= snapshot and i not in here)
            for message_id in gone:
                message = box.messages.get(message_id)
                shown = self._out_id(message, immutable) if message else message_id
                value.append({"@odata.type": "#microsoft.graph.message", "id": shown,
                              "@removed": {"reason": "deleted"}})
        wanted = {s.strip() for s in select.split(",") if s.strip()}
        for message in page:
            full = self._message_json(box, message, immutable)
            value.append({k: v for k, v in full.items()
                          if not wanted or k in wanted or k in ("id", "@odata.type", "@odata.etag")})
        base = f"{self.graph_url}/users/{quote(box.address)}/mailFolders/{folder_id}/messages/delta"
        body = {"@odata.context": f"{self.graph_url}/$metadata#Collection(message)", "value": value}
        if len(candidates) > len(page):
            last = page[-1]
            token = {"f": folder_id, "g": self._generation, "s": since, "t": snapshot,
                     "a": [last.version, last.n], "sel": select}
            body["@odata.nextLink"] = f"{base}?$skiptoken={_b64url(token)}"
        else:
            token = {"f": folder_id, "g": self._generation, "s": snapshot}
            body["@odata.deltaLink"] = f"{base}?$deltatoken={_b64url(token)}"
        return 200, {}, body

    def _create_draft(self, box: FakeMailbox, headers: dict, data: bytes, immutable: bool):
        kind = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if not kind.lower().startswith("text/plain"):
            return _error(400, "ErrorInvalidRequest", "This fake takes drafts as MIME only.")
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string "
                          "for MIME content.")
        self.stats["draft"] += 1
        drafts = next(f for f in box.folders.values() if f.id == box.well_known["drafts"])
        message_id = self.deliver(box.address, raw, drafts.name, draft=True)
        return 201, {}, self._message_json(box, box.messages[message_id], immutable)

    # -- upload sessions ----------------------------------------------------------------

    def _create_upload_session(self, box: FakeMailbox, message_id: str, data: bytes):
        message = self._find(box, message_id)
        if message is None or not message.is_draft:
            return _error(404, "ErrorItemNotFound", "The specified object was not found in the "
                          "store.")
        item = (json.loads(data or b"{}") or {}).get("AttachmentItem") or {}
        size = item.get("size")
        if item.get("attachmentType") != "file" or not item.get("name") or \
                not isinstance(size, int) or not 0 < size <= 150 * 1024 * 1024:
            return _error(400, "ErrorInvalidRequest", "The AttachmentItem is not valid.")
        session = secrets.token_hex(12)
        self.uploads[session] = {"box": box.address, "message": message.id, "item": item,
                                 "data": bytearray(), "auth": secrets.token_urlsafe(16)}
        self.stats["upload_session"] += 1
        expires = _iso(_now() + timedelta(minutes=15))
        return 201, {}, {"uploadUrl": f"{self.origin}/upload/{session}?authtoken="
                                      f"{self.uploads[session]['auth']}",
                         "expirationDateTime": expires, "nextExpectedRanges": ["0-"]}

    def _upload_range(self, request: Request, session_id: str) -> Response:
        def answer(status: int, body: dict | None, headers: dict | None = None) -> Response:
            return Response(json.dumps(body) if body is not None else "", status,
                            headers=headers or {}, content_type="application/json")

        session = self.uploads.get(session_id)
        if session is None or request.args.get("authtoken") != session["auth"] \
                or "Authorization" in request.headers:
            return answer(401, {"error": {"code": "InvalidAuthenticationToken",
                                          "message": "The upload URL is not valid."}})
        chunk = request.get_data()
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", request.headers.get("Content-Range", ""))
        total = session["item"]["size"]
        if not match:
            return answer(400, {"error": {"code": "InvalidContentRange",
                                          "message": "Content-Range is missing or not valid."}})
        start, end, whole = (int(g) for g in match.groups())
        with self.lock:
            if self.fail_uploads > 0:
                self.fail_uploads -= 1
                self.upload_ranges.append((start, end, 503))
                return answer(503, {"error": {"code": "ServiceUnavailable", "message":
                                              "The service is unavailable."}},
                              {"Retry-After": "0"})
            last = end + 1 == total
            if whole != total or start != len(session["data"]) or end < start or \
                    len(chunk) != end - start + 1 or len(chunk) > 4 * 1024 * 1024 or \
                    (not last and len(chunk) % (320 * 1024)):
                self.upload_ranges.append((start, end, 416))
                return answer(416, {"error": {"code": "InvalidContentRange", "message":
                                              "The Content-Range is not the one expected."}})
            session["data"] += chunk
            self.upload_ranges.append((start, end, 201 if last else 200))
            if not last:
                return answer(200, {"expirationDateTime": _iso(_now() + timedelta(minutes=15)),
                                    "nextExpectedRanges": [str(end + 1)]})
            del self.uploads[session_id]
            box = self.mailboxes[session["box"]]
            message = box.messages[session["message"]]
            attachment_id = self._attach(message, session["item"], bytes(session["data"]))
        location = (f"{self.graph_url}/users/{quote(box.address)}/messages/"
                    f"{quote(message.id)}/attachments/{attachment_id}")
        return answer(201, None, {"Location": location})

    @staticmethod
    def _attach(message: FakeMessage, item: dict, data: bytes) -> str:
        """Add a file to a draft's MIME (as Exchange adds an uploaded attachment)."""
        mime = BytesParser(policy=policy.default).parsebytes(message.mime)
        if mime.get_content_type() != "multipart/mixed":
            mime.make_mixed()
        maintype, _, subtype = str(item.get("contentType") or
                                   "application/octet-stream").partition("/")
        mime.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                            filename=item["name"],
                            disposition="inline" if item.get("isInline") else "attachment")
        if item.get("contentId"):
            mime.get_payload()[-1]["Content-ID"] = f"<{item['contentId']}>"
        message.mime = mime.as_bytes()
        return "AAMkAttachment" + secrets.token_hex(8)

    def _send(self, box: FakeMailbox, message: FakeMessage) -> None:
        message.is_draft = False
        message.received = _now()
        self._move(box, message, box.well_known["sentitems"])
        for address in dict.fromkeys(a.lower() for a in message.to + message.cc + message.bcc):
            if address in self.mailboxes and address != box.address:
                self.deliver(address, message.mime)

    def _send_mail(self, box: FakeMailbox, headers: dict, data: bytes):
        try:
            raw = base64.b64decode(data, validate=True)
        except ValueError:
            return _error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string "
                          "for MIME content.")
        self.stats["send"] += 1
        message_id = self.deliver(box.address, raw, "Drafts", draft=True)
        self._send(box, box.messages[message_id])
        return 202, {}, None

    # -- subscriptions ------------------------------------------------------------------

    def _subscribe(self, body: dict, token: Token):
        """POST /subscriptions, on the resources Microsoft documents for change
        notifications (``users/{id}`` or, delegated, ``me``, then: ``mailFolders/{id}/
        messages``, ``events``, ``contacts``, ``contactFolders/{id}/contacts``,
        ``todo/lists/{id}/tasks``) with the change types Graph knows."""
        self.stats["subscribe"] += 1
        resource = str(body.get("resource") or "")
        match = re.match(r"^/?(?:users/([^/]+)|(me))(/.*)$", resource, re.I)
        if not match:
            return _unsupported()
        if match.group(2) and token.kind != "delegated":
            return _error(400, "BadRequest", "/me request is only valid with delegated "
                          "authentication flow.")
        address = token.user if match.group(2) else unquote(match.group(1)).lower()
        box = self.mailboxes.get(address or "")
        if box is None:
            return _error(404, "ErrorInvalidUser", "The requested user is invalid.")
        rest = match.group(3)
        watched = self._watched(box, rest, token.kind == "delegated")
        if watched is None:
            return _unsupported()
        scope, role, most = watched
        denied = self._denied(token, box, role)
        if denied:
            return denied
        if scope is None:
            return _error(404, "ErrorItemNotFound", "The specified object was not found.")
        changes = str(body.get("changeType") or "").split(",")
        if not all(c in CHANGE_TYPES for c in changes):
            return _error(400, "InvalidRequest", f"Invalid changeType '{body.get('changeType')}'"
                          f"; it must be a comma-separated list of {', '.join(CHANGE_TYPES)}.")
        return self._subscribed(body, box, scope, resource, most)

    def _watched(self, box: FakeMailbox, rest: str,
                 delegated: bool) -> tuple[str | None, str, int] | None:
        """What a subscription's resource under its mailbox watches (a folder or collection
        id, ``ALL_EVENTS``, or None when that folder or collection is not found), the
        permission it needs and its longest lifetime in minutes; None: not a resource Graph
        takes subscriptions on."""
        key = r"(?:\('([^']+)'\)|/([^/]+))"  # /{id} or ('{id}')
        match = re.match(rf"^/mailFolders{key}/messages$", rest)
        if match:
            return (self._folder_ref(box, unquote(match.group(1) or match.group(2))),
                    "Mail.ReadWrite", MAX_SUBSCRIPTION_MINUTES)
        if rest == "/events":
            return ALL_EVENTS, "Calendars.ReadWrite", MAX_SUBSCRIPTION_MINUTES
        if rest == "/contacts":
            return (self.default_collection(box.address, "contact"), "Contacts.ReadWrite",
                    MAX_SUBSCRIPTION_MINUTES)
        match = re.match(rf"^/contactFolders{key}/contacts$", rest)
        if match:
            found = unquote(match.group(1) or match.group(2))
            return (found if found in box.collections else None, "Contacts.ReadWrite",
                    MAX_SUBSCRIPTION_MINUTES)
        match = re.match(r"^/todo/lists/([^/]+)/tasks$", rest)
        if match:
            found = unquote(match.group(1))
            return (found if found in box.collections else None,
                    item_role("/todo/", delegated), TODO_SUBSCRIPTION_MINUTES)
        return None

    def _subscribed(self, body: dict, box: FakeMailbox, folder_id: str, resource: str,
                    most: int):
        """Validate and keep a subscription on a folder or item collection."""
        try:
            expires = datetime.fromisoformat(str(body.get("expirationDateTime")).replace("Z", "+00:00"))
        except ValueError:
            return _error(400, "InvalidRequest", "expirationDateTime is not valid.")
        if expires > _now() + timedelta(minutes=most) or expires <= _now():
            return _error(400, "InvalidRequest", f"Subscription expiration can only be {most} "
                          "minutes in the future.")
        client_state = body.get("clientState")
        if client_state is not None and len(client_state) > 128:
            return _error(400, "InvalidRequest", "clientState is longer than 128 characters.")
        notification_url = str(body.get("notificationUrl") or "")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        for url in filter(None, (notification_url, lifecycle_url)):
            if not self._validate(url):
                return _error(400, "InvalidRequest", "Subscription validation request failed. "
                              "Notification endpoint must respond with 200 OK to validation "
                              "request.")
        sub = Subscription(id=secrets.token_hex(16), mailbox=box.address, folder_id=folder_id,
                           change_types=set(str(body.get("changeType") or "").split(",")),
                           notification_url=notification_url, lifecycle_url=lifecycle_url,
                           client_state=client_state, expires=expires, resource=resource,
                           most=most)
        with self.lock:
            self.subscriptions[sub.id] = sub
        return 201, {}, self._subscription_json(sub)

    def _validate(self, url: str) -> bool:
        """Graph's validation handshake: POST ?validationToken=..., expect it back as
        text/plain with 200 within 10 seconds."""
        token = f"Validation: Testing client application reachability for subscription " \
                f"Request-Id: {secrets.token_hex(8)}"
        joiner = "&" if "?" in url else "?"
        try:
            answer = requests.post(f"{url}{joiner}{urlencode({'validationToken': token})}",
                                   headers={"Content-Type": "text/plain; charset=utf-8"},
                                   timeout=10)
        except requests.RequestException:
            return False
        self.deliveries.append(("validation", answer.status_code))
        return (answer.status_code == 200 and answer.text == token
                and answer.headers.get("Content-Type", "").startswith("text/plain"))

    def _subscription_json(self, sub: Subscription) -> dict:
        return {"@odata.context": f"{self.graph_url}/$metadata#subscriptions/$entity",
                "id": sub.id, "resource": sub.resource, "applicationId": self.client_id,
                "changeType": ",".join(sorted(sub.change_types)), "clientState": sub.client_state,
                "notificationUrl": sub.notification_url,
                "lifecycleNotificationUrl": sub.lifecycle_url,
                "expirationDateTime": _iso(sub.expires), "creatorId": secrets.token_hex(4)}

    def _subscription(self, method: str, subscription_id: str, data: bytes):
        with self.lock:
            sub = self.subscriptions.get(subscription_id)
            if sub is None:
                return _error(404, "ResourceNotFound", "The object was not found.")
            if method == "GET":
                return 200, {}, self._subscription_json(sub)
            if method == "DELETE":
                del self.subscriptions[subscription_id]
                return 204, {}, None
            if method == "PATCH":
                self.stats["renew"] += 1
                body = json.loads(data or b"{}")
                expires = datetime.fromisoformat(str(body.get("expirationDateTime")).replace("Z", "+00:00"))
                if expires > _now() + timedelta(minutes=sub.most):
                    return _error(400, "InvalidRequest", "Subscription expiration can only be "
                                  f"{sub.most} minutes in the future.")
                sub.expires = expires
                return 200, {}, self._subscription_json(sub)
        return _error(405, "MethodNotAllowed", "Method not allowed.")
