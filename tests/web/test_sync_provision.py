"""The provisioning pages (``/admin/sync/provisioning``, jobs, imports, forwarding rules):
defaults saved and refused, a bulk job started from the mailbox list's selection with its
progress page before and after a worker ran it, an uploaded fetchmailrc's report, a forward
mailbox made from the new-mailbox form, the rule buttons of a forwarding user's mailbox,
and what a salesperson may not do."""
from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from server.crm.models import Organization
from server.db import db
from server.security.bootstrap import root_unit
from server.sync.admin import jobs
from server.sync.models import Mailbox
from tests.sync.mailboxes import make_profile


@pytest.fixture
def admin(make_user):
    return make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")


@pytest.fixture
def profile(app):
    return make_profile(name="Contoso IMAP", incoming_host="mail.contoso.example",
                        incoming_port=993)


def _box(address: str, **fields) -> Mailbox:
    box = Mailbox(name=address, email_address=address, owning_business_unit_id=root_unit().id,
                  **fields)
    db.session.add(box)
    db.session.commit()
    return box


def test_defaults_are_saved_and_bad_ones_refused(signin, admin, profile):
    client = signin(admin)
    page = client.get("/admin/sync/provisioning")
    assert page.status_code == 200 and b"Defaults for new mailboxes" in page.data
    saved = client.post("/admin/sync/provisioning", data={
        "default_server_profile_id": str(profile.id), "default_incoming_method": "forward_mailbox",
        "default_outgoing_method": "none", "default_acts_method": "none",
        "create_mailboxes_automatically": "on"})
    assert saved.status_code == 302
    org = db.session.get(Organization, 1)
    assert (org.default_server_profile_id, org.default_incoming_method,
            org.create_mailboxes_automatically) == (profile.id, "forward_mailbox", True)
    refused = client.post("/admin/sync/provisioning", data={
        "default_server_profile_id": "999999", "default_incoming_method": "pigeon"})
    assert refused.status_code == 422 and b'aria-invalid="true"' in refused.data


def test_a_bulk_job_from_the_list_shows_its_progress(signin, admin, profile):
    boxes = [_box(f"q{n}@org.example", is_forward_mailbox=True, server_profile_id=profile.id)
             for n in range(3)]
    client = signin(admin)
    listing = client.get("/admin/sync/mailboxes")
    assert b'form="bulk" name="mailbox_ids"' in listing.data
    started = client.post("/admin/sync/jobs", data={
        "kind": "approve", "mailbox_ids": [str(boxes[0].id), str(boxes[2].id)]})
    assert started.status_code == 302
    job_url = started.headers["Location"]
    before = client.get(job_url)
    assert b"0 of 2 done (0%)" in before.data and b'data-finished="false"' in before.data
    assert client.get(f"{job_url}/state").get_json()["finished"] is False
    assert jobs.work("page-test") == 2
    after = client.get(job_url)
    assert b"2 of 2 done (100%): 2 succeeded" in after.data
    assert b'data-finished="true"' in after.data and b"Approved." in after.data
    assert client.get(f"{job_url}/state").get_json() == {
        "finished": True, "finished_items": 2, "percent": 100,
        "sentence": "2 of 2 done (100%): 2 succeeded, 0 failed, 0 skipped."}
    db.session.expire_all()
    assert [b.email_approved for b in boxes] == [True, False, True]


def test_an_uploaded_fetchmailrc_is_reported_line_by_line(signin, admin, make_user):
    make_user("bob@org.example")
    client = signin(admin)
    # (A password no random token on the page can hold by chance: "pw" once failed so.)
    rc = b'poll mail.example.net proto imap user "bob@org.example" password "Fetch-Secret-73" ' \
         b'is bob\npoll bad proto imap user\n'
    page = client.post("/admin/sync/imports", data={
        "kind": "fetchmailrc", "file": (io.BytesIO(rc), "fetchmailrc")},
        content_type="multipart/form-data")
    assert page.status_code == 200
    assert b"1 imported, 0 skipped, 1 refused." in page.data
    assert b"Fetch-Secret-73" not in page.data


def test_a_forward_mailbox_is_made_from_the_form_and_rule_buttons_show_for_its_users(
        signin, admin, profile, make_user):
    client = signin(admin)
    made = client.post("/admin/sync/mailboxes/new", data={
        "owner_kind": "forward", "email_address": "crm@org.example",
        "server_profile_id": str(profile.id), "delete_after_processing": "on"})
    assert made.status_code == 302
    forward = db.session.scalar(select(Mailbox).where(Mailbox.email_address == "crm@org.example"))
    assert forward.is_forward_mailbox and forward.delete_after_processing
    bob = make_user("bob@org.example")
    bob_box = _box("bob@org.example", user_id=bob.id, server_profile_id=profile.id,
                   incoming_method="forward_mailbox")
    page = client.get(f"/admin/sync/mailboxes/{bob_box.id}")
    assert b"Forwarding rule" in page.data and b"Deploy rule" in page.data
    # The profile's server does not exist: the deployment fails with a reason, kept.
    tried = client.post(f"/admin/sync/mailboxes/{bob_box.id}/forward-rule/deploy",
                        follow_redirects=True)
    assert b"The rule could not be deployed" in tried.data
    db.session.expire_all()
    assert bob_box.forward_rule_status == "failed"


def test_a_salesperson_can_neither_provision_nor_run_bulk_jobs(signin, make_user,
                                                               profile):
    seller = make_user("sam@org.example")
    box = _box("sam@org.example", user_id=seller.id, server_profile_id=profile.id)
    client = signin(seller)
    assert client.get("/admin/sync/provisioning").status_code == 403
    refused = client.post("/admin/sync/jobs", data={"kind": "approve",
                                                     "mailbox_ids": [str(box.id)]},
                          follow_redirects=True)
    assert b"Approve email addresses" in refused.data
    db.session.expire_all()
    assert not box.email_approved
