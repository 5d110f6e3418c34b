"""The POP3 connector against Dovecot's POP3: the UIDL cursor, leaving mail on the server
(or deleting what the stored cursor covers), removals, TLS, errors and polling."""
from __future__ import annotations

import json
import re
import threading

import pytest

from server.sync.connectors import incoming
from server.sync.connectors.base import Account, ConnectorError
from server.sync.connectors.common import unpack_cursor
from server.sync.connectors.pop3 import INBOX, Pop3Connector
from tests.sync.connectors.conftest import numbered


def pop3_account(server, user, **overrides) -> Account:
    fields = dict(address=user.username, host=server.host, port=server.pop3_port,
                  security="none", username=user.username, password=user.password, timeout=10)
    fields.update(overrides)
    return Account(**fields)


def numbers(changes) -> list[int]:
    return [int(re.search(rb"<m(\d+)@", m.raw).group(1)) for m in changes.messages]


def on_server(dovecot, user) -> int:
    with dovecot.imap_client(user) as imap:
        return imap.select_folder("INBOX")[b"EXISTS"]


def test_registry_and_the_only_folder(dovecot, mail_user):
    assert incoming("pop3") is Pop3Connector
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        assert pop.list_folders() == [INBOX]


def test_uidl_cursor_pages_and_leaves_mail_on_the_server(dovecot, mail_user):
    raws = {n: numbered(n) for n in range(1, 4)}
    for n, raw in raws.items():
        dovecot.deliver(mail_user, raw)
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        first = pop.fetch_changes(INBOX, None, limit=2)
        second = pop.fetch_changes(INBOX, first.cursor, limit=2)
    assert (numbers(first), first.more) == ([1, 2], True)
    assert (numbers(second), second.more) == ([3], False)
    assert first.messages[0].raw == raws[1]  # RETR, dot-unstuffed, whole
    assert len(set(m.ref for m in first.messages + second.messages)) == 3
    assert on_server(dovecot, mail_user) == 3  # nothing deleted
    dovecot.deliver(mail_user, numbered(4))
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        later = pop.fetch_changes(INBOX, second.cursor)
        quiet = pop.fetch_changes(INBOX, later.cursor)
    assert numbers(later) == [4] and quiet.messages == []
    assert len(json.loads(later.cursor)["seen"]) == 4


def test_removed_messages_leave_the_cursor(dovecot, mail_user):
    for n in (1, 2):
        dovecot.deliver(mail_user, numbered(n))
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        changes = pop.fetch_changes(INBOX, None)
    first_ref = changes.messages[0].ref
    with dovecot.imap_client(mail_user) as imap:
        imap.select_folder("INBOX")
        imap.delete_messages([1])
        imap.expunge()
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        after = pop.fetch_changes(INBOX, changes.cursor)
    assert after.removed == [first_ref] and after.messages == []
    assert unpack_cursor(after.cursor)["seen"] == [changes.messages[1].ref]


def test_delete_after_fetch_deletes_only_what_the_stored_cursor_covers(dovecot, mail_user):
    for n in (1, 2):
        dovecot.deliver(mail_user, numbered(n))
    account = pop3_account(dovecot, mail_user, settings={"delete_after_fetch": True})
    with Pop3Connector(account) as pop:
        first = pop.fetch_changes(INBOX, None)
    assert numbers(first) == [1, 2]
    assert on_server(dovecot, mail_user) == 2  # fetched, not yet stored by the engine
    dovecot.deliver(mail_user, numbered(3))
    with Pop3Connector(account) as pop:
        second = pop.fetch_changes(INBOX, first.cursor)
    assert numbers(second) == [3]
    assert on_server(dovecot, mail_user) == 1  # 1 and 2 went at QUIT; 3 waits its turn
    with Pop3Connector(account) as pop:
        third = pop.fetch_changes(INBOX, second.cursor)
    assert third.messages == [] and on_server(dovecot, mail_user) == 0


def test_fetch_message_by_uidl(dovecot, mail_user):
    dovecot.deliver(mail_user, numbered(7))
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        ref = pop.fetch_changes(INBOX, None).messages[0].ref
        assert b"<m7@" in pop.fetch_message(INBOX, ref)
        with pytest.raises(ConnectorError) as caught:
            pop.fetch_message(INBOX, "no-such-uidl")
    assert caught.value.severity == "message"


def test_wrong_password_is_an_auth_error(dovecot, mail_user):
    with pytest.raises(ConnectorError) as caught:
        Pop3Connector(pop3_account(dovecot, mail_user, password="wrong")).connect()
    assert caught.value.severity == "auth" and "wrong" not in caught.value.message


@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_and_stls(dovecot_tls, make_mail_user, security):
    user = make_mail_user(server=dovecot_tls)
    dovecot_tls.deliver(user, numbered(1))
    port = dovecot_tls.pop3s_port if security == "tls" else dovecot_tls.pop3_port
    account = pop3_account(dovecot_tls, user, port=port, security=security,
                           settings={"ca_file": str(dovecot_tls.cert.cert_path)})
    with Pop3Connector(account) as pop:
        assert numbers(pop.fetch_changes(INBOX, None)) == [1]


def test_server_killed_then_the_cursor_continues(make_dovecot, make_mail_user):
    server = make_dovecot()
    user = make_mail_user(server=server)
    for n in (1, 2, 3):
        server.deliver(user, numbered(n))
    pop = Pop3Connector(pop3_account(server, user))
    pop.connect()
    first = pop.fetch_changes(INBOX, None, limit=1)
    server.kill()
    with pytest.raises(ConnectorError) as caught:
        pop.fetch_changes(INBOX, first.cursor)
    assert caught.value.severity == "mailbox"
    pop.close()
    server.start()
    with Pop3Connector(pop3_account(server, user)) as pop:
        rest = pop.fetch_changes(INBOX, first.cursor)
    assert numbers(first) + numbers(rest) == [1, 2, 3]


def test_wait_polls_for_new_mail(dovecot, mail_user):
    account = pop3_account(dovecot, mail_user, settings={"poll_seconds": 0.2})
    with Pop3Connector(account) as pop:
        assert pop.wait_for_changes([INBOX], timeout=0.3) == set()
        timer = threading.Timer(0.3, dovecot.deliver, args=(mail_user, numbered(5)))
        timer.start()
        changed = pop.wait_for_changes([INBOX], timeout=20)
        timer.join()
        assert numbers(pop.fetch_changes(INBOX, None)) == [5]
    assert changed == {INBOX.key}


def _seen(dovecot, user) -> list[bool]:
    """Whether each Inbox message is flagged ``\\Seen``, read over IMAP (read-only)."""
    with dovecot.imap_client(user) as imap:
        imap.select_folder("INBOX", readonly=True)
        flags = imap.get_flags(imap.search("ALL"))
    return [b"\\Seen" in flags[uid] for uid in sorted(flags)]


@pytest.mark.parametrize("headers_only", [False, True])
def test_reading_leaves_mail_unread_on_the_server(dovecot, make_mail_user, headers_only):
    user = make_mail_user()
    # One message of many short lines (its line count near its octet count: "TOP n <size>"
    # must still send it whole) and one with a dot-stuffed body.
    raws = [numbered(1), numbered(2) + b"\r\n" * 500 + b".\r\n..\r\nend\r\n",
            numbered(3, subject="Last")]
    for raw in raws:
        dovecot.deliver(user, raw)
    with Pop3Connector(pop3_account(dovecot, user)) as pop:
        changes = pop.fetch_changes(INBOX, None, headers_only=headers_only)
        refs = [m.ref for m in changes.messages]
        wholes = pop.fetch_messages(INBOX, refs)
        one = pop.fetch_message(INBOX, refs[1])
    assert [wholes[ref] for ref in refs] == raws and one == raws[1]
    assert all(m.complete is not headers_only for m in changes.messages)
    if not headers_only:
        assert [m.raw for m in changes.messages] == raws
    assert _seen(dovecot, user) == [False, False, False]  # Dovecot sets \Seen on RETR only
    plain = dovecot.pop3_client(user)  # the proof that the check sees a RETR
    plain.retr(1)
    plain.quit()
    assert _seen(dovecot, user) == [True, False, False]
