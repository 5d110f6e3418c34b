"""Bad input never makes a 500: malformed JSON, wrong types, unknown fields, oversize and
non-JSON bodies, bad query parameters, unknown paths and methods all answer with a typed JSON
error. Markup in text fields is stored as given and returned as JSON data, never as HTML."""
from __future__ import annotations

import pytest

from server.crm.models import Account
from server.crm.registry import RECORD_TYPES
from server.db import db

from .conftest import COLLECTION, SAMPLES, error_of

pytestmark = pytest.mark.both_databases


@pytest.fixture
def api(api_client, admin):
    return api_client(admin)


def _post_raw(api, path, data, content_type="application/json"):
    return api.post(path, data=data, headers={"Content-Type": content_type})


@pytest.mark.parametrize("raw", [b'{"name": ', b"{'name': 'x'}", b'{"name": "x",}', b"\xff\xfe{",
                                 b'{"name": NaN}', b'{"annual_revenue": Infinity, "name": "x"}',
                                 b"[" * 100_000 + b"]" * 100_000])
def test_malformed_json_is_400(api, raw):
    r = _post_raw(api, "/api/v1/accounts", raw)
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "invalid"
    assert db.session.query(Account).count() == 0


@pytest.mark.parametrize("raw", [b"[]", b'"name"', b"42", b"null", b"", b"   "])
def test_a_body_must_be_an_object(api, raw):
    r = _post_raw(api, "/api/v1/accounts", raw)
    assert r.status_code == 400 and error_of(r)["code"] == "invalid"


def test_lone_surrogates_are_refused(api):
    r = _post_raw(api, "/api/v1/accounts", b'{"name": "bad \\ud800 text"}')
    assert r.status_code == 400


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/xml",
                                          ""])
def test_non_json_bodies_are_415(api, content_type):
    r = _post_raw(api, "/api/v1/accounts", b'{"name": "x"}', content_type)
    assert r.status_code == 415
    assert error_of(r)["code"] == "unsupported_media_type"


def test_json_with_a_charset_is_fine(api):
    r = _post_raw(api, "/api/v1/accounts", '{"name": "Zoë"}'.encode(), "application/json; charset=utf-8")
    assert r.status_code == 201 and r.get_json()["name"] == "Zoë"


def test_markup_in_field_names_comes_back_escaped(api):
    r = api.post("/api/v1/accounts", json={"name": "X", "<img src=x onerror=alert(1)>": 1})
    assert r.status_code == 400
    assert b"<img" not in r.data
    assert "<img src=x onerror=alert(1)>" in error_of(r)["fields"]


def test_unknown_and_read_only_fields_are_named(api):
    r = api.post("/api/v1/accounts", json={"name": "X", "colour": "red", "id": 5,
                                           "created_on": "2020-01-01"})
    assert r.status_code == 400
    fields = error_of(r)["fields"]
    assert set(fields) == {"colour", "id", "created_on"}
    assert fields["colour"] == "Unknown field."


@pytest.mark.parametrize("kind,body,field", [
    ("account", {"name": 123}, "name"),
    ("account", {"name": ["x"]}, "name"),
    ("account", {"name": {"a": 1}}, "name"),
    ("account", {"name": "x" * 161}, "name"),
    ("account", {"name": "X", "annual_revenue": "lots"}, "annual_revenue"),
    ("account", {"name": "X", "annual_revenue": True}, "annual_revenue"),
    ("account", {"name": "X", "annual_revenue": 1e20}, "annual_revenue"),
    ("account", {"name": "X", "email1": "not an address"}, "email1"),
    ("account", {"name": "X", "website": "javascript:alert(1)"}, "website"),
    ("account", {"name": "X", "parent_account_id": "abc"}, "parent_account_id"),
    ("account", {"name": "X", "parent_account_id": 10**30}, "parent_account_id"),
    ("account", {"name": "X", "parent_account_id": 2**40}, "parent_account_id"),
    ("account", {"name": "X", "parent_account_id": True}, "parent_account_id"),
    ("account", {"name": "X", "parent_account_id": 9999}, "parent_account_id"),
    ("account", {}, "name"),
    ("account", {"name": None}, "name"),
    ("account", {"name": "   "}, "name"),
    ("opportunity", {"name": "X", "probability": "high"}, "probability"),
    ("opportunity", {"name": "X", "probability": 10**12}, "probability"),
    ("opportunity", {"name": "X", "probability": 1.5}, "probability"),
    ("opportunity", {"name": "X", "estimated_close_date": "31/12/2026"}, "estimated_close_date"),
    ("opportunity", {"name": "X", "estimated_close_date": 20261231}, "estimated_close_date"),
    ("opportunity", {"name": "X", "stage": "won"}, "stage"),
    ("lead", {"last_name": "X", "status": None}, "status"),
    ("case", {"title": "X", "priority": 1}, "priority"),
])
def test_wrong_types_get_per_field_messages(api, kind, body, field):
    r = api.post(f"/api/v1/{COLLECTION[kind]}", json=body)
    assert r.status_code == 400, r.get_json()
    assert field in error_of(r)["fields"]
    assert db.session.query(RECORD_TYPES[kind].model).count() == 0


def test_oversize_bodies_are_413(app, api):
    app.config["MAX_CONTENT_LENGTH"] = 2048
    r = api.post("/api/v1/accounts", json={"name": "X", "description": "y" * 5000})
    assert r.status_code == 413
    assert error_of(r)["code"] == "too_large"
    assert api.post("/api/v1/accounts", json={"name": "small"}).status_code == 201
    assert db.session.query(Account).count() == 1


def test_per_endpoint_limits_are_below_the_application_limit(api):
    acc = api.post("/api/v1/accounts", json={"name": "X"}).get_json()
    r = api.post(f"/api/v1/accounts/{acc['id']}/deactivate", json={"pad": "z" * 100_000})
    assert r.status_code == 413
    r = api.patch(f"/api/v1/accounts/{acc['id']}", json={"description": "y" * 300_000})
    assert r.status_code == 200  # a record body may be larger


@pytest.mark.parametrize("query,field", [
    ("page_size=0", "page_size"), ("page_size=201", "page_size"), ("page_size=abc", "page_size"),
    ("active=maybe", "active"), ("sort=colour", "sort"), ("sort=description", "sort"),
    ("cursor=%%%", "cursor"), ("cursor=bm90IGpzb24", "cursor"), ("cursor=WzEsMiwzXQ", "cursor"),
    ("colour=red", "colour"), ("annual_revenue=lots", "annual_revenue"),
    ("parent_account_id=x", "parent_account_id"), ("count=perhaps", "count"),
    ("owner_user_id=-1", "owner_user_id"), ("page_size=1&page_size=2", "page_size"),
    ("q=" + "x" * 201, "q"), ("owner_user_id=1099511627776", "owner_user_id"),
    # a keyset cursor whose id (or value) no column can hold
    ("cursor=WyJuYW1lIiwiYSIsMTA5OTUxMTYyNzc3Nl0", "cursor"),
])
def test_bad_query_parameters_are_400(api, query, field):
    r = api.get(f"/api/v1/accounts?{query}")
    assert r.status_code == 400, r.get_json()
    assert field in error_of(r)["fields"]


def test_numbers_beyond_the_columns_are_400_not_500(api):
    for query in ("probability=1099511627776", "customer_account_id=1099511627776",
                  "sort=probability&cursor=WyJwcm9iYWJpbGl0eSIsMTA5OTUxMTYyNzc3NiwxXQ"):
        r = api.get(f"/api/v1/opportunities?{query}")
        assert r.status_code == 400, (query, r.get_json())
        assert error_of(r)["fields"]


def test_unknown_paths_and_methods_are_json(api):
    r = api.get("/api/v1/widgets")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    r = api.delete("/api/v1/accounts")
    assert r.status_code == 405 and error_of(r)["code"] == "method_not_allowed"
    assert set(r.headers["Allow"].split(", ")) >= {"GET", "POST"}
    r = api.put("/api/v1/accounts/1", json={})
    assert r.status_code == 405


def test_bad_cursors_on_timelines_and_activities(api):
    acc = api.post("/api/v1/accounts", json={"name": "X"}).get_json()
    for cursor in ("abc", "1e400_1", "nan_1", "5_99999999999999999999999", "5_1099511627776",
                   "_"):
        assert api.get(f"/api/v1/accounts/{acc['id']}/timeline?cursor={cursor}").status_code == 400
        assert api.get(f"/api/v1/activities?cursor={cursor}").status_code == 400


MARKUP = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;'


@pytest.mark.parametrize("kind", list(SAMPLES))
def test_markup_in_every_text_field_is_data(api, kind):
    rt = RECORD_TYPES[kind]
    body = dict(SAMPLES[kind])
    texts = [f for f in rt.fields if f.kind in ("str", "text", "phone")]
    for f in texts:
        body[f.name] = MARKUP[:f.max_length] if f.max_length else MARKUP
    r = api.post(f"/api/v1/{COLLECTION[kind]}", json=body)
    assert r.status_code == 201, r.get_json()
    r = api.get(r.headers["Location"])
    assert r.mimetype == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Security-Policy" not in r.headers or "text/html" not in r.content_type
    for f in texts:
        assert r.get_json()[f.name] == body[f.name]  # stored and returned exactly as given
    assert b"<" not in r.data and b">" not in r.data and b"&" not in r.data
    assert b"\\u003cscript\\u003e" in r.data  # escaped inside the JSON strings
    listed = api.get(f"/api/v1/{COLLECTION[kind]}").get_json()["items"][0]
    assert all(listed[f.name] == body[f.name] for f in texts)
