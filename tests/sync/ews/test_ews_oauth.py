"""EWS with OAuth: a server profile whose ``auth_method`` is ``oauth2`` signs in to the fake
Exchange endpoint with a bearer token that msal obtained from the fake Entra ID token
endpoint (tests/fakes/graph.py), app-only (client credentials, scope
``https://outlook.office365.com/.default``, the mailbox impersonated) or delegated (the
mailbox's refresh token, ``EWS.AccessAsUser.All``). The fake EWS asks the issuer whether it
issued the token for Exchange and whether it is still valid. Tokens are cached, renewed
before they expire (in the middle of a session too), and a refused token ends in an alert
that says what to fix."""
from __future__ import annotations

import time

import pytest
from sqlalchemy import select

from server.db import db
from server.sync.engine import accounts
from server.sync.connectors.ews import EwsConnector
from server.sync.engine.run import sync_mailbox
from server.sync.models import Alert, Mailbox
from tests.sync import world as w
from tests.sync.ews.conftest import BOB
from tests.sync.ews.test_ews_engine import EwsStore, tracks_a_customer_email
from tests.sync.graph.conftest import graph  # noqa: F401 - the fake Entra ID (a fixture)


@pytest.fixture(autouse=True)
def loopback_http(monkeypatch):
    """The fake EWS is served over plain http on loopback; requests-oauthlib sends bearer
    tokens over https only unless told otherwise (here, in the test only)."""
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


class OAuthEwsStore(EwsStore):
    """Bob's mailbox on the fake Exchange, signed in to with Entra ID tokens."""

    def __init__(self, exchange, graph):
        super().__init__(exchange)
        self.graph = graph
        exchange.token_issuer = graph

    def profile_fields(self) -> dict:
        return {"outgoing_protocol": "ews", "auth_method": "oauth2",
                "oauth_tenant": self.graph.tenant, "oauth_client_id": self.graph.client_id,
                "oauth_client_secret": self.graph.client_secret,
                "settings": {"ews_url": self.exchange.url,
                             "authority_url": self.graph.authority,
                             "oauth_ca_file": str(self.graph.cert.cert_path)}}

    def mailbox_fields(self) -> dict:
        return {}


@pytest.fixture
def store(exchange, graph):  # noqa: F811 - graph is the fixture imported above
    return OAuthEwsStore(exchange, graph)


def alert_of(box: Mailbox) -> Alert:
    return db.session.scalar(select(Alert).where(Alert.mailbox_id == box.id))


def test_app_only_token_syncs_the_mailbox_and_is_cached(crm, store, graph):  # noqa: F811
    box = tracks_a_customer_email(crm, store, "oauth@x.example")
    assert sync_mailbox(box.id).status == "success"
    assert graph.stats["token"] == 1  # the second run used the cached token
    app_tokens = [t for t in graph.tokens.values() if t.audience.endswith("office365.com")]
    assert [t.kind for t in app_tokens] == ["app"]


def test_delegated_token_reaches_the_users_own_mailbox(crm, store, graph):  # noqa: F811
    refresh = "rt-bob"
    graph.refresh_tokens[refresh] = BOB
    box = tracks_a_customer_email(crm, store, "mine@x.example", oauth_refresh_token=refresh)
    (token,) = [t for t in graph.tokens.values() if t.audience.endswith("office365.com")]
    assert (token.kind, token.user, token.roles) == ("delegated", BOB, ("EWS.AccessAsUser.All",))
    db.session.refresh(box)
    assert box.oauth_refresh_token != refresh  # the rotated refresh token was kept


def test_a_token_is_renewed_before_it_expires_in_a_long_session(crm, store, graph):  # noqa: F811
    graph.token_lifetime = 4  # renewed halfway: after 2 seconds
    box = w.store_mailbox(store, crm.bob)
    with EwsConnector(accounts.account_for(box, "incoming")) as ews:
        inbox = ews.folder_by_role("inbox")
        time.sleep(2.5)
        store.deliver(w.raw(mid="late@x.example"))
        changes = ews.fetch_changes(inbox, None)
    assert [m.ref for m in changes.messages] and graph.stats["token"] == 2


def test_a_token_refused_before_it_expires_is_replaced_once(crm, store, graph):  # noqa: F811
    box = w.store_mailbox(store, crm.bob)
    assert sync_mailbox(box.id).status == "success"
    graph.expire_tokens()  # revoked: our cache still holds it
    result = sync_mailbox(box.id)
    assert result.status == "success", result.reason
    assert graph.stats["token"] == 2


def test_an_app_without_ews_permission_is_disabled_with_what_to_fix(crm, store, graph):  # noqa: F811,E501
    graph.ews_app_roles = ()  # no admin consent for full_access_as_app
    box = w.store_mailbox(store, crm.bob)
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled and not box.enabled
    alert = alert_of(box)
    assert result.error_code == "impersonation_denied", alert.message
    assert "full_access_as_app" in alert.message and "admin consent" in alert.message


def test_a_wrong_client_secret_is_disabled_with_what_to_fix(crm, store, graph):  # noqa: F811
    box = w.store_mailbox(store, crm.bob)
    box.server_profile.oauth_client_secret = "not-the-secret"
    db.session.commit()
    result = sync_mailbox(box.id)
    db.session.refresh(box)
    assert result.status == "failure" and result.disabled
    alert = alert_of(box)
    assert result.error_code == "oauth_failed", alert.message
    assert "Invalid client secret" in alert.message and "the app of" in alert.message
    assert "not-the-secret" not in alert.message
