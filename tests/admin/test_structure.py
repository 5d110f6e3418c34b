"""Teams and business units: create, edit, members, roles; the unit tree, moves without
cycles, and deactivation rules."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.db import db
from server.security.bootstrap import root_unit
from server.security.models import BusinessUnit, Role, Team
from server.security.privileges import Depth

pytestmark = pytest.mark.both_databases


def test_create_team_add_members_and_roles(admin_client, make_user, make_unit, fresh_principal):
    unit = make_unit("Support")
    response = admin_client.post("/admin/teams/new", data={
        "name": "Tier 2", "business_unit_id": str(unit.id), "description": "Escalations"})
    assert response.status_code == 302
    team = db.session.scalar(select(Team).where(Team.name == "Tier 2"))
    assert team.business_unit_id == unit.id and team.description == "Escalations"
    user = make_user("gil@contoso.test", roles=[])
    assert admin_client.post(f"/admin/teams/{team.id}/members",
                             data={"email": "GIL@contoso.test"}).status_code == 302
    manager = db.session.scalar(select(Role.id).where(Role.name == "Sales Manager"))
    admin_client.post(f"/admin/teams/{team.id}/roles", data={"role_ids": [str(manager)]})
    assert fresh_principal(user.id)["depths"]["lead.write"] == Depth.PARENT_CHILD
    page = admin_client.get(f"/admin/teams/{team.id}").get_data(as_text=True)
    assert "gil@contoso.test" in page
    listing = admin_client.get("/admin/teams").get_data(as_text=True)
    assert "Tier 2" in listing and "Sales Manager" in listing
    admin_client.post(f"/admin/teams/{team.id}/members", data={"remove": str(user.id)})
    assert fresh_principal(user.id)["depths"] == {}
    # duplicate names are refused
    again = admin_client.post("/admin/teams/new", data={"name": "tier 2",
                                                        "business_unit_id": str(unit.id)})
    assert again.status_code == 400 and "Another team has this name." in again.get_data(as_text=True)


def test_unit_tree_create_rename_and_indentation(admin_client):
    root = root_unit()
    assert admin_client.post("/admin/units", data={"name": "Europe",
                                                   "parent_id": str(root.id)}).status_code == 302
    europe = db.session.scalar(select(BusinessUnit).where(BusinessUnit.name == "Europe"))
    admin_client.post("/admin/units", data={"name": "France", "parent_id": str(europe.id)})
    html = admin_client.get("/admin/units").get_data(as_text=True)
    html = html[html.index('class="unit-tree"'):]
    # France is listed inside Europe's nested list, which is inside the root's
    assert html.index(root.name) < html.index("Europe") < html.index("France")
    assert html.count("<ul>") >= 3
    france = db.session.scalar(select(BusinessUnit).where(BusinessUnit.name == "France"))
    admin_client.post(f"/admin/units/{france.id}", data={"action": "rename", "name": "Gaul"})
    db.session.expire_all()
    assert france.name == "Gaul"


def test_moving_a_unit_refuses_cycles(admin_client, make_unit):
    top = make_unit("Americas")
    mid = make_unit("North America", parent=top)
    low = make_unit("Canada", parent=mid)
    for target in (top, mid, low):  # itself or below itself
        response = admin_client.post(f"/admin/units/{top.id}",
                                     data={"action": "move", "parent_id": str(target.id)})
        assert response.status_code == 302
        page = admin_client.get(response.headers["Location"]).get_data(as_text=True)
        assert "cannot be moved under itself" in page
        db.session.expire_all()
        assert top.parent_id == root_unit().id
    # a legal move: Canada straight under Americas
    admin_client.post(f"/admin/units/{low.id}", data={"action": "move", "parent_id": str(top.id)})
    db.session.expire_all()
    assert low.parent_id == top.id
    # the root stays where it is
    root = root_unit()
    admin_client.post(f"/admin/units/{root.id}", data={"action": "move", "parent_id": str(top.id)})
    db.session.expire_all()
    assert root.parent_id is None


def test_deactivating_units(admin_client, make_unit, make_user):
    unit = make_unit("Asia")
    child = make_unit("Japan", parent=unit)
    user = make_user("hiro@contoso.test", roles=["Salesperson"], unit=child)

    def deactivate(u):
        response = admin_client.post(f"/admin/units/{u.id}/active", data={"active": "0"})
        return admin_client.get(response.headers["Location"]).get_data(as_text=True)

    assert "cannot be deactivated" in deactivate(root_unit())
    assert "has 1 active user" in deactivate(child)
    assert "active child units" in deactivate(unit)
    admin_client.post(f"/admin/users/{user.id}/active", data={"active": "0"})
    deactivate(child)
    deactivate(unit)
    db.session.expire_all()
    assert not child.is_active and not unit.is_active
    # no new users or child units in an inactive unit
    response = admin_client.post("/admin/users/new", data={
        "last_name": "Late", "email": "late@contoso.test", "business_unit_id": str(child.id)})
    assert response.status_code == 400
    assert admin_client.post("/admin/units", data={"name": "Osaka",
                                                   "parent_id": str(child.id)}).status_code == 400
