"""The sync engine's scenarios over EWS (``sync.engine.run.sync_mailbox`` with a mailbox whose
server profile reads the fake Exchange endpoint): tracking options, folder tracking by moving
a message, folder rename and move out of the Inbox, the category set later, correlation,
the category written back, outgoing email with its Sent Items copy, throttling and a refused
password (mailbox disabled with an alert), and Test & Enable."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.db import db, utcnow
from server.security import authz
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert, FolderRule, Mailbox
from server.sync.engine.outgoing import send_pending
from server.sync.admin.testing import test_and_enable
from tests.sync import world as w
from tests.sync.ews.conftest import BOB, PASSWORD

TRACKED = "Tracked to Regarding"


class EwsStore:
    """Bob's mailbox on the fake Exchange, as the tests of ``world`` use a mail store."""

    protocol = "ews"

    def __init__(self, exchange, address=BOB, username="ORG\\bob", password=PASSWORD):
        self.exchange, self.address = exchange, address
        self.username, self.password = username, password

    def profile_fields(self) -> dict:
        return {"outgoing_protocol": "ews",
                "settings": {"ews_url": self.exchange.url, "auth_type": "basic"}}

    def mailbox_fields(self) -> dict:
        return {"username": self.username, "password": self.password}

    def deliver(self, data: bytes, folder: str = "Inbox") -> str:
        return self.exchange.deliver(self.address, data, folder)

    def create_folder(self, name: str) -> None:
        self.exchange.create_folder(self.address, name)

    def rename_folder(self, old: str, new: str) -> None:
        self.exchange.rename_folder(self.address, old, new.rpartition("/")[2])

    def move(self, ref: str, source: str, target: str) -> str:
        """As Outlook moves mail (a new id in the target); returns the new id."""
        return self.exchange.move(self.address, ref, target)

    def copy(self, ref: str, source: str, target: str) -> str:
        return self.exchange.copy(self.address, ref, target)

    def categories(self, folder: str) -> list[list[str]]:
        return [i.categories for i in self.exchange.items_in(self.address, folder)]


def tracks_a_customer_email(crm, store, mid: str, **fields) -> Mailbox:
    """Bob's mailbox on ``store`` (tracking mail from CRM records) syncs an email from a
    contact and tracks it, with the category written back; returns the mailbox."""
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records", **fields)
    store.deliver(w.raw(sender="Ann Customer <ann@customer.example>", mid=mid))
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert result.tracked == 1 and w.tracked(mid)
    assert store.categories("inbox") == [[TRACKED]]
    return box


@pytest.fixture
def store(exchange):
    return EwsStore(exchange)


def test_tracking_options_and_the_category_written_back(crm, store):
    w.track_earlier(crm)
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.deliver(w.raw(sender="stranger@else.example", subject="RE: Quote", mid="reply@x.example",
                        in_reply_to="<orig1@org.example>"))
    store.deliver(w.raw(sender="Ann Customer <ann@customer.example>", mid="contact@x.example"))
    store.deliver(w.raw(sender="someone@else.example", mid="unknown@x.example"))
    result = sync_mailbox(box.id)
    assert result.status == "success" and (result.fetched, result.tracked) == (3, 2)
    assert w.tracked("reply@x.example") and w.tracked("contact@x.example")
    assert not w.tracked("unknown@x.example")
    assert w.decision(box, "unknown@x.example").folder_name == "Inbox"
    assert sorted(store.categories("inbox")) == [[], [TRACKED], [TRACKED]]
    # The reply inherits what the email it answers is regarding.
    reply = w.tracked("reply@x.example")[0]
    assert reply.regarding_ref == ("opportunity", crm.opp.id)
    # The category updates come back as changes; nothing is tracked twice.
    again = sync_mailbox(box.id)
    assert again.status == "success" and again.tracked == 0 and w.count_emails() == 3


@pytest.mark.both_databases
def test_mail_moved_into_a_tracked_folder_is_tracked_regarding_its_record(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("Inbox/Contoso deal")
    keys = w.folder_keys(box)
    w.folder_rule(box, keys["Inbox/Contoso deal"], "Inbox/Contoso deal",
                  ("opportunity", crm.opp.id))
    db.session.commit()
    ref = store.deliver(w.raw(sender="someone@else.example", subject="Deal terms",
                              mid="deal@x.example"))
    assert sync_mailbox(box.id).tracked == 0 and not w.tracked("deal@x.example")
    store.move(ref, "Inbox", "Inbox/Contoso deal")
    second = sync_mailbox(box.id)
    assert second.tracked == 1
    assert w.tracked("deal@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    row = w.decision(box, "deal@x.example")
    assert row.tracked and row.folder_name == "Inbox/Contoso deal"
    assert store.categories("Inbox/Contoso deal") == [[TRACKED]]


def test_folder_rename_keeps_its_rule_and_moving_it_out_disables_it(crm, store, exchange):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder("Inbox/Contoso deal")
    key = w.folder_keys(box)["Inbox/Contoso deal"]
    rule = w.folder_rule(box, key, "Inbox/Contoso deal", ("opportunity", crm.opp.id))
    db.session.commit()
    exchange.rename_folder(BOB, "Inbox/Contoso deal", "Contoso 2025")
    store.deliver(w.raw(mid="renamed@x.example"), "Inbox/Contoso 2025")
    result = sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert (rule.folder_key, rule.folder_name, rule.enabled) == (key, "Inbox/Contoso 2025", True)
    assert result.tracked == 1
    assert w.tracked("renamed@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)

    exchange.move_folder(BOB, "Inbox/Contoso 2025", "")
    store.deliver(w.raw(mid="outside@x.example"), "Contoso 2025")
    moved = sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert moved.status == "success" and not rule.enabled and rule.folder_key == key
    assert "moved out of the Inbox" in rule.disabled_reason
    assert not w.tracked("outside@x.example") and w.tracked("renamed@x.example")


def test_category_set_later_in_outlook_tracks_the_message(crm, store, exchange):
    box = w.store_mailbox(store, crm.bob, tracking_option="none")
    ref = store.deliver(w.raw(mid="later@x.example"))
    assert sync_mailbox(box.id).tracked == 0
    exchange.set_categories(BOB, ref, [TRACKED])
    result = sync_mailbox(box.id)
    assert result.tracked == 1 and w.tracked("later@x.example")
    assert w.decision(box, "later@x.example").rule_hits[-1]["rule"] == "tracked-category"


def test_sent_items_are_tracked_as_outgoing(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.deliver(w.raw(sender="Bob Seller <bob@org.example>", to="Ann <ann@customer.example>",
                        mid="sent@org.example"), "sentitems")
    assert sync_mailbox(box.id).tracked == 1
    assert w.tracked("sent@org.example")[0].direction == "outgoing"


def test_a_batchs_categories_are_written_with_one_update(crm, store, exchange):
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(12):
        store.deliver(w.raw(mid=f"u{n}@x.example", subject=f"Mail {n}"))
    exchange.set_categories(BOB, exchange.items_in(BOB, "inbox")[0].id, ["Red category"])
    result = sync_mailbox(box.id)
    assert result.status == "success" and result.tracked == 12
    assert exchange.operations.count("UpdateItem") == 1
    assert sorted(store.categories("inbox")) == [["Red category", TRACKED]] + [[TRACKED]] * 11


def test_batches_commit_their_cursor_and_resume(crm, store):
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    for n in range(5):
        store.deliver(w.raw(mid=f"b{n}@x.example", subject=f"Mail {n}"))
    first = sync_mailbox(box.id, limit=2, max_messages=3)
    assert first.more and 3 <= first.fetched <= 4
    rest = sync_mailbox(box.id, limit=2)
    assert not rest.more and w.count_emails() == 5
    assert all(w.tracked(f"b{n}@x.example") for n in range(5))


def test_outgoing_email_is_sent_with_a_copy_in_sent_items(crm, store, exchange):
    box = w.store_mailbox(store, crm.bob)
    draft = w.draft_email(authz.principal(crm.bob), None, to="ann@customer.example",
                            cc="", subject="Quote", body="Here it is.")
    draft.status = "pending_send"
    db.session.commit()
    counts = send_pending(box.id)
    assert counts.as_dict() == {"sent": 1, "retrying": 0, "failed": 0}
    db.session.expire_all()
    email = db.session.get(Email, draft.id)
    assert email.status == "sent" and email.error is None
    (sent,) = exchange.sent
    assert f"<{email.message_id}>".encode() in sent["mime"] and sent["bcc"] == []
    copies = exchange.items_in(BOB, "sentitems")
    assert len(copies) == 1 and copies[0].mime == sent["mime"]  # one copy, saved by Exchange


def test_throttling_backs_the_mailbox_off_as_long_as_the_server_asks(crm, store, exchange, app):
    box = w.store_mailbox(store, crm.bob, tracking_option="all")
    # A known version: exchangelib does not probe the server (its probe reads any failure,
    # a busy server's too, as "no version").
    box.server_profile.settings = {**box.server_profile.settings, "exchange_version": "Exchange2016"}
    db.session.commit()
    store.deliver(w.raw(mid="t@x.example"))
    app.config["REGARDING_SYNC_RETRY_SECONDS"] = 60
    exchange.busy, exchange.back_off_ms = 100, 900_000  # 15 minutes
    before = utcnow()
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.error_code == "server_busy"
    assert box.enabled and box.consecutive_failures == 1
    assert box.next_sync_on >= before + timedelta(seconds=900)
    assert "ConvertId" not in exchange.operations
    exchange.busy = 0
    assert sync_mailbox(box.id).tracked == 1 and w.tracked("t@x.example")


def test_wrong_password_disables_the_mailbox_with_an_alert(crm, store):
    box = w.store_mailbox(store, crm.bob, password="not-the-password")
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled and result.error_code == "auth_failed"
    assert not box.enabled and box.incoming_status == "failure"
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))
    assert alert.severity == "error" and alert.code == "auth_failed"
    assert "not-the-password" not in alert.message
    assert sync_mailbox(box.id).status == "skipped"


def test_test_and_enable_checks_both_directions(crm, store):
    box = w.store_mailbox(store, crm.bob, enabled=False)
    result = test_and_enable(box)
    assert result.enabled, result.message
    assert result.incoming.ok and "folder" in result.incoming.message
    assert result.outgoing.ok
    bad = w.store_mailbox(store, crm.carol, email_address="carol@org.example",
                          password="wrong", enabled=False)
    failed = test_and_enable(bad)
    assert not failed.enabled and failed.incoming.code == "auth_failed"
    assert db.session.get(Mailbox, bad.id).incoming_status == "failure"


def test_a_service_account_with_impersonation_syncs_each_users_mailbox(crm, exchange):
    exchange.mailbox("carol@org.example")
    exchange.deliver(BOB, w.raw(sender="Ann Customer <ann@customer.example>", mid="to-bob@x.example"))
    exchange.deliver("carol@org.example", w.raw(sender="Ann Customer <ann@customer.example>",
                                                to="carol@org.example", mid="to-carol@x.example"))
    prof = w.profile("ews", outgoing_protocol="ews", use_service_account=True,
                     service_username="ORG\\crm-service", service_password="service secret",
                     settings={"ews_url": exchange.url, "auth_type": "basic",
                               "impersonation": True})
    boxes = [w.mailbox(crm.bob, prof=prof, tracking_option="all"),
             w.mailbox(crm.carol, prof=prof, tracking_option="all")]
    db.session.commit()
    assert [sync_mailbox(box.id).tracked for box in boxes] == [1, 1]
    assert w.tracked("to-bob@x.example") and w.tracked("to-carol@x.example")
    assert exchange.items_in("carol@org.example", "inbox")[0].categories == [TRACKED]
    # Without the impersonation setting the service account may not open Carol's mailbox.
    prof.settings = {**prof.settings, "impersonation": False}
    db.session.commit()
    exchange.impersonators.clear()
    result = sync_mailbox(boxes[1].id)
    assert result.status == "failure" and result.disabled and result.error_code == "access_denied"


def test_a_reply_to_mail_sent_through_ews_is_correlated_by_its_tracking_token(crm, store,
                                                                              exchange):
    box = w.store_mailbox(store, crm.bob, tracking_option="crm_responses")
    draft = w.draft_email(authz.principal(crm.bob), ("opportunity", crm.opp.id),
                            to="ann@customer.example", subject="Quote", body="Our quote.")
    draft.status = "pending_send"
    db.session.commit()
    assert send_pending(box.id).sent == 1
    db.session.expire_all()
    sent = db.session.get(Email, draft.id)
    assert sent.tracking_token and sent.tracking_token in exchange.sent[0]["mime"].decode()
    # Ann's client drops the threading headers; the token in the subject is enough.
    store.deliver(w.raw(sender="Ann Customer <ann@customer.example>", mid="ann-reply@x.example",
                        subject=f"RE: Quote {sent.tracking_token}"))
    result = sync_mailbox(box.id)
    assert result.status == "success"
    reply = w.tracked("ann-reply@x.example")[0]
    assert reply.regarding_ref == ("opportunity", crm.opp.id)
    assert reply.correlation_method == "tracking_token"
    # The Sent Items copy Exchange saved is the sent email itself: not a second activity.
    assert len(w.emails(message_id=sent.message_id)) == 1


def test_extra_headers_go_to_exchange_in_the_mime_content(crm, store, exchange):
    from email import message_from_bytes, policy
    box = w.store_mailbox(store, crm.bob)
    draft = w.draft_email(authz.principal(crm.bob), None, to="ann@customer.example",
                          cc="", subject="We got it", body="Thanks.")
    draft.status = "pending_send"
    draft.internet_headers = [["Auto-Submitted", "auto-replied"],
                              ["X-Auto-Response-Suppress", "All"]]
    db.session.commit()
    assert send_pending(box.id).sent == 1
    (sent,) = exchange.sent
    mime = message_from_bytes(sent["mime"], policy=policy.default)
    assert mime["Auto-Submitted"] == "auto-replied" and mime["X-Auto-Response-Suppress"] == "All"
