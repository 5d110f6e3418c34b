"""The OpenAPI description of working queues and of a queue's email-to-case rules
(``server.web.api.queues``), part of the document ``server.web.api.openapi`` serves."""
from __future__ import annotations

from server.crm.queues import ON_RESOLVED, PRIORITIES, ROUTINGS
from server.sync.mail.case_rules import CONDITIONS
from server.web.api.openapi_ops import op, path_param, query, ref

TAG = "Queues"
ACTING = ("Needs read on the item's queue and append-to on its activity")


def queue_paths() -> dict[str, dict]:
    qid, iid, rid = ([path_param(n)] for n in ("queue_id", "item_id", "rule_id"))
    item_op = dict(tag=TAG, schema=ref("QueueItem"), errors=("403", "404", "409"))
    return {
        "/queues/{queue_id}/items": {"parameters": qid, "get": op(
            "queue_items", "A queue's items the caller may read, oldest first, with their "
            "age and who works them (read on the queue)", tag=TAG, schema=ref("QueueItemList"),
            params=[query("worked", {"enum": ["all", "mine", "nobody"]},
                          "All items (default), the caller's, or those nobody works.")],
            errors=("404",))},
        "/queue_items/{item_id}/pick": {"parameters": iid, "post": op(
            "queue_item_pick", f"Work on an item (409 while someone else does). {ACTING}.",
            body=ref("Empty"), body_required=False, **item_op)},
        "/queue_items/{item_id}/release": {"parameters": iid, "post": op(
            "queue_item_release", f"Stop working on an item: it waits again. {ACTING}.",
            body=ref("Empty"), body_required=False, **item_op)},
        "/queue_items/{item_id}/route": {"parameters": iid, "post": op(
            "queue_item_route", f"Move an item to another queue (append-to on it), or hand "
            f"it to a user who may read its queue. {ACTING}.", body=ref("RouteInput"),
            **{**item_op, "errors": ("403", "404", "422")})},
        "/queue_items/{item_id}": {"parameters": iid, "delete": op(
            "queue_item_remove", f"Take an item out of its queue. {ACTING}.", ok="204",
            tag=TAG, errors=("403", "404"))},
        "/queues/{queue_id}/case_rules": {
            "parameters": qid,
            "get": op("case_rule_list", "A queue's email-to-case rules in the order they are "
                      "tried (read on the queue)", tag=TAG, schema=ref("CaseRuleList"),
                      errors=("404",)),
            "post": op("case_rule_create", "Add an email-to-case rule (write on the queue); "
                       "it goes last", ok="201", tag=TAG, schema=ref("CaseRule"),
                       body=ref("CaseRuleInput"), errors=("403", "404", "422")),
        },
        "/case_rules/{rule_id}": {
            "parameters": rid,
            "get": op("case_rule_get", "Get an email-to-case rule", tag=TAG,
                      schema=ref("CaseRule"), errors=("404",)),
            "patch": op("case_rule_update", "Change an email-to-case rule (write on its "
                        "queue)", tag=TAG, schema=ref("CaseRule"), body=ref("CaseRuleInput"),
                        errors=("403", "404", "422")),
            "delete": op("case_rule_delete", "Delete an email-to-case rule", ok="204",
                         tag=TAG, errors=("403", "404")),
        },
    }


def _rule_properties() -> dict:
    integer, flag, maybe = {"type": "integer"}, {"type": "boolean"}, {"type": ["integer", "null"]}
    condition = {"type": "object", "required": ["kind"], "additionalProperties": False,
                 "properties": {"kind": {"enum": list(CONDITIONS)},
                                "value": {"type": "string", "maxLength": 200}},
                 "description": "; ".join(f"{k}: {c.label}" for k, c in CONDITIONS.items())}
    return {"name": {"type": "string", "maxLength": 200}, "enabled": flag,
            "position": integer, "conditions": {"type": "array", "items": condition,
                                                "maxItems": 20},
            "create_contact": flag, "priority": {"enum": list(PRIORITIES)},
            "routing": {"enum": list(ROUTINGS)}, "route_user_id": maybe, "route_team_id": maybe,
            "on_resolved": {"enum": list(ON_RESOLVED)}, "resolved_window_days": integer,
            "acknowledge": flag, "ack_template_id": maybe, "ack_per_sender_per_day": integer}


def queue_schemas() -> dict[str, dict]:
    text, when = {"type": "string"}, {"type": ["string", "null"], "format": "date-time"}
    rule = _rule_properties()
    return {
        "QueueItem": {"type": "object", "properties": {
            "id": {"type": "integer"}, "queue_id": {"type": "integer"},
            "activity": {"type": "object", "properties": {
                "id": {"type": "integer"}, "type": text, "subject": text,
                "regarding": {"anyOf": [ref("RecordRef"), {"type": "null"}]}}},
            "entered_on": {"type": "string", "format": "date-time"},
            "age_seconds": {"type": "integer"},
            "worked_by": {"type": ["object", "null"], "properties": {
                "id": {"type": "integer"}, "name": text}},
            "worked_on": when}},
        "QueueItemList": {"type": "object", "required": ["items"], "properties": {
            "queue": {"type": "object", "properties": {"id": {"type": "integer"},
                                                       "name": text}},
            "items": {"type": "array", "items": ref("QueueItem")}}},
        "RouteInput": {"type": "object", "additionalProperties": False,
                       "minProperties": 1, "maxProperties": 1, "properties": {
                           "queue": {"type": "integer"}, "user": {"type": "integer"}}},
        "CaseRule": {"type": "object", "properties": {
            "id": {"type": "integer"}, "queue_id": {"type": "integer"}, **rule}},
        "CaseRuleList": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": ref("CaseRule")}}},
        "CaseRuleInput": {"type": "object", "additionalProperties": False,
                          "properties": rule},
    }
