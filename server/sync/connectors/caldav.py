"""CalDAV/CardDAV item store (RFC 4791, 6352): a mailbox's calendars, task lists and address
books on any WebDAV server (Radicale, Nextcloud, Baikal, iCloud, Fastmail...).

Discovery follows RFC 6764's principal walk (current-user-principal, then calendar-home-set
and addressbook-home-set); changes come from ``sync-collection`` (RFC 6578) with the server's
sync token as the cursor, the items' data in the same report; writes carry ``If-Match`` (a
replace) or ``If-None-Match: *`` (a create), and a 412 is an ``ItemConflict``. A collection
the server cannot sync incrementally is refused with a ``no_sync_collection`` error that says
so (Test & Enable reports it), rather than read whole on every run.

Plain HTTP with ``requests`` and ``lxml``: the reports are a few lines of XML each and the
``caldav`` library would add a second HTTP stack and a request per item where one report
does. Account settings read here: ``url`` (the server's CalDAV/CardDAV URL; else
``https://host:port/``), ``ca_file`` and ``tls_verify`` (as for the mail connectors).
"""
from __future__ import annotations

import uuid
from typing import ClassVar
from urllib.parse import quote, urljoin, urlsplit

import requests
from lxml import etree

from server.sync.connectors.base import (Account, Collection, ConnectorError, Item,
                                         ItemChanges, ItemConflict, ItemStore, Needs)
from server.sync.connectors.common import ServerSession, network_error

DAV, CAL, CARD, CS = "DAV:", "urn:ietf:params:xml:ns:caldav", "urn:ietf:params:xml:ns:carddav", \
    "http://calendarserver.org/ns/"
NS = {"d": DAV, "c": CAL, "a": CARD, "cs": CS}
# The component a calendar item of each kind holds, and the file suffix of new items.
COMPONENT = {"appointment": "VEVENT", "task": "VTODO"}
SUFFIX = {"appointment": ".ics", "task": ".ics", "contact": ".vcf"}
MEDIA = {".ics": "text/calendar; charset=utf-8", ".vcf": "text/vcard; charset=utf-8"}
DEFAULT_NAMES = {"appointment": "Calendar", "task": "Tasks", "contact": "Contacts"}

_COLLECTION_PROPS = f"""<?xml version="1.0" encoding="utf-8"?>
<d:propfind xmlns:d="{DAV}" xmlns:c="{CAL}" xmlns:cs="{CS}"><d:prop>
<d:resourcetype/><d:displayname/><d:supported-report-set/><d:current-user-privilege-set/>
<c:supported-calendar-component-set/></d:prop></d:propfind>"""


def _propfind(*props: str) -> str:
    inner = "".join(f"<{p}/>" for p in props)
    return (f'<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="{DAV}" '
            f'xmlns:c="{CAL}" xmlns:a="{CARD}"><d:prop>{inner}</d:prop></d:propfind>')


def _sync_report(token: str | None, kind: str, limit: int) -> str:
    data = "<a:address-data/>" if kind == "contact" else "<c:calendar-data/>"
    token_xml = etree.Element("t")
    token_xml.text = token or ""
    token_text = etree.tostring(token_xml, encoding="unicode")[3:-4] if token else ""
    return (f'<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="{DAV}" '
            f'xmlns:c="{CAL}" xmlns:a="{CARD}"><d:sync-token>{token_text}</d:sync-token>'
            f'<d:sync-level>1</d:sync-level><d:limit><d:nresults>{limit}</d:nresults></d:limit>'
            f'<d:prop><d:getetag/>{data}</d:prop></d:sync-collection>')


def _multiget(kind: str, hrefs: list[str]) -> str:
    tag, ns, data = (("a:addressbook-multiget", CARD, "<a:address-data/>") if kind == "contact"
                     else ("c:calendar-multiget", CAL, "<c:calendar-data/>"))
    refs = "".join(f"<d:href>{_xml_text(h)}</d:href>" for h in hrefs)
    return (f'<?xml version="1.0" encoding="utf-8"?><{tag} xmlns:d="{DAV}" xmlns:c="{CAL}" '
            f'xmlns:a="{CARD}"><d:prop><d:getetag/>{data}</d:prop>{refs}</{tag}>')


def _xml_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def uid_of(data: str) -> str | None:
    """The UID line of iCalendar or vCard text (unfolded), without parsing the rest."""
    lines = data.replace("\r\n ", "").replace("\r\n\t", "").replace("\n ", "").splitlines()
    for line in lines:
        name, _, value = line.partition(":")
        if name.split(";")[0].upper() == "UID":
            return value.strip() or None
    return None


def _component_of(data: str) -> str | None:
    for component in ("VEVENT", "VTODO", "VJOURNAL", "VCARD"):
        if f"BEGIN:{component}" in data.upper():
            return component
    return None


class CalDavStore(ServerSession, ItemStore):
    """One mailbox's CalDAV/CardDAV account: ``with CalDavStore(account) as s:``."""

    needs: ClassVar[Needs] = Needs(host=True, ports={"tls": 443, "none": 80})
    DEFAULT_SECURITY = "tls"

    def __init__(self, account: Account):
        super().__init__(account)
        url = account.settings.get("url")
        scheme = "http" if self.security == "none" else "https"
        self.base = url or f"{scheme}://{account.host}:{self.port}/"
        self.where = urlsplit(self.base).netloc or self.where
        self._homes: dict[str, str] | None = None
        self._listed: list[tuple[str, etree._Element]] | None = None

    # ------------------------------------------------------------------ the session

    def _connect(self) -> None:
        session = requests.Session()
        session.auth = (self.username, self.account.password or "")
        ca_file, verify = self.account.settings.get("ca_file"), self.account.settings.get("tls_verify")
        session.verify = ca_file or (verify is not False)
        session.headers["User-Agent"] = "Regarding CRM"
        self._client = session

    def _abort(self, client) -> None:
        client.close()

    def _request(self, method: str, url: str, what: str, body: str | None = None,
                 headers: dict | None = None, ok: tuple[int, ...] = (200, 207)) -> requests.Response:
        headers = dict(headers or {})
        if body is not None:
            headers.setdefault("Content-Type", "application/xml; charset=utf-8")
        try:
            response = self.client.request(method, url, data=body.encode() if body else None,
                                           headers=headers, timeout=self.account.timeout)
        except requests.RequestException as exc:
            cause = exc.__context__ if isinstance(exc.__context__, OSError) else exc
            self._drop()
            raise network_error(cause, Account(self.account.address, host=self.where),
                                what) from exc
        if response.status_code in ok:
            return response
        raise self._refusal(response, what)

    def _xml(self, response: requests.Response):
        """The answer's XML; an answer cut short or garbled is a transient error (the
        connection dropped), never half read."""
        try:
            return etree.fromstring(response.content)
        except etree.XMLSyntaxError as exc:
            self._drop()
            raise ConnectorError("bad_answer", f"{self.where} sent an answer that ends early "
                                 f"or is not WebDAV XML ({exc.msg}).", severity="mailbox",
                                 retry_after=60) from exc

    def _refusal(self, response: requests.Response, what: str) -> ConnectorError:
        status = response.status_code
        if status == 401:
            return ConnectorError("auth_failed", f"{self.where} refused the password for "
                                  f"{self.username} (HTTP 401).", severity="auth")
        if status == 403:
            return ConnectorError("forbidden", f"{self.where} does not let {self.username} "
                                  f"do this while {what} (HTTP 403).", severity="folder")
        if status == 404:
            return ConnectorError("not_found", f"{self.where} has no {response.url} "
                                  f"(HTTP 404) while {what}.", severity="folder")
        severity = "mailbox" if status >= 500 or status == 429 else "folder"
        return ConnectorError("http_error", f"{self.where} answered HTTP {status} while {what}.",
                              severity=severity, retry_after=60 if severity == "mailbox" else None)

    # ------------------------------------------------------------------ discovery

    def _href(self, element, base: str) -> str:
        return urljoin(base, element.findtext(f"{{{DAV}}}href", "").strip())

    def _principal(self) -> str:
        for start in (self.base, urljoin(self.base, "/.well-known/caldav")):
            response = self._request("PROPFIND", start, "finding the account",
                                     _propfind("d:current-user-principal"),
                                     {"Depth": "0"}, ok=(207, 200, 404, 405, 301, 302))
            if response.status_code != 207:
                continue
            tree = self._xml(response)
            found = tree.find(f".//{{{DAV}}}current-user-principal")
            if found is not None and found.findtext(f"{{{DAV}}}href"):
                return self._href(found, response.url)
        raise ConnectorError("no_principal", f"{self.where} does not say where the account of "
                             f"{self.username} is (no current-user-principal): check the "
                             "CalDAV/CardDAV URL in the server profile.", severity="auth")

    def homes(self) -> dict[str, str]:
        """{"calendar": calendar-home-set URL, "contact": addressbook-home-set URL}."""
        if self._homes is None:
            principal = self._principal()
            response = self._request("PROPFIND", principal, "finding the calendars",
                                     _propfind("c:calendar-home-set", "a:addressbook-home-set"),
                                     {"Depth": "0"})
            tree = self._xml(response)
            homes = {}
            for key, tag in (("calendar", f"{{{CAL}}}calendar-home-set"),
                             ("contact", f"{{{CARD}}}addressbook-home-set")):
                found = tree.find(f".//{tag}")
                homes[key] = self._href(found, response.url) if found is not None and \
                    found.findtext(f"{{{DAV}}}href") else principal
            self._homes = homes
        return self._homes

    def _list(self) -> list[tuple[str, etree._Element]]:
        if self._listed is None:
            listed: dict[str, etree._Element] = {}
            for home in set(self.homes().values()):
                response = self._request("PROPFIND", home, "listing the calendars",
                                         _COLLECTION_PROPS, {"Depth": "1"})
                for element in self._xml(response).iter(f"{{{DAV}}}response"):
                    listed.setdefault(self._href(element, response.url), element)
            self._listed = list(listed.items())
        return self._listed

    def collections(self, kind: str) -> list[Collection]:
        found = [c for url, element in self._list() if (c := _collection(url, element, kind))]
        if not found:
            found = [self._create(kind)]
        if not any(c.default for c in found):
            found[0] = Collection(found[0].key, found[0].name, kind, True, found[0].features)
        return found

    def _create(self, kind: str) -> Collection:
        """The account has no collection of this kind: make one (as calendar apps do)."""
        home = self.homes()["contact" if kind == "contact" else "calendar"]
        url = urljoin(home, f"regarding-{kind}s/")
        name = _xml_text(DEFAULT_NAMES[kind])
        if kind == "contact":
            body = (f'<?xml version="1.0" encoding="utf-8"?><d:mkcol xmlns:d="{DAV}" '
                    f'xmlns:a="{CARD}"><d:set><d:prop><d:resourcetype><d:collection/>'
                    f'<a:addressbook/></d:resourcetype><d:displayname>{name}</d:displayname>'
                    '</d:prop></d:set></d:mkcol>')
            method = "MKCOL"
        else:
            body = (f'<?xml version="1.0" encoding="utf-8"?><c:mkcalendar xmlns:d="{DAV}" '
                    f'xmlns:c="{CAL}"><d:set><d:prop><d:displayname>{name}</d:displayname>'
                    f'<c:supported-calendar-component-set><c:comp name="{COMPONENT[kind]}"/>'
                    '</c:supported-calendar-component-set></d:prop></d:set></c:mkcalendar>')
            method = "MKCALENDAR"
        self._request(method, url, f"creating the {DEFAULT_NAMES[kind].lower()}", body,
                      ok=(201, 200, 405))
        self._listed = None
        for listed_url, element in self._list():
            if listed_url == url and (collection := _collection(url, element, kind)):
                return Collection(collection.key, collection.name, kind, True,
                                  collection.features)
        raise ConnectorError("cannot_create", f"{self.where} has no {name.lower()} for "
                             f"{self.username} and did not let us create one.", severity="folder")

    # ------------------------------------------------------------------ reading

    def changes(self, collection: Collection, cursor: str | None, limit: int = 500) -> ItemChanges:
        if "changes" not in collection.features:
            raise no_sync_collection(self.where, collection.name)
        reset = False
        try:
            response = self._request("REPORT", collection.key, f"reading {collection.name}",
                                     _sync_report(cursor, collection.kind, limit), {"Depth": "1"})
        except ConnectorError as exc:
            if not cursor or exc.code not in ("forbidden", "http_error"):
                raise
            # RFC 6578 3.2: an expired token is refused (403/409 valid-sync-token): start over.
            response = self._request("REPORT", collection.key, f"reading {collection.name}",
                                     _sync_report(None, collection.kind, limit), {"Depth": "1"})
            reset = True
        tree = self._xml(response)
        items, removed, missing = [], [], []
        more = False
        for element in tree.iter(f"{{{DAV}}}response"):
            href = self._href(element, collection.key)
            status = element.findtext(f"{{{DAV}}}status", "")
            if " 404" in status:
                removed.append(href)
                continue
            if " 507" in status:  # RFC 6578 3.6: truncated, call again with the new token
                more = True
                continue
            if href.rstrip("/") == collection.key.rstrip("/"):
                continue
            etag = element.findtext(f".//{{{DAV}}}getetag")
            data = element.findtext(f".//{{{CAL}}}calendar-data") or \
                element.findtext(f".//{{{CARD}}}address-data")
            if data is None:
                missing.append(href)
            elif _belongs(data, collection.kind):
                items.append(Item(href, etag, data, uid_of(data)))
        for start in range(0, len(missing), 200):
            items += self._fetch(collection, missing[start:start + 200])
        token = tree.findtext(f"{{{DAV}}}sync-token") or cursor or ""
        return ItemChanges(items, token, removed, more=more, reset=reset)

    def _fetch(self, collection: Collection, hrefs: list[str]) -> list[Item]:
        body = _multiget(collection.kind, [urlsplit(h).path for h in hrefs])
        response = self._request("REPORT", collection.key, f"reading {collection.name}", body,
                                 {"Depth": "1"})
        items = []
        for element in self._xml(response).iter(f"{{{DAV}}}response"):
            data = element.findtext(f".//{{{CAL}}}calendar-data") or \
                element.findtext(f".//{{{CARD}}}address-data")
            if data and _belongs(data, collection.kind):
                items.append(Item(self._href(element, collection.key),
                                  element.findtext(f".//{{{DAV}}}getetag"), data, uid_of(data)))
        return items

    # ------------------------------------------------------------------ writing

    def put(self, collection: Collection, data: str, ref: str | None = None,
            etag: str | None = None) -> Item:
        headers = {"Content-Type": MEDIA[SUFFIX[collection.kind]]}
        if ref is None:
            name = quote(uid_of(data) or str(uuid.uuid4()), safe="") + SUFFIX[collection.kind]
            ref = urljoin(collection.key, name)
            headers["If-None-Match"] = "*"
        elif etag:
            headers["If-Match"] = etag
        response = self._request("PUT", ref, f"writing to {collection.name}", data, headers,
                                 ok=(200, 201, 204, 412))
        if response.status_code == 412:
            raise ItemConflict(ref)
        new_etag = response.headers.get("ETag") or self._etag(ref)
        return Item(ref, new_etag, data, uid_of(data))

    def _etag(self, ref: str) -> str | None:
        response = self._request("PROPFIND", ref, "reading an item's version",
                                 _propfind("d:getetag"), {"Depth": "0"})
        return self._xml(response).findtext(f".//{{{DAV}}}getetag")

    def delete(self, collection: Collection, ref: str, etag: str | None = None) -> None:
        headers = {"If-Match": etag} if etag else {}
        response = self._request("DELETE", ref, f"deleting from {collection.name}", None,
                                 headers, ok=(200, 204, 404, 412))
        if response.status_code == 412:
            raise ItemConflict(ref)


def no_sync_collection(where: str, name: str) -> ConnectorError:
    return ConnectorError(
        "no_sync_collection", f"{where} cannot tell what changed in {name} (it has no WebDAV "
        "sync-collection, RFC 6578): upgrade the server or choose one that has it (Radicale, "
        "Nextcloud, Baikal, iCloud and Fastmail do).", severity="folder")


def _belongs(data: str, kind: str) -> bool:
    component = _component_of(data)
    return component == ("VCARD" if kind == "contact" else COMPONENT[kind])


def _collection(url: str, element, kind: str) -> Collection | None:
    """``element`` (a PROPFIND response) as a collection of ``kind``, if it is one."""
    types = element.find(f".//{{{DAV}}}resourcetype")
    if types is None:
        return None
    is_book = types.find(f"{{{CARD}}}addressbook") is not None
    is_calendar = types.find(f"{{{CAL}}}calendar") is not None
    if kind == "contact" and not is_book or kind != "contact" and not is_calendar:
        return None
    if kind != "contact":
        comps = element.find(f".//{{{CAL}}}supported-calendar-component-set")
        names = {c.get("name") for c in comps} if comps is not None and len(comps) else None
        if names is not None and COMPONENT[kind] not in names:
            return None
    features = set()
    reports = element.find(f".//{{{DAV}}}supported-report-set")
    if reports is not None and reports.find(f".//{{{DAV}}}sync-collection") is not None:
        features.add("changes")
    privileges = element.find(f".//{{{DAV}}}current-user-privilege-set")
    if privileges is None or any(privileges.find(f".//{{{DAV}}}{p}") is not None
                                 for p in ("write", "write-content", "all")):
        features.add("write")
    name = element.findtext(f".//{{{DAV}}}displayname") or urlsplit(url).path.rstrip("/") \
        .rpartition("/")[2]
    return Collection(url, name, kind, False, frozenset(features))
