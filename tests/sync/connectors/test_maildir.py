"""The Maildir connector on real trees: Maildir++ folders with stable keys across renames,
the seen-names cursor, moves between folders, keywords the Dovecot way (also reading a
Dovecot user's own Maildir), header-first reads (a file read up to its blank line), inotify
and polling waits, and the local sender."""
from __future__ import annotations

import os
import re
import threading

import pytest

from server.sync.connectors import incoming, outgoing
from server.sync.connectors import maildir_tree
from server.sync.connectors.base import Account, ConnectorError
from server.sync.connectors.maildir import (ID_FILE, MaildirConnector, MaildirSender,
                                            create_maildir, deliver, folder_path, mailbox_root)
from server.sync.connectors.maildir_headers import CHUNK, header_section
from server.sync.mail.message import parse
from tests.sync.connectors.conftest import count_reads, numbered


def numbers(changes) -> list[int]:
    return [int(re.search(rb"<m(\d+)@", m.raw).group(1)) for m in changes.messages]


def connector(root) -> MaildirConnector:
    return MaildirConnector(Account(address="sam@contoso.example", root=str(root)))


def named(md, name):
    return next(f for f in md.list_folders() if f.name == name)


@pytest.fixture
def tree(tmp_path):
    return create_maildir(tmp_path / "sam", ["INBOX/Contoso deal", "Sent", "Trash"])


def test_registry():
    assert incoming("maildir") is MaildirConnector and outgoing("maildir") is MaildirSender


def test_layout_roles_and_keys(tree):
    assert (tree / ".INBOX.Contoso deal" / "cur").is_dir()
    assert (tree / ".INBOX.Contoso deal" / "maildirfolder").exists()
    with connector(tree) as md:
        folders = {f.name: f for f in md.list_folders()}
        again = {f.name: f.key for f in md.list_folders()}
    assert set(folders) == {"INBOX", "INBOX/Contoso deal", "Sent", "Trash"}
    assert [folders[n].role for n in ("INBOX", "Sent", "Trash", "INBOX/Contoso deal")] == \
        ["inbox", "sent", "trash", "other"]
    assert folders["INBOX/Contoso deal"].parent_key == folders["INBOX"].key
    assert {n: f.key for n, f in folders.items()} == again
    assert all(f.key.startswith("md:") for f in folders.values())
    uuid_text = (tree / ".INBOX.Contoso deal" / ID_FILE).read_text().strip()
    assert folders["INBOX/Contoso deal"].key == "md:" + uuid_text


def test_dots_in_names_are_escaped(tmp_path):
    root = create_maildir(tmp_path / "m", ["INBOX/Q1.2024 deals"])
    assert folder_path(root, "INBOX/Q1.2024 deals").name == ".INBOX.Q1\\2e2024 deals"
    with connector(root) as md:
        assert "INBOX/Q1.2024 deals" in {f.name for f in md.list_folders()}


def test_renaming_a_folder_keeps_its_key_and_cursor(tree):
    deliver(tree, "INBOX/Contoso deal", numbered(1))
    with connector(tree) as md:
        deal = named(md, "INBOX/Contoso deal")
        first = md.fetch_changes(deal, None)
        os.rename(tree / ".INBOX.Contoso deal", tree / ".INBOX.Contoso won")
        deliver(tree, "INBOX/Contoso won", numbered(2))
        after = md.fetch_changes(deal, first.cursor)  # the old Folder, found by key
        assert {f.key: f.name for f in md.list_folders()}[deal.key] == "INBOX/Contoso won"
    assert numbers(first) == [1] and numbers(after) == [2] and not after.reset


def test_cursor_pages_and_nothing_twice(tree):
    for n in range(1, 6):
        deliver(tree, "INBOX", numbered(n))
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        one = md.fetch_changes(inbox, None, limit=3)
        two = md.fetch_changes(inbox, one.cursor, limit=3)
        # A mail client reads message 1: new/ -> cur/ with flags; same unique name.
        first = next((tree / "new").iterdir(), None) or next((tree / "cur").iterdir())
        os.rename(first, tree / "cur" / (first.name.split(":")[0] + ":2,S"))
        deliver(tree, "INBOX", numbered(6))
        three = md.fetch_changes(inbox, two.cursor, limit=3)
        quiet = md.fetch_changes(inbox, three.cursor)
    assert (numbers(one), one.more) == ([1, 2, 3], True)
    assert (numbers(two), two.more) == ([4, 5], False)
    assert numbers(three) == [6] and quiet.messages == []
    assert one.messages[0].arrived_on is not None


def test_a_moved_file_leaves_one_folder_and_arrives_in_the_other(tree):
    ref = deliver(tree, "INBOX", numbered(1))
    with connector(tree) as md:
        inbox, deal = named(md, "INBOX"), named(md, "INBOX/Contoso deal")
        inbox_cursor = md.fetch_changes(inbox, None).cursor
        deal_cursor = md.fetch_changes(deal, None).cursor
        md.move(inbox, ref, deal)
        gone = md.fetch_changes(inbox, inbox_cursor)
        arrived = md.fetch_changes(deal, deal_cursor)
    assert gone.removed == [ref] and gone.messages == []
    assert numbers(arrived) == [1] and arrived.messages[0].ref == ref


def test_keywords_set_later_bring_the_message_back(tree):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in (1, 2)]
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        cursor = md.fetch_changes(inbox, None).cursor
        with connector(tree) as client:  # another program (a mail client) sets it
            client.set_keyword(named(client, "INBOX"), refs[1], "Tracked to Regarding")
        changes = md.fetch_changes(inbox, cursor)
        quiet = md.fetch_changes(inbox, changes.cursor)
    assert numbers(changes) == [2]
    assert changes.messages[0].keywords == ("Tracked to Regarding",)
    assert quiet.messages == []
    assert (tree / "dovecot-keywords").read_text() == "0 Tracked_to_Regarding\n"
    assert [p.name.endswith(":2,a") for p in (tree / "cur").iterdir()] == [True]


def test_a_batch_of_keywords_keeps_each_messages_own(tree, monkeypatch):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in range(6)]
    with connector(tree) as client:  # a mail client gives one message a keyword first
        client.set_keyword(named(client, "INBOX"), refs[0], "Red category")
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        md.fetch_changes(inbox, None)
        scans = []
        listing = MaildirConnector._files
        monkeypatch.setattr(MaildirConnector, "_files", staticmethod(
            lambda path: scans.append(path) or listing(path)))
        md.set_keywords(inbox, refs, "Tracked to Regarding")
        md.set_keywords(inbox, refs[:2], "Tracked to Regarding")  # had it: nothing changes
        assert scans == []  # the files were found in the listing the read made
        monkeypatch.undo()
        assert [m.keywords for m in md.fetch_changes(inbox, None).messages] == \
            [("Red category", "Tracked to Regarding")] + [("Tracked to Regarding",)] * 5
    assert (tree / "dovecot-keywords").read_text() == "0 Red_category\n1 Tracked_to_Regarding\n"


def test_a_batch_lists_the_folder_once_for_files_renamed_or_gone_meanwhile(tree, monkeypatch):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in range(4)]
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        md.fetch_changes(inbox, None)
        for ref in refs[:2]:  # a mail client reads two (new/ -> cur/ with S) ...
            (file,) = (tree / "new").glob(f"{ref}*")
            file.rename(tree / "cur" / f"{ref}:2,S")
        next((tree / "new").glob(f"{refs[2]}*")).unlink()  # ... and deletes one
        scans = []
        listing = MaildirConnector._files
        monkeypatch.setattr(MaildirConnector, "_files", staticmethod(
            lambda path: scans.append(path) or listing(path)))
        md.set_keywords(inbox, refs, "Tracked to Regarding")
    assert len(scans) == 1
    names = sorted(p.name for p in (tree / "cur").iterdir())
    assert names == sorted([f"{refs[0]}:2,Sa", f"{refs[1]}:2,Sa", f"{refs[3]}:2,a"])


def test_reads_a_dovecot_users_maildir(dovecot, mail_user):
    uid = dovecot.deliver(mail_user, numbered(1), "INBOX/Contoso deal")
    with dovecot.imap_client(mail_user) as imap:
        imap.select_folder("INBOX/Contoso deal")
        imap.add_flags([uid], [b"Tracked_to_Regarding"])
    with connector(mail_user.maildir) as md:
        folders = {f.name: f for f in md.list_folders()}
        changes = md.fetch_changes(folders["INBOX/Contoso deal"], None)
    assert {"INBOX", "INBOX/Contoso deal"} <= set(folders)
    assert numbers(changes) == [1]
    assert "Tracked to Regarding" in changes.messages[0].keywords
    # The .regarding-id files do not show up as folders in Dovecot.
    with dovecot.imap_client(mail_user) as imap:
        names = {name for _, _, name in imap.list_folders()}
    assert not any("regarding" in name for name in names)


# -- header first ----------------------------------------------------------------------------

LONG = "x" * (CHUNK - 25)  # a header line that makes the blank line straddle a chunk's end


@pytest.mark.parametrize("head, body", [
    (b"Subject: crlf\r\nMessage-ID: <m1@c.example>\r\n\r\n", b"Body.\r\n\r\nMore.\r\n"),
    (b"Subject: lf\nMessage-ID: <m1@c.example>\n\n", b"Body.\n\nMore.\n"),
    (b"Subject: no body\r\nMessage-ID: <m1@c.example>\r\n", b""),
    (b"Subject: no body, no line break\r\nMessage-ID: <m1@c.example>", b""),
    (b"Subject: blank line only\r\n\r\n", b""),
    (b"\xef\xbb\xbf\r\n\r\nSubject: lines before\r\nMessage-ID: <m1@c.example>\r\n\r\n",
     b"Body.\r\n"),
    (f"Subject: long\r\nX-Long: {LONG}\r\n\r\n".encode(), b"Body.\r\n" * 50_000),
    (f"Subject: long\nX-Long: {LONG}xx\n\n".encode(), b"Body.\n" * 50_000),
    (f"Subject: long\r\nX-Long: {LONG}\r\n".encode() * 9 + b"\r\n", b"Body.\r\n"),
], ids=["crlf", "lf", "no-body", "no-line-break", "empty-headers", "lines-before",
        "long-crlf", "long-lf", "longer"])
def test_a_header_section_is_read_up_to_its_blank_line(tmp_path, monkeypatch, request, head,
                                                       body):
    file = tmp_path / "message"
    file.write_bytes(head + body)
    if "long-" in request.node.name:  # (the blank line starts in one chunk, ends in the next)
        assert head.rindex(b"\n", 0, -1) < CHUNK < len(head)
    reads = count_reads(monkeypatch, lambda path: path == file)
    assert header_section(file) == head
    assert reads[file] <= len(head) + CHUNK  # the body stays on disk
    if body and head.strip(b"\r\n\xef\xbb\xbf").count(b":") > 1:
        whole, heads = parse(head + body), parse(head, headers_only=True)
        assert (heads.subject, heads.message_id) == (whole.subject, whole.message_id)


def test_headers_first_reads_header_sections_and_whole_messages_on_demand(tree):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in (1, 2, 3)]
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        heads = md.fetch_changes(inbox, None, headers_only=True)
        assert [m.ref for m in heads.messages] == refs and not any(m.complete for m in heads.messages)
        files = {f.name.split(":")[0]: f for f in (tree / "new").iterdir()}
        for message in heads.messages:
            whole = files[message.ref].read_bytes()
            assert message.raw == whole[:whole.index(b"\r\n\r\n") + 4]
            assert message.size == len(whole) and message.arrived_on is not None
        # A mail client reads message 1 (new/ -> cur/) and deletes message 2 meanwhile.
        files[refs[0]].rename(tree / "cur" / f"{refs[0]}:2,S")
        files[refs[1]].unlink()
        got = md.fetch_messages(inbox, [*refs, "no-such-ref"])
        assert got == {refs[0]: numbered(1), refs[2]: numbered(3)}
        assert md.fetch_message(inbox, refs[2]) == numbered(3)
        with pytest.raises(ConnectorError) as caught:
            md.fetch_message(inbox, refs[1])
        assert caught.value.code == "message_not_found"


@pytest.mark.parametrize("headers_only", [False, True])
def test_mail_back_for_its_keywords_comes_as_its_header_section(tree, headers_only):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in (1, 2)]
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        cursor = md.fetch_changes(inbox, None).cursor
    with connector(tree) as client:  # the engine's write of the run before, or a mail client
        client.set_keywords(named(client, "INBOX"), refs, "Tracked to Regarding")
    deliver(tree, "INBOX", numbered(3))
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        plain = md.fetch_changes(inbox, cursor, headers_only=headers_only)
        changes = md.fetch_changes(inbox, cursor, headers_only=headers_only,
                                   changed_as_headers=True)
        quiet = md.fetch_changes(inbox, changes.cursor, changed_as_headers=True)
    assert [m.complete for m in plain.messages] == [not headers_only] * 3
    assert numbers(changes) == [1, 2, 3] and quiet.messages == []
    assert [m.complete for m in changes.messages] == [False, False, not headers_only]
    assert all(m.keywords == ("Tracked to Regarding",) for m in changes.messages[:2])
    assert [m.raw for m in changes.messages[:2]] == [numbered(n).split(b"\r\n\r\n")[0]
                                                     + b"\r\n\r\n" for n in (1, 2)]


def _soon(fn, *args):
    timer = threading.Timer(0.3, fn, args=args)
    timer.start()
    return timer


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_wait_reports_the_changed_folder(tree, monkeypatch, mode):
    if mode == "polling":
        monkeypatch.setattr(maildir_tree, "INotify", None)
    else:
        assert maildir_tree.INotify is not None  # inotify-simple is a requirement
    with connector(tree) as md:
        inbox, deal = named(md, "INBOX"), named(md, "INBOX/Contoso deal")
        assert md.wait_for_changes([inbox, deal], timeout=0.2) == set()
        timer = _soon(deliver, tree, "INBOX/Contoso deal", numbered(1))
        changed = md.wait_for_changes([inbox, deal], timeout=20)
        timer.join()
    assert changed == {deal.key}


def test_mail_that_came_between_reading_and_waiting_is_not_missed(tree):
    with connector(tree) as md:
        inbox, deal = named(md, "INBOX"), named(md, "INBOX/Contoso deal")
        cursor = md.fetch_changes(deal, None).cursor
        md.fetch_changes(inbox, None)
        deliver(tree, "INBOX/Contoso deal", numbered(1))  # nobody is waiting yet
        assert md.wait_for_changes([inbox, deal], timeout=20) == {deal.key}
        assert numbers(md.fetch_changes(deal, cursor)) == [1]


def test_missing_tree_is_a_mailbox_error(tmp_path):
    with pytest.raises(ConnectorError) as caught:
        connector(tmp_path / "nowhere").connect()
    assert caught.value.severity == "mailbox"


def test_a_deleted_folder_is_a_folder_error(tree):
    with connector(tree) as md:
        deal = named(md, "INBOX/Contoso deal")
        os.rename(tree / ".INBOX.Contoso deal", tree.parent / "elsewhere")
        with pytest.raises(ConnectorError) as caught:
            md.fetch_changes(deal, None)
    assert caught.value.severity == "folder"


def test_sender_delivers_locally_and_keeps_the_outbox(tmp_path):
    store = tmp_path / "store"
    create_maildir(store / "ann@contoso.example")
    sender = MaildirSender(Account(address="sam@contoso.example", root=str(store)))
    with sender:
        sender.send(numbered(1), "sam@contoso.example", ["Ann@Contoso.example", "x@customer.example"])
    local = list((mailbox_root(store, "ann@contoso.example") / "new").iterdir())
    kept = list((store / "outbox" / "new").iterdir())
    assert len(local) == 1 and local[0].read_bytes() == numbered(1)
    assert len(kept) == 1
    head = kept[0].read_bytes().split(b"\r\n\r\n")[0]
    assert b"X-Envelope-From: <sam@contoso.example>" in head
    assert b"X-Envelope-To: Ann@Contoso.example, x@customer.example" in head


LONG_AGO = 1_700_000_000  # November 2023


def _settle(tree, folder=""):
    """The folder's new/ and cur/ as last changed long ago (a folder left alone)."""
    for sub in ("new", "cur"):
        os.utime(tree / folder / sub, (LONG_AGO, LONG_AGO))


def test_an_unchanged_folder_is_not_listed_again_by_its_stamp(tree):
    """A cursor taken once the folder's times settled keeps them; while they are the same
    nothing is listed (a file slipped in with the old times put back is not seen: the
    stamp decides), and the cursor stays as it was."""
    deliver(tree, "INBOX", numbered(1))
    _settle(tree)
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        first = md.fetch_changes(inbox, None)
        assert first.cursor.startswith("s:") and numbers(first) == [1]
        deliver(tree, "INBOX", numbered(2))
        _settle(tree)
        again = md.fetch_changes(inbox, first.cursor)
        assert again.messages == [] and again.cursor == first.cursor and not again.more
        os.utime(tree / "new")  # now changed
        found = md.fetch_changes(inbox, first.cursor)
    assert numbers(found) == [2] and not found.cursor.startswith("s:")  # not settled yet


@pytest.mark.parametrize("change", ["delivered", "keyword", "removed", "moved in"])
def test_every_change_after_a_stamp_is_found(tree, change):
    refs = [deliver(tree, "INBOX", numbered(n)) for n in (1, 2)]
    _settle(tree)
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        cursor = md.fetch_changes(inbox, None).cursor
        assert cursor.startswith("s:")
        with connector(tree) as client:  # another program changes the folder
            if change == "delivered":
                deliver(tree, "INBOX", numbered(3))
            elif change == "keyword":
                client.set_keyword(named(client, "INBOX"), refs[1], "Customer")
            elif change == "removed":
                next((tree / "new").iterdir()).unlink()
            else:
                ref = deliver(tree, "Sent", numbered(4))
                client.move(named(client, "Sent"), ref, named(client, "INBOX"))
        changes = md.fetch_changes(inbox, cursor)
    got = {"delivered": [3], "keyword": [2], "removed": [], "moved in": [4]}[change]
    assert numbers(changes) == got
    assert len(changes.removed) == (1 if change == "removed" else 0)


def test_a_cursor_without_a_stamp_is_read_as_before(tree):
    """Cursors stored before stamps (and those of folders changed within the last
    seconds) carry none: the folder is listed."""
    deliver(tree, "INBOX", numbered(1))
    with connector(tree) as md:
        inbox = named(md, "INBOX")
        first = md.fetch_changes(inbox, None)
        assert not first.cursor.startswith("s:")  # changed just now: not settled
        _settle(tree)
        quiet = md.fetch_changes(inbox, first.cursor)
    assert quiet.messages == [] and quiet.cursor.startswith("s:")
