"""Email server profiles cannot point the server at its own loopback services, link-local
addresses (cloud metadata) or Maildir stores outside REGARDING_MAILDIR_ROOT: refused when a
profile is saved and again where connections are made (Test & Enable, sync), with one
"could not connect" message that does not tell a refused port from a missing host or a
disallowed one. The organization's allowed local mail servers setting lets them through
(the suite's conftest sets it for its loopback peers; these tests clear it)."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from server.crm.allowed_hosts import parse_allowed
from server.crm.models import Organization
from server.db import db
from server.security.bootstrap import root_unit
from server.sync.admin.testing import test_and_enable as run_test_and_enable
from server.sync.connectors.maildir import create_maildir, mailbox_root
from server.sync.engine import hosts
from server.sync.engine.run import sync_mailbox
from server.sync.models import EmailServerProfile
from tests.servers.ports import free_port
from tests.sync.mailboxes import make_mailbox, make_profile

FORM = dict(name="Local IMAP", incoming_protocol="imap", incoming_host="127.0.0.1",
            incoming_port="143", incoming_security="none", outgoing_protocol="",
            auth_method="password", max_connections="4")


def _allow(text: str) -> None:
    db.session.get(Organization, 1).mail_server_allowed_hosts = text
    db.session.commit()


@pytest.fixture
def admin(make_user):
    return make_user("admin@contoso.test", roles=["System Administrator"], name="Ada Admin")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "localhost", "api.localhost",
                                  "::1", "[::1]", "::ffff:127.0.0.1", "169.254.169.254",
                                  "fe80::1", "0.0.0.0", "224.0.0.1"])
def test_profiles_naming_loopback_or_link_local_servers_are_refused_when_saved(
        host, admin, signin):
    _allow("")
    c = signin(admin)
    for side in ("incoming", "outgoing"):
        form = {**FORM, "name": f"P {side}", f"{side}_host": host, f"{side}_port": "25",
                "outgoing_protocol": "smtp", "outgoing_host": FORM["incoming_host"]
                if side == "incoming" else host, "outgoing_security": "none"}
        if side == "outgoing":
            form["incoming_host"] = "imap.contoso.example"
        r = c.post("/admin/sync/profiles/new", data=form)
        assert r.status_code == 422, (host, side)
        body = r.get_data(as_text=True)  # (the profile form takes no IPv6 literal at all)
        assert "not allowed" in body or "Enter a host name or an IP address" in body
    assert db.session.scalar(select(EmailServerProfile.id)) is None


def test_the_organization_setting_allows_listed_servers_and_is_validated(admin, signin):
    c = signin(admin)
    page = c.get("/admin/organization").get_data(as_text=True)
    assert "Allowed local mail servers" in page
    form = {"name": "Contoso Test", "base_currency": "USD", "attachment_max_bytes": "5",
            "tracking_token_prefix": "CRM:", "use_tracking_token": "1",
            "mail_server_allowed_hosts": "127.0.0.1, not a host!"}
    assert c.post("/admin/organization", data=form).status_code in (400, 422)
    assert db.session.get(Organization, 1).mail_server_allowed_hosts != "127.0.0.1, not a host!"
    form["mail_server_allowed_hosts"] = "127.0.0.1/32, mail.internal"
    assert c.post("/admin/organization", data=form).status_code == 302
    db.session.expire_all()
    assert db.session.get(Organization, 1).mail_server_allowed_hosts == "127.0.0.1/32, mail.internal"
    assert c.post("/admin/sync/profiles/new", data=FORM).status_code == 302
    refused = c.post("/admin/sync/profiles/new", data={**FORM, "name": "Other",
                                                       "incoming_host": "127.0.0.2"})
    assert refused.status_code == 422


@given(st.lists(st.sampled_from(["127.0.0.1", "10.0.0.0/8", "::1", "fe80::/10", "mail.local",
                                 "x", "a.b-c.d", "1.2.3.4/33", "bad host", "*", "http://x",
                                 "../etc"]), max_size=5),
       st.sampled_from([", ", " ", "\n", ";"]))
def test_the_setting_parser_accepts_hosts_and_networks_only(entries, separator):
    text = separator.join(entries)
    bad = bool({"1.2.3.4/33", "*", "http://x", "../etc"} & set(entries))  # "bad host" is two
    try:
        names, networks = parse_allowed(text)
    except ValueError:
        assert bad
    else:
        assert not bad
        assert all(" " not in n and "/" not in n for n in names)


def test_test_and_enable_refuses_a_loopback_server_like_a_closed_port(app, make_user, dovecot,
                                                                      mail_user):
    sam = make_user("sam@contoso.test")
    profile = make_profile(dovecot=dovecot)  # saved directly: as if allowed at the time
    mailbox = make_mailbox(profile, user=sam, username=mail_user.username,
                           password=mail_user.password, outgoing_method="none")
    assert run_test_and_enable(mailbox).incoming.ok  # allowed by the suite's setting
    _allow("")
    refused = run_test_and_enable(mailbox)
    assert not refused.enabled and refused.incoming.code == "could_not_connect"
    message = mailbox.incoming_message
    assert message.startswith(f"Could not connect to 127.0.0.1:{dovecot.imap_port}.")
    # a port with nothing behind it reads the same: no port scanning through the profile
    _allow("127.0.0.0/8")
    closed = make_profile(incoming_host="127.0.0.1", incoming_port=free_port())
    mailbox.server_profile = closed
    result = run_test_and_enable(mailbox)
    assert result.incoming.code == "could_not_connect"
    assert mailbox.incoming_message == message.replace(str(dovecot.imap_port),
                                                       str(closed.incoming_port)).replace(
        profile.name, closed.name)


def test_a_sync_run_does_not_connect_to_a_server_no_longer_allowed(app, make_user, dovecot,
                                                                    mail_user):
    sam = make_user("sam@contoso.test")
    mailbox = make_mailbox(make_profile(dovecot=dovecot), user=sam, username=mail_user.username,
                           password=mail_user.password, outgoing_method="none", enabled=True)
    _allow("")
    with pytest.raises(Exception) as caught:
        hosts.check_server("127.0.0.1", dovecot.imap_port)
    assert caught.value.code == "could_not_connect"
    result = sync_mailbox(mailbox.id)
    assert result.status == "failure" and result.error_code == "could_not_connect"


def test_maildir_stores_must_be_inside_the_configured_directory(app, admin, signin, tmp_path,
                                                                tmp_path_factory, make_user):
    outside = tmp_path_factory.mktemp("elsewhere")
    app.config["REGARDING_MAILDIR_ROOT"] = str(tmp_path / "maildir")
    inside = tmp_path / "maildir" / "store"
    c = signin(admin)
    form = {**FORM, "incoming_protocol": "maildir", "incoming_host": "", "maildir_root": ""}
    for root in (str(outside), "/etc", str(tmp_path / "maildir" / ".." / "x"), "../../x"):
        r = c.post("/admin/sync/profiles/new", data={**form, "maildir_root": root})
        assert r.status_code == 422 and "Maildir store must be inside" in r.get_data(as_text=True)
    r = c.post("/admin/sync/profiles/new", data={**form, "maildir_root": str(inside)})
    assert r.status_code == 302
    # a profile saved before the directory was narrowed is refused when used
    sam = make_user("sam@contoso.test")
    create_maildir(mailbox_root(outside, sam.email), ["INBOX/Deals"])
    old = EmailServerProfile(name="Old store", incoming_protocol="maildir",
                             maildir_root=str(outside), owning_business_unit_id=root_unit().id)
    db.session.add(old)
    db.session.commit()
    mailbox = make_mailbox(old, user=sam, outgoing_method="none")
    result = run_test_and_enable(mailbox)
    assert not result.enabled and result.incoming.code == "maildir_not_allowed"
