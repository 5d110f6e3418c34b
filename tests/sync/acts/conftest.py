"""The ``store`` fixture the appointment, contact and task scenarios run against: one mail
server side per param (Radicale, the fake Microsoft Graph, the fake Exchange Server over EWS),
each able to make a mailbox that syncs with it and to act on the server as another client
would (``Side``)."""
from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest

from server.db import db
from server.security.bootstrap import root_unit
from server.sync.connectors.base import Account, Collection, Item
from server.sync.connectors.caldav import CalDavStore
from server.sync.models import EmailServerProfile, Mailbox

EVENT = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Other client//EN\r\nBEGIN:VEVENT\r\n"
         "UID:{uid}\r\nDTSTAMP:{stamp}\r\nDTSTART:20300105T100000Z\r\nDTEND:20300105T110000Z\r\n"
         "SUMMARY:{summary}\r\n{extra}END:VEVENT\r\nEND:VCALENDAR\r\n")


def stamp_of(data: str) -> datetime | None:
    """The DTSTAMP a client wrote into an item: when it says it made its edit."""
    match = re.search(r"^DTSTAMP:(\d{8}T\d{6})Z\r?$", data, re.M)
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(
        tzinfo=timezone.utc) if match else None


class Side:
    """What every server side gives the scenarios: ``server(client, kind)``, the user's
    collection as their own client sees it, with the names of the items it made."""

    name: str
    keeps_percent = True  # the server keeps a task's percent complete (To Do does not)
    keeps_due_time = True  # and the hour a task is due (To Do: the day)
    dates_completion = True  # a client may say when a task was completed (EWS: Exchange does)
    # What the mailbox says, and Test & Enable's code, once ``spoil_sign_in`` spoilt it.
    refused, refused_code = "refused the password", "auth_failed"

    def __init__(self):
        # The UID a scenario gave an item -> the UID the server keeps it under (Exchange gives
        # events it is sent an iCalUId of its own, and contacts and tasks their id).
        self.names: dict[str, str] = {}
        self.profile: EmailServerProfile | None = None

    def server(self, client, kind: str) -> Server:
        return Server(client, kind, self)

    def _profile(self, **fields) -> EmailServerProfile:
        """The side's server profile, made on first use."""
        if self.profile is None:
            self.profile = EmailServerProfile(owning_business_unit_id=root_unit().id, **fields)
            db.session.add(self.profile)
            db.session.flush()
        return self.profile

    def _mailbox(self, user, fields: dict) -> Mailbox:
        box = Mailbox(name=user.email, email_address=user.email, user_id=user.id,
                      incoming_method="none", outgoing_method="none",
                      acts_method="server_side_sync", email_approved=True,
                      owning_business_unit_id=user.business_unit_id,
                      **{"enabled": True, **fields})
        db.session.add(box)
        db.session.commit()
        return box

    def spoil_sign_in(self, box: Mailbox) -> None:
        """The mailbox's password no longer the account's."""
        box.password = "wrong"

    @contextmanager
    def edited_at(self, when: datetime | None):
        """Make a client's write as of ``when`` (a CalDAV client says it in DTSTAMP)."""
        yield

    def created(self, client, item: Item) -> None:
        """What the server does once a client made an appointment (Exchange: invitations)."""


class ExchangeSide(Side):
    """A fake Exchange (``fake``, Graph's or EWS's), whose clock dates each edit."""

    def __init__(self, fake):
        super().__init__()
        self.fake = fake

    @contextmanager
    def edited_at(self, when: datetime | None):
        self.fake.clock = when
        try:
            yield
        finally:
            self.fake.clock = None


class RadicaleSide(Side):
    """A Radicale account per CRM user, a CalDAV/CardDAV profile, and a client of our own
    (the store itself, opened beside the engine's) to act as the user's calendar app."""

    name = "radicale"

    def __init__(self, radicale):
        super().__init__()
        self.radicale = radicale
        self.users: dict[int, object] = {}

    def mailbox(self, user, **fields) -> Mailbox:
        profile = self._profile(
            name="Radicale", incoming_protocol="caldav", incoming_host=self.radicale.host,
            incoming_port=self.radicale.port, incoming_security="none", settings={"timeout": 10})
        # The session's Radicale outlives the test's database: a name of its own each time.
        dav = self.radicale.add_user(f"{user.email.split('@')[0]}-{secrets.token_hex(4)}",
                                     secrets.token_urlsafe(12))
        self.users[user.id] = dav
        return self._mailbox(user, {"acts_profile_id": profile.id, "username": dav.username,
                                    "password": dav.password, **fields})

    def drop_connection_at(self, page: int) -> None:
        pytest.skip("a CalDAV connection cut mid-answer: test_dropped's proxy test")

    def take_calendar_access_away(self, user) -> str:
        pytest.skip("Radicale's rights are the whole server's (one rights file for every "
                    "test): a calendar cannot be closed to one account here")

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
    """The user's mail server as their own calendar app sees it. Items are named by the UID
    the scenario gave them (``names``: that UID -> the one the server keeps, where it gave
    its own); ``uid(name)`` is the server's."""

    def __init__(self, store, kind: str, side: Side | None = None):
        self.store, self.kind = store, kind
        self.collection: Collection = store.collections(kind)[0]
        self.side = side or Side()
        self.names = self.side.names

    def uid(self, name: str) -> str:
        return self.names.get(name, name)

    def items(self) -> dict[str, Item]:
        named = {uid: name for name, uid in self.names.items()}
        return {named.get(i.uid, i.uid): i
                for i in self.store.changes(self.collection, None).items}

    def put(self, data: str, uid: str) -> Item:
        existing = self.items().get(uid)
        with self.side.edited_at(stamp_of(data)):
            item = self.store.put(self.collection, data, existing.ref if existing else None,
                                  existing.etag if existing else None)
        self.names.setdefault(uid, item.uid)
        if existing is None and self.kind == "appointment":
            self.side.created(self.store, item)
        return item

    def delete(self, uid: str) -> None:
        self.store.delete(self.collection, self.items()[uid].ref)


class GraphSide(ExchangeSide):
    """A mailbox per CRM user in the fake Microsoft Graph (Exchange Online): the user's
    Outlook calendar, contacts and To Do lists, read and written by the engine through
    Graph, and by a client of our own as Outlook would (Exchange names what it is sent:
    events get its iCalUId, contacts and tasks its id; and its clock dates each edit)."""

    name = "graph"
    keeps_percent = False  # To Do keeps a status: notStarted, inProgress, completed
    keeps_due_time = False
    refused, refused_code = "Invalid client secret", "oauth_failed"

    def _settings(self) -> dict:
        # The scenarios' events are in 2030: a calendar view window that reaches them.
        return self.fake.profile_settings(graph_calendar_days_ahead=3650)

    def _token(self, fresh: bool = False) -> str:
        return self.fake._token("app", self.fake.app_roles)["access_token"]

    def mailbox(self, user, **fields) -> Mailbox:
        profile = self._profile(
            name="Exchange Online", incoming_protocol="graph", outgoing_protocol="graph",
            oauth_tenant=self.fake.tenant, oauth_client_id=self.fake.client_id,
            oauth_client_secret=self.fake.client_secret, auth_method="oauth2",
            settings=self._settings())
        self.fake.add_mailbox(user.email)
        return self._mailbox(user, {"server_profile_id": profile.id, **fields})

    def spoil_sign_in(self, box: Mailbox) -> None:
        """The app's client secret in the profile no longer the one Entra ID holds."""
        from server.sync.engine import oauth
        self.profile.oauth_client_secret = "wrong"
        db.session.commit()
        oauth.forget_tokens()

    def drop_connection_at(self, page: int) -> None:
        """The connection breaks when the calendar's ``page``-th page of changes is asked."""
        self.fake.drop_later("calendarView/delta", page - 1)

    def take_calendar_access_away(self, user) -> str:
        """Admin consent to Calendars.ReadWrite revoked; what the mailbox must then say."""
        from server.sync.engine import oauth
        self.fake.app_roles = tuple(r for r in self.fake.app_roles if r != "Calendars.ReadWrite")
        oauth.forget_tokens()
        return "Calendars.ReadWrite"

    @contextmanager
    def client(self, user):
        from server.sync.connectors.graph_items import GraphItemStore
        account = Account(user.email, settings=self._settings(),
                          token_provider=self._token)
        with GraphItemStore(account) as store:
            yield store


class EwsSide(ExchangeSide):
    """A mailbox per CRM user on the fake Exchange Server, reached over EWS with the user's
    own sign-in (basic): the engine's store and a client of our own (the same store, as
    Outlook would write) on the user's calendar, contacts and tasks folders."""

    name = "ews"
    keeps_due_time = False  # an Outlook task is due on a day
    dates_completion = False

    def __init__(self, fake):
        super().__init__(fake)
        self.users: dict[int, tuple[str, str]] = {}

    def _settings(self) -> dict:
        return {"ews_url": self.fake.url, "auth_type": "basic", "timeout": 10}

    def mailbox(self, user, **fields) -> Mailbox:
        profile = self._profile(name="Exchange Server", incoming_protocol="ews",
                                outgoing_protocol="ews", settings=self._settings())
        login = (f"ORG\\{user.email.split('@')[0]}", secrets.token_urlsafe(12))
        self.fake.add_user(*login, user.email)
        self.users[user.id] = login
        return self._mailbox(user, {"server_profile_id": profile.id, "username": login[0],
                                    "password": login[1], **fields})

    def drop_connection_at(self, page: int) -> None:
        """As for Graph: at the calendar's ``page``-th SyncFolderItems."""
        self.fake.drop_later("SyncFolderItems", page - 1)

    def take_calendar_access_away(self, user) -> str:
        """The account no longer allowed in the calendar folder; what the mailbox says."""
        self.fake.denied.add("calendar")
        return "calendar"

    def created(self, client, item: Item) -> None:
        """Outlook sends a new meeting's invitations (Graph's POST sends them itself)."""
        self.fake.send_invitation(client.account.address, item.ref)

    @contextmanager
    def client(self, user):
        from server.sync.connectors.ews_items import EwsItemStore
        login, password = self.users[user.id]
        account = Account(user.email, username=login, password=password, timeout=10,
                          settings=self._settings())
        with EwsItemStore(account) as store:
            yield store


@pytest.fixture(params=["radicale", "graph", "ews"])
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
    if request.param == "ews":
        from tests.fakes.ews import FakeExchange, serve
        served = serve(FakeExchange())
        request.addfinalizer(served.stop)
        return EwsSide(served.fake)
    raise ValueError(request.param)


def event(uid: str, summary: str, extra: str = "", stamp: str = "20250101T000000Z") -> str:
    return EVENT.format(uid=uid, summary=summary, extra=extra, stamp=stamp)
