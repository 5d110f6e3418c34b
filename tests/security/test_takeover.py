"""Vulnerability 1 of issue 11: a unit user-administrator must not take over a deactivated
user who holds more than they do (a System Administrator, or anyone with a privilege the
administrator lacks, through their own roles or a team's). Every step of the chain (reset the
password, change the sign-in email, reactivate, sign in) is refused, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import pytest

from server.db import db
from server.security.models import Role, RolePrivilege, Team
from server.security.privileges import Depth

pytestmark = pytest.mark.both_databases


def _role(name: str, grants: dict[str, Depth], named: tuple[str, ...] = ()) -> Role:
    role = Role(name=name)
    for priv, depth in grants.items():
        role.privileges.append(RolePrivilege(privilege=priv, depth=int(depth)))
    for n in named:
        role.privileges.append(RolePrivilege(privilege=n, depth=1))
    db.session.add(role)
    db.session.commit()
    return role


UNIT_ADMIN = {"user.read": Depth.BUSINESS_UNIT, "user.write": Depth.BUSINESS_UNIT,
              "user.create": Depth.BUSINESS_UNIT}

# Ways a deactivated target can hold something the unit administrator lacks.
TARGETS = {
    "system administrator": lambda: (["System Administrator"], None),
    "a deeper depth": lambda: ([], _role("Deep", {"account.read": Depth.ORGANIZATION})),
    "a named privilege": lambda: ([], _role("Named", {}, ("send_as_other_user",))),
    "more user administration": lambda: ([], _role("Org users", {"user.write": Depth.ORGANIZATION})),
}


@pytest.mark.parametrize("via_team", [False, True], ids=["own role", "team role"])
@pytest.mark.parametrize("kind", list(TARGETS))
def test_a_unit_administrator_cannot_take_over_a_deactivated_user_above_them(
        app, make_unit, make_user, signin, kind, via_team):
    north = make_unit("North")
    unit_admin = _role("Unit admin", UNIT_ADMIN)
    boss = make_user("boss@contoso.test", roles=["Salesperson"], unit=north)
    boss.roles.append(unit_admin)
    builtin, extra = TARGETS[kind]()
    target = make_user("target@contoso.test", roles=[] if via_team else builtin or [], unit=north)
    granted = list(target.roles) if not via_team else []
    if via_team:
        team = Team(name="Holders", business_unit_id=north.id)
        team.roles = [r for r in db.session.query(Role).filter(Role.name.in_(builtin or []))]
        if extra:
            team.roles.append(extra)
        team.members.append(target)
        db.session.add(team)
    elif extra:
        target.roles.append(extra)
    assert via_team or granted or extra
    db.session.commit()
    client = signin(boss)
    # the unit administrator does manage their unit's users (the refusals below are not a
    # missing privilege)
    assert client.get(f"/admin/users/{target.id}").status_code == 200
    # an administrator deactivates the target (the unit administrator cannot)
    assert client.post(f"/admin/users/{target.id}/active", data={"active": "0"}).status_code == 403
    target.is_active = False
    db.session.commit()

    steps = {
        "password": client.post(f"/admin/users/{target.id}/password",
                                data={"password_mode": "set", "password": "Taken-over-123"}),
        "email": client.post(f"/admin/users/{target.id}", data={
            "first_name": "T", "last_name": "Target", "email": "boss-now@contoso.test",
            "business_unit_id": str(north.id)}),
        "reactivate": client.post(f"/admin/users/{target.id}/active", data={"active": "1"}),
    }
    assert {k: r.status_code for k, r in steps.items()} == dict.fromkeys(steps, 403)
    db.session.expire_all()
    assert not target.is_active and target.email == "target@contoso.test"
    fresh = app.test_client()
    for email in ("target@contoso.test", "boss-now@contoso.test"):
        assert fresh.post("/signin", data={"email": email, "password": "Taken-over-123"}
                          ).status_code == 401


def test_a_deactivated_user_with_no_more_than_the_administrator_can_be_reset(
        app, make_unit, make_user, signin):
    """The check is about privileges, not about being inactive: a deactivated peer is fine."""
    north = make_unit("North")
    unit_admin = _role("Unit admin", UNIT_ADMIN)
    boss = make_user("boss@contoso.test", roles=["Salesperson"], unit=north)
    boss.roles.append(unit_admin)
    peer = make_user("peer@contoso.test", roles=["Salesperson"], unit=north, is_active=False)
    db.session.commit()
    client = signin(boss)
    assert client.post(f"/admin/users/{peer.id}/password",
                       data={"password_mode": "set", "password": "Fresh-start-123"}).status_code == 200
    assert client.post(f"/admin/users/{peer.id}/active", data={"active": "1"}).status_code == 302
    db.session.expire_all()
    assert peer.is_active
    assert app.test_client().post("/signin", data={"email": "peer@contoso.test",
                                                   "password": "Fresh-start-123"}).status_code == 302
