"""A schemathesis smoke run: requests generated from the OpenAPI document (valid and
invalid) against the live test app, with a token, on a few real records. No request may
end in a server error. Deliberately small (a few examples per operation)."""
from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from schemathesis.config import SchemathesisConfig  # noqa: E402

pytestmark = [pytest.mark.both_databases, pytest.mark.slow]

EXAMPLES = 5  # per operation on average; positive and negative (schemathesis' default)


def test_generated_requests_never_get_a_server_error(app, api_client, admin):
    from server.crm.activities import Attachment
    from server.db import db
    api = api_client(admin)
    # something to find at small ids, so generated ids sometimes hit real rows
    account = api.post("/api/v1/accounts", json={"name": "Contoso"}).get_json()
    api.post("/api/v1/contacts", json={"last_name": "Smith", "parent_account_id": account["id"]})
    task = api.post("/api/v1/activities", json={"type": "task", "subject": "x",
                                                "regarding": {"type": "account", "id": account["id"]}})
    db.session.add(Attachment(activity_id=task.get_json()["id"], filename="a.txt", size=1,
                              content=b"a"))
    db.session.commit()
    headers = {"Authorization": f"Bearer {api.token}"}

    config = SchemathesisConfig()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=config)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 70

    failures = []

    @settings(max_examples=EXAMPLES * len(operations), deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        operation = data.draw(st.sampled_from(operations))
        case = data.draw(operation.as_strategy())
        response = case.call(headers=headers)
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}")
        assert response.status_code < 500, failures[-1]
        if response.status_code >= 400:
            content_type = {k.lower(): v for k, v in response.headers.items()}["content-type"]
            assert "application/json" in str(content_type)

    run()
    assert not failures
