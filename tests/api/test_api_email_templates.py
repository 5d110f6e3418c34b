"""Email templates through the REST API: one's own and the organization's (that needs write
on the organization), changed and deleted only by who may, another user's own invisible,
rendering for a recipient and a regarding record with secured fields reported as unknown."""
from __future__ import annotations

import pytest

from server.db import db
from server.security.models import SecuredField

from .conftest import error_of

pytestmark = pytest.mark.both_databases


def test_own_and_organization_templates(api_client, seller, seller2, admin):
    api, boss, other = api_client(seller), api_client(admin), api_client(seller2)
    r = api.post("/api/v1/email_templates", json={
        "name": "Mine", "subject": "Quote for {{ recipient.name }}",
        "body_html": "<p>Dear {{ recipient.first_name }}<script>x()</script></p>"})
    assert r.status_code == 201, r.get_json()
    mine = r.get_json()
    assert mine["organization"] is False and "script" not in mine["body_html"]
    r = api.post("/api/v1/email_templates", json={"name": "Org", "organization": True})
    assert r.status_code == 403
    org = boss.post("/api/v1/email_templates", json={"name": "Org", "organization": True,
                                                     "subject": "Hello"}).get_json()
    assert org["organization"] is True
    assert {t["name"] for t in api.get("/api/v1/email_templates").get_json()["items"]} == \
        {"Mine", "Org"}
    assert {t["name"] for t in other.get("/api/v1/email_templates").get_json()["items"]} == \
        {"Org"}
    assert other.get(f"/api/v1/email_templates/{mine['id']}").status_code == 404
    assert api.patch(f"/api/v1/email_templates/{org['id']}", json={"name": "x"}).status_code == 403
    r = api.patch(f"/api/v1/email_templates/{mine['id']}",
                  json={"body_html": "{% for x in recipient %}{% endfor %}"})
    assert r.status_code == 400 and "not for" in error_of(r)["fields"]["body_html"]
    r = api.patch(f"/api/v1/email_templates/{mine['id']}", json={"subject": "a\r\nBcc: x"})
    assert r.status_code == 400 and "subject" in error_of(r)["fields"]
    assert api.patch(f"/api/v1/email_templates/{mine['id']}",
                     json={"organization": True}).status_code == 400
    assert api.delete(f"/api/v1/email_templates/{org['id']}").status_code == 403
    assert api.delete(f"/api/v1/email_templates/{mine['id']}").status_code == 204
    assert api.get(f"/api/v1/email_templates/{mine['id']}").status_code == 404


def test_render_for_a_recipient_and_a_regarding_record(api_client, seller):
    api = api_client(seller)
    account = api.post("/api/v1/accounts", json={"name": "Fabrikam"}).get_json()
    contact = api.post("/api/v1/contacts", json={
        "first_name": "Ann", "last_name": "Customer", "mobile_phone": "+1 555 0199",
        "parent_account_id": account["id"]}).get_json()
    template = api.post("/api/v1/email_templates", json={
        "name": "T", "subject": "For {{ regarding.name }}",
        "body_html": "<p>Dear {{ recipient.first_name }} ({{ recipient.account }}), "
                     "{{ recipient.mobile_phone }}</p>"}).get_json()
    url = f"/api/v1/email_templates/{template['id']}/render"
    body = {"recipient": {"type": "contact", "id": contact["id"]},
            "regarding": {"type": "account", "id": account["id"]}}
    out = api.post(url, json=body).get_json()
    assert out == {"subject": "For Fabrikam", "problems": [],
                   "html_body": "<p>Dear Ann (Fabrikam), +1 555 0199</p>"}
    db.session.add(SecuredField(table_name="contact", field="mobile_phone"))
    db.session.commit()
    out = api.post(url, json=body).get_json()
    assert out["html_body"] == "" and "{{ recipient.mobile_phone }}" in out["problems"][0]
    r = api.post(url, json={"recipient": {"type": "contact", "id": 999}})
    assert r.status_code == 400 and "recipient" in error_of(r)["fields"]
    assert api.post(url).get_json()["problems"]  # no recipient: its fields are unknown
