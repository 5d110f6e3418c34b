"""The pane's statements run prepared on PostgreSQL (``server.db.prepared_statement``), and
PostgreSQL plans a prepared statement once for every later run after its first five: such a
plan still answers for the principal of each call. A privilege, a share, a field permission
or the add-in privilege removed applies to the very next call however often the statements
ran before; and only the statements marked are prepared (never the related lists, whose
timeline branch is skewed)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, text

from server.crm.services import records
from server.db import db
from server.security import authz
from server.security.models import Role, RolePrivilege, SecuredField
from server.security.privileges import Depth
from tests.addin import addin_world as aw
from tests.addin.addin_world import message, person

pytestmark = pytest.mark.both_databases

RUNS = 8  # PostgreSQL weighs a generic plan from a prepared statement's sixth run


@pytest.fixture
def world(app):
    return aw.build()


def _context(client, item) -> tuple[int, dict]:
    response = client.post("/api/addin/context", json={"item": item})
    return response.status_code, response.get_json()


def _warm(client, item) -> dict:
    for _ in range(RUNS):
        status, body = _context(client, item)
        assert status == 200, body
    return body


def _parties(body: dict) -> dict[str, dict]:
    return {p["address"]: p for p in body["parties"]}


def _grant(role: str, privilege: str) -> RolePrivilege:
    role_id = db.session.scalar(select(Role.id).where(Role.name == role))
    return db.session.get(RolePrivilege, (role_id, privilege))


def test_removed_read_depth_and_share_apply_to_the_next_call(world, api_client):
    client = api_client(world.ann, kind="pane")
    item = message(cc=[person("carol@fabrikam.test"), person("dave@litware.test")])
    records.share(authz.principal(world.bob), world.dave, world.ann, {"read"})
    db.session.commit()
    parties = _parties(_warm(client, item))
    assert parties["dave@litware.test"]["status"] == "resolved"  # shared with ann
    assert parties["carol@fabrikam.test"]["status"] == "resolved"

    records.share(authz.principal(world.bob), world.dave, world.ann, set())  # unshare
    db.session.commit()
    parties = _parties(_context(client, item)[1])
    assert parties["dave@litware.test"]["status"] == "unresolved"

    _warm(client, item)
    _grant("Salesperson", "contact.read").depth = Depth.NONE
    db.session.commit()
    parties = _parties(_context(client, item)[1])
    assert parties["carol@fabrikam.test"]["status"] == "unresolved"


def test_a_field_put_under_security_is_hidden_on_the_next_call(world, api_client):
    client = api_client(world.ann, kind="pane")
    item = message(cc=[person("carol@fabrikam.test")])
    card = _parties(_warm(client, item))["carol@fabrikam.test"]["matches"][0]["card"]
    assert card["phone"] == "+1 555 0123"
    db.session.add(SecuredField(table_name="contact", field="phone"))
    db.session.commit()
    card = _parties(_context(client, item)[1])["carol@fabrikam.test"]["matches"][0]["card"]
    assert card["phone"] is None


def test_the_addin_privilege_removed_refuses_the_next_call(world, api_client):
    client = api_client(world.ann, kind="pane")
    item = message(cc=[person("carol@fabrikam.test")])
    _warm(client, item)
    db.session.delete(_grant("Salesperson", "use_outlook_addin"))
    db.session.commit()
    status, body = _context(client, item)
    assert (status, body["error"]["code"]) == (403, "forbidden")


def test_only_the_marked_statements_are_prepared(world, api_client, db_backend):
    """On PostgreSQL: the token, principal, settings, address, card and tracking statements
    are prepared and planned generically once warm; the related lists are not prepared."""
    if db_backend != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    client = api_client(world.ann, kind="pane")
    body = _warm(client, message(cc=[person("carol@fabrikam.test")]))
    assert body["related"]["for"]["name"] == "Carol Customer"  # the lists statement ran
    rows = db.session.execute(text(
        "SELECT statement, generic_plans FROM pg_prepared_statements WHERE from_sql IS FALSE")).all()
    prepared = {" ".join(statement.split()): generic for statement, generic in rows}
    token = [generic for s, generic in prepared.items() if "WHERE api_token.token_hash" in s]
    assert token and token[0] > 0, prepared  # planned once, run since with that plan
    assert any("email_address.address = ANY" in s for s in prepared), prepared
    assert any("organization.resolve_inactive_records" in s for s in prepared), prepared
    assert not any(s.startswith("WITH") or "activity_party" in s for s in prepared), prepared
