"""The OpenAPI 3.1 document of the REST API, built from the record registry (one set of paths
and schemas per record type) and the activity shapes in ``server.web.serialize``. Served
without authentication at ``/api/v1/openapi.json``; a test checks it lists exactly the routes
the application has.
"""
from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from server.crm.activities import PARTY_ROLES, PARTY_TYPES, REGARDING_TYPES
from server.crm.services.records import SHARE_RIGHTS
from server.crm.registry import RECORD_TYPES, Field, RecordType
from server.web.api import mailboxes
from server.web.api.common import MAX_PAGE_SIZE
from server.web.api.openapi_ops import ERRORS, JSON, op, path_param, query, ref
from server.web.api.openapi_queues import queue_paths, queue_schemas
from server.web.serialize import (ACTIVITY_READ_ONLY, ACTIVITY_STATES, ACTIVITY_TYPE_FIELDS,
                                  ACTIVITY_TYPES, COMMON_ACTIVITY_FIELDS, ref_name)

VERSION = "1.0.0"


def schema_name(rt: RecordType) -> str:
    return rt.label.replace(" ", "")


def collection(rt: RecordType) -> str:
    return rt.plural.lower().replace(" ", "_")


def nullable(schema: dict) -> dict:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def field_schema(f: Field, *, writing: bool) -> dict:
    """JSON Schema of one field's value (nullable unless required)."""
    if f.kind in ("str", "text", "phone", "email", "url", "choice"):
        s: dict[str, Any] = {"type": "string"}
        if f.max_length:
            s["maxLength"] = f.max_length
        if f.kind == "choice":
            s["enum"] = list(f.choices)
        if f.kind == "email":
            s["format"] = "email"
        if f.kind == "url":
            s["format"] = "uri"
    elif f.kind in ("int", "ref"):
        s = {"type": "integer"}
    elif f.kind == "decimal":
        s = ({"type": ["number", "string"]} if writing
             else {"type": "string", "pattern": r"^-?\d+\.\d{2}$"})
    elif f.kind == "date":
        s = {"type": "string", "format": "date"}
    elif f.kind == "datetime":
        s = {"type": "string", "format": "date-time"}
    elif f.kind == "bool":
        s = {"type": "boolean"}
    else:  # pragma: no cover - a new kind must be described here
        raise ValueError(f"no schema for field kind {f.kind}")
    s["description"] = f.label
    if f.required:
        return s
    if isinstance(s["type"], list):
        return {**s, "type": [*s["type"], "null"]}
    return nullable(s)


def _audit_properties() -> dict:
    return {"is_active": {"type": "boolean"},
            "owner": ref("Ref"),
            "owning_business_unit_id": {"type": "integer"},
            "created_on": {"type": "string", "format": "date-time"},
            "modified_on": {"type": "string", "format": "date-time"},
            "created_by": nullable(ref("Ref")),
            "modified_by": nullable(ref("Ref"))}


def record_schemas(rt: RecordType) -> dict[str, dict]:
    name = schema_name(rt)
    props: dict[str, Any] = {"id": {"type": "integer"}, "type": {"const": rt.name}}
    if rt.title_field not in rt.field_names:
        props[rt.title_field] = {"type": "string", "readOnly": True}
    for f in rt.fields:
        props[f.name] = field_schema(f, writing=False)
        if f.kind == "ref":
            props[ref_name(f.name)] = nullable(ref("Ref"))
    props.update(_audit_properties())
    write = {f.name: field_schema(f, writing=True) for f in rt.fields}
    return {
        name: {"type": "object", "required": ["id", "type"], "properties": props,
               "description": f"A {rt.label.lower()}. Secured fields the caller may not read "
                              "are left out."},
        f"{name}Create": {"type": "object", "additionalProperties": False,
                          "required": [f.name for f in rt.fields if f.required],
                          "properties": {**write, "owner": ref("PrincipalRef")}},
        f"{name}Update": {"type": "object", "additionalProperties": False, "properties": write},
        f"{name}Page": _page(ref(name), total=True),
    }


def _page(item: dict, *, total: bool = False) -> dict:
    props = {"items": {"type": "array", "items": item},
             "next": {"type": ["string", "null"],
                      "description": "Pass as ?cursor= for the next page; null on the last."}}
    if total:
        props["total"] = {"type": "integer", "description": "With ?count=true."}
    return {"type": "object", "required": ["items", "next"], "properties": props}


def activity_schemas() -> dict[str, dict]:
    schemas: dict[str, dict] = {}
    read_props: dict[str, Any] = {"id": {"type": "integer"},
                                  "type": {"enum": list(ACTIVITY_TYPES)},
                                  "occurred_on": {"type": "string", "format": "date-time"},
                                  "regarding": nullable(ref("Ref")),
                                  "parties": {"type": "array", "items": ref("Party")},
                                  "attachments": {"type": "array", "items": ref("Attachment")}}
    update_props: dict[str, Any] = {"parties": {"type": "array", "items": ref("PartyInput")}}
    creates = {}
    for f in COMMON_ACTIVITY_FIELDS:
        read_props[f.name] = field_schema(f, writing=False)
        update_props[f.name] = field_schema(f, writing=True)
    for kind, fields in ACTIVITY_TYPE_FIELDS.items():
        for f in fields:
            read_props.setdefault(f.name, field_schema(f, writing=False))
            update_props.setdefault(f.name, field_schema(f, writing=True))
        for name in ACTIVITY_READ_ONLY[kind]:
            read_props.setdefault(name, {"type": ["string", "integer", "null"], "readOnly": True})
        props = {"type": {"const": kind}, "owner": ref("PrincipalRef"),
                 "regarding": nullable(ref("RecordRef"))}
        for f in COMMON_ACTIVITY_FIELDS + fields:
            props[f.name] = field_schema(f, writing=True)
        if kind != "task":
            props["parties"] = {"type": "array", "items": ref("PartyInput")}
        title = "".join(part.title() for part in kind.split("_"))
        creates[kind] = f"{title}Create"
        schemas[f"{title}Create"] = {
            "type": "object", "additionalProperties": False,
            "required": ["type"] if kind == "email" else ["type", "subject"],
            "properties": props}
    read_props.update(_audit_properties())
    read_props.pop("is_active")
    schemas["Activity"] = {"type": "object", "required": ["id", "type"], "properties": read_props}
    schemas["ActivityUpdate"] = {"type": "object", "additionalProperties": False,
                                 "properties": update_props}
    schemas["ActivityCreate"] = {
        "oneOf": [ref(name) for name in creates.values()],
        "discriminator": {"propertyName": "type",
                          "mapping": {k: f"#/components/schemas/{v}" for k, v in creates.items()}}}
    schemas["ActivityPage"] = _page(ref("Activity"))
    schemas["Party"] = {"type": "object", "properties": {
        "id": {"type": "integer"}, "role": {"enum": list(PARTY_ROLES)},
        "address": {"type": ["string", "null"]}, "name": {"type": ["string", "null"]},
        "record": nullable(ref("Ref"))}}
    schemas["PartyInput"] = {"type": "object", "additionalProperties": False, "required": ["role"],
                             "properties": {
                                 "role": {"enum": list(PARTY_ROLES)},
                                 "address": {"type": ["string", "null"], "format": "email"},
                                 "name": {"type": ["string", "null"], "maxLength": 200},
                                 "record": nullable({"type": "object", "required": ["type", "id"],
                                                     "properties": {
                                                         "type": {"enum": list(PARTY_TYPES)},
                                                         "id": {"type": "integer"}}})}}
    schemas["Attachment"] = {"type": "object", "properties": {
        "id": {"type": "integer"}, "activity_id": {"type": "integer"},
        "filename": {"type": "string"}, "content_type": {"type": "string"},
        "size": {"type": "integer"}, "is_inline": {"type": "boolean"},
        "content_id": {"type": ["string", "null"]}, "content_omitted": {"type": "boolean"}}}
    schemas["AttachmentList"] = {"type": "object", "required": ["items"], "properties": {
        "items": {"type": "array", "items": ref("Attachment")}}}
    schemas["ReplyInput"] = {"type": "object", "additionalProperties": False,
                             "required": ["mode"],
                             "properties": {"mode": {"enum": ["reply", "reply_all", "forward"]}}}
    schemas["RegardingInput"] = {"type": "object", "additionalProperties": False,
                                 "required": ["regarding"],
                                 "properties": {"regarding": nullable(ref("RecordRef"))}}
    return schemas


def common_schemas() -> dict[str, dict]:
    depth = {"enum": ["user", "business_unit", "parent_child", "organization"]}
    role = {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"},
                                             "is_builtin": {"type": "boolean"}}}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "string"},
                           "description": "A message per field (or query parameter)."}}}}},
        "Ref": {"type": "object", "required": ["id", "type"], "properties": {
            "id": {"type": "integer"}, "type": {"type": "string"},
            "name": {"type": ["string", "null"],
                     "description": "Null when the caller may not read the record."}}},
        "PrincipalRef": {"type": "object", "additionalProperties": False,
                         "required": ["type", "id"],
                         "properties": {"type": {"enum": ["user", "team"]},
                                        "id": {"type": "integer"}}},
        "RecordRef": {"type": "object", "additionalProperties": False, "required": ["type", "id"],
                      "properties": {"type": {"enum": list(REGARDING_TYPES)},
                                     "id": {"type": "integer"}}},
        "AssignInput": {"type": "object", "additionalProperties": False, "required": ["owner"],
                        "properties": {"owner": ref("PrincipalRef")}},
        "ShareInput": {"type": "object", "additionalProperties": False,
                       "required": ["principal", "rights"],
                       "properties": {"principal": ref("PrincipalRef"),
                                      "rights": {"type": "array", "uniqueItems": True,
                                                 "items": {"enum": list(SHARE_RIGHTS)},
                                                 "description": "Empty revokes the share."}}},
        "Share": {"type": "object", "properties": {
            "id": {"type": "integer"}, "principal": ref("Ref"),
            "rights": {"type": "array", "items": {"enum": list(SHARE_RIGHTS)}},
            "granted_by": nullable(ref("Ref")),
            "created_on": {"type": "string", "format": "date-time"}}},
        "ShareList": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": ref("Share")}}},
        "Empty": {"type": "object", "additionalProperties": False, "maxProperties": 0},
        "Me": {"type": "object", "properties": {
            "id": {"type": "integer"}, "email": {"type": "string"},
            "full_name": {"type": "string"}, "first_name": {"type": "string"},
            "last_name": {"type": "string"}, "job_title": {"type": ["string", "null"]},
            "business_unit": {"type": "object", "properties": {"id": {"type": "integer"},
                                                               "name": {"type": "string"}}},
            "roles": {"type": "array", "items": role},
            "teams": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "integer"}, "name": {"type": "string"},
                "roles": {"type": "array", "items": role}}}},
            "is_admin": {"type": "boolean"},
            "named_privileges": {"type": "array", "items": {"type": "string"}},
            "privileges": {"type": "object", "description": "table → privilege → depth",
                           "additionalProperties": {"type": "object",
                                                    "additionalProperties": depth}}}},
        "Resolution": {"type": "object", "required": ["results"], "properties": {"results": {
            "type": "array", "items": {"type": "object", "properties": {
                "address": {"type": "string"}, "normalized": {"type": ["string", "null"]},
                "resolved": {"type": "boolean"},
                "matches": {"type": "array", "items": {"type": "object", "properties": {
                    "type": {"enum": ["user", "contact", "account", "lead", "queue"]},
                    "id": {"type": "integer"}, "name": {"type": "string"},
                    "is_active": {"type": "boolean"}}}}}}}}},
    }


PAGING = [query("page_size", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
                "Items per page (default 25)."),
          query("cursor", {"type": "string"}, "The `next` value of the previous page.")]


def record_paths(rt: RecordType) -> dict[str, dict]:
    name, base, tag = schema_name(rt), f"/{collection(rt)}", rt.plural
    one = f"{base}/{{record_id}}"
    rid = [path_param("record_id")]
    filters = [query(f.name, {"type": "string"}, f"Only {rt.plural.lower()} whose "
                     f"{f.label.lower()} equals this (empty: no value).")
               for f in rt.fields]
    list_params = [
        query("q", {"type": "string", "maxLength": 200},
              "Search (contains) over: " + ", ".join(rt.search_fields) + "."),
        query("active", {"enum": ["true", "false", "all"], "default": "true"}, "Active state."),
        query("sort", {"type": "string"}, f"A field to sort by, - to reverse (default "
                                          f"{rt.title_field}, or id when you may not read "
                                          "it)."),
        query("count", {"type": "boolean"}, "Include the total count."),
        query("owner_user_id", {"type": "integer"}, "Owned by this user."),
        query("owner_team_id", {"type": "integer"}, "Owned by this team."),
        *PAGING, *filters]
    timeline_params = [query("type", {"enum": list(ACTIVITY_TYPES)}, "Only these types.",
                             array=True),
                       query("related", {"type": "boolean"}, "Include the activities of related "
                             "records (an account's contacts, opportunities and cases; a "
                             "contact's opportunities and cases). Default: true for accounts."),
                       *PAGING]
    label = rt.label.lower()
    return {
        base: {
            "get": op(f"{rt.name}_list", f"List {rt.plural.lower()}", tag=tag,
                      schema=ref(f"{name}Page"), params=list_params),
            "post": op(f"{rt.name}_create", f"Create a {label}", ok="201", tag=tag,
                       schema=ref(name), body=ref(f"{name}Create"), errors=("403", "409", "422")),
        },
        one: {
            "parameters": rid,
            "get": op(f"{rt.name}_get", f"Get a {label}", tag=tag, schema=ref(name),
                      errors=("404",)),
            "patch": op(f"{rt.name}_update", f"Update a {label}", tag=tag, schema=ref(name),
                        body=ref(f"{name}Update"), errors=("403", "404", "409", "422")),
            "delete": op(f"{rt.name}_delete", f"Delete a {label}", ok="204", tag=tag,
                         errors=("403", "404")),
        },
        f"{one}/assign": {"parameters": rid, "post": op(
            f"{rt.name}_assign", f"Assign a {label} to a user or team", tag=tag,
            schema=ref(name), body=ref("AssignInput"), errors=("403", "404"))},
        f"{one}/share": {"parameters": rid, "post": op(
            f"{rt.name}_share", f"Share a {label} (empty rights revoke; then 204)", tag=tag,
            schema=ref("Share"), body=ref("ShareInput"), errors=("403", "404"))},
        f"{one}/shares": {"parameters": rid, "get": op(
            f"{rt.name}_shares", f"Who a {label} is shared with (needs share on it)", tag=tag,
            schema=ref("ShareList"), errors=("403", "404"))},
        f"{one}/activate": {"parameters": rid, "post": op(
            f"{rt.name}_activate", f"Activate a {label}", tag=tag, schema=ref(name),
            body=ref("Empty"), body_required=False, errors=("403", "404"))},
        f"{one}/deactivate": {"parameters": rid, "post": op(
            f"{rt.name}_deactivate", f"Deactivate a {label}", tag=tag, schema=ref(name),
            body=ref("Empty"), body_required=False, errors=("403", "404"))},
        f"{one}/timeline": {"parameters": rid, "get": op(
            f"{rt.name}_timeline", f"Activities about a {label}, newest first", tag=tag,
            schema=ref("ActivityPage"), params=timeline_params, errors=("404",))},
    }


def activity_paths() -> dict[str, dict]:
    tag = "Activities"
    aid = [path_param("activity_id")]
    list_params = [
        query("type", {"enum": list(ACTIVITY_TYPES)}, "Only these types.", array=True),
        query("state", {"enum": list(ACTIVITY_STATES)}, "Only in this state."),
        query("regarding", {"type": "string"}, "`type:id` of a record, or `none`."),
        query("q", {"type": "string", "maxLength": 200}, "Search the subject."),
        *PAGING]
    return {
        "/activities": {
            "get": op("activity_list", "List activities, newest first", tag=tag,
                      schema=ref("ActivityPage"), params=list_params),
            "post": op("activity_create", "Create a task, phone call, appointment or email "
                       "(draft, or tracked when incoming or sent)", ok="201", tag=tag,
                       schema=ref("Activity"), body=ref("ActivityCreate"),
                       errors=("403", "409", "422")),
        },
        "/activities/{activity_id}": {
            "parameters": aid,
            "get": op("activity_get", "Get an activity with its body", tag=tag,
                      schema=ref("Activity"), errors=("404",)),
            "patch": op("activity_update", "Update an activity", tag=tag, schema=ref("Activity"),
                        body=ref("ActivityUpdate"), errors=("403", "404", "422")),
            "delete": op("activity_delete", "Delete an activity", ok="204", tag=tag,
                         errors=("403", "404")),
        },
        "/activities/{activity_id}/send": {"parameters": aid, "post": op(
            "activity_send", "Send an outgoing email through its sender's mailbox: a draft, or "
            "a failed email again (Retry). It becomes pending_send and the sync sends it at "
            "once; 409 in any other status, 422 when the mailbox cannot send (error.fields."
            "mailbox says why: no_mailbox, outgoing_not_enabled, not_approved, not_enabled)",
            tag=tag, schema=ref("Activity"), body=ref("Empty"), body_required=False,
            errors=("403", "404", "409", "422"))},
        "/activities/{activity_id}/reply": {"parameters": aid, "post": op(
            "activity_reply", "Reply, reply all or forward: a new draft email with RE:/FW: "
            "subject, recipients, the quoted original and the caller's signature, threaded to "
            "the original (its tracking token and regarding kept; a forward starts a new "
            "thread with the original's attachments); send it with /send", ok="201", tag=tag,
            schema=ref("Activity"), body=ref("ReplyInput"), errors=("403", "404", "409"))},
        "/activities/{activity_id}/regarding": {"parameters": aid, "put": op(
            "activity_regarding", "Set (or clear with null) what an activity is regarding",
            tag=tag, schema=ref("Activity"), body=ref("RegardingInput"), errors=("403", "404"))},
        "/activities/{activity_id}/attachments": {"parameters": aid, "get": op(
            "activity_attachments", "An activity's attachments", tag=tag,
            schema=ref("AttachmentList"), errors=("404",))},
        "/activities/{activity_id}/attachments/{attachment_id}": {
            "parameters": [*aid, path_param("attachment_id")],
            "get": _download_op(tag),
        },
        "/email-files": {"post": {
            "operationId": "email_file_upload", "tags": [tag],
            "summary": "Track an .eml or Outlook .msg file regarding a record (201 when new, "
                       "200 when it was tracked already)",
            "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                "type": "object", "required": ["file"], "properties": {
                    "file": {"type": "string", "format": "binary",
                             "description": "The .eml or .msg file, at most 25 MB."},
                    "regarding": {"type": "string", "description": "`type:id` of a record."}}}}}},
            "responses": {
                "201": {"description": "Tracked.", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        "id": {"type": "integer"}, "created": {"type": "boolean"},
                        "subject": {"type": "string"},
                        "regarding": {"type": ["object", "null"]}}}}}},
                "200": {"description": "Already tracked: the existing email."},
                "400": {"description": "Not an email file, or too large."},
                "403": {"description": "Not allowed."}, "404": {"description": "No such record."}},
        }},
    }


def _download_op(tag: str) -> dict:
    o = op("activity_attachment", "Download an attachment", tag=tag, errors=("404",))
    o["responses"]["200"] = {
        "description": "The file, always as a download (Content-Disposition: attachment).",
        "content": {"application/octet-stream": {"schema": {
            "type": "string", "contentMediaType": "application/octet-stream"}}}}
    return o


def template_paths() -> dict[str, dict]:
    tag = "Email templates"
    tid = [path_param("template_id")]
    return {
        "/email_templates": {
            "get": op("email_template_list", "The organization's email templates and the "
                      "caller's own", tag=tag, schema=ref("EmailTemplateList")),
            "post": op("email_template_create", "Create an email template (the caller's own, "
                       "or with organization: true the organization's, which needs write on "
                       "the organization)", ok="201", tag=tag, schema=ref("EmailTemplate"),
                       body=ref("EmailTemplateInput"), errors=("403",)),
        },
        "/email_templates/{template_id}": {
            "parameters": tid,
            "get": op("email_template_get", "Get an email template", tag=tag,
                      schema=ref("EmailTemplate"), errors=("404",)),
            "patch": op("email_template_update", "Change an email template", tag=tag,
                        schema=ref("EmailTemplate"), body=ref("EmailTemplateInput"),
                        errors=("403", "404")),
            "delete": op("email_template_delete", "Delete an email template", ok="204",
                         tag=tag, errors=("403", "404")),
        },
        "/email_templates/{template_id}/render": {"parameters": tid, "post": op(
            "email_template_render", "Fill a template in for a recipient and a regarding "
            "record the caller may read; unknown or secured placeholders are listed in "
            "problems (and nothing is filled in)", tag=tag, schema=ref("RenderedTemplate"),
            body=ref("RenderInput"), body_required=False, errors=("404",))},
    }


def template_schemas() -> dict[str, dict]:
    text = {"type": "string"}
    return {
        "EmailTemplate": {"type": "object", "properties": {
            "id": {"type": "integer"}, "name": text, "subject": text, "body_html": text,
            "organization": {"type": "boolean"}}},
        "EmailTemplateList": {"type": "object", "required": ["items"], "properties": {
            "items": {"type": "array", "items": ref("EmailTemplate")}}},
        "EmailTemplateInput": {"type": "object", "additionalProperties": False, "properties": {
            "name": {"type": "string", "maxLength": 200},
            "subject": {"type": "string", "maxLength": 400},
            "body_html": {"type": "string", "description": "HTML with placeholders such as "
                          "{{ recipient.first_name }} and {% if %} conditions"},
            "organization": {"type": "boolean", "description": "On create only."}}},
        "RenderInput": {"type": "object", "additionalProperties": False, "properties": {
            "recipient": {"type": "object", "required": ["type", "id"], "properties": {
                "type": {"enum": ["user", "contact", "account", "lead"]},
                "id": {"type": "integer"}}},
            "regarding": ref("RecordRef")}},
        "RenderedTemplate": {"type": "object", "properties": {
            "subject": text, "html_body": text,
            "problems": {"type": "array", "items": text}}},
    }


RESOLUTION_REVEALS = (
    "What resolution reveals (SECURITY.md): an address resolves, for the caller, to the "
    "records they may read that carry it in a field they may read (users, whose address is "
    "not secured, always). Of each such record it gives the type, the id, the name as the "
    "caller may see it (a hidden part of a person's name left out, a hidden name null) and "
    "whether it is active; nothing else. Any other record behind the address is not "
    "mentioned: the address reads as unresolved, and an activity's party for it keeps the "
    "bare address. The add-in's context and activity parties follow the same rule.")


def other_paths() -> dict[str, dict]:
    return {
        "/me": {"get": op("me", "The caller: roles, teams, privileges", tag="Me",
                          schema=ref("Me"))},
        "/resolve": {"get": {**op("resolve", "Resolve email addresses to CRM records", tag="Me",
                                  schema=ref("Resolution"), params=[query(
                                      "address", {"type": "string", "maxLength": 320},
                                      "An address (repeat for more, up to 100).", array=True)]),
                             "description": RESOLUTION_REVEALS}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document",
                                  "tags": ["Me"], "security": [],
                                  "responses": {"200": {"description": "OpenAPI 3.1",
                                                        "content": {JSON: {"schema": {
                                                            "type": "object"}}}}}}},
    }


def document() -> dict[str, Any]:
    paths: dict[str, dict] = {}
    schemas = common_schemas()
    for rt in RECORD_TYPES.values():
        paths.update(record_paths(rt))
        schemas.update(record_schemas(rt))
    paths.update(activity_paths())
    paths.update(template_paths())
    paths.update(queue_paths())
    paths.update(other_paths())
    paths.update(mailboxes.paths(op, ref, path_param))
    schemas.update(activity_schemas())
    schemas.update(template_schemas())
    schemas.update(mailboxes.schemas(ref))
    schemas.update(queue_schemas())
    responses = {f"E{code}": {"description": text, "content": {JSON: {"schema": ref("Error")}}}
                 for code, text in ERRORS.items()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Regarding REST API", "version": VERSION,
                 "description": "CRM records, activities and address resolution. Authenticate "
                                "with an API token from your profile page: "
                                "`Authorization: Bearer rgd_...`. Bodies are JSON."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": rt.plural} for rt in RECORD_TYPES.values()]
        + [{"name": "Activities"}, {"name": "Email templates"}, {"name": "Mailboxes"},
           {"name": "Me"}],
        "paths": paths,
        "components": {"schemas": schemas, "responses": responses,
                       "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                                          "description": "An API token."}}},
    }


def openapi_json():
    return jsonify(document())


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/openapi.json", "openapi", openapi_json, methods=["GET"])
