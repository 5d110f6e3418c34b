"""Working a queue and its case rules through the REST API: items with age and who works
them; pick, release, route and remove with read on the queue and append-to on the activity
checked on every call; case rules created, changed, listed and deleted, each bad value named."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from server.crm.models import Queue
from server.crm.queues import CaseRule, QueueItem
from server.crm.services import tracking
from server.crm.services.tracking import EmailContent
from server.db import db
from server.security import authz
from tests.api.conftest import error_of
from tests.api.test_api_openapi import _check, document  # noqa: F401


@pytest.fixture
def desk(app, csr, admin):
    """Two queues and an email from a customer waiting in the first."""
    support = Queue(name="Support", email="support@contoso.test", owner_user_id=admin.id,
                    owning_business_unit_id=admin.business_unit_id)
    billing = Queue(name="Billing", email="billing@contoso.test", owner_user_id=admin.id,
                    owning_business_unit_id=admin.business_unit_id)
    db.session.add_all([support, billing])
    db.session.flush()
    email, _ = tracking.track_email(authz.principal(csr), EmailContent(
        message_id="help@customer.test", subject="Help", from_=("Ann", "ann@customer.test"),
        to=[("Support", "support@contoso.test")], text_body="Please help."))
    item = QueueItem(queue_id=support.id, activity_id=email.id)
    db.session.add(item)
    db.session.commit()
    return support, billing, item


def test_items_show_age_and_who_works_them_and_pick_release_route(api_client, csr, admin, desk,
                                                                  document):
    support, billing, item = desk
    api = api_client(csr)
    listed = api.get(f"/api/v1/queues/{support.id}/items").get_json()
    _check(document, "QueueItemList", listed)
    [row] = listed["items"]
    assert row["activity"]["subject"] == "Help" and row["worked_by"] is None
    assert row["age_seconds"] >= 0 and listed["queue"]["name"] == "Support"
    picked = api.post(f"/api/v1/queue_items/{item.id}/pick").get_json()
    _check(document, "QueueItem", picked)
    assert picked["worked_by"] == {"id": csr.id, "name": "Cory Service"} and picked["worked_on"]
    assert api.get(f"/api/v1/queues/{support.id}/items?worked=mine").get_json()["items"]
    assert api.get(f"/api/v1/queues/{support.id}/items?worked=nobody").get_json()["items"] == []
    # Someone else's item is released before another picks it.
    other = api_client(admin)
    r = other.post(f"/api/v1/queue_items/{item.id}/pick")
    assert r.status_code == 409 and "Cory Service works on this item" in error_of(r)["message"]
    assert api.post(f"/api/v1/queue_items/{item.id}/release").get_json()["worked_by"] is None
    routed = api.post(f"/api/v1/queue_items/{item.id}/route", json={"queue": billing.id})
    assert routed.status_code == 200 and routed.get_json()["queue_id"] == billing.id
    handed = api.post(f"/api/v1/queue_items/{item.id}/route", json={"user": admin.id})
    assert handed.get_json()["worked_by"]["id"] == admin.id
    assert api.delete(f"/api/v1/queue_items/{item.id}").status_code == 204
    assert db.session.scalars(select(QueueItem)).all() == []


def test_privileges_are_checked_on_every_call(api_client, seller, outsider, make_user, desk):
    support, billing, item = desk
    # A Salesperson reads the queue and the email (business unit), but may not append to it.
    api = api_client(seller)
    assert len(api.get(f"/api/v1/queues/{support.id}/items").get_json()["items"]) == 1
    for call in (lambda: api.post(f"/api/v1/queue_items/{item.id}/pick"),
                 lambda: api.post(f"/api/v1/queue_items/{item.id}/release"),
                 lambda: api.post(f"/api/v1/queue_items/{item.id}/route",
                                  json={"queue": billing.id}),
                 lambda: api.delete(f"/api/v1/queue_items/{item.id}")):
        assert call().status_code == 403
    # Someone of another unit sees no item and cannot reach it.
    far = api_client(outsider)
    assert far.get(f"/api/v1/queues/{support.id}/items").get_json()["items"] == []
    assert far.post(f"/api/v1/queue_items/{item.id}/pick").status_code == 404
    # Nobody without read on the queue sees it.
    nobody = api_client(make_user("no.roles@contoso.test", roles=[]))
    assert nobody.get(f"/api/v1/queues/{support.id}/items").status_code == 404


def test_routing_to_someone_who_cannot_read_the_queue_is_refused(api_client, csr, make_user,
                                                                 desk):
    support, billing, item = desk
    stranger = make_user("no.roles@contoso.test", roles=[])
    r = api_client(csr).post(f"/api/v1/queue_items/{item.id}/route", json={"user": stranger.id})
    assert r.status_code == 400 and error_of(r)["fields"] == \
        {"user": "This user may not read the queue."}
    r = api_client(csr).post(f"/api/v1/queue_items/{item.id}/route",
                             json={"queue": billing.id, "user": stranger.id})
    assert r.status_code == 400
    db.session.expire_all()
    assert db.session.get(QueueItem, item.id).queue_id == support.id


def test_case_rules_through_the_api(api_client, admin, csr, desk, document):
    support, _, _ = desk
    api = api_client(admin)
    body = {"name": "Invoices", "conditions": [{"kind": "subject_contains", "value": "invoice"},
                                               {"kind": "sender_domain", "value": "@Fabrikam.test"},
                                               {"kind": "not_automatic"}],
            "routing": "user", "route_user_id": csr.id, "acknowledge": True}
    _check(document, "CaseRuleInput", body)
    made = api.post(f"/api/v1/queues/{support.id}/case_rules", json=body)
    assert made.status_code == 201, made.get_json()
    rule = made.get_json()
    _check(document, "CaseRule", rule)
    _check(document, "CaseRuleList", api.get(f"/api/v1/queues/{support.id}/case_rules").get_json())
    assert rule["conditions"][1] == {"kind": "sender_domain", "value": "fabrikam.test"}
    assert rule["position"] == 1 and rule["ack_per_sender_per_day"] == 3
    changed = api.patch(f"/api/v1/case_rules/{rule['id']}", json={"priority": "high"})
    assert changed.get_json()["priority"] == "high"
    bad = api.patch(f"/api/v1/case_rules/{rule['id']}", json={
        "routing": "round_robin", "conditions": [{"kind": "business_hours", "value": "always"}],
        "colour": "red"})
    assert bad.status_code == 400
    fields = error_of(bad)["fields"]
    assert set(fields) == {"route_team_id", "conditions", "colour"}
    assert "business hours" in fields["conditions"]
    assert db.session.get(CaseRule, rule["id"]).routing == "user"  # nothing half-saved
    # A CSR reads the queue's rules but may not change them.
    api_csr = api_client(csr)
    assert [r["name"] for r in api_csr.get(
        f"/api/v1/queues/{support.id}/case_rules").get_json()["items"]] == ["Invoices"]
    assert api_csr.delete(f"/api/v1/case_rules/{rule['id']}").status_code == 403
    assert api.delete(f"/api/v1/case_rules/{rule['id']}").status_code == 204


def test_a_queues_accepting_switch_is_a_field_of_the_queue(api_client, admin, desk):
    support, _, _ = desk
    api = api_client(admin)
    assert api.get(f"/api/v1/queues/{support.id}").get_json()["accepting"] == "everyone"
    changed = api.patch(f"/api/v1/queues/{support.id}", json={"accepting": "known_senders"})
    assert changed.status_code == 200 and changed.get_json()["accepting"] == "known_senders"
    refused = api.patch(f"/api/v1/queues/{support.id}", json={"accepting": "friends"})
    assert refused.status_code == 400 and "accepting" in error_of(refused)["fields"]
    db.session.expire_all()
    assert db.session.get(Queue, support.id).accepting == "known_senders"
