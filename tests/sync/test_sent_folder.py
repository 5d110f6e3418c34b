"""Sent Items without SPECIAL-USE: the folder the mailbox names, else the one the server
marks, else one with a name mail clients give it (``folders.find_sent``), generated over
every known name, letter case and place; and against a Dovecot that marks no folder, Test &
Enable says which folder it will use, the CRM's sent mail is copied there and the engine
evaluates it as Sent Items."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.db import db
from server.sync.admin.testing import test_and_enable as run_test_and_enable
from server.sync.connectors.base import Folder
from server.sync.connectors.imap import ImapConnector
from server.sync.engine.accounts import account_for
from server.sync.engine.folders import SENT_NAMES, find_sent, plan_folders
from server.sync.engine.outgoing import send_pending
from server.sync.mail.rules import FolderRole
from tests.sync.mailboxes import make_mailbox, make_profile
from tests.sync.test_outgoing import outgoing_email

NOW = datetime(2024, 3, 5, 10, 0, tzinfo=timezone.utc)
OTHERS = [Folder("k-in", "INBOX", "inbox"), Folder("k-drafts", "Drafts"),
          Folder("k-deal", "INBOX/Contoso deal"), Folder("k-sent-x", "Projects/Sent")]


def _cased(draw, name: str) -> str:
    return "".join(c.upper() if draw(st.booleans()) else c.lower() for c in name)


@st.composite
def a_named_sent_folder(draw):
    """Folders with one Sent folder under a known name (any case, top level or under the
    Inbox, listed anywhere) among others that are not it."""
    name = draw(st.sampled_from(SENT_NAMES))
    shown = _cased(draw, name)
    if draw(st.booleans()):
        shown = f"{draw(st.sampled_from(['INBOX', 'Inbox']))}/{shown}"
    sent = Folder("k-sent", shown)
    folders = draw(st.permutations(OTHERS + [sent]))
    return sent, folders


@given(a_named_sent_folder())
def test_a_known_name_is_found_in_any_case_and_place(case):
    sent, folders = case
    assert find_sent(folders) == sent


@given(a_named_sent_folder(), st.sampled_from(["Gesendet", "Sent Items", "Poslano"]))
def test_the_marked_folder_comes_before_names_and_the_named_one_before_both(case, other):
    sent, folders = case
    marked = Folder("k-marked", f"Marked {other}", "sent")
    assert find_sent(folders + [marked]) == marked
    assert find_sent(folders + [marked], named="Projects/Sent") == OTHERS[3]
    assert find_sent(folders + [marked], named="projects.sent") == OTHERS[3]
    assert find_sent(folders + [marked], named="Not there") is None  # asked for: no guess


def test_a_top_level_folder_wins_over_one_under_the_inbox_and_order_of_names_counts():
    under, top = Folder("k-1", "INBOX/Sent"), Folder("k-2", "Sent")
    assert find_sent([under, top]) == top and find_sent([top, under]) == top
    assert find_sent([Folder("k-3", "Sent Items"), top]) == top
    assert find_sent(OTHERS) is None  # "Projects/Sent" is nobody's Sent Items


# -------------------------------------------------------------- Dovecot without SPECIAL-USE

@pytest.fixture
def plain_dovecot(make_dovecot):
    return make_dovecot(special_use=False)


@pytest.fixture
def box(app, make_user, plain_dovecot, make_mail_user, smtp_server):
    user = make_mail_user(server=plain_dovecot)
    sam = make_user("sam@contoso.example", name="Sam Seller")
    profile = make_profile(dovecot=plain_dovecot, smtp=smtp_server)
    mailbox = make_mailbox(profile, user=sam, username=user.username, password=user.password)
    return mailbox, user


def _messages_in(dovecot, user, folder: str) -> int:
    with dovecot.imap_client(user) as imap:
        return imap.select_folder(folder, readonly=True)[b"EXISTS"]


def test_dovecot_marks_no_folder_and_sent_is_found_by_its_name(box, plain_dovecot):
    mailbox, user = box
    with ImapConnector(account_for(mailbox, "incoming")) as imap:
        folders = imap.list_folders()
    assert {f.name for f in folders} >= {"INBOX", "Sent", "Drafts", "Trash", "Junk"}
    assert {f.role for f in folders} == {"inbox", "other"}  # no SPECIAL-USE flags
    result = run_test_and_enable(mailbox)
    assert result.enabled and 'Sent Items: the folder "Sent".' in mailbox.incoming_message
    plan = plan_folders(mailbox, folders, [], track_sent=True)
    assert [(i.name, i.role) for i in plan.evaluate] == [("INBOX", FolderRole.INBOX),
                                                          ("Sent", FolderRole.SENT)]


def test_the_crm_keeps_its_sent_copy_in_the_folder_found_or_named(box, plain_dovecot, sam_mail):
    mailbox, user = box
    sam_mail(mailbox)
    assert send_pending(mailbox.id, NOW).as_dict()["sent"] == 1
    assert _messages_in(plain_dovecot, user, "Sent") == 1
    plain_dovecot.create_mailbox(user, "Gesendete Objekte")
    mailbox.sent_folder = "gesendete objekte"
    db.session.commit()
    assert 'Sent Items: the folder "Gesendete Objekte".' in run_test_and_enable(mailbox) \
        .incoming.message
    sam_mail(mailbox)
    assert send_pending(mailbox.id, NOW).as_dict()["sent"] == 1
    assert _messages_in(plain_dovecot, user, "Gesendete Objekte") == 1
    assert _messages_in(plain_dovecot, user, "Sent") == 1


def test_a_named_folder_that_is_not_there_is_said_and_no_copy_is_guessed(box, plain_dovecot,
                                                                        sam_mail):
    mailbox, user = box
    mailbox.sent_folder = "Outbox copies"
    result = run_test_and_enable(mailbox)
    assert result.enabled  # a warning: mail is still read and sent
    assert ('The Sent folder "Outbox copies" named in the mailbox\'s settings is not on the '
            "server") in mailbox.incoming_message
    email = sam_mail(mailbox)
    assert send_pending(mailbox.id, NOW).as_dict()["sent"] == 1
    assert 'there is no folder "Outbox copies"' in email.error
    assert _messages_in(plain_dovecot, user, "Sent") == 0


@pytest.fixture
def sam_mail():
    def make(mailbox):
        return outgoing_email(mailbox.user, subject="Quote", body="Here it is.")
    return make
