"""The category the engine writes back is not news to the same session: after tracking a
batch and tagging it, the next fetch of that folder does not bring those messages back
(IMAP CONDSTORE reports our own STORE as a change; Maildir sees the renamed file), while a
category another client sets is still noticed; over IMAP a cursor moves past the session's
own STOREs for the next session too (``past_own_writes``). Over a real Dovecot and a
Maildir tree."""
from __future__ import annotations

import re

from server.sync.connectors.base import Account, Folder
from server.sync.connectors.imap import ImapConnector, _own_modseqs
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


def test_imap_cursor_moves_past_own_category_for_the_next_session(dovecot, mail_user):
    """``past_own_writes``: a cursor taken before the session's own STOREs moves to the
    mod-sequence they reached when they alone fill the gap (Dovecot numbers each STORE in
    turn), so a new session finds the folder unchanged from its listing; with a change by
    another client in between, it stays."""
    for n in range(1, 4):
        dovecot.deliver(mail_user, numbered(n))
    account = imap_account(dovecot, mail_user)
    with ImapConnector(account) as imap:
        folder = inbox(imap)
        read = imap.fetch_changes(folder, None)
        imap.set_keywords(folder, [m.ref for m in read.messages[:2]], CATEGORY)
        imap.set_keyword(folder, read.messages[2].ref, CATEGORY)
        moved = imap.past_own_writes(folder, read.cursor)
    assert moved != read.cursor
    with ImapConnector(account) as imap:
        assert imap.unchanged(inbox(imap), moved)
        assert not imap.unchanged(inbox(imap), read.cursor)

    with ImapConnector(account) as imap:
        folder = inbox(imap)
        read = imap.fetch_changes(folder, moved)
        with dovecot.imap_client(mail_user) as other:  # after the read, before the STORE
            other.select_folder("INBOX")
            other.add_flags([1], [b"\\Flagged"])
        imap.set_keywords(folder, ["2"], "Customer X")
        assert imap.past_own_writes(folder, read.cursor) == read.cursor


def test_imap_cursor_stays_where_the_server_numbers_sparsely():
    """A server whose mod-sequences jump (one that does not number each change in turn)
    leaves a gap the session cannot account for: the cursor stays."""
    imap = ImapConnector(Account(address="sam@contoso.example", host="imap.example",
                                 username="sam", password="x"))
    folder = Folder(key="k", name="INBOX", role="inbox")
    cursor = '{"highestmodseq":100,"last_uid":7,"uidvalidity":1}'
    for stored, expected in (({101, 102}, 102), ({101, 105}, None), ({90}, None),
                             ({102}, None), (set(), None)):
        imap._stored = {"k": stored}
        moved = imap.past_own_writes(folder, cursor)
        assert (moved == cursor) if expected is None else (f'"highestmodseq":{expected}' in moved)


def test_only_the_stores_own_answers_count():
    """An unsolicited FETCH (another client's change, by sequence number, without a UID)
    whose number is one of the stored UIDs is not taken for ours, nor merged into ours; an
    answer that cannot be read is left out (the cursor then stays)."""
    answers = [b"1 (UID 1 MODSEQ (7))", b"3 (MODSEQ (9) FLAGS (\\Flagged))",
               b"3 (UID 7 MODSEQ (8))", b"5 (UID 9 MODSEQ (8))", b"garbage (("]
    assert _own_modseqs(answers, [1, 3, 7]) == {7, 8}
