"""The category the engine writes back is not news to the same session: after tracking a
batch and tagging it, the next fetch of that folder does not bring those messages back
(IMAP CONDSTORE reports our own STORE as a change; Maildir sees the renamed file), while a
category another client sets is still noticed. Over a real Dovecot and a Maildir tree."""
from __future__ import annotations

import re

from server.sync.connectors.base import Account
from server.sync.connectors.imap import ImapConnector
from server.sync.connectors.maildir import MaildirConnector, create_maildir, deliver
from tests.sync.connectors.conftest import imap_account, numbered

CATEGORY = "Tracked to Regarding"


def numbers(changes) -> list[int]:
    return [int(re.search(rb"<m(\d+)@", m.raw).group(1)) for m in changes.messages]


def inbox(connector):
    return next(f for f in connector.list_folders() if f.name == "INBOX")


def test_imap_own_category_is_not_fetched_again(dovecot, mail_user):
    for n in range(1, 6):
        dovecot.deliver(mail_user, numbered(n))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        folder = inbox(imap)
        first = imap.fetch_changes(folder, None, limit=3)
        for m in first.messages:
            imap.set_keyword(folder, m.ref, CATEGORY)
        second = imap.fetch_changes(folder, first.cursor, limit=3)
        assert numbers(first) == [1, 2, 3] and numbers(second) == [4, 5]
        # Another client gives message 1 a category of its own: that is news.
        with dovecot.imap_client(mail_user) as other:
            other.select_folder("INBOX")
            other.add_flags([int(first.messages[0].ref)], [b"Customer_X"])
        third = imap.fetch_changes(folder, second.cursor)
    assert numbers(third) == [1]
    assert set(third.messages[0].keywords) == {CATEGORY, "Customer X"}


def test_maildir_own_category_is_not_fetched_again(tmp_path):
    root = create_maildir(tmp_path / "sam")
    for n in range(1, 6):
        deliver(root, "INBOX", numbered(n))
    account = Account(address="sam@contoso.example", root=str(root))
    with MaildirConnector(account) as md:
        folder = inbox(md)
        first = md.fetch_changes(folder, None, limit=3)
        for m in first.messages:
            md.set_keyword(folder, m.ref, CATEGORY)
        second = md.fetch_changes(folder, first.cursor, limit=3)
        assert len(first.messages) == 3 and len(second.messages) == 2
        with MaildirConnector(account) as other:  # a mail client sets another category
            other.set_keyword(inbox(other), first.messages[0].ref, "Customer X")
        third = md.fetch_changes(folder, second.cursor)
    assert [m.ref for m in third.messages] == [first.messages[0].ref]
    assert set(third.messages[0].keywords) == {CATEGORY, "Customer X"}
