"""The add-in API through the Flask test client: authentication and the add-in privilege,
the one-round-trip context (parties, cards, field security, related data, query count),
related, search, quick create, strict payload parsing and typed errors, pane tokens."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from server.addin import actions
from server.crm.services import records
from server.crm.registry import RECORD_TYPES
from server.crm.activities import PhoneCall, Task
from server.crm.models import Contact, Lead, Organization
from server.db import db, utcnow
from server.errors import Forbidden
from server.security import authz
from server.security.bootstrap import create_user
from server.security.privileges import Depth
from server.security.models import (ApiToken, FieldPermission, FieldSecurityProfile, Role,
                                    RolePrivilege, SecuredField)
from tests.addin import addin_world as aw
from tests.addin.addin_world import QueryCounter, message, person

pytestmark = pytest.mark.both_databases


@pytest.fixture
def world(app):
    return aw.build()


@pytest.fixture
def pane(app, api_client):
    """``pane(user)`` → a client holding a pane token for that user."""
    return lambda user: api_client(user, kind="pane")


def ok(response, status=200):
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    return response.get_json()


def error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)[:800]
    body = response.get_json()["error"]
    assert body["code"] == code, body
    return body


def secure(table: str, field: str, *, readers=()) -> None:
    """Put a field under field security; ``readers`` get a profile that may read it."""
    db.session.add(SecuredField(table_name=table, field=field))
    if readers:
        profile = FieldSecurityProfile(name=f"{table}.{field} readers")
        profile.permissions.append(FieldPermission(table_name=table, field=field, can_read=True))
        db.session.add(profile)
        for user in readers:
            user.field_profiles.append(profile)
    db.session.commit()


# -- authentication and the add-in privilege ----------------------------------------------------

ENDPOINTS = [
    ("post", "/api/addin/context", {"item": message()}),
    ("get", "/api/addin/related/account/1", None),
    ("post", "/api/addin/track", {"item": message(), "regarding": None}),
    ("put", "/api/addin/regarding", {"internet_message_id": "<m1@fabrikam.test>", "regarding": None}),
    ("post", "/api/addin/untrack", {"internet_message_id": "<m1@fabrikam.test>", "delete_copy": False}),
    ("get", "/api/addin/search?q=fab", None),
    ("post", "/api/addin/records/contact", {"fields": {"last_name": "X"}}),
    ("post", "/api/addin/activities/task", {"fields": {"subject": "Call back"}}),
    ("post", "/api/addin/pending", {"item": message(mode="compose"), "regarding": None}),
    ("post", "/api/addin/signout", None),
]


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
def test_every_endpoint_needs_the_addin_privilege(world, pane, method, path, body):
    client = pane(world.noaddin)
    r = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    error(r, 403, "forbidden")
    assert db.session.scalar(select(Contact).where(Contact.last_name == "X")) is None


@pytest.mark.parametrize("method, path, body", ENDPOINTS)
def test_every_endpoint_needs_a_token(world, client, method, path, body):
    r = getattr(client, method)(path, **({"json": body} if body is not None else {}))
    error(r, 401, "unauthenticated")


def test_api_tokens_are_not_pane_tokens(world, api_client):
    error(api_client(world.ann).post("/api/addin/context", json={"item": message()}),
          401, "unauthenticated")


def test_an_expired_pane_token_asks_for_a_refresh(world, pane):
    client = pane(world.ann)
    row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == world.ann.id))
    row.expires_on = utcnow() - timedelta(minutes=1)
    db.session.commit()
    error(client.post("/api/addin/context", json={"item": message()}), 401, "token_expired")


def test_no_csrf_token_is_needed_with_a_bearer_token(app, world, pane):
    app.config["WTF_CSRF_ENABLED"] = True
    assert app.test_client().post("/signout").status_code == 400  # forms do need one
    ok(pane(world.ann).post("/api/addin/context", json={"item": message()}))
    ok(pane(world.ann).post("/api/addin/activities/task", json={"fields": {"subject": "x"}}), 201)


def test_signout_revokes_the_pane_token(world, pane):
    client = pane(world.ann)
    assert ok(client.post("/api/addin/signout")) == {"signed_out": True}
    error(client.post("/api/addin/context", json={"item": message()}), 401, "unauthenticated")


def test_issue_pane_token_for_the_signin_dialog(world, client):
    secret, expires_on = actions.issue_pane_token(world.ann)
    db.session.commit()
    assert secret.startswith("rgp_")
    assert timedelta(hours=7, minutes=59) < expires_on - utcnow() <= timedelta(hours=8)
    r = client.post("/api/addin/context", json={"item": message()},
                    headers={"Authorization": f"Bearer {secret}"})
    assert ok(r)["user"]["email"] == "ann@contoso.test"
    row = db.session.scalar(select(ApiToken).where(ApiToken.user_id == world.ann.id))
    assert row.kind == "pane" and row.token_hash != secret  # only the hash is stored
    with pytest.raises(Forbidden):
        actions.issue_pane_token(world.noaddin)


def test_issuing_a_pane_token_drops_long_expired_ones(world):
    old, _ = actions.issue_pane_token(world.ann)
    db.session.execute(ApiToken.__table__.update().values(expires_on=utcnow() - timedelta(days=2)))
    actions.issue_pane_token(world.ann)
    db.session.commit()
    assert db.session.scalar(select(ApiToken.id).where(ApiToken.user_id == world.ann.id).limit(2)) is not None
    assert len(db.session.scalars(select(ApiToken).where(ApiToken.user_id == world.ann.id)).all()) == 1


# -- the context call ----------------------------------------------------------------------------

def test_context_resolves_parties_with_cards(world, pane):
    item = message(cc=[person("dave@litware.test", "Dave Distant"), person("lee@startup.test", "Lee"),
                       person("tess@contoso.test", "Tess"), person("new@unknown.test", "New Person")])
    data = ok(pane(world.ann).post("/api/addin/context", json={"item": item}))
    assert data["user"] == {"id": world.ann.id, "name": "Ann Archer", "email": "ann@contoso.test"}
    by_address = {p["address"]: p for p in data["parties"]}
    assert [p["role"] for p in data["parties"]] == ["from", "to", "cc", "cc", "cc", "cc"]

    carol = by_address["carol@fabrikam.test"]
    assert carol["status"] == "resolved"
    [match] = carol["matches"]
    assert match["type"] == "contact" and match["id"] == world.carol.id
    assert match["name"] == "Carol Customer"
    assert match["url"] == f"/r/contact/{world.carol.id}" or match["url"] is None
    assert match["card"] == {"job_title": "Buyer", "email": "carol@fabrikam.test",
                             "phone": "+1 555 0123", "owner": "Ann Archer", "company": None,
                             "account": {"id": world.fabrikam.id, "name": "Fabrikam",
                                         "url": match["card"]["account"]["url"]}}
    assert by_address["ann@contoso.test"]["status"] == "self"
    # Dave is Bob's contact in another business unit: Ann may not read him.
    assert by_address["dave@litware.test"] == {"role": "cc", "name": "Dave Distant",
                                               "address": "dave@litware.test",
                                               "status": "unresolved", "matches": []}
    lee = by_address["lee@startup.test"]["matches"][0]
    assert lee["type"] == "lead" and lee["card"]["company"] == "Startup Inc"
    tess = by_address["tess@contoso.test"]["matches"][0]
    assert tess["type"] == "user" and tess["card"]["job_title"] == "Account manager"
    assert by_address["new@unknown.test"]["status"] == "unresolved"

    assert data["tracking"] == {"status": "not_tracked", "activity_id": None, "regarding": None,
                                "reason": None, "url": None, "copy_url": None}
    related = data["related"]
    assert related["for"]["type"] == "contact" and related["for"]["id"] == world.carol.id
    assert related["parent_account"]["id"] == world.fabrikam.id
    assert related["open_opportunities"] == []  # Carol is not the opportunity's customer
    assert data["can"] == {"track": True, "create_account": True, "create_contact": True, "create_lead": True,
                           "create_opportunity": True, "create_case": False,
                           "create_task": True, "create_phone_call": True}
    assert data["org"] == {"use_tracking_token": True, "tracking_token_prefix": "CRM:",
                           "attachment_max_bytes": 5 * 1024 * 1024}


def test_the_other_unit_sees_dave_but_not_carol(world, pane):
    item = message(to=[person("dave@litware.test")], user_address="bob@contoso.test")
    data = ok(pane(world.bob).post("/api/addin/context", json={"item": item}))
    statuses = {p["address"]: p["status"] for p in data["parties"]}
    assert statuses == {"carol@fabrikam.test": "unresolved", "dave@litware.test": "resolved"}
    assert data["related"]["for"]["id"] == world.dave.id


def test_related_data_for_an_account_sender(world, pane):
    item = message(**{"from": person("info@fabrikam.test", "Fabrikam")})
    related = ok(pane(world.ann).post("/api/addin/context", json={"item": item}))["related"]
    assert related["for"] == {"type": "account", "id": world.fabrikam.id, "name": "Fabrikam",
                              "url": related["for"]["url"]}
    [opp] = related["open_opportunities"]
    assert opp["id"] == world.opportunity.id and opp["estimated_value"] == "12000.00"
    assert opp["status"] == "open"
    [case] = related["open_cases"]
    assert case["ticket_number"] == "CAS-00001" and case["title"] == "Broken widget"


def test_cards_obey_field_security(world, pane):
    secure("contact", "job_title")
    secure("contact", "phone", readers=[world.teammate])
    secure("opportunity", "estimated_value")
    for_ann = ok(pane(world.ann).post("/api/addin/context", json={"item": message()}))
    card = for_ann["parties"][0]["matches"][0]["card"]
    assert card["job_title"] is None and card["phone"] is None
    assert card["email"] == "carol@fabrikam.test"
    teammate_item = message(user_address="tess@contoso.test", to=[person("tess@contoso.test")])
    card = ok(pane(world.teammate).post("/api/addin/context", json={"item": teammate_item}))[
        "parties"][0]["matches"][0]["card"]
    assert card["job_title"] is None and card["phone"] == "+1 555 0123"
    admin_item = message(user_address="root@contoso.test")
    card = ok(pane(world.admin).post("/api/addin/context", json={"item": admin_item}))[
        "parties"][0]["matches"][0]["card"]
    assert card["job_title"] == "Buyer"  # System Administrators see secured fields
    related = ok(pane(world.ann).get(f"/api/addin/related/account/{world.fabrikam.id}"))["related"]
    assert related["open_opportunities"][0]["estimated_value"] is None


def test_hidden_parent_account_link_is_not_shown(world, pane):
    secure("contact", "parent_account_id")
    card = ok(pane(world.ann).post("/api/addin/context", json={"item": message()}))[
        "parties"][0]["matches"][0]["card"]
    assert card["account"] is None


def test_hostile_names_and_subjects_are_data(world, pane):
    hostile = '<img src=x onerror=alert(1)>"\'&</script>'
    item = message(subject=hostile, **{"from": person("carol@fabrikam.test", hostile + "\x00\x07")})
    r = pane(world.ann).post("/api/addin/context", json={"item": item})
    data = ok(r)
    assert r.mimetype == "application/json"
    assert data["parties"][0]["name"] == hostile  # control characters dropped, the rest kept


def test_context_query_count_does_not_grow_with_recipients(world, pane, app):
    client = pane(world.ann)
    extra = []
    for n in range(20):
        contact = Contact(first_name="P", last_name=f"Person {n}", full_name=f"P Person {n}",
                          email1=f"p{n}@fabrikam.test", owner_user_id=world.ann.id,
                          owning_business_unit_id=world.ann.business_unit_id,
                          parent_account_id=world.fabrikam.id if n % 2 else None)
        extra.append(contact)
    lead = Lead(last_name="L", full_name="L", email1="l@x.test", owner_user_id=world.teammate.id,
                owning_business_unit_id=world.ann.business_unit_id)
    db.session.add_all(extra + [lead])
    db.session.commit()

    def statements(recipients):
        with QueryCounter(db.engine) as counter:
            ok(client.post("/api/addin/context", json={"item": message(cc=recipients)}))
        return counter.statements

    statements([])  # the first use of a token records when it was used
    statements([])  # the first with the security stamp keeps the principal (stamp.py)
    few = statements([person("p0@fabrikam.test"), person("l@x.test"), person("dave@litware.test"),
                      person("tess@contoso.test")])
    many = statements([person(f"p{n}@fabrikam.test") for n in range(20)] +
                      [person("l@x.test"), person("dave@litware.test"), person("tess@contoso.test")])
    assert len(many) == len(few), "\n".join(many)
    many = len(many)
    assert many <= 30  # authentication, principal, resolution, cards, tracking, related


def test_a_managers_context_call_costs_no_statement_for_the_unit_tree(world, pane):
    """The business-unit tree a parent-child scope walks is kept with the principal's grants
    (server/security/stamp.py): a Sales Manager's call runs as many statements as a
    Salesperson's (one more before)."""
    manager = create_user("mia@contoso.test", "Mia Manager", unit=world.ann.business_unit,
                          roles=["Sales Manager"])
    db.session.commit()
    item = message(cc=[person("carol@fabrikam.test"), person("dave@litware.test")])
    counts = {}
    for user in (world.ann, manager):
        client = pane(user)
        for _ in range(2):  # the token's first use; the first call with the stamp
            ok(client.post("/api/addin/context", json={"item": item}))
        with QueryCounter(db.engine) as counter:
            ok(client.post("/api/addin/context", json={"item": item}))
        counts[user.email] = counter.statements
    assert len(counts["mia@contoso.test"]) == len(counts["ann@contoso.test"]), counts


def test_the_context_follows_privilege_changes_at_once(world, pane):
    """Statements are built once per principal scope: a changed depth, a share or a disabled
    user applies to the very next call."""
    client = pane(world.ann)
    item = message(cc=[person("dave@litware.test")])

    def dave() -> str:
        parties = ok(client.post("/api/addin/context", json={"item": item}))["parties"]
        return {p["address"]: p["status"] for p in parties}["dave@litware.test"]

    assert dave() == "unresolved"  # Bob's contact in another unit
    role = db.session.scalar(select(Role).where(Role.name == "Salesperson"))
    grant = db.session.get(RolePrivilege, (role.id, "contact.read"))
    before, grant.depth = grant.depth, Depth.ORGANIZATION
    db.session.commit()
    assert dave() == "resolved"
    grant.depth = before
    db.session.commit()
    assert dave() == "unresolved"
    records.share(authz.principal(world.bob), world.dave, world.ann, {"read"})
    db.session.commit()
    assert dave() == "resolved"
    world.ann.is_active = False
    db.session.commit()
    error(client.post("/api/addin/context", json={"item": item}), 401, "unauthenticated")


# -- related ---------------------------------------------------------------------------------------

def test_related_for_a_chosen_record(world, pane):
    client = pane(world.ann)
    related = ok(client.get(f"/api/addin/related/opportunity/{world.opportunity.id}"))["related"]
    assert related["for"]["id"] == world.opportunity.id
    assert related["parent_account"]["id"] == world.fabrikam.id
    assert related["open_opportunities"] == []  # the opportunity itself is not listed again
    assert [c["id"] for c in related["open_cases"]] == [world.case.id]
    error(client.get(f"/api/addin/related/contact/{world.dave.id}"), 404, "not_found")
    error(client.get("/api/addin/related/queue/1"), 400, "invalid")
    error(client.get("/api/addin/related/contact/999999"), 404, "not_found")


# -- search ----------------------------------------------------------------------------------------

def test_search_ranks_exact_prefix_contains(world, pane):
    pa = authz.principal(world.ann)
    for name in ("Big Fabrikam Holdings", "Fabrikamco"):
        records.create(pa, RECORD_TYPES["account"], {"name": name})
    db.session.commit()
    results = ok(pane(world.ann).get("/api/addin/search?q=fabrikam&types=account"))["results"]
    assert [r["name"] for r in results] == ["Fabrikam", "Fabrikamco", "Big Fabrikam Holdings"]
    assert results[0]["detail"] == "info@fabrikam.test · Seattle · Owner: Ann Archer"


def test_search_finds_by_email_and_gives_detail(world, pane):
    results = ok(pane(world.ann).get("/api/addin/search?q=carol@fabrikam.test"))["results"]
    assert [(r["type"], r["id"]) for r in results] == [("contact", world.carol.id)]
    assert results[0]["detail"] == "carol@fabrikam.test · Fabrikam · Owner: Ann Archer"


def test_search_is_scoped_by_read_privilege(world, pane):
    assert ok(pane(world.ann).get("/api/addin/search?q=dave"))["results"] == []
    assert [r["id"] for r in ok(pane(world.bob).get("/api/addin/search?q=dave"))["results"]] == [world.dave.id]


def test_search_does_not_search_hidden_fields(world, pane):
    secure("contact", "email1")
    results = ok(pane(world.ann).get("/api/addin/search?q=carol@fabrikam&types=contact"))["results"]
    assert results == []
    results = ok(pane(world.ann).get("/api/addin/search?q=carol&types=contact"))["results"]
    assert results[0]["detail"] == "Fabrikam · Owner: Ann Archer"


def test_search_types_and_limit(world, pane):
    client = pane(world.ann)
    kinds = {r["type"] for r in ok(client.get("/api/addin/search?q=fabrikam"))["results"]}
    assert kinds == {"account", "contact", "opportunity"}  # by email; a case by its title or number only
    assert len(ok(client.get("/api/addin/search?q=fabrikam&limit=2"))["results"]) == 2
    results = ok(client.get("/api/addin/search?q=CAS-00001&types=case"))["results"]
    assert results[0]["detail"].startswith("CAS-00001 · Fabrikam")


@pytest.mark.parametrize("query, field", [
    ("", "q"), ("q=", "q"), ("q=" + "x" * 201, "q"), ("q=a&types=user", "types"),
    ("q=a&limit=0", "limit"), ("q=a&limit=51", "limit"), ("q=a&limit=x", "limit"),
    ("q=a&sort=name", "sort"), ("q=a&q=b", "q"),
])
def test_search_rejects_bad_parameters(world, pane, query, field):
    body = error(pane(world.ann).get(f"/api/addin/search?{query}"), 400, "invalid")
    assert field in body["fields"]


def test_search_wildcards_are_literal(world, pane):
    assert ok(pane(world.ann).get("/api/addin/search?q=%25"))["results"] == []
    assert ok(pane(world.ann).get("/api/addin/search?q=_"))["results"] == []


# -- quick create ------------------------------------------------------------------------------------

def test_quick_create_a_contact(world, pane):
    r = pane(world.ann).post("/api/addin/records/contact", json={"fields": {
        "first_name": "New", "last_name": "Person", "email1": "new@unknown.test",
        "parent_account_id": world.fabrikam.id}})
    data = ok(r, 201)
    assert data["record"]["type"] == "contact" and data["record"]["name"] == "New Person"
    assert data["tracking"] is None
    contact = db.session.get(Contact, data["record"]["id"])
    assert contact.owner_user_id == world.ann.id and contact.parent_account_id == world.fabrikam.id
    # The new contact resolves at once.
    item = message(**{"from": person("new@unknown.test")})
    parties = ok(pane(world.ann).post("/api/addin/context", json={"item": item}))["parties"]
    assert parties[0]["status"] == "resolved"


def test_quick_create_validates_with_field_messages(world, pane):
    body = error(pane(world.ann).post("/api/addin/records/contact", json={"fields": {
        "first_name": 5, "email1": "not an address", "owner": 1}}), 400, "invalid")
    assert set(body["fields"]) == {"first_name", "email1", "owner", "last_name"}


def test_quick_create_needs_the_create_privilege(world, pane):
    body = error(pane(world.ann).post("/api/addin/records/case", json={"fields": {"title": "X"}}),
                 403, "forbidden")
    assert "cases" in body["message"]
    error(pane(world.csr).post("/api/addin/records/lead", json={"fields": {"last_name": "X"}}),
          403, "forbidden")
    assert ok(pane(world.csr).post("/api/addin/records/case", json={"fields": {
        "title": "From the pane", "customer_account_id": world.fabrikam.id}}), 201)


def test_quick_create_cannot_link_to_an_unreadable_record(world, pane):
    body = error(pane(world.ann).post("/api/addin/records/opportunity", json={"fields": {
        "name": "Sneaky", "customer_contact_id": world.dave.id}}), 400, "invalid")
    assert body["fields"] == {"customer_contact_id": "No such contact."}


def test_quick_create_unknown_types_and_shapes(world, pane):
    client = pane(world.ann)
    error(client.post("/api/addin/records/account", json={"fields": {"name": "X"}}), 400, "invalid")
    error(client.post("/api/addin/records/contact", json={"fields": []}), 400, "invalid")
    body = error(client.post("/api/addin/records/contact", json={"fields": {"last_name": "X"},
                                                                  "extra": 1}), 400, "invalid")
    assert body["fields"] == {"extra": "Unknown field."}


def test_quick_create_a_task_and_a_phone_call(world, pane):
    client = pane(world.ann)
    data = ok(client.post("/api/addin/activities/task", json={
        "fields": {"subject": "Send the quote", "description": "Before Friday",
                   "scheduled_end": "2025-06-01T17:00:00+02:00"},
        "regarding": {"type": "opportunity", "id": world.opportunity.id}}), 201)
    task = db.session.get(Task, data["activity"]["id"])
    assert task.regarding_ref == ("opportunity", world.opportunity.id)
    assert task.scheduled_end.isoformat() == "2025-06-01T15:00:00+00:00"
    assert data["activity"]["subject"] == "Send the quote" and data["activity"]["type"] == "task"
    data = ok(client.post("/api/addin/activities/phone_call", json={
        "fields": {"subject": "Call Carol", "phone_number": "+1 555 0123"},
        "regarding": {"type": "contact", "id": world.carol.id}}), 201)
    call = db.session.get(PhoneCall, data["activity"]["id"])
    assert call.phone_number == "+1 555 0123" and call.regarding_ref == ("contact", world.carol.id)


def test_quick_activity_errors(world, pane):
    client = pane(world.ann)
    body = error(client.post("/api/addin/activities/task", json={"fields": {"subject": ""}}), 400, "invalid")
    assert "fields.subject" in body["fields"]
    body = error(client.post("/api/addin/activities/task", json={
        "fields": {"subject": "x", "scheduled_end": "tomorrow", "colour": "red"}}), 400, "invalid")
    assert set(body["fields"]) == {"fields.scheduled_end", "fields.colour"}
    error(client.post("/api/addin/activities/task", json={
        "fields": {"subject": "x"}, "regarding": {"type": "contact", "id": world.dave.id}}), 404, "not_found")
    error(client.post("/api/addin/activities/email", json={"fields": {"subject": "x"}}), 400, "invalid")
    error(pane(world.noaddin).post("/api/addin/activities/task", json={"fields": {"subject": "x"}}),
          403, "forbidden")


# -- payloads ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("item, field", [
    (message(bogus=1), "item.bogus"),
    (message(type="note"), "item.type"),
    (message(mode=None), "item.mode"),
    (message(subject=5), "item.subject"),
    (message(to="ann@contoso.test"), "item.to"),
    (message(to=[{"address": "a@b.test", "role": "x"}]), "item.to[0].role"),
    (message(to=[{"name": 1, "address": "a@b.test"}]), "item.to[0].name"),
    (message(cc=[None, 5]), "item.cc[1]"),
    (message(start="yesterday"), "item.start"),
    (message(start="2025-01-01T10:00:00"), "item.start"),
    (message(internet_message_id="<" + "x" * 1000 + ">"), "item.internet_message_id"),
    (message(**{"from": {"name": "x", "address": "a" * 400}}), "item.from.address"),
    (message(html_body="<p>not on context</p>"), "item.html_body"),
])
def test_context_payloads_are_parsed_strictly(world, pane, item, field):
    body = error(pane(world.ann).post("/api/addin/context", json={"item": item}), 400, "invalid")
    assert field in body["fields"], body


def test_long_subjects_and_names_are_capped(world, pane):
    item = message(subject="S" * 1000, **{"from": person("carol@fabrikam.test", "N" * 500)})
    data = ok(pane(world.ann).post("/api/addin/context", json={"item": item}))
    assert data["parties"][0]["name"] == "N" * 200


def test_bodies_must_be_json_objects(world, pane):
    client = pane(world.ann)
    error(client.post("/api/addin/context", data="item=1",
                      headers={"Content-Type": "application/x-www-form-urlencoded"}),
          415, "unsupported_media_type")
    error(client.post("/api/addin/context", data="{not json", headers={"Content-Type": "application/json"}),
          400, "invalid")
    error(client.post("/api/addin/context", json=[1, 2]), 400, "invalid")
    error(client.post("/api/addin/context", data='{"item": NaN}',
                      headers={"Content-Type": "application/json"}), 400, "invalid")
    body = error(client.post("/api/addin/context", json={"item": message(), "more": True}), 400, "invalid")
    assert body["fields"] == {"more": "Unknown field."}


def test_oversized_context_bodies_are_refused(world, pane):
    item = message(subject="x" * (1024 * 1024 + 10))
    error(pane(world.ann).post("/api/addin/context", json={"item": item}), 413, "too_large")


def test_org_settings_reach_the_pane(world, pane):
    org = db.session.get(Organization, 1)
    org.use_tracking_token, org.tracking_token_prefix, org.attachment_max_bytes = False, "RGD:", 1000
    db.session.commit()
    data = ok(pane(world.ann).post("/api/addin/context", json={"item": message()}))
    assert data["org"] == {"use_tracking_token": False, "tracking_token_prefix": "RGD:",
                           "attachment_max_bytes": 1000}
