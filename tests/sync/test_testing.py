"""Test & Enable against the real peers: success for IMAP/POP3/Maildir + SMTP, a refused
password (the message names the server and says what to do), SMTP down, TLS trouble,
approval, and directions that are not configured."""
from __future__ import annotations

import pytest

from server.crm.models import Organization
from server.db import db
from server.sync.admin.testing import test_and_enable as run_test_and_enable
from server.sync.connectors.maildir import create_maildir
from server.sync.engine.run import why_not_synced
from server.sync.workers.worker import _sends_mail
from tests.servers.ports import free_port
from tests.sync.mailboxes import make_mailbox, make_profile


@pytest.fixture
def sam(make_user):
    return make_user("sam@contoso.example", name="Sam Seller")


@pytest.fixture
def smtp(make_smtp_server, mail_user):
    return make_smtp_server(auth=(mail_user.username, mail_user.password))


def mailbox_for(sam, mail_user, profile, **fields):
    return make_mailbox(profile, user=sam, username=mail_user.username,
                        password=mail_user.password, **fields)


def test_success_enables_the_mailbox_and_sends_nothing(app, sam, dovecot, mail_user, smtp):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot, smtp=smtp))
    result = run_test_and_enable(mailbox)
    db.session.commit()
    assert result.enabled and result.incoming.ok and result.outgoing.ok
    assert mailbox.enabled and mailbox.incoming_status == mailbox.outgoing_status == "success"
    assert mailbox.tested_on is not None and mailbox.disabled_reason is None
    assert mailbox.next_sync_on is not None
    assert mailbox.sync_requested  # asked for: the workers are woken for its first sync
    assert f"Signed in to 127.0.0.1 as {mail_user.username}" in mailbox.incoming_message
    assert "folder(s)" in mailbox.incoming_message
    assert "accepts mail from sam@contoso.example" in mailbox.outgoing_message
    assert smtp.messages == [] and smtp.auth_attempts == [(mail_user.username, True)]


def test_wrong_password_says_which_server_and_what_to_do(app, sam, dovecot, mail_user, smtp):
    mailbox = make_mailbox(make_profile(dovecot=dovecot, smtp=smtp), user=sam,
                           username=mail_user.username, password="Old-password-1")
    result = run_test_and_enable(mailbox)
    assert not result.enabled and not mailbox.enabled
    assert mailbox.incoming_status == "failure" and mailbox.outgoing_status == "failure"
    assert mailbox.incoming_message == (
        f"The password for {mail_user.username} was refused by 127.0.0.1. "
        "Update it in the mailbox and test again.")
    assert mailbox.outgoing_message == mailbox.incoming_message  # SMTP refused it too
    assert "Old-password-1" not in mailbox.incoming_message + mailbox.outgoing_message
    assert mailbox.disabled_reason == "The mailbox stays disabled until every test succeeds."


def test_service_account_password_points_at_the_profile(app, sam, dovecot, mail_user):
    profile = make_profile(dovecot=dovecot, use_service_account=True,
                           service_username=mail_user.username, service_password="wrong")
    mailbox = make_mailbox(profile, user=sam, outgoing_method="none")
    run_test_and_enable(mailbox)
    assert mailbox.incoming_message == (
        f"The password of the service account {mail_user.username} was refused by 127.0.0.1. "
        f"Update it in the server profile {profile.name} and test again.")


def test_smtp_down(app, sam, dovecot, mail_user, smtp):
    profile = make_profile(dovecot=dovecot, smtp=smtp)
    mailbox = mailbox_for(sam, mail_user, profile)
    smtp.stop()
    result = run_test_and_enable(mailbox)
    assert result.incoming.ok and not result.outgoing.ok
    # Only the failing direction is turned off: the mail is still read.
    assert mailbox.enabled and result.enabled and mailbox.disabled_reason is None
    assert mailbox.incoming_enabled and not mailbox.outgoing_enabled
    assert result.message == ("The mailbox sam@contoso.example is enabled for incoming email "
                              "only: its outgoing test failed. Fix what it says and test "
                              "again to turn it on.")
    assert result.outgoing.code == "could_not_connect"  # refused, unknown or not allowed alike
    assert mailbox.outgoing_message.startswith(
        f"Could not connect to 127.0.0.1:{smtp.port}. Check the server name, port "
        f"and security setting in the server profile {profile.name}")


def test_smtp_refusing_the_address(app, sam, dovecot, mail_user, smtp):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot, smtp=smtp))
    smtp.fail_next(1, code=550, text="5.7.1 Sender address rejected", stage="mail")
    run_test_and_enable(mailbox)
    assert mailbox.outgoing_status == "failure"
    assert "would not take mail from sam@contoso.example" in mailbox.outgoing_message
    assert "Sender address rejected" in mailbox.outgoing_message


def test_the_own_address_refused_as_a_recipient_is_not_blamed_on_the_sender(
        app, sam, dovecot, mail_user, smtp):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot, smtp=smtp))
    smtp.fail_next(1, code=550, text="5.1.1 <sam@contoso.example>: Recipient address "
                   "rejected: User unknown in local recipient table", stage="rcpt")
    result = run_test_and_enable(mailbox)
    assert result.outgoing.code == "recipient_refused" and mailbox.outgoing_status == "failure"
    assert mailbox.outgoing_message.startswith(
        "127.0.0.1 took sam@contoso.example as the sender but refused it as a recipient (")
    assert "User unknown in local recipient table" in mailbox.outgoing_message
    assert "may send as" not in mailbox.outgoing_message
    # Incoming passed: the mailbox is read, only outgoing is off (the worker sends nothing).
    assert mailbox.enabled and mailbox.incoming_enabled and not mailbox.outgoing_enabled
    assert why_not_synced(mailbox) is None and not _sends_mail(mailbox)
    assert smtp.messages == []
    assert run_test_and_enable(mailbox).enabled and mailbox.outgoing_enabled  # fixed: on again
    assert _sends_mail(mailbox)


def test_a_sender_refused_at_rcpt_is_still_about_the_sender(app, sam, dovecot, mail_user, smtp):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot, smtp=smtp))
    smtp.fail_next(1, code=553, text="5.7.1 <sam@contoso.example>: Sender address rejected: "
                   "not owned by user", stage="rcpt")
    run_test_and_enable(mailbox)
    assert mailbox.outgoing_message.startswith(
        "127.0.0.1 would not take mail from sam@contoso.example (")
    assert f"Check that {mail_user.username} may send as sam@contoso.example" in \
        mailbox.outgoing_message


def test_incoming_failing_leaves_outgoing_on(app, sam, dovecot, mail_user, smtp):
    mailbox = make_mailbox(make_profile(dovecot=dovecot, smtp=smtp), user=sam,
                           username=mail_user.username, password=mail_user.password)
    mailbox.server_profile.incoming_port = free_port()
    result = run_test_and_enable(mailbox)
    assert not result.incoming.ok and result.outgoing.ok and result.enabled
    assert not mailbox.incoming_enabled and mailbox.outgoing_enabled and _sends_mail(mailbox)
    assert "enabled for outgoing email only: its incoming test failed" in result.message
    assert why_not_synced(mailbox).startswith("Incoming email of this mailbox is turned off")


def test_untrusted_certificate(app, sam, dovecot_tls, make_mail_user):
    user = make_mail_user(server=dovecot_tls)
    profile = make_profile(incoming_host=dovecot_tls.host, incoming_port=dovecot_tls.imaps_port,
                           incoming_security="tls")
    mailbox = make_mailbox(profile, user=sam, username=user.username, password=user.password,
                           outgoing_method="none")
    run_test_and_enable(mailbox)
    assert mailbox.incoming_status == "failure"
    assert "certificate" in mailbox.incoming_message and "security setting" in mailbox.incoming_message
    profile.settings = {**profile.settings, "ca_file": str(dovecot_tls.cert.cert_path)}
    assert run_test_and_enable(mailbox).enabled


def test_approval_is_needed_unless_the_org_waives_it(app, sam, dovecot, mail_user, smtp):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot, smtp=smtp),
                          email_approved=False)
    result = run_test_and_enable(mailbox)
    assert result.incoming.ok and result.outgoing.ok and not result.enabled
    assert "must be approved by an administrator" in mailbox.disabled_reason
    db.session.get(Organization, 1).require_email_approval = False
    assert run_test_and_enable(mailbox).enabled and mailbox.enabled


def test_only_the_configured_direction_is_tested(app, sam, dovecot, mail_user, make_mail_user):
    mailbox = mailbox_for(sam, mail_user, make_profile(dovecot=dovecot), outgoing_method="none")
    result = run_test_and_enable(mailbox)
    assert result.enabled and result.outgoing is None
    assert mailbox.outgoing_status == "not_run" and mailbox.outgoing_message is None
    forward_user = make_mail_user("forward")
    forward = make_mailbox(make_profile(dovecot=dovecot), user=None, queue=None,
                           address="crm-forward@contoso.example", is_forward_mailbox=True,
                           username=forward_user.username, password=forward_user.password,
                           incoming_method="none", outgoing_method="none")
    assert run_test_and_enable(forward).incoming.ok  # a forward mailbox is always read
    idle = make_mailbox(make_profile(dovecot=dovecot), user=sam, address="idle@contoso.example",
                        incoming_method="none", outgoing_method="none")
    result = run_test_and_enable(idle)
    assert not result.enabled and result.incoming is None and result.outgoing is None
    assert idle.disabled_reason.startswith("Nothing to test")


def test_pop3_profile(app, sam, dovecot, mail_user):
    profile = make_profile(dovecot=dovecot, incoming_protocol="pop3")
    mailbox = mailbox_for(sam, mail_user, profile, outgoing_method="none")
    assert run_test_and_enable(mailbox).enabled
    assert mailbox.incoming_message.endswith("found 1 folder(s).")  # no Sent on POP3


def test_maildir_profile(app, sam, tmp_path):
    profile = make_profile(incoming_protocol="maildir", outgoing_protocol="maildir",
                           maildir_root=str(tmp_path))
    mailbox = make_mailbox(profile, user=sam)
    result = run_test_and_enable(mailbox)
    assert "There is no Maildir" in mailbox.incoming_message
    assert result.enabled and not mailbox.incoming_enabled and mailbox.outgoing_enabled
    assert why_not_synced(mailbox).startswith("Incoming email of this mailbox is turned off")
    create_maildir(tmp_path / "sam@contoso.example", ["INBOX/Contoso deal", "Sent"])
    assert run_test_and_enable(mailbox).enabled and mailbox.incoming_enabled
    assert why_not_synced(mailbox) is None
    assert "3 folder(s)" in mailbox.incoming_message
    assert 'Sent Items: the folder "Sent".' in mailbox.incoming_message


def test_missing_profile_and_refused_port(app, sam, dovecot, mail_user):
    mailbox = make_mailbox(None, user=sam)
    result = run_test_and_enable(mailbox)
    assert not result.enabled and result.incoming.code == "no_server_profile"
    assert "Choose one and test again" in mailbox.incoming_message
    mailbox.server_profile = make_profile(incoming_host="127.0.0.1", incoming_port=free_port())
    mailbox.outgoing_method = "none"
    run_test_and_enable(mailbox)
    assert "Could not connect to 127.0.0.1:" in mailbox.incoming_message
