"""Record pages: list, detail, create, edit, deactivate, assign, share and delete for every
record type, through the real services and a signed-in browser session."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from server.crm.models import Account, Contact
from server.crm.registry import RECORD_TYPES
from server.db import db
from server.security.models import RecordShare, Team

ADMIN = ("System Administrator",)
EDIT_FIELD = {"account": "name", "contact": "job_title", "lead": "topic", "opportunity": "name",
              "case": "title", "queue": "name"}


def form_values(type_name: str) -> dict:
    from tests.web.conftest import SAMPLE
    values = dict(SAMPLE[type_name])
    return values


@pytest.mark.parametrize("type_name", list(RECORD_TYPES))
def test_every_record_type_lists_shows_creates_and_edits(type_name, make_user, signin):
    admin = make_user(roles=ADMIN)
    c = signin(admin)
    rt = RECORD_TYPES[type_name]

    r = c.get(f"/r/{type_name}/new")
    assert r.status_code == 200
    for f in rt.fields:
        assert f'name="{f.name}"' in r.get_data(as_text=True)

    r = c.post(f"/r/{type_name}/new", data=form_values(type_name))
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    record_id = int(r.headers["Location"].rstrip("/").rsplit("/", 1)[1])
    record = db.session.get(rt.model, record_id)
    title = getattr(record, rt.title_field)

    listing = c.get(f"/r/{type_name}/")
    assert listing.status_code == 200
    assert title in listing.get_data(as_text=True)
    detail = c.get(f"/r/{type_name}/{record_id}")
    assert detail.status_code == 200
    assert "Timeline" in detail.get_data(as_text=True)

    edit = c.get(f"/r/{type_name}/{record_id}/edit")
    assert edit.status_code == 200
    first = rt.field(EDIT_FIELD[type_name])
    r = c.post(f"/r/{type_name}/{record_id}/edit", data={first.name: "Renamed value"})
    assert r.status_code == 302
    db.session.expire_all()
    assert getattr(db.session.get(rt.model, record_id), first.name) == "Renamed value"


def test_invalid_input_shows_errors_and_writes_nothing(make_user, signin):
    c = signin(make_user(roles=ADMIN))
    r = c.post("/r/account/new", data={"name": "", "email1": "not an address"})
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert "This field is required." in html and "Not a valid email address." in html
    assert 'value="not an address"' in html  # what was typed is kept
    assert db.session.scalar(select(Account)) is None


def test_deactivate_activate_and_list_filter(make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account")
    c = signin(user)
    r = c.post(f"/r/account/{account.id}/state", data={"active": "0"})
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Account, account.id).is_active is False
    assert "Contoso Ltd" not in c.get("/r/account/").get_data(as_text=True)
    assert "Contoso Ltd" in c.get("/r/account/?state=inactive").get_data(as_text=True)
    assert "Contoso Ltd" in c.get("/r/account/?state=all").get_data(as_text=True)
    c.post(f"/r/account/{account.id}/state", data={"active": "1"})
    db.session.expire_all()
    assert db.session.get(Account, account.id).is_active is True


def test_list_search_sort_and_paging(app, make_user, make_record, signin):
    app.config["REGARDING_PAGE_SIZE"] = 5
    user = make_user()
    for i in range(12):
        make_record(user, "account", name=f"Account {i:02d}", city="Oslo" if i % 2 else "Bergen")
    c = signin(user)
    page1 = c.get("/r/account/?sort=name&dir=asc").get_data(as_text=True)
    assert "Account 00" in page1 and "Account 05" not in page1 and "Page 1 of 3" in page1
    page3 = c.get("/r/account/?sort=name&dir=asc&page=3").get_data(as_text=True)
    assert "Account 11" in page3 and "Account 00" not in page3
    desc = c.get("/r/account/?sort=name&dir=desc").get_data(as_text=True)
    assert desc.index("Account 11") < desc.index("Account 10")
    found = c.get("/r/account/?q=account+07").get_data(as_text=True)
    assert "Account 07" in found and "Account 08" not in found
    # an unknown sort column falls back to the title instead of failing
    assert c.get("/r/account/?sort=password_hash").status_code == 200
    # LIKE wildcards are searched literally
    assert "Account 0" not in c.get("/r/account/?q=%25").get_data(as_text=True)


def test_ref_fields_link_to_the_referenced_record(make_user, make_record, signin):
    user = make_user()
    parent = make_record(user, "account", name="Parent Corp")
    contact = make_record(user, "contact", last_name="Smith", parent_account_id=str(parent.id))
    c = signin(user)
    link = f'href="/r/account/{parent.id}">Parent Corp</a>'
    assert link in c.get("/r/contact/").get_data(as_text=True)
    assert link in c.get(f"/r/contact/{contact.id}").get_data(as_text=True)
    form = c.get(f"/r/contact/{contact.id}/edit").get_data(as_text=True)
    assert re.search(rf'<option value="{parent.id}"\s+selected>Parent Corp</option>', form)
    # the account page lists its contacts
    assert f'/r/contact/{contact.id}">Smith</a>' in c.get(f"/r/account/{parent.id}").get_data(as_text=True)


def test_delete_asks_for_confirmation_then_deletes(make_user, make_record, make_email, signin):
    user = make_user()
    account = make_record(user, "account")
    child = make_record(user, "contact", last_name="Child", parent_account_id=str(account.id))
    email = make_email(user, regarding=("account", account.id))
    c = signin(user)
    confirm = c.get(f"/r/account/{account.id}/delete")
    assert confirm.status_code == 200 and "Delete permanently" in confirm.get_data(as_text=True)
    assert db.session.get(Account, account.id) is not None
    r = c.post(f"/r/account/{account.id}/delete")
    assert r.status_code == 302 and r.headers["Location"].endswith("/r/account/")
    db.session.expire_all()
    assert db.session.get(Account, account.id) is None
    assert db.session.get(Contact, child.id).parent_account_id is None  # the link is cleared
    assert db.session.get(type(email), email.id).regarding_ref is None


def test_assign_to_a_user_and_to_a_team(make_user, make_record, signin):
    manager = make_user(roles=("Sales Manager",))
    other = make_user(name="Olga Other")
    team = Team(name="East team", business_unit_id=manager.business_unit_id)
    db.session.add(team)
    db.session.commit()
    account = make_record(manager, "account")
    c = signin(manager)
    page = c.get(f"/r/account/{account.id}/assign").get_data(as_text=True)
    assert "Olga Other" in page and "East team" in page
    assert c.post(f"/r/account/{account.id}/assign", data={"owner": f"user:{other.id}"}).status_code == 302
    db.session.expire_all()
    assert db.session.get(Account, account.id).owner_user_id == other.id
    assert c.post(f"/r/account/{account.id}/assign", data={"owner": f"team:{team.id}"}).status_code == 302
    db.session.expire_all()
    a = db.session.get(Account, account.id)
    assert (a.owner_user_id, a.owner_team_id) == (None, team.id)
    assert c.post(f"/r/account/{account.id}/assign", data={"owner": "user:x"}).status_code == 400


def test_salesperson_cannot_assign_a_record_they_only_read(make_user, make_record, signin):
    owner = make_user()
    colleague = make_user()
    account = make_record(owner, "account")
    c = signin(colleague)  # same business unit: reads it, may not assign it
    assert c.get(f"/r/account/{account.id}").status_code == 200
    r = c.post(f"/r/account/{account.id}/assign", data={"owner": f"user:{colleague.id}"})
    assert r.status_code == 403
    db.session.expire_all()
    assert db.session.get(Account, account.id).owner_user_id == owner.id


def test_share_grant_list_and_revoke(make_unit, make_user, make_record, signin):
    owner = make_user()
    outsider = make_user(name="Frank Faraway", unit=make_unit("Far away"))
    account = make_record(owner, "account")
    reader = signin(outsider)
    assert reader.get(f"/r/account/{account.id}").status_code == 404

    c = signin(owner)
    r = c.post(f"/r/account/{account.id}/share",
               data={"principal": f"user:{outsider.id}", "rights": ["read", "write"]})
    assert r.status_code == 302
    share = db.session.scalar(select(RecordShare))
    assert (share.user_id, share.can_read, share.can_write, share.can_delete) == (outsider.id, True, True, False)
    page = c.get(f"/r/account/{account.id}/share").get_data(as_text=True)
    assert "Frank Faraway" in page and "Remove access" in page
    assert reader.get(f"/r/account/{account.id}").status_code == 200
    assert reader.post(f"/r/account/{account.id}/edit", data={"city": "Tromsø"}).status_code == 302

    r = c.post(f"/r/account/{account.id}/share",
               data={"principal": f"user:{outsider.id}", "action": "revoke"})
    assert r.status_code == 302
    assert db.session.scalar(select(RecordShare)) is None
    assert reader.get(f"/r/account/{account.id}").status_code == 404


def test_new_record_prefilled_from_the_parent(make_user, make_record, signin):
    user = make_user()
    parent = make_record(user, "account", name="Parent Corp")
    c = signin(user)
    html = c.get(f"/r/contact/new?parent_account_id={parent.id}").get_data(as_text=True)
    assert re.search(rf'<option value="{parent.id}"\s+selected>Parent Corp</option>', html)
    r = c.post("/r/contact/new", data={"last_name": "Jones", "parent_account_id": str(parent.id)})
    assert r.status_code == 302
    assert db.session.scalar(select(Contact)).parent_account_id == parent.id


def test_unknown_record_type_is_404(make_user, signin):
    c = signin(make_user())
    assert c.get("/r/user/").status_code == 404
    assert c.get("/r/nothing/1").status_code == 404


def test_pages_need_a_signed_in_user(client):
    r = client.get("/r/account/")
    assert r.status_code == 302 and "/signin" in r.headers["Location"]
    assert client.get("/").status_code == 302


def test_a_record_cannot_be_offered_as_its_own_parent(make_user, make_record, signin):
    user = make_user()
    account = make_record(user, "account", name="Selfish")
    other = make_record(user, "account", name="Other")
    form = signin(user).get(f"/r/account/{account.id}/edit").get_data(as_text=True)
    assert f'<option value="{other.id}"' in form and f'<option value="{account.id}"' not in form


def test_navigation_lists_readable_tables_and_administration_for_admins(app, make_user, signin):
    admin_page = signin(make_user(roles=("System Administrator",))).get("/").get_data(as_text=True)
    sales_page = signin(make_user()).get("/").get_data(as_text=True)
    for name in RECORD_TYPES:
        assert f'href="/r/{name}/"' in admin_page
    assert ">Administration</a>" in admin_page
    assert ">Administration</a>" not in sales_page


def test_every_post_form_carries_a_csrf_token(make_user, make_record, make_email, signin):
    admin = make_user(roles=ADMIN)
    account = make_record(admin, "account")
    email = make_email(admin, regarding=("account", account.id), subject="Hi")
    c = signin(admin)
    base = f"/r/account/{account.id}"
    for path in ("/", "/r/account/", "/r/account/new", base, f"{base}/edit", f"{base}/delete",
                 f"{base}/assign", f"{base}/share", f"{base}/activities/new/task",
                 f"/activities/{email.id}?rq=contoso"):
        html = c.get(path).get_data(as_text=True)
        forms = re.findall(r'<form[^>]*method="post"[^>]*>.*?</form>', html, re.S)
        assert forms, path
        for form in forms:
            assert 'name="csrf_token"' in form, (path, form[:200])


def test_editing_keeps_an_unchanged_link_the_user_may_no_longer_append_to(
        make_unit, make_user, make_record, signin):
    from server.crm.services import records
    from server.security import authz
    admin = make_user(roles=ADMIN)
    editor = make_user()
    far_account = make_record(make_user(unit=make_unit("Far")), "account", name="Far Corp")
    records.share(authz.principal(admin), far_account, editor, {"read"})
    contact = records.create(authz.principal(admin), RECORD_TYPES["contact"],
                             {"last_name": "Linked", "parent_account_id": far_account.id},
                             owner=editor)
    db.session.commit()
    c = signin(editor)
    form = c.get(f"/r/contact/{contact.id}/edit").get_data(as_text=True)
    assert "Far Corp" in form  # the current link is shown although it is not a choice
    r = c.post(f"/r/contact/{contact.id}/edit", data={
        "last_name": "Linked", "job_title": "CEO", "parent_account_id": str(far_account.id)})
    assert r.status_code == 302, r.get_data(as_text=True)[:1000]
    db.session.expire_all()
    saved = db.session.get(Contact, contact.id)
    assert (saved.job_title, saved.parent_account_id) == ("CEO", far_account.id)
