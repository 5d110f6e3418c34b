"""The building blocks of the OpenAPI document (``server.web.api.openapi``): a schema
reference, an operation with its documented responses and errors, path and query
parameters."""
from __future__ import annotations

from typing import Any

from server.web.api.common import MAX_ID

JSON = "application/json"


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


ERRORS = {"400": "Bad input (malformed JSON, unknown fields, wrong types); see error.fields.",
          "401": "No valid bearer token (error.code token_expired when it expired).",
          "403": "The caller lacks the privilege.",
          "404": "No such record, or the caller may not read it.",
          "409": "A unique value is already used, or the email is already tracked.",
          "413": "The request body is too large.",
          "415": "The request body is not JSON.",
          "422": "Well-formed but cannot be carried out."}


def _responses(ok: str, schema: dict | None, errors: tuple[str, ...], description: str) -> dict:
    out: dict[str, Any] = {ok: {"description": description}}
    if schema is not None:
        out[ok]["content"] = {JSON: {"schema": schema}}
    for code in ("401", *errors):
        out[code] = {"$ref": f"#/components/responses/E{code}"}
    return out


def op(op_id: str, summary: str, *, ok: str = "200", schema: dict | None = None,
       body: dict | None = None, params: list | None = None, errors: tuple[str, ...] = (),
       tag: str, body_required: bool = True) -> dict:
    errs = set(errors) | {"400"}
    if body is not None:
        errs |= {"413", "415"}
    o: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag],
                         "responses": _responses(ok, schema, tuple(sorted(errs)), summary)}
    if params:
        o["parameters"] = params
    if body is not None:
        o["requestBody"] = {"required": body_required, "content": {JSON: {"schema": body}}}
    return o


def path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}


def query(name: str, schema: dict, description: str, *, array: bool = False) -> dict:
    p = {"name": name, "in": "query", "required": False, "description": description,
         "schema": {"type": "array", "items": schema} if array else schema}
    if array:
        p["explode"] = True
    return p
