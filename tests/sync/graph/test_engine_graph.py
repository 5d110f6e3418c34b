"""The sync engine's scenario set over Microsoft Graph (the fake service): folder tracking
by moving a message, folder rename and move, category tracking, correlation, the same
email in two mailboxes, outgoing with a Sent copy, throttling, auth failures that turn the
mailbox off with an alert that says what to fix, crash safety, Test & Enable, and an
initial sync that is batched and paged."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.activities import Email
from server.db import db, utcnow
from server.sync.engine import alerts
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert, FolderRule
from server.sync.engine.outgoing import send_pending
from server.sync.admin.testing import test_and_enable
from tests.sync import world as w
from tests.sync.graph.conftest import BOB, GraphStore, graph_mailbox

DEAL = "Inbox/Contoso deal"


def folder_key(store, name: str) -> str:
    return store.fake.folder_id(store.address, name)


def test_each_option_and_the_category_written_back(crm, store):
    w.track_earlier(crm)
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    store.deliver(w.raw(mid="reply@x.example", sender="x@else.example", in_reply_to="<orig1@org.example>"))
    store.deliver(w.raw(mid="contact@x.example"))
    store.deliver(w.raw(mid="stranger@x.example", sender="someone@else.example"))
    result = sync_mailbox(box.id)
    assert result.status == "success" and result.fetched == 3 and result.tracked == 2
    assert w.tracked("reply@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    assert w.tracked("contact@x.example") and not w.tracked("stranger@x.example")
    assert sorted(len(k) for k in store.keywords("Inbox")) == [0, 1, 1]
    assert {"Tracked to Regarding"} in store.keywords("Inbox")
    again = sync_mailbox(box.id)  # the category write shows up in the delta: seen, not new
    assert again.tracked == 0 and w.count_emails() == 3


def test_mail_moved_into_a_tracked_folder_is_tracked_regarding_its_record(crm, store):
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder(DEAL)
    w.folder_rule(box, folder_key(store, DEAL), DEAL, ("opportunity", crm.opp.id))
    db.session.commit()
    ref = store.deliver(w.raw(sender="someone@else.example", mid="deal@x.example"))
    assert sync_mailbox(box.id).tracked == 0
    store.move(ref, "Inbox", DEAL)
    result = sync_mailbox(box.id)
    assert result.tracked == 1
    assert w.tracked("deal@x.example")[0].regarding_ref == ("opportunity", crm.opp.id)
    row = w.decision(box, "deal@x.example")
    assert row.tracked and row.folder_name == DEAL and "tracked folder" in row.reason
    assert store.keywords(DEAL) == [{"Tracked to Regarding"}]


def test_folder_rename_keeps_the_rule_and_a_move_out_of_the_inbox_disables_it(crm, store):
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    store.create_folder(DEAL)
    key = folder_key(store, DEAL)
    rule = w.folder_rule(box, key, DEAL, ("opportunity", crm.opp.id))
    db.session.commit()
    store.rename_folder(DEAL, "Inbox/Contoso 2025")
    store.deliver(w.raw(mid="renamed@x.example"), "Inbox/Contoso 2025")
    result = sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert (rule.folder_key, rule.folder_name, rule.enabled) == (key, "Inbox/Contoso 2025", True)
    assert result.tracked == 1 and w.tracked("renamed@x.example")[0].regarding_ref == \
        ("opportunity", crm.opp.id)
    store.fake.move_folder(BOB, "Inbox/Contoso 2025", None)  # to the top of the mailbox
    store.deliver(w.raw(mid="outside@x.example"), "Contoso 2025")
    sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert not rule.enabled and "moved out of the Inbox" in rule.disabled_reason
    assert not w.tracked("outside@x.example") and w.tracked("renamed@x.example")
    alert = db.session.scalar(select(Alert).where(Alert.code == "folder_rule_disabled"))
    assert alert.user_id == crm.bob.id
    store.fake.move_folder(BOB, "Contoso 2025", "Inbox")
    sync_mailbox(box.id)
    rule = db.session.get(FolderRule, rule.id)
    assert rule.enabled and w.tracked("outside@x.example")


def test_category_set_in_outlook_tracks_the_message(crm, store):
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    ref = store.deliver(w.raw(mid="later@x.example"))
    assert sync_mailbox(box.id).tracked == 0
    store.fake.set_categories(BOB, ref, ["Red category", "Tracked to Regarding"])
    result = sync_mailbox(box.id)
    assert result.tracked == 1 and w.tracked("later@x.example")
    assert w.decision(box, "later@x.example").rule_hits[-1]["rule"] == "tracked-category"
    assert store.fake.message(BOB, ref).categories == ["Red category", "Tracked to Regarding"]


def test_same_email_in_two_mailboxes_is_one_activity(crm, graph, store):
    carol = GraphStore(graph, "carol@org.example")
    bob_box = graph_mailbox(store, crm.bob, tracking_option="all")
    carol_box = graph_mailbox(carol, crm.carol, tracking_option="all")
    data = w.raw(to="bob@org.example, carol@org.example", mid="shared@x.example")
    store.deliver(data)
    carol.deliver(data)
    assert sync_mailbox(bob_box.id).tracked == 1 and sync_mailbox(carol_box.id).tracked == 1
    assert len(w.tracked("shared@x.example")) == 1


def test_outgoing_is_sent_through_graph_with_a_sent_copy_tracked_once(crm, graph, store):
    from server.security import authz
    graph.add_mailbox("ann@customer.example")
    w.org().track_sent_items = True
    box = graph_mailbox(store, crm.bob, tracking_option="from_crm_records")
    draft = w.draft_email(authz.principal(crm.bob), ("opportunity", crm.opp.id),
                          to="ann@customer.example", subject="Quote", body="Here it is.")
    draft.status = "pending_send"
    db.session.commit()
    counts = send_pending(box.id)
    assert counts.as_dict() == {"sent": 1, "retrying": 0, "failed": 0}
    email = db.session.get(Email, draft.id)
    sent = graph.messages_in(BOB, "Sent Items")
    assert len(sent) == 1 and sent[0].internet_message_id == f"<{email.message_id}>"
    assert graph.messages_in(BOB, "Drafts") == []
    # The Sent copy and Ann's reply come back through the sync: the same activity, and a
    # reply correlated to it.
    graph.deliver(BOB, w.raw(sender="Ann Customer <ann@customer.example>", mid="answer@x.example",
                             subject="RE: Quote", in_reply_to=f"<{email.message_id}>"))
    result = sync_mailbox(box.id)
    assert result.status == "success"
    assert len(w.tracked(email.message_id)) == 1
    answer = w.tracked("answer@x.example")[0]
    assert answer.regarding_ref == ("opportunity", crm.opp.id)


def test_throttling_is_waited_out_or_backs_the_mailbox_off(crm, graph, store):
    box = graph_mailbox(store, crm.bob, tracking_option="all")
    store.deliver(w.raw(mid="slow@x.example"))
    graph.throttle(3, retry_after=0)
    assert sync_mailbox(box.id).tracked == 1
    store.deliver(w.raw(mid="later@x.example"))
    graph.throttle(1, retry_after=900)
    before = utcnow()
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.error_code == "throttled" and box.enabled
    assert box.next_sync_on >= before + timedelta(seconds=899)
    assert sync_mailbox(box.id).tracked == 1


@pytest.mark.parametrize("problem, code, words", [
    ("consent", "auth_failed", "admin consent to the application permissions Mail.ReadWrite"),
    ("policy", "auth_failed", "application access policy"),
    ("secret", "auth_failed", "Invalid client secret"),
    ("mailbox", "sync_fatal", "Exchange Online has no mailbox"),
])
def test_auth_failures_turn_the_mailbox_off_with_an_alert_that_says_what_to_fix(
        crm, graph, store, problem, code, words):
    box = graph_mailbox(store, crm.bob)
    if problem == "consent":
        graph.app_roles = ()
    elif problem == "policy":
        graph.access_policy = set()
    elif problem == "secret":
        box.server_profile.oauth_client_secret = "expired-secret"
        db.session.commit()
    else:
        del graph.mailboxes[BOB]
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled and not box.enabled
    alert = db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))
    assert alert.severity == "error" and alert.code == code and words in alert.message
    assert graph.client_secret not in alert.message and "expired-secret" not in alert.message
    assert sync_mailbox(box.id).status == "skipped"


def test_crash_mid_sync_loses_nothing_and_duplicates_nothing(crm, graph, store):
    box = graph_mailbox(store, crm.bob, tracking_option="all")
    for n in range(9):
        store.deliver(w.raw(mid=f"c{n}@x.example", subject=f"Message {n}"))

    class Killed(BaseException):
        """The worker process dying between two batches."""

    def die_after_first_batch(event):
        if event.batch:
            raise Killed()

    with pytest.raises(Killed):
        sync_mailbox(box.id, limit=4, progress=die_after_first_batch)
    assert w.count_emails() == 4  # the committed batch, with its cursor

    # Graph fails in the middle of the next run: a mailbox error, nothing half-stored.
    seen = []

    def throttle_after_first_batch(event):
        if event.batch and not seen:
            seen.append(event)
            graph.throttle(20, retry_after=600)

    result = sync_mailbox(box.id, limit=3, progress=throttle_after_first_batch)
    assert result.status == "failure" and w.count_emails() == 7
    graph._throttle.clear()
    assert sync_mailbox(box.id, limit=3).status == "success"
    assert sorted(e.message_id for e in w.emails()) == sorted(f"c{n}@x.example" for n in range(9))
    assert alerts.open_alerts(crm.p) == []


def test_test_and_enable_checks_token_mailbox_folders_and_send_permission(crm, graph, store):
    box = graph_mailbox(store, crm.bob, enabled=False)
    result = test_and_enable(box)
    assert result.enabled, result
    assert "folder" in result.incoming.message and result.outgoing.ok
    graph.app_roles = ("Mail.ReadWrite",)
    w.org()  # no change elsewhere
    from server.sync.engine import oauth
    oauth.forget_tokens()
    result = test_and_enable(box)
    assert result.incoming.ok and not result.outgoing.ok
    assert result.outgoing.code == "send_denied" and "Mail.Send" in result.outgoing.message
    # only the failing direction is turned off (issue 12, point 13)
    assert result.enabled and box.incoming_enabled and not box.outgoing_enabled


def test_initial_sync_is_batched_and_paged(crm, graph, store):
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    for n in range(300):
        store.deliver(w.raw(mid=f"bulk{n}@x.example", subject=f"Bulk {n}"))
    before = graph.stats["http"]
    result = sync_mailbox(box.id, limit=500)
    requests = graph.stats["http"] - before
    assert result.fetched == 300
    assert requests / 300 <= 0.06, requests  # 15 MIME batches, one delta page, the folders


def test_extra_headers_go_to_graph_in_the_drafts_mime(crm, graph, store):
    """Graph's JSON internetMessageHeaders takes X- headers only; the draft is made from
    our MIME, so Auto-Submitted goes the same way as X-Auto-Response-Suppress."""
    from email import message_from_bytes, policy
    from server.security import authz
    graph.add_mailbox("ann@customer.example")
    box = graph_mailbox(store, crm.bob, tracking_option="none")
    draft = w.draft_email(authz.principal(crm.bob), None, to="ann@customer.example",
                          subject="We got it", body="Thanks.")
    draft.status = "pending_send"
    draft.internet_headers = [["Auto-Submitted", "auto-replied"],
                              ["X-Auto-Response-Suppress", "All"]]
    db.session.commit()
    assert send_pending(box.id).sent == 1
    [sent] = graph.messages_in(BOB, "Sent Items")
    mime = message_from_bytes(sent.mime, policy=policy.default)
    assert mime["Auto-Submitted"] == "auto-replied" and mime["X-Auto-Response-Suppress"] == "All"
