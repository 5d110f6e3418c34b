"""``/api/v1/resolve`` (records behind addresses, never leaking ones the caller may not read)
and ``/api/v1/me`` (the caller, roles and privileges)."""
from __future__ import annotations

import pytest

from .conftest import error_of

pytestmark = pytest.mark.both_databases


def _results(r):
    assert r.status_code == 200, r.get_json()
    return {item["address"]: item for item in r.get_json()["results"]}


def test_resolve_shows_only_readable_records(api_client, admin, seller, outsider):
    api = api_client(admin)
    api.post("/api/v1/contacts", json={"last_name": "Smith", "email1": "jo@contoso.test"})
    api.post("/api/v1/accounts", json={"name": "Contoso", "email1": "info@contoso.test"})
    url = ("/api/v1/resolve?address=JO@Contoso.test&address=info@contoso.test"
           f"&address={seller.email}&address=nobody@nowhere.test&address=not-an-address")
    mine = _results(api.get(url))
    assert [m["type"] for m in mine["JO@Contoso.test"]["matches"]] == ["contact"]
    assert mine["JO@Contoso.test"]["normalized"] == "jo@contoso.test"
    assert mine["info@contoso.test"]["matches"][0]["name"] == "Contoso"
    assert mine[seller.email]["matches"][0] == {"type": "user", "id": seller.id,
                                                "name": "Sam Seller", "is_active": True}
    assert mine["nobody@nowhere.test"] == {"address": "nobody@nowhere.test", "resolved": False,
                                           "normalized": "nobody@nowhere.test", "matches": []}
    assert mine["not-an-address"]["normalized"] is None
    assert not mine["not-an-address"]["resolved"]

    theirs = _results(api_client(outsider).get(url))
    assert theirs["JO@Contoso.test"]["resolved"] is False  # another unit's contact
    assert theirs["JO@Contoso.test"]["matches"] == []
    assert theirs["info@contoso.test"]["resolved"] is False
    assert theirs[seller.email]["resolved"] is True  # users are readable organization-wide


def test_resolve_reads_the_records_of_every_type_in_one_query_under_field_security(
        api_client, admin, seller):
    """The records behind the addresses are read for the caller in one statement, a branch
    per record type (``records.visible_matches``; ``resolve`` read their index rows and
    states in another); an address held only in an email field the caller may not read
    stays unresolved, one in a field they may read resolves."""
    from sqlalchemy import event
    from server.db import db
    from server.security.models import SecuredField
    api = api_client(admin)
    api.post("/api/v1/contacts", json={"last_name": "Smith", "email1": "jo@contoso.test",
                                       "email2": "smith@contoso.test"})
    api.post("/api/v1/accounts", json={"name": "Contoso", "email1": "info@contoso.test"})
    api.post("/api/v1/leads", json={"last_name": "Lee", "company_name": "Lee Co",
                                    "email1": "lee@lee.test"})
    db.session.add(SecuredField(table_name="contact", field="email1"))
    db.session.commit()
    reads = []

    def listen(conn, cursor, statement, parameters, context, executemany):
        if any(f"FROM {table}" in statement for table in ("contact", "account", "lead")):
            reads.append(statement)
    event.listen(db.engine, "before_cursor_execute", listen)
    try:
        found = _results(api_client(seller).get(
            "/api/v1/resolve?address=jo@contoso.test&address=smith@contoso.test"
            f"&address=info@contoso.test&address=lee@lee.test&address={admin.email}"))
    finally:
        event.remove(db.engine, "before_cursor_execute", listen)
    assert len(reads) == 2 and all("UNION ALL" in read and "FROM lead" in read for read in reads)
    assert found["jo@contoso.test"]["matches"] == []  # only in the secured email1
    assert [(m["type"], m["name"]) for m in found["smith@contoso.test"]["matches"]] == [
        ("contact", "Smith")]
    assert found["info@contoso.test"]["matches"][0]["name"] == "Contoso"
    assert found["lee@lee.test"]["matches"][0]["type"] == "lead"
    assert found[admin.email]["matches"][0]["type"] == "user"


def test_resolve_input_limits(api_client, admin):
    api = api_client(admin)
    r = api.get("/api/v1/resolve")
    assert r.status_code == 400 and "address" in error_of(r)["fields"]
    many = "&".join(f"address=a{i}@x.test" for i in range(101))
    assert api.get(f"/api/v1/resolve?{many}").status_code == 400
    assert api.get("/api/v1/resolve?address=" + "a" * 400 + "@x.test").status_code == 400
    assert api.get("/api/v1/resolve?addresses=a@x.test").status_code == 400
    r = api.get("/api/v1/resolve?address=a@x.test&address=a@x.test")
    assert len(r.get_json()["results"]) == 1


def test_me_lists_roles_and_privileges(api_client, seller):
    body = api_client(seller).get("/api/v1/me").get_json()
    assert body["id"] == seller.id and body["email"] == seller.email
    assert [r["name"] for r in body["roles"]] == ["Salesperson"]
    assert body["is_admin"] is False
    assert "track_email" in body["named_privileges"]
    assert "view_sync_dashboard" not in body["named_privileges"]
    assert body["privileges"]["account"]["read"] == "business_unit"
    assert body["privileges"]["account"]["delete"] == "user"
    assert "create" not in body["privileges"].get("case", {})
    assert body["business_unit"]["id"] == seller.business_unit_id
