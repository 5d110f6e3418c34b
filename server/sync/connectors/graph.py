"""Microsoft Graph connector (Exchange Online): folders, per-folder delta queries, MIME
through ``$batch``, categories, and subscription calls for push. HTTP, tokens, limits
and errors: ``graph_client``; sending: ``graph_send``.

**Mail.** Folder keys are Graph folder ids, which survive renames and moves. Each folder is
read with ``/mailFolders/{id}/messages/delta`` and ``Prefer: IdType="ImmutableId"``, so a
message keeps its id when moved; the cursor is the ``@odata.nextLink`` of a round in
progress, else its ``@odata.deltaLink``. A link that expired (410, ``SyncStateNotFound``)
starts the folder over and says ``reset``. ``@removed`` entries are reported as removed.
Bodies are fetched as MIME (``/messages/{id}/$value``) in ``$batch`` requests of 20, whose
non-JSON bodies Graph returns base64-encoded. Outlook categories are the keywords, as they
are ("Tracked to Regarding"); writing one back reads the message's list as it is then and
PATCHes it with the category (Graph replaces the list), in batches of 20 after the batch
that tracked the message was committed.

**Idle visits.** A folder's delta link, asked for one change at most in the folder listing's
own ``$batch``, says whether anything changed since the cursor (``Probes``). The categories a
run wrote come back in the folder's next delta round: the run reads that round once and,
when it holds nothing but those writes, keeps its delta link (``past_own_writes``), so the
messages it tracked are not fetched again.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from urllib.parse import quote

from server.sync.connectors.base import (Account, BatchKeywords, Changes, Connector, ConnectorError,
                                         FetchedMessage, Folder, Probes)
from server.sync.connectors.graph_client import (BATCH_SIZE, IMMUTABLE, RETRY_STATUSES,
                                                 GraphSession, GraphSubscriptions)

log = logging.getLogger(__name__)

PAGE_MAX = 500  # messages per delta page asked for (odata.maxpagesize)
WELL_KNOWN = {"inbox": "inbox", "sentitems": "sent", "drafts": "drafts",
              "deleteditems": "trash", "junkemail": "junk"}
MESSAGE_SELECT = "categories,receivedDateTime,internetMessageId"


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


def _nothing_new(reply) -> bool:
    """A delta page that ends its round at once with nothing in it (no change, no removal)."""
    if not reply.ok:
        return False  # an expired link, throttling: the run finds out
    body = reply.json()
    return (not body.get("value") and not body.get("@odata.nextLink")
            and isinstance(body.get("@odata.deltaLink"), str))


class GraphConnector(GraphSession, Connector, BatchKeywords, GraphSubscriptions, Probes):
    """One mailbox over Microsoft Graph: ``with GraphConnector(account) as graph: ...``.

    Probed (``Probes``): the folders the engine ``expect``s are looked at in the listing's
    own ``$batch``, each a request of its delta link for one change at most; a folder whose
    delta round ends at once with nothing in it is unchanged, and the new delta link Graph
    gave is its cursor from then on."""

    def __init__(self, account: Account):
        super().__init__(account)
        self.synced: dict[str, Folder] = {}  # folders read in this session (push upkeep)
        self._categories: dict[str, list[str]] = {}  # ref -> its categories as last read
        self._pending: list[tuple[str, str, str]] = []  # (ref, category, folder key)
        self._written: dict[str, dict[str, list[str]]] = {}  # folder key -> ref -> categories
        self._expected: dict[str, str] = {}  # folder key -> delta link to look at, listing
        self._looked: dict[str, tuple[str, str]] = {}  # key -> (that link, the next) if unchanged

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
        looks = list(self._expected.items())
        items.extend({"method": "GET", "url": http.relative(link),
                      "headers": {"Prefer": f"{IMMUTABLE}, odata.maxpagesize=1"}}
                     for _, link in looks)
        replies = http.batch(items, what="listing folders")
        self._looked = {key: (link, reply.json()["@odata.deltaLink"]) for (key, link), reply
                        in zip(looks, replies[len(replies) - len(looks):]) if _nothing_new(reply)}
        replies = replies[:len(replies) - len(looks)]
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

    # -- probing ------------------------------------------------------------------------

    def expect(self, cursors: dict[str, str | None]) -> None:
        self._expected = {key: link for key, link in cursors.items()
                          if link and self.client.owns(link)}

    def unchanged(self, folder: Folder, cursor: str | None) -> bool:
        looked = self._looked.get(folder.key)
        return looked is not None and looked[0] == cursor

    def cursor_after(self, folder: Folder, cursor: str | None) -> str | None:
        return self._looked[folder.key][1] if self.unchanged(folder, cursor) else cursor

    def past_own_writes(self, folder: Folder, cursor: str | None) -> str | None:
        """The folder's delta round from ``cursor``, asked for now (a request, or one a
        page): when every change in it is a message whose categories this session wrote,
        with exactly the list written (a read flag set meanwhile is no news either), the
        round's new delta link; else (or when asking fails) ``cursor``."""
        written = {ref: {c.casefold() for c in categories}
                   for ref, categories in self._written.pop(folder.key, {}).items()}
        if not written or not cursor or not self.client.owns(cursor):
            return cursor
        http, link, seen = self.client, cursor, 0
        prefer = f"{IMMUTABLE}, odata.maxpagesize={min(PAGE_MAX, len(written) + 1)}"
        while True:
            try:
                reply = http.call("GET", link, what=f"reading {folder.name}",
                                  headers={"Prefer": prefer})
            except ConnectorError:
                return cursor  # the next run reads the folder's changes, as it would have
            if not reply.ok:
                return cursor  # an expired link: the next run starts over, as it would
            body = reply.json()
            for row in body.get("value") or []:
                seen += 1
                categories = {str(c).casefold() for c in row.get("categories") or []}
                if ("@removed" in row or seen > len(written)
                        or written.get(row.get("id")) != categories):
                    return cursor
            link = body.get("@odata.nextLink")
            if not link:
                return body.get("@odata.deltaLink") or cursor

    # -- reading ------------------------------------------------------------------------

    def fetch_changes(self, folder: Folder, cursor: str | None, limit: int = 500) -> Changes:
        http = self.client
        self.flush_keywords()
        self.synced[folder.key] = folder
        what = f"reading {folder.name}"
        first = (f"{http.user}/mailFolders/{quote(folder.key, safe='')}/messages/delta"
                 f"?$select={MESSAGE_SELECT}")
        prefer = f"{IMMUTABLE}, odata.maxpagesize={max(1, min(limit, PAGE_MAX))}"
        page = http.delta_page(cursor, first, prefer, what,
                               lambda reply: http.error(reply, what, scope="folder"))
        present = page.rows
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
        return Changes(messages=messages, cursor=page.cursor, more=page.more,
                       removed=page.removed, reset=page.reset)

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
        if ref not in self._categories:
            _, failed = self._read_categories([ref], what)
            if failed:
                raise self.client.error(failed[0], what, scope="message")
        if ref not in self._categories:
            raise ConnectorError("message_not_found", f"The message is no longer in "
                                 f"{folder.name}.", severity="message")
        self._queue_category(folder, ref, keyword)
        if len(self._pending) >= BATCH_SIZE:
            self.flush_keywords()

    def set_keywords(self, folder: Folder, refs: list[str], keyword: str) -> None:
        """Add an Outlook category to many messages of a folder now, together with any
        ``set_keyword`` writes still waiting (``flush_keywords``)."""
        for ref in dict.fromkeys(refs):
            self._queue_category(folder, ref, keyword)
        self.flush_keywords(folder.name)

    def _read_categories(self, refs: list[str], what: str) -> tuple[dict[str, list[str]], list]:
        """(the current category lists of messages, read in ``$batch`` GETs; the replies
        that failed). A message that is gone (404) is in neither."""
        http = self.client
        items = [{"method": "GET", "url": f"{http.user}/messages/{quote(ref, safe='')}"
                                          "?$select=categories"} for ref in refs]
        found: dict[str, list[str]] = {}
        failed = []
        for ref, reply in zip(refs, http.batch(items, what=what)):
            if reply.status == 404:
                continue
            if not reply.ok:
                failed.append(reply)
                continue
            found[ref] = self._categories[ref] = \
                [str(c) for c in reply.json().get("categories") or []]
        return found, failed

    def _queue_category(self, folder: Folder, ref: str, keyword: str) -> None:
        self._pending.append((ref, keyword, folder.key))

    def flush_keywords(self, where: str | None = None) -> int:
        """Write the queued categories: each message's category list as it is now plus the
        category, unless it has it already. Graph replaces the whole list, and another client
        may have changed it since the message was read (a category set in Outlook while the
        batch was being tracked), so the lists are read again first (one GET a message), then
        written (one PATCH a message), in ``$batch`` requests of 20: what another client set
        is kept, but for one that lands between the two. Returns how many were written. A
        message gone meanwhile (404) is skipped; any other failure (after the retries of
        throttled writes) raises, saying how many were not written (``where``: the folder's
        name, for the message)."""
        pending, self._pending = self._pending, []
        if not pending or self._client is None:
            return 0
        http = self.client
        what = f"writing categories in {where}" if where else "writing categories"
        refs = list(dict.fromkeys(ref for ref, _, _ in pending))
        now, failed = self._read_categories(refs, what)
        writes: dict[str, tuple[list[str], str]] = {}  # ref -> (categories, folder key)
        for ref, keyword, key in pending:
            if ref not in now:
                continue  # gone
            categories = writes[ref][0] if ref in writes else now[ref]
            if keyword.casefold() not in {c.casefold() for c in categories}:
                writes[ref] = ([*categories, keyword], key)
        items = [{"method": "PATCH", "url": f"{http.user}/messages/{quote(ref, safe='')}",
                  "body": {"categories": categories}} for ref, (categories, _) in writes.items()]
        replies = http.batch(items, what=what) if items else []
        for (ref, (categories, key)), reply in zip(writes.items(), replies):
            if reply.ok:
                self._written.setdefault(key, {})[ref] = categories
        failed += [r for r in replies if not r.ok and r.status != 404]
        if failed:
            error = http.error(failed[0], what, scope="message")
            raise ConnectorError(error.code, f"{error.message} The category was not written on "
                                 f"{len(failed)} of {len(refs)} messages"
                                 f"{f' in {where}' if where else ''}.",
                                 severity=error.severity, retry_after=error.retry_after)
        return sum(1 for r in replies if r.ok)

    # -- push -----------------------------------------------------------------------------

    def wait_for_changes(self, folders: list[Folder], timeout: float) -> set[str]:
        """Graph tells about changes through change notifications (``graph_push``), not on
        a connection: waiting learns nothing."""
        time.sleep(max(0.0, min(timeout, 60.0)))
        return set()

    def resource(self, key: str) -> str:
        return f"users/{self.account.address}/mailFolders('{key}')/messages"
