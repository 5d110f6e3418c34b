"""Security roles: the privilege grid, copying, built-in roles, deletion, and that nobody
grants more than they hold."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db import db
from server.security.bootstrap import ensure_builtin_roles
from server.security.models import Role, RolePrivilege, Team
from server.security.privileges import NAMED_PRIVILEGES, PRIVILEGES, TABLES, Depth

pytestmark = pytest.mark.both_databases


def grid_form(role_name: str, cells: dict[str, int], named=()) -> dict:
    data = {"name": role_name, "description": ""}
    for t in TABLES:
        for priv in PRIVILEGES:
            data[f"d.{t}.{priv}"] = str(cells.get(f"{t}.{priv}", 0))
    for n in named:
        data[f"n.{n}"] = "1"
    return data


def role_named(name: str) -> Role:
    return db.session.scalar(select(Role).where(Role.name == name))


def test_grid_renders_every_table_and_privilege(admin_client):
    html = admin_client.get(f"/admin/roles/{role_named('Salesperson').id}").get_data(as_text=True)
    assert html.count('class="depth-select"') == len(TABLES) * len(PRIVILEGES)
    for label in NAMED_PRIVILEGES.values():
        assert label in html
    assert 'name="d.account.read"' in html
    # the Salesperson's account read is Business unit: that option is selected
    cell = html.split('name="d.account.read"')[1].split("</select>")[0]
    assert 'value="2" selected' in cell


def test_copy_a_role_then_edit_its_grid_changes_privileges(admin_client, make_user,
                                                           fresh_principal):
    source = role_named("Salesperson")
    response = admin_client.post("/admin/roles", data={"name": "Senior seller",
                                                       "copy_from": str(source.id)})
    assert response.status_code == 302
    role = role_named("Senior seller")
    assert not role.is_builtin
    assert {(rp.privilege, rp.depth) for rp in role.privileges} == \
        {(rp.privilege, rp.depth) for rp in source.privileges if rp.depth}
    user = make_user("ivy@contoso.test", roles=[])
    user.roles.append(role)
    db.session.commit()
    assert fresh_principal(user.id)["depths"]["account.write"] == Depth.USER

    response = admin_client.post(f"/admin/roles/{role.id}", data=grid_form(
        "Senior seller", {"account.read": 4, "account.write": 3, "contact.read": 2},
        named=["track_email"]))
    assert response.status_code == 302
    p = fresh_principal(user.id)
    assert p["depths"] == {"account.read": Depth.ORGANIZATION, "account.write": Depth.PARENT_CHILD,
                           "contact.read": Depth.BUSINESS_UNIT}
    assert p["named"] == {"track_email"}


def test_system_administrator_cannot_be_edited(admin_client):
    role = role_named("System Administrator")
    page = admin_client.get(f"/admin/roles/{role.id}").get_data(as_text=True)
    assert "always has every privilege" in page and "Save role" not in page
    response = admin_client.post(f"/admin/roles/{role.id}", data=grid_form(role.name, {}))
    assert response.status_code == 403
    db.session.expire_all()
    assert all(rp.depth for rp in role.privileges)


def test_edited_builtin_role_survives_the_organization_setup(admin_client, make_user,
                                                            fresh_principal):
    role = role_named("Salesperson")
    admin_client.post(f"/admin/roles/{role.id}", data=grid_form(
        "Salesperson", {"account.read": 4}, named=["use_outlook_addin"]))
    user = make_user("jo@contoso.test", roles=["Salesperson"])
    ensure_builtin_roles()  # as `flask init-org` on every deployment does
    db.session.commit()
    p = fresh_principal(user.id)
    assert {k: d for k, d in p["depths"].items() if d} == {"account.read": Depth.ORGANIZATION}
    assert p["named"] == {"use_outlook_addin"}


def test_deleting_a_role_in_use_is_refused(admin_client, make_user):
    role = Role(name="Temp")
    db.session.add(role)
    db.session.commit()
    user = make_user("kim@contoso.test", roles=[])
    user.roles.append(role)
    team = Team(name="Temps", business_unit_id=user.business_unit_id, roles=[role])
    db.session.add(team)
    db.session.commit()
    response = admin_client.post(f"/admin/roles/{role.id}/delete")
    page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "in use by 1 user and 1 team" in page
    assert role_named("Temp") is not None
    user.roles.clear()
    team.roles.clear()
    db.session.commit()
    response = admin_client.post(f"/admin/roles/{role.id}/delete")
    assert response.headers["Location"].endswith("/admin/roles")
    assert role_named("Temp") is None
    builtin = role_named("Salesperson")
    response = admin_client.post(f"/admin/roles/{builtin.id}/delete")
    assert "cannot be deleted" in admin_client.get(response.headers["Location"]).get_data(as_text=True)


def test_a_role_administrator_cannot_grant_more_than_they_hold(admin_client, make_user, signin):
    """Someone who may edit roles and users, but is no System Administrator, can neither
    raise a cell above their own depth nor hand out a role that does."""
    keeper = Role(name="Role keeper")
    for key in ("security_role.read", "security_role.write", "security_role.create",
                "user.read", "user.write", "account.read"):
        keeper.privileges.append(RolePrivilege(privilege=key, depth=4 if "account" not in key else 2))
    custom = Role(name="Custom")
    db.session.add_all([keeper, custom])
    db.session.commit()
    actor = make_user("lee@contoso.test", roles=[])
    actor.roles.append(keeper)
    db.session.commit()
    client = signin(actor)
    cells = {"account.read": 4}
    assert client.post(f"/admin/roles/{custom.id}", data=grid_form("Custom", cells)).status_code == 403
    assert client.post(f"/admin/roles/{custom.id}",
                       data=grid_form("Custom", {"account.read": 2})).status_code == 302
    target = make_user("mo@contoso.test", roles=[])
    admin_role = role_named("System Administrator")
    assert client.post(f"/admin/users/{target.id}/roles",
                       data={"role_ids": [str(admin_role.id)]}).status_code == 403
    assert client.post(f"/admin/users/{target.id}/roles",
                       data={"role_ids": [str(role_named("Sales Manager").id)]}).status_code == 403
    assert client.post(f"/admin/users/{target.id}/roles",
                       data={"role_ids": [str(custom.id)]}).status_code == 302
    db.session.expire_all()
    assert [r.name for r in target.roles] == ["Custom"]
