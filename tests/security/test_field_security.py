"""Field-level security: a secured field is hidden from whoever no field security profile
grants it to; a profile grants read, update and create separately, to users directly or
through their teams; System Administrators see and set every field."""
from __future__ import annotations

import pytest

from server.crm.services import records
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.errors import Invalid
from server.security import authz
from server.security.models import (FieldPermission, FieldSecurityProfile, SecuredField, Team,
                                    User)

CONTACT = RECORD_TYPES["contact"]
SECRET = "mobile_phone"


@pytest.fixture
def secured(app):
    db.session.add(SecuredField(table_name="contact", field=SECRET))
    db.session.commit()


def profile(name: str, *, read=False, update=False, create=False) -> FieldSecurityProfile:
    fsp = FieldSecurityProfile(name=name)
    fsp.permissions.append(FieldPermission(table_name="contact", field=SECRET, can_read=read,
                                           can_update=update, can_create=create))
    db.session.add(fsp)
    db.session.commit()
    return fsp


def fresh(user: User):
    """The user's principal as a new request would compute it."""
    return authz.principal(db.session.get(User, user.id))


def visible(p) -> set[str]:
    return {f.name for f in records.visible_fields(p, CONTACT)}


def a_contact(p, **extra):
    record = records.create(p, CONTACT, {"last_name": "Fabrikam", **extra})
    db.session.commit()
    return record


def refused(call, field=SECRET):
    with pytest.raises(Invalid) as exc:
        call()
    db.session.rollback()
    assert field in exc.value.fields
    return exc.value


def test_unsecured_fields_are_untouched(app, make_user):
    p = fresh(make_user())
    assert visible(p) == set(CONTACT.field_names)
    record = a_contact(p, mobile_phone="+1 555 0100")
    assert record.mobile_phone == "+1 555 0100"


def test_without_a_profile_the_field_is_hidden_and_cannot_be_set(secured, make_user):
    user = make_user()
    p = fresh(user)
    assert SECRET not in visible(p)
    assert visible(p) == set(CONTACT.field_names) - {SECRET}
    assert p.fields("contact").hidden == {SECRET}
    refused(lambda: records.validate(CONTACT, {SECRET: "x"}, p, creating=True))
    refused(lambda: records.validate(CONTACT, {SECRET: "x"}, p, creating=False))
    refused(lambda: records.create(p, CONTACT, {"last_name": "A", SECRET: "+1 555 0101"}))
    record = a_contact(p)
    error = refused(lambda: records.update(fresh(user), record, {SECRET: "+1 555 0102"}))
    assert "secured" in error.fields[SECRET]
    assert db.session.get(type(record), record.id).mobile_phone is None
    # Other fields in the same call are not written either.
    refused(lambda: records.update(fresh(user), record, {"job_title": "CEO", SECRET: "1"}))
    assert db.session.get(type(record), record.id).job_title is None


def test_read_profile_shows_the_field_but_does_not_let_it_change(secured, make_user):
    user = make_user()
    fsp = profile("Readers", read=True)
    user.field_profiles.append(fsp)
    db.session.commit()
    p = fresh(user)
    assert SECRET in visible(p)
    record = a_contact(p)
    refused(lambda: records.update(fresh(user), record, {SECRET: "+1 555 0103"}))
    refused(lambda: records.create(fresh(user), CONTACT, {"last_name": "B", SECRET: "1"}))


def test_update_profile_lets_the_field_change_but_not_be_set_on_create(secured, make_user):
    user = make_user()
    fsp = profile("Editors", read=True, update=True)
    user.field_profiles.append(fsp)
    db.session.commit()
    record = a_contact(fresh(user))
    records.update(fresh(user), record, {SECRET: "+1 555 0104"})
    db.session.commit()
    assert db.session.get(type(record), record.id).mobile_phone == "+1 555 0104"
    refused(lambda: records.create(fresh(user), CONTACT, {"last_name": "C", SECRET: "1"}))


def test_create_profile_lets_the_field_be_set_on_create_only(secured, make_user):
    user = make_user()
    fsp = profile("Creators", read=True, create=True)
    user.field_profiles.append(fsp)
    db.session.commit()
    record = a_contact(fresh(user), mobile_phone="+1 555 0105")
    assert record.mobile_phone == "+1 555 0105"
    refused(lambda: records.update(fresh(user), record, {SECRET: "+1 555 0106"}))


def test_profiles_apply_through_teams(secured, make_user):
    user, outsider = make_user(), make_user()
    team = Team(name="Phone people", business_unit_id=user.business_unit_id)
    team.members.append(user)
    db.session.add(team)
    team.field_profiles.append(profile("Team editors", read=True, update=True, create=True))
    db.session.commit()
    p = fresh(user)
    assert SECRET in visible(p)
    record = a_contact(p, mobile_phone="+1 555 0107")
    records.update(fresh(user), record, {SECRET: "+1 555 0108"})
    db.session.commit()
    assert SECRET not in visible(fresh(outsider))


def test_several_profiles_add_up(secured, make_user):
    user = make_user()
    profiles = [profile("R", read=True), profile("U", update=True)]
    user.field_profiles += profiles
    db.session.commit()
    access = fresh(user).fields("contact")
    assert access.can_read(SECRET) and access.can_update(SECRET) and not access.can_create(SECRET)


def test_a_profile_for_another_table_grants_nothing_here(secured, make_user):
    user = make_user()
    fsp = FieldSecurityProfile(name="Accounts only")
    fsp.permissions.append(FieldPermission(table_name="account", field=SECRET, can_read=True,
                                           can_update=True, can_create=True))
    user.field_profiles.append(fsp)
    db.session.commit()
    assert SECRET not in visible(fresh(user))


def test_system_administrators_see_and_set_every_field(secured, make_user):
    admin = make_user(roles=["System Administrator"])
    p = fresh(admin)
    assert visible(p) == set(CONTACT.field_names)
    record = a_contact(p, mobile_phone="+1 555 0109")
    records.update(fresh(admin), record, {SECRET: "+1 555 0110"})
    db.session.commit()
    assert db.session.get(type(record), record.id).mobile_phone == "+1 555 0110"


def test_an_inactive_administrator_sees_no_secured_field(secured, make_user):
    admin = make_user(roles=["System Administrator"], is_active=False)
    assert SECRET not in visible(fresh(admin))
