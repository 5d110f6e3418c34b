"""REST endpoints for working queues and for a queue's email-to-case rules: a queue's items
(age, who works them), pick, release, route, remove; list, create, change and delete case
rules. Services: ``server.crm.services.queue_work`` and ``server.sync.admin.case_rules``;
the OpenAPI description is ``server.web.api.openapi_queues``."""
from __future__ import annotations

from flask import Blueprint, jsonify, url_for

from server.crm.services import queue_work as work
from server.db import db
from server.sync.admin import case_rules as rules
from server.web.api.common import ID, json_body, parse_int, principal, query_args, \
    reject_unknown


def item_json(v: work.ItemView) -> dict:
    return {"id": v.id, "queue_id": v.queue_id,
            "activity": {"id": v.activity_id, "type": v.activity_type, "subject": v.subject,
                         "regarding": {"type": v.regarding[0], "id": v.regarding[1]}
                         if v.regarding else None},
            "entered_on": v.entered_on.isoformat(), "age_seconds": v.age_seconds,
            "worked_by": {"id": v.worked_by_id, "name": v.worked_by} if v.worked_by_id else None,
            "worked_on": v.worked_on.isoformat() if v.worked_on else None}


def list_items(queue_id: int):
    args = query_args({"worked"})
    queue, found = work.items(principal(), queue_id, worked=args.get("worked", "all"))
    return jsonify({"queue": {"id": queue.id, "name": queue.name},
                    "items": [item_json(v) for v in found]})


def _act(item_id: int, action):
    p = principal()
    item = action(p, work.get_item(p, item_id))
    db.session.commit()
    return jsonify(item_json(work.view(item)))


def pick_item(item_id: int):
    json_body(optional=True)
    return _act(item_id, work.pick)


def release_item(item_id: int):
    json_body(optional=True)
    return _act(item_id, work.release)


def route_item(item_id: int):
    data = json_body()
    reject_unknown(data, {"queue", "user"})
    target = {f"{k}_id": parse_int(v, k) for k, v in data.items()}
    return _act(item_id, lambda p, item: work.route(p, item, **target))


def remove_item(item_id: int):
    p = principal()
    work.remove(p, work.get_item(p, item_id))
    db.session.commit()
    return "", 204


def list_rules(queue_id: int):
    query_args(set())
    queue, found = rules.rules_of(principal(), queue_id)
    return jsonify({"items": [rules.rule_json(r) for r in found]})


def create_rule(queue_id: int):
    p = principal()
    queue, _ = rules.rules_of(p, queue_id)
    rule = rules.save_rule(p, queue, None, json_body())
    db.session.commit()
    response = jsonify(rules.rule_json(rule))
    response.status_code = 201
    response.headers["Location"] = url_for("api.case_rule_get", rule_id=rule.id)
    return response


def get_rule(rule_id: int):
    query_args(set())
    return jsonify(rules.rule_json(rules.get_rule(principal(), rule_id)))


def update_rule(rule_id: int):
    p = principal()
    rule = rules.get_rule(p, rule_id, writing=True)
    rules.save_rule(p, rule.queue, rule, json_body())
    db.session.commit()
    return jsonify(rules.rule_json(rule))


def delete_rule(rule_id: int):
    p = principal()
    rules.delete_rule(p, rules.get_rule(p, rule_id, writing=True))
    db.session.commit()
    return "", 204


def register(bp: Blueprint) -> None:
    queue = f"/queues/<{ID}:queue_id>"
    item = f"/queue_items/<{ID}:item_id>"
    rule = f"/case_rules/<{ID}:rule_id>"
    for path, endpoint, view, methods in [
        (f"{queue}/items", "queue_items", list_items, ["GET"]),
        (f"{item}/pick", "queue_item_pick", pick_item, ["POST"]),
        (f"{item}/release", "queue_item_release", release_item, ["POST"]),
        (f"{item}/route", "queue_item_route", route_item, ["POST"]),
        (item, "queue_item_remove", remove_item, ["DELETE"]),
        (f"{queue}/case_rules", "case_rule_list", list_rules, ["GET"]),
        (f"{queue}/case_rules", "case_rule_create", create_rule, ["POST"]),
        (rule, "case_rule_get", get_rule, ["GET"]),
        (rule, "case_rule_update", update_rule, ["PATCH"]),
        (rule, "case_rule_delete", delete_rule, ["DELETE"]),
    ]:
        bp.add_url_rule(path, endpoint, view, methods=methods)
