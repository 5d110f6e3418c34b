"""The engine (``server.sync.engine.run.sync_mailbox``) over real mail stores: a Maildir tree and
a real Dovecot over IMAP. Tracking options, folder tracking by moving mail (a second IMAP
client, ``doveadm move``), folder renames and moves, keywords written back, correlation,
forward and queue mailboxes, failures (wrong password, a server killed mid-fetch, repeated
failures), UIDVALIDITY resets, batches and the schedule."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from server.crm.activities import Email
from server.db import db, utcnow
from server.sync.engine import alerts
from server.sync.engine.run import retry_quarantined, sync_mailbox
from server.sync.models import (Alert, FolderRule, FolderState, MessageDecision,
                                QuarantinedMessage, SyncRun)
from server.crm.queues import QueueItem
from tests.sync import world as w

@pytest.fixture(params=["maildir", "imap"])
def store(request, tmp_path):
    return w.bob_store(request.param, request, tmp_path)


# --------------------------------------------------------------------------- options

@pytest.mark.both_databases
@pytest.mark.parametrize("option", list(w.TRACKED_UNDER))
def test_each_tracking_option_over_a_real_store(crm, store, option):
    w.track_earlier(crm)
    box = w.store_mailbox(store, crm.bob, tracking_option=option)
    for name, spec in w.OPTION_MAIL.items():
        store.deliver(w.raw(mid=f"{name}@x.example", **spec))
    result = sync_mailbox(box.id)
    assert result.status == "success" and result.fetched == len(w.OPTION_MAIL)
    got = {name for name in w.OPTION_MAIL if w.tracked(f"{name}@x.example")}
    assert got == w.TRACKED_UNDER[option]
    assert result.tracked == len(w.TRACKED_UNDER[option])
    for name in w.OPTION_MAIL:
        row = w.decision(box, f"{name}@x.example")
        assert row.tracked == (name in w.TRACKED_UNDER[option]) and row.reason and row.folder_name == "INBOX"
    # The tracked ones carry the category now; a second run changes nothing.
    categories = store.keywords("INBOX")
    assert sum("Tracked to Regarding" in c for c in categories) == len(w.TRACKED_UNDER[option])
    again = sync_mailbox(box.id)
    assert again.status == "success"
    assert w.count_emails() == 1 + len(w.TRACKED_UNDER[option])
    run = db.session.scalar(select(SyncRun).where(SyncRun.id == result.run_id))
    assert (run.fetched, run.tracked, run.finished_on is not None) == (len(w.OPTION_MAIL),
                                                                       len(w.TRACKED_UNDER[option]), True)


# --------------------------------------------------------------------------- folders

@pytest.mark.both_databases
def test_mail_moved_into_a_tracked_folder_is_tracked_regarding_its_record(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Contoso deal"], "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    ref = store.deliver(w.raw(sender="someone@else.example", subject="Deal terms", mid="deal@x.example"))
    first = sync_mailbox(box.id)
    assert first.tracked == 0 and not w.tracked("deal@x.example")
    store.move(ref, "INBOX", "INBOX/Contoso deal")
    second = sync_mailbox(box.id)
    assert second.tracked == 1
    email = w.tracked("deal@x.example")[0]
    assert email.regarding_ref == ("opportunity", crm.opp.id)
    row = w.decision(box, "deal@x.example")
    assert row.tracked and row.folder_name == "INBOX/Contoso deal" and "tracked folder" in row.reason
    assert {"Tracked to Regarding"} <= store.keywords("INBOX/Contoso deal")[0]


def test_doveadm_move_between_tracked_folders_relinks(crm, dovecot, mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    other = w.record(crm.bob, "account", name="Northwind")
    for name in ("INBOX/Contoso deal", "INBOX/Northwind"):
        store.create_folder(name)
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["INBOX/Contoso deal"], "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    w.folder_rule(box, keys["INBOX/Northwind"], "INBOX/Northwind", ("account", other.id))
    db.session.commit()
    store.deliver(w.raw(mid="filed@x.example", subject="Filed"), "INBOX/Contoso deal")
    assert sync_mailbox(box.id).tracked == 1
    assert w.tracked("filed@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    dovecot.doveadm("move", "-u", mail_user.username, "INBOX/Northwind",
                    "mailbox", "INBOX/Contoso deal", "all")
    sync_mailbox(box.id)
    emails = w.tracked("filed@x.example")
    assert len(emails) == 1 and emails[0].regarding_ref == ("account", other.id)


def test_folder_rename_keeps_its_rule(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    key = w.folder_keys(box)["INBOX/Contoso deal"]
    rule = w.folder_rule(box, key, "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    store.rename_folder("INBOX/Contoso deal", "INBOX/Contoso 2025")
    store.deliver(w.raw(mid="renamed@x.example"), "INBOX/Contoso 2025")
    result = sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert (rule.folder_key, rule.folder_name, rule.enabled) == (key, "INBOX/Contoso 2025", True)
    assert result.tracked == 1 and w.tracked("renamed@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    assert any("is now" in note for note in result.notes)


def test_folder_moved_out_of_the_inbox_disables_its_rule_and_back_enables_it(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("INBOX/Contoso deal")
    key = w.folder_keys(box)["INBOX/Contoso deal"]
    rule = w.folder_rule(box, key, "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    store.deliver(w.raw(mid="early@x.example"), "INBOX/Contoso deal")
    assert sync_mailbox(box.id).tracked == 1
    store.rename_folder("INBOX/Contoso deal", "Contoso deal")
    store.deliver(w.raw(mid="outside@x.example"), "Contoso deal")
    result = sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert not rule.enabled and rule.folder_name == "Contoso deal"
    assert "moved out of the Inbox" in rule.disabled_reason
    assert not w.tracked("outside@x.example") and w.tracked("early@x.example")  # kept
    alert = db.session.scalar(select(Alert).where(Alert.code == "folder_rule_disabled"))
    assert alert.severity == "information" and alert.user_id == crm.bob.id
    assert "Contoso deal" in alert.message and result.status == "success"
    store.rename_folder("Contoso deal", "INBOX/Contoso deal")
    sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert rule.enabled and rule.disabled_reason is None and w.tracked("outside@x.example")
    assert alerts.open_alerts(crm.p) == []


def test_vanished_folder_keeps_its_rule_marked_not_found(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob)
    rule = w.folder_rule(box, "md:gone", "INBOX/Old deal", ("opportunity", crm.opp.id))
    db.session.commit()
    assert sync_mailbox(box.id).status == "success"
    rule = db.session.get(FolderRule, rule.id)
    assert rule.enabled and rule.disabled_reason.startswith("Folder not found")
    # A folder of that name made again takes the rule over.
    store.create_folder("INBOX/Old deal")
    store.deliver(w.raw(mid="again@x.example"), "INBOX/Old deal")
    assert sync_mailbox(box.id).tracked == 1
    rule = db.session.get(FolderRule, rule.id)
    assert rule.disabled_reason is None and rule.folder_key != "md:gone"


def test_category_set_later_by_a_mail_client_tracks_the_message(crm, dovecot, mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    uid = store.deliver(w.raw(mid="later@x.example"))
    assert sync_mailbox(box.id).tracked == 0
    client = dovecot.imap_client(mail_user)
    client.select_folder("INBOX")
    client.add_flags([int(uid)], ["Tracked_to_Regarding"])
    client.logout()
    result = sync_mailbox(box.id)
    assert result.tracked == 1 and w.tracked("later@x.example")
    assert w.decision(box, "later@x.example").rule_hits[-1]["rule"] == "tracked-category"


def test_sent_items_are_tracked_as_outgoing(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.deliver(w.raw(sender="Bob Seller <bob@org.example>", to="Ann <ann@customer.example>",
                        mid="sent@org.example"), "Sent")
    assert sync_mailbox(box.id).tracked == 1
    email = w.tracked("sent@org.example")[0]
    assert email.direction == "outgoing" and email.status == "sent"


def test_attachment_over_the_limit_is_kept_as_metadata(crm, store):
    import base64
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    box.server_profile.attachment_max_bytes = 2048
    db.session.commit()
    big = base64.encodebytes(bytes(range(256)) * 40).decode()
    body = ("--b\r\nContent-Type: text/plain\r\n\r\nThe drawings.\r\n"
            "--b\r\nContent-Type: image/png\r\nContent-Disposition: attachment; filename=plan.png\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n{big}\r\n--b--\r\n")
    store.deliver(w.raw(mid="plan@x.example", body=body, extra=[
        ("MIME-Version", "1.0"), ("Content-Type", 'multipart/mixed; boundary="b"')]))
    assert sync_mailbox(box.id).tracked == 1
    attachment = w.tracked("plan@x.example")[0].attachments[0]
    assert (attachment.filename, attachment.size, attachment.content_omitted) == ("plan.png", 10240, True)
    assert attachment.content is None and attachment.sha256 is None


# --------------------------------------------------------------------------- correlation

def test_correlation_by_thread_index_inherits_regarding_over_imap(crm, dovecot, mail_user):
    import base64
    guid = b"0123456789abcdef"
    index = base64.b64encode(b"\x01" + b"\x00" * 5 + guid).decode()
    w.track_earlier(crm, conversation_index=index, regarding=("account", crm.acc.id))
    box = w.store_mailbox(w.ImapStore(dovecot, mail_user), crm.bob)
    reply_index = base64.b64encode(b"\x01" + b"\x00" * 5 + guid + b"\x00\x00\x00\x00\x07").decode()
    w.ImapStore(dovecot, mail_user).deliver(w.raw(mid="ti@x.example", subject="Other subject",
                                                  thread_index=reply_index))
    assert sync_mailbox(box.id).tracked == 1
    email = w.tracked("ti@x.example")[0]
    assert email.correlation_method == "conversation_index" and email.regarding_ref == ("account", crm.acc.id)


def test_same_email_in_two_mailboxes_is_one_activity(crm, dovecot, make_mail_user):
    bob_store = w.ImapStore(dovecot, make_mail_user("bob"))
    carol_store = w.ImapStore(dovecot, make_mail_user("carol"))
    bob_box = w.store_mailbox(bob_store, crm.bob, tracking_option="all")
    carol_box = w.store_mailbox(carol_store, crm.carol, tracking_option="all")
    data = w.raw(to="bob@org.example, carol@org.example", mid="shared@x.example")
    bob_store.deliver(data)
    carol_store.deliver(data)
    assert sync_mailbox(bob_box.id).tracked == 1 and sync_mailbox(carol_box.id).tracked == 1
    assert len(w.tracked("shared@x.example")) == 1
    # Between two users, with the organization's setting: one activity each.
    w.org().track_between_users_as_two = True
    db.session.commit()
    internal = w.raw(sender="Bob Seller <bob@org.example>", to="carol@org.example", mid="memo@org.example")
    bob_store.deliver(internal, "Sent")
    carol_store.deliver(internal)
    sync_mailbox(bob_box.id)
    sync_mailbox(carol_box.id)
    assert sorted(e.owner_user_id for e in w.tracked("memo@org.example")) == sorted([crm.bob.id, crm.carol.id])


# --------------------------------------------------------------------------- forward, queue

def test_forward_mailbox_tracks_for_the_forwarding_user(crm, tmp_path):
    from server.sync.models import Mailbox
    store = w.MaildirStore(tmp_path / "store", "forward@org.example")
    w.mailbox(crm.bob, incoming_method="forward_mailbox", tracking_option="from_crm_records")
    prof = w.profile("maildir", maildir_root=str(store.store))
    fwd = Mailbox(name="Forward mailbox", email_address="forward@org.example", is_forward_mailbox=True,
                  server_profile_id=prof.id, enabled=True, email_approved=True,
                  owning_business_unit_id=crm.bob.business_unit_id)
    db.session.add(fwd)
    db.session.commit()
    original = w.raw(sender="Ann Customer <ann@customer.example>", subject="Order", mid="order@customer.example")
    body = (b"--f\r\nContent-Type: text/plain\r\n\r\nFYI\r\n--f\r\nContent-Type: message/rfc822\r\n\r\n"
            + original + b"\r\n--f--\r\n")
    store.deliver(w.raw(sender="bob@org.example", to="forward@org.example", subject="Fw: Order",
                        body=body, extra=[("MIME-Version", "1.0"),
                                          ("Content-Type", 'multipart/mixed; boundary="f"')]))
    store.deliver(w.raw(sender="stranger@else.example", to="forward@org.example", subject="Spam"))
    result = sync_mailbox(fwd.id)
    assert (result.status, result.fetched, result.tracked) == ("success", 2, 1)
    email = w.tracked("order@customer.example")[0]
    assert email.owner_user_id == crm.bob.id and email.sender_address == "ann@customer.example"
    # The user's own mailbox (incoming through the forward mailbox) is not synced itself.
    user_box = db.session.scalar(select(Mailbox).where(Mailbox.user_id == crm.bob.id))
    assert "forward mailbox" in sync_mailbox(user_box.id).reason


def test_queue_mailbox_creates_queue_items(crm, make_user, tmp_path):
    queue, team = w.support_queue(make_user)
    db.session.commit()
    store = w.MaildirStore(tmp_path / "store", "support@org.example")
    prof = w.profile("maildir", maildir_root=str(store.store))
    box = w.mailbox(queue=queue, prof=prof, tracking_option="all")
    db.session.commit()
    store.deliver(w.raw(to="support@org.example", mid="help1@x.example"))
    store.deliver(w.raw(to="support@org.example", mid="help2@x.example"))
    assert sync_mailbox(box.id).tracked == 2
    items = db.session.scalars(select(QueueItem).order_by(QueueItem.id)).all()
    assert [i.activity_id for i in items] == [w.tracked("help1@x.example")[0].id, w.tracked("help2@x.example")[0].id]
    assert all(e.owner_team_id == team.id for e in w.emails())


# --------------------------------------------------------------------------- failures

def test_wrong_password_disables_the_mailbox_with_an_alert(crm, dovecot, mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, password="not-the-password")
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled and result.error_code == "auth_failed"
    assert not box.enabled and box.incoming_status == "failure" and "password" in box.disabled_reason
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))
    assert alert.severity == "error" and alert.code == "auth_failed" and "test and enable" in alert.message
    assert "not-the-password" not in alert.message
    assert [a.id for a in alerts.open_alerts(crm.p)] == [alert.id]
    assert sync_mailbox(box.id).status == "skipped"


@pytest.mark.both_databases
def test_server_killed_mid_fetch_backs_off_and_recovers_without_loss(crm, make_dovecot, make_mail_user):
    server = make_dovecot()
    user = make_mail_user(server=server)
    store = w.ImapStore(server, user)
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(7):
        store.deliver(w.raw(mid=f"n{n}@x.example", subject=f"Message {n}"))
    batches = []

    def kill_after_first_batch(progress):
        if progress.batch:
            batches.append(progress.batch)
            if len(batches) == 1:
                server.kill()

    before = utcnow()
    result = sync_mailbox(box.id, limit=3, progress=kill_after_first_batch)
    db.session.refresh(box)
    assert result.status == "failure" and result.error_code in ("connection_lost", "connection_refused")
    assert box.consecutive_failures == 1 and box.enabled
    assert box.next_sync_on >= before + timedelta(seconds=299)
    # The committed batches stay, with their cursor: the first, and the one read ahead
    # while the first was processed when that read finished before the kill.
    assert sum(batches) in (3, 6) and w.count_emails() == sum(batches)
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id, Alert.code == "sync_failed"))
    assert alert.severity == "warning" and "Attempt 1 of 10" in alert.message
    server.start()
    again = sync_mailbox(box.id, limit=3)
    db.session.refresh(box)
    # What was not committed is fetched (and, besides, messages seen again when their
    # category was written before the kill: it is written on the read-ahead thread, after
    # the commit, so the kill may come first)
    assert again.status == "success" and again.fetched >= 7 - sum(batches)
    assert box.consecutive_failures == 0
    assert sorted(e.message_id for e in w.emails()) == sorted(f"n{n}@x.example" for n in range(7))
    assert alerts.open_alerts(crm.p) == []


def test_repeated_failures_turn_the_mailbox_off(app, crm, make_dovecot, make_mail_user):
    app.config["REGARDING_SYNC_MAX_FAILURES"] = 2
    server = make_dovecot()
    user = make_mail_user(server=server)
    box = w.store_mailbox(w.ImapStore(server, user), crm.bob)
    server.kill()
    first, second = sync_mailbox(box.id), None
    db.session.refresh(box)
    assert first.status == "failure" and box.enabled and box.consecutive_failures == 1
    second = sync_mailbox(box.id)
    db.session.refresh(box)
    assert second.disabled and not box.enabled and box.next_sync_on is None
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id, Alert.code == "sync_failed"))
    assert alert.severity == "error" and "2 times in a row" in alert.message
    assert db.session.scalar(select(func.count()).select_from(Alert)) == 1  # one alert, updated


@pytest.mark.both_databases
def test_uidvalidity_change_resyncs_without_duplicates(crm, dovecot, mail_user):
    store = w.ImapStore(dovecot, mail_user)
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(3):
        store.deliver(w.raw(mid=f"uv{n}@x.example"))
    assert sync_mailbox(box.id).tracked == 3
    dovecot.doveadm("mailbox", "update", "-u", mail_user.username, "--uid-validity", "12345", "INBOX")
    store.deliver(w.raw(mid="uv3@x.example"))
    result = sync_mailbox(box.id)
    inbox = next(f for f in result.folders if f.name == "INBOX")
    assert inbox.reset and result.fetched == 4
    assert sorted(e.message_id for e in w.emails()) == [f"uv{n}@x.example" for n in range(4)]
    assert db.session.scalar(select(func.count()).select_from(MessageDecision)) == 4


def test_folder_error_skips_the_folder_and_reports_it(crm, tmp_path):
    import shutil
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    store.create_folder("INBOX/Deal")
    key = w.folder_keys(box)["INBOX/Deal"]
    w.folder_rule(box, key, "INBOX/Deal")
    db.session.commit()
    store.deliver(w.raw(mid="inbox@x.example"))

    from server.sync.connectors.maildir import MaildirConnector, folder_path

    class Vanishing(MaildirConnector):
        """The folder is deleted between the listing and the reading (a real race)."""

        def list_folders(self):
            folders = super().list_folders()
            shutil.rmtree(folder_path(store.root, "INBOX/Deal"), ignore_errors=True)
            return folders

    result = sync_mailbox(box.id, connector_factory=Vanishing)
    assert result.status == "success" and w.tracked("inbox@x.example")
    deal = next(f for f in result.folders if f.name == "INBOX/Deal")
    assert deal.error and "no longer exists" in deal.error
    assert db.session.scalar(select(Alert.code).where(Alert.mailbox_id == box.id)) == "folder_failed"


def test_unexpected_error_outside_a_message_backs_off(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob)
    from server.sync.connectors.maildir import MaildirConnector

    class Broken(MaildirConnector):
        def list_folders(self):
            raise KeyError("a bug")

    result = sync_mailbox(box.id, connector_factory=Broken)
    db.session.refresh(box)
    assert result.status == "failure" and result.error_code == "internal" and "KeyError" in result.reason
    assert box.consecutive_failures == 1 and box.enabled


# --------------------------------------------------------------------------- batches, schedule

@pytest.mark.both_databases
def test_large_mailbox_in_batches_with_progress_and_budget(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(25):
        store.deliver(w.raw(mid=f"big{n}@x.example"))
    seen = []
    result = sync_mailbox(box.id, limit=10, max_messages=15, progress=seen.append)
    db.session.refresh(box)
    assert result.more and result.tracked == 15 and w.count_emails() == 15 and box.backlog == 1
    assert box.next_sync_on <= utcnow()  # due again at once
    # Batches of at most 10 (the category written after the first comes back once).
    batches = [p.batch for p in seen if p.batch]
    assert batches[0] == 10 and max(batches) <= 10 and seen[-1].processed == result.fetched
    result = sync_mailbox(box.id, limit=10)
    db.session.refresh(box)
    assert not result.more and result.tracked == 10 and box.backlog == 0
    assert w.count_emails() == 25 and db.session.scalar(
        select(func.count()).select_from(MessageDecision)) == 25
    state = db.session.scalar(select(FolderState).where(FolderState.mailbox_id == box.id,
                                                        FolderState.role == "inbox"))
    assert state.cursor and state.folder_name == "INBOX"


def test_run_stopped_from_outside_keeps_its_batches_and_counts_no_failure(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(8):
        store.deliver(w.raw(mid=f"stop{n}@x.example"))

    class Stop(BaseException):
        """What a worker raises from the progress callback when it shuts down."""

    def stop_after_first_batch(event):
        if event.batch:
            raise Stop()

    with pytest.raises(Stop):
        sync_mailbox(box.id, limit=3, progress=stop_after_first_batch)
    db.session.refresh(box)
    run = db.session.scalar(select(SyncRun))
    assert run.finished_on is not None and run.error_code == "interrupted"
    assert box.consecutive_failures == 0 and box.enabled and w.count_emails() == 3
    assert sync_mailbox(box.id).tracked == 5 and w.count_emails() == 8


def test_interval_is_shorter_after_tracking_and_longer_when_idle(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    store.deliver(w.raw())
    sync_mailbox(box.id)
    db.session.refresh(box)
    assert box.sync_interval_seconds == 120
    intervals = []
    for _ in range(5):
        sync_mailbox(box.id)
        db.session.refresh(box)
        intervals.append(box.sync_interval_seconds)
    assert intervals == [440, 580, 720, 720, 720]
    assert box.last_success_on and box.next_sync_on > box.last_success_on
    store.deliver(w.raw(sender="news@x.example", extra=[("List-Id", "<l>")]))
    sync_mailbox(box.id)
    db.session.refresh(box)
    assert box.sync_interval_seconds == 300  # mail, but nothing tracked


def test_mailboxes_that_are_not_synced_say_why(crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, enabled=False)
    assert "not enabled" in sync_mailbox(box.id).reason
    box.enabled, box.email_approved = True, False
    db.session.commit()
    assert "not approved" in sync_mailbox(box.id).reason
    box.email_approved, box.incoming_method = True, "addin"
    db.session.commit()
    assert sync_mailbox(box.id).status == "skipped"
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_quarantined_message_can_be_retried(crm, tmp_path, monkeypatch):
    from server.crm.services import tracking
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    store.deliver(w.raw(mid="flaky@x.example"))

    def broken(*args, **kwargs):  # fault injection: storing fails once
        raise RuntimeError("disk full")

    monkeypatch.setattr(tracking, "track_emails", broken)  # track_email too
    result = sync_mailbox(box.id)
    assert result.quarantined == 1 and result.status == "success"
    row = db.session.scalar(select(QuarantinedMessage))
    assert row.error_code == "internal" and not row.resolved
    monkeypatch.undo()
    outcome = retry_quarantined(row.id, crm.p)
    db.session.commit()
    assert outcome.tracked and db.session.get(QuarantinedMessage, row.id).resolved
    assert w.tracked("flaky@x.example") and w.decision(box, "flaky@x.example").tracked


# --------------------------------------------------------------------------- alerts

def test_alerts_are_deduplicated_and_scoped(crm, make_user, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob)
    carol_box = w.mailbox(crm.carol, prof=box.server_profile)
    first = alerts.raise_alert("warning", "sync_failed", "First wording.", box)
    again = alerts.raise_alert("error", "sync_failed", "Second wording.", box)
    other = alerts.raise_alert("warning", "sync_failed", "Carol's.", carol_box)
    db.session.commit()
    assert first.id == again.id and again.message == "Second wording." and again.severity == "error"
    from server.security import authz
    admin = make_user("admin@org.example", roles=["System Administrator"])
    assert [a.id for a in alerts.open_alerts(crm.p)] == [first.id]
    assert [a.id for a in alerts.open_alerts(authz.principal(crm.carol))] == [other.id]
    assert {a.id for a in alerts.open_alerts(authz.principal(admin))} == {first.id, other.id}
    with pytest.raises(Exception):
        alerts.acknowledge(crm.p, other.id)  # not Bob's to see
    alerts.acknowledge(crm.p, first.id)
    assert alerts.clear("sync_failed", carol_box) == 1
    assert alerts.open_alerts(authz.principal(admin)) == []
    # Raised again after it closed: a new alert.
    assert alerts.raise_alert("warning", "sync_failed", "Third.", box).id != first.id


# --------------------------------------------------------------------------- command line

def test_cli_run_status_why_and_retry(app, crm, tmp_path):
    store = w.MaildirStore(tmp_path / "store", "bob@org.example")
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(12):
        store.deliver(w.raw(mid=f"cli{n}@x.example"))
    store.deliver(b"\x00\x01 not mail")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["sync", "run", "--mailbox", "bob@org.example", "--limit", "5"])
    assert result.exit_code == 0, result.output
    assert "12 tracked, 0 not tracked, 1 quarantined" in result.output
    assert w.count_emails() == 12
    status = runner.invoke(args=["sync", "status"])
    assert status.exit_code == 0 and "bob@org.example" in status.output and "success" in status.output
    why = runner.invoke(args=["sync", "why", "--mailbox", str(box.id), "<cli3@x.example>"])
    assert "tracked" in why.output and "All email messages" in why.output
    row = db.session.scalar(select(QuarantinedMessage))
    retried = runner.invoke(args=["sync", "retry", str(row.id)])
    assert retried.output.startswith("quarantined:")
    usage = runner.invoke(args=["sync", "run"])
    assert usage.exit_code != 0 and "--mailbox" in usage.output
    box.enabled = False
    db.session.commit()
    assert "skipped" in runner.invoke(args=["sync", "run", "--mailbox", str(box.id)]).output


# --------------------------------------------------------------------------- the demo

def test_demo_mailbox_is_tracked_as_the_readme_says(app):
    import os
    from server.crm.models import Opportunity
    from server.demo import seed
    from server.sync.connectors.maildir import folder_path
    from server.sync.demo import DEAL_FOLDER, DEMO_USER, seed_demo_mailbox
    from server.sync.models import Mailbox

    summary = seed()
    db.session.commit()
    assert DEMO_USER in summary
    assert seed_demo_mailbox() is None  # once
    box = db.session.scalar(select(Mailbox).where(Mailbox.email_address == DEMO_USER))
    deal = db.session.scalar(select(Opportunity).where(Opportunity.name == "Contoso deal"))
    root = os.path.join(app.instance_path, "maildir", DEMO_USER)
    assert os.path.isdir(os.path.join(root, "cur"))
    before = w.count_emails()
    result = sync_mailbox(box.id)
    assert result.status == "success" and result.quarantined == 0
    assert 25 <= result.fetched <= 60
    decisions = {row.rule_hits[-1]["rule"]: row for row in db.session.scalars(
        select(MessageDecision).where(MessageDecision.mailbox_id == box.id))}
    assert {"correlated-reply", "tracked-folder", "bulk-mail", "auto-reply", "delivery-report",
            "default"} <= set(decisions)
    filed = db.session.scalars(select(MessageDecision).where(
        MessageDecision.folder_name == DEAL_FOLDER)).all()
    assert len(filed) == 3 and all(d.tracked for d in filed)
    assert all(db.session.get(Email, d.activity_id).regarding_ref == ("opportunity", deal.id)
               for d in filed)
    replies = db.session.scalars(select(MessageDecision).where(
        MessageDecision.mailbox_id == box.id, MessageDecision.correlation_method == "in_reply_to",
        MessageDecision.tracked.is_(True))).all()
    assert len(replies) >= 6
    for row in replies:  # each joined its conversation, regarding the same record
        email = db.session.get(Email, row.activity_id)
        parent = db.session.get(Email, email.parent_activity_id)
        assert email.regarding_ref == parent.regarding_ref and email.regarding_ref is not None
    assert w.count_emails() == before + result.tracked
    # The README: drop an .eml file into the tracked folder's new/ and it is tracked.
    drop = folder_path(root, DEAL_FOLDER) / "new" / "dropped.eml"
    drop.write_bytes(w.raw(sender="Someone New <someone@new.example>", subject="Dropped in",
                           mid="dropped@new.example"))
    assert sync_mailbox(box.id).tracked == 1
    assert w.tracked("dropped@new.example")[0].regarding_ref == ("opportunity", deal.id)
