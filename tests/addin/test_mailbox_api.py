"""The add-in's "my mailbox" API (``/api/addin/mailbox``) against the fake Microsoft Graph
service and its Entra ID token endpoint: a user signed in to the pane with Office SSO
connects their own Exchange Online mailbox (on-behalf-of: the SSO token becomes a refresh
token on their mailbox), which is tested and enabled and then syncs with delegated access;
approval as for administrators; only one's own mailbox; a pane token shows the state but
cannot connect; Entra ID's refusal is a typed error."""
from __future__ import annotations

import pytest

from server.db import db
from server.sync.engine.run import sync_mailbox
from server.sync.models import Mailbox
from tests.addin.test_sso import tenant, token  # noqa: F401 - the SSO tenant (a fixture)
from tests.sync import world as w
from tests.sync.graph.conftest import GraphStore, graph  # noqa: F401 - fake Graph (a fixture)

ANN = "ann@contoso.test"
URL = "/api/addin/mailbox"


@pytest.fixture
def ann(make_user):
    return make_user(ANN, name="Ann Archer")


@pytest.fixture
def store(graph):  # noqa: F811
    return GraphStore(graph, ANN)


def own_mailbox(store, user, approved: bool = True, **fields) -> Mailbox:
    """The mailbox an administrator set up for ``user`` on the Graph profile, not connected."""
    prof = w.profile("graph", **store.profile_fields())
    box = w.mailbox(user, prof=prof, enabled=False, **fields)
    box.email_approved = approved
    db.session.commit()
    return box


def sso_client(client, graph, address=ANN):  # noqa: F811
    """Requests with an Office SSO token for ``address``, one Entra ID also accepts as the
    on-behalf-of assertion."""
    bearer = token(preferred_username=address)
    graph.assertions[bearer] = address.lower()
    headers = {"Authorization": f"Bearer {bearer}"}
    return lambda method, path="": getattr(client, method)(URL + path, headers=headers)


def test_the_user_connects_their_own_mailbox_which_then_syncs(client, tenant, graph, store,  # noqa: F811,E501
                                                              ann):
    box = own_mailbox(store, ann, tracking_option="all_messages")
    call = sso_client(client, graph)
    before = call("get").get_json()
    assert before["can_connect"] and before["mailbox"]["connected"] is False
    answer = call("post", "/connect")
    assert answer.status_code == 200, answer.get_json()
    state = answer.get_json()["mailbox"]
    assert state["connected"] and state["enabled"] and state["incoming_status"] == "success"
    db.session.expire_all()
    box = db.session.get(Mailbox, box.id)
    assert box.oauth_refresh_token and box.enabled
    store.deliver(w.raw(sender="someone@customer.example", mid="pane@x.example"))
    assert sync_mailbox(box.id).status == "success"
    (delegated,) = {t.user for t in graph.tokens.values() if t.kind == "delegated"}
    assert delegated == ANN


def test_approval_is_required_as_for_administrators(client, tenant, graph, store, ann,  # noqa: F811,E501
                                                    make_user):
    w.org().require_email_approval = True
    box = own_mailbox(store, ann, approved=False)
    call = sso_client(client, graph)
    state = call("post", "/connect").get_json()["mailbox"]
    assert state["connected"] and not state["enabled"] and not state["approved"]
    assert "must be approved" in state["disabled_reason"] and not state["can_approve"]
    refused = call("post", "/approve")
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    db.session.refresh(box)
    assert not box.email_approved and not box.enabled


def test_a_user_who_may_approve_addresses_approves_their_own_and_it_is_enabled(
        client, tenant, graph, store, make_user):  # noqa: F811
    boss = make_user(ANN, roles=("System Administrator",))
    w.org().require_email_approval = True
    own_mailbox(store, boss, approved=False)
    call = sso_client(client, graph)
    assert call("post", "/connect").get_json()["mailbox"]["can_approve"]
    state = call("post", "/approve").get_json()["mailbox"]
    assert state["approved"] and state["enabled"]


def test_a_pane_token_shows_the_state_but_cannot_connect(api_client, graph, store, ann):  # noqa: F811,E501
    own_mailbox(store, ann)
    pane = api_client(ann, kind="pane")
    state = pane.get(URL).get_json()
    assert not state["can_connect"] and "single sign-on" in state["why_not"]
    refused = pane.post(URL + "/connect")
    assert refused.status_code == 400 and "single sign-on" in refused.get_json()["error"]["message"]


def test_only_ones_own_mailbox_can_be_connected(client, tenant, graph, store, ann, make_user):  # noqa: F811,E501
    carol = make_user("carol@contoso.test")
    carols = own_mailbox(GraphStore(graph, "carol@contoso.test"), carol)
    call = sso_client(client, graph)
    refused = call("post", "/connect")  # Ann has no mailbox: Carol's is not hers to take
    assert refused.status_code == 403 and "no mailbox for you" in refused.get_json()["error"]["message"]
    db.session.refresh(carols)
    assert carols.oauth_refresh_token is None and call("get").get_json()["mailbox"] is None
    # A mailbox of Ann's whose address is not hers is not hers to connect either.
    own_mailbox(store, ann, email_address="shared-sales@contoso.test")
    refused = call("post", "/connect")
    assert refused.status_code == 403 and "only your own mailbox" in refused.get_json()["error"]["message"]


def test_entra_id_refusing_the_exchange_is_a_typed_error(client, tenant, graph, store, ann):  # noqa: F811,E501
    box = own_mailbox(store, ann)
    bearer = token(preferred_username=ANN)  # not an assertion Entra ID accepts
    answer = client.post(URL + "/connect", headers={"Authorization": f"Bearer {bearer}"})
    assert answer.status_code == 409
    error = answer.get_json()["error"]
    assert error["code"] == "connect_failed" and "Assertion is invalid" in error["message"]
    db.session.refresh(box)
    assert box.oauth_refresh_token is None and not box.enabled


def test_disconnecting_forgets_the_access_and_stops_the_sync(client, tenant, graph, store, ann):  # noqa: F811,E501
    box = own_mailbox(store, ann)
    call = sso_client(client, graph)
    assert call("post", "/connect").get_json()["mailbox"]["enabled"]
    state = call("post", "/disconnect").get_json()["mailbox"]
    assert not state["connected"] and not state["enabled"]
    db.session.refresh(box)
    assert box.oauth_refresh_token is None
