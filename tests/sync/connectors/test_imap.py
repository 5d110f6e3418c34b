"""The IMAP connector against a real Dovecot: folders and their stable keys, paging with a
cursor, UIDVALIDITY resets, keyword changes through CONDSTORE, MOVE, NOTIFY/IDLE, errors."""
from __future__ import annotations

import json
import re
import threading

import pytest

from server.sync.connectors import incoming
from server.sync.connectors.base import FOLDERS_CHANGED, ConnectorError
from server.sync.connectors.imap import (ImapConnector, category_to_keyword,
                                         keyword_to_category)
from tests.servers.counting_proxy import CountingProxy
from tests.sync.connectors.conftest import imap_account, numbered


def numbers(changes) -> list[int]:
    return [int(re.search(rb"<m(\d+)@", m.raw).group(1)) for m in changes.messages]


def folder_named(connector, name):
    return next(f for f in connector.list_folders() if f.name == name)


def drain(connector, folder, cursor, limit=500):
    """Every change until ``more`` is False: (message numbers, last cursor, calls)."""
    seen, calls = [], 0
    while True:
        changes = connector.fetch_changes(folder, cursor, limit)
        seen += numbers(changes)
        cursor, calls = changes.cursor, calls + 1
        if not changes.more:
            return seen, cursor, calls


def test_registry_gives_the_imap_connector():
    assert incoming("imap") is ImapConnector


def test_category_keywords_round_trip():
    assert category_to_keyword("Tracked to Regarding") == "Tracked_to_Regarding"
    assert keyword_to_category("Tracked_to_Regarding") == "Tracked to Regarding"
    assert category_to_keyword('Odd (name) "x"') == "Odd_name_x_"
    assert keyword_to_category("$Forwarded") == "$Forwarded"
    with pytest.raises(ValueError):
        category_to_keyword("   ")


def test_list_folders_roles_keys_and_parents(dovecot, mail_user):
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        folders = {f.name: f for f in imap.list_folders()}
    assert {"INBOX", "INBOX/Contoso deal", "Sent", "Drafts", "Trash", "Junk"} <= set(folders)
    roles = {name: f.role for name, f in folders.items()}
    assert roles["INBOX"] == "inbox" and roles["Sent"] == "sent" and roles["Drafts"] == "drafts"
    assert roles["Trash"] == "trash" and roles["Junk"] == "junk"
    assert roles["INBOX/Contoso deal"] == "other"
    # Dovecot answers X-GUID: the key is the mailbox GUID that doveadm reports too.
    deal = folders["INBOX/Contoso deal"]
    status = dovecot.doveadm("mailbox", "status", "-u", mail_user.username, "guid",
                             "INBOX/Contoso deal").stdout
    assert deal.key == "guid:" + status.split("guid=")[1].strip()
    assert deal.parent_key == folders["INBOX"].key
    assert len({f.key for f in folders.values()}) == len(folders)


def test_rename_keeps_the_folder_key_and_its_cursor(dovecot, mail_user):
    dovecot.deliver(mail_user, numbered(1), "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        deal = folder_named(imap, "INBOX/Contoso deal")
        first = imap.fetch_changes(deal, None)
        assert numbers(first) == [1]
        with dovecot.imap_client(mail_user) as other:
            other.rename_folder("INBOX/Contoso deal", "INBOX/Contoso won")
        dovecot.deliver(mail_user, numbered(2), "INBOX/Contoso won")
        # The old Folder object (old name) still reaches the folder by its key.
        after = imap.fetch_changes(deal, first.cursor)
        renamed = {f.key: f.name for f in imap.list_folders()}
    assert numbers(after) == [2] and not after.reset
    assert renamed[deal.key] == "INBOX/Contoso won"
    # doveadm rename too.
    dovecot.doveadm("mailbox", "rename", "-u", mail_user.username, "INBOX/Contoso won",
                    "Archive/Contoso")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        assert {f.key: f.name for f in imap.list_folders()}[deal.key] == "Archive/Contoso"


@pytest.mark.parametrize("list_status", [True, False])
@pytest.mark.parametrize("xguid", [True, False])
def test_keys_without_x_guid_or_list_status_also_survive_a_rename(dovecot, mail_user, monkeypatch,
                                                                   list_status, xguid):
    """Servers without Dovecot's X-GUID get UIDVALIDITY keys; without LIST-STATUS, one
    STATUS per folder. Dovecot keeps a folder's UIDVALIDITY over a rename as well."""
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        if not xguid:
            imap._xguid = False  # as if the server had refused the item
        if not list_status:
            real = imap.capabilities()
            monkeypatch.setattr(imap, "capabilities",
                                lambda: tuple(c for c in real if c != b"LIST-STATUS"))
        before = {f.name: f for f in imap.list_folders()}
        with dovecot.imap_client(mail_user) as other:
            other.rename_folder("INBOX/Contoso deal", "INBOX/Contoso won")
            uidvalidity = other.folder_status("INBOX/Contoso won", ["UIDVALIDITY"])[b"UIDVALIDITY"]
        after = {f.key: f.name for f in imap.list_folders()}
    key = before["INBOX/Contoso deal"].key
    assert key.startswith("guid:" if xguid else "uv:")
    if not xguid:
        assert key == f"uv:{uidvalidity}"
    assert after[key] == "INBOX/Contoso won"
    assert before["Sent"].role == "sent" and len(after) == len(before)


def test_batches_with_a_cursor_then_new_mail_nothing_twice(dovecot, mail_user):
    for n in range(1, 6):
        dovecot.deliver(mail_user, numbered(n))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        page1 = imap.fetch_changes(inbox, None, limit=2)
        page2 = imap.fetch_changes(inbox, page1.cursor, limit=2)
        page3 = imap.fetch_changes(inbox, page2.cursor, limit=2)
        assert (numbers(page1), page1.more) == ([1, 2], True)
        assert (numbers(page2), page2.more) == ([3, 4], True)
        assert (numbers(page3), page3.more) == ([5], False)
        assert not any(p.reset for p in (page1, page2, page3))
        idle = imap.fetch_changes(inbox, page3.cursor, limit=2)
        assert idle.messages == [] and not idle.more
        dovecot.deliver(mail_user, numbered(6))
        dovecot.deliver(mail_user, numbered(7))
        later = imap.fetch_changes(inbox, idle.cursor, limit=10)
    assert numbers(later) == [6, 7]
    cursor = json.loads(later.cursor)
    assert cursor["last_uid"] == 7 and cursor["highestmodseq"] >= 7 and cursor["uidvalidity"]
    message = later.messages[0]
    assert message.arrived_on is not None and message.arrived_on.utcoffset().total_seconds() == 0
    # BODY.PEEK: syncing marked nothing as read.
    with dovecot.imap_client(mail_user) as other:
        other.select_folder("INBOX")
        assert other.search(["SEEN"]) == []


def test_uidvalidity_change_resets_the_cursor(dovecot, mail_user):
    for n in (1, 2):
        dovecot.deliver(mail_user, numbered(n))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        seen, cursor, _ = drain(imap, inbox, None)
        assert seen == [1, 2]
    dovecot.doveadm("mailbox", "update", "-u", mail_user.username, "--uid-validity", "4242",
                    "INBOX")
    dovecot.deliver(mail_user, numbered(3))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox2 = folder_named(imap, "INBOX")
        assert inbox2.key == inbox.key  # the GUID did not change
        changes = imap.fetch_changes(inbox, cursor)
        again = imap.fetch_changes(inbox, changes.cursor)
    assert changes.reset and numbers(changes) == [1, 2, 3]
    assert json.loads(changes.cursor)["uidvalidity"] == 4242
    assert not again.reset and again.messages == []


def test_a_keyword_set_later_returns_the_message_again(dovecot, mail_user):
    for n in (1, 2, 3):
        dovecot.deliver(mail_user, numbered(n))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        _, cursor, _ = drain(imap, inbox, None)
        with dovecot.imap_client(mail_user) as other:
            other.select_folder("INBOX")
            other.add_flags([1], [b"\\Seen"])  # read: no news
            other.add_flags([2], [b"Tracked_to_Regarding"])  # the category: news
        changes = imap.fetch_changes(inbox, cursor)
        quiet = imap.fetch_changes(inbox, changes.cursor)
    assert numbers(changes) == [2]
    assert "Tracked to Regarding" in changes.messages[0].keywords
    assert quiet.messages == []


def test_keyword_changes_are_paged_too(dovecot, mail_user):
    for n in range(1, 5):
        dovecot.deliver(mail_user, numbered(n))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        _, cursor, _ = drain(imap, inbox, None)
        with dovecot.imap_client(mail_user) as other:
            other.select_folder("INBOX")
            for uid in (3, 1, 4, 2):  # one STORE each: four different modseqs
                other.add_flags([uid], [b"Customer"])
        dovecot.deliver(mail_user, numbered(5))
        seen, _, calls = drain(imap, inbox, cursor, limit=2)
    assert sorted(seen) == [1, 2, 3, 4, 5] and len(seen) == 5
    assert seen[:4] == [3, 1, 4, 2]  # in the order they changed
    assert calls == 3


def test_set_keyword_is_seen_by_other_clients(dovecot, mail_user):
    dovecot.deliver(mail_user, numbered(1))
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        ref = imap.fetch_changes(inbox, None).messages[0].ref
        imap.set_keyword(inbox, ref, "Tracked to Regarding")
    with dovecot.imap_client(mail_user) as other:
        other.select_folder("INBOX")
        assert b"Tracked_to_Regarding" in other.get_flags([int(ref)])[int(ref)]


def test_move_by_another_client_shows_in_the_target_and_leaves_the_source(dovecot, mail_user):
    dovecot.deliver(mail_user, numbered(1))
    dovecot.deliver(mail_user, numbered(2))
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        _, inbox_cursor, _ = drain(imap, inbox, None)
        _, deal_cursor, _ = drain(imap, deal, None)
        with dovecot.imap_client(mail_user) as other:
            other.select_folder("INBOX")
            other.move([2], "INBOX/Contoso deal")
        moved_in = imap.fetch_changes(deal, deal_cursor)
        moved_out = imap.fetch_changes(inbox, inbox_cursor)
    assert numbers(moved_in) == [2]
    assert moved_out.messages == [] and moved_out.removed == ["2"]  # QRESYNC VANISHED


def test_connector_move_and_append(dovecot, mail_user):
    dovecot.deliver(mail_user, numbered(1))
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        ref = imap.fetch_changes(inbox, None).messages[0].ref
        imap.move(inbox, ref, deal)
        sent = imap.folder_by_role("sent")
        uid = imap.append(sent, numbered(9), flags=["\\Seen"])
        assert numbers(imap.fetch_changes(deal, None)) == [1]
        assert imap.fetch_message(sent, uid).startswith(b"From:")
    with dovecot.imap_client(mail_user) as other:
        other.select_folder("Sent")
        assert b"\\Seen" in other.get_flags([int(uid)])[int(uid)]
        other.select_folder("INBOX")
        assert other.search("ALL") == []


def _deliver_soon(dovecot, user, folder, n=99):
    timer = threading.Timer(0.3, dovecot.deliver, args=(user, numbered(n), folder))
    timer.start()
    return timer


def test_notify_reports_mail_delivered_into_an_unselected_folder(dovecot, mail_user):
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        imap.fetch_changes(inbox, None)  # leaves INBOX selected
        timer = _deliver_soon(dovecot, mail_user, "INBOX/Contoso deal")
        changed = imap.wait_for_changes([inbox, deal], timeout=20)
        timer.join()
        # The connection is usable afterwards (NOTIFY NONE, IDLE done).
        assert numbers(imap.fetch_changes(deal, None)) == [99]
    assert changed == {deal.key}


@pytest.mark.parametrize("notify", [True, False])
def test_mail_that_came_between_reading_and_waiting_is_not_missed(dovecot, mail_user,
                                                                  monkeypatch, notify):
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        if not notify:
            real = imap.capabilities()
            monkeypatch.setattr(imap, "capabilities",
                                lambda: tuple(c for c in real if c != b"NOTIFY"))
        watched = [inbox, deal] if notify else [inbox]
        target = deal if notify else inbox
        cursors = {f.key: imap.fetch_changes(f, None).cursor for f in watched}
        dovecot.deliver(mail_user, numbered(1), target.name)  # nobody is waiting yet
        assert imap.wait_for_changes(watched, timeout=20) == {target.key}
        assert numbers(imap.fetch_changes(target, cursors[target.key])) == [1]
        assert imap.wait_for_changes(watched, timeout=0.2) == set()  # read: quiet again


def test_wait_without_notify_idles_on_the_inbox(dovecot, mail_user, monkeypatch):
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        real = imap.capabilities()
        monkeypatch.setattr(imap, "capabilities", lambda: tuple(c for c in real if c != b"NOTIFY"))
        timer = _deliver_soon(dovecot, mail_user, "INBOX")
        changed = imap.wait_for_changes([inbox], timeout=20)
        timer.join()
    assert changed == {inbox.key}


def test_wait_times_out_with_nothing(dovecot, mail_user):
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        assert imap.wait_for_changes([folder_named(imap, "INBOX")], timeout=0.2) == set()
        assert imap.list_folders()  # still connected


def test_wrong_password_is_an_auth_error(dovecot, mail_user):
    account = imap_account(dovecot, mail_user, password="not-the-password")
    with pytest.raises(ConnectorError) as caught:
        with ImapConnector(account):
            pass
    assert caught.value.severity == "auth" and caught.value.code == "auth_failed"
    assert mail_user.username in caught.value.message and "not-the-password" not in caught.value.message


def test_refused_connection_is_a_mailbox_error(dovecot, mail_user):
    from tests.servers.ports import free_port
    with pytest.raises(ConnectorError) as caught:
        ImapConnector(imap_account(dovecot, mail_user, port=free_port())).connect()
    assert caught.value.severity == "mailbox" and caught.value.code == "connection_refused"


def test_a_deleted_folder_is_a_folder_error(dovecot, mail_user):
    dovecot.create_mailbox(mail_user, "INBOX/Gone")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        gone = folder_named(imap, "INBOX/Gone")
        dovecot.doveadm("mailbox", "delete", "-u", mail_user.username, "INBOX/Gone")
        with pytest.raises(ConnectorError) as caught:
            imap.fetch_changes(gone, None)
        assert caught.value.severity == "folder"
        assert imap.list_folders()  # the session goes on


def test_server_killed_mid_sync_then_the_cursor_continues(make_dovecot, make_mail_user):
    server = make_dovecot()
    user = make_mail_user(server=server)
    for n in range(1, 6):
        server.deliver(user, numbered(n))
    imap = ImapConnector(imap_account(server, user))
    imap.connect()
    inbox = folder_named(imap, "INBOX")
    first = imap.fetch_changes(inbox, None, limit=2)
    server.kill()
    with pytest.raises(ConnectorError) as caught:
        imap.fetch_changes(inbox, first.cursor, limit=2)
    assert caught.value.severity == "mailbox"
    imap.close()
    with pytest.raises(ConnectorError) as down:
        ImapConnector(imap_account(server, user)).connect()
    assert down.value.severity == "mailbox"
    server.start()
    with ImapConnector(imap_account(server, user)) as imap:
        rest, _, _ = drain(imap, inbox, first.cursor, limit=2)
    assert numbers(first) + rest == [1, 2, 3, 4, 5]


def test_server_killed_while_waiting_is_a_mailbox_error(make_dovecot, make_mail_user):
    server = make_dovecot()
    user = make_mail_user(server=server)
    with ImapConnector(imap_account(server, user)) as imap:
        inbox = folder_named(imap, "INBOX")
        timer = threading.Timer(0.3, server.kill)
        timer.start()
        with pytest.raises(ConnectorError) as caught:
            imap.wait_for_changes([inbox], timeout=60)
        timer.join()
    assert caught.value.severity == "mailbox" and caught.value.code == "connection_lost"


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_starttls_with_the_server_certificate(dovecot_tls, make_mail_user, security):
    user = make_mail_user(server=dovecot_tls)
    dovecot_tls.deliver(user, numbered(1))
    port = dovecot_tls.imaps_port if security == "tls" else dovecot_tls.imap_port
    account = imap_account(dovecot_tls, user, port=port, security=security,
                           settings={"ca_file": str(dovecot_tls.cert.cert_path)})
    with ImapConnector(account) as imap:
        assert numbers(imap.fetch_changes(folder_named(imap, "INBOX"), None)) == [1]
    untrusted = imap_account(dovecot_tls, user, port=port, security=security)
    with pytest.raises(ConnectorError) as caught:
        ImapConnector(untrusted).connect()
    assert caught.value.code == "tls_failed" and caught.value.severity == "mailbox"


def test_starttls_asked_of_a_server_without_it(dovecot, mail_user):
    with pytest.raises(ConnectorError) as caught:
        ImapConnector(imap_account(dovecot, mail_user, security="starttls")).connect()
    assert caught.value.code == "starttls_unsupported"


class _ScriptedImap:
    """An imaplib stand-in answering one UID FETCH with a response as imaplib hands it over."""

    def __init__(self, typ, data) -> None:
        self.untagged_responses = {"FETCH": [b"stale"]}
        self.typ, self.data, self.asked = typ, data, None

    def uid(self, command, *args):
        self.asked = (command, *args)
        return self.typ, self.data


def test_uid_fetch_reads_every_shape_of_fetch_response():
    from datetime import datetime, timezone
    from server.sync.connectors.imap_fetch import uid_fetch
    imap = _ScriptedImap("OK", [
        (b'1 (UID 7 RFC822.SIZE 2048 FLAGS (\\Seen Tracked_to_Regarding) '
         b'INTERNALDATE " 2-Mar-2025 08:04:05 -0130" BODY[HEADER] {5}', b"X: y\r"),
        b")",
        # the literal first, the rest after it
        (b'2 (BODY[HEADER] {4}', b"A: b"), b' UID 9 FLAGS () INTERNALDATE "22-Nov-2026 17:13:04 +0000")',
        b"3 (FLAGS (\\Seen))",  # an unsolicited flag change: no UID, left out
        b'4 (UID 11 FLAGS () INTERNALDATE "22-Nov-2026 17:13:04 +0000" BODY[HEADER] NIL)',
        None,
    ])
    found = uid_fetch(imap, [7, 9, 11], "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER]")
    assert imap.asked == ("FETCH", "7,9,11", "(UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER])")
    assert "FETCH" not in imap.untagged_responses
    assert set(found) == {7, 9, 11}
    assert found[7].raw == b"X: y\r" and found[7].size == 2048
    assert found[7].flags == (b"\\Seen", b"Tracked_to_Regarding")
    assert found[7].arrived_on == datetime(2025, 3, 2, 9, 34, 5, tzinfo=timezone.utc)
    assert found[9].raw == b"A: b" and found[9].flags == ()
    assert found[9].arrived_on == datetime(2026, 11, 22, 17, 13, 4, tzinfo=timezone.utc)
    assert found[11].raw is None  # expunged by another session


def test_uid_fetch_refused_is_an_imap_error():
    import imaplib
    from server.sync.connectors.imap_fetch import uid_fetch
    with pytest.raises(imaplib.IMAP4.error, match="FETCH failed: no such message"):
        uid_fetch(_ScriptedImap("NO", [b"no such message"]), [1], "UID BODY.PEEK[]")


def test_internaldate_rejects_what_is_not_a_date():
    from server.sync.connectors.imap_fetch import internaldate
    assert internaldate(b"31-Feb-2025 10:00:00 +0000") is None
    assert internaldate(b"01-Foo-2025 10:00:00 +0000") is None
    assert internaldate(b"yesterday") is None


@pytest.mark.parametrize("notify", [True, False])
def test_idle_keepalive_is_not_a_lost_connection(make_dovecot, make_mail_user, monkeypatch,
                                                 notify):
    """Dovecot says "* OK Still here" during IDLE (every 2 minutes by default; every second
    here): a quiet wait that reads it ends quietly, and mail after it is still noticed."""
    server = make_dovecot(idle_notify_seconds=1)
    user = make_mail_user(server=server)
    with ImapConnector(imap_account(server, user)) as imap:
        inbox = folder_named(imap, "INBOX")
        if not notify:
            real = imap.capabilities()
            monkeypatch.setattr(imap, "capabilities",
                                lambda: tuple(c for c in real if c != b"NOTIFY"))
        imap.fetch_changes(inbox, None)
        assert imap.wait_for_changes([inbox], timeout=3.5) == set()
        timer = threading.Timer(2.5, server.deliver, args=(user, numbered(7), "INBOX"))
        timer.start()
        changed = imap.wait_for_changes([inbox], timeout=20)
        timer.join()
    assert changed == {inbox.key}


@pytest.mark.parametrize("notify", [True, False], ids=["notify", "idle-only"])
def test_a_pushed_line_cut_across_packets_is_read_whole(dovecot, mail_user, monkeypatch, notify):
    """A network may deliver a pushed line in pieces ("* 3 EX", "ISTS"): the watcher waits
    for the line's end instead of reading the first piece as a lost connection."""
    with CountingProxy(dovecot.host, dovecot.imap_port) as proxy:
        with ImapConnector(imap_account(dovecot, mail_user, port=proxy.port)) as imap:
            if not notify:
                _without_notify(imap, monkeypatch)
            inbox = folder_named(imap, "INBOX")
            imap.fetch_changes(inbox, None)
            proxy.dribble(size=3, pause=0.05)
            timer = threading.Timer(1.0, dovecot.deliver, args=(mail_user, numbered(8), "INBOX"))
            timer.start()
            changed = imap.wait_for_changes([inbox], timeout=20)
            timer.join()
            assert changed == {inbox.key}
            assert numbers(imap.fetch_changes(inbox, None)) == [8]


def _without_notify(imap, monkeypatch):
    real = imap.capabilities()
    monkeypatch.setattr(imap, "capabilities", lambda: tuple(c for c in real if c != b"NOTIFY"))


def test_idle_without_notify_watches_the_other_folders_too(dovecot, mail_user, monkeypatch):
    """Most servers have IDLE but no NOTIFY: mail copied or filtered into a tracked folder is
    noticed there too (by STATUS between IDLEs), not at the next scheduled run."""
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        _without_notify(imap, monkeypatch)
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        for folder in (inbox, deal):
            imap.fetch_changes(folder, None)
        timer = _deliver_soon(dovecot, mail_user, "INBOX/Contoso deal")
        changed = imap.wait_for_changes([inbox, deal], timeout=20)
        timer.join()
        assert numbers(imap.fetch_changes(deal, None)) == [99]
    assert changed == {deal.key}


@pytest.mark.parametrize("notify", [True, False])
def test_a_watched_folder_renamed_or_deleted_ends_the_wait(dovecot, mail_user, monkeypatch,
                                                           notify):
    """The watcher must list the folders again: NOTIFY with the old name watches nothing."""
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        if not notify:
            _without_notify(imap, monkeypatch)
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        for folder in (inbox, deal):
            imap.fetch_changes(folder, None)
        other = dovecot.imap_client(mail_user)
        renaming = threading.Timer(0.3, other.rename_folder, args=("INBOX/Contoso deal",
                                                                   "INBOX/Contoso won"))
        renaming.start()
        renamed = imap.wait_for_changes([inbox, deal], timeout=20)
        renaming.join()
        folders = {f.key: f for f in imap.list_folders()}  # what the watcher then does
        assert folders[deal.key].name == "INBOX/Contoso won"
        timer = _deliver_soon(dovecot, mail_user, "INBOX/Contoso won")
        moved_in = imap.wait_for_changes([inbox, folders[deal.key]], timeout=20)
        timer.join()
        imap.fetch_changes(folders[deal.key], None)
        deleting = threading.Timer(0.3, other.delete_folder, args=("INBOX/Contoso won",))
        deleting.start()
        deleted = imap.wait_for_changes([inbox, folders[deal.key]], timeout=20)
        deleting.join()
        other.logout()
    assert renamed == {FOLDERS_CHANGED}
    assert moved_in == {deal.key}
    assert deleted == {FOLDERS_CHANGED}


def test_message_content_is_never_formatted_for_the_log(dovecot, mail_user):
    """imaplib at IMAPClient's debug level 5 formats every response, bodies included, for
    its logger: megabytes a batch (a quarter of a sync's CPU), and mail content in the log
    of anyone who turns DEBUG on. Even with every imapclient logger at DEBUG, no body."""
    import logging
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    dovecot.deliver(mail_user, numbered(5, subject="Secret-subject-5"))
    handler, loggers = Keep(level=logging.DEBUG), [logging.getLogger(n) for n in (
        "imapclient", "imapclient.imaplib", "imapclient.imapclient")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    try:
        with ImapConnector(imap_account(dovecot, mail_user)) as imap:
            inbox = folder_named(imap, "INBOX")
            fetched = imap.fetch_changes(inbox, None).messages
    finally:
        for lg, level in zip(loggers, levels):
            lg.removeHandler(handler)
            lg.setLevel(level)
    assert numbers(type("C", (), {"messages": fetched})) == [5]
    assert records  # the protocol's commands were logged...
    assert not any("Message number 5" in r or "Secret-subject-5" in r for r in records)  # ...no mail


def test_a_folder_renamed_between_two_waits_ends_the_next_one(dovecot, mail_user):
    """No NOTIFY is set between waits (the watcher reads, the worker syncs): a rename then
    leaves no event behind, and NOTIFY with the old name would watch nothing."""
    dovecot.create_mailbox(mail_user, "INBOX/Contoso deal")
    with ImapConnector(imap_account(dovecot, mail_user)) as imap:
        inbox = folder_named(imap, "INBOX")
        deal = folder_named(imap, "INBOX/Contoso deal")
        for folder in (inbox, deal):
            imap.fetch_changes(folder, None)
        assert imap.wait_for_changes([inbox, deal], timeout=0.2) == set()
        other = dovecot.imap_client(mail_user)
        other.rename_folder("INBOX/Contoso deal", "INBOX/Contoso won")
        other.logout()
        assert imap.wait_for_changes([inbox, deal], timeout=5) == {FOLDERS_CHANGED}
