"""Users: create (with a password shown once), edit, roles, teams, deactivate, reset
password, and the effect of each on what the user may do."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db import db
from server.security import tokens
from server.security.models import ApiToken, Role, Team, User
from server.security.privileges import Depth

pytestmark = pytest.mark.both_databases


def role_id(name: str) -> int:
    return db.session.scalar(select(Role.id).where(Role.name == name))


def test_create_user_with_a_generated_password_shown_once(app, admin_client, make_unit,
                                                         fresh_principal, admin_user):
    unit = make_unit("Sales")
    response = admin_client.post("/admin/users/new", data={
        "first_name": "Grace", "last_name": "Hopper", "email": "Grace@Contoso.test",
        "job_title": "Engineer", "business_unit_id": str(unit.id), "manager": admin_user.email,
        "role_ids": [str(role_id("Salesperson"))], "password_mode": "generate"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    user = db.session.scalar(select(User).where(User.email == "Grace@Contoso.test"))
    assert user.full_name == "Grace Hopper" and user.business_unit_id == unit.id
    assert user.manager_id == admin_user.id
    password = html.split('id="pw" class="password-shown" value="')[1].split('"')[0]
    assert len(password) >= 10 and password not in (user.password_hash or "")
    # the new user signs in with it (the email is matched without regard to case)
    fresh = app.test_client()
    assert fresh.post("/signin", data={"email": "grace@contoso.test",
                                       "password": password}).status_code == 302
    p = fresh_principal(user.id)
    assert p["depths"]["account.read"] == Depth.BUSINESS_UNIT
    assert "use_outlook_addin" in p["named"]
    # the user page shows no password afterwards
    assert password not in admin_client.get(f"/admin/users/{user.id}").get_data(as_text=True)


def test_create_user_refuses_bad_input_and_keeps_what_was_typed(admin_client, admin_user):
    response = admin_client.post("/admin/users/new", data={
        "first_name": "Dup", "last_name": "", "email": "ADMIN@contoso.test",
        "business_unit_id": str(admin_user.business_unit_id), "password_mode": "set",
        "password": "short"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Another user already has this email address." in html
    assert "Last name is required." in html
    assert "at least 10 characters" in html
    assert 'value="Dup"' in html
    assert db.session.scalar(select(User).where(User.first_name == "Dup")) is None


def test_assigning_roles_changes_effective_privileges(admin_client, make_user, fresh_principal):
    user = make_user("ann@contoso.test", roles=["Salesperson"])
    assert fresh_principal(user.id)["depths"]["account.read"] == Depth.BUSINESS_UNIT
    response = admin_client.post(f"/admin/users/{user.id}/roles",
                                 data={"role_ids": [str(role_id("Sales Manager"))]})
    assert response.status_code == 302
    p = fresh_principal(user.id)
    assert p["depths"]["account.read"] == Depth.PARENT_CHILD
    assert "view_sync_dashboard" in p["named"]
    admin_client.post(f"/admin/users/{user.id}/roles", data={})
    assert fresh_principal(user.id)["depths"] == {}


def test_team_membership_from_the_user_page_gives_the_team_roles(admin_client, make_user,
                                                                fresh_principal, admin_user):
    team = Team(name="Support", business_unit_id=admin_user.business_unit_id)
    team.roles.append(db.session.get(Role, role_id("Customer Service Representative")))
    db.session.add(team)
    db.session.commit()
    user = make_user("bob@contoso.test", roles=[])
    assert fresh_principal(user.id)["depths"].get("case.write", 0) == Depth.NONE
    admin_client.post(f"/admin/users/{user.id}/teams", data={"team_ids": [str(team.id)]})
    assert fresh_principal(user.id)["depths"]["case.write"] == Depth.BUSINESS_UNIT
    admin_client.post(f"/admin/users/{user.id}/teams", data={})
    assert fresh_principal(user.id)["depths"].get("case.write", 0) == Depth.NONE


def test_edit_user_details(admin_client, make_user, make_unit):
    user = make_user("carl@contoso.test", roles=["Salesperson"], name="Carl Old")
    unit = make_unit("East")
    response = admin_client.post(f"/admin/users/{user.id}", data={
        "first_name": "Carl", "last_name": "New", "email": "carl.new@contoso.test",
        "business_unit_id": str(unit.id), "job_title": "Lead", "phone": "+1 555", "manager": ""})
    assert response.status_code == 302
    db.session.expire_all()
    assert (user.full_name, user.email, user.business_unit_id) == ("Carl New",
                                                                   "carl.new@contoso.test", unit.id)
    # no cycle of managers
    other = make_user("dora@contoso.test", roles=["Salesperson"])
    other.manager_id = user.id
    db.session.commit()
    response = admin_client.post(f"/admin/users/{user.id}", data={
        "last_name": "New", "email": "carl.new@contoso.test", "business_unit_id": str(unit.id),
        "manager": "dora@contoso.test"})
    assert response.status_code == 400
    assert "cannot report to themselves" in response.get_data(as_text=True)


def test_deactivated_user_cannot_sign_in_and_their_tokens_stop(app, admin_client, make_user,
                                                              signin, api_client):
    user = make_user("eve@contoso.test", roles=["Salesperson"])
    session = signin(user)
    _, secret = tokens.issue(user, "pane", kind="pane")
    db.session.commit()
    assert session.get("/profile").status_code == 200
    assert admin_client.post(f"/admin/users/{user.id}/active", data={"active": "0"}).status_code == 302
    db.session.expire_all()
    assert not user.is_active
    # signing in is refused, the open session has ended, the token is revoked
    again = app.test_client().post("/signin", data={"email": user.email,
                                                     "password": "Correct-horse-9"})
    assert again.status_code == 401
    assert session.get("/profile").status_code == 302
    assert tokens.authenticate(secret) is None
    assert db.session.scalar(select(ApiToken.revoked_on).where(ApiToken.user_id == user.id))
    # activated again: signs in again
    admin_client.post(f"/admin/users/{user.id}/active", data={"active": "1"})
    assert app.test_client().post("/signin", data={"email": user.email,
                                                    "password": "Correct-horse-9"}).status_code == 302


def test_the_last_system_administrator_stays(admin_client, admin_user):
    response = admin_client.post(f"/admin/users/{admin_user.id}/roles",
                                 data={"role_ids": [str(role_id("Salesperson"))]})
    assert response.status_code == 302
    follow = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "without an active System Administrator" in follow
    db.session.expire_all()
    assert "System Administrator" in [r.name for r in admin_user.roles]
    # and nobody deactivates themselves
    admin_client.post(f"/admin/users/{admin_user.id}/active", data={"active": "0"})
    db.session.expire_all()
    assert admin_user.is_active


def test_reset_password_signs_the_user_out(app, admin_client, make_user, signin):
    user = make_user("fay@contoso.test", roles=["Salesperson"])
    session = signin(user)
    response = admin_client.post(f"/admin/users/{user.id}/password",
                                 data={"password_mode": "set", "password": "Brand-new-pass-7"})
    assert response.status_code == 200
    assert "Brand-new-pass-7" in response.get_data(as_text=True)
    assert session.get("/profile").status_code == 302
    assert app.test_client().post("/signin", data={"email": user.email,
                                                    "password": "Brand-new-pass-7"}).status_code == 302
    weak = admin_client.post(f"/admin/users/{user.id}/password",
                             data={"password_mode": "set", "password": "abc"})
    assert weak.status_code == 302  # back to the page with the problem
    assert "at least 10" in admin_client.get(weak.headers["Location"]).get_data(as_text=True)


def test_user_list_filters_and_pages_without_n_plus_one(app, admin_client, make_user, make_unit):
    from sqlalchemy import event
    west, east = make_unit("West"), make_unit("East")
    for n in range(12):
        make_user(f"w{n}@contoso.test", roles=["Salesperson", "Sales Manager"], unit=west,
                  name=f"West Person{n:02d}")
    for n in range(2):
        make_user(f"e{n}@contoso.test", roles=["Salesperson"], unit=east, name=f"East Person{n}")
    make_user("gone@contoso.test", roles=["Salesperson"], name="Gone Person").is_active = False
    db.session.commit()

    def listing(url):
        statements = []
        listener = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(db.engine, "before_cursor_execute", listener)
        try:
            return admin_client.get(url).get_data(as_text=True), len(statements)
        finally:
            event.remove(db.engine, "before_cursor_execute", listener)

    listing("/admin/users")  # loads the administrator's own roles once
    html, many = listing(f"/admin/users?unit={west.id}&q=person")
    assert html.count("West Person") == 12 and "Gone Person" not in html and "East Person" not in html
    html, few = listing(f"/admin/users?unit={east.id}&q=person")
    assert html.count("East Person") == 2
    assert many == few  # the same statements for 12 users as for 2: no query per row
    inactive = admin_client.get("/admin/users?active=inactive").get_data(as_text=True)
    assert "Gone Person" in inactive and "West Person" not in inactive
    by_role = admin_client.get(f"/admin/users?role={role_id('Sales Manager')}").get_data(as_text=True)
    assert "West Person00" in by_role and "admin@contoso.test" not in by_role
    app.config["REGARDING_PAGE_SIZE"] = 5
    last = admin_client.get("/admin/users?q=west+person&page=3").get_data(as_text=True)
    assert "Page 3 of 3" in last and last.count("West Person") == 2
    assert "West Person11" in last and 'rel="prev"' in last and 'rel="next"' not in last
