"""The ``store`` fixture the appointment, contact and task scenarios run against: one mail
server side per param (Radicale, and the fake Microsoft Graph; EWS's fake is not one yet), each able to
make a mailbox that syncs with it and to act on the server as another client would."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import secrets

import pytest

from server.db import db
from server.security.bootstrap import root_unit
from server.sync.connectors.base import Account, Collection, Item
from server.sync.connectors.caldav import CalDavStore
from server.sync.models import EmailServerProfile, Mailbox

EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other client//EN\r\nBEGIN:VEVENT\r\n"
         "UID:{uid}\r\nDTSTAMP:{stamp}\r\nDTSTART:20300105T100000Z\r\nDTEND:20300105T110000Z\r\n"
         "SUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n")


GAPS = {
    "client_uids": "the scenario's calendar client keys items by the UIDs it writes; on Graph "
                   "Exchange assigns iCalUId, and the scenario is not yet written for that",
    "password": "the scenario gets a password wrong; Graph signs in with the app's token",
    "task_percent": "Microsoft To Do keeps a status, not a percent complete",
}


def require(side, feature: str) -> None:
    """Skip, saying why, a scenario that leans on what this server side does not do."""
    if feature not in side.supports:
        pytest.skip(f"{side.name}: {GAPS[feature]}")


class RadicaleSide:
    """A Radicale account per CRM user, a CalDAV/CardDAV profile, and a client of our own
    (the store itself, opened beside the engine's) to act as the user's calendar app."""

    name = "radicale"
    # What the scenarios lean on beyond the ItemStore contract (``require``).
    supports = frozenset({"client_uids", "password", "task_percent"})

    def require(self, feature: str) -> None:
        require(self, feature)

    def __init__(self, radicale):
        self.radicale = radicale
        self.users: dict[int, object] = {}
        self.profile: EmailServerProfile | None = None

    def mailbox(self, user, **fields) -> Mailbox:
        if self.profile is None:
            self.profile = EmailServerProfile(
                name="Radicale", incoming_protocol="caldav", incoming_host=self.radicale.host,
                incoming_port=self.radicale.port, incoming_security="none",
                owning_business_unit_id=root_unit().id, settings={"timeout": 10})
            db.session.add(self.profile)
            db.session.flush()
        # The session's Radicale outlives the test's database: a name of its own each time.
        dav = self.radicale.add_user(f"{user.email.split('@')[0]}-{secrets.token_hex(4)}",
                                     secrets.token_urlsafe(12))
        self.users[user.id] = dav
        box = Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                      server_profile_id=None, acts_profile_id=self.profile.id,
                      incoming_method="none", outgoing_method="none",
                      acts_method="server_side_sync", email_approved=True,
                      owning_business_unit_id=user.business_unit_id,
                      username=dav.username, password=dav.password,
                      **{"enabled": True, **fields})
        db.session.add(box)
        db.session.commit()
        return box

    @contextmanager
    def client(self, user) -> Iterator[CalDavStore]:
        dav = self.users[user.id]
        account = Account(user.email, host=self.radicale.host, port=self.radicale.port,
                          security="none", username=dav.username, password=dav.password)
        with CalDavStore(account) as store:
            yield store


def fill(side: RadicaleSide, user, texts: dict[str, dict[str, str]]) -> None:
    """Many items at once ({kind: {uid: text}}), written into Radicale's store as its own
    files: what thousands of PUTs would leave, in a fraction of the time; then read once,
    as Radicale parses and caches each item the first time it is asked for it."""
    with side.client(user) as client:
        folders = {kind: client.collections(kind)[0].key for kind in texts}
    for kind, items in texts.items():
        folder = side.radicale.storage_dir / "collection-root" / folders[kind].split(
            "/", 3)[3].strip("/")
        suffix = ".vcf" if kind == "contact" else ".ics"
        for uid, text in items.items():
            (folder / f"{uid}{suffix}").write_text(text)
    dav = side.users[user.id]
    account = Account(user.email, host=side.radicale.host, port=side.radicale.port,
                      security="none", username=dav.username, password=dav.password,
                      timeout=600)
    with CalDavStore(account) as client:  # Radicale reads and caches them once, now
        for kind in texts:
            client.changes(client.collections(kind)[0], None)


class Server:
    """The user's mail server as their own calendar app sees it."""

    def __init__(self, store, kind: str):
        self.store, self.kind = store, kind
        self.collection: Collection = store.collections(kind)[0]

    def items(self) -> dict[str, Item]:
        return {i.uid: i for i in self.store.changes(self.collection, None).items}

    def put(self, data: str, uid: str) -> Item:
        existing = self.items().get(uid)
        return self.store.put(self.collection, data, existing.ref if existing else None,
                              existing.etag if existing else None)

    def delete(self, uid: str) -> None:
        self.store.delete(self.collection, self.items()[uid].ref)


class GraphSide:
    """A mailbox per CRM user in the fake Microsoft Graph (Exchange Online): the user's
    Outlook calendar, contacts and To Do lists, read and written by the engine through
    Graph, and by a client of our own as Outlook would."""

    name = "graph"
    # Exchange gives events it is sent its own iCalUId, signs in with the app's token (no
    # password to get wrong) and keeps no percent complete on a To Do task.
    supports = frozenset()

    def require(self, feature: str) -> None:
        require(self, feature)

    def __init__(self, fake):
        self.fake = fake
        self.profile: EmailServerProfile | None = None

    def _settings(self) -> dict:
        # The scenarios' events are in 2030: a calendar view window that reaches them.
        return self.fake.profile_settings(graph_calendar_days_ahead=3650)

    def _token(self, fresh: bool = False) -> str:
        return self.fake._token("app", self.fake.app_roles)["access_token"]

    def mailbox(self, user, **fields) -> Mailbox:
        if self.profile is None:
            self.profile = EmailServerProfile(
                name="Exchange Online", incoming_protocol="graph", outgoing_protocol="graph",
                oauth_tenant=self.fake.tenant, oauth_client_id=self.fake.client_id,
                oauth_client_secret=self.fake.client_secret, auth_method="oauth2",
                settings=self._settings(), owning_business_unit_id=root_unit().id)
            db.session.add(self.profile)
            db.session.flush()
        self.fake.add_mailbox(user.email)
        box = Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                      server_profile_id=self.profile.id, incoming_method="none",
                      outgoing_method="none", acts_method="server_side_sync",
                      email_approved=True, owning_business_unit_id=user.business_unit_id,
                      **{"enabled": True, **fields})
        db.session.add(box)
        db.session.commit()
        return box

    @contextmanager
    def client(self, user):
        from server.sync.connectors.graph_items import GraphItemStore
        account = Account(user.email, settings=self._settings(),
                          token_provider=self._token)
        with GraphItemStore(account) as store:
            yield store


@pytest.fixture(params=["radicale", "graph"])
def store(request):
    if request.param == "radicale":
        radicale = request.getfixturevalue("radicale")
        if not radicale.running:
            radicale.start()
        return RadicaleSide(radicale)
    if request.param == "graph":
        from server.sync.engine import oauth
        from server.sync.connectors.graph_client import forget_limits
        from tests.fakes.graph import FakeGraph
        fake = FakeGraph().start()
        oauth.forget_tokens()
        forget_limits()
        request.addfinalizer(fake.close)
        request.addfinalizer(oauth.forget_tokens)
        return GraphSide(fake)
    raise ValueError(request.param)


def event(uid: str, summary: str, extra: str = "", stamp: str = "20250101T000000Z") -> str:
    return EVENT.format(uid=uid, summary=summary, extra=extra, stamp=stamp)
