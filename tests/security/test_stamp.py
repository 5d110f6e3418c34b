"""The security stamp (server/security/stamp.py): a process keeps a principal's grants and the
pane's organization settings while the stamp read with the bearer token (pages: with the
session's user) is unchanged. Any
change to any input of a principal (the business-unit tree and the user's own unit among
them), made by the ORM or by plain SQL, in this process or in
another (a second app instance: its own store, as another gunicorn worker has), is seen by
the very next call of both; on SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st
from flask import g, request_finished
from sqlalchemy import select, text

from server import create_app
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.crm.services import records
from server.db import db
from server.security import authz, tokens
from server.security.bootstrap import create_user, root_unit
from server.security.models import BusinessUnit, Role, RolePrivilege, SecuredField, Team, User
from server.security.privileges import Depth
from tests.addin.addin_world import message
from tests.conftest import make_config

ROLES = ("Salesperson", "Customer Service Representative", "System Administrator")
PRIVILEGES = ("contact.read", "account.write", "use_outlook_addin", "track_email")
FIELDS = (("contact", "phone"), ("account", "email1"))

pytestmark = pytest.mark.both_databases
PREFIXES = ("CRM:", "TRK:", "X-")
UNITS = ("Stamp A", "Stamp B")  # made under the root by the test; "Stamp C" comes and goes
PARENTS = (None, *UNITS)  # None: the root

change = st.one_of(
    st.tuples(st.just("user_role"), st.sampled_from(ROLES), st.booleans()),
    st.tuples(st.just("team_member"), st.just(None), st.booleans()),
    st.tuples(st.just("team_role"), st.sampled_from(ROLES), st.booleans()),
    st.tuples(st.just("privilege"), st.tuples(st.sampled_from(ROLES), st.sampled_from(PRIVILEGES),
                                              st.sampled_from([None, *Depth])), st.booleans()),
    st.tuples(st.just("builtin"), st.just(None), st.booleans()),
    st.tuples(st.just("secured"), st.sampled_from(FIELDS), st.booleans()),
    st.tuples(st.just("team_again"), st.just(None), st.booleans()),
    st.tuples(st.just("org"), st.sampled_from(PREFIXES), st.booleans()),
    st.tuples(st.just("unit_parent"), st.tuples(st.sampled_from(UNITS), st.sampled_from(PARENTS)),
              st.booleans()),
    st.tuples(st.just("unit_again"), st.sampled_from(PARENTS), st.booleans()),
    st.tuples(st.just("unit_active"), st.sampled_from(UNITS), st.booleans()),
    st.tuples(st.just("user_unit"), st.sampled_from(PARENTS), st.booleans()),
)


def _role(name: str) -> Role:
    return db.session.scalar(select(Role).where(Role.name == name))


def _team() -> Team:
    return db.session.scalar(select(Team).where(Team.name == "Stamp team"))


def _unit(name: str | None) -> BusinessUnit | None:
    """The unit so named; None: the root."""
    return db.session.scalar(select(BusinessUnit).where(BusinessUnit.name == name)) \
        if name else root_unit()


def _apply_to_units(kind: str, arg, core: bool, user: User) -> None:
    """A unit moved under another parent (under the root where the other would make a
    cycle), "Stamp C" made under a parent or deleted, a unit disabled or enabled again,
    the user moved to another unit (a change of their own row, read with the stamp)."""
    if kind == "unit_parent":
        unit, parent = _unit(arg[0]), _unit(arg[1])
        if parent.id == unit.id or parent.parent_id == unit.id:
            parent = root_unit()
        changes = [("business_unit", unit, "parent_id", parent.id)]
    elif kind == "unit_active":
        unit = _unit(arg)
        changes = [("business_unit", unit, "is_active", not unit.is_active)]
    elif kind == "user_unit":
        changes = [("user", user, "business_unit_id", _unit(arg).id)]
    else:  # "unit_again"
        unit, parent = _unit("Stamp C"), _unit(arg)
        if unit is not None and core:
            db.session.execute(text("DELETE FROM business_unit WHERE id = :u"), {"u": unit.id})
            db.session.expunge(unit)
        elif unit is not None:
            db.session.delete(unit)
        elif core:
            db.session.execute(text("INSERT INTO business_unit (name, parent_id, is_active, "
                                    "created_on) VALUES ('Stamp C', :p, true, "
                                    "CURRENT_TIMESTAMP)"), {"p": parent.id})
        else:
            db.session.add(BusinessUnit(name="Stamp C", parent_id=parent.id))
        return
    for table, row, column, value in changes:
        if core:
            db.session.execute(text(f'UPDATE "{table}" SET {column} = :v WHERE id = :i'),
                               {"v": value, "i": row.id})
        else:
            setattr(row, column, value)


def _apply(kind: str, arg, core: bool, user_id: int) -> None:
    """One change to an input of the user's principal (or to the organization), committed;
    ``core``: by plain SQL, else through the ORM."""
    user, team = db.session.get(User, user_id), _team()
    if kind in ("user_role", "team_member", "team_role"):
        role = arg and _role(arg)
        table, a, b, collection, item = {
            "user_role": ("user_role", ("user_id", user.id), ("role_id", role and role.id),
                          user.roles, role),
            "team_member": ("team_member", ("team_id", team.id), ("user_id", user.id),
                            team.members, user),
            "team_role": ("team_role", ("team_id", team.id), ("role_id", role and role.id),
                          team.roles, role)}[kind]
        params = {"a": a[1], "b": b[1]}
        if core:
            where = f"{a[0]} = :a AND {b[0]} = :b"
            present = db.session.scalar(text(f"SELECT 1 FROM {table} WHERE {where}"), params)
            db.session.execute(text(f"DELETE FROM {table} WHERE {where}" if present else
                                    f"INSERT INTO {table} ({a[0]}, {b[0]}) VALUES (:a, :b)"),
                               params)
        elif item in collection:
            collection.remove(item)
        else:
            collection.append(item)
    elif kind == "privilege":
        role_name, privilege, depth = arg
        role = _role(role_name)
        row = db.session.get(RolePrivilege, (role.id, privilege))
        if core:
            db.session.execute(text("DELETE FROM role_privilege WHERE role_id = :r AND privilege = :p"),
                               {"r": role.id, "p": privilege})
            if depth is not None:
                db.session.execute(text("INSERT INTO role_privilege (role_id, privilege, depth) "
                                        "VALUES (:r, :p, :d)"), {"r": role.id, "p": privilege,
                                                                "d": int(depth)})
        elif depth is None:
            if row is not None:
                db.session.delete(row)
        elif row is None:
            db.session.add(RolePrivilege(role_id=role.id, privilege=privilege, depth=int(depth)))
        else:
            row.depth = int(depth)
    elif kind == "builtin":
        role = _role("System Administrator")
        if core:
            db.session.execute(text("UPDATE security_role SET is_builtin = :b WHERE id = :r"),
                               {"b": not role.is_builtin, "r": role.id})
        else:
            role.is_builtin = not role.is_builtin
    elif kind == "secured":
        table_name, field = arg
        row = db.session.get(SecuredField, arg)
        if core:
            sql = ("DELETE FROM secured_field WHERE table_name = :t AND field = :f" if row else
                   "INSERT INTO secured_field (table_name, field) VALUES (:t, :f)")
            db.session.execute(text(sql), {"t": table_name, "f": field})
        elif row is not None:
            db.session.delete(row)
        else:
            db.session.add(SecuredField(table_name=table_name, field=field))
    elif kind == "team_again":  # the team deleted (its members and roles with it), made again
        if core:
            db.session.execute(text("DELETE FROM team WHERE id = :t"), {"t": team.id})
            db.session.expunge(team)  # (SQLite gives the new team the same id)
        else:
            db.session.delete(team)
        db.session.flush()
        db.session.add(Team(name="Stamp team", business_unit_id=user.business_unit_id))
    elif kind.startswith(("unit_", "user_")):
        _apply_to_units(kind, arg, core, user)
    elif kind == "org":
        if core:
            db.session.execute(text("UPDATE organization SET tracking_token_prefix = :p "
                                    "WHERE id = 1"), {"p": arg})
        else:
            db.session.get(Organization, 1).tracking_token_prefix = arg
    db.session.commit()
    db.session.expire_all()


def _facts(p: authz.Principal) -> tuple:
    return (p.team_ids, dict(p.depths), p.named, p.is_admin, dict(p.secured_fields),
            p.business_unit_id, sorted(p.unit_subtree))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(change, min_size=1, max_size=6))
@example(changes=[("privilege", ("Salesperson", "contact.read", Depth.ORGANIZATION), False),
                  ("privilege", ("Salesperson", "contact.read", Depth.USER), True),
                  ("privilege", ("Salesperson", "track_email", None), True)])
@example(changes=[("team_member", None, False), ("team_role", "System Administrator", True),
                  ("builtin", None, True), ("team_again", None, False)])
@example(changes=[("unit_again", "Stamp A", False), ("user_unit", "Stamp A", True),
                  ("unit_parent", ("Stamp B", "Stamp A"), True), ("unit_again", None, True),
                  ("unit_active", "Stamp B", False), ("unit_parent", ("Stamp B", None), False),
                  ("user_unit", None, False)])
@example(changes=[("user_role", "Customer Service Representative", True),
                  ("secured", ("contact", "phone"), False), ("secured", ("contact", "phone"), True),
                  ("org", "TRK:", True), ("org", "X-", False)])
def test_any_change_to_a_principal_is_seen_by_the_next_call_of_every_process(app, tmp_path, changes):
    # Two instances besides the fixture's (whose app context the test runs in): each request
    # has its own app context and session, as when served; each instance its own store.
    first, other = (create_app(make_config(app.config["SQLALCHEMY_DATABASE_URI"], tmp_path))
                    for _ in range(2))
    seen: list[tuple] = []

    def keep(sender, response, **extra):  # (in the request: the principal's user is attached)
        principal = g.get("_principals", {}).get(user_id)
        seen.append((sender, principal and _facts(principal), response.get_json()))

    with other.app_context():
        user = db.session.scalar(select(User).where(User.email == "stamp@contoso.test"))
        if user is None:
            user = create_user("stamp@contoso.test", "Stamp User", unit=root_unit(),
                               roles=["Salesperson"])
            db.session.add(Team(name="Stamp team", business_unit_id=user.business_unit_id))
        for name in UNITS:
            if _unit(name) is None:
                db.session.add(BusinessUnit(name=name, parent_id=root_unit().id))
        # Each example starts from a user who may use the pane (earlier ones changed it).
        salesperson = _role("Salesperson")
        user.roles = [salesperson]
        _role("System Administrator").is_builtin = True
        db.session.merge(RolePrivilege(role_id=salesperson.id, privilege="use_outlook_addin",
                                       depth=int(Depth.USER)))
        _, secret = tokens.issue(user, "stamp", kind="pane")
        db.session.commit()
        user_id = user.id
    db.session.commit()  # (the fixture's session holds nothing open)
    clients = [first.test_client(), other.test_client()]
    headers = {"Authorization": f"Bearer {secret}"}
    for one in (first, other):
        request_finished.connect(keep, one)
    try:
        def call_both() -> None:
            seen.clear()
            for client in clients:
                client.post("/api/addin/context", json={"item": message()}, headers=headers)
            with other.app_context():
                fresh = _facts(authz._load_principals([db.session.get(User, user_id)])[user_id])
                prefix = db.session.get(Organization, 1).tracking_token_prefix
            assert [s[0] for s in seen] == [first, other]
            for _sender, facts, body in seen:
                assert facts is not None and facts == fresh
                if body and "org" in body:
                    assert body["org"]["tracking_token_prefix"] == prefix

        call_both()
        call_both()  # both processes keep what they loaded, and use it
        for one in (first, other):
            assert ("grants", user_id) in one.extensions.get("regarding_stamped", {})
        for kind, arg, core in changes:
            with other.app_context():
                _apply(kind, arg, core, user_id)
            call_both()
    finally:
        for one in (first, other):
            request_finished.disconnect(keep, one)
            with one.app_context():
                db.engine.dispose()


def test_each_write_changes_the_stamp(app, make_user):
    """ORM writes, plain SQL and a cascade (a deleted team's members) all change it; other
    writes do not."""
    user = make_user()
    team = Team(name="Cascade", business_unit_id=user.business_unit_id)
    team.members.append(user)
    db.session.add(team)
    db.session.commit()

    def stamp() -> int:
        return db.session.scalar(text("SELECT security_stamp FROM organization WHERE id = 1"))

    before = stamp()
    assert before is not None
    db.session.execute(text("DELETE FROM team WHERE id = :t"), {"t": team.id})  # members cascade
    db.session.commit()
    assert stamp() != before
    before = stamp()
    user.job_title = "Not a grant"
    db.session.commit()
    assert stamp() == before
    db.session.get(Organization, 1).name = "Renamed"
    db.session.commit()
    assert stamp() != before


def test_a_page_keeps_the_principal_for_the_stamp_and_sees_a_removed_privilege_next(
        app, make_user, signin):
    """Pages read the stamp with the session's user (``sessions.live_user``), so the grants
    come from the process while it is unchanged; a privilege removed by plain SQL (no ORM
    event in this process) is refused on the very next page, as before."""
    user = make_user("pages@contoso.test")
    account = records.create(authz.principal(user), RECORD_TYPES["account"],
                             {"name": "Stamped Ltd"})
    db.session.commit()
    c = signin(user)
    assert c.get(f"/r/account/{account.id}").status_code == 200
    store = app.extensions.get("regarding_stamped", {})
    assert ("grants", user.id) in store
    kept_stamp = store[("grants", user.id)][0]
    assert c.get(f"/r/account/{account.id}").status_code == 200
    assert store[("grants", user.id)][0] == kept_stamp  # used again, not loaded again
    role_id = _role("Salesperson").id
    db.session.execute(text("DELETE FROM role_privilege WHERE role_id = :r AND privilege LIKE "
                            "'account.%'"), {"r": role_id})
    db.session.commit()
    assert c.get(f"/r/account/{account.id}").status_code in (403, 404)
    assert store[("grants", user.id)][0] != kept_stamp
