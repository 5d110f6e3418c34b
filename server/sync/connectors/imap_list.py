"""The IMAP folder listing with each folder's STATUS items (``ImapConnector.list_folders``):
one ``LIST ... RETURN (STATUS ...)`` where the server has LIST-STATUS (RFC 5819), else LIST
then one STATUS a folder. The items are a folder's identity (UIDVALIDITY; MAILBOXID where
the server has OBJECTID, RFC 8474, else Dovecot's X-GUID, tried once) and what tells whether
it changed since a cursor without opening it (UIDNEXT, and with CONDSTORE HIGHESTMODSEQ:
``ImapConnector.unchanged``). An item the server refuses is dropped and not asked again."""
from __future__ import annotations

import imaplib

from imapclient import IMAPClient
from imapclient.imap_utf7 import decode as decode_utf7
from imapclient.response_parser import parse_response

from server.sync.connectors.imap_fetch import text


class Listing:
    """The listing part of ``ImapConnector``, which it is mixed into: it uses the session's
    connection (``client``) and capabilities."""

    client: IMAPClient
    _xguid: bool | None
    _change_items: bool | None

    @staticmethod
    def _key_of(display: str, status: dict, uv_count: dict) -> str:
        mailbox_id = status.get(b"MAILBOXID")
        if mailbox_id:
            value = mailbox_id[0] if isinstance(mailbox_id, tuple) else mailbox_id
            return f"id:{text(value)}"
        guid = status.get(b"X-GUID")
        if guid:
            return f"guid:{text(guid)}"
        uv = status.get(b"UIDVALIDITY")
        if uv is not None and uv_count.get(uv) == 1:
            return f"uv:{uv}"
        return f"path:{display}"

    def _identity_items(self) -> list[str]:
        """The STATUS items a listing asks for: a folder's identity, and what tells whether
        it changed (``unchanged``): UIDNEXT, and with CONDSTORE HIGHESTMODSEQ."""
        items = ["UIDVALIDITY"]
        if b"OBJECTID" in self.capabilities():
            items.append("MAILBOXID")
        elif self._xguid is not False:
            items.append("X-GUID")
        if self._change_items is not False:
            items.append("UIDNEXT")
            if self._condstore():
                items.append("HIGHESTMODSEQ")
        return items

    def _condstore(self) -> bool:
        capabilities = self.capabilities()
        return b"CONDSTORE" in capabilities or b"QRESYNC" in capabilities

    def _list_with_status(self) -> list[tuple[tuple, bytes | None, str, dict]]:
        """LIST with each folder's identity items: one LIST-STATUS command where offered,
        else LIST then one STATUS per folder. X-GUID, then UIDNEXT and HIGHESTMODSEQ, are
        each tried once and dropped if refused (the folders are listed without them)."""
        client = self.client
        dropped_changes = False
        while True:
            items = self._identity_items()
            try:
                if b"LIST-STATUS" in self.capabilities():
                    rows = self._list_status(items)
                else:
                    rows = [(flags, delim, name, self._status(name, items, flags))
                            for flags, delim, name in client.list_folders()]
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error:
                # The newest items first (a folder's key must not change because of them):
                # without the change items; then without X-GUID, with them again.
                if "UIDNEXT" in items:
                    self._change_items, dropped_changes = False, True
                    continue
                if "X-GUID" in items:
                    self._xguid = False
                    if dropped_changes:
                        self._change_items, dropped_changes = None, False
                    continue
                raise
            if "X-GUID" in items:
                self._xguid = True
            if "UIDNEXT" in items:
                self._change_items = True
            return rows

    def _status(self, name: str, items: list[str], flags: tuple) -> dict:
        if any(f.upper() in (b"\\NOSELECT", b"\\NONEXISTENT") for f in flags):
            return {}
        return self.client.folder_status(name, items)

    def _list_status(self, items: list[str]) -> list[tuple[tuple, bytes | None, str, dict]]:
        imap = self.client._imap
        imap.untagged_responses.pop("LIST", None)
        imap.untagged_responses.pop("STATUS", None)
        # With RETURN options a LIST-EXTENDED server names special uses only when asked.
        special = "SPECIAL-USE " if b"SPECIAL-USE" in self.capabilities() else ""
        typ, data = imap._simple_command("LIST", '""', '"*"', "RETURN",
                                         f"({special}STATUS ({' '.join(items)}))")
        if typ != "OK":
            raise imaplib.IMAP4.error(f"LIST failed: {text(data[0]) if data else typ}")
        _, lists = imap._untagged_response(typ, data, "LIST")
        statuses = imap.untagged_responses.pop("STATUS", [])
        status_by_name: dict[str, dict] = {}
        for line in statuses:
            parsed = parse_response([line])
            name, values = parsed[0], parsed[-1]
            name = str(name) if isinstance(name, int) else decode_utf7(name)
            status_by_name[name] = {values[i].upper(): values[i + 1]
                                    for i in range(0, len(values) - 1, 2)}
        rows = self.client._proc_folder_list(lists)
        return [(flags, delim, name, status_by_name.get(name, {})) for flags, delim, name in rows]
