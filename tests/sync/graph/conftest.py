"""Fixtures for the Graph tests: the fake Graph service (with its token endpoint), a store
object that acts on it as Outlook would, profiles and mailboxes pointing at it, and the
application served on a loopback port so the fake can post notifications to it."""
from __future__ import annotations

import threading
from contextlib import contextmanager

import pytest
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from server.db import db
from server.sync.engine import oauth
from server.sync.connectors.graph_client import forget_limits
from tests.fakes.graph import FakeGraph
from tests.servers.ports import LOOPBACK
from tests.sync import world as w

BOB = "bob@org.example"


@pytest.fixture
def graph():
    fake = FakeGraph().start()
    oauth.forget_tokens()
    forget_limits()
    yield fake
    fake.close()
    oauth.forget_tokens()
    forget_limits()


class GraphStore:
    """A mailbox in the fake Graph service, with the same verbs as the Maildir and IMAP
    stores of the engine tests (folder names as Outlook shows them: "Inbox/Contoso deal")."""

    protocol = "graph"

    def __init__(self, fake: FakeGraph, address: str, added: bool = False):
        self.fake, self.address = fake, address
        self._token: str | None = None
        if not added:
            fake.add_mailbox(address)

    def profile_fields(self, **settings) -> dict:
        return {"oauth_tenant": self.fake.tenant, "oauth_client_id": self.fake.client_id,
                "oauth_client_secret": self.fake.client_secret, "outgoing_protocol": "graph",
                "settings": self.fake.profile_settings(**settings)}

    def mailbox_fields(self) -> dict:
        return {}

    def deliver(self, data: bytes, folder: str = "Inbox", **kw) -> str:
        return self.fake.deliver(self.address, data, folder, **kw)

    def create_folder(self, name: str) -> str:
        return self.fake.create_folder(self.address, name)

    def rename_folder(self, old: str, new: str) -> None:
        """Through the API, as a mail client renames a folder."""
        self._outlook("PATCH", f"mailFolders/{self.fake.folder_id(self.address, old)}",
                      {"displayName": new.rpartition("/")[2]})

    def move(self, ref: str, source: str, target: str) -> None:
        """Through the API (``messages/{id}/move``), as a mail client files a message."""
        self._outlook("POST", f"messages/{ref}/move",
                      {"destinationId": self.fake.folder_id(self.address, target)})

    def copy(self, ref: str, source: str, target: str) -> str:
        """Through the API (``messages/{id}/copy``); returns the copy's id."""
        return self._outlook("POST", f"messages/{ref}/copy",
                             {"destinationId": self.fake.folder_id(self.address, target)})["id"]

    def _outlook(self, method: str, path: str, body: dict) -> dict:
        """One request as the mailbox's own mail client (a delegated token), asking for
        immutable ids (the ids ``deliver`` returns)."""
        if self._token is None:
            self._token = self.fake._token("delegated", ("Mail.ReadWrite",),
                                           user=self.address)["access_token"]
        answer = requests.request(
            method, f"{self.fake.graph_url}/users/{self.address}/{path}", json=body, timeout=10,
            verify=str(self.fake.cert.cert_path),
            headers={"Authorization": f"Bearer {self._token}",
                     "Prefer": 'IdType="ImmutableId"'})
        answer.raise_for_status()
        return answer.json()

    def keywords(self, folder: str) -> list[set[str]]:
        return [set(m.categories) for m in self.fake.messages_in(self.address, folder)]


@pytest.fixture
def store(graph):
    """Bob's mailbox in the fake Graph service."""
    return GraphStore(graph, BOB)


def graph_mailbox(store: GraphStore, owner, settings: dict | None = None, **fields):
    prof = w.profile("graph", **store.profile_fields(**(settings or {})))
    fields.setdefault("email_address", store.address)
    box = w.mailbox(owner, prof=prof, **fields)
    db.session.commit()
    return box


class _Quiet(WSGIRequestHandler):
    def log(self, *args) -> None:
        pass


@contextmanager
def serving(app):
    """The application on http://127.0.0.1:<port> (for Graph's notifications), with the
    notification URL pointing at it; yields that URL (the tests' fixture and the latency
    benchmark's Graph side)."""
    server = make_server(LOOPBACK, 0, app, threaded=True, request_handler=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://{LOOPBACK}:{server.server_port}"
    app.config["REGARDING_GRAPH_NOTIFICATION_URL"] = url + "/graph/notifications"
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        app.config.pop("REGARDING_GRAPH_NOTIFICATION_URL", None)


@pytest.fixture
def served(app):
    with serving(app) as url:
        yield url
