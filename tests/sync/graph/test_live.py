"""The Graph connector against a real Microsoft 365 tenant, read-only: skipped unless
``REGARDING_LIVE_GRAPH_TENANT``, ``REGARDING_LIVE_GRAPH_CLIENT_ID``,
``REGARDING_LIVE_GRAPH_CLIENT_SECRET`` and ``REGARDING_LIVE_GRAPH_MAILBOX`` are set (an app
with the application permissions and access policy of docs/exchange.md). It signs in, lists
the folders, reads the first delta page of the Inbox and checks the send permission; it
writes nothing to the mailbox."""
from __future__ import annotations

import os

import pytest

from server.db import db
from server.sync.engine import oauth
from server.sync.engine.accounts import account_for
from server.sync.connectors.graph import GraphConnector
from server.sync.connectors.graph_send import GraphSender
from tests.sync import world as w

NAMES = ("TENANT", "CLIENT_ID", "CLIENT_SECRET", "MAILBOX")
LIVE = {n: os.environ.get(f"REGARDING_LIVE_GRAPH_{n}") for n in NAMES}

pytestmark = pytest.mark.skipif(not all(LIVE.values()),
                                reason="set REGARDING_LIVE_GRAPH_{TENANT,CLIENT_ID,CLIENT_SECRET,"
                                       "MAILBOX} to run against a real tenant")


def test_live_tenant_read_only(app, make_user):
    oauth.forget_tokens()
    prof = w.profile("graph", outgoing_protocol="graph", oauth_tenant=LIVE["TENANT"],
                     oauth_client_id=LIVE["CLIENT_ID"], oauth_client_secret=LIVE["CLIENT_SECRET"],
                     settings={"timeout": 30})
    box = w.mailbox(make_user(LIVE["MAILBOX"]), prof=prof, email_address=LIVE["MAILBOX"])
    db.session.commit()
    with GraphConnector(account_for(box, "incoming")) as conn:
        folders = conn.list_folders()
        inbox = next(f for f in folders if f.role == "inbox")
        assert any(f.role == "sent" for f in folders)
        changes = conn.fetch_changes(inbox, None, limit=5)
        assert changes.cursor.startswith("https://graph.microsoft.com/")
        for message in changes.messages:
            assert message.raw and message.ref
    with GraphSender(account_for(box, "outgoing")) as sender:
        sender.verify(LIVE["MAILBOX"], LIVE["MAILBOX"])
