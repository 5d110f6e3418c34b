"""Header-first sync over POP3 against the real Dovecot: ``TOP n 0`` reads header sections
that are exactly the whole message's, a sync with the default tracking option reads only
the replies to CRM mail whole, a message deleted by another session between TOP and the
whole read is recorded as vanished, a server that does not do TOP gets whole messages
(RETR), and reading leaves every message unread on the server (no RETR while TOP works:
Dovecot sets ``\\Seen`` on RETR)."""
from __future__ import annotations

import poplib
import re

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.engine.items import VANISHED
from server.sync.engine import run as engine
from server.sync.connectors.base import FetchedMessage
from server.sync.connectors.common import unpack_cursor
from server.sync.connectors.pop3 import INBOX, REFUSALS, Pop3Connector
from server.sync.engine.run import sync_mailbox
from server.sync.mail.message import parse
from server.sync.models import Alert
from tests.sync import world as w
from tests.sync.connectors.test_pop3 import pop3_account
from tests.sync.test_headers_first import (ORIGINAL, REPLIES, _activity, _expunge, _mail_set,
                                           _mid, _skipped, _undecidable)

_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>]+)>", re.IGNORECASE | re.MULTILINE)


class Pop3Store(w.ImapStore):
    """A Dovecot user, read over POP3 (mail delivered over IMAP; ``deliver`` gives its UID)."""

    protocol = "pop3"

    def profile_fields(self) -> dict:
        return {**super().profile_fields(), "incoming_port": self.server.pop3_port}


class Commands:
    """The Message-IDs of the messages read (by any POP3 session): ``top`` header sections
    (``TOP n 0``), ``whole`` whole messages (``TOP n <size>`` or RETR), ``retr`` by RETR."""

    def __init__(self, monkeypatch) -> None:
        self.top: list[str] = []
        self.whole: list[str] = []
        self.retr: list[str] = []
        for name in ("top", "retr"):
            monkeypatch.setattr(poplib.POP3, name, self._recording(name, getattr(poplib.POP3, name)))

    def _recording(self, name: str, real):
        def command(client, *args):
            answer = real(client, *args)
            found = _MESSAGE_ID.search(b"\r\n".join(answer[1]))
            mid = found.group(1).decode() if found else ""
            if name == "retr":
                self.retr.append(mid)
            (self.top if name == "top" and args[1] == 0 else self.whole).append(mid)
            return answer
        return command


def _refuse_top(monkeypatch) -> None:
    def top(client, which, howmuch):
        # A command Dovecot does not know: its real -ERR, as from a server without TOP.
        return client._longcmd(f"XTOP {which} {howmuch}")

    monkeypatch.setattr(poplib.POP3, "top", top)


def _body_start(whole: bytes) -> int:
    end = whole.find(b"\r\n\r\n")
    return len(whole) if end < 0 else end + 4


@pytest.fixture
def pop3_box(crm, dovecot, mail_user):
    """Bob's POP3 mailbox with the default tracking option, and the email he tracked."""
    store = Pop3Store(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    assert box.tracking_option == "crm_responses"
    w.track_earlier(crm, mid=ORIGINAL)
    return store, box


# --------------------------------------------------------------------------- connector

def test_top_header_sections_are_the_whole_messages_up_to_the_blank_line(dovecot, mail_user):
    mail = {**_mail_set("sections"), **_undecidable(),
            "dotted": w.raw(subject="Dots", mid="dots@else.example",
                            body=".starts with a dot\r\n..two dots\r\n.\r\nend\r\n"),
            "folded": w.raw(subject="A long subject\r\n folded onto a second line",
                            mid="folded@else.example"),
            "no-body": b"Subject: Only headers\r\nMessage-ID: <nobody@else.example>\r\n"}
    assert max(map(len, mail["contact-large"].split(b"\r\n"))) > 2048  # poplib's line limit
    for data in mail.values():
        dovecot.deliver(mail_user, data)
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        assert pop.headers_first  # Dovecot lists TOP in CAPA
        heads = pop.fetch_changes(INBOX, None, headers_only=True).messages
        wholes = pop.fetch_messages(INBOX, [m.ref for m in heads] + ["no-such-uidl"])
    assert len(heads) == len(mail) and set(wholes) == {m.ref for m in heads}
    for head, data in zip(heads, mail.values()):
        whole = wholes[head.ref]
        assert whole == data  # RETR: CRLF, dot-unstuffed, as delivered
        assert not head.complete and head.size == len(whole)
        assert head.raw == whole[:_body_start(whole)]
        if head.raw != whole:
            assert head.raw.endswith(b"\r\n\r\n")
        if _MESSAGE_ID.search(whole):
            assert parse(head.raw, headers_only=True).message_id == parse(whole).message_id


def test_a_message_deleted_after_login_is_left_out_of_the_batch_and_the_cursor(
        dovecot, mail_user):
    uids = [dovecot.deliver(mail_user, w.raw(mid=f"m{n}@else.example")) for n in (1, 2, 3)]
    for headers_only in (True, False):
        with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
            listed = [uidl for _, uidl in pop._listing()]
            _expunge(dovecot, mail_user, str(uids.pop(0)))  # the session still lists it
            changes = pop.fetch_changes(INBOX, None, headers_only=headers_only)
            assert [m.ref for m in changes.messages] == listed[1:]
            assert pop.fetch_messages(INBOX, listed[:1]) == {}
        assert all(m.complete is not headers_only for m in changes.messages)
        assert listed[0] not in unpack_cursor(changes.cursor)["seen"] and not changes.more
        assert changes.unreadable == []
        with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:  # no longer listed:
            later = pop.fetch_changes(INBOX, changes.cursor)  # its refusal is forgotten
        assert listed[0] not in later.cursor and later.messages == []


def test_a_server_without_top_in_capa_gets_whole_messages(dovecot, mail_user, monkeypatch):
    raws = [w.raw(mid=f"capa{n}@else.example") for n in (1, 2)]
    for data in raws:
        dovecot.deliver(mail_user, data)
    real_capa = poplib.POP3.capa
    monkeypatch.setattr(poplib.POP3, "capa", lambda client: {
        name: args for name, args in real_capa(client).items() if name != "TOP"})
    commands = Commands(monkeypatch)
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        assert not pop.headers_first
        changes = pop.fetch_changes(INBOX, None, headers_only=True)
    assert [m.raw for m in changes.messages] == raws
    assert all(m.complete for m in changes.messages) and commands.top == []


def test_a_server_without_capa_is_tried_with_top(dovecot, mail_user, monkeypatch):
    dovecot.deliver(mail_user, w.raw(mid="nocapa@else.example"))

    def no_capa(client):
        raise poplib.error_proto("-ERR CAPA not supported by server")

    monkeypatch.setattr(poplib.POP3, "capa", no_capa)
    with Pop3Connector(pop3_account(dovecot, mail_user)) as pop:
        assert pop.headers_first
        (head,) = pop.fetch_changes(INBOX, None, headers_only=True).messages
    assert not head.complete and b"<nocapa@else.example>" in head.raw


def test_top_refused_turns_header_first_off_for_the_session(dovecot, mail_user, monkeypatch):
    raws = [w.raw(mid=f"refused{n}@else.example") for n in (1, 2, 3)]
    for data in raws:
        dovecot.deliver(mail_user, data)
    _refuse_top(monkeypatch)
    commands = Commands(monkeypatch)
    pop = Pop3Connector(pop3_account(dovecot, mail_user))
    with pop:
        assert pop.headers_first  # CAPA says TOP...
        first = pop.fetch_changes(INBOX, None, limit=2, headers_only=True)
        assert not pop.headers_first  # ...the server refused it: whole from now on
        rest = pop.fetch_changes(INBOX, first.cursor, headers_only=True)
    assert [m.raw for m in first.messages + rest.messages] == raws
    assert all(m.complete for m in first.messages + rest.messages)
    assert commands.retr == [f"refused{n}@else.example" for n in (1, 2, 3)]
    with pop:  # a new session of the same connector does not try TOP again
        assert not pop.headers_first


# --------------------------------------------------------------------------- engine

def test_a_default_option_sync_over_pop3_retrs_only_the_replies(pop3_box, monkeypatch):
    store, box = pop3_box
    # Every message whole first (the engine told not to read header first)...
    whole_mail = _mail_set("pop-whole")
    for data in whole_mail.values():
        store.deliver(data)
    with monkeypatch.context() as patch:
        patch.setattr(engine, "reads_headers_first", lambda ctx, info: False)
        commands = Commands(patch)
        first = sync_mailbox(box.id)
    assert first.status == "success" and first.tracked == 2
    assert commands.top == commands.retr == []
    assert sorted(commands.whole) == sorted(map(_mid, whole_mail.values()))
    # ...then the same mail (other Message-IDs) header first.
    mail = _mail_set("pop-hf")
    for data in mail.values():
        store.deliver(data)
    commands = Commands(monkeypatch)
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert (result.fetched, result.tracked, result.skipped) == (6, 2, 4)
    assert sorted(commands.top) == sorted(_mid(data) for data in mail.values())
    assert sorted(commands.whole) == sorted(_mid(mail[name]) for name in REPLIES)
    assert commands.retr == []  # whole with TOP: nothing marked read
    # What the CRM holds is what reading every message whole gave.
    activities = {n: [_activity(e) for e in w.tracked(_mid(mail[n]))] for n in mail}
    expected = {n: [_activity(e) for e in w.tracked(_mid(whole_mail[n]))] for n in mail}
    assert activities == expected and all(len(activities[n]) == 1 for n in REPLIES)
    others = [n for n in mail if n not in REPLIES]
    assert ([_skipped(box, _mid(mail[n])) for n in others]
            == [_skipped(box, _mid(whole_mail[n])) for n in others])
    (email,) = w.tracked(_mid(mail["reply-attached"]))
    assert "Grüße" in email.text_body and [a.filename for a in email.attachments] == ["quote.pdf"]
    again = sync_mailbox(box.id)
    assert again.status == "success" and again.fetched == 0


def test_mail_whose_headers_cannot_decide_is_retrieved_whole(pop3_box, monkeypatch):
    store, box = pop3_box
    mail = {n: data for n, data in _undecidable().items() if n != "unreadable"}
    for data in mail.values():
        store.deliver(data)
    commands = Commands(monkeypatch)
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert result.tracked == 2 and len(commands.top) == len(mail)
    assert len(commands.whole) == len(mail) - 1  # all but "decidable"
    assert "plain@else.example" not in commands.whole
    assert w.tracked("eight@customer.example")[0].subject == "RE: Quote – Grüße"


def test_a_message_deleted_between_top_and_retr_is_recorded_as_vanished(
        pop3_box, dovecot, mail_user, monkeypatch):
    store, box = pop3_box
    mail = _mail_set("pop-gone")
    uids = {name: store.deliver(data) for name, data in mail.items()}
    commands = Commands(monkeypatch)
    real = Pop3Connector.fetch_messages
    asked: list[list[str]] = []

    def delete_first(connector, folder, refs):
        asked.append(list(refs))
        _expunge(dovecot, mail_user, uids["reply-attached"])  # another client deletes it
        return real(connector, folder, refs)

    monkeypatch.setattr(Pop3Connector, "fetch_messages", delete_first)
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert (result.fetched, result.tracked, result.skipped) == (6, 1, 5)
    assert len(asked) == 1 and len(asked[0]) == 2  # the two replies, in one call
    assert commands.whole == [_mid(mail["reply-referenced"])]  # the other one: -ERR
    gone = _mid(mail["reply-attached"])
    row = w.decision(box, gone)
    assert w.tracked(gone) == [] and not row.tracked and row.reason == VANISHED
    assert row.subject == "RE: Quote" and row.from_address == "ann@customer.example"
    assert len(w.tracked(_mid(mail["reply-referenced"]))) == 1
    again = sync_mailbox(box.id)
    assert again.status == "success" and again.fetched == 0
    assert w.count_emails() == 2  # the original and the reply that stayed


def test_a_sync_where_the_server_refuses_top_reads_every_message_whole(pop3_box,
                                                                        monkeypatch):
    store, box = pop3_box
    mail = _mail_set("pop-notop")
    for data in mail.values():
        store.deliver(data)
    _refuse_top(monkeypatch)
    commands = Commands(monkeypatch)
    seen: list[FetchedMessage] = []
    real_process = engine._process

    def recording(ctx, info, messages, parsing=None):
        seen.extend(messages)
        return real_process(ctx, info, messages, parsing)

    monkeypatch.setattr(engine, "_process", recording)
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert (result.fetched, result.tracked, result.skipped) == (6, 2, 4)
    assert sorted(commands.retr) == sorted(_mid(data) for data in mail.values())
    assert all(m.complete for m in seen) and [m.raw for m in seen] == list(mail.values())
    for name in REPLIES:
        assert len(w.tracked(_mid(mail[name]))) == 1


def _refuse_message(monkeypatch, number: int) -> None:
    """The server answers every TOP and RETR of message ``number`` with its real -ERR (the
    command is sent for a message it does not have), as for a message it cannot send."""
    for name in ("top", "retr"):
        real = getattr(poplib.POP3, name)

        def command(client, which, *args, real=real, name=name):
            if int(which) == number:
                return client._longcmd(" ".join([name.upper(), "99999", *map(str, args)]))
            return real(client, which, *args)

        monkeypatch.setattr(poplib.POP3, name, command)


def _open_alerts(box, code: str) -> list[Alert]:
    db.session.expire_all()
    return db.session.scalars(select(Alert).where(
        Alert.mailbox_id == box.id, Alert.code == code,
        Alert.acknowledged_on.is_(None))).all()


@pytest.mark.parametrize("tracking_option", ["crm_responses", "all"])  # header first, whole
def test_a_message_the_server_always_refuses_is_alerted_not_retried_silently(
        pop3_box, monkeypatch, tracking_option):
    store, box = pop3_box
    box.tracking_option = tracking_option
    db.session.commit()
    mail = [w.raw(mid=f"refused-{n}@customer.example", subject=f"RE: Quote {n}",
                  In_Reply_To=f"<{ORIGINAL}>") for n in (1, 2, 3)]
    for data in mail:
        store.deliver(data)
    with monkeypatch.context() as patch:
        _refuse_message(patch, 2)
        first = sync_mailbox(box.id, limit=1)  # batches of one: the refused one is asked once
        assert first.status == "success" and first.fetched == 2 and first.tracked == 2
        assert _open_alerts(box, "message_unreadable") == []
        for _ in range(REFUSALS - 2):
            assert sync_mailbox(box.id).fetched == 0
        assert _open_alerts(box, "message_unreadable") == []
        third = sync_mailbox(box.id)  # refused on REFUSALS syncs running: alerted
        assert third.status == "success" and third.fetched == 0
        (alert,) = _open_alerts(box, "message_unreadable")
        assert alert.severity == "warning" and "1 message(s) in INBOX" in alert.message
        assert "refused to send them on several syncs running" in alert.message
        assert "refused-2" not in alert.message  # named by its server id, not its content
        assert sync_mailbox(box.id).status == "success"
        assert len(_open_alerts(box, "message_unreadable")) == 1  # one alert, not one a sync
    assert w.tracked("refused-2@customer.example") == []
    fixed = sync_mailbox(box.id)  # the server sends it again: tracked, the alert closed
    assert fixed.fetched == 1 and fixed.tracked == 1
    assert len(w.tracked("refused-2@customer.example")) == 1
    assert _open_alerts(box, "message_unreadable") == []
