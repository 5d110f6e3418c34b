"""Who may do what through the REST API: bearer tokens only (expired, revoked, pane tokens,
session cookies refused), the built-in roles' privileges, other business units' records
invisible (404, nothing changed), and field security on reads, writes, filters and sorts."""
from __future__ import annotations

import pytest

from server.crm.models import Account
from server.db import db
from server.security import tokens
from server.security.models import FieldPermission, FieldSecurityProfile, SecuredField

from .conftest import error_of

pytestmark = pytest.mark.both_databases


# -- authentication ------------------------------------------------------------------------------

def test_no_token_is_401_with_a_challenge(client, admin):
    r = client.get("/api/v1/accounts")
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthenticated"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=",
                                    "Bearer rgd_not-a-real-token", "Bearer " + "x" * 500])
def test_bad_tokens_are_401(client, admin, header):
    r = client.get("/api/v1/me", headers={"Authorization": header})
    assert r.status_code == 401 and error_of(r)["code"] == "unauthenticated"


def test_expired_token_says_so(client, admin):
    _, secret = tokens.issue(admin, "old", days=-1)
    db.session.commit()
    r = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401
    assert error_of(r)["code"] == "token_expired"
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_revoked_token_is_refused(client, admin):
    row, secret = tokens.issue(admin, "gone")
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    tokens.revoke(row)
    db.session.commit()
    r = client.get("/api/v1/me", headers=headers)
    assert r.status_code == 401 and error_of(r)["code"] == "unauthenticated"


def test_an_inactive_users_token_is_refused(client, api_client, seller):
    api = api_client(seller)
    seller.is_active = False
    db.session.commit()
    assert api.get("/api/v1/me").status_code == 401


def test_add_in_pane_tokens_do_not_open_the_rest_api(api_client, admin):
    assert api_client(admin, kind="pane").get("/api/v1/me").status_code == 401


def test_a_session_cookie_is_not_enough(signin, admin):
    browser = signin(admin)
    assert browser.get("/api/v1/accounts").status_code == 401
    r = browser.post("/api/v1/accounts", json={"name": "Sneaky"})
    assert r.status_code == 401
    assert db.session.query(Account).count() == 0


def test_csrf_does_not_apply_to_bearer_calls(app, api_client, admin):
    app.config["WTF_CSRF_ENABLED"] = True
    r = api_client(admin).post("/api/v1/accounts", json={"name": "No CSRF token needed"})
    assert r.status_code == 201


def test_the_openapi_document_is_public(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.get_json()["openapi"] == "3.1.0"


# -- built-in roles ------------------------------------------------------------------------------

def test_salesperson_cannot_delete_or_change_anothers_account(api_client, seller, seller2):
    mine = api_client(seller).post("/api/v1/accounts", json={"name": "Sam's"}).get_json()
    other = api_client(seller2)
    url = f"/api/v1/accounts/{mine['id']}"
    assert other.get(url).status_code == 200  # business unit read
    r = other.delete(url)
    assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
    assert other.patch(url, json={"name": "Sue's now"}).status_code == 403
    assert other.post(url + "/assign", json={"owner": {"type": "user", "id": seller2.id}}).status_code == 403
    assert other.post(url + "/deactivate").status_code == 403
    db.session.expire_all()
    assert db.session.get(Account, mine["id"]).name == "Sam's"
    assert api_client(seller).delete(url).status_code == 204


@pytest.mark.parametrize("role,kind,status", [
    ("Customer Service Representative", "opportunities", 403),
    ("Customer Service Representative", "accounts", 403),
    ("Customer Service Representative", "leads", 403),
    ("Customer Service Representative", "queues", 403),
    ("Customer Service Representative", "cases", 201),
    ("Customer Service Representative", "contacts", 201),
    ("Salesperson", "cases", 403),
    ("Salesperson", "queues", 403),
    ("Salesperson", "opportunities", 201),
    ("Sales Manager", "leads", 201),
    ("Sales Manager", "cases", 403),
])
def test_create_privileges_per_role(api_client, make_user, role, kind, status):
    from .conftest import SAMPLES
    user = make_user(roles=[role])
    singular = {"opportunities": "opportunity", "accounts": "account", "leads": "lead",
                "queues": "queue", "cases": "case", "contacts": "contact"}[kind]
    r = api_client(user).post(f"/api/v1/{kind}", json=SAMPLES[singular])
    assert r.status_code == status, r.get_json()
    if status == 403:
        assert error_of(r)["code"] == "forbidden"


def test_sales_manager_reaches_the_units_below(api_client, make_user, make_unit):
    from server.security.bootstrap import root_unit
    child = make_unit("West", parent=root_unit())
    manager = make_user(roles=["Sales Manager"])
    rep = make_user(roles=["Salesperson"], unit=child)
    acc = api_client(rep).post("/api/v1/accounts", json={"name": "West Co"}).get_json()
    boss = api_client(manager)
    assert boss.patch(f"/api/v1/accounts/{acc['id']}", json={"city": "Denver"}).status_code == 200
    assert boss.delete(f"/api/v1/accounts/{acc['id']}").status_code == 204


def test_csr_reads_only_own_opportunities(api_client, admin, csr):
    api = api_client(admin)
    theirs = api.post("/api/v1/opportunities", json={"name": "Admin's deal"}).get_json()
    given = api.post("/api/v1/opportunities", json={"name": "Cory's deal"}).get_json()
    api.post(f"/api/v1/opportunities/{given['id']}/assign", json={"owner": {"type": "user", "id": csr.id}})
    listed = api_client(csr).get("/api/v1/opportunities").get_json()["items"]
    assert [o["name"] for o in listed] == ["Cory's deal"]
    assert api_client(csr).get(f"/api/v1/opportunities/{theirs['id']}").status_code == 404


# -- other business units ------------------------------------------------------------------------

def test_another_units_record_is_404_and_untouched(api_client, admin, outsider):
    acc = api_client(admin).post("/api/v1/accounts", json={"name": "Contoso", "city": "Seattle"}).get_json()
    api = api_client(outsider)
    url = f"/api/v1/accounts/{acc['id']}"
    calls = [("get", url, None), ("patch", url, {"city": "Oslo"}), ("delete", url, None),
             ("post", url + "/assign", {"owner": {"type": "user", "id": outsider.id}}),
             ("post", url + "/share", {"principal": {"type": "user", "id": outsider.id},
                                       "rights": ["read"]}),
             ("get", url + "/shares", None), ("post", url + "/deactivate", None),
             ("post", url + "/activate", None), ("get", url + "/timeline", None)]
    for method, path, body in calls:
        r = getattr(api, method)(path, **({"json": body} if body is not None else {}))
        assert r.status_code == 404, (method, path, r.get_json())
        assert error_of(r)["code"] == "not_found"
    assert api.get("/api/v1/accounts?active=all").get_json()["items"] == []
    assert api.get("/api/v1/accounts?count=true").get_json()["total"] == 0
    db.session.expire_all()
    row = db.session.get(Account, acc["id"])
    assert (row.city, row.owner_user_id, row.is_active) == ("Seattle", acc["owner"]["id"], True)
    # and it cannot be linked to from their records either
    r = api.post("/api/v1/contacts", json={"last_name": "X", "parent_account_id": acc["id"]})
    assert r.status_code == 400 and error_of(r)["fields"]["parent_account_id"] == "No such account."


def test_unknown_ids_and_huge_ids_are_404(api_client, admin):
    api = api_client(admin)
    assert api.get("/api/v1/accounts/424242").status_code == 404
    assert api.get(f"/api/v1/accounts/{10**30}").status_code == 404
    assert api.get("/api/v1/accounts/-1").status_code == 404
    assert api.get("/api/v1/accounts/abc").status_code == 404


# -- field security ------------------------------------------------------------------------------

@pytest.fixture
def secured_revenue(make_user):
    """``account.annual_revenue`` secured; a Finance profile may read and update it."""
    db.session.add(SecuredField(table_name="account", field="annual_revenue"))
    profile = FieldSecurityProfile(name="Finance")
    profile.permissions.append(FieldPermission(table_name="account", field="annual_revenue",
                                               can_read=True, can_update=True, can_create=True))
    db.session.add(profile)
    finance = make_user("fin@contoso.test", roles=["Salesperson"])
    finance.field_profiles.append(profile)
    db.session.commit()
    return finance


def test_a_secured_field_is_absent_and_unwritable_without_access(api_client, admin, seller,
                                                                 secured_revenue):
    acc = api_client(admin).post("/api/v1/accounts", json={"name": "Rich", "annual_revenue": 99}).get_json()
    assert acc["annual_revenue"] == "99.00"  # administrators see every field
    api = api_client(seller)
    url = f"/api/v1/accounts/{acc['id']}"
    body = api.get(url).get_json()
    assert "annual_revenue" not in body and body["name"] == "Rich"
    assert all("annual_revenue" not in item for item in api.get("/api/v1/accounts").get_json()["items"])
    r = api.post("/api/v1/accounts", json={"name": "Mine", "annual_revenue": 5})
    assert r.status_code == 400 and "annual_revenue" in error_of(r)["fields"]
    mine = api.post("/api/v1/accounts", json={"name": "Mine"}).get_json()
    r = api.patch(f"/api/v1/accounts/{mine['id']}", json={"annual_revenue": 5})
    assert r.status_code == 400 and "secured" in error_of(r)["fields"]["annual_revenue"]
    # no filtering or sorting on it either (that would reveal it)
    assert api.get("/api/v1/accounts?annual_revenue=99").status_code == 400
    assert api.get("/api/v1/accounts?sort=annual_revenue").status_code == 400
    db.session.expire_all()
    assert db.session.get(Account, mine["id"]).annual_revenue is None

    fin = api_client(secured_revenue)
    assert fin.get(url).get_json()["annual_revenue"] == "99.00"
    r = fin.post("/api/v1/accounts", json={"name": "Fin's", "annual_revenue": 7})
    assert r.status_code == 201 and r.get_json()["annual_revenue"] == "7.00"
