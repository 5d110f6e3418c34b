"""EWS connector (exchangelib) for Exchange Server on premises: folders keyed by their EWS
folder ids, changes since a SyncFolderItems state, MIME content for the parser, Outlook
categories for "Tracked to Regarding", and sending with a copy in Sent Items.

Microsoft turned EWS off for Exchange Online in 2026: this connector is for Exchange Server
(on premises) only; Exchange Online is read with Microsoft Graph (``EWS_NOTICE`` says so on
the admin pages).

Server profile settings (``EmailServerProfile.settings``):

``ews_url``        the EWS endpoint, e.g. ``https://mail.contoso.example/EWS/Exchange.asmx``;
                   without it the endpoint is found by Autodiscover from the mailbox address
``auth_type``      ``ntlm``, ``basic`` or ``oauth`` as the server offers (default: ask the
                   server, which names its schemes in ``WWW-Authenticate``); a profile whose
                   ``auth_method`` is ``oauth2`` signs in with an Entra ID access token from
                   the account's ``token_provider`` (``sync.engine.accounts``: msal, cached,
                   renewed before it expires, also in the middle of a long session); an
                   app-only token impersonates the mailbox (the app's ``full_access_as_app``)
``impersonation``  true: the profile's service account acts for every mailbox with the
                   ApplicationImpersonation role (else delegate access, or the mailbox's own
                   credentials)
``exchange_version``  optional, e.g. ``Exchange2016``: skips asking the server for its version
``max_connections``   concurrent connections to the server per process (default 4)
``poll_seconds``   how often ``wait_for_changes`` polls when it does not stream (default 30)
``streaming``      false: never use streaming notifications

Folder keys are EWS folder ids: Exchange keeps them over renames and moves. The cursor is
JSON ``{"state": <SyncFolderItems SyncState>}``; an invalid state (ErrorInvalidSyncStateData)
starts the folder over and says ``reset``. A message moved by the user is a Delete in one
folder and a Create (with a new item id) in the other, so moving mail into a tracked folder
is seen by that folder's sync. An idle visit (``Probes``) asks SyncFolderItems for one change
from the cursor's state: none, and the folder is unchanged (the state Exchange gave is its
cursor from then on). Updates are reported only when the item now has a category a
person set, as with IMAP keywords. Bodies come from GetItem with the MIME content; GetItem
does not mark mail as read.

Categories are Outlook's own, with spaces: "Tracked to Regarding" is written as it is
(GetItem for the current lists, then UpdateItem with each list plus the category; for the
messages a batch tracked, one GetItem and one UpdateItem for up to 100 of them).

Sending: CreateItem with the MIME content and ``SendAndSaveCopy`` into Sent Items, so the
connector does not keep a Sent copy itself (it is no ``SavesCopies``). Bcc recipients,
which the MIME headers do not carry, are given as BccRecipients.

Errors: a refused sign-in (HTTP 401) and a denied impersonation or unknown mailbox are
``auth`` (a person must fix the profile); ErrorServerBusy is a mailbox error with
``retry_after`` from its BackOffMilliseconds; network failures and other transport errors
are mailbox errors; a missing item is a message error; a missing folder a folder error.

Waiting for changes: a streaming subscription on the watched folders (Exchange 2010 SP1 and
later), read by a thread for the whole session, so waits of any length end as soon as a
change is reported and nothing is missed between waits (the first wait also checks for mail
that came since the last read); on servers without streaming, SyncFolderItems is polled from
the last state read in this session, never stored (``streaming: false`` forces polling).
Pull notifications are not used: polling SyncFolderItems costs the same. The push watcher
waits on the mailbox's calendar, contacts and tasks folders in the same subscription
(``item_store``: the item store on this session) when the mailbox syncs them. An open stream holds
one of the connections exchangelib shares among the mailboxes of one service account
(``max_connections``): watching many mailboxes through one account needs that many more.
"""
from __future__ import annotations

import logging
from email import message_from_bytes, policy
from email.utils import getaddresses

from exchangelib import Message
from exchangelib.errors import ErrorFolderNotFound, ErrorInvalidSyncStateData, ErrorItemNotFound
from exchangelib.folders import FolderCollection
from exchangelib.folders.base import Folder as EwsFolder
from exchangelib.folders.known_folders import (DeletedItems, Drafts, Inbox, JunkEmail,
                                               MsgFolderRoot, SentItems)
from exchangelib.folders.roots import Root
from exchangelib.properties import DistinguishedFolderId
from exchangelib.services import GetItem, SyncFolderItems

from server.sync.connectors.base import (Account, BatchKeywords, Changes, Connector,
                                         ConnectorError, FetchedMessage, Folder, ItemStore,
                                         Probes, Sender, WatchesItems)
from server.sync.connectors.common import newsworthy, pack_cursor, unpack_cursor
from server.sync.connectors.ews_session import EwsSession, utc as _utc
from server.sync.connectors.ews_stream import Watching

# exchangelib logs every request and response at DEBUG (message bodies, Authorization
# headers) and the request at ERROR when a post fails unexpectedly: neither reaches the logs.
logging.getLogger("exchangelib.util").setLevel(logging.CRITICAL)
logging.getLogger("exchangelib.services.get_streaming_events").setLevel(logging.CRITICAL)

EWS_NOTICE = ("EWS is for Exchange Server (on-premises) only; for Exchange Online use "
              "Microsoft Graph. Microsoft turned EWS off for Exchange Online in 2026.")
ROLES = {"inbox": "inbox", "sentitems": "sent", "drafts": "drafts", "deleteditems": "trash",
         "junkemail": "junk"}
_WELL_KNOWN = {"inbox": Inbox, "sentitems": SentItems, "drafts": Drafts,
               "deleteditems": DeletedItems, "junkemail": JunkEmail}
GET_BATCH = 50  # items per GetItem


class EwsConnector(Watching, EwsSession, Connector, BatchKeywords, WatchesItems, Probes):
    """One EWS session for one mailbox: ``with EwsConnector(account) as ews: ...``."""

    def __init__(self, account: Account):
        super().__init__(account)
        self._folders: dict[str, EwsFolder] = {}  # key -> exchangelib folder (id only)
        self._states: dict[str, str] = {}  # key -> the last SyncState read in this session
        self._looked: dict[str, tuple[str, str]] = {}  # key -> (cursor, next state) if unchanged
        self._written: dict[str, dict[str, set[str]]] = {}  # key -> item id -> categories set

    def item_store(self) -> ItemStore:
        """The mailbox's calendars, contacts and tasks on this session (``ews_items``): the
        states its reads leave are this session's, so a wait covers its folders too."""
        from server.sync.connectors.ews_items import EwsItemStore
        return EwsItemStore.on_session(self)

    def _distinguished(self) -> dict[str, str]:
        """Distinguished folder name -> folder id, for the well-known folders the mailbox has
        (one GetFolder for all)."""
        ews = self.ews
        wanted = ["msgfolderroot", *_WELL_KNOWN]
        classes = {"msgfolderroot": MsgFolderRoot, **_WELL_KNOWN}
        folders = [classes[name](_distinguished_id=DistinguishedFolderId(
            id=name, mailbox=self._mailbox()), root=self._root()) for name in wanted]
        found: dict[str, str] = {}
        for name, result in zip(wanted, FolderCollection(account=ews, folders=folders)
                                .get_folders(additional_fields=set())):
            if isinstance(result, Exception):
                if isinstance(result, (ErrorFolderNotFound, ErrorItemNotFound)) \
                        or name != "msgfolderroot":
                    continue
                raise result
            found[name] = result.id
        return found

    def list_folders(self) -> list[Folder]:
        with self._errors("listing folders"):
            ids = self._distinguished()
            root_id = ids.pop("msgfolderroot", None)
            if root_id is None:
                raise ConnectorError("no_mailbox", f"{self.where} shows no mail folders for "
                                     f"{self.account.address}.", severity="auth")
            roles = {folder_id: ROLES[name] for name, folder_id in ids.items()}
            root = MsgFolderRoot(id=root_id, root=self._root())
            rows = [f for f in FolderCollection(account=self.ews, folders=[root]).find_folders(
                depth="Deep") if not isinstance(f, Exception)]
        by_id = {f.id: f for f in rows}

        def path(folder) -> str:
            parts, current, seen = [], folder, set()
            while current is not None and current.id not in seen:
                seen.add(current.id)
                parts.append(current.name or "")
                parent = current.parent_folder_id.id if current.parent_folder_id else None
                current = by_id.get(parent)
            return "/".join(reversed(parts))

        folders = []
        self._folders = {}
        for f in rows:
            if (f.folder_class or "IPF.Note") not in ("IPF.Note", "IPF") and \
                    not (f.folder_class or "").startswith("IPF.Note"):
                continue  # calendars, contacts, tasks: no mail to track
            parent = f.parent_folder_id.id if f.parent_folder_id else None
            folders.append(Folder(key=f.id, name=path(f), role=roles.get(f.id, "other"),
                                  parent_key=parent if parent in by_id else None))
            self._folders[f.id] = f
        return folders

    def _folder(self, folder: Folder) -> EwsFolder:
        known = self._folders.get(folder.key)
        return known if known is not None else EwsFolder(id=folder.key, root=self._root())

    def folder_by_role(self, role: str) -> Folder | None:
        return next((f for f in self.list_folders() if f.role == role), None)

    # -- reading ------------------------------------------------------------------------------

    def _sync(self, ews_folder: EwsFolder, state: str | None, limit: int):
        service = SyncFolderItems(account=self.ews)
        fields = {f for f in ews_folder.normalize_fields(["categories", "datetime_received"])
                  if not f.field.is_attribute}
        changes = list(service.call(folder=ews_folder, shape="IdOnly", additional_fields=fields,
                                    sync_state=state, ignore=None, max_changes_returned=limit,
                                    sync_scope=None))
        return changes, service.sync_state, bool(service.includes_last_item_in_range)

    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        """One SyncFolderItems for one change at most, from the cursor's state."""
        looked = self._looked.get(folder.key)
        if looked is not None and looked[0] == cursor:
            return True
        state = (unpack_cursor(cursor) or {}).get("state")
        if not state:
            return False
        with self._errors(f"reading {folder.name}"):
            try:
                changes, new_state, last = self._sync(self._folder(folder), state, 1)
            except ErrorInvalidSyncStateData:
                return False  # the run starts the folder over
        if changes or not last:
            return False
        self._looked[folder.key] = (cursor, new_state or state)
        return True

    def cursor_after(self, folder: Folder, cursor: str | None) -> str | None:
        looked = self._looked.get(folder.key)
        if looked is None or looked[0] != cursor:
            return cursor
        return pack_cursor({**(unpack_cursor(cursor) or {}), "state": looked[1]})

    def past_own_writes(self, folder: Folder, cursor: str | None) -> str | None:
        """SyncFolderItems from the cursor's state, now (one request): when every change is
        an update of a message whose categories this session wrote, with exactly the list
        written, the state Exchange gave; else (or when asking fails) ``cursor``."""
        written = self._written.pop(folder.key, {})
        state = (unpack_cursor(cursor) or {}).get("state")
        if not written or not state:
            return cursor
        try:
            with self._errors(f"reading {folder.name}"):
                changes, new_state, last = self._sync(self._folder(folder), state,
                                                      min(512, len(written) + 1))
        except (ErrorInvalidSyncStateData, ConnectorError):
            return cursor  # the next run reads the folder's changes, as it would have
        if not last or not new_state or any(
                kind != "update" or written.get(item.id) != {c.casefold() for c in
                                                              item.categories or ()}
                for kind, item in changes):
            return cursor
        self._states[folder.key] = new_state
        return pack_cursor({**(unpack_cursor(cursor) or {}), "state": new_state})

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes:
        limit = max(1, min(limit, 512))  # SyncFolderItems returns at most 512 per call
        data = unpack_cursor(cursor)
        state = data.get("state") if data else None
        reset = cursor is not None and not state
        ews_folder = self._folder(folder)
        with self._errors(f"reading {folder.name}"):
            try:
                changes, new_state, last = self._sync(ews_folder, state, limit)
            except ErrorInvalidSyncStateData:
                reset, state = True, None
                changes, new_state, last = self._sync(ews_folder, None, limit)
            wanted: list = []
            removed: list[str] = []
            for kind, item in changes:
                if kind == "delete":
                    removed.append(item.id)
                elif kind == "create" or (kind == "update" and newsworthy(item.categories or ())):
                    wanted.append(item)
            messages = self._fetch_mime([i.id for i in wanted])
        self._states[folder.key] = new_state or state
        return Changes(messages=messages, cursor=pack_cursor({"state": new_state or state}),
                       more=not last and new_state != state, removed=removed, reset=reset)

    def _fetch_mime(self, ids: list[str]) -> list[FetchedMessage]:
        out: list[FetchedMessage] = []
        if not ids:
            return out
        fields = _item_fields(self._root())
        for start in range(0, len(ids), GET_BATCH):
            chunk = ids[start:start + GET_BATCH]
            service = GetItem(account=self.ews)
            results = service.call(items=[(i, None) for i in chunk], additional_fields=fields,
                                   shape="IdOnly")
            for item in results:
                if isinstance(item, ErrorItemNotFound):
                    continue  # moved or deleted meanwhile: its new place reports it
                if isinstance(item, Exception):
                    raise item
                if not item.mime_content:
                    continue
                out.append(FetchedMessage(ref=item.id, raw=bytes(item.mime_content),
                                          keywords=tuple(item.categories or ()),
                                          arrived_on=_utc(item.datetime_received)))
        return out

    def fetch_message(self, folder: Folder, ref: str) -> bytes:
        with self._errors(f"reading a message in {folder.name}"):
            found = self._fetch_mime([ref])
        if not found:
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")
        return found[0].raw

    # -- writing ------------------------------------------------------------------------------

    def set_keyword(self, folder: Folder, ref: str, keyword: str) -> None:
        """Add an Outlook category to one message (kept with its spaces)."""
        if self._add_category(folder, [ref], keyword):
            raise ConnectorError("message_not_found", f"Message {ref} is no longer in "
                                 f"{folder.name}.", severity="message")

    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None:
        """Add an Outlook category to many messages of a folder: one GetItem for their
        category lists and one UpdateItem that sets each list plus the category (exchangelib
        sends 100 items a request); a message gone meanwhile is skipped."""
        self._add_category(folder, refs, keyword)

    def _add_category(self, folder: Folder, refs: list[str], keyword: str) -> list[str]:
        """Set each message's categories to its own plus ``keyword`` (EWS replaces the list);
        returns the refs of messages that are gone."""
        refs = list(dict.fromkeys(refs))
        gone: list[str] = []
        if not refs:
            return gone
        with self._errors(f"setting a category in {folder.name}"):
            found = GetItem(account=self.ews).call(
                items=[(ref, None) for ref in refs],
                additional_fields=_category_fields(self._root()), shape="IdOnly")
            changes = []
            for ref, item in zip(refs, found):
                if isinstance(item, ErrorItemNotFound):
                    gone.append(ref)
                    continue
                if isinstance(item, Exception):
                    raise item
                categories = list(item.categories or [])
                if keyword.casefold() in {c.casefold() for c in categories}:
                    continue
                item.categories = categories + [keyword]
                changes.append((item, ["categories"]))
            if not changes:
                return gone
            results = self.ews.bulk_update(
                changes, conflict_resolution="AutoResolve", message_disposition="SaveOnly",
                send_meeting_invitations_or_cancellations="SendToNone", suppress_read_receipts=True)
            written = self._written.setdefault(folder.key, {})
            for (item, _), result in zip(changes, results):
                if isinstance(result, ErrorItemNotFound):
                    gone.append(item.id)
                elif isinstance(result, Exception):
                    raise result
                else:
                    written[item.id] = {c.casefold() for c in item.categories}
        return gone

    # -- push ---------------------------------------------------------------------------------


def _item_fields(root: Root) -> set:
    folder = EwsFolder(root=root)
    return {f for f in folder.normalize_fields(["mime_content", "categories", "datetime_received"])
            if not f.field.is_attribute}


def _category_fields(root: Root) -> set:
    folder = EwsFolder(root=root)
    return {f for f in folder.normalize_fields(["categories"]) if not f.field.is_attribute}


class EwsSender(Sender):
    """Sends through EWS: CreateItem with the MIME content, saving a copy in Sent Items."""

    needs = EwsConnector.needs

    def __init__(self, account: Account):
        self.connector = EwsConnector(account)

    def __enter__(self) -> EwsSender:
        self.connector.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.connector.close()

    def verify(self, sender: str, recipient: str) -> None:
        """Test & Enable: the mailbox and its Sent Items can be reached (nothing is sent)."""
        with self.connector._errors("checking the Sent Items folder"):
            found = self.connector._distinguished()
        if "sentitems" not in found:
            raise ConnectorError("no_sent_folder", f"{self.connector.where} shows no Sent Items "
                                 f"folder for {sender}.", severity="mailbox")

    def send(self, raw: bytes, sender: str, recipients: list[str]) -> dict:
        """Send ``raw``; recipients missing from its To/Cc headers go as Bcc. Returns {}
        (Exchange reports undeliverable recipients later, by a non-delivery report)."""
        headers = message_from_bytes(raw, policy=policy.compat32)
        listed = {a.lower() for _, a in getaddresses(headers.get_all("To", []) +
                                                     headers.get_all("Cc", [])) if a}
        bcc = [r for r in recipients if r.lower() not in listed]
        connector = self.connector
        with connector._errors("sending a message"):
            ews = connector.ews
            sent_items = SentItems(_distinguished_id=DistinguishedFolderId(
                id="sentitems", mailbox=connector._mailbox()), root=connector._root())
            message = Message(account=ews, folder=sent_items, mime_content=raw,
                              bcc_recipients=bcc or None)
            message.send_and_save()
        return {}

