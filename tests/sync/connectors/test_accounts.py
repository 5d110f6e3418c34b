"""Accounts built from mailboxes and profiles (credentials decrypted, service accounts,
Maildir trees) and XOAUTH2 tokens from a local stand-in for Microsoft Entra ID."""
from __future__ import annotations

import pytest
from sqlalchemy import text

from server.db import db
from server.sync.engine import oauth
from server.sync.engine.accounts import account_for
from server.sync.connectors.base import ConnectorError
from server.sync.connectors.imap import ImapConnector
from tests.sync.connectors.fake_entra import FakeEntra
from tests.sync.mailboxes import make_mailbox, make_profile


@pytest.fixture
def entra():
    fake = FakeEntra().start()
    oauth.forget_tokens()
    yield fake
    oauth.forget_tokens()
    fake.close()


def oauth_profile(entra, **fields):
    values = dict(incoming_host="outlook.office365.com", incoming_security="tls",
                  outgoing_protocol="smtp", outgoing_host="smtp.office365.com",
                  outgoing_security="starttls", auth_method="oauth2",
                  oauth_tenant=entra.tenant, oauth_client_id=entra.client_id,
                  oauth_client_secret=entra.client_secret,
                  settings={"oauth_authority": entra.authority,
                            "oauth_ca_file": str(entra.cert.cert_path)})
    return make_profile(**{**values, **fields})


def test_mailbox_credentials_are_decrypted_into_the_account(app, make_user, dovecot, mail_user):
    user = make_user()
    profile = make_profile(dovecot=dovecot, outgoing_protocol="smtp", outgoing_host="smtp.example",
                           outgoing_port=2525, outgoing_security="starttls")
    mailbox = make_mailbox(profile, user=user, username=mail_user.username,
                           password=mail_user.password)
    stored = db.session.execute(text("SELECT password FROM mailbox WHERE id = :id"),
                                {"id": mailbox.id}).scalar_one()
    assert mail_user.password not in stored  # encrypted at rest
    incoming = account_for(mailbox, "incoming")
    assert (incoming.host, incoming.port, incoming.security) == (dovecot.host, dovecot.imap_port, "none")
    assert (incoming.username, incoming.password) == (mail_user.username, mail_user.password)
    outgoing = account_for(mailbox, "outgoing")
    assert (outgoing.host, outgoing.port, outgoing.security) == ("smtp.example", 2525, "starttls")
    with ImapConnector(incoming) as imap:  # and it signs in for real
        assert any(f.role == "inbox" for f in imap.list_folders())


def test_service_account_with_a_login_form(app, make_user):
    profile = make_profile(incoming_host="imap.contoso.example", use_service_account=True,
                           service_username="crm-service", service_password="Svc-pass-1",
                           settings={"service_login": "{address}*{service}"})
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"))
    account = account_for(mailbox, "incoming")
    assert account.username == "sam@contoso.example*crm-service"
    assert account.password == "Svc-pass-1"


def test_missing_profile_or_direction(app, make_user):
    user = make_user()
    mailbox = make_mailbox(None, user=user)
    with pytest.raises(ConnectorError) as caught:
        account_for(mailbox, "incoming")
    assert caught.value.code == "no_server_profile"
    mailbox.server_profile = make_profile(incoming_host="imap.contoso.example")
    with pytest.raises(ConnectorError) as caught:
        account_for(mailbox, "outgoing")
    assert caught.value.code == "not_configured"


def test_maildir_accounts(app, make_user, tmp_path):
    profile = make_profile(incoming_protocol="maildir", outgoing_protocol="maildir",
                           maildir_root=str(tmp_path))
    (tmp_path / "sam@contoso.example" / "Maildir").mkdir(parents=True)
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"))
    assert account_for(mailbox, "incoming").root == str(tmp_path / "sam@contoso.example" / "Maildir")
    assert account_for(mailbox, "outgoing").root == str(tmp_path)


def test_app_only_token_for_a_service_account(app, make_user, entra):
    profile = oauth_profile(entra, use_service_account=True, service_username="crm-app")
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"))
    account = account_for(mailbox, "incoming")
    assert account.oauth_token.startswith("at-") and account.password is None
    assert account.username == "sam@contoso.example"
    assert entra.requests[-1]["grant_type"] == "client_credentials"
    assert entra.requests[-1]["scope"] == "https://outlook.office365.com/.default"
    # Cached until it is about to expire: no second request.
    assert account_for(mailbox, "outgoing").oauth_token == account.oauth_token
    assert len(entra.requests) == 1


def test_delegated_token_rotates_the_refresh_token(app, make_user, entra):
    profile = oauth_profile(entra)
    first = entra.issue_refresh_token()
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"), oauth_refresh_token=first)
    account = account_for(mailbox, "incoming")
    assert account.oauth_token.startswith("at-")
    request = entra.requests[-1]
    assert request["grant_type"] == "refresh_token" and request["refresh_token"] == first
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in request["scope"].split()
    db.session.commit()
    db.session.expire_all()
    assert mailbox.oauth_refresh_token not in (None, first)  # rotated and stored
    smtp = account_for(mailbox, "outgoing")
    assert "https://outlook.office.com/SMTP.Send" in entra.requests[-1]["scope"].split()
    assert smtp.oauth_token != account.oauth_token


def test_refused_secret_and_expired_grant_are_auth_errors(app, make_user, entra):
    profile = oauth_profile(entra, oauth_client_secret="wrong-secret")
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"))
    with pytest.raises(ConnectorError) as caught:
        account_for(mailbox, "incoming")
    assert caught.value.severity == "auth" and "AADSTS7000215" in caught.value.message
    assert "wrong-secret" not in caught.value.message
    other = make_mailbox(oauth_profile(entra), user=make_user("ann@contoso.example"),
                         oauth_refresh_token="rt-unknown")
    with pytest.raises(ConnectorError) as caught:
        account_for(other, "incoming")
    assert caught.value.severity == "auth" and "expired" in caught.value.message


def test_unreachable_sign_in_service_is_transient(app, make_user, entra):
    profile = oauth_profile(entra)
    profile.settings = {**profile.settings, "oauth_authority": "https://127.0.0.1:9/nobody"}
    mailbox = make_mailbox(profile, user=make_user("sam@contoso.example"))
    with pytest.raises(ConnectorError) as caught:
        account_for(mailbox, "incoming")
    assert caught.value.severity == "mailbox" and caught.value.code == "oauth_unreachable"
