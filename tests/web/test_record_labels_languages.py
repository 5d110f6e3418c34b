"""Record types' and fields' labels in the reader's language: a Czech reader's record list
and record page show the type, its columns and its choice values translated, sentences that
name a type insert the translated name, and the API's keys stay English.

The pages' own sentences come from the compiled catalogs; the labels from
``server.i18n``'s. The shipped catalogs get the new strings translated after merging, so one test goes through
``server.i18n.translate`` (right before and after translation); a small catalog of this
test's own proves the translation is applied."""
from __future__ import annotations

import html

import pytest

from server.crm.registry import RECORD_TYPES
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
