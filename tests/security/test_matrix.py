"""The authorization matrix at the service level: every built-in role × record table ×
privilege × kind of owner, checked three ways that must agree with the depth definitions —
``authz.scope`` (the SQL filter of every list), ``authz.can`` (one loaded record) and the
record services (update, delete, assign, share, create), which must raise NotFound or
Forbidden exactly when they should and then change nothing.

Then what the matrix cannot show: roles through teams, several roles, inactive users,
sharing, revoking, and assignment moving the owning business unit.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.services import records
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.errors import Forbidden, Invalid, NotFound
from server.security import authz
from server.security.models import RecordShare, Team, User
from server.security.privileges import BUILTIN_ROLES, PRIVILEGES, RECORD_TABLES, Depth
from tests.security import world as w

pytestmark = pytest.mark.both_databases

ROLES = tuple(BUILTIN_ROLES)


def ids_in_scope(p, table: str, privilege: str) -> set[int]:
    model = w.MODELS[table]
    return set(db.session.scalars(select(model.id).where(authz.scope(p, model, privilege))))


def test_every_table_and_privilege_is_covered():
    assert set(w.MODELS) == set(RECORD_TABLES)
    assert set(PRIVILEGES) == {"create", "read", "write", "delete", "append", "append_to",
                               "assign", "share"}


# -- the matrix: scope and can ------------------------------------------------------------------

@pytest.mark.parametrize("table", RECORD_TABLES)
@pytest.mark.parametrize("role", ROLES)
def test_scope_and_can_follow_the_depth(app, role, table):
    world = w.build([role])
    rows = {owner: w.make_record(table, world.owners[owner]) for owner in w.OWNERS}
    db.session.commit()
    p = authz.principal(world.me)
    model = w.MODELS[table]
    for privilege in PRIVILEGES:
        depth = w.role_depth(role, table, privilege)
        assert p.depth(table, privilege) == depth
        expected = {owner for owner in w.OWNERS if w.allowed(depth, owner)}
        if privilege == "create":
            got = set()
            for owner_key, owner in world.owners.items():
                is_user = isinstance(owner, User)
                if authz.can_create(p, model, owner.business_unit_id,
                                    owner.id if is_user else None,
                                    owner_team_id=None if is_user else owner.id):
                    got.add(owner_key)
            assert got == expected, (role, table, privilege, depth.label)
            continue
        by_scope = {o for o, r in rows.items() if r.id in ids_in_scope(p, table, privilege)}
        assert by_scope == expected, (role, table, privilege, depth.label, "scope")
        by_can = {o for o, r in rows.items() if authz.can(p, privilege, r)}
        assert by_can == expected, (role, table, privilege, depth.label, "can")
    # The list of a table holds nothing it should not (no stray rows from elsewhere).
    assert ids_in_scope(p, table, "read") <= {r.id for r in rows.values()}


# -- the matrix: services -----------------------------------------------------------------------

def _snapshot(table: str, record_id: int):
    """What a refused call must leave alone: the row, its owner and its shares."""
    db.session.flush()  # anything a refused call left pending would show now
    db.session.expire_all()
    model = w.MODELS[table]
    row = db.session.get(model, record_id)
    if row is None:
        return None
    shares = db.session.scalars(select(RecordShare.id).where(
        RecordShare.table_name == table, RecordShare.record_id == record_id)).all()
    return (row.description, row.owner_user_id, row.owner_team_id,
            row.owning_business_unit_id, tuple(shares))


def _expect(privilege_ok: bool, read_ok: bool):
    if privilege_ok:
        return None
    return Forbidden if read_ok else NotFound


SERVICE_OPS = ("update", "delete", "assign", "share")


@pytest.mark.parametrize("table", RECORD_TABLES)
@pytest.mark.parametrize("role", ROLES)
def test_record_services_refuse_exactly_when_they_should(app, role, table):
    world = w.build([role])
    p = authz.principal(world.me)
    target_user = world.owners["other"]  # assign moves records to unit B
    share_with = world.owners["teammate"]
    depth = {priv: w.role_depth(role, table, priv) for priv in PRIVILEGES}
    checked = 0
    for op in SERVICE_OPS:
        if op == "update" and table == "activity":
            continue  # activities are edited through server.crm.services.activity_actions
        privilege = {"update": "write"}.get(op, op)
        for owner in w.OWNERS:
            record = w.make_record(table, world.owners[owner], label=f"{op}-{owner}")
            db.session.commit()
            record_id = record.id
            before = _snapshot(table, record_id)
            record = db.session.get(w.MODELS[table], record_id)
            can_read = w.allowed(depth["read"], owner)
            can_priv = w.allowed(depth[privilege], owner)
            error = _expect(can_priv, can_read)
            if op == "share" and can_priv and not can_read:
                error = Forbidden  # one cannot share read access one lacks
            call = {
                "update": lambda: records.update(p, record, {"description": "changed"}),
                "delete": lambda: records.delete(p, record),
                "assign": lambda: records.assign(p, record, target_user),
                "share": lambda: records.share(p, record, share_with, {"read"}),
            }[op]
            where = (role, table, op, owner)
            if error is not None:
                with pytest.raises(error):
                    call()
                assert _snapshot(table, record_id) == before, where
                checked += 1
                continue
            call()
            db.session.commit()
            after = _snapshot(table, record_id)
            if op == "update":
                assert after[0] == "changed", where
            elif op == "delete":
                assert after is None, where
            elif op == "assign":
                assert after[1:4] == (target_user.id, None, world.unit_id("B")), where
            else:
                share = db.session.scalar(select(RecordShare).where(
                    RecordShare.table_name == table, RecordShare.record_id == record_id))
                assert (share.user_id, share.can_read, share.can_write) == \
                    (share_with.id, True, False), where
            checked += 1
    assert checked


@pytest.mark.parametrize("table", [t for t in RECORD_TABLES if t != "activity"])
@pytest.mark.parametrize("role", ROLES)
def test_create_follows_the_owner_depth(app, role, table):
    world = w.build([role])
    p = authz.principal(world.me)
    rt = RECORD_TYPES[table]
    depth = w.role_depth(role, table, "create")
    model = w.MODELS[table]
    for owner_key, owner in world.owners.items():
        before = db.session.scalar(select(db.func.count()).select_from(model))
        data = {f.name: f"{owner_key} {role}" for f in rt.fields if f.required}
        if w.allowed(depth, owner_key):
            record = records.create(p, rt, data, owner=owner)
            db.session.commit()
            assert record.owner is owner
            assert record.owning_business_unit_id == owner.business_unit_id
        else:
            with pytest.raises(Forbidden):
                records.create(p, rt, data, owner=owner)
            db.session.rollback()
            assert db.session.scalar(select(db.func.count()).select_from(model)) == before


# -- roles through teams, several roles, inactive users -----------------------------------------

def test_a_role_given_to_a_team_applies_to_its_members(app):
    world = w.build([])
    p = authz.principal(world.me)
    assert p.depths == {}
    w.give_role(world.owners["team_x"], "System Administrator")  # not a member: no effect
    w.give_role(world.owners["team_b"], "Sales Manager")
    p = authz.principal(db.session.get(User, world.me.id))
    expected = {k: v for k, v in BUILTIN_ROLES["Sales Manager"]["privileges"].items()}
    assert p.depths == expected
    assert not p.is_admin
    rows = {o: w.make_record("account", world.owners[o]) for o in w.OWNERS}
    db.session.commit()
    seen = {o for o, r in rows.items() if r.id in ids_in_scope(p, "account", "read")}
    assert seen == {o for o in w.OWNERS if w.allowed(Depth.PARENT_CHILD, o)}


def test_several_roles_hold_the_greatest_depth(app):
    roles = ["Salesperson", "Customer Service Representative"]
    world = w.build(roles)
    p = authz.principal(world.me)
    keys = set().union(*(BUILTIN_ROLES[r]["privileges"] for r in roles))
    for key in keys:
        table, _, privilege = key.partition(".")
        expected = max(w.role_depth(r, table, privilege) for r in roles)
        assert p.depth(table, privilege) == expected, key
    # Contacts: Salesperson writes their own, the representative the business unit's.
    rows = {o: w.make_record("contact", world.owners[o]) for o in w.OWNERS}
    db.session.commit()
    writable = {o for o, r in rows.items() if r.id in ids_in_scope(p, "contact", "write")}
    assert writable == {o for o in w.OWNERS if w.allowed(Depth.BUSINESS_UNIT, o)}
    assert p.named == frozenset(BUILTIN_ROLES["Salesperson"]["named"]
                                | BUILTIN_ROLES["Customer Service Representative"]["named"])


@pytest.mark.parametrize("role", ROLES)
def test_an_inactive_user_has_nothing(app, role):
    world = w.build([role], me_active=False)
    p = authz.principal(world.me)
    assert p.depths == {} and p.named == frozenset() and not p.is_admin
    for table in RECORD_TABLES:
        rows = [w.make_record(table, world.owners[o]) for o in w.OWNERS]
        # Even a share does not reach an inactive user.
        db.session.add(RecordShare(table_name=table, record_id=rows[0].id, user_id=world.me.id,
                                   can_read=True, can_write=True))
        db.session.commit()
        for privilege in PRIVILEGES:
            if privilege == "create":
                assert not authz.can_create(p, w.MODELS[table], world.me.business_unit_id,
                                            world.me.id)
                continue
            assert ids_in_scope(p, table, privilege) == set(), (table, privilege)
            assert not any(authz.can(p, privilege, r) for r in rows), (table, privilege)
        with pytest.raises(NotFound):
            authz.get(p, w.MODELS[table], rows[0].id)


# -- sharing ------------------------------------------------------------------------------------

@pytest.fixture
def sharing(app):
    """``me`` and ``teammate`` are salespeople in A; ``other`` (B) owns an account."""
    world = w.build(["Salesperson"])
    account = w.make_record("account", world.owners["other"])
    db.session.commit()
    return world, account


def _p(user):
    return authz.principal(db.session.get(User, user.id))


def test_read_only_share_gives_read_and_nothing_more(sharing):
    world, account = sharing
    me, other = world.me, world.owners["other"]
    with pytest.raises(NotFound):
        records.get(_p(me), "account", account.id)
    records.share(_p(other), account, me, {"read"})
    db.session.commit()
    p = _p(me)
    assert records.get(p, "account", account.id).id == account.id
    assert account.id in ids_in_scope(p, "account", "read")
    for privilege in ("write", "delete", "assign", "share", "append", "append_to"):
        assert account.id not in ids_in_scope(p, "account", privilege), privilege
        assert not authz.can(p, privilege, account), privilege
    with pytest.raises(Forbidden):
        records.update(p, account, {"description": "mine now"})
    with pytest.raises(Forbidden):
        records.delete(p, account)
    db.session.rollback()
    assert db.session.get(type(account), account.id).description == "original"


def test_a_write_share_lets_the_user_write(sharing):
    world, account = sharing
    me, other = world.me, world.owners["other"]
    records.share(_p(other), account, me, {"read", "write"})
    db.session.commit()
    records.update(_p(me), account, {"description": "edited through a share"})
    db.session.commit()
    assert db.session.get(type(account), account.id).description == "edited through a share"


def test_sharing_any_right_includes_read(sharing):
    world, account = sharing
    me, other = world.me, world.owners["other"]
    row = records.share(_p(other), account, me, {"write"})
    db.session.commit()
    assert row.can_read and row.can_write
    assert records.get(_p(me), "account", account.id, "write").id == account.id


def test_sharing_with_a_team_reaches_its_members_only(sharing):
    world, account = sharing
    other = world.owners["other"]
    team_x = world.owners["team_x"]  # teammate is a member, me is not
    records.share(_p(other), account, team_x, {"read"})
    db.session.commit()
    assert records.get(_p(world.owners["teammate"]), "account", account.id)
    with pytest.raises(NotFound):
        records.get(_p(world.me), "account", account.id)


def test_revoking_a_share_removes_access(sharing):
    world, account = sharing
    me, other = world.me, world.owners["other"]
    records.share(_p(other), account, me, {"read", "write"})
    db.session.commit()
    assert records.get(_p(me), "account", account.id)
    assert records.share(_p(other), account, me, set()) is None
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(RecordShare)) == 0
    with pytest.raises(NotFound):
        records.get(_p(me), "account", account.id)
    assert account.id not in ids_in_scope(_p(me), "account", "write")


def test_a_share_can_be_narrowed(sharing):
    world, account = sharing
    me, other = world.me, world.owners["other"]
    records.share(_p(other), account, me, {"read", "write"})
    records.share(_p(other), account, me, {"read"})
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(RecordShare)) == 1
    assert not authz.can(_p(me), "write", account)


def test_one_cannot_share_rights_one_lacks(sharing):
    world, account = sharing
    me, other, teammate = world.me, world.owners["other"], world.owners["teammate"]
    records.share(_p(other), account, me, {"read", "share"})
    db.session.commit()
    with pytest.raises(Forbidden):
        records.share(_p(me), account, teammate, {"read", "write"})
    db.session.rollback()
    assert db.session.scalar(select(RecordShare).where(RecordShare.user_id == teammate.id)) is None
    records.share(_p(me), account, teammate, {"read"})
    db.session.commit()
    assert records.get(_p(teammate), "account", account.id)
    # Reading a teammate's account (business unit read) does not let one share it.
    mine = w.make_record("account", teammate)
    db.session.commit()
    assert authz.can(_p(me), "read", mine)
    with pytest.raises(Forbidden):
        records.share(_p(me), mine, other, {"read"})


def test_unknown_share_rights_are_refused(sharing):
    world, account = sharing
    with pytest.raises(Invalid):
        records.share(_p(world.owners["other"]), account, world.me, {"read", "own"})


def test_deleting_a_record_deletes_its_shares(sharing):
    world, account = sharing
    other = world.owners["other"]
    records.share(_p(other), account, world.me, {"read"})
    db.session.commit()
    records.delete(_p(other), account)
    db.session.commit()
    assert db.session.scalar(select(db.func.count()).select_from(RecordShare)) == 0


# -- assignment ---------------------------------------------------------------------------------

def test_assign_moves_the_owning_business_unit(app):
    world = w.build(["Sales Manager"])
    p = _p(world.me)
    account = w.make_record("account", world.owners["teammate"])
    db.session.commit()
    records.assign(p, account, world.owners["child"])
    db.session.commit()
    assert (account.owner_user_id, account.owning_business_unit_id) == \
        (world.owners["child"].id, world.unit_id("A1"))
    team_b: Team = world.owners["team_b"]
    records.assign(p, account, team_b)
    db.session.commit()
    assert (account.owner_user_id, account.owner_team_id, account.owning_business_unit_id) == \
        (None, team_b.id, world.unit_id("B"))
    # The manager keeps access through the team; the records of unit B stay out of reach.
    assert authz.can(p, "write", account)
    other = w.make_record("account", world.owners["other"])
    db.session.commit()
    assert not authz.can(p, "read", other)


def test_records_are_not_assigned_to_inactive_users(app):
    world = w.build(["Sales Manager"])
    account = w.make_record("account", world.owners["teammate"])
    gone = world.owners["child"]
    gone.is_active = False
    db.session.commit()
    with pytest.raises(Invalid):
        records.assign(_p(world.me), account, gone)
    db.session.rollback()
    assert db.session.get(type(account), account.id).owner_user_id == world.owners["teammate"].id


# -- linking records: append on the record, append-to on the other ------------------------------

def _custom_role(name: str, privileges: dict[str, Depth]):
    from server.security.models import Role, RolePrivilege
    role = Role(name=name, privileges=[RolePrivilege(privilege=k, depth=int(v))
                                       for k, v in privileges.items()])
    db.session.add(role)
    db.session.commit()
    return role.name


def test_linking_needs_append_on_the_record_and_append_to_on_the_other(app):
    org = Depth.ORGANIZATION
    writer = _custom_role("Writer", {"contact.read": org, "contact.write": org,
                                     "account.read": org, "account.append_to": org})
    world = w.build([writer])
    contact = w.make_record("contact", world.owners["other"])
    account = w.make_record("account", world.owners["other"])
    db.session.commit()
    p = _p(world.me)
    with pytest.raises(Forbidden):
        records.update(p, contact, {"parent_account_id": account.id})
    assert contact.parent_account_id is None
    db.session.rollback()
    # Other fields, and the link sent back unchanged (a whole form), are fine.
    records.update(_p(world.me), contact, {"job_title": "Buyer", "parent_account_id": None})
    db.session.commit()
    w.give_role(world.me, _custom_role("Appender", {"contact.append": org}))
    records.update(_p(world.me), contact, {"parent_account_id": account.id})
    db.session.commit()
    assert contact.parent_account_id == account.id
    # Without append-to on the account, no link, whatever the contact allows.
    other_account = w.make_record("account", world.owners["other"])
    db.session.commit()
    no_append_to = w.build([])
    w.give_role(no_append_to.me, _custom_role("No append-to", {
        "contact.read": org, "contact.write": org, "contact.append": org, "account.read": org}))
    with pytest.raises(Invalid) as exc:
        records.update(_p(no_append_to.me), contact, {"parent_account_id": other_account.id})
    assert "parent_account_id" in exc.value.fields


def test_a_refused_customer_change_leaves_the_record_untouched(app):
    world = w.build(["System Administrator"])
    case = w.make_record("case", world.owners["me"])
    account = w.make_record("account", world.owners["me"])
    contact = w.make_record("contact", world.owners["me"])
    case.customer_account_id = account.id
    db.session.commit()
    with pytest.raises(Invalid):
        records.update(_p(world.me), case, {"customer_contact_id": contact.id})
    assert case.customer_contact_id is None and case.customer_account_id == account.id
    assert not db.session.dirty


def test_records_are_not_created_for_inactive_users(app):
    world = w.build(["Sales Manager"])
    gone = world.owners["teammate"]
    gone.is_active = False
    db.session.commit()
    with pytest.raises(Invalid):
        records.create(_p(world.me), RECORD_TYPES["account"], {"name": "Orphan"}, owner=gone)
