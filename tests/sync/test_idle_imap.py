"""Idle IMAP mailboxes visited in batches (``engine.idle`` with ``ImapConnector.unchanged``):
one sign-in and one listing, whose STATUS items (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ) say
that no folder changed since its cursor, and no folder is opened. A delivery, a flag set by
another client, an expunge or a renamed folder each get the full run; on a server without
CONDSTORE the listing's UIDNEXT tells as much as a run would find. A run over an unchanged
folder does not open it either; a server that cannot be reached is tried once per batch."""
from __future__ import annotations

import imaplib
import json
import socket
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from server.db import db, utcnow
from server.sync.connectors.imap import ImapConnector
from server.sync.engine import idle
from server.sync.engine.accounts import account_for
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert, FolderState, Mailbox, SyncRun
from server.sync.workers.worker import Worker
from tests.servers.dovecot import PLAIN_IMAP
from tests.sync import world as w
from tests.sync.test_scheduler import fresh, work

pytestmark = pytest.mark.both_databases


@pytest.fixture
def crm(app, make_user):
    return w.build_crm(make_user)


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The folders the connector opens (SELECT or EXAMINE), in order."""
    names: list[str] = []
    real = ImapConnector._select

    def select_(self, name, readonly):
        names.append(name)
        return real(self, name, readonly)

    monkeypatch.setattr(ImapConnector, "_select", select_)
    return names


def _synced(box) -> None:
    assert sync_mailbox(box.id).status == "success"
    db.session.commit()




def _idle(box) -> bool:
    probed = idle.probe([box.id])
    db.session.rollback()
    assert (box.id in probed.full) != bool(probed.idle)
    return bool(probed.idle)


def cursors(box) -> dict[str, str]:
    """The mailbox's folder cursors as stored, by folder name."""
    db.session.expire_all()
    return {s.folder_name: s.cursor for s in db.session.scalars(
        select(FolderState).where(FolderState.mailbox_id == box.id))}


def each_gets_a_run(box, changes: dict) -> None:
    """Each change (by name) makes the idle mailbox need a run, and idle again after it."""
    for what, change in changes.items():
        change()
        assert not _idle(box), what
        _synced(box)
        assert _idle(box), f"after the run that read {what}"


def visited_by_a_worker(app, box) -> SyncRun:
    """``box`` made due and visited by a worker; the run row its visit wrote."""
    db.session.execute(update(Mailbox).where(Mailbox.id == box.id)
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    stats = work(app)
    assert stats.synced == 1 and stats.failed == 0
    return db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id)
                              .order_by(SyncRun.id.desc())).first()


def next_delivery_is_read(store, box) -> None:
    """A message delivered now: the mailbox is no longer idle, its run tracks the message,
    and it is idle again."""
    from server.crm.activities import Email
    store.deliver(w.raw(subject="Later", mid="later@customer.example"))
    assert not _idle(box)
    _synced(box)
    assert db.session.scalar(select(Email).where(
        Email.message_id == "later@customer.example")) is not None
    assert _idle(box)


def synced_while(box, monkeypatch, connector_class, method: str, meanwhile) -> None:
    """A run of ``box`` in which ``meanwhile(folder)`` happens just before each call of the
    connector's ``method`` for a folder."""
    real = getattr(connector_class, method)

    def wrapped(connector, folder, *args):
        meanwhile(folder)
        return real(connector, folder, *args)

    monkeypatch.setattr(connector_class, method, wrapped)
    try:
        _synced(box)
    finally:
        monkeypatch.setattr(connector_class, method, real)


def _with_tracked_folder(crm, dovecot, mail_user):
    """Bob's mailbox on a Dovecot user whose INBOX/Projects is tracked by a folder rule."""
    store = w.ImapStore(dovecot, mail_user)
    store.create_folder("INBOX/Projects")
    box = w.store_mailbox(store, crm.bob)
    w.folder_rule(box, w.folder_keys(box)["INBOX/Projects"], "INBOX/Projects")
    db.session.commit()
    return store, box


def _client_does(dovecot, user, folder: str, action) -> None:
    client = dovecot.imap_client(user)
    try:
        client.select_folder(folder)
        action(client, client.search(["ALL"]))
    finally:
        client.logout()


def test_an_idle_imap_mailbox_is_probed_without_opening_a_folder(crm, dovecot, mail_user,
                                                                 opened):
    store, box = _with_tracked_folder(crm, dovecot, mail_user)
    for n in range(3):
        store.deliver(w.raw(subject=f"Hello {n}", mid=f"hello-{n}@customer.example"))
    store.deliver(w.raw(subject="Filed", mid="filed@customer.example"), "INBOX/Projects")
    _synced(box)
    opened.clear()
    assert _idle(box)
    assert opened == []  # the listing told: no folder was opened

    changes = {
        "a delivery": lambda: store.deliver(w.raw(subject="New", mid="new@customer.example")),
        "a flag set by another client": lambda: _client_does(
            dovecot, mail_user, "INBOX", lambda c, uids: c.add_flags(uids[:1], [b"\\Flagged"])),
        "an expunge": lambda: _client_does(
            dovecot, mail_user, "INBOX", lambda c, uids: (c.delete_messages(uids[:1]),
                                                          c.expunge())),
        "mail filed into the tracked folder": lambda: store.deliver(
            w.raw(subject="Filed 2", mid="filed-2@customer.example"), "INBOX/Projects"),
    }
    each_gets_a_run(box, changes)


def test_a_run_that_tracks_mail_leaves_its_own_category_behind_it(crm, dovecot, mail_user):
    """The run writes "Tracked to Regarding" on what it tracked after committing the
    folder's cursor, which raises the folder's HIGHESTMODSEQ past it: the cursor is moved
    past the run's own STOREs (each given the next mod-sequence), so the next visit finds
    the mailbox idle instead of running to read the run's own flags back."""
    store, box = _with_tracked_folder(crm, dovecot, mail_user)
    for n in range(3):
        store.deliver(w.raw(subject=f"Filed {n}", mid=f"filed-{n}@customer.example"),
                      "INBOX/Projects")
    result = sync_mailbox(box.id)
    db.session.commit()
    assert result.status == "success" and result.tracked == 3
    client = dovecot.imap_client(mail_user)
    try:
        client.select_folder("INBOX/Projects", readonly=True)
        flags = client.get_flags(client.search(["ALL"]))
        assert len(flags) == 3 and all(b"Tracked_to_Regarding" in f for f in flags.values())
    finally:
        client.logout()
    assert _idle(box)


def test_a_change_by_another_client_between_read_and_category_is_not_skipped(
        crm, dovecot, mail_user, monkeypatch):
    """Another client flags a message after the run read the folder and before it wrote its
    category: the mod-sequences are no longer all the run's own, so the cursor stays and
    the next visit reads the change."""
    store, box = _with_tracked_folder(crm, dovecot, mail_user)
    store.deliver(w.raw(subject="Filed", mid="filed@customer.example"), "INBOX/Projects")
    store.deliver(w.raw(subject="Other", mid="other@customer.example"), "INBOX/Projects")
    real = ImapConnector.set_keywords

    def meanwhile(self, folder, refs, keyword):
        _client_does(dovecot, mail_user, "INBOX/Projects",
                     lambda c, uids: c.add_flags(uids[-1:], [b"\\Flagged"]))
        return real(self, folder, refs, keyword)

    monkeypatch.setattr(ImapConnector, "set_keywords", meanwhile)
    _synced(box)
    monkeypatch.setattr(ImapConnector, "set_keywords", real)
    assert not _idle(box)
    _synced(box)
    assert _idle(box)


def test_a_run_over_unchanged_folders_opens_none(crm, dovecot, mail_user, opened):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)
    opened.clear()
    _synced(box)
    assert opened == []
    store.deliver(w.raw(subject="Again", mid="again@customer.example"))
    _synced(box)
    assert opened == ["INBOX"]  # only the folder that changed


def test_mail_expunged_before_it_was_read_does_not_keep_a_folder_busy(crm, dovecot,
                                                                      mail_user):
    """UIDNEXT runs ahead of the last UID read when the newest mail went before a run saw
    it: the run's cursor covers every UID below UIDNEXT, so the next visit is idle."""
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    store.deliver(w.raw(subject="Kept", mid="kept@customer.example"))
    store.deliver(w.raw(subject="Gone", mid="gone@customer.example"))
    _client_does(dovecot, mail_user, "INBOX",
                 lambda c, uids: (c.delete_messages(uids[-1:]), c.expunge()))
    _synced(box)
    assert _idle(box)


def test_a_renamed_folder_gets_a_run(crm, dovecot, mail_user):
    store, box = _with_tracked_folder(crm, dovecot, mail_user)
    _synced(box)
    assert _idle(box)
    store.rename_folder("INBOX/Projects", "INBOX/Projects 2026")
    assert not _idle(box)  # the state's name differs: the run records the rename
    _synced(box)
    assert _idle(box)


def test_a_server_without_condstore_is_probed_by_uidnext(crm, make_dovecot, make_mail_user,
                                                         opened):
    """Without mod-sequences a run finds only new UIDs, so the listing's UIDNEXT (one STATUS
    a folder here, without LIST-STATUS) tells an idle folder as well as opening it would:
    a delivery or mail filed into a tracked folder gets a run; a flag another client sets,
    which no run on such a server can see, does not."""
    server = make_dovecot(imap_capability=PLAIN_IMAP)
    user = make_mail_user(server=server)
    store, box = _with_tracked_folder(crm, server, user)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    store.deliver(w.raw(subject="Filed", mid="filed@customer.example"), "INBOX/Projects")
    _synced(box)
    assert all(json.loads(c)["highestmodseq"] is None for c in cursors(box).values())
    opened.clear()
    assert _idle(box)
    assert opened == []
    each_gets_a_run(box, {
        "a delivery": lambda: store.deliver(w.raw(subject="New", mid="new@customer.example")),
        "mail filed into the tracked folder": lambda: store.deliver(
            w.raw(subject="Filed 2", mid="filed-2@customer.example"), "INBOX/Projects"),
    })
    _client_does(server, user, "INBOX", lambda c, uids: c.add_flags(uids[:1], [b"\\Flagged"]))
    assert _idle(box)


def test_a_server_that_stops_offering_condstore_gets_one_run(crm, dovecot, mail_user,
                                                             monkeypatch):
    """A cursor with a mod-sequence cannot be compared with a listing without one: one run
    takes a cursor without it, and the folders are idle again."""
    store, box = _with_tracked_folder(crm, dovecot, mail_user)
    _synced(box)
    assert _idle(box)
    real = ImapConnector.capabilities
    monkeypatch.setattr(ImapConnector, "capabilities", lambda self: tuple(
        c for c in real(self) if c not in (b"CONDSTORE", b"QRESYNC")))
    assert not _idle(box)
    _synced(box)
    assert all(json.loads(c)["highestmodseq"] is None for c in cursors(box).values())
    assert _idle(box)


def test_a_server_that_cannot_be_reached_is_tried_once_per_batch(crm, monkeypatch):
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prof = w.profile("imap", incoming_host="127.0.0.1", incoming_port=port,
                     incoming_security="none")
    made = [w.mailbox(crm.bob, prof=prof, email_address=f"far{n}@org.example",
                      username=f"far{n}", password="secret", last_success_on=utcnow())
            for n in range(3)]
    db.session.commit()
    tries = []
    real = ImapConnector._connect
    monkeypatch.setattr(ImapConnector, "_connect",
                        lambda self: (tries.append(self.where), real(self))[1])
    probed = idle.probe([b.id for b in made])
    assert sorted(probed.full) == sorted(b.id for b in made) and probed.idle == []
    assert tries == [f"127.0.0.1:{port}"]
    assert idle.probe([made[0].id]).full == [made[0].id]  # the next batch tries again
    assert len(tries) == 2


def test_a_worker_visits_idle_imap_mailboxes_in_one_batch(app, crm, dovecot, make_mail_user,
                                                          opened, monkeypatch):
    full_runs = []
    real = Worker._sync
    monkeypatch.setattr(Worker, "_sync", lambda self, lease: (
        full_runs.append(lease.mailbox_id), real(self, lease))[1])
    users = [make_mail_user() for _ in range(3)]
    made = [w.store_mailbox(w.ImapStore(dovecot, user), crm.bob) for user in users]
    for box in made:
        _synced(box)
    db.session.execute(update(Mailbox).where(Mailbox.id.in_([b.id for b in made]))
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    db.session.commit()
    opened.clear()
    stats = work(app, "worker-a", concurrency=2)
    assert sorted(stats.runs) == sorted((b.id, "success") for b in made)
    assert full_runs == [] and opened == []  # visited by the probe, not by runs
    for box in made:
        row = fresh(box)
        assert row.lease_owner is None and row.next_sync_on > utcnow()
        runs = list(db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id)))
        assert len(runs) == 2 and runs[-1].fetched == 0 and runs[-1].error_code is None


@pytest.mark.parametrize("list_status", [True, False])
def test_a_server_that_refuses_the_change_items_is_listed_without_them(
        crm, dovecot, mail_user, monkeypatch, list_status):
    """A server that names CONDSTORE but refuses UIDNEXT or HIGHESTMODSEQ in a listing's
    STATUS: the folders are listed without them (once refused, not asked again), the run
    works as before and the probe cannot tell."""
    refused = []
    real_list, real_status = ImapConnector._list_status, ImapConnector._status

    def refusing(real):
        def call(self, *args):
            items = args[0] if real is real_list else args[1]
            if "HIGHESTMODSEQ" in items:
                refused.append(list(items))
                raise imaplib.IMAP4.error("STATUS: unknown item")
            return real(self, *args)
        return call

    monkeypatch.setattr(ImapConnector, "_list_status", refusing(real_list))
    monkeypatch.setattr(ImapConnector, "_status", refusing(real_status))
    if not list_status:
        real = ImapConnector.capabilities
        monkeypatch.setattr(ImapConnector, "capabilities", lambda self: tuple(
            c for c in real(self) if c != b"LIST-STATUS"))
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    store.deliver(w.raw(subject="Hello", mid="hello@customer.example"))
    _synced(box)
    assert refused
    keys = db.session.scalars(select(FolderState.folder_key).where(
        FolderState.mailbox_id == box.id)).all()
    assert keys and all(k.startswith("guid:") for k in keys)  # X-GUID still asked for
    assert not _idle(box)
    with ImapConnector(account_for(box, "incoming")) as imap:
        asked = len(refused)
        imap.list_folders()
        imap.list_folders()
    assert len(refused) == asked + 1  # refused once in this session, then not asked


def test_a_server_without_x_guid_still_gets_the_change_items(crm, dovecot, mail_user,
                                                             monkeypatch):
    """Refused together with X-GUID, the change items are tried again without it (as on a
    CONDSTORE server that is not Dovecot), so its folders can still be probed."""
    real = ImapConnector._list_status

    def no_xguid(self, items):
        if "X-GUID" in items:
            raise imaplib.IMAP4.error("STATUS: unknown item X-GUID")
        return real(self, items)

    monkeypatch.setattr(ImapConnector, "_list_status", no_xguid)
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob)
    _synced(box)
    keys = db.session.scalars(select(FolderState.folder_key).where(
        FolderState.mailbox_id == box.id)).all()
    assert keys and all(k.startswith("uv:") for k in keys)
    assert _idle(box)


def test_a_password_changed_on_the_server_costs_one_failed_sign_in(app, crm, dovecot,
                                                                    make_mail_user, sign_ins):
    """The probe's sign-in is refused: the mailbox's run takes that refusal as its own (it is
    disabled with the alert that says why) instead of signing in again with the same
    password: servers lock accounts out after a few failures."""
    user = make_mail_user()
    box = w.store_mailbox(w.ImapStore(dovecot, user), crm.bob)
    _synced(box)
    dovecot.add_user(user.username, "Changed-pass-2")  # the user's new password
    db.session.execute(update(Mailbox).where(Mailbox.id == box.id)
                       .values(next_sync_on=utcnow() - timedelta(seconds=1)))
    sign_ins.clear()
    stats = work(app, "worker-a", concurrency=2)
    assert sign_ins == [user.username]
    assert stats.runs == [(box.id, "failure")]
    row = fresh(box)
    assert not row.enabled and row.lease_owner is None
    run = db.session.scalars(select(SyncRun).where(SyncRun.mailbox_id == box.id)
                             .order_by(SyncRun.id.desc())).first()
    assert run.error_code == "auth_failed"
    assert db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id,
                                                 Alert.acknowledged_on.is_(None),
                                                 Alert.code == "auth_failed")) is not None


def test_credentials_fixed_after_the_probe_are_signed_in_with(crm, dovecot, mail_user,
                                                              sign_ins):
    """A refusal is the run's only while the run's account is the one refused: a password
    fixed between the probe and the run is tried."""
    box = w.store_mailbox(w.ImapStore(dovecot, mail_user), crm.bob)
    _synced(box)
    box.password = "Wrong-pass-9"
    db.session.commit()
    probed = idle.probe([box.id])
    db.session.rollback()
    assert probed.full == [box.id] and set(probed.refused) == {box.id}
    refused = probed.refused[box.id]
    assert refused.error.code == "auth_failed"

    box = fresh(box)
    box.password = mail_user.password
    db.session.commit()
    sign_ins.clear()
    result = sync_mailbox(box.id, connector_factory=refused.connector_factory(box))
    assert result.status == "success" and sign_ins == [mail_user.username]


def test_a_server_that_cannot_be_reached_is_no_refusal(crm, monkeypatch):
    """Only a refused sign-in is carried to the run; a server that did not answer the
    probe is tried again by the run (with the profile's whole timeout)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prof = w.profile("imap", incoming_host="127.0.0.1", incoming_port=port,
                     incoming_security="none")
    box = w.mailbox(crm.bob, prof=prof, email_address="far@org.example", username="far",
                    password="secret", last_success_on=utcnow())
    db.session.commit()
    probed = idle.probe([box.id])
    assert probed.full == [box.id] and probed.refused == {}
