"""Record types' and fields' labels in the reader's language: a Czech reader's record list
and record page show the type, its columns and its choice values translated, sentences that
name a type insert the translated name, and the API's keys stay English.

The pages' own sentences come from the compiled catalogs; the labels from
``server.i18n``'s. The shipped catalogs get the new strings translated after merging, so one test goes through
``server.i18n.translate`` (right before and after translation); a small catalog of this
test's own proves the translation is applied."""
from __future__ import annotations

import html
import re

import pytest

from server.crm.activities import EMAIL_STATUSES
from server.crm.registry import EMAIL_STATUS_LABELS, RECORD_TYPES
from server.crm.services import records
from server.db import db
from server.i18n import translate
from server.security import authz
from tests.web.conftest import use_catalog

CS = {"Cases": "Případy", "Case": "Případ", "Case title": "Název případu",
      "Case number": "Číslo případu", "Status": "Stav", "Priority": "Priorita",
      "In progress": "Probíhá", "High": "Vysoká", "cases": "případy", "case": "případ"}


@pytest.fixture
def cs_catalog(tmp_path, monkeypatch):
    """A Czech catalog of this test's own in place of the shipped ones."""
    use_catalog(tmp_path, monkeypatch, "cs", CS)


@pytest.fixture
def case(czech_admin):
    p = authz.principal(czech_admin)
    record = records.create(p, RECORD_TYPES["case"], {"title": "Broken pump", "status": "in_progress",
                                                      "priority": "high"})
    db.session.commit()
    return record


def _page(client, path: str) -> str:
    response = client.get(path)
    assert response.status_code == 200, path
    return html.unescape(response.get_data(as_text=True))



def test_a_czech_case_list_with_the_shipped_catalog(app, signin, czech_admin, case):
    page = _page(signin(czech_admin), "/r/case/")
    for msgid in ("Cases", "Case title", "Case number", "Status", "Priority", "In progress", "High"):
        assert translate("cs", msgid) in page, msgid


def test_a_czech_case_list_and_page_use_the_catalog(app, signin, czech_admin, case, cs_catalog):
    client = signin(czech_admin)
    page = _page(client, "/r/case/")
    for czech in ("<h1>", "Případy", "Název případu", "Číslo případu", "Stav", "Priorita", "Probíhá",
                  "Vysoká", 'data-label="Stav"',
                  "případ</a>", "případy</label>"):  # the names inside the page's sentences
        assert czech in page, czech
    for english in ("Case title", "Case number", "In progress", ">High<", "case</a>"):
        assert english not in page, english
    detail = _page(client, f"/r/case/{case.id}")
    assert "Název případu" in detail and "Probíhá" in detail and "Případ ·" in detail
    czech_admin.language = "en"
    db.session.commit()
    page = _page(client, "/r/case/")
    assert "Case title" in page and "In progress" in page and "New case</a>" in page


def test_the_api_keeps_english_keys_and_values(app, api_client, czech_admin, case, cs_catalog):
    body = api_client(czech_admin).get(f"/api/v1/cases/{case.id}").json
    assert body["status"] == "in_progress" and body["title"] == "Broken pump"


# Sentences that name a choice value insert its label, translated as it is (never lower-cased).
SENTENCES = {
    "This email’s status is “%(status)s”: only a draft, or a failed email (to retry), can be sent.":
        "Stav e-mailu je „%(status)s“: odeslat lze jen koncept nebo neodeslaný e-mail.",
    "Canceled": "Zrušeno",
    "This activity’s state is already “%(state)s”.": "Aktivita už je ve stavu „%(state)s“.",
    "You cannot share “%(right)s” access you do not have.": "Nelze sdílet přístup „%(right)s“, který nemáte.",
    "Append to": "Připojit k",
    "You do not have the “%(privilege)s” privilege on this %(kind)s.": "Nemáte oprávnění „%(privilege)s“ k %(kind)s.",
    "Write": "Zápis",
    "case": "případ",
    "Parent account": "Nadřazená Firma",  # a capital inside: a label is inserted as translated
}


@pytest.fixture
def cs_sentences(tmp_path, monkeypatch):
    use_catalog(tmp_path, monkeypatch, "cs", SENTENCES)


def test_a_canceled_email_that_cannot_be_sent_names_its_translated_status(
        app, api_client, czech_admin, cs_sentences):
    from server.crm.services import activity_actions
    from server.errors import ServiceError
    from server.web.compose import status_label
    from server.web.languages import localize
    from tests.sync.world import draft_email
    p = authz.principal(czech_admin)
    email = draft_email(p, to="ann@customer.example", subject="Quote")
    activity_actions.set_state(p, email, "canceled")
    db.session.commit()
    assert email.status == "canceled"
    response = api_client(czech_admin).post(f"/api/v1/activities/{email.id}/send", json={})
    assert response.status_code == 409
    assert response.json["error"]["message"] == (
        "Stav e-mailu je „Zrušeno“: odeslat lze jen koncept nebo neodeslaný e-mail.")
    with pytest.raises(ServiceError) as raised:  # marking it again names its state alike
        activity_actions.set_state(p, email, "completed")
    with app.test_request_context(headers={"Accept-Language": "cs"}):
        # The label the email's page and timeline show for it (the ``email_status`` filter).
        assert status_label("canceled") == "Zrušeno"
        assert localize(raised.value.message) == "Aktivita už je ve stavu „Zrušeno“."
    assert set(EMAIL_STATUS_LABELS) == set(EMAIL_STATUSES)  # every status has its words


def test_refusals_name_the_translated_right_and_privilege(app, make_user, czech_admin, cs_sentences):
    from server.errors import ServiceError
    from server.web.languages import localize
    admin = authz.principal(czech_admin)
    record = records.create(admin, RECORD_TYPES["case"], {"title": "Pump"})
    reader = make_user("rita@org.example", roles=())  # what is shared with her, no more
    records.share(admin, record, reader, {"read", "share"})
    db.session.commit()
    p = authz.principal(reader)
    refusals = []
    for attempt in (lambda: records.share(p, record, czech_admin, {"append_to"}),
                    lambda: authz.require(p, "write", record)):
        with pytest.raises(ServiceError) as raised:
            attempt()
        refusals.append(raised.value.message)
    with app.test_request_context(headers={"Accept-Language": "cs"}):
        assert [localize(m) for m in refusals] == [
            "Nelze sdílet přístup „Připojit k“, který nemáte.", "Nemáte oprávnění „Zápis“ k případ."]
    assert str(refusals[1]) == "You do not have the “Write” privilege on this case."


def test_a_lookups_filter_names_the_field_as_translated(app, cs_sentences):
    from types import SimpleNamespace

    from flask import render_template_string
    field = RECORD_TYPES["account"].field("parent_account_id")
    assert field.label == "Parent account"
    ff = SimpleNamespace(field=field, value="", error=None, readonly=False)
    rows = [(n, f"Account {n}") for n in range(20)]  # more than 12: the list has a filter
    with app.test_request_context(headers={"Accept-Language": "cs"}):
        page = html.unescape(render_template_string(
            '{% from "_macros.html" import field_input with context %}{{ field_input(ff, lookups) }}',
            ff=ff, lookups={field.name: (rows, False)}))
    [placeholder] = re.findall(r'class="lookup-filter"[^>]*placeholder="([^"]*)"', page)
    [aria] = re.findall(r'class="lookup-filter"[^>]*aria-label="([^"]*)"', page)
    assert "Nadřazená Firma" in placeholder and "Nadřazená Firma" in aria, (placeholder, aria)
