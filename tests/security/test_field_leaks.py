"""Vulnerability 3 of issue 11 (and the smaller party finding): a secured field's value
reaches nobody without read on it by any path, and a record the caller may not read shows as
its bare address. Tried against the real server (Flask test client) on SQLite and PostgreSQL:
the new email / phone call page's defaults, a REST draft's party, the add-in preview's sample
items, a person's full name (search, sort, ``/resolve``, reference names, the add-in), and
resolution of a secured address (``/api/v1/resolve`` and the add-in context).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.services import records
from server.crm.activities import ActivityParty, Email
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security import authz
from server.security.models import SecuredField

pytestmark = pytest.mark.both_databases

FIRST, EMAIL, PHONE = "Zenobia", "zenobia.secret@fabrikam.test", "+1 555 0142"


@pytest.fixture
def leak_world(app, make_user, make_unit):
    """Owen owns Zenobia Quill (contact) with first name, email and phone secured; Sam, a
    Salesperson of the same unit, reads the contact but none of those fields. Olga, in another
    unit, owns a contact (Otto) Sam may not read."""
    unit = make_unit("Sales")
    owen = make_user("owen@contoso.test", roles=["System Administrator"], unit=unit)
    sam = make_user("sam@contoso.test", roles=["Salesperson"], unit=unit, name="Sam Seller")
    olga = make_user("olga@contoso.test", roles=["Salesperson"], unit=make_unit("Far"))
    po = authz.principal(owen)
    contact = records.create(po, RECORD_TYPES["contact"], {
        "first_name": FIRST, "last_name": "Quill", "email1": EMAIL, "phone": PHONE})
    records.assign(po, contact, sam)  # Sam's own contact: he may read and link to it
    opp = records.create(po, RECORD_TYPES["opportunity"], {
        "name": "Quill deal", "customer_contact_id": contact.id})
    records.assign(po, opp, sam)
    otto = records.create(authz.principal(olga), RECORD_TYPES["contact"], {
        "first_name": "Otto", "last_name": "Hidden", "email1": "otto@far.test"})
    for field in ("first_name", "email1", "phone"):
        db.session.add(SecuredField(table_name="contact", field=field))
    db.session.commit()
    return type("W", (), dict(owen=owen, sam=sam, contact=contact, opp=opp, otto=otto))


def secret_free(text: str) -> None:
    for secret in (FIRST, EMAIL, PHONE, "zenobia"):
        assert secret.lower() not in text.lower(), secret


def test_defaults_of_the_new_email_and_phone_call_pages(leak_world, signin):
    """The phone call form and the compose page (where "new email" leads) prefill nothing
    from a field the user may not read."""
    client = signin(leak_world.sam)
    for kind in ("email", "phone_call"):
        page = client.get(f"/r/contact/{leak_world.contact.id}/activities/new/{kind}",
                          follow_redirects=True)
        assert page.status_code == 200
        if kind == "email":
            assert page.request.path.startswith("/compose") or "compose" in page.request.path
        secret_free(page.get_data(as_text=True))


def test_a_rest_draft_does_not_fill_a_party_from_a_secured_field(leak_world, api_client):
    api = api_client(leak_world.sam)
    r = api.post("/api/v1/activities", json={
        "type": "email", "subject": "Hello",
        "parties": [{"role": "to", "record": {"type": "contact", "id": leak_world.contact.id}}]})
    assert r.status_code == 201, r.get_json()
    secret_free(r.get_data(as_text=True))
    party = db.session.scalar(select(ActivityParty).where(ActivityParty.role == "to"))
    assert party.contact_id == leak_world.contact.id
    assert party.address is None and party.name == "Quill"


def test_the_add_in_preview_embeds_no_secured_value(leak_world, signin):
    page = signin(leak_world.sam).get("/addin/preview")
    assert page.status_code == 200
    secret_free(page.get_data(as_text=True))


def test_a_full_name_shows_only_its_readable_part_and_is_no_oracle(leak_world, signin,
                                                                   api_client):
    api, client = api_client(leak_world.sam), signin(leak_world.sam)
    # search by the hidden first name finds nothing, by the visible last name finds the contact
    assert api.get(f"/api/v1/contacts?q={FIRST}&sort=last_name").get_json()["items"] == []
    found = api.get("/api/v1/contacts?q=Quill&sort=last_name").get_json()["items"]
    assert [c["full_name"] for c in found] == ["Quill"]
    secret_free(api.get(f"/api/v1/contacts/{leak_world.contact.id}").get_data(as_text=True))
    link = f"/r/contact/{leak_world.contact.id}\""
    assert link not in client.get(f"/?q={FIRST}").get_data(as_text=True)
    assert link in client.get("/?q=Quill").get_data(as_text=True)
    secret_free(client.get("/?q=Quill").get_data(as_text=True))
    # sorting by the name made from it is refused (its order would reveal it)
    assert api.get("/api/v1/contacts?sort=full_name").status_code == 400
    # reference names, pages and the add-in's search
    opp = api.get(f"/api/v1/opportunities/{leak_world.opp.id}").get_json()
    assert opp["customer_contact"]["name"] == "Quill"
    for url in (f"/r/contact/{leak_world.contact.id}", f"/r/opportunity/{leak_world.opp.id}",
                "/r/contact/?sort=full_name"):
        secret_free(client.get(url).get_data(as_text=True))
    pane = api_client(leak_world.sam, kind="pane")
    hits = pane.get("/api/addin/search?q=Quill").get_json()["results"]
    assert [h["name"] for h in hits if h["type"] == "contact"] == ["Quill"]
    assert pane.get(f"/api/addin/search?q={FIRST}").get_json()["results"] == []


def test_resolution_reveals_no_secured_address(leak_world, api_client):
    api = api_client(leak_world.sam)
    body = api.get(f"/api/v1/resolve?address={EMAIL}").get_json()
    assert body["results"][0]["resolved"] is False and body["results"][0]["matches"] == []
    pane = api_client(leak_world.sam, kind="pane")
    item = {"type": "message", "mode": "read", "internet_message_id": "<q1@fabrikam.test>",
            "conversation_id": None, "item_id": "AAQ1", "subject": "Hi",
            "from": {"name": "", "address": EMAIL}, "to": [{"name": "", "address": "sam@contoso.test"}],
            "cc": [], "organizer": None, "required_attendees": [], "optional_attendees": [],
            "start": None, "end": None, "location": None, "user_address": "sam@contoso.test"}
    ctx = pane.post("/api/addin/context", json={"item": item})
    assert ctx.status_code == 200
    sender = ctx.get_json()["parties"][0]
    assert sender["status"] == "unresolved" and sender["matches"] == []
    secret_free(ctx.get_data(as_text=True).replace(EMAIL, ""))  # the item's own address only


def test_parties_of_unreadable_records_are_bare_addresses(leak_world, signin, api_client):
    """A page draft, the add-in's Track and REST link no party to a record the user may not
    read, nor copy its name."""
    client = signin(leak_world.sam)
    r = client.post("/compose", data={"to": "otto@far.test", "subject": "Hi",
                                      "html_body": "<p>x</p>", "action": "save",
                                      "regarding": f"contact:{leak_world.contact.id}"})
    assert r.status_code == 302, r.get_data(as_text=True)[:400]
    pane = api_client(leak_world.sam, kind="pane")
    item = {"type": "message", "mode": "read", "internet_message_id": "<o1@far.test>",
            "conversation_id": None, "item_id": "AAO1", "subject": "From Otto",
            "from": {"name": "O", "address": "otto@far.test"},
            "to": [{"name": "", "address": "sam@contoso.test"}], "cc": [], "organizer": None,
            "required_attendees": [], "optional_attendees": [], "start": None, "end": None,
            "location": None, "user_address": "sam@contoso.test", "html_body": "<p>x</p>",
            "text_body": None, "internet_headers": None, "attachments": []}
    assert pane.post("/api/addin/track", json={"item": item}).status_code == 200
    api = api_client(leak_world.sam)
    assert api.post("/api/v1/activities", json={
        "type": "email", "subject": "Draft", "parties": [{"role": "to", "address": "otto@far.test"}]
    }).status_code == 201
    parties = db.session.scalars(select(ActivityParty).where(
        ActivityParty.address == "otto@far.test")).all()
    assert len(parties) == 3
    for party in parties:
        assert party.party_ref is None and "Otto" not in (party.name or "") and \
            "Hidden" not in (party.name or "")
    assert db.session.scalar(select(Email.id).where(Email.subject == "From Otto")) is not None


def test_templates_and_type_ahead_reveal_no_secured_part_of_a_name(leak_world, api_client,
                                                                  signin):
    """A template's ``{{ recipient.name }}``/``full_name`` and the compose type-ahead show a
    person's name as the sender may see it (the secured first name left out), and the
    type-ahead is no search oracle for the hidden part."""
    api = api_client(leak_world.sam)
    template = api.post("/api/v1/email_templates", json={
        "name": "T", "subject": "Hi {{ recipient.name }}",
        "body_html": "<p>{{ recipient.full_name }}</p>"}).get_json()
    out = api.post(f"/api/v1/email_templates/{template['id']}/render", json={
        "recipient": {"type": "contact", "id": leak_world.contact.id}}).get_json()
    assert "Quill" in out["subject"]
    secret_free(str(out))
    client = signin(leak_world.sam)
    assert client.get("/compose/suggest?q=zenob").get_json()["items"] == []
    found = client.get("/compose/suggest?q=quill").get_json()["items"]
    secret_free(str(found))
