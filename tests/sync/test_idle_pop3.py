"""Idle POP3 mailboxes visited in batches (``engine.idle`` with ``Pop3Connector.unchanged``):
one sign-in and one UIDL listing, which is exactly the cursor's, and no message is read. A
delivery, a message deleted by another client, a message the server would not send, or
mail waiting to be deleted each get the full run; the run reuses the listing taken for the
folder list rather than ask for it again."""
from __future__ import annotations

import poplib

import pytest

from server.db import db
from tests.sync import world as w
from tests.sync.test_idle_imap import _client_does, _idle, _synced, each_gets_a_run
from tests.sync.test_pop3_headers_first import Commands, Pop3Store

pytestmark = pytest.mark.both_databases


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


@pytest.fixture
def commands(monkeypatch) -> Commands:
    return Commands(monkeypatch)


@pytest.fixture
def listings(monkeypatch) -> list[int]:
    """How many UIDL listings the POP3 sessions asked for."""
    asked: list[int] = []
    real = poplib.POP3.uidl

    def uidl(client, which=None):
        if which is None:
            asked.append(1)
        return real(client, which)

    monkeypatch.setattr(poplib.POP3, "uidl", uidl)
    return asked


def test_an_idle_pop3_mailbox_is_probed_by_its_listing_alone(crm, dovecot, mail_user, commands,
                                                              listings):
    store = Pop3Store(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    for n in range(3):
        store.deliver(w.raw(subject=f"Hello {n}", mid=f"hello-{n}@customer.example"))
    listings.clear()
    _synced(box)
    assert len(listings) == 1  # the folder list's listing served the run's read too
    commands.top.clear(), commands.whole.clear()
    assert _idle(box)
    assert commands.top == commands.whole == [] and len(listings) == 2

    each_gets_a_run(box, {
        "a delivery": lambda: store.deliver(w.raw(subject="New", mid="new@customer.example")),
        "a message deleted by another client": lambda: _client_does(
            dovecot, mail_user, "INBOX", lambda c, uids: (c.delete_messages(uids[:1]),
                                                          c.expunge())),
    })


def test_mail_to_delete_or_refused_by_the_server_gets_a_run(crm, dovecot, mail_user):
    """With ``delete_after_fetch`` the run after the one that read a message deletes it, and
    the one after that lets it go from the cursor: the visits between are no idle ones. A
    cursor holding a message the server refused to send is tried again at each run, never
    skipped as idle."""
    from server.sync.connectors.common import pack_cursor, unpack_cursor
    from server.sync.models import FolderState
    store = Pop3Store(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    box.server_profile.settings = {**box.server_profile.settings, "delete_after_fetch": True}
    db.session.commit()
    store.deliver(w.raw(subject="Once", mid="once@customer.example"))
    _synced(box)
    assert not _idle(box)  # read, and waiting to be deleted at the next session
    _synced(box)  # deleted at its QUIT
    assert not _idle(box)  # still in the cursor: the next run lets it go
    _synced(box)
    assert _idle(box)  # gone from the server, and from the cursor

    state = db.session.query(FolderState).filter_by(mailbox_id=box.id).one()
    state.cursor = pack_cursor({**unpack_cursor(state.cursor), "refused": {"x": 1}})
    db.session.commit()
    assert not _idle(box)
