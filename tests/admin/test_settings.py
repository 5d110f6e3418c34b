"""Field security (secured fields, profiles, members) and organization settings, plus the
safety of the pages: hostile input is escaped and forms need a CSRF token."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.services import records
from server.crm.models import MB, Organization
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security import authz
from server.security.models import FieldSecurityProfile, SecuredField, Team, User

from .conftest import csrf_token_of

pytestmark = pytest.mark.both_databases


def test_field_security_profile_edits_take_effect(admin_client, make_user, fresh_principal,
                                                  admin_user):
    seller = make_user("nia@contoso.test", roles=["Salesperson"])
    response = admin_client.post("/admin/field-security", data={
        "action": "secure", "table": "account", "fields": ["annual_revenue", "phone"]})
    assert response.status_code == 302
    assert {r.field for r in db.session.scalars(select(SecuredField))} == {"annual_revenue", "phone"}
    p = fresh_principal(seller.id)["fields"]["account"]
    assert not p.can_read("annual_revenue") and not p.can_read("phone") and p.can_read("city")

    assert admin_client.post("/admin/field-security", data={"name": "Finance"}).status_code == 302
    profile = db.session.scalar(select(FieldSecurityProfile).where(FieldSecurityProfile.name == "Finance"))
    admin_client.post(f"/admin/field-security/profiles/{profile.id}", data={
        "name": "Finance", "read.account.annual_revenue": "1", "update.account.annual_revenue": "1"})
    admin_client.post(f"/admin/field-security/profiles/{profile.id}/members",
                      data={"email": seller.email})
    access = fresh_principal(seller.id)["fields"]["account"]
    assert access.can_read("annual_revenue") and access.can_update("annual_revenue")
    assert not access.can_create("annual_revenue") and not access.can_read("phone")

    # a record read through the record services shows the field only to the profile's members
    other = make_user("oz@contoso.test", roles=["Salesperson"], unit=seller.business_unit)
    account = records.create(authz.principal(admin_user), RECORD_TYPES["account"],
                             {"name": "Contoso", "annual_revenue": "1000"}, owner=seller)
    db.session.commit()
    with db.session.no_autoflush:
        pass
    names = lambda u: {f.name for f in records.visible_fields(authz.held(u),  # noqa: E731
                                                                 RECORD_TYPES["account"])}
    assert "annual_revenue" in names(seller) and "annual_revenue" not in names(other)
    assert account.id

    # a team member gets the profile through the team; removing it takes it away again
    team = Team(name="Finance team", business_unit_id=other.business_unit_id, members=[other])
    db.session.add(team)
    db.session.commit()
    admin_client.post(f"/admin/field-security/profiles/{profile.id}/members",
                      data={"team_id": str(team.id)})
    assert fresh_principal(other.id)["fields"]["account"].can_read("annual_revenue")
    admin_client.post(f"/admin/field-security/profiles/{profile.id}/members",
                      data={"remove_team": str(team.id)})
    assert not fresh_principal(other.id)["fields"]["account"].can_read("annual_revenue")

    # unsecuring a field drops the permissions on it
    admin_client.post("/admin/field-security", data={"action": "secure", "table": "account",
                                                     "fields": ["phone"]})
    db.session.expire_all()
    assert [(fp.table_name, fp.field) for fp in profile.permissions] == []
    # required fields and record names cannot be secured
    response = admin_client.post("/admin/field-security", data={
        "action": "secure", "table": "account", "fields": ["name"]})
    assert "cannot be secured" in admin_client.get(response.headers["Location"]).get_data(as_text=True)


def test_user_page_sets_field_security_profiles(admin_client, make_user, fresh_principal):
    db.session.add(SecuredField(table_name="contact", field="mobile_phone"))
    profile = FieldSecurityProfile(name="Phones")
    db.session.add(profile)
    db.session.commit()
    admin_client.post(f"/admin/field-security/profiles/{profile.id}", data={
        "name": "Phones", "read.contact.mobile_phone": "1"})
    user = make_user("pat@contoso.test", roles=["Salesperson"])
    assert not fresh_principal(user.id)["fields"]["contact"].can_read("mobile_phone")
    admin_client.post(f"/admin/users/{user.id}/field-profiles",
                      data={"profile_ids": [str(profile.id)]})
    assert fresh_principal(user.id)["fields"]["contact"].can_read("mobile_phone")


def test_organization_settings_persist(app, admin_client):
    page = admin_client.get("/admin/organization").get_data(as_text=True)
    assert "Resolve email addresses to inactive records" in page
    assert "smart matching" in page.lower() and 'value="5"' in page  # 5 MB default
    response = admin_client.post("/admin/organization", data={
        "name": "Contoso Ltd", "base_currency": "eur", "resolve_inactive_records": "1",
        "unresolve_ambiguous_addresses": "1", "attachment_max_bytes": "25",
        "use_tracking_token": "1", "tracking_token_prefix": "CTS:", "track_sent_items": "",
        "track_between_users_as_two": "1", "smart_matching": "1"})
    assert response.status_code == 302
    with app.app_context():  # a fresh session sees what was committed
        org = db.session.get(Organization, 1)
        assert (org.name, org.base_currency, org.attachment_max_bytes) == ("Contoso Ltd", "EUR", 25 * MB)
        assert org.resolve_inactive_records and org.unresolve_ambiguous_addresses
        assert org.use_tracking_token and org.tracking_token_prefix == "CTS:"
        assert not org.track_sent_items and org.track_between_users_as_two and org.smart_matching
        assert not org.require_email_approval  # an unticked box is off
    bad = admin_client.post("/admin/organization", data={
        "name": "", "base_currency": "euro", "attachment_max_bytes": "500",
        "use_tracking_token": "1", "tracking_token_prefix": "<b>"})
    assert bad.status_code == 400
    html = bad.get_data(as_text=True)
    for problem in ("Organization name is required.", "three-letter currency code",
                    "from 1 to 128", "Up to 20 letters"):
        assert problem in html
    db.session.expire_all()
    assert db.session.get(Organization, 1).name == "Contoso Ltd"


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_hostile_input_is_escaped(admin_client, admin_user, make_user):
    response = admin_client.post("/admin/users/new", data={
        "first_name": HOSTILE[:100], "last_name": "Mallory", "email": "mallory@contoso.test",
        "job_title": HOSTILE[:100], "business_unit_id": str(admin_user.business_unit_id)})
    assert response.status_code == 200
    user = db.session.scalar(select(User).where(User.email == "mallory@contoso.test"))
    admin_client.post("/admin/teams/new", data={"name": HOSTILE, "description": HOSTILE,
                                                "business_unit_id": str(admin_user.business_unit_id)})
    admin_client.post("/admin/units", data={"name": HOSTILE,
                                            "parent_id": str(admin_user.business_unit_id)})
    admin_client.post("/admin/roles", data={"name": HOSTILE, "description": HOSTILE})
    admin_client.post("/admin/field-security", data={"name": HOSTILE, "description": HOSTILE})
    team = db.session.scalar(select(Team).where(Team.name == HOSTILE))
    pages = ["/admin/users", f"/admin/users/{user.id}", "/admin/teams", f"/admin/teams/{team.id}",
             "/admin/units", "/admin/roles", "/admin/field-security",
             "/admin/users?q=" + HOSTILE]
    for url in pages:
        html = admin_client.get(url).get_data(as_text=True)
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert "&lt;script&gt;" in html or "&#34;" in html, url
    # an invalid form echoes the input escaped too
    bad = admin_client.post("/admin/users/new", data={"first_name": HOSTILE[:100],
                                                      "last_name": "", "email": "x"})
    assert bad.status_code == 400 and "<script>alert" not in bad.get_data(as_text=True)


def test_csrf_is_enforced_when_enabled(app, admin_client):
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        refused = admin_client.post("/admin/organization", data={"name": "No token"})
        assert refused.status_code == 400
        assert "form expired" in refused.get_data(as_text=True)
        page = admin_client.get("/admin/organization").get_data(as_text=True)
        data = {"csrf_token": csrf_token_of(page), "name": "With token", "base_currency": "USD",
                "attachment_max_bytes": "5", "use_tracking_token": "1",
                "tracking_token_prefix": "CRM:"}
        assert admin_client.post("/admin/organization", data=data).status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    db.session.expire_all()
    assert db.session.get(Organization, 1).name == "With token"
