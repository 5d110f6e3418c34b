"""The OpenAPI document: a valid OpenAPI 3.1 document that lists exactly the routes the
application serves under /api/v1/, whose schemas the real responses satisfy."""
from __future__ import annotations

import re

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

pytestmark = pytest.mark.both_databases

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@pytest.fixture
def document(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200 and r.mimetype == "application/json"
    return r.get_json()


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"] == "3.1.0"
    validate(document)


def _app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^>]*:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1"):])
        routes |= {(method, path) for method in rule.methods & METHODS}
    return routes


def test_every_route_is_documented_and_nothing_else(app, document):
    documented = {(method.upper(), path) for path, item in document["paths"].items()
                  for method in item if method.upper() in METHODS}
    routes = _app_routes(app)
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented paths the app does not serve"
    # records, activities, email files, email templates, mailboxes, queues and case rules, misc
    assert len(routes) == 6 * 11 + 10 + 1 + 6 + 8 + 10 + 3


def test_operation_ids_are_the_endpoint_names(app, document):
    endpoints = {rule.endpoint.removeprefix("api.") for rule in app.url_map.iter_rules()
                 if rule.rule.startswith("/api/v1/")}
    ids = [op["operationId"] for item in document["paths"].values()
           for method, op in item.items() if method.upper() in METHODS]
    assert len(ids) == len(set(ids))
    assert set(ids) == endpoints


def _validator(document, name):
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return Draft202012Validator(root)


def _check(document, name, instance):
    errors = sorted(_validator(document, name).iter_errors(instance), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


def test_responses_match_their_schemas(api_client, admin, document):
    from .conftest import COLLECTION, SAMPLES
    api = api_client(admin)
    for kind, body in SAMPLES.items():
        created = api.post(f"/api/v1/{COLLECTION[kind]}", json=body).get_json()
        label = {"case": "Case", "opportunity": "Opportunity"}.get(kind, kind.title())
        _check(document, label, created)
        _check(document, f"{label}Create", body)
        _check(document, f"{label}Page", api.get(f"/api/v1/{COLLECTION[kind]}?count=true").get_json())
    account = api.get("/api/v1/accounts").get_json()["items"][0]
    email = api.post("/api/v1/activities", json={
        "type": "email", "direction": "incoming", "subject": "Hi", "message_id": "<1@x>",
        "parties": [{"role": "from", "address": "info@contoso.test"}],
        "regarding": {"type": "account", "id": account["id"]}}).get_json()
    _check(document, "Activity", email)
    task = {"type": "task", "subject": "Call", "scheduled_end": "2026-01-01T10:00:00Z"}
    _check(document, "ActivityCreate", task)
    _check(document, "Activity", api.post("/api/v1/activities", json=task).get_json())
    _check(document, "ActivityPage", api.get(f"/api/v1/accounts/{account['id']}/timeline").get_json())
    _check(document, "Me", api.get("/api/v1/me").get_json())
    _check(document, "Resolution", api.get("/api/v1/resolve?address=info@contoso.test").get_json())
    share = api.post(f"/api/v1/accounts/{account['id']}/share",
                     json={"principal": {"type": "user", "id": admin.id}, "rights": ["read"]})
    _check(document, "Share", share.get_json())
    r = api.post("/api/v1/accounts", json={"nope": 1})
    _check(document, "Error", r.get_json())


def test_record_schemas_follow_the_registry(document):
    from server.crm.registry import RECORD_TYPES
    schemas = document["components"]["schemas"]
    for rt in RECORD_TYPES.values():
        name = rt.label.replace(" ", "")
        create = schemas[f"{name}Create"]
        assert set(create["properties"]) == set(rt.field_names) | {"owner"}
        assert set(create["required"]) == {f.name for f in rt.fields if f.required}
        assert create["additionalProperties"] is False
        for f in rt.fields:
            if f.max_length and f.kind != "choice":
                assert schemas[name]["properties"][f.name]["maxLength"] == f.max_length
