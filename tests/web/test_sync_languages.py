"""What the sync says, in the reader's language: reasons and alerts stored in English (rows
written before and after the strings were marked) are shown translated where a catalog has
their sentence, values read back out of the stored text; the alert digest is written in its
recipient's language with times in their zone; the sync pages of a Czech-speaking user use
the cs catalog.

The shipped catalogs are translated after merging, so assertions on them go through
``server.i18n.translate`` (right before and after translation); the reading back of values
is proven on a small catalog of this test's own, written as gettext writes one."""
from __future__ import annotations

from datetime import datetime

import pytest

from server.crm.models import Organization
from server.db import db, utcnow
from server.i18n import format_moment, plural_of, translate, translate_stored
from server.sync.admin import alert_mail
from server.sync.models import Alert, EmailServerProfile, Mailbox, MessageDecision
from server.security.bootstrap import create_user, root_unit
from tests.web.conftest import use_catalog

# A reason as the rule chain stored it (before and after its sentences were marked: the
# English is the same): three catalog strings nested, then a second sentence.
STORED_REASON = ('This email is from ann@customer.example, a lead, contact or account in '
                 'Regarding, and your tracking option is "Email messages from leads, contacts '
                 'and accounts", so it is tracked. It is set regarding the contact you chose.')
CS = {
    "This email is from %(address)s, a lead, contact or account in Regarding, and "
    "%(option_sentence)s, so it is tracked.":
        "Tento e-mail je od %(address)s, potenciálního zákazníka, kontaktu nebo firmy "
        "v Regarding, a %(option_sentence)s, proto je sledován.",
    'your tracking option is "%(option)s"': "vaše možnost sledování je „%(option)s“",
    "Email messages from leads, contacts and accounts":
        "E-maily od potenciálních zákazníků, kontaktů a firem",
    "It is set regarding the %(kind)s you chose.": "Týká se zvoleného záznamu (%(kind)s).",
    "Synchronization of %(address)s was turned off: %(problem)s":
        "Synchronizace %(address)s byla vypnuta: %(problem)s",
    "Fix the problem, then test and enable the mailbox again.":
        "Opravte problém a poté schránku znovu otestujte a zapněte.",
    "Email synchronization: %(counts)s": "Synchronizace e-mailu: %(counts)s",
    "New alerts about email synchronization:": "Nová upozornění k synchronizaci e-mailu:",
    "A broken %(thing)s": "Rozbitý %(what)s",  # a translator's slip: the English stays
    "Some fields are not valid.": "Některá pole nejsou platná.",
    "Type something to search for.": "Napište, co hledat.",
}
CS_PLURALS = {("%(count)s error", "%(count)s errors"):
              ("%(count)s chyba", "%(count)s chyby", "%(count)s chyb")}
READ_BACK = ("Tento e-mail je od ann@customer.example, potenciálního zákazníka, kontaktu nebo "
             "firmy v Regarding, a vaše možnost sledování je „E-maily od potenciálních "
             "zákazníků, kontaktů a firem“, proto je sledován. Týká se zvoleného záznamu "
             "(contact).")


@pytest.fixture
def cs_catalog(tmp_path, monkeypatch):
    """A Czech catalog of this test's own in place of the shipped ones."""
    use_catalog(tmp_path, monkeypatch, "cs", CS, CS_PLURALS)


def test_a_stored_reason_is_read_back_in_the_readers_language(cs_catalog):
    assert translate_stored("cs", STORED_REASON) == READ_BACK
    assert translate_stored("en", STORED_REASON) == STORED_REASON
    assert translate_stored("sv", STORED_REASON) == STORED_REASON  # no Swedish catalog here
    # Text no catalog string made (an old wording, a server's own error) stays as stored.
    assert translate_stored("cs", "Tracked: the sender is a contact.") == \
        "Tracked: the sender is a contact."
    assert translate_stored("cs", "A broken mailbox") == "A broken mailbox"
    # The values inside are read the same way: a server's error stays, a marked fix is read.
    assert translate_stored("cs", "Synchronization of bob@org.example was turned off: The "
                                  "server said no. Fix the problem, then test and enable the "
                                  "mailbox again.") == (
        "Synchronizace bob@org.example byla vypnuta: The server said no. Opravte problém a "
        "poté schránku znovu otestujte a zapněte.")


def test_the_digest_is_written_in_the_recipients_language_and_zone(cs_catalog):
    raised = datetime(2026, 12, 5, 22, 25)
    message = "Synchronization of bob@org.example was turned off: The server said no."
    items = [alert_mail._Item("error", "bob@org.example", message, raised)] * 2
    subject, body = alert_mail.digest_text(items, admin=False, base_url="https://crm.example",
                                           language="cs", zone="Europe/Prague")
    assert subject == "Synchronizace e-mailu: 2 chyby"
    assert body.startswith("Nová upozornění k synchronizaci e-mailu:\n")
    assert "5. 12. 2026 23:25 (Europe/Prague)" in body  # Czech order, Prague's clock
    assert "  Synchronizace bob@org.example byla vypnuta: The server said no.\n" in body
    subject, body = alert_mail.digest_text(items[:1], admin=False, base_url="", language="en")
    assert subject == "Email synchronization: 1 error"
    assert f"  {message}\n" in body and "Dec 5, 2026" in body


def test_the_digest_with_the_shipped_catalogs(app):
    """Whatever the shipped cs catalog holds today, the digest is its text."""
    raised = utcnow()
    message = "Synchronization of bob@org.example was turned off: The server said no."
    subject, body = alert_mail.digest_text([alert_mail._Item("error", None, message, raised)],
                                           admin=True, base_url="", language="cs", zone="UTC")
    one = plural_of("cs")("%(count)s error", "%(count)s errors", 1) % {"count": 1}
    assert subject == translate("cs", "Email synchronization: %(counts)s") % {"counts": one}
    lines = body.splitlines()
    assert lines[0] == translate("cs", "New alerts about email synchronization:")
    when = format_moment(raised, "cs", "UTC")
    assert lines[2] == "- " + translate("cs", "%(severity)s, %(when)s:") % {
        "severity": translate("cs", "Error").upper(), "when": f"{when} (UTC)"}
    assert lines[3] == "  " + translate_stored("cs", message)
    assert translate("cs", "Details: the Email tracking pages of the CRM.") in body


def test_the_digest_language_is_the_users_else_the_organizations(app, make_user):
    ann, bob = make_user("ann@org.example"), make_user("bob@org.example")
    ann.language, ann.time_zone = "cs", "Europe/Prague"
    org = db.session.get(Organization, 1)
    org.default_language, org.default_time_zone = "hu", "Europe/Budapest"
    db.session.commit()
    assert alert_mail.reader_of(ann) == ("cs", "Europe/Prague")
    assert alert_mail.reader_of(bob) == ("hu", "Europe/Budapest")


@pytest.fixture
def box(app, czech_admin):
    profile = EmailServerProfile(name="Local", incoming_protocol="maildir",
                                 outgoing_protocol="maildir", maildir_root="/nonexistent",
                                 owning_business_unit_id=root_unit().id)
    db.session.add(profile)
    db.session.flush()
    box = Mailbox(name="Ada", email_address="ada@org.example", user_id=czech_admin.id,
                  server_profile_id=profile.id, owning_business_unit_id=root_unit().id,
                  email_approved=True, enabled=True, next_sync_on=utcnow())
    db.session.add(box)
    db.session.commit()
    return box


def _store(box) -> None:
    db.session.add(MessageDecision(mailbox_id=box.id, identity="<q1@customer.example>",
                                   subject="Quote", from_address="ann@customer.example",
                                   tracked=True, folder_name="INBOX", reason=STORED_REASON,
                                   rule_hits=[{"rule": "option-crm-records", "matched": True}],
                                   processed_on=utcnow()))
    db.session.add(Alert(severity="error", code="sync_fatal", mailbox_id=box.id,
                         message="Synchronization of ada@org.example was turned off: The "
                                 "server said no."))
    db.session.commit()


def test_the_dashboard_of_a_czech_speaking_admin_uses_the_cs_catalog(app, signin, czech_admin,
                                                                     box):
    _store(box)
    page = signin(czech_admin).get("/admin/sync/?q=Quote").get_data(as_text=True)
    for msgid in ("Open alerts", "Why was this email (not) tracked?", "Recent runs",
                  "Server-side sync", "Rules tried"):
        assert translate("cs", msgid) in page, msgid
    assert translate_stored("cs", STORED_REASON) in page.replace("&#34;", '"')
    assert translate_stored("cs", "Synchronization of ada@org.example was turned off: The "
                                  "server said no.") in page


def test_stored_reasons_and_alerts_are_shown_translated(app, signin, czech_admin, box,
                                                        cs_catalog):
    """Rows stored before the upgrade read in the reader's language; an English reader sees
    them as stored."""
    _store(box)
    client = signin(czech_admin)
    page = client.get("/admin/sync/?q=Quote").get_data(as_text=True)
    assert READ_BACK in page.replace("&#34;", '"')
    assert "Synchronizace ada@org.example byla vypnuta: The server said no." in page
    decisions = client.get(f"/admin/sync/decisions?mailbox={box.id}").get_data(as_text=True)
    assert READ_BACK in decisions.replace("&#34;", '"')
    czech_admin.language = "en"
    db.session.commit()
    page = client.get("/admin/sync/?q=Quote").get_data(as_text=True)
    assert STORED_REASON in page.replace("&#34;", '"')


def test_the_panes_errors_are_in_its_users_language(app, api_client, cs_catalog):
    """The add-in API's typed errors (message and fields) are said in the pane user's
    language; the codes stay."""
    user = create_user("ann@contoso.test", "Ann Archer", unit=root_unit(), roles=["Salesperson"])
    user.language = "cs"
    db.session.commit()
    body = api_client(user, kind="pane").get("/api/addin/search?q=").get_json()["error"]
    assert body["code"] == "invalid"
    assert body["message"] == "Některá pole nejsou platná."
    assert body["fields"]["q"] == "Napište, co hledat."
    user.language = "en"
    db.session.commit()
    body = api_client(user, kind="pane").get("/api/addin/search?q=").get_json()["error"]
    assert (body["message"], body["fields"]["q"]) == ("Some fields are not valid.",
                                                      "Type something to search for.")
