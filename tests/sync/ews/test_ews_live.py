"""The EWS connector against a real Exchange Server, only when one is named:
``REGARDING_LIVE_EWS_URL`` (the EWS endpoint), ``REGARDING_LIVE_EWS_USERNAME`` (e.g.
``CONTOSO\\crm-service``), ``REGARDING_LIVE_EWS_PASSWORD``, ``REGARDING_LIVE_EWS_MAILBOX``
(the SMTP address to read); optional ``REGARDING_LIVE_EWS_AUTH`` (ntlm, basic; default:
ask the server) and ``REGARDING_LIVE_EWS_IMPERSONATION=1`` (the user is a service account
with ApplicationImpersonation). Read-only: it lists folders, reads the Inbox in pages with
the SyncFolderItems cursor and checks Sent Items is there; it sends nothing and sets no
category."""
from __future__ import annotations

import os

import pytest

from server.sync.connectors.base import Account
from server.sync.connectors.ews import EwsConnector, EwsSender

NAMES = ("URL", "USERNAME", "PASSWORD", "MAILBOX")
LIVE = {name: os.environ.get(f"REGARDING_LIVE_EWS_{name}") for name in NAMES}

pytestmark = pytest.mark.skipif(not all(LIVE.values()), reason="no live Exchange Server named "
                                "(REGARDING_LIVE_EWS_URL, _USERNAME, _PASSWORD, _MAILBOX)")


@pytest.fixture
def account() -> Account:
    settings = {"ews_url": LIVE["URL"]}
    if os.environ.get("REGARDING_LIVE_EWS_AUTH"):
        settings["auth_type"] = os.environ["REGARDING_LIVE_EWS_AUTH"]
    if os.environ.get("REGARDING_LIVE_EWS_IMPERSONATION") == "1":
        settings["impersonation"] = True
    return Account(address=LIVE["MAILBOX"], username=LIVE["USERNAME"],
                   password=LIVE["PASSWORD"], settings=settings, timeout=60)


def test_live_folders_and_inbox_pages(account):
    with EwsConnector(account) as ews:
        folders = ews.list_folders()
        roles = {f.role for f in folders}
        assert {"inbox", "sent"} <= roles
        inbox = next(f for f in folders if f.role == "inbox")
        first = ews.fetch_changes(inbox, None, limit=3)
        assert len(first.messages) <= 3 and first.cursor
        for message in first.messages:
            assert message.raw and b":" in message.raw.split(b"\r\n", 1)[0]
        # The same folder id again, and the cursor moves on without repeating mail.
        assert inbox.key in {f.key for f in ews.list_folders()}
        second = ews.fetch_changes(inbox, first.cursor, limit=3)
        assert not {m.ref for m in first.messages} & {m.ref for m in second.messages}


def test_live_sender_verifies_without_sending(account):
    with EwsSender(account) as sender:
        sender.verify(account.address, account.address)
