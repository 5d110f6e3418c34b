"""Importing mailboxes from CSV and fetchmailrc files, through the service and the
``flask --app server mailboxes`` commands: good lines become mailboxes (with the
organization's defaults, profiles found or made, passwords stored encrypted and never
reported), and every other line is reported as skipped or refused with its reason, leaving
nothing behind."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from server.crm.models import Organization
from server.db import db
from server.errors import Invalid
from server.security import authz
from server.sync.admin import imports
from server.sync.engine.run import sync_mailbox
from server.sync.models import EmailServerProfile, FolderRule, Mailbox
from tests.sync import world as w

CSV = """address,owner,profile,incoming,outgoing,acts
bob@org.example,bob@org.example,,,,
carol@org.example,carol@org.example,Exchange,addin,none,
support@org.example,Support,,,,
bob@org.example,bob@org.example,,,,
not-an-address,bob@org.example,,,,
dave@org.example,dave@org.example,,,,
erin@org.example,carol@org.example,Nowhere,,,
frank@org.example,carol@org.example,,telepathy,,
too,few
"""

RC = r"""# Email Router users, as fetchmail polled them
set daemon 300
defaults proto imap ssl
poll mail.org.example port 993
    user "bob@org.example" there with password "s3cr\"t" is bob here folders INBOX, "Deals"
    user "carol@org.example" there with password pw is carol here
poll pop.org.example proto pop3 no dns user dave is dave here
skip old.org.example user bob is bob
poll odd.org.example proto etrn user "x@org.example" is bob
poll broken.org.example proto imap user
poll mail2.org.example proto imap user "ghost@org.example" is ghost password p
"""


@pytest.fixture
def people(app, make_user):
    admin = make_user("ada@org.example", roles=["System Administrator"])
    bob = make_user("bob@org.example", name="Bob Seller")
    carol = make_user("carol@org.example", name="Carol Colleague")
    w.support_queue(make_user)
    default = w.profile("imap", name="Default IMAP", incoming_host="mail.org.example",
                        incoming_port=993)
    w.profile("graph", name="Exchange")
    org = db.session.get(Organization, 1)
    org.default_server_profile_id = default.id
    db.session.commit()
    return authz.principal(admin), bob, carol, default


def test_a_csv_file_imports_its_good_lines_and_says_why_not_for_the_others(people):
    admin, bob, carol, default = people
    report = imports.import_csv(admin, CSV.encode())
    db.session.commit()
    got = [(r.line, r.status) for r in report.lines]
    assert got == [(2, "imported"), (3, "imported"), (4, "imported"), (5, "skipped"),
                   (6, "refused"), (7, "refused"), (8, "refused"), (9, "refused"),
                   (10, "refused")]
    reasons = {r.line: r.reason for r in report.lines}
    assert "exists already" in reasons[5] and "Not an email address" in reasons[6]
    assert "No user you can see" in reasons[7] and '"Nowhere"' in reasons[8]
    assert reasons[9] == ("Incoming email must be one of none, addin, server_side_sync, "
                          "forward_mailbox.")
    assert "2 values for 6 columns" in reasons[10]
    boxes = {b.email_address: b for b in db.session.scalars(select(Mailbox))}
    assert set(boxes) == {"bob@org.example", "carol@org.example", "support@org.example"}
    assert boxes["bob@org.example"].server_profile_id == default.id
    assert (boxes["carol@org.example"].incoming_method,
            boxes["carol@org.example"].outgoing_method) == ("addin", "none")
    assert boxes["support@org.example"].queue_id is not None


def test_a_csv_file_without_its_columns_is_refused_whole(people):
    admin = people[0]
    with pytest.raises(Invalid, match="first line must name the columns"):
        imports.import_csv(admin, b"email,user\nbob@org.example,bob\n")


def test_a_fetchmailrc_imports_its_users_with_profiles_and_encrypted_passwords(people):
    admin, bob, carol, default = people
    report = imports.import_fetchmailrc(admin, RC)
    db.session.commit()
    got = [(r.line, r.status, r.address) for r in report.lines]
    assert got == [(5, "imported", "bob@org.example"), (6, "imported", "carol@org.example"),
                   (7, "refused", "dave"), (8, "skipped", "bob"),
                   (9, "refused", "x@org.example"), (10, "refused", None),
                   (11, "refused", "ghost@org.example")]
    reasons = {r.line: r.reason for r in report.lines}
    assert 'Folders not tracked: "Deals" is not under the Inbox' in reasons[5]
    assert "Only the Inbox is read" not in reasons[5] and "Folders" not in reasons[6]
    assert "No Regarding user matches dave" in reasons[7]
    assert '"etrn" cannot be imported' in reasons[9]
    assert reasons[10].startswith("Not readable") and "line 11" in reasons[10]
    assert "s3cr" not in " ".join(reasons.values())
    box = db.session.scalar(select(Mailbox).where(Mailbox.email_address == "bob@org.example"))
    assert (box.server_profile_id, box.username, box.password) == (
        default.id, "bob@org.example", 's3cr"t')
    stored = db.session.execute(text("SELECT password FROM mailbox WHERE id = :i"),
                                {"i": box.id}).scalar()
    assert "s3cr" not in stored  # encrypted at rest
    # The refused line for ghost made no profile for mail2.org.example.
    assert db.session.scalar(select(func.count(EmailServerProfile.id)).where(
        EmailServerProfile.incoming_host == "mail2.org.example")) == 0


def test_a_new_server_in_a_fetchmailrc_becomes_a_profile(people):
    admin = people[0]
    report = imports.import_fetchmailrc(
        admin, "poll pop.example.net proto pop3 user carol@org.example is carol password x\n")
    db.session.commit()
    assert [r.status for r in report.lines] == ["imported"]
    profile = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.incoming_host == "pop.example.net"))
    assert (profile.name, profile.incoming_protocol, profile.incoming_port,
            profile.incoming_security) == ("pop.example.net (POP3 110)", "pop3", 110, "none")


def test_fetchmail_folders_become_tracked_folder_rules_bound_at_the_first_sync(
        people, dovecot, make_mail_user):
    """On Dovecot: folders under the Inbox become the mailbox's folder rules (either way of
    writing a level), found by name at the first sync, and mail filed there is tracked;
    the Inbox needs no rule; every other name is said not to be tracked, and why."""
    admin, bob, *_ = people
    user = make_mail_user("bob")
    for name in ("INBOX/Deals", "INBOX/Deals/2024", "Archive"):
        dovecot.create_mailbox(user, name)
    rc = (f"poll {dovecot.host} proto imap port {dovecot.imap_port}\n"
          f"  user \"{user.username}\" password \"{user.password}\" is bob@org.example\n"
          '  folders INBOX, "INBOX/Deals", "INBOX.Deals.2024", "Archive", "INBOX/Deals", ""\n'
          f"poll pop.org.example proto pop3 user carol@org.example is carol password x\n"
          '  folder "INBOX/Deals"\n')
    report = imports.import_fetchmailrc(admin, rc)
    db.session.commit()
    assert [(r.line, r.status) for r in report.lines] == [(2, "imported"), (4, "imported")]
    first, pop = (r.reason for r in report.lines)
    assert "Folders tracked: INBOX/Deals, INBOX/Deals/2024 (found by name at the first sync)" \
        in first
    assert '"Archive" is not under the Inbox' in first and '"" is not a folder name' in first
    assert 'Folders not tracked: "INBOX/Deals": POP3 reads the Inbox only.' in pop
    box = db.session.scalar(select(Mailbox).where(Mailbox.email_address == user.username))
    rules = db.session.scalars(select(FolderRule).where(FolderRule.mailbox_id == box.id)
                               .order_by(FolderRule.id)).all()
    assert [r.folder_name for r in rules] == ["INBOX/Deals", "INBOX/Deals/2024"]
    box.tracking_option, box.email_approved, box.enabled = "from_crm_records", True, True
    db.session.commit()
    dovecot.deliver(user, w.raw(to=user.username, mid="deal@x.example"), "INBOX/Deals/2024")
    dovecot.deliver(user, w.raw(to=user.username, mid="old@x.example"), "Archive")
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert w.tracked("deal@x.example") and not w.tracked("old@x.example")
    assert 'The tracked folder "INBOX/Deals" was found by its name.' in result.notes
    db.session.expire_all()
    assert all(not r.folder_key.startswith("name:") and r.enabled for r in rules)


def test_a_salesperson_imports_nothing(people, make_user):
    seller = authz.principal(make_user("sam@org.example"))
    report = imports.import_csv(seller, CSV.splitlines()[0] + "\nsam@org.example,sam@org.example,,,,\n")
    assert [r.status for r in report.lines] == ["refused"]
    assert db.session.scalar(select(func.count(Mailbox.id))) == 0


def test_the_commands_print_a_line_per_input_line(people, app, tmp_path):
    path = tmp_path / "fetchmailrc"
    path.write_text(RC)
    result = app.test_cli_runner().invoke(args=["mailboxes", "import-fetchmailrc", str(path),
                                                "--as", "ada@org.example"])
    assert result.exit_code == 0, result.output
    assert "line 5: imported bob@org.example" in result.output
    assert "2 imported, 1 skipped, 4 refused." in result.output
    assert "s3cr" not in result.output
    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text("nope\n")
    refused = app.test_cli_runner().invoke(args=["mailboxes", "import-csv", str(csv_path),
                                                 "--as", "ada@org.example"])
    assert refused.exit_code != 0 and "first line must name the columns" in refused.output
