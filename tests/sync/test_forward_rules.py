"""Rule deployment on a real Dovecot with ManageSieve and Sieve at delivery: the CRM puts a
``redirect :copy`` rule on a user's server, mail delivered to the user reaches the forward
mailbox (IMAP) and is tracked there for that user; the user's own script keeps working and
is active again once the CRM's rule is removed; a copy claiming to be redirected by someone
without a deployed rule is not tracked for them."""
from __future__ import annotations

import secrets

import pytest
from sievelib.managesieve import Client

from server.db import db
from server.security import authz
from server.sync.admin.forward_rules import check_rule, deploy_rule, remove_rule
from server.sync.connectors.managesieve import SCRIPT
from server.sync.engine.run import sync_mailbox
from server.sync.models import Mailbox
from tests.sync import world as w

OWN_SCRIPT = 'require ["fileinto", "mailbox"];\r\nif header :contains "subject" "[news]" ' \
             '{ fileinto :create "News"; }\r\n'


@pytest.fixture
def site(app, make_user, dovecot_sieve):
    """Bob (a CRM user whose Dovecot account has his own Sieve script) and the forward
    mailbox, both on the Sieve-enabled Dovecot."""
    tag = secrets.token_hex(3)
    bob_address, forward_address = f"bob-{tag}@org.example", f"crm-{tag}@org.example"
    bob_mail = dovecot_sieve.add_user(bob_address, "bob-pw")
    forward_mail = dovecot_sieve.add_user(forward_address, "fwd-pw")
    admin = make_user(f"admin-{tag}@org.example", roles=["System Administrator"])
    bob = make_user(bob_address, name="Bob Seller")
    prof = w.profile("imap", incoming_host=dovecot_sieve.host,
                     incoming_port=dovecot_sieve.imap_port, incoming_security="none",
                     settings={"timeout": 10, "managesieve_port": dovecot_sieve.sieve_port})
    bob_box = w.mailbox(bob, prof=prof, incoming_method="forward_mailbox",
                        tracking_option="all", username=bob_address, password="bob-pw")
    forward_box = Mailbox(name="Forward", email_address=forward_address, is_forward_mailbox=True,
                          server_profile_id=prof.id, enabled=True, email_approved=True,
                          username=forward_address, password="fwd-pw",
                          owning_business_unit_id=bob.business_unit_id)
    db.session.add(forward_box)
    db.session.commit()
    sieve = Client(dovecot_sieve.host, dovecot_sieve.sieve_port)
    with pytest.warns(UserWarning):  # plain text on the loopback test server
        assert sieve.connect(bob_address, "bob-pw", authmech="PLAIN")
    assert sieve.putscript("mine", OWN_SCRIPT) and sieve.setactive("mine")
    sieve.logout()
    return dovecot_sieve, bob_mail, forward_mail, authz.principal(admin), bob, bob_box, forward_box


def _scripts(server, user) -> tuple[str | None, list[str]]:
    sieve = Client(server.host, server.sieve_port)
    with pytest.warns(UserWarning):
        assert sieve.connect(user.username, user.password, authmech="PLAIN")
    try:
        return sieve.listscripts()
    finally:
        sieve.logout()


def _inbox(server, user) -> list[bytes]:
    client = server.imap_client(user)
    try:
        client.select_folder("INBOX", readonly=True)
        return [d[b"RFC822"] for d in client.fetch(client.search(), ["RFC822"]).values()]
    finally:
        client.logout()


@pytest.mark.both_databases
def test_a_deployed_rule_brings_the_users_mail_to_the_forward_mailbox_tracked_for_them(site):
    server, bob_mail, forward_mail, admin, bob, bob_box, forward_box = site
    result = deploy_rule(admin, bob_box)
    db.session.commit()
    assert result.ok, result.message
    assert bob_box.forward_rule_status == "deployed"
    assert _scripts(server, bob_mail) == (SCRIPT, ["mine"])

    mid = f"deal-{secrets.token_hex(4)}@customer.example"
    raw = w.raw(sender="Ann Customer <ann@customer.example>", to=bob_mail.username,
                subject="Our order", mid=mid)
    server.deliver_lda(bob_mail, raw, "ann@customer.example")
    server.deliver_lda(bob_mail, w.raw(to=bob_mail.username, subject="[news] weekly",
                                       mid=f"news-{mid}"), "list@news.example")
    assert len(_inbox(server, bob_mail)) == 1  # the news went to News: his own script ran
    assert len(_inbox(server, forward_mail)) == 2  # both copies reached the forward mailbox

    outcome = sync_mailbox(forward_box.id)
    assert (outcome.fetched, outcome.tracked) == (2, 2)
    email = w.tracked(mid)[0]
    assert email.owner_user_id == bob.id and email.receiving_mailbox_id == bob_box.id
    assert w.decision(forward_box, mid).reason.startswith("Forwarded by Bob Seller")

    assert check_rule(admin, bob_box).ok
    removed = remove_rule(admin, bob_box)
    db.session.commit()
    assert removed.ok and bob_box.forward_rule_status == "removed"
    assert _scripts(server, bob_mail) == ("mine", [])
    assert remove_rule(admin, bob_box).message.startswith("There was no forwarding rule")


def test_a_copy_claiming_a_redirect_without_a_deployed_rule_is_not_tracked(site):
    server, bob_mail, forward_mail, admin, bob, bob_box, forward_box = site
    mid = f"forged-{secrets.token_hex(4)}@customer.example"
    server.deliver(forward_mail, w.raw(to=bob_mail.username, mid=mid,
                                       extra=[("X-Sieve-Redirected-From", bob_mail.username)]))
    outcome = sync_mailbox(forward_box.id)
    assert (outcome.fetched, outcome.tracked, outcome.skipped) == (1, 0, 1)
    assert w.tracked(mid) == []
    assert "with a forwarding rule deployed by the CRM" in w.decision(forward_box, mid).reason


def test_a_server_that_refuses_the_sign_in_is_recorded_as_a_failed_deployment(site):
    server, bob_mail, forward_mail, admin, bob, bob_box, forward_box = site
    bob_box.password = "wrong"
    result = deploy_rule(admin, bob_box)
    assert not result.ok and bob_box.forward_rule_status == "failed"
    assert "refused the password" in result.message and "wrong" not in result.message
    assert _scripts(server, bob_mail) == ("mine", [])
