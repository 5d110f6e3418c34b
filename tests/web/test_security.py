"""What pages must never do: show or change another business unit's records, open a table the
user has no privilege on, show secured fields, run hostile text, or accept a forged form."""
from __future__ import annotations

import html as htmlmod

import pytest
from sqlalchemy import func, select

from server.crm.models import Account
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security.models import (FieldPermission, FieldSecurityProfile, Role, RolePrivilege,
                                    SecuredField)

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>"]

pytestmark = pytest.mark.both_databases


def test_another_units_record_by_id_is_404_and_unchanged(make_unit, make_user, make_record, signin):
    west, east = make_unit("West"), make_unit("East")
    owner = make_user(unit=west)
    account = make_record(owner, "account")
    c = signin(make_user(unit=east))
    base = f"/r/account/{account.id}"
    for path in (base, f"{base}/edit", f"{base}/delete", f"{base}/assign", f"{base}/share",
                 f"{base}/activities/new/task"):
        assert c.get(path).status_code == 404, path
    posts = {f"{base}/edit": {"name": "Hijacked"}, f"{base}/state": {"active": "0"},
             f"{base}/delete": {}, f"{base}/assign": {"owner": "user:1"},
             f"{base}/share": {"principal": "user:1", "rights": "read"},
             f"{base}/activities/new/task": {"subject": "Sneaky"}}
    for path, data in posts.items():
        assert c.post(path, data=data).status_code == 404, path
    db.session.expire_all()
    a = db.session.get(Account, account.id)
    assert (a.name, a.is_active, a.owner_user_id) == ("Contoso Ltd", True, owner.id)
    assert "Contoso" not in c.get("/r/account/").get_data(as_text=True)
    assert "Contoso" not in c.get("/?q=contoso").get_data(as_text=True)


def test_user_without_read_on_a_table_is_refused(make_user, make_record, signin):
    role = Role(name="Accounts only")
    role.privileges = [RolePrivilege(privilege="account.read", depth=4)]
    db.session.add(role)
    db.session.commit()
    admin = make_user(roles=("System Administrator",))
    lead = make_record(admin, "lead")
    c = signin(make_user(roles=("Accounts only",)))
    assert c.get("/r/lead/").status_code == 403
    assert c.get(f"/r/lead/{lead.id}").status_code == 404
    assert c.get("/r/lead/new").status_code == 403
    nav = c.get("/").get_data(as_text=True)
    assert 'href="/r/account/"' in nav and 'href="/r/lead/"' not in nav
    assert "Rene" not in c.get("/?q=rene").get_data(as_text=True)


def _secure_phone(readable: bool = False, updatable: bool = False, user=None):
    db.session.add(SecuredField(table_name="account", field="phone"))
    if user is not None:
        profile = FieldSecurityProfile(name="Phone readers")
        profile.permissions = [FieldPermission(table_name="account", field="phone",
                                               can_read=readable, can_update=updatable)]
        user.field_profiles.append(profile)
    db.session.commit()


def test_secured_field_is_hidden_from_list_detail_form_and_search(make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account", name="Secretive", phone="+47 999 12345")
    _secure_phone()
    c = signin(user)
    for path in ("/r/account/", f"/r/account/{account.id}", f"/r/account/{account.id}/edit",
                 "/r/account/new"):
        page = c.get(path).get_data(as_text=True)
        assert "999 12345" not in page, path
        assert 'name="phone"' not in page and ">Phone<" not in page, path
    # searching by the hidden value finds nothing, so search cannot reveal it
    assert "Secretive" not in c.get("/r/account/?q=99912345").get_data(as_text=True)
    assert "Secretive" not in c.get("/r/account/?q=999").get_data(as_text=True)
    home = c.get("/?q=999 12345").get_data(as_text=True)
    assert "Nothing you can see matches" in home and "999 12345</" not in home
    home = c.get("/?q=secretive").get_data(as_text=True)
    assert "Secretive</a>" in home and "12345" not in home.split("My open activities")[0].split("Results for")[1]
    # and it cannot be set by posting it anyway
    r = c.post(f"/r/account/{account.id}/edit", data={"phone": "+1 000", "city": "Oslo"})
    db.session.expire_all()
    assert db.session.get(Account, account.id).phone == "+47 999 12345"
    assert db.session.get(Account, account.id).city == "Oslo"
    assert r.status_code == 302


def test_readable_but_not_updatable_field_is_read_only(make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account", name="Visible", phone="+47 999 12345")
    _secure_phone(readable=True, updatable=False, user=user)
    c = signin(user)
    assert "+47 999 12345" in c.get(f"/r/account/{account.id}").get_data(as_text=True)
    form = c.get(f"/r/account/{account.id}/edit").get_data(as_text=True)
    assert 'value="+47 999 12345" readonly' in form and 'name="phone"' not in form


@pytest.mark.parametrize("payload", HOSTILE)
def test_hostile_text_is_escaped_everywhere(payload, make_user, make_record, make_task, make_email,
                                            signin):
    user = make_user(roles=("System Administrator",))
    made = {}
    for type_name, rt in RECORD_TYPES.items():
        values = {}
        for f in rt.fields:
            if f.kind in ("str", "text", "phone"):
                values[f.name] = (payload + f.name)[: f.max_length or 10_000]
        made[type_name] = make_record(user, type_name, **values)
    task = make_task(user, regarding=("account", made["account"].id), subject=payload)
    email = make_email(user, regarding=("account", made["account"].id), subject=payload,
                       text=payload, parties=[("from", payload, payload, None),
                                              ("to", "a@b.example", payload, ("contact", made["contact"].id))],
                       attachments=[{"filename": payload, "content_type": "text/plain", "size": 1,
                                     "content": b"x"}])
    c = signin(user)
    pages = ["/", f"/?q={payload[:5]}", f"/activities/{task.id}", f"/activities/{email.id}",
             f"/activities/{email.id}?rq={payload[:5]}"]
    for type_name, record in made.items():
        base = f"/r/{type_name}/{record.id}"
        pages += [f"/r/{type_name}/", base, f"{base}/edit", f"{base}/share", f"{base}/assign",
                  f"{base}/delete"]
    for path in pages:
        page = c.get(path).get_data(as_text=True)
        assert "<script>alert" not in page and "<img src=x" not in page, path
        assert "onerror=alert(1)>" not in page, path
    assert htmlmod.escape(payload, quote=False) in c.get(f"/r/account/{made['account'].id}").get_data(as_text=True)


def test_form_post_without_csrf_token_is_refused(app, make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account")
    c = signin(user)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        assert c.post("/r/account/new", data={"name": "Forged"}).status_code == 400
        assert c.post(f"/r/account/{account.id}/delete").status_code == 400
        assert c.post(f"/r/account/{account.id}/edit", data={"name": "Forged"}).status_code == 400
        db.session.expire_all()
        assert db.session.scalar(select(func.count()).select_from(Account)) == 1
        assert db.session.get(Account, account.id).name == "Contoso Ltd"
        # with the token from the form it goes through
        page = c.get("/r/account/new").get_data(as_text=True)
        token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = c.post("/r/account/new", data={"name": "Real", "csrf_token": token})
        assert r.status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_pages_send_a_strict_content_security_policy(make_user, signin):
    r = signin(make_user()).get("/r/account/")
    csp = r.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "<script>" not in r.get_data(as_text=True)  # no inline scripts: only src= files


# Every searched field the reader might not see: a securable field, or a person's full name
# (hidden with its first name). Titles that are required fields cannot be secured.
SEARCHED = [(rt.name, name) for rt in RECORD_TYPES.values() for name in rt.search_fields
            if not (rt.field(name) and rt.field(name).required)]
MARKS = {"email": "quixotic@zanzibar.example", "phone": "+47 7394 6128"}


@pytest.mark.parametrize("type_name,name", SEARCHED)
def test_a_secured_field_is_searched_on_no_path(type_name, name, make_user, make_record,
                                                api_client):
    """Lists, home search and the REST API share one search: a value only in a field the
    reader may not read finds nothing on any of them; readable, it is found on all."""
    from server.crm.services import lists, search
    from server.security import authz
    from server.web.api.records import collection
    from tests.web.conftest import SAMPLE
    rt = RECORD_TYPES[type_name]
    field = rt.field(name)
    hidden = name if field else "first_name"  # the derived full name hides with its part
    value = MARKS.get(field.kind if field else "", "Quixotic")
    role = Role(name="Reads every record")
    role.privileges = [RolePrivilege(privilege=f"{t}.read", depth=4) for t in RECORD_TYPES]
    db.session.add(role)
    db.session.commit()
    user = make_user(roles=("Salesperson", "Reads every record"))
    admin = make_user(roles=("System Administrator",))
    record = make_record(admin, type_name, **{**SAMPLE[type_name], hidden: value})
    q = getattr(record, hidden)
    api = api_client(user)

    def found() -> tuple[int, int, int]:
        db.session.expire_all()
        p = authz.principal(user)
        listed = api.get(f"/api/v1/{collection(rt)}", query_string={"q": q})
        assert listed.status_code == 200, listed.get_json()
        return (lists.record_list(p, rt, q=q).total, len(search.home(p, q).results),
                len(listed.get_json()["items"]))

    assert found() == (1, 1, 1)
    db.session.add(SecuredField(table_name=type_name, field=hidden))
    db.session.commit()
    assert found() == (0, 0, 0)
