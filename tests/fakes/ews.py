"""A fake Exchange Web Services endpoint for the EWS connector's tests: a small WSGI SOAP
service that answers the operations exchangelib sends, with the request and response shapes
Microsoft documents (learn.microsoft.com, "EWS reference for Exchange": GetFolder,
FindFolder, SyncFolderItems, GetItem, UpdateItem, CreateItem, ConvertId, Subscribe with a
StreamingSubscriptionRequest, GetStreamingEvents, Unsubscribe).

What it keeps: mailboxes (one per SMTP address) with a folder tree under ``msgfolderroot``
(Inbox, Sent Items, Drafts, Deleted Items, Junk Email) and messages (MIME, categories,
received time); every change to a folder's items is logged with a sequence number, and a
SyncFolderItems state is ``base64("fake-ews:<folder id>:<sequence>")``, so a sync returns
Create/Update/Delete changes since that point, netted per item as Exchange does, in pages
of ``MaxChangesReturned`` with ``IncludesLastItemInRange``.

What it checks: HTTP Basic credentials, or an OAuth bearer token when ``token_issuer`` is set
(the fake Entra ID of tests/fakes/graph.py, asked whether it issued the token for the
``https://outlook.office365.com`` resource and whether it is still valid, as Exchange
validates a token's audience and lifetime): an app-only token with the ``full_access_as_app``
role acts as an impersonating account, a delegated token with ``EWS.AccessAsUser.All`` as its
user on their own mailbox; with ``ntlm = True`` also NTLM, accepted for real by pyspnego's
NTLM acceptor against a credential file of the fake's users (``ntlm_user_file``, read through
``NTLM_USER_FILE``): the negotiate, challenge and authenticate legs on one kept-alive
HTTP/1.1 connection, as IIS does it; a 401 with ``WWW-Authenticate`` naming the schemes
otherwise (``Bearer error="invalid_token"`` for a token it refuses);
``ExchangeImpersonation`` only for accounts allowed to impersonate
(``ErrorImpersonateUserDenied``); a mailbox named in a request must exist
(``ErrorNonExistentMailbox``). ``busy`` answers the next N requests with ErrorServerBusy
(a SOAP fault with ``BackOffMilliseconds``), as Exchange's throttling does.

Tests drive it as a mail client or the transport would: ``deliver``, ``move``,
``create_folder``, ``rename_folder``, ``move_folder``, ``set_categories``. A streaming
subscription hears of every change to the items of its folders (messages, and the calendar
items, contacts and tasks of ``ews_items``, an occurrence's change as its master's): a
CreatedEvent, ModifiedEvent or DeletedEvent with the TimeStamp, ItemId and ParentFolderId;
GetStreamingEvents holds the connection until it has one (or its ConnectionTimeout
passes), answers it and closes. ``serve`` runs
it on a loopback port in a thread; exchangelib talks to it over real HTTP.
"""
from __future__ import annotations

import base64
import io
import itertools
import secrets
import socket
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit
from xml.sax.saxutils import escape, quoteattr

import spnego
from spnego.exceptions import SpnegoError

from tests.fakes.dropping import Drops
from tests.fakes.ews_items import ITEM_CLASS, ITEM_FOLDERS, FakeEwsItems, FakeRecord

S = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
SERVER_VERSION = ('<h:ServerVersionInfo xmlns:h="%s" MajorVersion="15" MinorVersion="1" '
                  'MajorBuildNumber="2507" MinorBuildNumber="6" Version="V2017_07_11"/>' % T)
WELL_KNOWN = {"inbox": "Inbox", "sentitems": "Sent Items", "drafts": "Drafts",
              "deleteditems": "Deleted Items", "junkemail": "Junk Email"}
_seq = itertools.count(1)


def _q(tag: str, ns: str = T) -> str:
    return f"{{{ns}}}{tag}"


def _new_id() -> str:
    return base64.b64encode(b"AAMk" + secrets.token_bytes(30)).decode()


class Fault(Exception):
    """An EWS error: answered as a response message with ResponseClass="Error"."""

    def __init__(self, code: str, text: str):
        super().__init__(text)
        self.code, self.text = code, text


@dataclass
class FakeFolder:
    id: str
    name: str
    parent: str | None
    distinguished: str | None = None
    changekey: str = field(default_factory=lambda: secrets.token_hex(4))
    folder_class: str = "IPF.Note"


@dataclass
class FakeItem:
    id: str
    folder: str
    mime: bytes
    categories: list[str] = field(default_factory=list)
    received: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    changekey: str = field(default_factory=lambda: secrets.token_hex(6))


class FakeMailbox:
    def __init__(self, address: str):
        self.address = address
        self.folders: dict[str, FakeFolder] = {}
        self.root = self._add("Top of Information Store", None, "msgfolderroot")
        for key, name in WELL_KNOWN.items():
            self._add(name, self.root.id, key)
        self.items: dict[str, FakeItem] = {}  # and FakeRecords (calendar items, contacts, tasks)
        self.occurrences: dict[str, FakeRecord] = {}  # changed occurrences of series
        self.on_change = None  # set by the server: streaming subscriptions hear of changes
        # folder id -> [(sequence, kind, item id)], kind: create update delete
        self.log: dict[str, list[tuple[int, str, str]]] = {}

    def _add(self, name: str, parent: str | None, distinguished: str | None = None) -> FakeFolder:
        folder = FakeFolder(_new_id(), name, parent, distinguished)
        self.folders[folder.id] = folder
        return folder

    def folder(self, name_or_id: str) -> FakeFolder:
        """By id, distinguished id, or "/"-path below the root ("Inbox/Contoso deal")."""
        if name_or_id in self.folders:
            return self.folders[name_or_id]
        for f in self.folders.values():
            if f.distinguished == name_or_id or self.path(f) == name_or_id:
                return f
        raise KeyError(name_or_id)

    def path(self, folder: FakeFolder) -> str:
        parts = []
        while folder.parent is not None:
            parts.append(folder.name)
            folder = self.folders[folder.parent]
        return "/".join(reversed(parts))

    def note(self, folder_id: str, kind: str, item_id: str) -> None:
        self.log.setdefault(folder_id, []).append((next(_seq), kind, item_id))
        if self.on_change is not None:
            self.on_change(self, folder_id, kind, item_id)


class FakeExchange(FakeEwsItems, Drops):
    """The state of the fake server, and its WSGI application (``self`` is callable)."""

    def __init__(self):
        self.users: dict[str, str] = {}  # user name -> password
        self.own_mailbox: dict[str, str] = {}  # user name -> its own SMTP address
        self.impersonators: set[str] = set()
        self.mailboxes: dict[str, FakeMailbox] = {}
        self.busy = 0  # answer this many next requests with ErrorServerBusy
        self.back_off_ms = 30000
        self.operations: list[str] = []  # every SOAP operation received, in order
        self.sent: list[dict] = []  # what CreateItem sent: {"mailbox", "mime", "bcc"}
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)  # told of every change to any folder
        self.streaming = True  # False: Subscribe is refused, as by Exchange 2007
        # subscription id -> {"address", "folders": set of ids, "events": [(kind, item, folder)]}
        self.subscriptions: dict[str, dict] = {}
        self.url: str | None = None
        self.token_issuer = None  # a FakeGraph: bearer tokens it issued for EWS are accepted
        self.ntlm = False  # True: NTLM is offered and accepted (see ntlm_user_file)
        self.ntlm_sign_ins: list[str] = []  # the users each completed NTLM exchange proved
        self._ntlm_contexts: dict[tuple, object] = {}  # connection -> NTLM acceptor
        self.denied: set[str] = set()  # distinguished folders that answer ErrorAccessDenied
        self.drop_requests = 0  # break the connection of this many next requests (Drops)
        self.state_generation = 0  # SyncStates of an older generation are invalid

    # -- set-up and actions a test (or Exchange's own transport) performs ------------------

    def add_user(self, username: str, password: str, address: str | None = None,
                 impersonate: bool = False) -> None:
        self.users[username] = password
        if address:
            self.own_mailbox[username] = address
            self.mailbox(address)
        if impersonate:
            self.impersonators.add(username)

    def mailbox(self, address: str) -> FakeMailbox:
        key = address.lower()
        if key not in self.mailboxes:
            self.mailboxes[key] = FakeMailbox(address)
            self.mailboxes[key].on_change = self._heard
            self._add_item_folders(self.mailboxes[key])
        return self.mailboxes[key]

    def _heard(self, box: FakeMailbox, folder_id: str, kind: str, item_id: str) -> None:
        event = {"create": "CreatedEvent", "update": "ModifiedEvent",
                 "delete": "DeletedEvent"}[kind]
        with self.lock:
            for sub in self.subscriptions.values():
                if sub["address"].lower() == box.address.lower() and folder_id in sub["folders"]:
                    sub["events"].append((event, item_id, folder_id))
            self.changed.notify_all()

    def deliver(self, address: str, mime: bytes, folder: str = "inbox",
                categories: list[str] | None = None) -> str:
        with self.lock:
            box = self.mailbox(address)
            target = box.folder(folder)
            item = FakeItem(_new_id(), target.id, mime, list(categories or []))
            box.items[item.id] = item
            box.note(target.id, "create", item.id)
            return item.id

    def move(self, address: str, item_id: str, folder: str) -> str:
        """As Outlook moves mail: a Delete in the old folder, a new item (new id) in the new."""
        with self.lock:
            box = self.mailbox(address)
            item = box.items.pop(item_id)
            box.note(item.folder, "delete", item.id)
            target = box.folder(folder)
            moved = FakeItem(_new_id(), target.id, item.mime, item.categories, item.received)
            box.items[moved.id] = moved
            box.note(target.id, "create", moved.id)
            return moved.id

    def copy(self, address: str, item_id: str, folder: str) -> str:
        """A copy in ``folder`` (a new item; the original stays); returns the copy's id."""
        with self.lock:
            box = self.mailbox(address)
            item = box.items[item_id]
            target = box.folder(folder)
            copy = FakeItem(_new_id(), target.id, item.mime, list(item.categories), item.received)
            box.items[copy.id] = copy
            box.note(target.id, "create", copy.id)
            return copy.id

    def set_categories(self, address: str, item_id: str, categories: list[str]) -> None:
        with self.lock:
            box = self.mailbox(address)
            item = box.items[item_id]
            item.categories = list(categories)
            item.changekey = secrets.token_hex(6)
            box.note(item.folder, "update", item.id)

    def expire_subscriptions(self) -> None:
        """Every streaming subscription ends (as when Exchange restarts): open streams answer
        and close, and the next GetStreamingEvents is ErrorSubscriptionNotFound."""
        with self.lock:
            self.subscriptions.clear()
            self.changed.notify_all()

    def create_folder(self, address: str, path: str, folder_class: str = "IPF.Note") -> str:
        with self.lock:
            box = self.mailbox(address)
            parent, _, name = path.rpartition("/")
            parent_folder = box.folder(parent) if parent else box.root
            folder = box._add(name, parent_folder.id)
            folder.folder_class = folder_class
            return folder.id

    def rename_folder(self, address: str, path: str, new_name: str) -> None:
        with self.lock:
            self.mailbox(address).folder(path).name = new_name

    def move_folder(self, address: str, path: str, new_parent: str) -> None:
        with self.lock:
            box = self.mailbox(address)
            box.folder(path).parent = box.folder(new_parent).id if new_parent else box.root.id

    def items_in(self, address: str, folder: str) -> list[FakeItem]:
        box = self.mailbox(address)
        target = box.folder(folder)
        return [i for i in box.items.values() if i.folder == target.id]

    # -- HTTP -------------------------------------------------------------------------------

    def ntlm_user_file(self, directory: Path) -> Path:
        """Write the users as an NTLM credential file (``DOMAIN:USER:PASSWORD``; ``NTLM_USER_FILE``
        names it for pyspnego) and offer NTLM."""
        path = Path(directory) / "ntlm-users"
        lines = []
        for name, password in self.users.items():
            domain, _, user = name.rpartition("\\")
            lines.append(f"{domain}:{user}:{password}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.ntlm = True
        return path

    def __call__(self, environ, start_response):
        # Read first: a server that answers before reading the body closes the connection.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        header = environ.get("HTTP_AUTHORIZATION", "")
        if self.ntlm and header.partition(" ")[0].lower() in ("ntlm", "negotiate"):
            user, answer = self._ntlm_step(environ, header)
            if answer:  # the challenge: the client answers on this connection
                start_response("401 Unauthorized", [("WWW-Authenticate", f"NTLM {answer}"),
                                                    ("Content-Length", "0")])
                return [b""]
        else:
            user = self._authenticated(header)
        if user is None:
            start_response("401 Unauthorized", [*self._challenges(header),
                                                ("Content-Length", "0")])
            return [b""]
        if b"GetStreamingEvents" in body and not self.busy:
            start_response("200 OK", [("Content-Type", "text/xml; charset=utf-8")])
            return self._stream(body)  # no length: the answer comes as events do
        status, answer = self._soap(user, body)
        data = answer.encode("utf-8")
        start_response(status, [("Content-Type", "text/xml; charset=utf-8"),
                                ("Content-Length", str(len(data)))])
        return [data]

    def _ntlm_step(self, environ, header: str) -> tuple[str | None, str | None]:
        """One leg of NTLM on this connection: (None, challenge) after a negotiate message,
        (the user, None) after an authenticate message pyspnego verified, else (None, None)."""
        connection = (environ.get("REMOTE_ADDR"), environ.get("REMOTE_PORT"))
        try:
            token = base64.b64decode(header.partition(" ")[2].strip())
        except ValueError:
            return None, None
        negotiate = token[8:12] == b"\x01\x00\x00\x00"
        with self.lock:
            context = None if negotiate else self._ntlm_contexts.pop(connection, None)
        try:
            if negotiate:
                context = spnego.server(protocol="ntlm")
                answer = context.step(token)
                with self.lock:
                    self._ntlm_contexts[connection] = context
                return None, base64.b64encode(answer).decode()
            if context is None:
                return None, None
            context.step(token)
        except SpnegoError:  # a wrong password, or a message out of turn
            return None, None
        if not context.complete:
            return None, None
        proved = str(context.client_principal or "").lower()
        user = next((name for name in self.users if name.lower() == proved), None)
        if user is not None:
            self.ntlm_sign_ins.append(user)
        return user, None

    def _challenges(self, header: str) -> list[tuple[str, str]]:
        offered = [("WWW-Authenticate", 'Basic realm="fake-ews"')]
        if self.ntlm:
            offered.append(("WWW-Authenticate", "NTLM"))
        if self.token_issuer is not None:
            refused = header.lower().startswith("bearer ")
            offered.append(("WWW-Authenticate", 'Bearer error="invalid_token"' if refused
                            else "Bearer"))
        return offered

    def _authenticated(self, header: str) -> str | None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer":
            return self._bearer(value.strip())
        if scheme.lower() != "basic":
            return None
        try:
            username, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return username if self.users.get(username) == password and password else None

    def _bearer(self, value: str) -> str | None:
        """The account a bearer token stands for: ``app:<client id>`` (impersonating when
        the app holds full_access_as_app) or the delegated user, on their own mailbox."""
        if self.token_issuer is None:
            return None
        from tests.fakes.graph import EWS_RESOURCE
        token = self.token_issuer.verify(value, EWS_RESOURCE)
        if token is None:
            return None
        if token.kind == "app":
            name = f"app:{self.token_issuer.client_id}"
            if "full_access_as_app" in token.roles:
                self.impersonators.add(name)
            else:
                self.impersonators.discard(name)
            return name
        if "EWS.AccessAsUser.All" not in token.roles or not token.user:
            return None
        self.own_mailbox.setdefault(token.user, token.user)
        return token.user

    def _soap(self, user: str, body: bytes) -> tuple[str, str]:
        envelope = ET.fromstring(body)
        header = envelope.find(_q("Header", S))
        request = envelope.find(_q("Body", S))[0]
        operation = request.tag.rpartition("}")[2]
        with self.lock:
            self.operations.append(operation)
            if self.busy > 0:
                self.busy -= 1
                return "500 Internal Server Error", _fault(
                    "ErrorServerBusy", "The server cannot service this request right now. "
                    "Try again later.", self.back_off_ms)
            handler = getattr(self, f"_op_{operation}", None)
            if handler is None:
                return "500 Internal Server Error", _fault(
                    "ErrorInvalidRequest", f"The fake does not answer {operation}.")
            try:
                address = self._target(user, header, request)
                box = self.mailboxes[address.lower()] if address else None
                messages = handler(box, request)
            except Fault as exc:
                # SyncFolderItems answers its (empty) state elements even on an error.
                inner = ("<m:SyncState/><m:IncludesLastItemInRange>true"
                         "</m:IncludesLastItemInRange>" if operation == "SyncFolderItems" else "")
                messages = _error_message(operation, exc, inner)
        return "200 OK", _envelope(f'<m:{operation}Response><m:ResponseMessages>{messages}'
                                   f'</m:ResponseMessages></m:{operation}Response>')

    def _target(self, user: str, header, request) -> str | None:
        """The mailbox a request acts on: the impersonated one, else one named in a
        distinguished folder id, else the signed-in user's own."""
        impersonated = header.find(f"{_q('ExchangeImpersonation')}/{_q('ConnectingSID')}") \
            if header is not None else None
        if impersonated is not None:
            smtp = impersonated.find(_q("PrimarySmtpAddress"))
            address = smtp.text if smtp is not None else None
            if user not in self.impersonators:
                raise Fault("ErrorImpersonateUserDenied", "The account does not have permission "
                                                          "to impersonate the requested user.")
        else:
            named = request.find(f".//{_q('DistinguishedFolderId')}/{_q('Mailbox')}/"
                                 f"{_q('EmailAddress')}")
            address = named.text if named is not None else self.own_mailbox.get(user)
            if address and self.own_mailbox.get(user, "").lower() != address.lower() \
                    and user not in self.impersonators:
                raise Fault("ErrorAccessDenied", "Access is denied. Check credentials and try "
                                                 "again.")
        if address and address.lower() not in self.mailboxes:
            raise Fault("ErrorNonExistentMailbox", "The SMTP address has no mailbox "
                                                   "associated with it.")
        return address

    # -- operations -------------------------------------------------------------------------

    def _op_Subscribe(self, box, request) -> str:
        streaming = request.find(_q("StreamingSubscriptionRequest", M))
        if streaming is None or not self.streaming:
            raise Fault("ErrorInvalidSubscriptionRequest", "The fake takes streaming "
                                                           "subscriptions only.")
        folders = []
        for folder in self._folder_ids(box, streaming.find(_q("FolderIds"))):
            if isinstance(folder, Fault):
                raise folder
            folders.append(folder.id)
        ident = base64.b64encode(secrets.token_bytes(24)).decode()
        self.subscriptions[ident] = {"address": box.address, "folders": set(folders),
                                     "events": []}
        return _success("Subscribe", f"<m:SubscriptionId>{ident}</m:SubscriptionId>")

    def _op_Unsubscribe(self, box, request) -> str:
        self.subscriptions.pop(request.findtext(_q("SubscriptionId", M)), None)
        self.changed.notify_all()  # its open stream answers and closes
        return _success("Unsubscribe", "")

    def _stream(self, body: bytes):
        """GetStreamingEvents: hold the connection until the subscription hears of changes
        (or its ConnectionTimeout in minutes passes), then answer them and close."""
        request = ET.fromstring(body).find(_q("Body", S))[0]
        ident = request.findtext(f"{_q('SubscriptionIds', M)}/{_q('SubscriptionId')}")
        minutes = int(request.findtext(_q("ConnectionTimeout", M)) or 1)
        with self.lock:
            self.operations.append("GetStreamingEvents")
            sub = self.subscriptions.get(ident)
            if sub is None:
                yield _envelope(_error_message("GetStreamingEvents", Fault(
                    "ErrorSubscriptionNotFound", "The subscription was not found."))).encode()
                return
            self.changed.wait_for(lambda: sub["events"] or ident not in self.subscriptions,
                                  timeout=minutes * 60)
            events, sub["events"] = sub["events"], []
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        xml = "".join(f"<t:{kind}><t:TimeStamp>{stamp}</t:TimeStamp><t:ItemId Id={quoteattr(item)}/>"
                      f"<t:ParentFolderId Id={quoteattr(folder)}/></t:{kind}>"
                      for kind, item, folder in events)
        notes = (f"<m:Notifications><m:Notification><t:SubscriptionId>{ident}</t:SubscriptionId>"
                 f"{xml}</m:Notification></m:Notifications>" if events else "")
        yield _envelope("<m:GetStreamingEventsResponse><m:ResponseMessages>"
                        + _success("GetStreamingEvents", f"{notes}<m:ConnectionStatus>Closed"
                                                         "</m:ConnectionStatus>")
                        + "</m:ResponseMessages></m:GetStreamingEventsResponse>").encode()

    def _op_ConvertId(self, box, request) -> str:
        # exchangelib sends a dummy ConvertId to learn the server version from the header.
        return _error_message("ConvertId", Fault("ErrorInvalidIdMalformed", "Id is malformed."))

    def _folder_ids(self, box: FakeMailbox, parent) -> list[FakeFolder | Fault]:
        out: list[FakeFolder | Fault] = []
        for elem in parent:
            tag = elem.tag.rpartition("}")[2]
            try:
                if tag == "DistinguishedFolderId":
                    ident = elem.get("Id")
                    if ident == "root":
                        ident = "msgfolderroot"
                    found = box.folder(ident) if ident in WELL_KNOWN or ident in ITEM_FOLDERS \
                        or ident == "msgfolderroot" else _missing_folder()
                else:
                    ident = elem.get("Id")
                    if ident not in box.folders:
                        raise KeyError(ident)
                    found = box.folders[ident]
                if isinstance(found, FakeFolder):
                    self._check_access(box, found)
                out.append(found)
            except KeyError:
                out.append(_missing_folder())
            except Fault as fault:
                out.append(fault)
        return out

    def _op_GetFolder(self, box, request) -> str:
        parts = []
        for folder in self._folder_ids(box, request.find(_q("FolderIds", M))):
            if isinstance(folder, Fault):
                parts.append(_error_message("GetFolder", folder))
            else:
                parts.append(_success("GetFolder", f"<m:Folders>{_folder_xml(box, folder)}</m:Folders>"))
        return "".join(parts)

    def _op_FindFolder(self, box, request) -> str:
        deep = request.get("Traversal") == "Deep"
        parts = []
        for parent in self._folder_ids(box, request.find(_q("ParentFolderIds", M))):
            if isinstance(parent, Fault):
                parts.append(_error_message("FindFolder", parent))
                continue
            found = [f for f in box.folders.values() if _below(box, f, parent, deep)]
            found.sort(key=lambda f: box.path(f))
            inner = "".join(_folder_xml(box, f) for f in found)
            parts.append(_success("FindFolder", f'<m:RootFolder IndexedPagingOffset="{len(found)}" '
                                  f'TotalItemsInView="{len(found)}" IncludesLastItemInRange="true">'
                                  f"<t:Folders>{inner}</t:Folders></m:RootFolder>"))
        return "".join(parts)

    def _op_SyncFolderItems(self, box, request) -> str:
        (folder,) = self._folder_ids(box, request.find(_q("SyncFolderId", M)))
        if isinstance(folder, Fault):
            raise folder
        state = request.find(_q("SyncState", M))
        since = _read_state(state.text if state is not None else None,
                            f"{folder.id}/{self.state_generation}")
        most = int(request.find(_q("MaxChangesReturned", M)).text)
        changes = _net_changes(box, folder.id, since)
        page, rest = changes[:most], changes[most:]
        # A round that reaches the end covers the whole log: items made and gone in it, which
        # it did not report, are not reported as deleted later either (as Exchange does).
        last = page[-1][0] if rest else max([since] + [s for s, *_ in box.log.get(folder.id, [])])
        xml = []
        for _, kind, item_id in page:
            if kind == "delete":
                xml.append(f'<t:Delete><t:ItemId Id={quoteattr(item_id)}/></t:Delete>')
            else:
                tag = "Create" if kind == "create" else "Update"
                item = box.items[item_id]
                xml.append(f"<t:{tag}>{self._record_xml(box, item, True) if isinstance(item, FakeRecord) else _item_xml(item)}</t:{tag}>")
        new_state = base64.b64encode(
            f"fake-ews:{folder.id}/{self.state_generation}:{last}".encode()).decode()
        return _success("SyncFolderItems", f"<m:SyncState>{new_state}</m:SyncState>"
                        f"<m:IncludesLastItemInRange>{'false' if rest else 'true'}"
                        f"</m:IncludesLastItemInRange><m:Changes>{''.join(xml)}</m:Changes>")

    def _op_GetItem(self, box, request) -> str:
        shape = request.find(_q("ItemShape", M))
        mime = (shape.findtext(_q("IncludeMimeContent")) == "true" or any(
            uri.get("FieldURI") == "item:MimeContent" for uri in shape.iter(_q("FieldURI"))))
        parts = []
        for elem in request.find(_q("ItemIds", M)):
            try:
                item = self._resolve(box, elem) or box.items.get(elem.get("Id"))
            except Fault as fault:
                parts.append(_error_message("GetItem", fault, "<m:Items/>"))
                continue
            if item is None:
                parts.append(_error_message("GetItem", Fault(
                    "ErrorItemNotFound", "The specified object was not found in the store."),
                    "<m:Items/>"))
            elif isinstance(item, FakeRecord):
                parts.append(_success("GetItem", f"<m:Items>{self._record_xml(box, item)}</m:Items>"))
            else:
                parts.append(_success("GetItem", f"<m:Items>{_item_xml(item, mime)}</m:Items>"))
        return "".join(parts)

    def _op_UpdateItem(self, box, request) -> str:
        parts = []
        for change in request.find(_q("ItemChanges", M)):
            ident = change.find(_q("ItemId"))
            item = box.items.get(ident.get("Id")) or box.occurrences.get(ident.get("Id"))
            if item is None:
                parts.append(_error_message("UpdateItem", Fault(
                    "ErrorItemNotFound", "The specified object was not found in the store.")))
                continue
            if isinstance(item, FakeRecord):
                try:
                    parts.append(_success("UpdateItem", self._update_record(
                        box, item, change, request.get("ConflictResolution", "AutoResolve"))))
                except Fault as fault:
                    parts.append(_error_message("UpdateItem", fault))
                continue
            for update in change.find(_q("Updates")):
                uri = update.find(_q("FieldURI"))
                if uri is None or uri.get("FieldURI") != "item:Categories":
                    raise Fault("ErrorInvalidPropertySet", "The fake updates only categories.")
                if update.tag == _q("DeleteItemField"):
                    categories = []
                else:
                    categories = [s.text or "" for s in update.iter(_q("String"))]
                self.set_categories(box.address, item.id, categories)
            parts.append(_success("UpdateItem", f'<m:Items><t:Message><t:ItemId Id={quoteattr(item.id)} '
                                  f'ChangeKey={quoteattr(item.changekey)}/></t:Message></m:Items>'
                                  "<m:ConflictResults><t:Count>0</t:Count></m:ConflictResults>"))
        return "".join(parts)

    def _op_CreateItem(self, box, request) -> str:
        if any(elem.tag.rpartition("}")[2] in ITEM_CLASS for elem in request.find(_q("Items", M))):
            return self._create_records(box, request)
        disposition = request.get("MessageDisposition")
        saved = request.find(_q("SavedItemFolderId", M))
        parts = []
        for message in request.find(_q("Items", M)):
            content = message.find(_q("MimeContent"))
            if content is None:
                raise Fault("ErrorInvalidRequest", "The fake sends MIME content only.")
            mime = base64.b64decode(content.text or "")
            bcc = [a.text for a in message.iter(_q("EmailAddress"))
                   if a in _descendants(message.find(_q("BccRecipients")))]
            if disposition in ("SendOnly", "SendAndSaveCopy"):
                self.sent.append({"mailbox": box.address, "mime": mime, "bcc": bcc})
            if disposition in ("SaveOnly", "SendAndSaveCopy"):
                target = "sentitems" if disposition == "SendAndSaveCopy" else "drafts"
                if saved is not None:
                    (folder,) = self._folder_ids(box, saved)
                    if isinstance(folder, Fault):
                        raise folder
                    target = folder.id
                self.deliver(box.address, mime, target)
            parts.append(_success("CreateItem", "<m:Items/>"))
        return "".join(parts)


# -- XML pieces -----------------------------------------------------------------------------

def _descendants(elem) -> set:
    return set(elem.iter()) if elem is not None else set()


def _missing_folder() -> Fault:
    return Fault("ErrorFolderNotFound", "The specified folder could not be found in the store.")


def _below(box: FakeMailbox, folder: FakeFolder, parent: FakeFolder, deep: bool) -> bool:
    current = folder
    while current.parent is not None:
        if current.parent == parent.id:
            return True
        if not deep:
            return False
        current = box.folders[current.parent]
    return False


def _folder_xml(box: FakeMailbox, folder: FakeFolder) -> str:
    items = [i for i in box.items.values() if i.folder == folder.id]
    children = [f for f in box.folders.values() if f.parent == folder.id]
    parent = (f'<t:ParentFolderId Id={quoteattr(folder.parent)} '
              f'ChangeKey={quoteattr(box.folders[folder.parent].changekey)}/>'
              if folder.parent else "")
    distinguished = (f"<t:DistinguishedFolderId>{folder.distinguished}</t:DistinguishedFolderId>"
                     if folder.distinguished else "")
    tag = {"IPF.Appointment": "CalendarFolder", "IPF.Contact": "ContactsFolder",
           "IPF.Task": "TasksFolder"}.get(folder.folder_class, "Folder")
    return (f'<t:{tag}><t:FolderId Id={quoteattr(folder.id)} ChangeKey={quoteattr(folder.changekey)}/>'
            f"{parent}<t:FolderClass>{escape(folder.folder_class)}</t:FolderClass>"
            f"<t:DisplayName>{escape(folder.name)}</t:DisplayName>"
            f"<t:TotalCount>{len(items)}</t:TotalCount>"
            f"<t:ChildFolderCount>{len(children)}</t:ChildFolderCount>"
            f"<t:UnreadCount>0</t:UnreadCount>{distinguished}</t:{tag}>")


def _item_xml(item: FakeItem, mime: bool = False) -> str:
    content = (f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(item.mime).decode()}'
               "</t:MimeContent>" if mime else "")
    categories = "".join(f"<t:String>{escape(c)}</t:String>" for c in item.categories)
    received = item.received.strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"<t:Message>{content}<t:ItemId Id={quoteattr(item.id)} ChangeKey={quoteattr(item.changekey)}/>"
            f"<t:ItemClass>IPM.Note</t:ItemClass><t:DateTimeReceived>{received}</t:DateTimeReceived>"
            + (f"<t:Categories>{categories}</t:Categories>" if item.categories else "")
            + "</t:Message>")


def _read_state(text: str | None, folder_id: str) -> int:
    if not text:
        return 0
    try:
        tag, folder, seq = base64.b64decode(text).decode().split(":")
        if tag != "fake-ews" or folder != folder_id:
            raise ValueError
        return int(seq)
    except ValueError:
        raise Fault("ErrorInvalidSyncStateData", "Synchronization state data is corrupt or "
                                                 "otherwise invalid.") from None


def _net_changes(box: FakeMailbox, folder_id: str, since: int) -> list[tuple[int, str, str]]:
    """One change per item since ``since``, ordered by its last event: an item made and gone
    since then is no change at all; one made since then is a Create; one that was there and
    is gone is a Delete; one that was there and changed is an Update."""
    first: dict[str, str] = {}
    last: dict[str, int] = {}
    existed_before: set[str] = set()
    for seq, kind, item_id in box.log.get(folder_id, []):
        if seq <= since:
            if kind == "create":
                existed_before.add(item_id)
            elif kind == "delete":
                existed_before.discard(item_id)
            continue
        first.setdefault(item_id, kind)
        last[item_id] = seq
    out = []
    for item_id, seq in last.items():
        present = item_id in box.items and box.items[item_id].folder == folder_id
        if item_id in existed_before:
            kind = "update" if present else "delete"
        elif present:
            kind = "create"
        else:
            continue
        out.append((seq, kind, item_id))
    out.sort()
    return out


def _envelope(body: str) -> str:
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}" xmlns:m="{M}" '
            f'xmlns:t="{T}"><s:Header>{SERVER_VERSION}</s:Header><s:Body>{body}</s:Body>'
            "</s:Envelope>")


def _success(operation: str, inner: str) -> str:
    return (f'<m:{operation}ResponseMessage ResponseClass="Success"><m:ResponseCode>NoError'
            f"</m:ResponseCode>{inner}</m:{operation}ResponseMessage>")


def _error_message(operation: str, fault: Fault, inner: str = "") -> str:
    return (f'<m:{operation}ResponseMessage ResponseClass="Error"><m:MessageText>'
            f"{escape(fault.text)}</m:MessageText><m:ResponseCode>{fault.code}</m:ResponseCode>"
            f"<m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>{inner}"
            f"</m:{operation}ResponseMessage>")


def _fault(code: str, text: str, back_off_ms: int | None = None) -> str:
    xml = (f'<t:MessageXml><t:Value Name="BackOffMilliseconds">{back_off_ms}</t:Value>'
           "</t:MessageXml>" if back_off_ms is not None else "")
    return (f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{S}" xmlns:t="{T}">'
            f"<s:Body><s:Fault><faultcode xmlns:a=\"{T}\">a:{code}</faultcode>"
            f"<faultstring xml:lang=\"en-US\">{escape(text)}</faultstring><detail>"
            f'<e:ResponseCode xmlns:e="{E}">{code}</e:ResponseCode>'
            f'<e:Message xmlns:e="{E}">{escape(text)}</e:Message>{xml}</detail></s:Fault>'
            "</s:Body></s:Envelope>")


# -- serving --------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    daemon_threads = True


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.1 with kept-alive connections (NTLM signs in a connection, not a request), the
    fake called as a WSGI application; an answer without a length (a stream) is the
    connection's last. (wsgiref and werkzeug's servers close every connection.)"""

    protocol_version = "HTTP/1.1"
    # The headers and the body are two writes: without this, each answer waited for the
    # client's delayed ACK of the first (40 ms a request on Linux), as no Exchange does.
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:  # no request lines on the test output
        pass

    def do_POST(self) -> None:
        fake = self.server.app
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fake.dropping(data.decode("utf-8", "replace")):  # it breaks before an answer
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        url = urlsplit(self.path)
        environ = {"REQUEST_METHOD": self.command, "PATH_INFO": url.path,
                   "QUERY_STRING": url.query, "SERVER_PROTOCOL": self.request_version,
                   "CONTENT_LENGTH": self.headers.get("Content-Length", ""),
                   "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                   "REMOTE_ADDR": self.client_address[0],
                   "REMOTE_PORT": str(self.client_address[1]),
                   "SERVER_NAME": self.server.server_address[0],
                   "SERVER_PORT": str(self.server.server_address[1]),
                   "wsgi.input": io.BytesIO(data), "wsgi.url_scheme": "http", "wsgi.version": (1, 0),
                   "wsgi.errors": None, "wsgi.multithread": True, "wsgi.multiprocess": False,
                   "wsgi.run_once": False}
        for name, value in self.headers.items():
            environ["HTTP_" + name.upper().replace("-", "_")] = value
        answered: list = []

        def start_response(status, headers, exc_info=None):
            answered[:] = [status, headers]

        body = self.server.app(environ, start_response)
        status, headers = answered or ["500 Internal Server Error", []]
        code, _, reason = status.partition(" ")
        self.send_response(int(code), reason)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-length" for name, _ in headers):
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        for chunk in body:
            self.wfile.write(chunk)
            self.wfile.flush()

    do_GET = do_POST


class Served:
    """The fake on a loopback port: ``url`` is its EWS endpoint; ``stop()`` ends it."""

    def __init__(self, fake: FakeExchange):
        self.fake = fake
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.app = fake
        self.port = self.server.server_port
        fake.url = self.url = f"http://127.0.0.1:{self.port}/EWS/Exchange.asmx"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(fake: FakeExchange | None = None) -> Served:
    return Served(fake or FakeExchange())
