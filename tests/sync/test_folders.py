"""Folder roles and folder rules (``sync.engine.folders``): which folders are evaluated, and
rules kept in step with renames, moves out of the Inbox, vanished and re-made folders."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.connectors.base import Folder
from server.sync.engine.folders import (MOVED_OUT, NOT_FOUND, find_inbox, is_under, plan_folders)
from server.sync.models import Alert
from server.sync.mail.decision import FolderRole
from tests.sync import world as w

INBOX = Folder("k-inbox", "INBOX", "inbox")
SENT = Folder("k-sent", "Sent", "sent")
TRASH = Folder("k-trash", "Trash", "trash")


def child(key: str, name: str, parent: Folder | None = INBOX) -> Folder:
    return Folder(key, name, "other", parent.key if parent else None)


def test_find_inbox_by_role_or_name():
    assert find_inbox([SENT, INBOX]) is INBOX
    assert find_inbox([Folder("x", "Inbox")]).key == "x"
    assert find_inbox([SENT]) is None


@pytest.mark.parametrize("folder, expected", [
    (child("a", "INBOX/Deal"), True),
    (Folder("b", "INBOX/Deal/Sub", parent_key="a"), True),  # through the parent chain
    (Folder("c", "inbox/Deal"), True),  # by name, INBOX in any case
    (Folder("d", "Deal"), False),
    (Folder("e", "INBOXES/Deal"), False),
    (INBOX, False),  # the Inbox itself is not under the Inbox
])
def test_is_under_the_inbox(folder, expected):
    by_key = {f.key: f for f in (INBOX, child("a", "INBOX/Deal"), folder)}
    assert is_under(folder, INBOX, by_key) is expected


@pytest.fixture
def crm(app, make_user):
    crm = w.build_crm(make_user)
    crm.box = w.mailbox(crm.bob)
    db.session.commit()
    return crm


def test_evaluated_folders_are_inbox_sent_and_tracked_ones(crm):
    deal = child("k-deal", "INBOX/Contoso deal")
    rule = w.folder_rule(crm.box, "k-deal", "INBOX/Contoso deal", ("opportunity", crm.opp.id))
    off = w.folder_rule(crm.box, "k-off", "INBOX/Off", enabled=False)
    folders = [INBOX, SENT, TRASH, deal, child("k-off", "INBOX/Off"), child("k-x", "INBOX/Untracked")]
    plan = plan_folders(crm.box, folders, [rule, off], track_sent=True)
    assert [(i.name, i.role) for i in plan.evaluate] == [
        ("INBOX", FolderRole.INBOX), ("Sent", FolderRole.SENT), ("INBOX/Contoso deal", FolderRole.TRACKED)]
    tracked = plan.evaluate[-1]
    assert tracked.regarding == ("opportunity", crm.opp.id) and tracked.rule_id == rule.id
    assert tracked.for_decision().regarding == ("opportunity", crm.opp.id)  # one Regarding type
    no_sent = plan_folders(crm.box, folders, [rule, off], track_sent=False)
    assert [i.name for i in no_sent.evaluate] == ["INBOX", "INBOX/Contoso deal"]
    assert off.enabled is False  # turned off by a person: stays off


def test_rename_keeps_the_rule(crm):
    rule = w.folder_rule(crm.box, "k-deal", "INBOX/Contoso deal")
    plan = plan_folders(crm.box, [INBOX, child("k-deal", "INBOX/Contoso 2025")], [rule],
                        track_sent=False)
    assert rule.folder_name == "INBOX/Contoso 2025" and rule.enabled
    assert plan.evaluate[-1].name == "INBOX/Contoso 2025"
    assert plan.notes == ['The tracked folder "INBOX/Contoso deal" is now "INBOX/Contoso 2025".']


def test_moved_out_of_the_inbox_disables_with_a_reason_and_an_alert(crm):
    rule = w.folder_rule(crm.box, "k-deal", "INBOX/Contoso deal")
    plan = plan_folders(crm.box, [INBOX, Folder("k-deal", "Archive/Contoso deal")], [rule],
                        track_sent=False)
    assert not rule.enabled and rule.disabled_reason.startswith(MOVED_OUT)
    assert "Archive/Contoso deal" in rule.disabled_reason
    assert [i.name for i in plan.evaluate] == ["INBOX"]
    alert = db.session.scalar(select(Alert))
    assert (alert.severity, alert.code, alert.mailbox_id, alert.user_id) == (
        "information", "folder_rule_disabled", crm.box.id, crm.bob.id)
    # Planned again while still outside: no second alert, nothing changes.
    plan_folders(crm.box, [INBOX, Folder("k-deal", "Archive/Contoso deal")], [rule], track_sent=False)
    assert len(db.session.scalars(select(Alert)).all()) == 1
    # Back under the Inbox: on again, the alert closed.
    plan = plan_folders(crm.box, [INBOX, child("k-deal", "INBOX/Contoso deal")], [rule],
                        track_sent=False)
    assert rule.enabled and rule.disabled_reason is None and len(plan.evaluate) == 2
    assert db.session.scalar(select(Alert)).acknowledged_on is not None


def test_vanished_key_keeps_the_rule_marked_and_a_same_named_folder_takes_it(crm):
    rule = w.folder_rule(crm.box, "k-old", "INBOX/Deal")
    other = w.folder_rule(crm.box, "k-other", "INBOX/Other")
    plan = plan_folders(crm.box, [INBOX, child("k-other", "INBOX/Other")], [rule, other],
                        track_sent=False)
    assert rule.enabled and rule.disabled_reason.startswith(NOT_FOUND)
    assert [i.name for i in plan.evaluate] == ["INBOX", "INBOX/Other"]
    # A folder named like it, whose key no rule holds, takes the rule over.
    plan = plan_folders(crm.box, [INBOX, child("k-new", "INBOX/Deal"), child("k-other", "INBOX/Other")],
                        [rule, other], track_sent=False)
    assert rule.folder_key == "k-new" and rule.disabled_reason is None
    assert [i.key for i in plan.evaluate] == ["k-inbox", "k-new", "k-other"]


def test_same_named_folder_outside_the_inbox_or_claimed_does_not_take_a_rule(crm):
    rule = w.folder_rule(crm.box, "k-old", "INBOX/Deal")
    claimed = w.folder_rule(crm.box, "k-claimed", "INBOX/Claimed")
    plan_folders(crm.box, [INBOX, Folder("k-top", "Deal")], [rule, claimed], track_sent=False)
    assert rule.folder_key == "k-old"
    rule.folder_name = "INBOX/Claimed"
    plan_folders(crm.box, [INBOX, child("k-claimed", "INBOX/Claimed")], [rule, claimed],
                 track_sent=False)
    assert rule.folder_key == "k-old" and claimed.enabled


def test_a_rule_on_the_inbox_itself_is_not_a_tracked_folder(crm):
    rule = w.folder_rule(crm.box, "k-inbox", "INBOX")
    plan = plan_folders(crm.box, [INBOX], [rule], track_sent=False)
    assert [i.role for i in plan.evaluate] == [FolderRole.INBOX] and not rule.enabled


def test_a_deleted_tracked_folder_raises_an_alert_cleared_when_found_again(crm):
    """Mail filed into a folder that is gone can no longer be tracked: its owner is told."""
    rule = w.folder_rule(crm.box, "k-deal", "INBOX/Contoso deal")
    plan_folders(crm.box, [INBOX], [rule], track_sent=False)
    alert = db.session.scalar(select(Alert))
    assert (alert.severity, alert.code, alert.mailbox_id, alert.user_id) == (
        "warning", "folder_rule_not_found", crm.box.id, crm.bob.id)
    assert '"INBOX/Contoso deal"' in alert.message
    plan_folders(crm.box, [INBOX], [rule], track_sent=False)  # still gone: still one alert
    assert len(db.session.scalars(select(Alert)).all()) == 1
    plan_folders(crm.box, [INBOX, child("k-new", "INBOX/Contoso deal")], [rule], track_sent=False)
    assert rule.disabled_reason is None
    assert db.session.scalar(select(Alert)).acknowledged_on is not None
