"""Records through the REST API: create, get, update, delete per type; listing with filters,
search, active state, sorting, keyset paging and counts; assign, share, (de)activate; embedded
references without N+1 queries."""
from __future__ import annotations

import pytest

from server.crm.models import Case
from server.crm.registry import RECORD_TYPES
from server.db import db

from .conftest import CHANGES, COLLECTION, SAMPLES, error_of

pytestmark = pytest.mark.both_databases


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_crud_per_record_type(api_client, admin, kind):
    api = api_client(admin)
    base = f"/api/v1/{COLLECTION[kind]}"

    r = api.post(base, json=SAMPLES[kind])
    assert r.status_code == 201, r.get_json()
    created = r.get_json()
    assert r.headers["Location"].endswith(f"{base}/{created['id']}")
    assert created["type"] == kind
    for name, value in SAMPLES[kind].items():
        if name in ("annual_revenue", "estimated_value"):
            assert created[name] == f"{float(value):.2f}"
        else:
            assert created[name] == value
    assert created["owner"] == {"id": admin.id, "type": "user", "name": "Ada Admin"}
    assert created["is_active"] is True

    r = api.get(r.headers["Location"])
    assert r.status_code == 200 and r.get_json() == created

    r = api.patch(f"{base}/{created['id']}", json=CHANGES[kind])
    assert r.status_code == 200, r.get_json()
    for name, value in CHANGES[kind].items():
        expected = f"{value:.2f}" if name == "annual_revenue" else value
        assert r.get_json()[name] == expected
    assert api.get(f"{base}/{created['id']}").get_json()[name] == expected

    r = api.delete(f"{base}/{created['id']}")
    assert r.status_code == 204 and r.data == b""
    assert api.get(f"{base}/{created['id']}").status_code == 404
    db.session.expire_all()
    assert db.session.get(RECORD_TYPES[kind].model, created["id"]) is None


def test_people_get_a_derived_full_name(api_client, admin):
    api = api_client(admin)
    r = api.post("/api/v1/contacts", json={"first_name": "Jo", "last_name": "Smith"})
    assert r.get_json()["full_name"] == "Jo Smith"
    r = api.patch(f"/api/v1/contacts/{r.get_json()['id']}", json={"first_name": "Joanna"})
    assert r.get_json()["full_name"] == "Joanna Smith"
    r = api.patch(f"/api/v1/contacts/{r.get_json()['id']}", json={"full_name": "Nope"})
    assert r.status_code == 400 and "full_name" in error_of(r)["fields"]


def test_refs_are_ids_with_an_embedded_name(api_client, admin):
    api = api_client(admin)
    account = api.post("/api/v1/accounts", json={"name": "Contoso"}).get_json()
    contact = api.post("/api/v1/contacts", json={"last_name": "Smith",
                                                 "parent_account_id": account["id"]}).get_json()
    assert contact["parent_account_id"] == account["id"]
    assert contact["parent_account"] == {"id": account["id"], "type": "account", "name": "Contoso"}
    opp = api.post("/api/v1/opportunities", json={"name": "Deal", "customer_contact_id": contact["id"]})
    assert opp.get_json()["customer_contact"]["name"] == "Smith"
    assert opp.get_json()["customer_account"] is None
    r = api.patch(f"/api/v1/opportunities/{opp.get_json()['id']}",
                  json={"customer_account_id": account["id"]})
    assert r.status_code == 400  # an account or a contact, not both
    assert "customer_contact_id" in error_of(r)["fields"]


def test_a_unique_ticket_number_conflict_is_409(api_client, admin):
    api = api_client(admin)
    assert api.post("/api/v1/cases", json={"title": "One", "ticket_number": "CAS-1"}).status_code == 201
    r = api.post("/api/v1/cases", json={"title": "Two", "ticket_number": "CAS-1"})
    assert r.status_code == 409
    err = error_of(r)
    assert err["code"] == "conflict" and "ticket_number" in err["fields"]
    assert db.session.query(Case).count() == 1
    other = api.post("/api/v1/cases", json={"title": "Three"}).get_json()
    assert other["ticket_number"].startswith("CAS-")
    r = api.patch(f"/api/v1/cases/{other['id']}", json={"ticket_number": "CAS-1"})
    assert r.status_code == 409
    assert api.get(f"/api/v1/cases/{other['id']}").get_json()["ticket_number"] != "CAS-1"


def test_queue_names_are_unique(api_client, admin):
    api = api_client(admin)
    assert api.post("/api/v1/queues", json={"name": "Support"}).status_code == 201
    r = api.post("/api/v1/queues", json={"name": "Support"})
    assert r.status_code == 409 and "name" in error_of(r)["fields"]


# -- listing -----------------------------------------------------------------------------------

@pytest.fixture
def accounts(api_client, admin):
    api = api_client(admin)
    rows = [("Alpha", "Seattle", "100"), ("bravo", "Paris", None), ("Charlie", "Seattle", "300"),
            ("Delta", None, "50"), ("Echo 100%", "Berlin", "300")]
    ids = {}
    for name, city, revenue in rows:
        body = {"name": name, "city": city, "annual_revenue": revenue,
                "email1": f"{name.split()[0].lower()}@example.test"}
        ids[name] = api.post("/api/v1/accounts", json=body).get_json()["id"]
    return api, ids


def _names(r):
    assert r.status_code == 200, r.get_json()
    return [item["name"] for item in r.get_json()["items"]]


def test_list_filters_search_and_active(accounts):
    api, ids = accounts
    assert sorted(_names(api.get("/api/v1/accounts?city=seattle"))) == ["Alpha", "Charlie"]
    assert _names(api.get("/api/v1/accounts?city=")) == ["Delta"]
    assert _names(api.get("/api/v1/accounts?annual_revenue=300&city=Berlin")) == ["Echo 100%"]
    assert _names(api.get("/api/v1/accounts?q=RAV")) == ["bravo"]
    assert _names(api.get("/api/v1/accounts?q=charlie@example")) == ["Charlie"]
    assert _names(api.get("/api/v1/accounts?q=100%25")) == ["Echo 100%"]  # % is literal
    assert _names(api.get("/api/v1/accounts?q=_")) == []  # so is _
    api.post(f"/api/v1/accounts/{ids['Alpha']}/deactivate")
    assert "Alpha" not in _names(api.get("/api/v1/accounts"))
    assert _names(api.get("/api/v1/accounts?active=false")) == ["Alpha"]
    assert len(_names(api.get("/api/v1/accounts?active=all"))) == 5
    r = api.get("/api/v1/accounts?count=true&city=Seattle&active=all")
    assert r.get_json()["total"] == 2
    assert "total" not in api.get("/api/v1/accounts").get_json()


@pytest.mark.parametrize("sort", ["name", "-name", "annual_revenue", "-annual_revenue", "city",
                                  "-city", "id", "-created_on"])
def test_keyset_paging_visits_every_row_once_in_order(accounts, sort):
    api, ids = accounts
    full = api.get(f"/api/v1/accounts?sort={sort}&page_size=200").get_json()["items"]
    assert len(full) == 5
    seen, cursor, pages = [], None, 0
    while True:
        url = f"/api/v1/accounts?sort={sort}&page_size=2" + (f"&cursor={cursor}" if cursor else "")
        body = api.get(url).get_json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == [item["id"] for item in full]
    assert pages == 3
    key = sort.lstrip("-")
    values = [item[key] for item in full if item[key] is not None]
    if key == "annual_revenue":
        values = [float(v) for v in values]
    if key in ("annual_revenue", "id", "created_on"):
        assert values == sorted(values, reverse=sort.startswith("-"))
    if key in ("city", "annual_revenue"):
        assert full[-1][key] is None  # no value sorts last either way


def test_a_cursor_is_tied_to_its_sort(accounts):
    api, _ = accounts
    cursor = api.get("/api/v1/accounts?page_size=2").get_json()["next"]
    r = api.get(f"/api/v1/accounts?sort=-city&cursor={cursor}")
    assert r.status_code == 400 and "cursor" in error_of(r)["fields"]


def test_list_pages_load_references_without_n_plus_1(api_client, admin, make_user, count_queries):
    api = api_client(admin)
    owners = [make_user(roles=["Salesperson"]) for _ in range(3)]
    account_ids = [api.post("/api/v1/accounts", json={"name": f"A{i}"}).get_json()["id"]
                   for i in range(6)]

    def add_contacts(n, start):
        for i in range(start, start + n):
            c = api.post("/api/v1/contacts", json={"last_name": f"C{i:03}",
                                                   "parent_account_id": account_ids[i % 6]})
            api.post(f"/api/v1/contacts/{c.get_json()['id']}/assign",
                     json={"owner": {"type": "user", "id": owners[i % 3].id}})
    add_contacts(3, 0)
    api.get("/api/v1/contacts?page_size=1")  # warm: the caller's roles are loaded once
    with count_queries() as small:
        body = api.get("/api/v1/contacts?page_size=200").get_json()
    assert len(body["items"]) == 3
    add_contacts(27, 3)
    api.get("/api/v1/contacts?page_size=1")
    with count_queries() as large:
        body = api.get("/api/v1/contacts?page_size=200").get_json()
    assert len(body["items"]) == 30
    assert all(item["parent_account"]["name"].startswith("A") for item in body["items"])
    assert {item["owner"]["name"] for item in body["items"]} == {o.full_name for o in owners}
    assert large[0] == small[0]


# -- assign, share, activate -------------------------------------------------------------------

def test_assign_to_a_user_and_to_a_team(api_client, admin, seller, seller2):
    from server.security.models import Team
    team = Team(name="Key accounts", business_unit_id=seller.business_unit_id)
    db.session.add(team)
    db.session.commit()
    api = api_client(seller)
    acc = api.post("/api/v1/accounts", json={"name": "Mine"}).get_json()
    r = api.post(f"/api/v1/accounts/{acc['id']}/assign", json={"owner": {"type": "user", "id": seller2.id}})
    assert r.status_code == 200 and r.get_json()["owner"]["id"] == seller2.id
    # no longer hers: she may read (business unit) but not assign it back
    r = api.post(f"/api/v1/accounts/{acc['id']}/assign", json={"owner": {"type": "user", "id": seller.id}})
    assert r.status_code == 403
    r = api_client(admin).post(f"/api/v1/accounts/{acc['id']}/assign",
                               json={"owner": {"type": "team", "id": team.id}})
    assert r.get_json()["owner"] == {"id": team.id, "type": "team", "name": "Key accounts"}
    r = api_client(admin).post(f"/api/v1/accounts/{acc['id']}/assign",
                               json={"owner": {"type": "user", "id": 99999}})
    assert r.status_code == 400 and error_of(r)["fields"] == {"owner": "No such user."}
    r = api_client(admin).post(f"/api/v1/accounts/{acc['id']}/assign", json={"owner": "me"})
    assert r.status_code == 400


def test_share_grants_and_revokes_access(api_client, seller, outsider):
    owner_api, other_api = api_client(seller), api_client(outsider)
    acc = owner_api.post("/api/v1/accounts", json={"name": "Shared"}).get_json()
    url = f"/api/v1/accounts/{acc['id']}"
    assert other_api.get(url).status_code == 404
    r = owner_api.post(url + "/share", json={"principal": {"type": "user", "id": outsider.id},
                                             "rights": ["read"]})
    assert r.status_code == 200
    assert r.get_json()["principal"]["id"] == outsider.id and r.get_json()["rights"] == ["read"]
    assert other_api.get(url).status_code == 200
    assert other_api.patch(url, json={"city": "Oslo"}).status_code == 403
    owner_api.post(url + "/share", json={"principal": {"type": "user", "id": outsider.id},
                                         "rights": ["read", "write"]})
    assert other_api.patch(url, json={"city": "Oslo"}).status_code == 200
    shares = owner_api.get(url + "/shares").get_json()["items"]
    assert len(shares) == 1 and shares[0]["rights"] == ["read", "write"]
    assert shares[0]["granted_by"]["id"] == seller.id
    # bad rights, and rights the sharer does not hold
    r = owner_api.post(url + "/share", json={"principal": {"type": "user", "id": outsider.id},
                                             "rights": ["fly"]})
    assert r.status_code == 400
    r = owner_api.post(url + "/share", json={"principal": {"type": "user", "id": outsider.id},
                                             "rights": "read"})
    assert r.status_code == 400 and "rights" in error_of(r)["fields"]
    r = owner_api.post(url + "/share", json={"principal": {"type": "user", "id": outsider.id},
                                             "rights": []})
    assert r.status_code == 204
    assert other_api.get(url).status_code == 404
    assert owner_api.get(url + "/shares").get_json()["items"] == []


def test_one_cannot_share_what_one_does_not_hold(api_client, admin, seller, outsider):
    acc = api_client(admin).post("/api/v1/accounts", json={"name": "Admin's"}).get_json()
    r = api_client(seller).post(f"/api/v1/accounts/{acc['id']}/share",
                                json={"principal": {"type": "user", "id": outsider.id},
                                      "rights": ["read"]})
    assert r.status_code == 403  # reads it (business unit) but may not share it


def test_deactivate_and_activate(api_client, seller, seller2):
    api = api_client(seller)
    acc = api.post("/api/v1/accounts", json={"name": "Old"}).get_json()
    r = api.post(f"/api/v1/accounts/{acc['id']}/deactivate")
    assert r.status_code == 200 and r.get_json()["is_active"] is False
    assert api_client(seller2).post(f"/api/v1/accounts/{acc['id']}/activate").status_code == 403
    r = api.post(f"/api/v1/accounts/{acc['id']}/activate", json={})
    assert r.get_json()["is_active"] is True
    r = api.post(f"/api/v1/accounts/{acc['id']}/activate", json={"really": True})
    assert r.status_code == 400
    r = api.patch(f"/api/v1/accounts/{acc['id']}", json={"is_active": False})
    assert r.status_code == 400 and "is_active" in error_of(r)["fields"]
