"""Who may see the administration pages: every page renders for a System Administrator; a
Salesperson (who can read users, teams and units but change none) gets 403 on each, and a
business-unit administrator manages the users of their own unit only."""
from __future__ import annotations

import pytest

from server.db import db
from server.security.models import FieldSecurityProfile, Role, RolePrivilege, Team

pytestmark = pytest.mark.both_databases


@pytest.fixture
def world(app, admin_user, make_unit, make_user):
    sales = make_unit("Sales")
    team = Team(name="Key accounts", business_unit_id=sales.id)
    profile = FieldSecurityProfile(name="Finance")
    role = Role(name="Auditor")
    role.privileges.append(RolePrivilege(privilege="account.read", depth=4))
    db.session.add_all([team, profile, role])
    db.session.commit()
    seller = make_user("sam@contoso.test", roles=["Salesperson"], unit=sales, name="Sam Seller")
    return {"unit": sales, "team": team, "profile": profile, "role": role, "seller": seller}


def pages(w, admin_user):
    return ["/admin/", "/admin/users", "/admin/users/new", f"/admin/users/{w['seller'].id}",
            f"/admin/users/{admin_user.id}", "/admin/teams", "/admin/teams/new",
            f"/admin/teams/{w['team'].id}", "/admin/units", f"/admin/units/{w['unit'].id}",
            "/admin/roles", f"/admin/roles/{w['role'].id}", "/admin/field-security",
            f"/admin/field-security/profiles/{w['profile'].id}", "/admin/organization"]


def test_every_page_renders_for_a_system_administrator(world, admin_client, admin_user):
    for url in pages(world, admin_user):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "Administration" in response.get_data(as_text=True)
    roles = db.session.query(Role).all()
    for role in roles:  # built-in ones too, System Administrator read-only
        assert admin_client.get(f"/admin/roles/{role.id}").status_code == 200


def test_index_links_every_area(world, admin_client, app):
    html = admin_client.get("/admin/").get_data(as_text=True)
    for title in ("Users", "Teams", "Business units", "Security roles", "Field security",
                  "Organization settings"):
        assert f">{title}</a>" in html
    assert "Outlook add-in" in html and "addin_pages.admin_addin" in app.view_functions
    assert "Server-side sync" in html and "sync_admin.dashboard" in app.view_functions


def test_a_salesperson_gets_403_everywhere(world, signin, admin_user):
    client = signin(world["seller"])
    for url in pages(world, admin_user):
        assert client.get(url).status_code == 403, url
    posts = {
        "/admin/users/new": {"last_name": "X", "email": "x@contoso.test"},
        f"/admin/users/{world['seller'].id}/roles": {"role_ids": "1"},
        f"/admin/users/{admin_user.id}/active": {"active": "0"},
        "/admin/units": {"name": "Rogue", "parent_id": str(world["unit"].id)},
        f"/admin/roles/{world['role'].id}": {"name": "Auditor", "d.account.read": "4"},
        "/admin/organization": {"name": "Hijacked"},
        f"/admin/field-security/profiles/{world['profile'].id}/members": {"email": "sam@contoso.test"},
    }
    for url, data in posts.items():
        assert client.post(url, data=data).status_code == 403, url
    assert admin_user.is_active


def test_signed_out_visitors_are_sent_to_sign_in(client):
    response = client.get("/admin/users")
    assert response.status_code == 302
    assert "/signin" in response.headers["Location"]


def test_a_business_unit_administrator_manages_their_own_unit_only(app, admin_client, make_unit,
                                                                   make_user, signin):
    """Business-unit depth on user: sees and changes the users of their unit, not others'."""
    north, south = make_unit("North"), make_unit("South")
    role = Role(name="Unit admin")
    for priv in ("read", "write", "create"):
        role.privileges.append(RolePrivilege(privilege=f"user.{priv}", depth=2))
    db.session.add(role)
    db.session.commit()
    boss = make_user("boss@contoso.test", roles=["Salesperson"], unit=north, name="Nora North")
    boss.roles.append(role)
    db.session.commit()
    mine = make_user("mine@contoso.test", roles=["Salesperson"], unit=north, name="Mia Mine")
    theirs = make_user("theirs@contoso.test", roles=["Salesperson"], unit=south, name="Tom Theirs")
    client = signin(boss)

    # Salesperson lets them read every user; the write depth decides what they change
    listing = client.get("/admin/users?active=all").get_data(as_text=True)
    assert "Mia Mine</a></td>" in listing and "Tom Theirs</a> <span class=\"small muted\">(read-only)" in listing
    page = client.get(f"/admin/users/{theirs.id}").get_data(as_text=True)
    assert "Deactivate" not in page and "Reset password</button>" not in page
    assert client.post(f"/admin/users/{theirs.id}/active", data={"active": "0"}).status_code == 403
    assert client.post(f"/admin/users/{mine.id}/active", data={"active": "0"}).status_code == 302
    db.session.expire_all()
    assert not mine.is_active and theirs.is_active
    # creating a user in another unit is refused, in their own unit allowed
    refused = client.post("/admin/users/new", data={"last_name": "Else", "email": "else@contoso.test",
                                                    "business_unit_id": str(south.id)})
    assert refused.status_code == 400
    assert "may not manage this business unit" in refused.get_data(as_text=True)
    made = client.post("/admin/users/new", data={"last_name": "Newman", "email": "new@contoso.test",
                                                 "business_unit_id": str(north.id)})
    assert made.status_code == 200 and "was added" in made.get_data(as_text=True)
    # nor take over the sign-in of someone with more privileges in their own unit
    chief = make_user("chief@contoso.test", roles=["System Administrator"], unit=north)
    assert client.post(f"/admin/users/{chief.id}/password",
                       data={"password_mode": "set", "password": "Taken-over-123"}).status_code == 403
    assert client.post(f"/admin/users/{chief.id}", data={
        "last_name": "Chief", "email": "mine-now@contoso.test",
        "business_unit_id": str(north.id)}).status_code == 403
    assert client.post(f"/admin/users/{chief.id}/active", data={"active": "0"}).status_code == 403
    db.session.expire_all()
    assert chief.is_active and chief.email == "chief@contoso.test"
    # a user with no more than they hold is fine
    assert client.post(f"/admin/users/{mine.id}/password",
                       data={"password_mode": "generate"}).status_code == 200
    # no role management without security_role read, and no roles above their own
    assert client.post(f"/admin/users/{mine.id}/roles",
                       data={"role_ids": [str(role.id)]}).status_code == 403
    assert client.get("/admin/roles").status_code == 403


def test_unit_depth_read_hides_other_units_users(make_unit, make_user, signin):
    """With Business-unit depth on user read as well, users of other units do not exist."""
    north, south = make_unit("North"), make_unit("South")
    role = Role(name="Unit admin")
    for priv in ("read", "write"):
        role.privileges.append(RolePrivilege(privilege=f"user.{priv}", depth=2))
    db.session.add(role)
    db.session.commit()
    boss = make_user("boss@contoso.test", roles=[], unit=north)
    boss.roles.append(role)
    db.session.commit()
    make_user("mine@contoso.test", roles=[], unit=north, name="Mia Mine")
    theirs = make_user("theirs@contoso.test", roles=[], unit=south, name="Tom Theirs")
    client = signin(boss)
    listing = client.get("/admin/users").get_data(as_text=True)
    assert "Mia Mine" in listing and "Tom Theirs" not in listing
    assert client.get(f"/admin/users/{theirs.id}").status_code == 404
    assert client.post(f"/admin/users/{theirs.id}/active", data={"active": "0"}).status_code == 404
