"""The service-level matrix seen through the REST API: what a list returns, and which
updates and deletes answer 200/204, 403 or 404, for every built-in role and record type.
(The API's own tests cover its shapes; this checks it adds no hole to the services.)"""
from __future__ import annotations

import pytest

from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security.models import SecuredField
from server.security.privileges import BUILTIN_ROLES
from tests.security import world as w

pytest.importorskip("server.web.api")

ROLES = tuple(BUILTIN_ROLES)


def url(table: str, record_id: int | None = None) -> str:
    base = "/api/v1/" + RECORD_TYPES[table].plural.lower().replace(" ", "_")
    return base if record_id is None else f"{base}/{record_id}"


def expected_status(read_ok: bool, priv_ok: bool, success: int) -> int:
    return success if priv_ok else 403 if read_ok else 404


@pytest.mark.parametrize("table", list(RECORD_TYPES))
@pytest.mark.parametrize("role", ROLES)
def test_the_api_follows_the_matrix(app, api_client, role, table):
    world = w.build([role])
    rows = {owner: w.make_record(table, world.owners[owner]) for owner in w.OWNERS}
    doomed = {owner: w.make_record(table, world.owners[owner], "doomed") for owner in w.OWNERS}
    db.session.commit()
    ids = {owner: r.id for owner, r in rows.items()}
    doomed_ids = {owner: r.id for owner, r in doomed.items()}
    client = api_client(world.me)
    depth = {priv: w.role_depth(role, table, priv) for priv in ("read", "write", "delete")}

    listed = client.get(url(table), query_string={"page_size": 100})
    assert listed.status_code == 200, listed.get_json()
    got = {item["id"] for item in listed.get_json()["items"]}
    want = {ids[o] for o in w.OWNERS if w.allowed(depth["read"], o)} | \
        {doomed_ids[o] for o in w.OWNERS if w.allowed(depth["read"], o)}
    assert got == want

    for owner in w.OWNERS:
        can_read = w.allowed(depth["read"], owner)
        r = client.get(url(table, ids[owner]))
        assert r.status_code == (200 if can_read else 404), (owner, r.get_json())
        r = client.patch(url(table, ids[owner]), json={"description": "changed"})
        assert r.status_code == expected_status(can_read, w.allowed(depth["write"], owner), 200), \
            (owner, r.get_json())
        r = client.delete(url(table, doomed_ids[owner]))
        assert r.status_code == expected_status(can_read, w.allowed(depth["delete"], owner), 204), \
            (owner, r.status_code)
    db.session.expire_all()
    model = w.MODELS[table]
    for owner in w.OWNERS:
        changed = db.session.get(model, ids[owner]).description == "changed"
        assert changed == w.allowed(depth["write"], owner), owner
        gone = db.session.get(model, doomed_ids[owner]) is None
        assert gone == w.allowed(depth["delete"], owner), owner


def test_the_api_hides_secured_fields(app, api_client):
    world = w.build(["Salesperson"])
    db.session.add(SecuredField(table_name="contact", field="mobile_phone"))
    contact = w.make_record("contact", world.me)
    contact.mobile_phone = "+1 555 0199"
    db.session.commit()
    client = api_client(world.me)
    body = client.get(url("contact", contact.id)).get_json()
    assert "mobile_phone" not in body and "+1 555 0199" not in str(body)
    listed = client.get(url("contact")).get_json()
    assert "+1 555 0199" not in str(listed)
    assert client.get(url("contact"), query_string={"q": "0199"}).get_json()["items"] == []
    r = client.patch(url("contact", contact.id), json={"mobile_phone": "+1 555 0000"})
    assert r.status_code == 400
    r = client.get(url("contact"), query_string={"mobile_phone": "+1 555 0199"})
    assert r.status_code == 400
    db.session.expire_all()
    assert db.session.get(w.MODELS["contact"], contact.id).mobile_phone == "+1 555 0199"
