"""The server-side sync pages (``/admin/sync``): the dashboard with its charts, alerts,
quarantine and "why (not) tracked?", email server profiles (secrets never echoed, the plain
security warning), mailboxes (list, settings, approval, Test & Enable, sync now), folder
tracking rules (users' own, folders from the mailbox), the blocklist, privileges, CSRF,
escaping and the query count of the mailbox list."""
from __future__ import annotations

import re
from markupsafe import escape as html_escape
from datetime import timedelta

import pytest
from sqlalchemy import select

from server.crm.services import records
from server.crm.models import Organization
from server.crm.registry import RECORD_TYPES
from server.db import db, utcnow
from server.security import authz
from server.sync.connectors.maildir import create_maildir, mailbox_root
from server.sync.models import (Alert, EmailServerProfile, FolderRule, Mailbox, MessageDecision,
                                QuarantinedMessage, SyncRun, TrackingBlock)
from server.security.bootstrap import root_unit
from tests.web.conftest import count_queries

SECRET = "S3cret-Pa55word!"


@pytest.fixture
def admin(make_user):
    return make_user("ada@org.example", roles=["System Administrator"], name="Ada Admin")


@pytest.fixture
def bob(make_user):
    return make_user("bob@org.example", name="Bob Seller")


@pytest.fixture
def eve(make_user):
    return make_user("eve@org.example", name="Eve Seller")


@pytest.fixture
def manager(make_user):
    return make_user("max@org.example", roles=["Sales Manager"], name="Max Manager")


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "store"
    create_maildir(mailbox_root(root, "bob@org.example"),
                   ["Sent", "INBOX/Contoso deal", "INBOX/Projects", "INBOX/Projects/Big",
                    "Archive"])
    create_maildir(mailbox_root(root, "eve@org.example"), ["INBOX/Eve only"])
    return root


@pytest.fixture
def profile(app, store):
    prof = EmailServerProfile(name="Local store", incoming_protocol="maildir",
                              outgoing_protocol="maildir", maildir_root=str(store),
                              owning_business_unit_id=root_unit().id)
    db.session.add(prof)
    db.session.commit()
    return prof


def mailbox(user, prof, **fields) -> Mailbox:
    values = dict(name=user.full_name, email_address=user.email, user_id=user.id,
                  server_profile_id=prof.id, owning_business_unit_id=user.business_unit_id,
                  email_approved=True, enabled=True, next_sync_on=utcnow())
    values.update(fields)
    box = Mailbox(**values)
    db.session.add(box)
    db.session.commit()
    return box


@pytest.fixture
def bob_box(bob, profile):
    return mailbox(bob, profile, password=SECRET)


@pytest.fixture
def eve_box(eve, profile):
    return mailbox(eve, profile)


def html(response) -> str:
    return response.get_data(as_text=True)


def decision(box, identity, subject, sender, tracked=True, latency=None, ago=timedelta(0)):
    row = MessageDecision(mailbox_id=box.id, identity=identity, subject=subject,
                          from_address=sender, tracked=tracked, folder_name="INBOX",
                          reason="Tracked: the sender is a contact." if tracked else
                          "Not tracked: the tracking option is CRM responses only.",
                          rule_hits=[{"rule": "from-contact", "matched": tracked}],
                          processed_on=utcnow() - ago, latency_ms=latency)
    db.session.add(row)
    return row


# --------------------------------------------------------------------------- dashboard

@pytest.mark.both_databases
def test_dashboard_shows_states_alerts_quarantine_and_charts(app, admin, signin, bob_box,
                                                             eve_box):
    for i in range(5):
        decision(bob_box, f"m{i}@x.example", f"Order {i}", "ann@customer.example",
                 latency=800 + 100 * i, ago=timedelta(hours=i % 2))
    decision(eve_box, "skip@x.example", "Newsletter", "news@x.example", tracked=False)
    db.session.add(SyncRun(mailbox_id=eve_box.id, worker="w1", started_on=utcnow(),
                           finished_on=utcnow(), error_code="connection_refused",
                           error="The server refused the connection."))
    db.session.add(QuarantinedMessage(mailbox_id=bob_box.id, folder_name="INBOX", raw=b"x" * 10,
                                      size=10, error_code="parse", reason="Broken MIME."))
    db.session.add(Alert(severity="error", code="sync_failed", mailbox_id=eve_box.id,
                         message="Synchronization of eve@org.example failed."))
    eve_box.incoming_status = "failure"
    db.session.commit()

    r = signin(admin).get("/admin/sync/")
    assert r.status_code == 200
    page = html(r)
    for text in ("Email tracked per hour", "Sync latency per hour", "Failures per hour",
                 "Synchronization of eve@org.example failed.", "Broken MIME.",
                 "bob@org.example", "eve@org.example", "connection_refused"):
        assert text in page
    assert page.count("<svg class=\"chart-svg\"") == 3
    assert 'role="img"' in page and "<desc id=\"chart-tracked-desc\">" in page
    assert "5 emails tracked" not in page  # bars are per hour: 3 + 2
    assert re.search(r": 3 emails tracked</title>", page) and ": 2 emails tracked</title>" in page
    assert "Show the figures as a table" in page
    assert ' style="' not in page  # the CSP allows no inline styles
    assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    tiles = {label: n for n, label in re.findall(r'<span class="figure">(\d+)</span> ([a-z ]+)</li>',
                                                  page)}
    assert tiles["mailboxes"] == "2" and tiles["failing"] == "1" and tiles["quarantined"] == "1"


@pytest.mark.both_databases
def test_latency_percentiles_per_hour(app, admin, bob_box):
    from server.sync.admin import dashboard
    for i, ms in enumerate([100, 200, 300, 400, 5000]):
        decision(bob_box, f"l{i}@x.example", "Quote", "ann@customer.example", latency=ms)
    db.session.commit()
    data = dashboard.hourly(authz.principal(admin))
    assert len(data["hours"]) == 48 and data["tracked"][-1] == 5
    assert (data["p50"][-1], data["p95"][-1]) == (300, 5000)
    assert data["p50"][:-1] == [None] * 47


def test_dashboard_needs_the_privilege_and_shows_what_one_may_read(
        app, bob, manager, signin, bob_box, eve_box, profile):
    assert signin(bob).get("/admin/sync/").status_code == 403
    own = mailbox(manager, profile)
    page = html(signin(manager).get("/admin/sync/"))  # Sales Managers hold the privilege
    assert own.email_address in page
    assert "bob@org.example" not in page and "eve@org.example" not in page  # mailboxes: user depth


def test_alert_acknowledge_and_quarantine_discard(app, admin, signin, bob_box):
    alert = Alert(severity="warning", code="folder_failed", mailbox_id=bob_box.id, message="Hm.")
    item = QuarantinedMessage(mailbox_id=bob_box.id, raw=b"x", size=1, error_code="parse",
                              reason="Broken.")
    db.session.add_all([alert, item])
    db.session.commit()
    c = signin(admin)
    assert c.post(f"/admin/sync/alerts/{alert.id}/acknowledge").status_code == 302
    assert c.post(f"/admin/sync/quarantine/{item.id}/discard").status_code == 302
    db.session.expire_all()
    assert db.session.get(Alert, alert.id).acknowledged_on is not None
    assert db.session.get(QuarantinedMessage, item.id).resolved


def test_quarantined_message_can_be_retried_from_the_dashboard(app, admin, signin, bob_box):
    from tests.sync.conftest import build_raw
    item = QuarantinedMessage(mailbox_id=bob_box.id, folder_name="INBOX", raw=build_raw(),
                              size=100, error_code="internal", reason="A bug, since fixed.")
    db.session.add(item)
    db.session.commit()
    r = signin(admin).post(f"/admin/sync/quarantine/{item.id}/retry")
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(QuarantinedMessage, item.id).resolved
    assert db.session.scalar(select(MessageDecision).where(
        MessageDecision.mailbox_id == bob_box.id)) is not None


@pytest.mark.both_databases
def test_why_was_this_email_not_tracked(app, bob, signin, bob_box, eve_box):
    decision(bob_box, "quote-7@customer.example", "Quote for Fabrikam", "ann@customer.example")
    decision(bob_box, "news-1@list.example", "Weekly news", "news@list.example", tracked=False)
    decision(eve_box, "eve-1@customer.example", "Quote for Eve", "ann@customer.example")
    db.session.commit()
    c = signin(bob)
    by_subject = html(c.get("/admin/sync/decisions", query_string={"q": "quote"}))
    assert "Quote for Fabrikam" in by_subject and "Quote for Eve" not in by_subject
    by_id = html(c.get("/admin/sync/decisions",
                       query_string={"q": "<news-1@list.example>"}))
    assert "Weekly news" in by_id and "tracking option is CRM responses only" in by_id
    by_sender = html(c.get("/admin/sync/decisions", query_string={"q": "news@list"}))
    assert "Weekly news" in by_sender and "Quote for Fabrikam" not in by_sender
    other = c.get("/admin/sync/decisions", query_string={"mailbox": eve_box.id, "q": "x"})
    assert other.status_code == 404


def test_the_why_page_shows_the_rule_chain_in_order(app, bob, signin):
    from server.sync.mail.rules import CHAIN
    page = html(signin(bob).get("/admin/sync/decisions"))
    chain = page[page.index("How Regarding decides"):]
    names = re.findall(r"<code>([a-z-]+)</code>", chain)
    assert names == [rule.name for rule in CHAIN]
    for rule in CHAIN:
        assert html_escape(rule.description()) in chain
    row = re.search(r"<code>track-request</code>.*?</tr>", chain, re.S).group(0)
    assert "Tracked" in row and "Not tracked" not in row


# --------------------------------------------------------------------------- profiles

PROFILE_FORM = dict(name="Contoso IMAP", incoming_protocol="imap", incoming_host="imap.contoso.example",
                    incoming_port="993", incoming_security="tls", outgoing_protocol="smtp",
                    outgoing_host="smtp.contoso.example", outgoing_port="587",
                    outgoing_security="starttls", auth_method="password",
                    use_service_account="1", service_username="crm-service",
                    service_password=SECRET, max_connections="4",
                    process_emails_after="2024-01-01", attachment_max_mb="10")


def test_profile_secrets_are_write_only(app, admin, signin):
    c = signin(admin)
    r = c.post("/admin/sync/profiles/new", data=PROFILE_FORM)
    assert r.status_code == 302
    profile = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.name == "Contoso IMAP"))
    assert profile.service_password == SECRET and profile.max_connections == 4
    assert profile.attachment_max_bytes == 10 * 1024 * 1024
    assert profile.process_emails_after.isoformat().startswith("2024-01-01")
    page = html(c.get(f"/admin/sync/profiles/{profile.id}"))
    assert SECRET not in page and "A value is stored; it is never shown" in page
    # A failed save shows the form again without the password typed into it.
    bad = c.post(f"/admin/sync/profiles/{profile.id}",
                 data={**PROFILE_FORM, "incoming_host": "", "service_password": "New-Secret-99"})
    assert bad.status_code == 422
    assert "New-Secret-99" not in html(bad) and SECRET not in html(bad)
    assert "The incoming server is required" in html(bad)
    # A blank password keeps the stored one; "remove" clears it.
    ok = c.post(f"/admin/sync/profiles/{profile.id}", data={**PROFILE_FORM, "service_password": ""})
    assert ok.status_code == 302
    db.session.expire_all()
    assert db.session.get(EmailServerProfile, profile.id).service_password == SECRET
    c.post(f"/admin/sync/profiles/{profile.id}",
           data={**PROFILE_FORM, "service_password": "", "clear_service_password": "1"})
    db.session.expire_all()
    assert db.session.get(EmailServerProfile, profile.id).service_password is None


def test_plain_security_carries_a_visible_warning(app, admin, signin):
    c = signin(admin)
    c.post("/admin/sync/profiles/new", data={**PROFILE_FORM, "incoming_security": "none"})
    profile = db.session.scalar(select(EmailServerProfile))
    page = html(c.get(f"/admin/sync/profiles/{profile.id}"))
    assert "Not encrypted." in page and 'role="alert"' in page
    assert "not encrypted" in html(c.get("/admin/sync/profiles"))


def test_profiles_need_their_privileges(app, bob, admin, signin, profile):
    c = signin(bob)
    assert c.get("/admin/sync/profiles").status_code == 403
    assert c.get("/admin/sync/profiles/new").status_code == 403
    assert c.get(f"/admin/sync/profiles/{profile.id}").status_code == 404
    assert c.post(f"/admin/sync/profiles/{profile.id}", data=PROFILE_FORM).status_code == 404
    assert c.post("/admin/sync/profiles/new", data=PROFILE_FORM).status_code == 403
    duplicate = signin(admin).post("/admin/sync/profiles/new",
                                   data={**PROFILE_FORM, "name": "local store"})
    assert duplicate.status_code == 422 and "Another profile has this name" in html(duplicate)


# --------------------------------------------------------------------------- mailboxes

def test_mailbox_list_is_scoped(app, admin, bob, signin, bob_box, eve_box):
    assert {"bob@org.example", "eve@org.example"} <= set(
        re.findall(r">([a-z]+@org\.example)</a>", html(signin(admin).get("/admin/sync/mailboxes"))))
    c = signin(bob)
    page = html(c.get("/admin/sync/mailboxes"))
    assert "bob@org.example" in page and "eve@org.example" not in page
    assert c.get(f"/admin/sync/mailboxes/{eve_box.id}").status_code == 404
    assert c.post(f"/admin/sync/mailboxes/{eve_box.id}/sync-now").status_code == 404


def test_mailbox_list_query_count_does_not_grow(app, admin, signin, profile, make_user):
    c = signin(admin)

    def queries() -> int:
        with count_queries() as n:
            assert c.get("/admin/sync/mailboxes").status_code == 200
        return n[0]

    for i in range(3):
        mailbox(make_user(f"a{i}@org.example"), profile)
    few = queries()
    for i in range(12):
        mailbox(make_user(f"b{i}@org.example"), profile)
    assert queries() == few


def test_owner_changes_credentials_but_not_servers(app, bob, signin, bob_box, profile):
    # A server that signs in (a Maildir store needs no credentials: its page asks none).
    profile.incoming_protocol, profile.incoming_host = "imap", "mail.org.example"
    profile.outgoing_protocol, profile.outgoing_host = "smtp", "mail.org.example"
    db.session.commit()
    c = signin(bob)
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))
    assert SECRET not in page and "A value is stored" in page
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}",
               data={"username": "bob.seller", "password": "Another-Secret-1",
                     "email_address": "hijack@evil.example", "name": "Hijacked"})
    assert r.status_code == 302
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert (box.username, box.password) == ("bob.seller", "Another-Secret-1")
    assert box.email_address == "bob@org.example" and box.name == "Bob Seller"
    assert not box.enabled and box.incoming_status == "not_run"  # test again after a change
    assert "Another-Secret-1" not in html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))


def test_admin_changes_the_address_which_needs_approval_again(app, admin, signin, bob_box,
                                                              profile):
    r = signin(admin).post(f"/admin/sync/mailboxes/{bob_box.id}", data={
        "name": "Bob", "email_address": "Bob.Seller@Org.Example", "server_profile_id": profile.id,
        "incoming_method": "server_side_sync", "outgoing_method": "none", "acts_method": "none"})
    assert r.status_code == 302
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert box.email_address == "bob.seller@org.example" and not box.email_approved
    assert box.outgoing_method == "none" and not box.enabled
    assert box.password == SECRET  # untouched


def test_create_mailbox_for_a_user(app, admin, eve, signin, profile):
    c = signin(admin)
    r = c.post("/admin/sync/mailboxes/new", data={
        "owner_kind": "user", "owner": "EVE@org.example", "email_address": "eve@org.example",
        "server_profile_id": profile.id, "incoming_method": "server_side_sync",
        "outgoing_method": "server_side_sync", "acts_method": "none"})
    assert r.status_code == 302
    box = db.session.scalar(select(Mailbox).where(Mailbox.user_id == eve.id))
    assert box.email_address == "eve@org.example" and not box.enabled
    bad = c.post("/admin/sync/mailboxes/new", data={"owner_kind": "user", "owner": "nobody@x.example",
                                                     "email_address": "eve@org.example"})
    assert bad.status_code == 422
    assert "No user you can see" in html(bad) and "Another mailbox has this address" in html(bad)


def test_a_caldav_profile_beside_a_mail_profile(app, admin, eve, signin, profile):
    """A CalDAV/CardDAV profile for appointments, contacts and tasks, chosen on a mailbox
    beside its email profile; an email profile that cannot sync them is refused for them."""
    c = signin(admin)
    r = c.post("/admin/sync/profiles/new", data={
        "name": "Team calendar", "incoming_protocol": "caldav",
        "incoming_host": "dav.contoso.example", "incoming_port": "443",
        "incoming_security": "tls", "auth_method": "password", "max_connections": "10"})
    assert r.status_code == 302, html(r)
    dav = db.session.scalar(select(EmailServerProfile).where(
        EmailServerProfile.name == "Team calendar"))
    page = html(c.get("/admin/sync/mailboxes/new"))
    assert "CalDAV/CardDAV profile, beside any email profile" in page
    fields = {"owner_kind": "user", "owner": "eve@org.example", "email_address": "eve@org.example",
              "server_profile_id": profile.id, "incoming_method": "server_side_sync",
              "outgoing_method": "server_side_sync", "acts_method": "server_side_sync"}
    # An IMAP profile reads mail only (a Maildir one keeps items in folders beside the mail).
    imap = EmailServerProfile(name="IMAP only", incoming_protocol="imap",
                              incoming_host="mail.contoso.example", incoming_port=993,
                              incoming_security="tls", owning_business_unit_id=root_unit().id)
    db.session.add(imap)
    db.session.commit()
    refused = c.post("/admin/sync/mailboxes/new", data={**fields, "server_profile_id": imap.id})
    assert refused.status_code == 422
    assert "does not sync appointments, contacts and tasks" in html(refused)
    wrong_way = c.post("/admin/sync/mailboxes/new", data={**fields, "server_profile_id": dav.id})
    assert "A CalDAV/CardDAV profile reads no email" in html(wrong_way)
    assert c.post("/admin/sync/mailboxes/new",
                  data={**fields, "acts_profile_id": dav.id}).status_code == 302
    box = db.session.scalar(select(Mailbox).where(Mailbox.user_id == eve.id))
    assert (box.server_profile_id, box.acts_profile_id) == (profile.id, dav.id)


def test_approval_needs_the_privilege_and_can_be_waived(app, admin, bob, signin, bob_box):
    bob_box.email_approved = False
    db.session.commit()
    c = signin(bob)
    assert "Approve email address" not in html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))
    assert c.post(f"/admin/sync/mailboxes/{bob_box.id}/approve").status_code == 403
    assert signin(admin).post(f"/admin/sync/mailboxes/{bob_box.id}/approve").status_code == 302
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert box.email_approved and box.approved_by_id == admin.id
    box.email_approved = False
    db.session.get(Organization, 1).require_email_approval = False
    db.session.commit()
    assert "Approval is not required" in html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))


def test_test_and_enable_shows_each_direction(app, bob, signin, bob_box, store):
    bob_box.enabled = False
    db.session.commit()
    c = signin(bob)
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/test", follow_redirects=True)
    page = html(r)
    assert "is enabled" in page and "Incoming:" in page and "Outgoing:" in page
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert box.enabled and box.incoming_status == "success"
    # Gone Maildir: the incoming test fails, says why, and incoming is turned off (writing
    # sent mail to the Maildir store still works: outgoing stays on).
    (mailbox_root(store, "bob@org.example") / "cur").rename(store / "elsewhere")
    page = html(c.post(f"/admin/sync/mailboxes/{bob_box.id}/test", follow_redirects=True))
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert not box.incoming_enabled and box.outgoing_enabled and box.incoming_status == "failure"
    assert "enabled for outgoing email only: its incoming test failed" in page


def test_sync_now_and_disable(app, bob, signin, bob_box):
    bob_box.next_sync_on = utcnow() + timedelta(hours=1)
    db.session.commit()
    c = signin(bob)
    assert c.post(f"/admin/sync/mailboxes/{bob_box.id}/sync-now").status_code == 302
    db.session.expire_all()
    assert db.session.get(Mailbox, bob_box.id).sync_requested
    assert c.post(f"/admin/sync/mailboxes/{bob_box.id}/disable").status_code == 302
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert not box.enabled and "Disabled by Bob Seller" in box.disabled_reason
    refused = c.post(f"/admin/sync/mailboxes/{bob_box.id}/sync-now", follow_redirects=True)
    assert "not enabled" in html(refused)


# --------------------------------------------------------------------------- tracking, folders

def opportunity(user, name):
    account = records.create(authz.principal(user), RECORD_TYPES["account"], {"name": f"{name} Ltd"})
    opp = records.create(authz.principal(user), RECORD_TYPES["opportunity"],
                         {"name": name, "customer_account_id": account.id})
    db.session.commit()
    return opp


def test_user_sets_tracking_options(app, bob, signin, bob_box):
    c = signin(bob)
    assert c.get("/admin/sync/my").headers["Location"].endswith(
        f"/admin/sync/mailboxes/{bob_box.id}/tracking")
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking"))
    assert "Email messages in response to CRM email" in page and "(default)" in page
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/tracking",
               data={"tracking_option": "from_crm_records", "auto_create_contacts": "1"})
    assert r.status_code == 302
    db.session.expire_all()
    box = db.session.get(Mailbox, bob_box.id)
    assert box.tracking_option == "from_crm_records" and box.auto_create_contacts
    bad = c.post(f"/admin/sync/mailboxes/{bob_box.id}/tracking", data={"tracking_option": "evil"})
    assert bad.status_code == 422


def test_folder_rules_from_the_mailbox_folders(app, bob, eve, signin, bob_box, eve_box):
    deal = opportunity(bob, "Contoso deal")
    opportunity(bob, "Contoso renewal")
    c = signin(bob)
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking"))
    options = dict((name, key) for key, name in re.findall(
        r'<option value="(md:[^"]+)"\s*>([^<]+)</option>', page))
    assert set(options) == {"INBOX/Contoso deal", "INBOX/Projects", "INBOX/Projects/Big"}
    # Two records match "Contoso": choose one of them, then it is tracked regarding it.
    ambiguous = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules", data={
        "folder_key": options["INBOX/Contoso deal"], "regarding_type": "opportunity",
        "regarding_query": "contoso"})
    assert ambiguous.status_code == 422 and "2 records match" in html(ambiguous)
    assert "Contoso renewal" in html(ambiguous)
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules", data={
        "folder_key": options["INBOX/Contoso deal"], "regarding_type": "opportunity",
        "regarding_query": "contoso", "regarding_id": deal.id})
    assert r.status_code == 302
    rule = db.session.scalar(select(FolderRule))
    assert (rule.folder_name, rule.regarding_ref, rule.user_id) == (
        "INBOX/Contoso deal", ("opportunity", deal.id), bob.id)
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking"))
    assert "Contoso deal</a>" in page and "Tracking" in page
    again = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules",
                   data={"folder_key": options["INBOX/Contoso deal"]})
    assert again.status_code == 422 and "is tracked already" in html(again)
    # Off, on, removed.
    assert c.post(f"/admin/sync/rules/{rule.id}/disable").status_code == 302
    db.session.expire_all()
    assert not db.session.get(FolderRule, rule.id).enabled
    c.post(f"/admin/sync/rules/{rule.id}/enable")
    db.session.expire_all()
    assert db.session.get(FolderRule, rule.id).enabled
    # Eve manages neither Bob's rules nor his mailbox's folders.
    e = signin(eve)
    assert e.post(f"/admin/sync/rules/{rule.id}/delete").status_code == 404
    assert e.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking").status_code == 404
    assert e.post(f"/admin/sync/mailboxes/{bob_box.id}/rules",
                  data={"folder_key": options["INBOX/Projects"]}).status_code == 404
    assert c.post(f"/admin/sync/rules/{rule.id}/delete").status_code == 302
    assert db.session.scalar(select(FolderRule)) is None


def test_regarding_a_record_one_cannot_read_is_refused(app, bob, signin, bob_box, make_user,
                                                       make_unit):
    stranger = make_user("zed@org.example", unit=make_unit("Elsewhere"))
    hidden = opportunity(stranger, "Zed's secret deal")
    c = signin(bob)
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking"))
    key = re.search(r'<option value="(md:[^"]+)"\s*>INBOX/Projects</option>', page).group(1)
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules", data={
        "folder_key": key, "regarding_type": "opportunity", "regarding_id": hidden.id})
    assert r.status_code == 404
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules", data={
        "folder_key": key, "regarding_type": "opportunity", "regarding_query": "secret"})
    assert r.status_code == 422 and "No record you can link to matches" in html(r)
    assert db.session.scalar(select(FolderRule)) is None


def test_at_most_25_tracked_folders(app, bob, signin, bob_box):
    for i in range(FolderRule.MAX_PER_USER):
        db.session.add(FolderRule(mailbox_id=bob_box.id, user_id=bob.id, folder_key=f"k{i}",
                                  folder_name=f"INBOX/F{i}"))
    db.session.commit()
    c = signin(bob)
    page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}/tracking"))
    assert "25 of 25" in page and "the most there can be" in page
    key = next(iter(re.findall(r'name="folder_key"', page)), None)
    assert key is None  # no form to add another
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/rules", data={"folder_key": "whatever"},
               follow_redirects=True)
    assert "at most 25 folders" in html(r)


# --------------------------------------------------------------------------- blocklist

def test_blocklist(app, admin, bob, manager, signin):
    c = signin(admin)
    assert c.post("/admin/sync/blocklist", data={"pattern": "@Spam.Example"}).status_code == 302
    assert c.post("/admin/sync/blocklist", data={"pattern": "Boss <BOSS@Corp.example>"}).status_code == 302
    assert set(db.session.scalars(select(TrackingBlock.pattern))) == {"@spam.example",
                                                                      "boss@corp.example"}
    bad = c.post("/admin/sync/blocklist", data={"pattern": "not an address"})
    assert bad.status_code == 422 and "Enter an address" in html(bad)
    dup = c.post("/admin/sync/blocklist", data={"pattern": "@spam.example"})
    assert dup.status_code == 422 and "already" in html(dup)
    assert signin(bob).get("/admin/sync/blocklist").status_code == 403
    m = signin(manager)
    assert "@spam.example" in html(m.get("/admin/sync/blocklist"))  # sees, cannot change
    assert m.post("/admin/sync/blocklist", data={"pattern": "@x.example"}).status_code == 403
    block = db.session.scalar(select(TrackingBlock).where(TrackingBlock.pattern == "@spam.example"))
    assert m.post(f"/admin/sync/blocklist/{block.id}/delete").status_code == 403
    assert c.post(f"/admin/sync/blocklist/{block.id}/delete").status_code == 302


# --------------------------------------------------------------------------- forms, escaping, links

def test_every_post_form_carries_a_csrf_token(app, admin, signin, bob_box, profile):
    alert = Alert(severity="error", code="x", mailbox_id=bob_box.id, message="x")
    item = QuarantinedMessage(mailbox_id=bob_box.id, raw=b"x", size=1, error_code="x", reason="x")
    db.session.add_all([alert, item, FolderRule(mailbox_id=bob_box.id, user_id=bob_box.user_id,
                                                folder_key="k", folder_name="INBOX/K"),
                        TrackingBlock(pattern="@x.example")])
    db.session.commit()
    c = signin(admin)
    pages = ["/admin/sync/", "/admin/sync/profiles/new", f"/admin/sync/profiles/{profile.id}",
             "/admin/sync/mailboxes/new", f"/admin/sync/mailboxes/{bob_box.id}",
             f"/admin/sync/mailboxes/{bob_box.id}/tracking", "/admin/sync/blocklist"]
    seen = 0
    for path in pages:
        page = html(c.get(path))
        for form in re.findall(r"<form[^>]*method=\"post\".*?</form>", page, re.S):
            assert 'name="csrf_token"' in form, (path, form[:200])
            seen += 1
    assert seen >= 12


def test_posts_without_a_csrf_token_are_refused(app, admin, signin, bob_box):
    c = signin(admin)
    app.config["WTF_CSRF_ENABLED"] = True
    try:
        r = c.post(f"/admin/sync/mailboxes/{bob_box.id}/sync-now")
        assert r.status_code == 400
        page = html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        ok = c.post(f"/admin/sync/mailboxes/{bob_box.id}/sync-now", data={"csrf_token": token})
        assert ok.status_code == 302
    finally:
        app.config["WTF_CSRF_ENABLED"] = False


def test_hostile_text_is_escaped(app, admin, signin, bob_box):
    decision(bob_box, "<x@evil.example>", "<script>alert(1)</script>", "<b>@evil.example")
    db.session.add(Alert(severity="warning", code="x", mailbox_id=bob_box.id,
                         message='<img src=x onerror="alert(2)">'))
    db.session.commit()
    page = html(signin(admin).get("/admin/sync/", query_string={"q": "script"}))
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<img src=x onerror="alert(2)">' not in page and "&lt;img src=x" in page


def test_administration_and_navigation_link_here(app, admin, bob, signin):
    assert "/admin/sync/" in html(signin(admin).get("/admin/"))
    c = signin(bob)
    assert 'href="/admin/sync/my"' in html(c.get("/"))  # "Email tracking" in the navigation
    page = html(c.get("/admin/sync/my"))
    assert "You have no mailbox in server-side sync yet" in page


def test_owner_names_the_sent_folder(app, bob, signin, bob_box):
    c = signin(bob)
    assert 'name="sent_folder"' in html(c.get(f"/admin/sync/mailboxes/{bob_box.id}"))
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}",
               data={"username": bob_box.username or "", "sent_folder": "  INBOX.Sent  "})
    assert r.status_code == 302
    db.session.expire_all()
    assert db.session.get(Mailbox, bob_box.id).sent_folder == "INBOX.Sent"
    r = c.post(f"/admin/sync/mailboxes/{bob_box.id}",
               data={"username": bob_box.username or "", "sent_folder": "Sent\x00Items"})
    assert r.status_code == 422 and "Sent folder contains control characters" in html(r)
    db.session.expire_all()
    assert db.session.get(Mailbox, bob_box.id).sent_folder == "INBOX.Sent"  # nothing lost
    c.post(f"/admin/sync/mailboxes/{bob_box.id}", data={"username": "", "sent_folder": ""})
    db.session.expire_all()
    assert db.session.get(Mailbox, bob_box.id).sent_folder is None  # found again


def test_item_sync_settings_page(app, admin, bob, signin):
    """Field directions (the organization's, by its administrators) and synchronization
    filters (the organization's default, and a user's own)."""
    from server.sync.acts.filters import rule_for
    from server.sync.models import FieldDirection, SyncFilter
    c = signin(admin)
    page = html(c.get("/admin/sync/items"))
    assert "Field sync directions" in page and '"My appointments" in force (the built-in filter)' in page
    assert c.post("/admin/sync/items", data={
        "what": "directions", "appointment.location": "to_crm",
        "contact.job_title": "none", "task.subject": "both"}).status_code == 302
    assert {(r.kind, r.field, r.direction) for r in db.session.scalars(select(FieldDirection))} \
        == {("appointment", "location", "to_crm"), ("contact", "job_title", "none")}
    assert c.post("/admin/sync/items", data={
        "kind": "contact", "scope": "organization", "owner": "my_teams",
        "conditions": "city eq Oslo"}).status_code == 302
    assert rule_for(bob.id, "contact").source == "organization"
    b = signin(bob)
    assert b.post("/admin/sync/items", data={"what": "directions", "task.subject": "none"}
                  ).status_code == 403
    bad = b.post("/admin/sync/items", data={"kind": "task", "scope": "mine", "owner": "me",
                                            "conditions": "salary gt 10"})
    assert bad.status_code == 422 and 'salary&#34; is not a field of a task' in html(bad)
    assert b.post("/admin/sync/items", data={"kind": "task", "scope": "mine", "owner": "me",
                                             "name": "Open ones",
                                             "conditions": "state eq open"}).status_code == 302
    mine = db.session.scalar(select(SyncFilter).where(SyncFilter.user_id == bob.id))
    assert (mine.name, mine.conditions) == ("Open ones", [["state", "eq", "open"]])
    assert rule_for(bob.id, "task").source == "user"
